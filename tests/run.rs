//! `viasock run` end to end: the real binary, real tools, one private state
//! directory per test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{World, finish, ok_stdout, viasock_lines, wait_until};

/// A tool that takes a moment to load, then numbers nothing and echoes
/// each line with a prefix.
const SLOW_PREFIX: &str = "#!/bin/sh\nsleep 0.3\nexec sed -u 's/^/> /'\n";

#[test]
fn cold_and_warm_calls_match_a_direct_run() {
    let w = World::new();
    let tool = w.script("tool.sh", SLOW_PREFIX);
    let input = b"one\ntwo\n\nthree \xff\n";
    let direct = Command::new(&tool)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(input)?;
            c.wait_with_output()
        })
        .unwrap();
    let cold = w.run(&["run", "./tool.sh"], input);
    let warm = w.run(&["run", "./tool.sh"], input);
    assert!(
        cold.status.success() && warm.status.success(),
        "{cold:?} {warm:?}"
    );
    assert_eq!(cold.stdout, direct.stdout);
    assert_eq!(warm.stdout, direct.stdout);
    assert_eq!(w.server_pids().len(), 1, "the warm call reused the server");
}

#[test]
fn concurrent_first_calls_start_one_server() {
    let w = World::new();
    w.script("tool.sh", SLOW_PREFIX);
    let children: Vec<_> = (0..20)
        .map(|i| {
            let mut c = w.spawn(&["run", "./tool.sh"]);
            let mut stdin = c.stdin.take().unwrap();
            writeln!(stdin, "call {i}").unwrap();
            drop(stdin);
            (i, c)
        })
        .collect();
    for (i, c) in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(ok_stdout(&out), format!("> call {i}\n"));
    }
    assert_eq!(
        w.logs().matches("listening at").count(),
        1,
        "logs: {}",
        w.logs()
    );
    assert_eq!(w.server_pids().len(), 1);
}

#[test]
fn binary_data_round_trips() {
    let w = World::new();
    let mut input = Vec::new();
    for b in 0..=255u8 {
        if b != b'\n' {
            input.extend_from_slice(&[b, b, 0xc3, b]);
        }
        input.push(b'\n');
    }
    input.extend_from_slice(b"\r\n\x00\n");
    let out = w.run(&["run", "cat"], &input);
    assert!(out.status.success());
    assert_eq!(out.stdout, input);
}

#[test]
fn missing_final_newline_is_added_in_line_mode() {
    let w = World::new();
    let out = w.run(&["run", "cat"], b"a\nb");
    assert_eq!(ok_stdout(&out), "a\nb\n");
}

#[test]
fn blank_line_records() {
    let w = World::new();
    // The tool answers each blank-line record with one line and a blank.
    w.script(
        "count.sh",
        "#!/bin/bash\nn=0\nwhile IFS= read -r l; do\n  if [ -z \"$l\" ]; then echo \"$n lines\"; echo; n=0; else n=$((n+1)); fi\ndone\n",
    );
    let out = w.run(
        &["run", "-t", "^$", "-T", "^$", "./count.sh"],
        b"a\nb\n\nc\n\n\n",
    );
    assert_eq!(ok_stdout(&out), "2 lines\n\n1 lines\n\n0 lines\n\n");
}

#[test]
fn unfinished_record_with_custom_terminator_is_65() {
    let w = World::new();
    let out = w.run(
        &["run", "-t", "^EOS$", "-T", "^EOS$", "cat"],
        b"a\nEOS\nb\n",
    );
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a\nEOS\n",
        "the whole record is answered"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("viasock: ") && err.contains("unfinished record"),
        "{err}"
    );
}

#[test]
fn prelude_goes_to_every_client() {
    let w = World::new();
    w.script(
        "banner.sh",
        "#!/bin/sh\necho 'tool v1 ready'\nexec sed -u 's/^/: /'\n",
    );
    for input in ["x\n", "y\nz\n"] {
        let out = w.run(&["run", "-P", "1", "./banner.sh"], input.as_bytes());
        let want = format!(
            "tool v1 ready\n{}",
            input
                .lines()
                .map(|l| format!(": {l}\n"))
                .collect::<String>()
        );
        assert_eq!(ok_stdout(&out), want);
    }
}

