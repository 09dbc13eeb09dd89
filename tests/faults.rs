//! Fault injection: tools that break the protocol or die in
//! awkward places, clients that go away, servers that are killed, stale or
//! restarted while calls arrive. Real binary, real tool processes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{KillOnDrop, World, ok_stdout, process_alive, signal, viasock_lines, wait_until};

/// The call failed with `code` and exactly one `viasock: ` line, which
/// contains `needle`; returns that line.
#[track_caller]
fn failed_with(out: &Output, code: i32, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let mut lines = viasock_lines(out);
    assert_eq!(lines.len(), 1, "one viasock line wanted: {err}");
    assert!(
        lines[0].contains(needle),
        "{needle:?} not in {:?}",
        lines[0]
    );
    lines.remove(0)
}

/// Pids of the tool processes a server runs (its direct children).
fn tool_pids(server: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn the_server(w: &World) -> u32 {
    let pids = w.server_pids();
    assert_eq!(pids.len(), 1, "one server wanted: {pids:?}");
    pids[0]
}

// ---------------------------------------------------------------- tool faults

/// The tool exits with status 0 after reading a record, before answering
/// it: that is a failure all the same (README: reported as 1).
#[test]
fn tool_exiting_zero_mid_call_fails_the_call_and_the_next_call_works() {
    let w = World::new();
    w.script(
        "quit.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do\n  if [ \"$l\" = quit ]; then exit 0; fi\n  echo \"ok $l\"\ndone\n",
    );
    let out = w.run(&["run", "./quit.sh"], b"a\nquit\nb\n");
    failed_with(&out, 1, "the tool exited");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok a\n");
    assert_eq!(ok_stdout(&w.run(&["run", "./quit.sh"], b"c\n")), "ok c\n");
}

/// Multi-line records: the tool dies after reading half of a record.
#[test]
fn tool_exiting_inside_a_multi_line_record_passes_its_status() {
    let w = World::new();
    w.script(
        "para.sh",
        "#!/bin/sh\nn=0\nwhile IFS= read -r l; do\n  case \"$l\" in\n    crash) exit 9 ;;\n    \
         '') echo \"record of $n lines\"; echo; n=0 ;;\n    *) n=$((n+1)) ;;\n  esac\ndone\n",
    );
    let args = ["run", "-t", "^$", "-T", "^$", "./para.sh"];
    let out = w.run(&args, b"a\nb\n\nc\ncrash\nd\n\n");
    let line = failed_with(&out, 9, "exited with status 9");
    assert!(line.contains("see log"), "{line}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "record of 2 lines\n\n"
    );
    assert_eq!(
        ok_stdout(&w.run(&args, b"x\ny\nz\n\n")),
        "record of 3 lines\n\n"
    );
}

/// The tool kills itself with a signal while it serves: 128 + S.
#[test]
fn tool_killed_by_a_signal_while_serving_gives_128_plus_the_signal() {
    let w = World::new();
    w.script(
        "sig.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do\n  if [ \"$l\" = sig ]; then kill -$1 $$; sleep 5; fi\n  \
         echo \"ok $l\"\ndone\n",
    );
    for (name, num) in [("TERM", 15), ("USR1", 10)] {
        let args = ["run", "./sig.sh", name];
        let out = w.run(&args, b"a\nsig\nb\n");
        failed_with(
            &out,
            128 + num,
            &format!("the tool was killed by signal {num}"),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok a\n");
        assert_eq!(ok_stdout(&w.run(&args, b"c\n")), "ok c\n", "{name}");
    }
}

/// Without `-w`, a hung tool whose client was killed keeps its instance
/// for at most 30 s (the answers owed to the vanished client); meanwhile
/// the server answers control requests, and a later call of the same
/// command is served once the tool was killed and replaced.
#[test]
fn hung_tool_of_a_killed_client_is_replaced_within_bounded_time() {
    let w = World::new();
    w.script(
        "hang.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do\n  if [ \"$l\" = hang ]; then echo \"stuck on $l\" >&2; \
         sleep 777.5; fi\n  echo \"out $l\"\ndone\n",
    );
    let args = ["run", "./hang.sh"];
    assert_eq!(ok_stdout(&w.run(&args, b"warm\n")), "out warm\n");
    let server = the_server(&w);

    let mut gone = w.spawn(&args);
    writeln!(gone.stdin.as_mut().unwrap(), "hang").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || w
            .logs()
            .contains("stderr: stuck on hang")),
        "{}",
        w.logs()
    );
    let gave_up = Instant::now();
    gone.kill().unwrap();
    gone.wait().unwrap();

    // The server itself is fine: control requests and other commands.
    let t = Instant::now();
    let ls = ok_stdout(&w.run(&["ls", "--json"], b""));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "ls took {:?}",
        t.elapsed()
    );
    assert!(ls.contains("hang.sh"), "{ls}");
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"other\n")), "other\n");

    // The same command: a clear outcome (here: its answer) in bounded time.
    let out = w.run(&args, b"fine\n");
    let waited = gave_up.elapsed();
    assert_eq!(ok_stdout(&out), "out fine\n");
    assert!(waited < Duration::from_secs(40), "took {waited:?}");
    assert!(process_alive(server), "the same server served it");
    assert!(w.server_pids().contains(&server));
    assert!(w.logs().contains("killing the tool"), "{}", w.logs());
    assert!(wait_until(Duration::from_secs(5), || {
        !common::command_running("sleep 777.5")
    }));
}

