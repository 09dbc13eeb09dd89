//! `viasock detect` against tools of each shape: the verdict is right, and
//! for every tool that can be served, the command line it prints, run
//! through viasock, gives the bytes of direct runs.

mod common;

use std::process::{Command, Stdio};

use common::{BIN, World, finish};

/// The verdict of `viasock detect --json` on a command.
struct Verdict {
    status: i32,
    json: serde_json::Value,
}

impl Verdict {
    fn command(&self) -> Vec<String> {
        let c = self.json["command"]
            .as_array()
            .unwrap_or_else(|| panic!("no command: {}", self.json));
        c.iter().map(|w| w.as_str().unwrap().to_owned()).collect()
    }

    fn text(&self) -> String {
        format!("{} {}", self.json["reason"], self.json["findings"])
    }
}

fn detect(w: &World, args: &[&str]) -> Verdict {
    let all: Vec<&str> = ["detect", "--json", "--timeout", "5"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    let out = w
        .cmd(&all)
        .env_remove("PYTHONUNBUFFERED")
        .output()
        .expect("run detect");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    Verdict {
        status: out.status.code().expect("an exit status"),
        json,
    }
}

/// What `command` writes for `input` when run directly.
fn direct(w: &World, command: &[String], input: &[u8]) -> Vec<u8> {
    let child = Command::new(&command[0])
        .args(&command[1..])
        .current_dir(&w.work)
        .env_remove("PYTHONUNBUFFERED")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the tool");
    finish(child, input).stdout
}

/// Inputs a user would give a text tool: the first is also given twice,
/// to a warm server.
const INPUTS: &[&[u8]] = &[
    b"hello\n",
    b"Hello wrold\nsecond line\nthird\n",
    b"one\n\ntwo\n",
    b"\xff\xfe bytes that are not UTF-8\n",
    b"hello\n",
];

/// Pastes the suggested command line into a real shell (its `viasock`
/// is this build), runs it on each input, and compares with a direct run
/// of the tool.
#[track_caller]
fn assert_serves_like_direct_runs(w: &World, v: &Verdict, tool: &[&str], inputs: &[&[u8]]) {
    assert_eq!(v.status, 0, "{}", v.json);
    assert_eq!(v.json["servable"], true);
    let line = v.json["command_line"].as_str().expect("a command line");
    assert!(line.starts_with("viasock run "), "{line}");
    let tool: Vec<String> = tool.iter().map(|s| s.to_string()).collect();
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    for input in inputs {
        let want = direct(w, &tool, input);
        let out = finish(
            Command::new("bash")
                .args(["-c", line])
                .current_dir(&w.work)
                .env("PATH", &path)
                .env("VIASOCK_DIR", &w.state)
                .env("XDG_RUNTIME_DIR", w.tmp.path())
                .env_remove("PYTHONUNBUFFERED")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            input,
        );
        assert!(out.status.success(), "{line} on {input:?}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&want),
            "{line} on {input:?}"
        );
    }
}

#[track_caller]
fn assert_unservable(v: &Verdict, says: &str) {
    assert_eq!(v.status, 1, "{}", v.json);
    assert_eq!(v.json["servable"], false);
    assert!(v.json["command"].is_null());
    let text = v.text();
    assert!(text.contains(says), "wanted {says:?} in {text}");
}

/// ispell pipe mode: a banner line, then an answer ending with an empty
/// line for each line (an empty line gets only the empty line).
const ISPELL: &str = r#"#!/bin/sh
echo '@(#) International Ispell Version 3.2.06 (but really a script)'
while IFS= read -r l; do
    for word in $l; do echo "* $word"; done
    echo
done
"#;

#[test]
fn a_banner_and_blank_line_answers_are_ispell() {
    let w = World::new();
    w.script("ispell.sh", ISPELL);
    let v = detect(&w, &["./ispell.sh"]);
    assert_eq!(v.json["framing_name"], "ispell", "{}", v.json);
    assert_eq!(
        v.command(),
        ["viasock", "run", "--framing", "ispell", "./ispell.sh"]
    );
    assert_serves_like_direct_runs(&w, &v, &["./ispell.sh"], INPUTS);
}

#[test]
fn answers_ending_with_eos_are_eos() {
    let w = World::new();
    w.script(
        "morph.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do for t in $l; do printf '%s\\tNOUN\\n' \"$t\"; done; echo EOS; done\n",
    );
    let v = detect(&w, &["./morph.sh"]);
    assert_eq!(
        v.command(),
        ["viasock", "run", "--framing", "eos", "./morph.sh"]
    );
    assert_serves_like_direct_runs(&w, &v, &["./morph.sh"], INPUTS);
}

#[test]
fn a_multi_line_banner_is_counted_in_lines() {
    let w = World::new();
    w.script(
        "parser.sh",
        "#!/bin/sh\nsleep 0.3\necho 'Parser 2.1'\necho 'loading model... done'\necho 'model: en'\necho 'ready.'\nwhile IFS= read -r l; do echo \"(S $l)\"; done\n",
    );
    let v = detect(&w, &["./parser.sh"]);
    assert_eq!(
        v.command(),
        ["viasock", "run", "--prelude-lines", "4", "./parser.sh"]
    );
    let text = v.text();
    assert!(text.contains("a banner of 4 lines"), "{text}");
    assert_serves_like_direct_runs(&w, &v, &["./parser.sh"], INPUTS);
}

#[test]
fn paragraphs_in_and_out_are_blank() {
    let w = World::new();
    // Joins the lines of a paragraph; answers when the paragraph ends.
    w.script(
        "para.sh",
        "#!/bin/sh\np=''\nwhile IFS= read -r l; do if [ -z \"$l\" ]; then echo \"P:$p\"; echo; p=''; else p=\"$p $l\"; fi; done\n",
    );
    let v = detect(&w, &["./para.sh"]);
    assert_eq!(
        v.command(),
        ["viasock", "run", "--framing", "blank", "./para.sh"]
    );
    assert_serves_like_direct_runs(
        &w,
        &v,
        &["./para.sh"],
        &[b"a\nb\n\n", b"one\n\ntwo\nthree\n\n"],
    );
}

#[test]
fn unflushed_output_is_served_line_buffered() {
    let w = World::new();
    // sed buffers its output on a pipe; stdbuf makes it line-buffered.
    let v = detect(&w, &["sed", "s/o/0/g"]);
    assert_eq!(
        v.command(),
        ["viasock", "run", "stdbuf", "-oL", "sed", "s/o/0/g"]
    );
    assert!(v.text().contains("only at end of input"), "{}", v.text());
    assert_serves_like_direct_runs(&w, &v, &["sed", "s/o/0/g"], INPUTS);

    // Python buffers too, and ignores stdbuf: the variable it reads.
    w.script(
        "tag.py",
        "#!/usr/bin/env python3\nimport sys\nfor line in sys.stdin:\n    print(line.rstrip('\\n').upper())\n",
    );
    let v = detect(&w, &["./tag.py"]);
    assert_eq!(
        v.command(),
        ["viasock", "run", "env", "PYTHONUNBUFFERED=1", "./tag.py"]
    );
    assert_serves_like_direct_runs(&w, &v, &["./tag.py"], &INPUTS[..3]);
}

#[test]
fn two_answers_per_record_cannot_be_served() {
    let w = World::new();
    let v = detect(&w, &["sed", "-u", "s/.*/&\\n&/"]);
    assert_unservable(&v, "2 lines for each record");
    w.script(
        "nbest.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"1 $l\"; echo EOS; echo \"2 $l\"; echo EOS; done\n",
    );
    let v = detect(&w, &["./nbest.sh"]);
    assert_unservable(&v, "2 answers for each record");
}

#[test]
fn a_tool_that_answers_only_at_end_of_input_is_served_with_fork() {
    let w = World::new();
    let v = detect(&w, &["sort"]);
    assert!(v.text().contains("only at end of input"), "{}", v.text());
    assert_eq!(v.command(), ["viasock", "run", "--fork", "sort"]);
    assert_serves_like_direct_runs(&w, &v, &["sort"], INPUTS);
    // A summary at the end: a record tool it is not, a one-shot tool it is.
    w.script(
        "summary.sh",
        "#!/bin/sh\nn=0\nwhile IFS= read -r l; do echo \"$l\"; n=$((n+1)); done\necho \"$n lines\"\n",
    );
    let v = detect(&w, &["./summary.sh"]);
    assert!(
        v.text().contains("at end of input it writes 8 bytes more"),
        "{}",
        v.text()
    );
    assert_eq!(v.command(), ["viasock", "run", "--fork", "./summary.sh"]);
    assert_serves_like_direct_runs(&w, &v, &["./summary.sh"], INPUTS);
}

#[test]
fn a_one_shot_tool_that_cannot_be_forked_is_not_suggested_fork() {
    let w = World::new();
    // A shell script whose input a program it starts reads.
    w.script("sorted.sh", "#!/bin/sh\nsort\n");
    let v = detect(&w, &["./sorted.sh"]);
    assert_unservable(&v, "only at end of input");
    assert!(v.text().contains("Served with --fork"), "{}", v.text());
    assert!(v.text().contains("reads stdin itself"), "{}", v.text());
}

#[test]
fn nul_records_are_found() {
    let w = World::new();
    let v = detect(&w, &["sed", "-u", "-z", "s/^/> /"]);
    assert_eq!(
        v.command(),
        [
            "viasock",
            "run",
            "--framing",
            "nul",
            "sed",
            "-u",
            "-z",
            "s/^/> /"
        ]
    );
    assert_serves_like_direct_runs(
        &w,
        &v,
        &["sed", "-u", "-z", "s/^/> /"],
        &[b"a\0b\nc\0", b"\xff\0\0x\0"],
    );
    // A sample given with -z is cut at NULs.
    w.write("sample", "one\0two\nlines\0");
    let v = detect(&w, &["-z", "--input", "sample", "cat"]);
    assert_eq!(v.command(), ["viasock", "run", "--framing", "nul", "cat"]);
}

#[test]
fn a_tool_that_hangs_or_exits_at_once_cannot_be_served() {
    let w = World::new();
    let began = std::time::Instant::now();
    let v = detect(&w, &["sleep", "60"]);
    assert_unservable(&v, "did not read sample line 1 (");
    assert!(v.text().contains("within 5.00 s"), "{}", v.text());
    assert!(began.elapsed().as_secs() < 30, "{:?}", began.elapsed());
    assert_unservable(&detect(&w, &["true"]), "it ended before reading any input");
    assert_unservable(
        &detect(&w, &["head", "-n", "1"]),
        "it ended after sample line 1",
    );
}

#[test]
fn a_real_spell_checker_in_pipe_mode() {
    let w = World::new();
    let tool = ["hunspell", "-d", "en_US", "-a"];
    let v = detect(&w, &tool);
    assert_eq!(v.json["framing_name"], "ispell", "{}", v.json);
    assert_serves_like_direct_runs(&w, &v, &tool, INPUTS);
}

#[test]
fn the_text_report_ends_with_the_command_to_paste() {
    let w = World::new();
    let out = w
        .cmd(&["detect", "sed", "-u", "s/a b/c/"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("each answer is one line"), "{text}");
    assert_eq!(text.lines().last(), Some("viasock run sed -u 's/a b/c/'"));
    let out = w.cmd(&["detect", "no-such-tool-xyz"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("viasock: ") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn arguments_that_are_not_utf8_are_quoted_byte_for_byte() {
    use std::os::unix::ffi::OsStrExt;
    let w = World::new();
    std::fs::write(w.work.join("ff.txt"), b"a\xffb\n").unwrap();
    let script = b"s/\xff/X/";
    let out = w
        .cmd(&[
            "detect",
            "--json",
            "--timeout",
            "5",
            "--input",
            "ff.txt",
            "sed",
            "-u",
        ])
        .arg(std::ffi::OsStr::from_bytes(script))
        .output()
        .unwrap();
    let v = Verdict {
        status: out.status.code().unwrap(),
        json: serde_json::from_slice(&out.stdout).unwrap(),
    };
    assert_eq!(
        v.json["command_line"], r"viasock run sed -u $'s/\xff/X/'",
        "{}",
        v.json
    );
    assert!(
        v.json["command"].is_null(),
        "JSON strings cannot hold the byte"
    );
    let line = v.json["command_line"]
        .as_str()
        .unwrap()
        .replacen("viasock", BIN, 1);
    let out = finish(
        Command::new("bash")
            .args(["-c", &line])
            .current_dir(&w.work)
            .env("VIASOCK_DIR", &w.state)
            .env("XDG_RUNTIME_DIR", w.tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        b"a\xffb\n",
    );
    assert_eq!(out.stdout, b"aXb\n", "{out:?}");
}

#[test]
fn a_tool_that_keeps_state_between_records_cannot_be_served() {
    let w = World::new();
    let v = detect(&w, &["cat", "-n"]);
    assert_unservable(&v, "it keeps state from one record to the next");
}

#[test]
fn a_tool_that_gives_no_answer_to_empty_lines_cannot_be_served() {
    let w = World::new();
    let v = detect(&w, &["grep", "--line-buffered", "e"]);
    assert_unservable(&v, "which get no answer at all");
    // Given a sample without empty lines, it is checked on that.
    w.write("words", "hello\nthere\n");
    let v = detect(&w, &["--input", "words", "grep", "--line-buffered", "e"]);
    assert_serves_like_direct_runs(&w, &v, &["grep", "--line-buffered", "e"], &[b"yes\nme\n"]);
}

#[test]
fn a_paragraph_tool_that_skips_empty_paragraphs_cannot_be_served() {
    let w = World::new();
    w.script(
        "para.sh",
        "#!/bin/sh\np=''\nwhile IFS= read -r l; do if [ -z \"$l\" ]; then [ -n \"$p\" ] && { echo \"P:$p\"; echo; }; p=''; else p=\"$p $l\"; fi; done\n",
    );
    let v = detect(&w, &["./para.sh"]);
    assert_unservable(&v, "have nothing in common that could end a record");
}

#[test]
fn a_pattern_with_a_carriage_return_is_quoted_visibly() {
    let w = World::new();
    // CRLF paragraphs: the record ends with a line holding only "\r".
    w.script(
        "para.sh",
        "#!/bin/sh\np=''\nwhile IFS= read -r l; do if [ \"$l\" = \"$(printf '\\r')\" ]; then echo \"P:$p\"; echo; p=''; else p=\"$p$l\"; fi; done\n",
    );
    w.write("crlf", "a\r\nb\r\n\r\nc\r\n\r\n");
    let v = detect(&w, &["--input", "crlf", "./para.sh"]);
    let line = v.json["command_line"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", v.json));
    assert!(line.contains(r"-t $'^\r$'"), "{line}");
    assert!(!line.contains('\r'), "{line}");
    assert_serves_like_direct_runs(&w, &v, &["./para.sh"], &[b"x\r\n\r\n"]);
}

#[test]
fn a_tool_that_writes_without_end_is_cut_off() {
    let w = World::new();
    let began = std::time::Instant::now();
    let v = detect(&w, &["yes"]);
    assert_unservable(&v, "more than 16 MiB");
    assert!(began.elapsed().as_secs() < 20, "{:?}", began.elapsed());
}

#[test]
fn a_wrapper_whose_child_answers_late_is_served() {
    let w = World::new();
    w.script(
        "pipe.sh",
        "#!/bin/sh\nsed -u 's/^/> /' | while IFS= read -r l; do sleep 0.05; printf '%s\\n' \"$l\"; done\n",
    );
    let v = detect(&w, &["./pipe.sh"]);
    assert_serves_like_direct_runs(&w, &v, &["./pipe.sh"], &INPUTS[..2]);
}

#[test]
fn a_tool_that_does_not_exit_at_end_of_input_is_served() {
    let w = World::new();
    let tool = ["sh", "-c", "sed -u s/a/b/; sleep 100"];
    let v = detect(&w, &tool);
    assert!(v.text().contains("did not end within 2 s"), "{}", v.text());
    assert_serves_like_direct_runs(&w, &v, &["sed", "-u", "s/a/b/"], &INPUTS[..2]);
}

#[test]
fn a_tool_that_fails_at_start_says_its_status() {
    let w = World::new();
    w.script(
        "fail.sh",
        "#!/bin/sh\necho 'no dictionary xx_XX' >&2\nexit 3\n",
    );
    let v = detect(&w, &["./fail.sh"]);
    assert_unservable(&v, "it exited with status 3 before reading any input");
    assert_eq!(v.json["stderr"], "no dictionary xx_XX");
}

#[test]
fn absurd_timeouts_and_samples_are_usage_errors() {
    let w = World::new();
    for t in ["0", "1e19", "-1", "soon"] {
        let out = w.cmd(&["detect", "--timeout", t, "cat"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{t}: {out:?}");
    }
    w.write("empty", "");
    let out = w
        .cmd(&["detect", "--input", "empty", "cat"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // One empty line is a sample of one record.
    w.write("blank", "\n");
    let v = detect(&w, &["--input", "blank", "sed", "-u", "s/^/x/"]);
    assert_eq!(v.status, 0, "{}", v.json);
}

#[test]
fn stopping_detect_stops_the_tool() {
    let w = World::new();
    let mut child = w
        .cmd(&["detect", "--timeout", "60", "sleep", "317"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(common::wait_until(
        std::time::Duration::from_secs(10),
        || { common::command_running("sleep 317") }
    ));
    common::signal(child.id() as i64, "INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(
        common::wait_until(std::time::Duration::from_secs(5), || {
            !common::command_running("sleep 317")
        }),
        "the tool outlived detect"
    );
}