#[test]
fn edited_tool_script_takes_effect_on_the_next_call() {
    let w = World::new();
    w.script("tool.sh", "#!/bin/sh\nexec sed -u 's/^/v1 /'\n");
    assert_eq!(ok_stdout(&w.run(&["run", "./tool.sh"], b"x\n")), "v1 x\n");
    w.script("tool.sh", "#!/bin/sh\nexec sed -u 's/^/version2 /'\n");
    assert_eq!(
        ok_stdout(&w.run(&["run", "./tool.sh"], b"x\n")),
        "version2 x\n"
    );
}

/// Prints the model (a file, or a directory's `sub/weights`) before each line.
const MODEL_TOOL: &str = "#!/bin/sh\nif [ -d \"$1\" ]; then m=$(cat \"$1/sub/weights\"); else m=$(cat \"$1\"); fi\n\
while IFS= read -r l; do printf '%s %s\\n' \"$m\" \"$l\"; done\n";

#[test]
fn edited_model_file_takes_effect_on_the_next_call() {
    let w = World::new();
    w.script("tool.sh", MODEL_TOOL);
    w.write("model.txt", "one");
    assert_eq!(
        ok_stdout(&w.run(&["run", "./tool.sh", "model.txt"], b"x\n")),
        "one x\n"
    );
    w.write("model.txt", "three");
    assert_eq!(
        ok_stdout(&w.run(&["run", "./tool.sh", "model.txt"], b"x\n")),
        "three x\n"
    );
}

#[test]
fn edited_file_inside_a_model_directory_takes_effect_on_the_next_call() {
    let w = World::new();
    w.script("tool.sh", MODEL_TOOL);
    w.write("models/en/sub/weights", "one");
    let args = ["run", "./tool.sh", "models/en"];
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "one x\n");
    w.write("models/en/sub/weights", "three");
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "three x\n");
}

#[test]
fn stale_server_removes_its_socket_and_exits() {
    let w = World::new();
    w.script("tool.sh", MODEL_TOOL);
    w.write("model.txt", "one");
    ok_stdout(&w.run(&["run", "./tool.sh", "model.txt"], b"x\n"));
    let old = w.server_pids();
    assert_eq!(old.len(), 1);
    w.write("model.txt", "three");
    assert!(
        wait_until(Duration::from_secs(10), || !common::process_alive(old[0])),
        "the stale server should exit within a few seconds"
    );
    assert!(w.sockets().is_empty(), "{:?}", w.sockets());
    assert!(w.logs().contains("stale"));
}

#[test]
fn idle_server_shuts_down_and_removes_its_socket() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "-W", "1", "cat"], b"x\n"));
    let pids = w.server_pids();
    assert_eq!(pids.len(), 1);
    assert_eq!(w.sockets().len(), 1);
    assert!(wait_until(Duration::from_secs(10), || {
        !common::process_alive(pids[0])
    }));
    assert!(w.sockets().is_empty());
    assert!(w.logs().contains("stopping (idle)"));
}

#[test]
fn tool_not_found_is_127() {
    let w = World::new();
    let out = w.run(&["run", "no-such-tool-for-viasock"], b"x\n");
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("viasock: no-such-tool-for-viasock: command not found"),
        "{err}"
    );
    assert!(w.server_pids().is_empty());
}

#[test]
fn tool_not_executable_is_126() {
    let w = World::new();
    w.write("plain.txt", "not a program");
    let out = w.run(&["run", "./plain.txt"], b"x\n");
    assert_eq!(out.status.code(), Some(126));
}

#[test]
fn tool_exit_status_passes_through_and_the_next_call_works() {
    let w = World::new();
    w.script(
        "fragile.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do\n  if [ \"$l\" = die ]; then echo 'dying now' >&2; exit 3; fi\n  echo \"ok $l\"\ndone\n",
    );
    let out = w.run(&["run", "./fragile.sh"], b"a\ndie\nb\n");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok a\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dying now"),
        "the tool's stderr is forwarded: {err}"
    );
    assert!(
        err.contains("viasock: the tool exited with status 3"),
        "{err}"
    );
    assert_eq!(
        ok_stdout(&w.run(&["run", "./fragile.sh"], b"c\n")),
        "ok c\n"
    );
}