/// A tool that answers each record twice: every call fails with a message
/// on the framing (it cannot be faithful), and no call ever gets an answer
/// that was written for another call.
#[test]
fn tool_answering_twice_never_leaks_into_the_next_call() {
    let w = World::new();
    // One write per record, so both copies arrive together.
    w.script(
        "twice.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do printf '%s\\n%s\\n' \"$l\" \"$l\"; done\n",
    );
    let args = ["run", "./twice.sh"];
    for i in 0..5 {
        let input = format!("call {i}\n");
        let out = w.run(&args, input.as_bytes());
        failed_with(&out, 1, "more answer record");
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(got.lines().all(|l| l == input.trim_end()), "{got:?}");
    }
    // Several records: what comes back is the call's own output, nothing
    // of others, and the call fails.
    let out = w.run(&args, b"p\nq\nr\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(got.lines().all(|l| ["p", "q", "r"].contains(&l)), "{got:?}");
    let out = w.run(&args, b"after\n");
    failed_with(&out, 1, "more answer record");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .all(|l| l == "after")
    );
}

/// An extra answer that comes after its call ended, while the tool is
/// idle, retires the tool before the next call.
#[test]
fn late_extra_answer_while_idle_retires_the_tool_before_the_next_call() {
    let w = World::new();
    w.script(
        "late.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"$l\"; sleep 0.2; echo \"late $l\"; done\n",
    );
    let args = ["run", "./late.sh"];
    assert_eq!(ok_stdout(&w.run(&args, b"a\n")), "a\n");
    assert!(
        wait_until(Duration::from_secs(5), || w
            .logs()
            .contains("nobody asked for")),
        "{}",
        w.logs()
    );
    assert_eq!(ok_stdout(&w.run(&args, b"b\n")), "b\n");
    assert!(w.logs().matches("tool started").count() >= 2);
}

/// A tool that skips a record, with `-w 1`: 124 within a few seconds.
#[test]
fn tool_answering_fewer_records_times_out_with_124() {
    let w = World::new();
    w.script(
        "skip.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do\n  if [ \"$l\" = skip ]; then continue; fi\n  \
         echo \"out $l\"\ndone\n",
    );
    let args = ["run", "-w", "1", "./skip.sh"];
    let start = Instant::now();
    let out = w.run(&args, b"a\nskip\n");
    let took = start.elapsed();
    failed_with(&out, 124, "did not answer");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out a\n");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(ok_stdout(&w.run(&args, b"c\n")), "out c\n");
}

/// A partial answer (no newline), then the tool dies: the call gets the
/// tool's status; the partial bytes never show up in a later call.
#[test]
fn partial_answer_then_death_is_not_given_to_a_later_call() {
    let w = World::new();
    w.script(
        "part.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do\n  case \"$l\" in\n    \
         part) printf 'partial-bytes'; exit 5 ;;\n    \
         last) echo \"out $l\"; sleep 0.2; printf 'junk-bytes'; exit 6 ;;\n  esac\n  echo \"out $l\"\ndone\n",
    );
    let args = ["run", "./part.sh"];
    let out = w.run(&args, b"a\npart\n");
    failed_with(&out, 5, "exited with status 5");
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(got == "out a\n" || got == "out a\npartial-bytes", "{got:?}");
    assert_eq!(ok_stdout(&w.run(&args, b"b\n")), "out b\n");

    // The partial bytes come after a complete answer, once the call is
    // over (its whole input, end included, goes with the greeting): the
    // tool dies idle, and the next call gets a new tool once the server
    // has seen the end (before that, a call would be given to the tool and
    // share its fate, as if it had run the tool directly).
    let input = w.write("last.txt", "last\n");
    let out = w
        .cmd(&args)
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .unwrap();
    assert_eq!(ok_stdout(&out), "out last\n");
    assert!(
        wait_until(Duration::from_secs(5), || w
            .logs()
            .contains("exited with status 6")),
        "{}",
        w.logs()
    );
    assert_eq!(ok_stdout(&w.run(&args, b"c\n")), "out c\n");
    assert_eq!(ok_stdout(&w.run(&args, b"d\n")), "out d\n");
}

