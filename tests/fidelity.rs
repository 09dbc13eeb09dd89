//! A call gives what the tool would have given, or fails loudly: the
//! command line reaches the tool untouched, a prelude that never completes
//! is bounded by `-w`, wrong framing fails the call, a tool that exits
//! between calls costs nobody a call, and stderr goes to the call it
//! belongs to.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{KillOnDrop, World, ok_stdout, viasock_lines, wait_until};

/// Answers each line with its arguments, `|`-separated, then the line.
const SHOW_ARGS: &str =
    "#!/bin/sh\nwhile IFS= read -r l; do printf '%s|' \"$@\"; printf '%s\\n' \"$l\"; done\n";

#[test]
fn options_after_program_reach_the_tool_unchanged() {
    let w = World::new();
    w.script("args.sh", SHOW_ARGS);
    let out = w.run(
        &[
            "run",
            "./args.sh",
            "-l",
            "5",
            "-w",
            "2",
            "--dir",
            "d",
            "--",
            "y",
        ],
        b"a\n",
    );
    assert_eq!(ok_stdout(&out), "-l|5|-w|2|--dir|d|--|y|a\n");
    assert!(!w.work.join("5").exists(), "no log file named 5");
    assert!(!w.work.join("d").exists(), "no state directory d");
    assert!(
        w.state.join("sockets").is_dir(),
        "the state directory is the world's"
    );
}

#[test]
fn help_and_double_dash_after_program_are_the_tools() {
    let w = World::new();
    w.script("args.sh", SHOW_ARGS);
    let out = w.run(&["run", "./args.sh", "--help"], b"a\n");
    assert_eq!(ok_stdout(&out), "--help|a\n");
    let out = w.run(&["run", "--", "./args.sh", "--", "x"], b"b\n");
    assert_eq!(ok_stdout(&out), "--|x|b\n");
    let out = w.run(&["run", "-W", "30", "./args.sh", "-W", "5"], b"c\n");
    assert_eq!(ok_stdout(&out), "-W|5|c\n");
}

#[test]
fn a_real_tool_gets_its_own_short_options() {
    let w = World::new();
    let out = w.run(&["run", "grep", "-w", "--line-buffered", "x"], b"x\n");
    assert_eq!(ok_stdout(&out), "x\n");
    // sed's -l (line wrap) is not viasock's --log.
    let out = w.run(&["run", "sed", "-l", "5", "-u", "s/a/b/"], b"a\n");
    assert_eq!(ok_stdout(&out), "b\n");
}