#[test]
fn hung_tool_times_out_with_124() {
    let w = World::new();
    w.script(
        "hang.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do sleep 1000; done\n",
    );
    let start = Instant::now();
    let out = w.run(&["run", "-w", "1", "./hang.sh"], b"x\n");
    let took = start.elapsed();
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not answer"));
}

#[test]
fn killed_client_does_not_leak_outputs_into_the_next_call() {
    let w = World::new();
    w.script(
        "slow.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do sleep 0.2; echo \"out $l\"; done\n",
    );
    let mut first = w.spawn(&["run", "./slow.sh"]);
    let mut stdin = first.stdin.take().unwrap();
    for i in 0..5 {
        writeln!(stdin, "first {i}").unwrap();
    }
    let mut lines = BufReader::new(first.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "out first 0\n");
    first.kill().unwrap();
    first.wait().unwrap();
    let out = w.run(&["run", "./slow.sh"], b"second\n");
    assert_eq!(ok_stdout(&out), "out second\n");
}

#[test]
fn record_of_64_mib() {
    let w = World::new();
    let mut input = vec![b'x'; 64 << 20];
    input.push(b'\n');
    input.extend_from_slice(b"short\n");
    let out = w.run(&["run", "cat"], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == input,
        "64 MiB record differs (got {} bytes)",
        out.stdout.len()
    );
}

#[test]
fn long_state_directory_path_works() {
    let name = format!("{}/state", "d".repeat(180));
    let w = World::with_state_name(&name);
    assert!(w.state.as_os_str().len() >= 200);
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"x\n")), "x\n");
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"y\n")), "y\n");
    assert_eq!(w.server_pids().len(), 1);
}

#[test]
fn tool_stderr_is_forwarded_and_logged() {
    let w = World::new();
    w.script(
        "chatty.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"note: $l\" >&2; echo \"$l\"; done\n",
    );
    let out = w.run(&["run", "./chatty.sh"], b"hello\n");
    assert_eq!(ok_stdout(&out), "hello\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("note: hello"));
    assert!(wait_until(Duration::from_secs(5), || w
        .logs()
        .contains("stderr: note: hello")));
}

#[test]
fn no_spawn_without_a_server_is_69() {
    let w = World::new();
    let out = w.run(&["run", "--no-spawn", "cat"], b"x\n");
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("viasock: no server"));
}

#[test]
fn bad_terminator_pattern_is_usage_error() {
    let w = World::new();
    let out = w.run(&["run", "-t", "(", "cat"], b"x\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("viasock: bad -t pattern"));
}

#[test]
fn group_writable_state_dir_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    std::fs::create_dir(&w.state).unwrap();
    std::fs::set_permissions(&w.state, std::fs::Permissions::from_mode(0o775)).unwrap();
    let out = w.run(&["run", "cat"], b"x\n");
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("writable by group or others"));
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let w = World::new();
    w.script(
        "slow.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do sleep 0.3; echo \"out $l\"; done\n",
    );
    ok_stdout(&w.run(&["run", "./slow.sh"], b"warm\n"));
    let server = w.server_pids()[0];
    let mut client = w.spawn(&["run", "./slow.sh"]);
    let mut stdin = client.stdin.take().unwrap();
    writeln!(stdin, "a\nb\nc").unwrap();
    drop(stdin);
    let mut lines = BufReader::new(client.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    Command::new("kill")
        .args(["-TERM", &server.to_string()])
        .status()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut lines, &mut rest).unwrap();
    assert!(client.wait().unwrap().success());
    assert_eq!(first + &rest, "out a\nout b\nout c\n");
    assert!(wait_until(Duration::from_secs(10), || {
        !common::process_alive(server)
    }));
    assert!(w.sockets().is_empty());
}