/// 20 MB of stderr while answering: the answers are right, the server
/// stays, the log rotates at 10 MiB and goes on after rotation.
#[test]
fn stderr_flood_is_logged_with_rotation_and_the_call_succeeds() {
    let w = World::new();
    // 200,000 whole lines of 100 bytes.
    let line = "e".repeat(99);
    w.script(
        "flood.sh",
        &format!(
            "#!/bin/sh\nwhile IFS= read -r l; do\n  case \"$l\" in\n    \
             flood) yes '{line}' | head -c 20000000 >&2 ;;\n    \
             note) echo 'noted after the flood' >&2 ;;\n  esac\n  echo \"out $l\"\ndone\n"
        ),
    );
    let args = ["run", "./flood.sh"];
    let out = w.run(&args, b"a\nflood\nb\n");
    assert_eq!(ok_stdout(&out), "out a\nout flood\nout b\n");
    let server = the_server(&w);
    assert_eq!(ok_stdout(&w.run(&args, b"c\n")), "out c\n");
    assert_eq!(the_server(&w), server, "the same server");

    let logs = w.state.join("logs");
    let id = w.sockets()[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let rotated = logs.join(format!("{id}.log.1"));
    assert!(
        wait_until(Duration::from_secs(10), || rotated.exists()),
        "no {rotated:?}"
    );
    let mut total = 0;
    for e in std::fs::read_dir(&logs).unwrap().flatten() {
        let len = e.metadata().unwrap().len();
        total += len;
        assert!(
            len <= (10 << 20) + (128 << 10),
            "{:?} has {len} bytes",
            e.path()
        );
    }
    assert!(total >= 20 << 20, "only {total} bytes of log");
    assert!(
        !logs.join(format!("{id}.log.4")).exists(),
        "three old files are kept"
    );
    // The current log goes on after rotation; and the next call gets its
    // own stderr line, nothing of the flood.
    let out = w.run(&args, b"note\n");
    assert_eq!(ok_stdout(&out), "out note\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "noted after the flood\n"
    );
    let current = logs.join(format!("{id}.log"));
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&current)
            .unwrap_or_default()
            .contains("stderr: noted after the flood")),
        "the server still logs"
    );
    assert_eq!(the_server(&w), server);
}

/// The tool closes its stdout but lives on: the call fails clearly,
/// without hanging, and the next call gets a fresh tool.
#[test]
fn tool_closing_its_stdout_fails_the_call_without_a_hang() {
    let w = World::new();
    w.script(
        "close.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do\n  if [ \"$l\" = close ]; then exec >&-; \
         while IFS= read -r l; do :; done; fi\n  echo \"out $l\"\ndone\n",
    );
    let args = ["run", "./close.sh"];
    let start = Instant::now();
    let out = w.run(&args, b"a\nclose\nb\n");
    let took = start.elapsed();
    assert!(!out.status.success());
    let line = failed_with(&out, 1, "closed its input or output");
    assert!(line.contains("see log"), "{line}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out a\n");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(ok_stdout(&w.run(&args, b"c\n")), "out c\n");
}

/// The tool closes its stdin but lives on, while the call still has
/// records to send: the call fails clearly instead of waiting for answers
/// to records the tool can no longer read.
#[test]
fn tool_closing_its_stdin_fails_the_call_without_a_hang() {
    let w = World::new();
    w.script(
        "deaf.sh",
        "#!/bin/sh\nIFS= read -r l; echo \"out $l\"\nexec 0<&-\nsleep 60\n",
    );
    let args = ["run", "./deaf.sh"];
    // More than a pipe holds, so that writing meets the closed end.
    let input: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
    let out = w.run(&args, input.as_bytes());
    let line = failed_with(&out, 1, "closed its input or output");
    assert!(line.contains("see log"), "{line}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out line 0\n");
    assert_eq!(ok_stdout(&w.run(&args, b"c\n")), "out c\n");
}