#[test]
fn start_and_serve_pass_options_after_program_to_the_tool() {
    let w = World::new();
    w.script("args.sh", SHOW_ARGS);
    let out = w.run(&["start", "./args.sh", "-l", "5", "--probe", "p"], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(!w.work.join("5").exists(), "no log file named 5");
    // The same command finds the server start started.
    let out = w.run(
        &["run", "--no-spawn", "./args.sh", "-l", "5", "--probe", "p"],
        b"a\n",
    );
    assert_eq!(ok_stdout(&out), "-l|5|--probe|p|a\n");

    let socket = w.work.join("fg.sock");
    let server = KillOnDrop(
        w.cmd(&["serve", "--socket", "fg.sock", "./args.sh", "--socket", "z"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(10), || socket.exists()));
    let out = w.run(&["client", "fg.sock"], b"s\n");
    assert_eq!(ok_stdout(&out), "--socket|z|s\n");
    drop(server);
}

#[test]
fn unknown_option_before_program_is_a_usage_error() {
    let w = World::new();
    let out = w.run(&["run", "--no-such-option", "cat"], b"a\n");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A spell checker in ispell pipe mode: a one-line banner, then for each
/// line an answer that ends with a blank line.
const ISPELL: &str = "#!/bin/sh\necho '@(#) International Ispell Version 3.2.06 (but really a script)'\nwhile IFS= read -r l; do echo \"* $l\"; echo; done\n";

#[test]
fn a_prelude_that_never_completes_fails_within_process_timeout() {
    let w = World::new();
    w.script("ispell.sh", ISPELL);
    for command in ["run", "start"] {
        let began = Instant::now();
        let out = w.run(
            &[command, "-P", "1", "-T", "^$", "-w", "1", "./ispell.sh"],
            b"word\n",
        );
        assert_eq!(out.status.code(), Some(124), "{command}: {out:?}");
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{command} took {:?}",
            began.elapsed()
        );
        let lines = viasock_lines(&out);
        assert_eq!(lines.len(), 1, "{command}: {lines:?}");
        assert!(
            lines[0].contains(
                "the tool wrote 1 line at start-up but no complete prelude record (-T '^$' -P 1)"
            ) && lines[0].contains("see log"),
            "{command}: {lines:?}"
        );
        assert!(
            out.stdout.is_empty(),
            "{command}: nothing of the banner reaches stdout"
        );
    }
}

#[test]
fn a_prelude_that_fits_the_tool_is_served() {
    let w = World::new();
    w.script("ispell.sh", ISPELL);
    // The banner line starts with '@', which no answer line does.
    let out = w.run(
        &["run", "-P", "1", "-T", "^$|^@", "-w", "5", "./ispell.sh"],
        b"word\n",
    );
    assert_eq!(
        ok_stdout(&out),
        "@(#) International Ispell Version 3.2.06 (but really a script)\n* word\n\n"
    );
}

#[test]
fn a_prelude_that_never_completes_without_process_timeout_is_reported() {
    let w = World::new();
    w.script("ispell.sh", ISPELL);
    let mut call = w.spawn(&["run", "-P", "1", "-T", "^$", "./ispell.sh"]);
    let said = wait_until(Duration::from_secs(30), || {
        w.logs().contains(
            "still waiting for the prelude: the tool wrote 1 line at start-up but no complete \
             prelude record (-T '^$' -P 1); set -w to bound the wait",
        )
    });
    let _ = call.kill();
    let _ = call.wait();
    assert!(said, "logs: {}", w.logs());
}

/// Asserts that a call failed because the tool wrote more answers than
/// records, and said so in one line that names the framing options.
#[track_caller]
fn assert_framing_failure(out: &std::process::Output) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = viasock_lines(out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("cannot be matched to this call's records (-t '' -T '')")
            && lines[0].contains("give -T the pattern of an answer's last line")
            && lines[0].contains("`viasock detect` with the same command"),
        "{lines:?}"
    );
}

#[test]
fn two_answers_per_record_in_one_write_fail_every_call() {
    let w = World::new();
    // An n-best tool: two analyses of every line, written together.
    let nbest = ["run", "sed", "-u", "s/.*/&\\n&-again/"];
    for i in 0..10 {
        let out = w.run(&nbest, format!("line {i}\n").as_bytes());
        assert_framing_failure(&out);
    }
    let out = w.run(&nbest, b"a\nb\nc\n");
    assert_framing_failure(&out);
}

#[test]
fn a_trailer_after_every_answer_fails_a_call_of_many_records() {
    let w = World::new();
    w.script(
        "trailer.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"$l\"; echo '--'; done\n",
    );
    let input: String = (0..20).map(|i| format!("record {i}\n")).collect();
    for _ in 0..5 {
        let out = w.run(&["run", "./trailer.sh"], input.as_bytes());
        assert_framing_failure(&out);
    }
}

#[test]
fn a_call_after_a_framing_failure_gets_a_fresh_tool() {
    let w = World::new();
    w.script(
        "once.sh",
        "#!/bin/sh\nIFS= read -r l; printf '%s\\n%s\\n' \"$l\" extra\nexec sed -u s/^/ok:/\n",
    );
    assert_framing_failure(&w.run(&["run", "./once.sh"], b"a\n"));
    // The first line of a fresh tool is again answered twice: the broken
    // tool was not kept.
    assert_framing_failure(&w.run(&["run", "./once.sh"], b"b\n"));
}

#[test]
fn a_record_not_answered_within_process_timeout_names_framing() {
    let w = World::new();
    // Answers every second line only.
    w.script(
        "pairs.sh",
        "#!/bin/sh\nwhile IFS= read -r a && IFS= read -r b; do echo \"$a $b\"; done\n",
    );
    let out = w.run(&["run", "-w", "1", "./pairs.sh"], b"a\nb\nc\n");
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    let lines = viasock_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("fewer answers than it reads records"),
        "{lines:?}"
    );
}

/// Answers three records, then exits 0, as a tool with a request limit
/// does (after a moment of clean-up, in which the next call comes).
const RECYCLES: &str = "#!/bin/sh\nn=0\nwhile IFS= read -r l; do echo \"ok $l\"; n=$((n+1)); [ $n -ge 3 ] && { sleep 0.1; exit 0; }; done\n";