#[test]
fn log_option_puts_the_server_log_there() {
    let w = World::new();
    w.script(
        "chatty.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"note: $l\" >&2; echo \"$l\"; done\n",
    );
    let out = w.run(&["run", "-l", "my.log", "./chatty.sh"], b"hello\n");
    assert_eq!(ok_stdout(&out), "hello\n");
    let log = || std::fs::read_to_string(w.work.join("my.log")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(5), || log()
            .contains("stderr: note: hello")),
        "{}",
        log()
    );
}

#[test]
fn input_ready_at_start_goes_with_the_greeting() {
    let w = World::new();
    // A file on stdin is ready at once: the first chunk is sent with the
    // handshake, the rest streamed after it.
    let input: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let path = w.write("input.txt", &input);
    for args in [&["run", "cat"][..], &["run", "-t", "^$", "cat"][..]] {
        let out = w
            .cmd(args)
            .stdin(std::fs::File::open(&path).unwrap())
            .output()
            .unwrap();
        if args.len() == 2 {
            assert_eq!(ok_stdout(&out), input);
        } else {
            assert_eq!(out.status.code(), Some(65), "no blank line ends the record");
        }
    }
    let out = w
        .cmd(&["run", "cat"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(ok_stdout(&out), "");
}

#[test]
fn completions_are_printed_for_each_shell() {
    let w = World::new();
    for (shell, marker) in [
        ("bash", "_viasock()"),
        ("zsh", "#compdef viasock"),
        ("fish", "complete -c viasock"),
    ] {
        let out = w.run(&["completions", shell], b"");
        let script = ok_stdout(&out);
        assert!(script.contains(marker), "{shell}: {script:.200}");
        assert!(script.contains("restart"), "{shell}: subcommands missing");
    }
    // Value hints: the tool's command line completes as a command, --dir
    // as a directory.
    let zsh = ok_stdout(&w.run(&["completions", "zsh"], b""));
    assert!(
        zsh.contains(":_cmdambivalent"),
        "the tool's command: {zsh:.300}"
    );
    assert!(zsh.contains(":DIR:_files -/"), "--dir: {zsh:.300}");
    let out = w.run(&["completions", "nosuchshell"], b"");
    assert_eq!(out.status.code(), Some(2));
}

/// In bash, `viasock kill <TAB>` offers the ids of the running servers,
/// as `viasock ls -q` lists them, and `viasock <TAB>` no internal command.
#[test]
fn bash_completes_the_ids_of_running_servers() {
    let w = World::new();
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"x\n")), "x\n");
    let ids = ok_stdout(&w.run(&["ls", "-q"], b""));
    let id = ids.trim();
    assert_eq!(id.lines().count(), 1, "{ids}");
    let script = w.write(
        "viasock.bash",
        &ok_stdout(&w.run(&["completions", "bash"], b"")),
    );
    // As bash calls it for `WORDS <TAB>`: the word being completed is
    // empty, the one before it is the last of WORDS.
    let complete = |words: &str| {
        let cword = words.split(' ').count();
        let prev = words.rsplit(' ').next().unwrap();
        let shell = format!(
            "source {}; COMP_WORDS=({words} ''); COMP_CWORD={cword}; \
             _viasock viasock '' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = w
            .program("bash")
            .args(["--norc", "-c", &shell])
            .output()
            .unwrap();
        ok_stdout(&out)
    };
    let offered = complete("viasock kill");
    assert!(offered.lines().any(|l| l == id), "{offered}");
    assert!(offered.lines().any(|l| l == "--all"), "{offered}");
    let offered = complete("viasock logs");
    assert!(offered.lines().any(|l| l == id), "{offered}");
    let offered = complete("viasock");
    assert!(offered.lines().any(|l| l == "kill"), "{offered}");
    assert!(!offered.contains("__exec-tool"), "{offered}");
}