/// The tool closes its stdin with records of the call unread in its pipe,
/// all written before it closed, so that no later write meets the closed
/// end: the call still fails within seconds, not after a minute.
#[test]
fn tool_closing_its_stdin_with_records_in_its_pipe_fails_the_call() {
    let w = World::new();
    w.script(
        "deaf.sh",
        "#!/bin/sh\nIFS= read -r l; echo \"out $l\"\nexec 0<&-\nsleep 60\n",
    );
    let args = ["run", "./deaf.sh"];
    let start = Instant::now();
    let out = common::finish_within(w.spawn(&args), b"a\nb\nc\n", Duration::from_secs(30));
    let took = start.elapsed();
    let line = failed_with(&out, 1, "closed its input or output");
    assert!(line.contains("see log"), "{line}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out a\n");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(ok_stdout(&w.run(&args, b"c\n")), "out c\n");
}

/// A tool that loads for 30 s and then fails, while three calls wait
/// for it: each gets status 1 and the tool's error.
#[test]
fn slow_failing_start_reaches_every_waiting_client() {
    let w = World::new();
    w.script(
        "slowfail.sh",
        "#!/bin/sh\nsleep 30\necho 'fatal: model file is corrupt' >&2\nexit 1\n",
    );
    let args = ["run", "-P", "1", "./slowfail.sh"];
    let start = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let c = w.spawn(&args);
            std::thread::spawn(move || common::finish(c, format!("call {i}\n").as_bytes()))
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(20), || w.calls_waiting() == 2),
        "{}",
        w.logs()
    );
    for c in calls {
        let out = c.join().unwrap();
        let line = failed_with(&out, 1, "fatal: model file is corrupt");
        assert!(line.contains("exited with status 1"), "{line}");
        assert!(out.stdout.is_empty());
    }
    assert!(start.elapsed() >= Duration::from_secs(29));
    assert_eq!(w.logs().matches("tool started").count(), 1, "{}", w.logs());
}

// -------------------------------------------------------------- client faults

/// Empty input, and stdin closed before anything was sent.
#[test]
fn empty_or_closed_stdin_is_an_empty_successful_call() {
    let w = World::new();
    // Cold: the call that starts the server has nothing to send.
    let out = w.run(&["run", "cat"], b"");
    assert_eq!(ok_stdout(&out), "");
    assert!(out.stderr.is_empty(), "{out:?}");
    // Custom terminator: no input is no unfinished record.
    assert_eq!(ok_stdout(&w.run(&["run", "-t", "^$", "cat"], b"")), "");
    // With a prelude, the prelude is all there is to get.
    w.script(
        "banner.sh",
        "#!/bin/sh\nsleep 0.3\necho ready\nexec sed -u 's/^/: /'\n",
    );
    assert_eq!(
        ok_stdout(&w.run(&["run", "-P", "1", "./banner.sh"], b"")),
        "ready\n"
    );
    // stdin closed while the tool still loads.
    w.script("slow.sh", "#!/bin/sh\nsleep 0.5\nexec cat\n");
    let c = w.spawn(&["run", "./slow.sh"]);
    assert_eq!(ok_stdout(&common::finish(c, b"")), "");
    // A closed descriptor 0 (not even a pipe).
    let out = Command::new("sh")
        .args(["-c", "exec <&-; exec \"$0\" run cat", common::BIN])
        .current_dir(&w.work)
        .env("VIASOCK_DIR", &w.state)
        .env("XDG_RUNTIME_DIR", w.tmp.path())
        .output()
        .unwrap();
    assert_eq!(ok_stdout(&out), "");
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"x\n")), "x\n");
}

/// `| head -1`: only the first line, a quiet 141, a healthy server.
#[test]
fn closed_stdout_ends_quietly_with_141_and_the_server_stays_healthy() {
    let w = World::new();
    let script = "seq 100000 | \"$VIASOCK\" run cat 2>vs.err | head -1\n\
                  echo \"status ${PIPESTATUS[1]}\" >&2\n";
    let mut server = None;
    for round in 0..3 {
        let out = Command::new("bash")
            .args(["-c", script])
            .current_dir(&w.work)
            .env("VIASOCK", common::BIN)
            .env("VIASOCK_DIR", &w.state)
            .env("XDG_RUNTIME_DIR", w.tmp.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n", "round {round}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "status 141\n",
            "round {round}"
        );
        let err = std::fs::read_to_string(w.work.join("vs.err")).unwrap();
        assert_eq!(err, "", "viasock is quiet, round {round}");
        let now = the_server(&w);
        assert_eq!(*server.get_or_insert(now), now, "the same server");
        // Nothing of the abandoned call reaches the next one.
        let want: String = (1..=5).map(|i| format!("{i}\n")).collect();
        assert_eq!(ok_stdout(&w.run(&["run", "cat"], want.as_bytes())), want);
    }
}