#[test]
fn a_tool_that_exits_between_calls_costs_no_call() {
    let w = World::new();
    w.script("recycles.sh", RECYCLES);
    for i in 0..40 {
        let out = w.run(&["run", "./recycles.sh"], format!("{i}\n").as_bytes());
        assert_eq!(ok_stdout(&out), format!("ok {i}\n"), "call {i}");
    }
}

#[test]
fn a_tool_that_exits_between_concurrent_calls_costs_no_call() {
    let w = World::new();
    w.script("recycles.sh", RECYCLES);
    for round in 0..4 {
        // Every other round shares instances record by record.
        let args: &[&str] = if round % 2 == 0 {
            &["run", "-j", "2", "./recycles.sh"]
        } else {
            &["run", "-j", "2", "--interleave", "./recycles.sh"]
        };
        let calls: Vec<_> = (0..10)
            .map(|i| {
                let mut c = w.spawn(args);
                let mut stdin = c.stdin.take().unwrap();
                writeln!(stdin, "{round}.{i}").unwrap();
                (i, c)
            })
            .collect();
        for (i, c) in calls {
            let out = common::finish(c, b"");
            assert_eq!(ok_stdout(&out), format!("ok {round}.{i}\n"));
        }
    }
}

#[test]
fn a_call_longer_than_the_tools_request_limit_goes_on_with_a_fresh_tool() {
    let w = World::new();
    w.script("recycles.sh", RECYCLES);
    let input: String = (0..10).map(|i| format!("{i}\n")).collect();
    let want: String = (0..10).map(|i| format!("ok {i}\n")).collect();
    let out = w.run(&["run", "./recycles.sh"], input.as_bytes());
    assert_eq!(ok_stdout(&out), want);
}

#[test]
fn a_tool_that_dies_on_a_record_still_fails_that_call() {
    let w = World::new();
    w.script(
        "dies.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do [ \"$l\" = bad ] && exit 3; echo \"ok $l\"; done\n",
    );
    let out = w.run(&["run", "./dies.sh"], b"a\nbad\nb\n");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok a\n");
    assert_eq!(ok_stdout(&w.run(&["run", "./dies.sh"], b"c\n")), "ok c\n");
}

#[test]
fn stderr_written_after_a_call_never_reaches_the_next_call() {
    let w = World::new();
    w.script(
        "logs.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"during $l\" >&2; echo \"$l\"; sleep 0.1; echo \"after $l\" >&2; done\n",
    );
    let first = w.run(&["run", "./logs.sh"], b"a\n");
    assert_eq!(ok_stdout(&first), "a\n");
    assert!(String::from_utf8_lossy(&first.stderr).contains("during a"));
    // The next call comes at once, and its record only after the line of
    // the first call was written.
    let mut second = w.spawn(&["run", "./logs.sh"]);
    let mut stdin = second.stdin.take().unwrap();
    assert!(wait_until(Duration::from_secs(10), || w
        .logs()
        .contains("after a")));
    writeln!(stdin, "b").unwrap();
    drop(stdin);
    let second = common::finish(second, b"");
    assert_eq!(ok_stdout(&second), "b\n");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("during b"), "{err}");
    assert!(!err.contains("after a"), "{err}");
    assert!(w.logs().contains("after a"), "the log has it");
}

#[test]
fn a_higher_instances_option_raises_a_running_servers_limit() {
    let w = World::new();
    assert_eq!(
        ok_stdout(&w.run(&["run", "sed", "-u", "s/^/> /"], b"a\n")),
        "> a\n"
    );
    // Three calls at once, each holding its instance: only a server that
    // took on -j 3 answers all three before any of them ends.
    let mut calls = Vec::new();
    for i in 0..3 {
        let mut c = w.spawn(&["run", "-j", "3", "sed", "-u", "s/^/> /"]);
        let mut stdin = c.stdin.take().unwrap();
        writeln!(stdin, "call {i}").unwrap();
        let stdout = c.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20));
        calls.push((KillOnDrop(c), stdin));
        assert_eq!(line.as_deref(), Ok(&*format!("> call {i}\n")), "call {i}");
    }
    // The state file follows within a moment.
    let raised = wait_until(Duration::from_secs(5), || {
        let ls = w.run(&["ls", "--json"], b"");
        let servers: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
        servers[0]["max_instances"] == 3
    });
    assert!(raised, "ls --json shows -j 3");
    assert!(w.logs().contains("-j raised from 1 to 3"), "{}", w.logs());
    drop(calls);
}