/// Each shell reads its script without an error (fish refused the whole
/// file over a `$` in a help text), and fish completes server ids too.
#[test]
fn completion_scripts_load_in_their_shells() {
    let w = World::new();
    for (shell, file) in [("bash", "v.bash"), ("zsh", "_v"), ("fish", "v.fish")] {
        let script = w.write(file, &ok_stdout(&w.run(&["completions", shell], b"")));
        let out = w
            .program(shell)
            .arg("-n")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("{shell} (installed by .ci/run): {e}"));
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"x\n")), "x\n");
    let id = ok_stdout(&w.run(&["ls", "-q"], b""));
    let script = w.work.join("v.fish");
    let out = w
        .program("fish")
        .args(["--no-config", "-c"])
        .arg(format!(
            "source {}; complete -C 'viasock kill '",
            script.display()
        ))
        .output()
        .unwrap();
    let offered = ok_stdout(&out);
    assert!(
        offered
            .lines()
            .any(|l| l.split('\t').next() == Some(id.trim())),
        "{offered}"
    );
}

/// The man page covers every command and the exit statuses, as `man`
/// reads it; `--out` writes one page per command.
#[test]
fn the_man_page_has_every_command_and_the_exit_statuses() {
    let w = World::new();
    let page = ok_stdout(&w.run(&["man"], b""));
    assert!(
        page.starts_with(".ie") || page.contains(".TH viasock 1"),
        "{page:.300}"
    );
    for part in [".SH \"EXIT STATUS\"", ".SH \"ENVIRONMENT\"", "VIASOCK_LOG"] {
        assert!(page.contains(part), "{part}: {page}");
    }
    for command in [
        "run", "ls", "kill", "restart", "logs", "top", "detect", "start",
    ] {
        assert!(
            page.contains(&format!("viasock\\-{command}(1)")),
            "{command}: {page}"
        );
    }
    let dir = w.tmp.path().join("man");
    std::fs::create_dir(&dir).unwrap();
    ok_stdout(&w.run(&["man", "--out", dir.to_str().unwrap()], b""));
    let run = std::fs::read_to_string(dir.join("viasock-run.1")).unwrap();
    assert!(run.contains("process\\-timeout"), "{run:.500}");
    assert!(dir.join("viasock.1").exists() && dir.join("viasock-top.1").exists());
    assert!(
        !dir.join("viasock-__exec-tool.1").exists(),
        "hidden commands have none"
    );
}

/// `-h` is short and ends pointing at `--help`, which has the exit
/// statuses; neither is wider than 100 columns.
#[test]
fn help_is_short_and_long_and_wrapped() {
    let w = World::new();
    let short = ok_stdout(&w.run(&["-h"], b""));
    let long = ok_stdout(&w.run(&["--help"], b""));
    assert!(
        short.contains("--help") && !short.contains("Exit status"),
        "{short}"
    );
    assert!(
        long.contains("Exit status") && long.contains("141"),
        "{long}"
    );
    for text in [&short, &long, &ok_stdout(&w.run(&["run", "--help"], b""))] {
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= 100, "{widest} columns:\n{text}");
    }
}

#[test]
fn a_client_that_half_closes_after_its_input_gets_its_answers() {
    use std::io::Read;
    use viasock::core::protocol::{self, Kind, Purpose};
    let w = World::new();
    assert_eq!(
        ok_stdout(&w.run(&["run", "sed", "-u", "s/^/> /"], b"warm\n")),
        "> warm\n"
    );
    let sockets = w.sockets();
    // As socat or `nc -N` would: all input, then shut the writing side.
    let mut s = std::os::unix::net::UnixStream::connect(&sockets[0]).unwrap();
    let mut req = protocol::hello(Purpose::Run);
    protocol::encode(Kind::Data, b"a\nb\n", &mut req);
    protocol::encode(Kind::End, b"", &mut req);
    s.write_all(&req).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let mut frames = &reply[..];
    let mut output = Vec::new();
    let mut status = None;
    while let Some(f) = protocol::read_frame(&mut frames).unwrap() {
        match f.kind {
            Kind::Output => output.extend_from_slice(&f.payload),
            Kind::Status => status = Some(protocol::parse_status(&f).unwrap()),
            _ => {}
        }
    }
    assert_eq!(String::from_utf8_lossy(&output), "> a\n> b\n");
    assert_eq!(status, Some(0));
}