/// Ctrl-C (SIGINT to the caller's process group) while the call waits
/// for the one instance: the caller ends, the holder is not disturbed,
/// the server goes on.
#[test]
fn ctrl_c_while_waiting_for_an_instance_costs_nothing() {
    let w = World::new();
    w.script(
        "echo.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do sleep 0.05; echo \"out $l\"; done\n",
    );
    let args = ["run", "-j", "1", "./echo.sh"];
    let mut holder = w.spawn(&args);
    let mut holder_in = holder.stdin.take().unwrap();
    writeln!(holder_in, "first").unwrap();
    let mut holder_out = BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    holder_out.read_line(&mut line).unwrap();
    assert_eq!(line, "out first\n");
    let server = the_server(&w);

    let mut waiter = w
        .cmd(&args)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(waiter.stdin.as_mut().unwrap(), "never").unwrap();
    assert!(wait_until(Duration::from_secs(10), || w.calls_waiting() == 1));
    signal(-(waiter.id() as i64), "INT");
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            status = waiter.try_wait().unwrap();
            status.is_some()
        }),
        "the waiting call ends on Ctrl-C"
    );
    assert!(!status.unwrap().success());
    let out = waiter.wait_with_output().unwrap();
    assert!(out.stdout.is_empty(), "{out:?}");

    writeln!(holder_in, "second").unwrap();
    drop(holder_in);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut holder_out, &mut rest).unwrap();
    assert!(holder.wait().unwrap().success());
    assert_eq!(rest, "out second\n");
    assert_eq!(ok_stdout(&w.run(&args, b"after\n")), "out after\n");
    assert_eq!(the_server(&w), server);
    assert!(!w.logs().contains("stopping"), "{}", w.logs());
    assert_eq!(w.logs().matches("tool started").count(), 1);
}

/// Ctrl-C on the call that started the server, while the tool still
/// loads: the server (in its own session) is not hit, and its tool serves
/// the next call.
#[test]
fn ctrl_c_during_the_cold_start_leaves_the_server_running() {
    let w = World::new();
    w.script("slow.sh", "#!/bin/sh\nsleep 1\nexec sed -u 's/^/> /'\n");
    let mut first = w
        .cmd(&["run", "./slow.sh"])
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(first.stdin.as_mut().unwrap(), "lost").unwrap();
    assert!(wait_until(Duration::from_secs(10), || w
        .logs()
        .contains("tool started")));
    let server = the_server(&w);
    signal(-(first.id() as i64), "INT");
    assert!(wait_until(Duration::from_secs(5), || first
        .try_wait()
        .unwrap()
        .is_some()));
    assert_eq!(ok_stdout(&w.run(&["run", "./slow.sh"], b"x\n")), "> x\n");
    assert_eq!(the_server(&w), server, "the same server");
    assert_eq!(w.logs().matches("tool started").count(), 1, "{}", w.logs());
}

// -------------------------------------------------------------- server faults

/// Kill -9 of the tool while a call streams through it: 137 and a
/// message for that call; the next call works.
#[test]
fn tool_killed_with_sigkill_mid_stream_gives_137() {
    let w = World::new();
    let mut c = w.spawn(&["run", "cat"]);
    let mut stdin = c.stdin.take().unwrap();
    let mut stdout = BufReader::new(c.stdout.take().unwrap());
    writeln!(stdin, "a").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "a\n");
    let server = the_server(&w);
    let tools = tool_pids(server);
    assert_eq!(tools.len(), 1, "{tools:?}");
    signal(tools[0] as i64, "KILL");
    // The call ends though its stdin is still open.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
    let status = c.wait().unwrap();
    drop(stdin);
    assert_eq!(rest, "");
    assert_eq!(status.code(), Some(137), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("viasock: the tool was killed by signal 9"),
        "{err}"
    );
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"b\n")), "b\n");
    assert_eq!(the_server(&w), server);
}