#[test]
fn tuning_a_running_server_cannot_take_is_noted_once_in_its_log() {
    let w = World::new();
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"a\n")), "a\n");
    for _ in 0..2 {
        let out = w.run(&["run", "-W", "10", "--interleave", "cat"], b"b\n");
        assert_eq!(ok_stdout(&out), "b\n");
        // Not on a terminal: the caller's stderr stays clean.
        assert!(out.stderr.is_empty(), "{out:?}");
    }
    let logs = w.logs();
    assert_eq!(
        logs.matches(
            "this server was started with -W 60; -W 10 takes effect when a new server starts"
        )
        .count(),
        1,
        "{logs}"
    );
    assert_eq!(
        logs.matches("--interleave takes effect").count(),
        1,
        "{logs}"
    );
    assert_eq!(w.server_pids().len(), 1, "the same server served them");
}

#[test]
fn a_tool_that_buffers_its_output_fails_within_process_timeout_naming_stdbuf() {
    let w = World::new();
    // grep writes to a pipe a block at a time.
    let out = w.run(&["run", "-w", "1", "grep", "x"], b"x\n");
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    let lines = viasock_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("stdbuf -oL"),
        "{lines:?}"
    );
    // The fix it names works.
    let out = w.run(&["run", "-w", "5", "stdbuf", "-oL", "grep", "x"], b"x\n");
    assert_eq!(ok_stdout(&out), "x\n");
}

#[test]
fn a_call_waiting_long_for_an_answer_is_told_why_without_process_timeout() {
    let w = World::new();
    let mut call = w.spawn(&["run", "grep", "x"]);
    writeln!(call.stdin.as_ref().unwrap(), "x").unwrap();
    let told = wait_until(Duration::from_secs(30), || {
        w.logs()
            .contains("no answer for 10 s to a record the tool was given; still waiting")
    });
    let _ = call.kill();
    let _ = call.wait();
    assert!(told, "{}", w.logs());
    assert!(w.logs().contains("stdbuf -oL"));
}

#[test]
fn a_trailer_written_apart_after_reading_ahead_fails_every_call() {
    let w = World::new();
    // Python reads its input a block at a time, so the pipe tells nothing;
    // the trailer comes a moment after the answer, in a write of its own.
    w.script(
        "late_trailer.py",
        "#!/usr/bin/env python3\nimport sys, time\nfor line in sys.stdin:\n    sys.stdout.write(line); sys.stdout.flush()\n    time.sleep(0.005)\n    sys.stdout.write('--\\n'); sys.stdout.flush()\n",
    );
    for input in [&b"a\n"[..], b"a\nb\n", b"a\nb\nc\nd\n"] {
        for _ in 0..3 {
            let out = w.run(&["run", "./late_trailer.py"], input);
            assert_framing_failure(&out);
        }
    }
}

#[test]
fn a_tool_that_polls_its_input_is_served_and_soon_not_waited_for() {
    let w = World::new();
    // Blocks in select(), not in read(): never seen waiting on its input.
    w.script(
        "polls.py",
        "#!/usr/bin/env python3\nimport os, select\nwhile True:\n    select.select([0], [], [])\n    data = os.read(0, 65536)\n    if not data:\n        break\n    os.write(1, data)\n",
    );
    for i in 0..6 {
        let out = w.run(&["run", "./polls.py"], format!("{i}\n").as_bytes());
        assert_eq!(ok_stdout(&out), format!("{i}\n"));
    }
    assert!(
        w.logs()
            .contains("not seen waiting for input after its answers"),
        "{}",
        w.logs()
    );
}

#[test]
fn a_late_trailer_from_a_wrapper_scripts_child_fails_the_call() {
    let w = World::new();
    w.script(
        "late_trailer.py",
        "#!/usr/bin/env python3\nimport sys, time\nfor line in sys.stdin:\n    sys.stdout.write(line); sys.stdout.flush()\n    time.sleep(0.005)\n    sys.stdout.write('--\\n'); sys.stdout.flush()\n",
    );
    // The shell stays in front, waiting for its child, which reads.
    w.script("wrapper.sh", "#!/bin/sh\n./late_trailer.py\n");
    for _ in 0..3 {
        assert_framing_failure(&w.run(&["run", "./wrapper.sh"], b"a\n"));
    }
}

#[test]
fn a_tool_that_exits_many_times_within_one_call_costs_no_record() {
    let w = World::new();
    let input: String = (1..=2000).map(|i| format!("{i}\n")).collect();
    for _ in 0..20 {
        let out = w.run(&["run", "-w", "5", "sed", "-u", "7q"], input.as_bytes());
        assert_eq!(ok_stdout(&out), input);
    }
}