/// Defaults set once in the environment: `VIASOCK_INSTANCES`,
/// `VIASOCK_SERVER_TIMEOUT` and `VIASOCK_NO_SPAWN`, shown in `--help`; an
/// option on the command line still wins, and a bad value is a usage
/// error.
#[test]
fn defaults_come_from_the_environment() {
    let w = World::new();
    let call = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = w.cmd(args);
        c.envs(env.iter().copied());
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        finish(c.spawn().unwrap(), b"a\n")
    };
    let refused = call(&[("VIASOCK_NO_SPAWN", "1")], &["run", "cat"]);
    assert_eq!(refused.status.code(), Some(69), "{refused:?}");
    let out = call(
        &[
            ("VIASOCK_INSTANCES", "3"),
            ("VIASOCK_SERVER_TIMEOUT", "0"),
            ("VIASOCK_NO_SPAWN", "no"),
        ],
        &["run", "cat"],
    );
    assert_eq!(ok_stdout(&out), "a\n");
    let ls: Vec<serde_json::Value> =
        serde_json::from_str(&ok_stdout(&w.run(&["ls", "--json"], b""))).unwrap();
    assert_eq!(ls[0]["max_instances"], 3, "{:#}", ls[0]);
    assert_eq!(
        ls[0]["idle_timeout_s"],
        serde_json::Value::Null,
        "{:#}",
        ls[0]
    );
    // The command line wins over the environment.
    let out = call(
        &[("VIASOCK_INSTANCES", "1")],
        &["run", "-j", "2", "sed", "-u", "s/a/b/"],
    );
    assert_eq!(ok_stdout(&out), "b\n");
    let ls: Vec<serde_json::Value> =
        serde_json::from_str(&ok_stdout(&w.run(&["ls", "--json"], b""))).unwrap();
    let sed = ls.iter().find(|s| s["command"][0] == "sed").unwrap();
    assert_eq!(sed["max_instances"], 2, "{sed:#}");
    for (name, bad) in [("VIASOCK_INSTANCES", "0"), ("VIASOCK_NO_SPAWN", "maybe")] {
        let out = call(&[(name, bad)], &["run", "cat"]);
        assert_eq!(out.status.code(), Some(2), "{name}={bad}: {out:?}");
        assert_eq!(viasock_lines(&out).len(), 1, "{out:?}");
    }
    let help = ok_stdout(&w.run(&["run", "--help"], b""));
    for name in [
        "VIASOCK_INSTANCES",
        "VIASOCK_SERVER_TIMEOUT",
        "VIASOCK_NO_SPAWN",
    ] {
        assert!(help.contains(name), "{name}: {help}");
    }
}

/// The manual pages and completions that `cargo deb` packages are those
/// the binary makes: regenerate them with `viasock man --out packaging/man`
/// and `viasock completions SHELL > packaging/completions/...` when
/// this fails.
#[test]
fn packaged_man_pages_and_completions_are_current() {
    let w = World::new();
    let packaging = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    let dir = w.tmp.path().join("man");
    std::fs::create_dir(&dir).unwrap();
    ok_stdout(&w.run(&["man", "--out", dir.to_str().unwrap()], b""));
    let mut made: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut kept: Vec<_> = std::fs::read_dir(packaging.join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    made.sort();
    kept.sort();
    assert_eq!(
        made, kept,
        "the pages differ: run viasock man --out packaging/man"
    );
    for name in made {
        let now = std::fs::read(dir.join(&name)).unwrap();
        let then = std::fs::read(packaging.join("man").join(&name)).unwrap();
        assert!(
            now == then,
            "{name:?} is stale: run viasock man --out packaging/man"
        );
    }
    for (shell, file) in [
        ("bash", "viasock.bash"),
        ("zsh", "_viasock"),
        ("fish", "viasock.fish"),
    ] {
        let now = w.run(&["completions", shell], b"").stdout;
        let then = std::fs::read(packaging.join("completions").join(file)).unwrap();
        assert!(
            now == then,
            "{file} is stale: run viasock completions {shell} > packaging/completions/{file}"
        );
    }
}