/// A log that cannot be written (its path goes through a regular
/// file, which stops root too; or a read-only directory) costs the log,
/// not the service: one warning line from the call that starts the
/// server, quiet calls after it, the tool's stderr still reaches callers,
/// and `logs` says clearly that there is no log. (`-l /proc/...` is in
/// lifecycle.rs.)
#[test]
fn unwritable_log_path_warns_once_and_serving_goes_on() {
    let w = World::new();
    w.write("afile", "not a directory");
    w.script(
        "chatty.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"note: $l\" >&2; echo \"out $l\"; done\n",
    );
    let args = ["run", "-l", "afile/x.log", "./chatty.sh"];
    let out = w.run(&args, b"x\n");
    assert_eq!(ok_stdout(&out), "out x\n");
    let warnings = viasock_lines(&out);
    assert_eq!(warnings.len(), 1, "{out:?}");
    assert!(
        warnings[0].starts_with("viasock: warning: cannot write log ")
            && warnings[0].contains("afile/x.log"),
        "{warnings:?}"
    );
    let server = the_server(&w);
    let out = w.run(&args, b"y\n");
    assert_eq!(ok_stdout(&out), "out y\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "note: y\n");
    assert_eq!(the_server(&w), server);
    let id = w.sockets()[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let logs = w.run(&["logs", &id[..8]], b"");
    failed_with(&logs, 1, "afile/x.log");

    // A read-only log directory: the same warning, unless permissions do
    // not bind us (root); serving goes on either way.
    use std::os::unix::fs::PermissionsExt;
    let ro = w.work.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
    let out = w.run(&["run", "-l", "ro/x.log", "cat"], b"z\n");
    assert_eq!(ok_stdout(&out), "z\n");
    if common::running_as_root() {
        assert!(out.stderr.is_empty(), "{out:?}");
    } else {
        assert!(
            viasock_lines(&out)[0].contains("cannot write log"),
            "{out:?}"
        );
    }
    assert_eq!(w.server_pids().len(), 2);
}

/// `serve` in the foreground with an unwritable log logs to its stderr
/// instead, and serves.
#[test]
fn foreground_server_with_an_unwritable_log_logs_to_stderr() {
    let w = World::new();
    w.write("afile", "not a directory");
    let mut server = KillOnDrop(
        w.cmd(&[
            "serve",
            "-l",
            "afile/x.log",
            "--socket",
            "my.sock",
            "--",
            "sed",
            "-u",
            "s/^/served /",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut log = BufReader::new(server.0.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("listening at") {
        let mut line = String::new();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "server ended: {seen}"
        );
        seen.push_str(&line);
    }
    assert!(seen.contains("cannot write log"), "{seen}");
    assert_eq!(
        ok_stdout(&w.run(&["client", "my.sock"], b"x\n")),
        "served x\n"
    );
    signal(server.0.id() as i64, "INT");
    assert!(server.0.wait().unwrap().success());
}

// --------------------------------------------------------------------- races

const MODEL_TOOL: &str =
    "#!/bin/sh\nm=$(cat \"$1\")\nwhile IFS= read -r l; do printf '%s %s\\n' \"$m\" \"$l\"; done\n";

const VERSIONS: [&str; 4] = ["v0", "model-v1", "model-version-2", "model-version-three"];

/// A finished call of a race test.
struct Call {
    start: Instant,
    end: Instant,
    input: String,
    out: Output,
}

/// Sets `stop` when dropped. Held by the body of a `thread::scope` that
/// runs [`call_loop`]s: a failed assertion in it unwinds through this
/// guard, which ends the loops, instead of leaving the scope waiting for
/// them forever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs `args` in a loop on `threads` threads until `stop`, counting the
/// calls done in `done`.
fn call_loop<'a>(
    scope: &'a std::thread::Scope<'a, '_>,
    w: &'a World,
    args: &'a [&'a str],
    threads: usize,
    records: usize,
    stop: &'a AtomicBool,
    done: &'a AtomicUsize,
) -> Vec<std::thread::ScopedJoinHandle<'a, Vec<Call>>> {
    (0..threads)
        .map(|t| {
            scope.spawn(move || {
                let mut calls = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let input: String = (0..records).map(|r| format!("t{t} c{i} r{r}\n")).collect();
                    let start = Instant::now();
                    let out = w.run(args, input.as_bytes());
                    calls.push(Call {
                        start,
                        end: Instant::now(),
                        input,
                        out,
                    });
                    done.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
                calls
            })
        })
        .collect()
}

/// Calls keep coming while the model file changes under the server.
/// A call started after a change gets the new model; one that overlaps a
/// change gets the old or the new one; none fails or hangs.
#[test]
fn calls_racing_model_edits_never_get_an_outdated_model() {
    let w = World::new();
    w.script("tool.sh", MODEL_TOOL);
    let write_model = |v: &str| {
        let tmp = w.work.join("model.tmp");
        std::fs::write(&tmp, v).unwrap();
        std::fs::rename(&tmp, w.work.join("model.txt")).unwrap();
    };
    write_model(VERSIONS[0]);
    let args = ["run", "./tool.sh", "model.txt"];
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let edits: Mutex<Vec<(Instant, Instant)>> = Mutex::new(Vec::new());
    let calls: Vec<Call> = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let loops = call_loop(s, &w, &args, 2, 1, &stop, &done);
        for (k, v) in VERSIONS.iter().enumerate().skip(1) {
            assert!(wait_until(Duration::from_secs(30), || done
                .load(Ordering::SeqCst)
                >= 8 * k));
            let began = Instant::now();
            write_model(v);
            edits.lock().unwrap().push((began, Instant::now()));
        }
        let n = done.load(Ordering::SeqCst);
        assert!(wait_until(Duration::from_secs(30), || done
            .load(Ordering::SeqCst)
            >= n + 8));
        stop.store(true, Ordering::SeqCst);
        loops.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let edits = edits.into_inner().unwrap();
    let mut after_last = 0;
    for c in &calls {
        let got = ok_stdout(&c.out);
        let (model, rest) = got.split_once(' ').expect("model and line");
        assert_eq!(rest, c.input);
        let version = VERSIONS.iter().position(|v| *v == model).unwrap();
        // Edits done before the call began must show; edits begun after
        // it ended cannot.
        let lo = edits.iter().filter(|(_, d)| *d <= c.start).count();
        let hi = edits.iter().filter(|(b, _)| *b <= c.end).count();
        assert!(
            (lo..=hi).contains(&version),
            "call {:?} got {model:?}, allowed versions {lo}..={hi}",
            c.input
        );
        assert!(c.end - c.start < Duration::from_secs(15), "a call hung");
        if lo == edits.len() {
            after_last += 1;
        }
    }
    assert!(after_last >= 4, "{after_last} calls after the last edit");
}

/// A call streaming when its server goes stale finishes on the old
/// model, while calls made after the change get the new one.
#[test]
fn call_in_flight_when_the_server_goes_stale_finishes_on_the_old_model() {
    let w = World::new();
    w.script("tool.sh", MODEL_TOOL);
    let write_model = |v: &str| {
        let tmp = w.work.join("model.tmp");
        std::fs::write(&tmp, v).unwrap();
        std::fs::rename(&tmp, w.work.join("model.txt")).unwrap();
    };
    write_model("old");
    let args = ["run", "./tool.sh", "model.txt"];
    let mut long = w.spawn(&args);
    let mut long_in = long.stdin.take().unwrap();
    let mut long_out = BufReader::new(long.stdout.take().unwrap());
    writeln!(long_in, "a").unwrap();
    let mut line = String::new();
    long_out.read_line(&mut line).unwrap();
    assert_eq!(line, "old a\n");
    let old_server = the_server(&w);

    write_model("brand-new");
    assert!(
        wait_until(Duration::from_secs(10), || w.logs().contains("stale")),
        "{}",
        w.logs()
    );
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "brand-new x\n");
    writeln!(long_in, "b").unwrap();
    drop(long_in);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut long_out, &mut rest).unwrap();
    assert!(long.wait().unwrap().success());
    assert_eq!(rest, "old b\n");
    assert!(
        wait_until(Duration::from_secs(5), || !process_alive(old_server)),
        "the stale server exits once its call is over"
    );
    assert_eq!(ok_stdout(&w.run(&args, b"y\n")), "brand-new y\n");
}

/// A call that outlasts the shutdown grace (10 s) of `kill` is cut
/// with a message, keeping what it was answered; `kill --force` cuts at
/// once. Neither leaves the caller hanging.
#[test]
fn calls_outlasting_a_kill_are_cut_with_a_message() {
    for force in [true, false] {
        let w = World::new();
        let args = ["run", "sed", "-u", "s/^/> /"];
        let mut long = w.spawn(&args);
        let mut long_in = long.stdin.take().unwrap();
        let mut long_out = BufReader::new(long.stdout.take().unwrap());
        writeln!(long_in, "a").unwrap();
        let mut line = String::new();
        long_out.read_line(&mut line).unwrap();
        assert_eq!(line, "> a\n");
        let server = the_server(&w);
        let start = Instant::now();
        let kill = if force {
            w.spawn(&["kill", "--all", "--force"])
        } else {
            w.spawn(&["kill", "--all"])
        };
        if !force {
            // Still served during the grace period.
            assert!(wait_until(Duration::from_secs(5), || w
                .logs()
                .contains("stopping")));
            writeln!(long_in, "b").unwrap();
            line.clear();
            long_out.read_line(&mut line).unwrap();
            assert_eq!(line, "> b\n");
        }
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut long_out, &mut rest).unwrap();
        let out = common::finish(long, b"");
        let took = start.elapsed();
        drop(long_in);
        assert_eq!(rest, "");
        assert!(!out.status.success(), "force {force}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("viasock: "), "{err}");
        let why = if force {
            "the server was stopped"
        } else {
            "outlasted its shutdown grace"
        };
        assert!(err.contains(why), "{err}");
        let limit = if force { 5 } else { 16 };
        assert!(took < Duration::from_secs(limit), "force {force}: {took:?}");
        assert!(common::finish(kill, b"").status.success());
        assert!(!process_alive(server));
    }
}

/// `kill --all` (graceful and forced) while calls keep coming: every
/// call succeeds, or fails with one `viasock:` line; none hangs.
#[test]
fn calls_racing_kill_all_succeed_or_fail_cleanly() {
    let w = World::new();
    w.script(
        "echo.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do sleep 0.01; echo \"out $l\"; done\n",
    );
    let args = ["run", "./echo.sh"];
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let calls: Vec<Call> = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let loops = call_loop(s, &w, &args, 3, 5, &stop, &done);
        for k in 0..6 {
            assert!(wait_until(Duration::from_secs(30), || done
                .load(Ordering::SeqCst)
                >= 4 * (k + 1)));
            let kill = if k % 2 == 0 {
                w.run(&["kill", "--all"], b"")
            } else {
                w.run(&["kill", "--all", "--force"], b"")
            };
            assert!(
                kill.status.success(),
                "kill #{k}: {}",
                String::from_utf8_lossy(&kill.stderr)
            );
        }
        let n = done.load(Ordering::SeqCst);
        assert!(wait_until(Duration::from_secs(30), || done
            .load(Ordering::SeqCst)
            >= n + 3));
        stop.store(true, Ordering::SeqCst);
        loops.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut failed = 0;
    for c in &calls {
        assert!(c.end - c.start < Duration::from_secs(20), "a call hung");
        if c.out.status.success() {
            let want: String = c.input.lines().map(|l| format!("out {l}\n")).collect();
            assert_eq!(String::from_utf8_lossy(&c.out.stdout), want);
            assert!(c.out.stderr.is_empty(), "{:?}", c.out);
        } else {
            failed += 1;
            let err = String::from_utf8_lossy(&c.out.stderr);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.starts_with("viasock: "), "{err}");
        }
    }
    assert!(
        calls.len() - failed >= calls.len() / 2,
        "{failed} of {} calls failed",
        calls.len()
    );
    // The last calls were made after every kill: the command still works.
    assert_eq!(ok_stdout(&w.run(&args, b"end\n")), "out end\n");
}

/// `restart` while calls keep coming: nobody sees an error.
#[test]
fn calls_racing_restarts_all_succeed() {
    let w = World::new();
    w.script(
        "echo.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do sleep 0.01; echo \"out $l\"; done\n",
    );
    let args = ["run", "./echo.sh"];
    ok_stdout(&w.run(&args, b"warm\n"));
    let server = the_server(&w);
    let id = w.sockets()[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let calls: Vec<Call> = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let loops = call_loop(s, &w, &args, 3, 5, &stop, &done);
        for k in 0..8 {
            assert!(wait_until(Duration::from_secs(30), || done
                .load(Ordering::SeqCst)
                >= 3 * (k + 1)));
            let r = w.run(&["restart", &id[..8]], b"");
            assert!(
                r.status.success(),
                "restart #{k}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
        }
        let n = done.load(Ordering::SeqCst);
        assert!(wait_until(Duration::from_secs(30), || done
            .load(Ordering::SeqCst)
            >= n + 3));
        stop.store(true, Ordering::SeqCst);
        loops.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    for c in &calls {
        let want: String = c.input.lines().map(|l| format!("out {l}\n")).collect();
        assert_eq!(ok_stdout(&c.out), want);
        assert!(c.end - c.start < Duration::from_secs(15), "a call hung");
    }
    assert_eq!(the_server(&w), server, "the same server throughout");
    assert!(w.logs().matches("restarting the tool").count() >= 8);
}
