//! Faults of the machine around a server: signals, absurd values, a
//! state directory removed under it, a server that stops answering.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use common::{World, ok_stdout, process_alive, signal, viasock_lines, wait_until};

#[test]
fn absurd_durations_are_usage_errors_and_human_ones_work() {
    let w = World::new();
    for args in [
        ["run", "-W", "1e12"],
        ["run", "-w", "1e19"],
        ["run", "-W", "inf"],
        ["run", "-w", "soon"],
    ] {
        let all: Vec<&str> = args.iter().copied().chain(["cat"]).collect();
        let out = w.run(&all, b"a\n");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(w.server_pids().is_empty(), "{args:?} started a server");
    }
    // The largest values work: a server that idles out after a century.
    let out = w.run(
        &["run", "-W", "3000000000", "-w", "3000000000", "cat"],
        b"a\n",
    );
    assert_eq!(ok_stdout(&out), "a\n");
    let out = w.run(
        &["run", "-W", "10m", "-w", "90s", "sed", "-u", "s/b/c/"],
        b"b\n",
    );
    assert_eq!(ok_stdout(&out), "c\n");
    let json = ok_stdout(&w.run(&["ls", "--json"], b""));
    assert!(json.contains("\"idle_timeout_s\": 600.0"), "{json}");
}

#[test]
fn hangup_and_quit_stop_a_server_as_term_does() {
    let w = World::new();
    for (sig, tool) in [("HUP", "s/a/h/"), ("QUIT", "s/a/q/")] {
        let out = w.run(&["run", "sed", "-u", tool], b"a\n");
        assert!(out.status.success(), "{out:?}");
        let server = w.server_pids()[0];
        signal(server.into(), sig);
        assert!(
            wait_until(Duration::from_secs(10), || !process_alive(server)),
            "SIG{sig} did not stop the server"
        );
        assert!(w.sockets().is_empty(), "SIG{sig}: the socket is left");
        assert!(w.logs().contains("stopping (signal)"), "{}", w.logs());
    }
}

#[test]
fn a_server_whose_state_directory_is_removed_stops() {
    let w = World::new();
    assert_eq!(ok_stdout(&w.run(&["run", "-W", "0", "cat"], b"a\n")), "a\n");
    let old = w.server_pids()[0];
    std::fs::remove_dir_all(&w.state).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !process_alive(old)),
        "a server without a socket lives on"
    );
    // The next call starts one fresh server, the only one ls knows.
    assert_eq!(ok_stdout(&w.run(&["run", "-W", "0", "cat"], b"b\n")), "b\n");
    assert_eq!(w.server_pids().len(), 1);
    let json: serde_json::Value =
        serde_json::from_str(&ok_stdout(&w.run(&["ls", "--json"], b""))).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
}

/// Stops a server with SIGSTOP; `kill --force` must clean it up.
fn stop_the_server(w: &World) -> u32 {
    let server = w.server_pids()[0];
    signal(server.into(), "STOP");
    server
}

#[test]
fn a_stopped_server_fails_a_call_and_shows_as_unresponsive() {
    let w = World::new();
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"a\n")), "a\n");
    let server = stop_the_server(&w);
    let began = Instant::now();
    // The same command (-w would be another server): the handshake alone
    // is bounded.
    let out = w.run(&["run", "cat"], b"b\n");
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    let lines = viasock_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("did not answer within 10 s"),
        "{lines:?}"
    );
    let table = ok_stdout(&w.run(&["ls"], b""));
    assert!(table.contains("unresponsive"), "{table}");
    let out = w.run(&["kill", "--force", "--all"], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(!process_alive(server));
    assert!(w.sockets().is_empty());
}

#[test]
fn a_server_stopped_mid_call_fails_the_call_under_w() {
    let w = World::new();
    let mut call = w.spawn(&["run", "-w", "2", "sed", "-u", "s/^/> /"]);
    let mut stdin = call.stdin.take().unwrap();
    let mut stdout = BufReader::new(call.stdout.take().unwrap());
    writeln!(stdin, "one").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "> one\n");
    let server = stop_the_server(&w);
    let began = Instant::now();
    writeln!(stdin, "two").unwrap();
    let out = common::finish_within(call, b"", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    let lines = viasock_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("the server said nothing for 10 s (-w)"),
        "{lines:?}"
    );
    let out = w.run(&["kill", "--force", "--all"], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(!process_alive(server));
}

#[test]
fn a_call_waiting_long_for_a_busy_instance_is_not_taken_for_a_wedged_server() {
    let w = World::new();
    w.script(
        "slow.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do sleep 12; echo \"$l\"; done\n",
    );
    // The first call holds the one instance for 12 s; the second waits
    // for it longer than the client's silence bound, hearing keepalives.
    let first = w.spawn(&["run", "-w", "20", "./slow.sh"]);
    assert!(wait_until(Duration::from_secs(10), || w
        .logs()
        .contains("tool started")));
    let second = w.spawn(&["run", "-w", "20", "./slow.sh"]);
    let a = common::finish_within(first, b"a\n", Duration::from_secs(60));
    let b = common::finish_within(second, b"b\n", Duration::from_secs(60));
    assert_eq!(ok_stdout(&a), "a\n");
    assert_eq!(ok_stdout(&b), "b\n");
}

#[test]
fn tools_die_with_a_server_killed_by_sigkill() {
    let w = World::new();
    // A tool that outlives the end of its input, as a JVM with a thread
    // that never ends does.
    w.script("lingers.sh", "#!/bin/sh\nsed -u s/a/b/\nexec sleep 4321\n");
    assert_eq!(
        ok_stdout(&w.run(&["run", "-j", "2", "./lingers.sh"], b"a\n")),
        "b\n"
    );
    let server = w.server_pids()[0];
    signal(server.into(), "KILL");
    assert!(wait_until(Duration::from_secs(5), || !process_alive(
        server
    )));
    assert!(
        wait_until(Duration::from_secs(5), || !common::command_running(
            "sleep 4321"
        )),
        "the tool outlived its server"
    );
    assert!(!common::command_running("./lingers.sh"));
}

/// A small file system of its own, filled up: a tmpfs mounted in the
/// world (which needs root, as CI runs). `None`, with the reason printed,
/// where it cannot be mounted.
struct FullDisk {
    path: std::path::PathBuf,
}

impl FullDisk {
    fn new(w: &World) -> Option<Self> {
        if !common::running_as_root() {
            eprintln!("skipped: mounting a small file system needs root");
            return None;
        }
        let path = w.tmp.path().join("full");
        std::fs::create_dir(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k,nr_inodes=64", "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here");
            return None;
        }
        let disk = Self { path };
        disk.fill();
        Some(disk)
    }

    /// Fills every block (and, with `inodes`, every inode).
    fn fill(&self) {
        let _ = std::fs::write(self.path.join("blocks"), vec![b'x'; 1 << 20]);
    }

    fn fill_inodes(&self) {
        for i in 0.. {
            if std::fs::File::create(self.path.join(format!("inode{i}"))).is_err() {
                break;
            }
        }
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.path.join("blocks"));
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[test]
fn a_full_disk_under_the_log_costs_the_log_not_the_calls() {
    let w = World::new();
    let Some(disk) = FullDisk::new(&w) else {
        return;
    };
    w.script(
        "chatty.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"note about $l\" >&2; echo \"$l\"; done\n",
    );
    let log = disk.path.join("server.log");
    let log_arg = log.to_str().unwrap();
    let began = Instant::now();
    for i in 0..30 {
        let input = format!("line {i}\n");
        let out = w.run(
            &["run", "-w", "5", "-l", log_arg, "./chatty.sh"],
            input.as_bytes(),
        );
        assert_eq!(ok_stdout(&out), input, "call {i}");
    }
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "{:?}",
        began.elapsed()
    );
    let dropped = || {
        let json: serde_json::Value =
            serde_json::from_str(&ok_stdout(&w.run(&["ls", "--json"], b""))).unwrap();
        json[0]["log_lines_dropped"].as_u64().unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(5), || dropped() > 0),
        "nothing counted"
    );
    let ls = w.run(&["ls"], b"");
    assert!(
        String::from_utf8_lossy(&ls.stderr).contains("log lines could not be written"),
        "{ls:?}"
    );
    // Space again: the log is written again, and serving never stopped.
    disk.free();
    let out = w.run(
        &["run", "-w", "5", "-l", log_arg, "./chatty.sh"],
        b"after\n",
    );
    assert_eq!(ok_stdout(&out), "after\n");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("note about after"))),
        "the log was not written again"
    );
}

#[test]
fn a_start_out_of_space_says_why() {
    let w = World::with_state_name("unused");
    let Some(disk) = FullDisk::new(&w) else {
        return;
    };
    let state = disk.path.join("state");
    let run = |input: &[u8]| {
        let child = w
            .cmd(&["run", "-W", "1", "cat"])
            .env("VIASOCK_DIR", &state)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        common::finish(child, input)
    };
    // No blocks left: a server starts all the same, and serves.
    assert_eq!(ok_stdout(&run(b"a\n")), "a\n");
    let killed = w
        .cmd(&["kill", "--all"])
        .env("VIASOCK_DIR", &state)
        .output()
        .unwrap();
    assert!(killed.status.success(), "{killed:?}");
    // Whatever the server leaves or removes, it is done with it.
    let sockets = state.join("sockets");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_dir(&sockets).is_ok_and(|d| d.count() == 0)
    }));
    // No inodes left either: a start that cannot be made says why.
    disk.fill_inodes();
    let out = run(b"b\n");
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let lines = viasock_lines(&out);
    assert!(
        lines.len() == 1
            && lines[0].contains("No space left on device")
            && lines[0].contains(&*state.to_string_lossy()),
        "{lines:?}"
    );
}

#[test]
fn every_failure_is_one_line_usage_errors_included() {
    let w = World::new();
    for (args, says) in [
        (
            &["run", "--bogus", "cat"][..],
            "unexpected argument '--bogus'",
        ),
        (&["run"][..], "<PROGRAM [ARGS]>"),
        (&["frob"][..], "unrecognized subcommand 'frob'"),
        (
            &["run", "-t", "(", "cat"][..],
            "bad -t pattern '(': unclosed group",
        ),
        (&["run", "-T", "a{2", "cat"][..], "bad -T pattern 'a{2'"),
    ] {
        let out = w.run(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("viasock: ") && err.contains(says),
            "{args:?}: {err}"
        );
        assert!(!err.contains("(?:"), "the user's pattern, not ours: {err}");
    }
}

#[test]
fn ls_of_a_state_directory_that_cannot_be_read_says_so() {
    let w = World::new();
    w.write("plain", "a file, not a directory");
    // Root reads any directory; a path through a file stops root too.
    let out = w.run(&["--dir", "plain/state", "ls"], b"");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = viasock_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("cannot read state directory"),
        "{lines:?}"
    );
    assert!(out.stdout.is_empty(), "no empty table");
    // A directory that does not exist holds no servers: an empty table.
    let out = w.run(&["--dir", "nowhere", "ls"], b"");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_big_record_leaves_no_memory_behind() {
    let w = World::new();
    for _ in 0..5 {
        assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"warm\n")), "warm\n");
    }
    let server = w.server_pids()[0];
    let idle = common::rss_kib(server);
    let mut big = vec![b'x'; 64 << 20];
    big.push(b'\n');
    let out = w.run(&["run", "cat"], &big);
    assert!(
        out.status.success() && out.stdout == big,
        "{:?}",
        out.status
    );
    drop(out);
    // Back near its idle size within a few seconds (a few MiB of slack for
    // the allocator), not holding the record's room in several buffers.
    let near = || common::rss_kib(server) < idle + 8 * 1024;
    assert!(
        wait_until(Duration::from_secs(5), near),
        "server at {} KiB after a 64 MiB record, {idle} KiB idle",
        common::rss_kib(server)
    );
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"after\n")), "after\n");
}

#[test]
fn a_call_whose_handler_panics_fails_with_a_message_and_the_server_goes_on() {
    let w = World::new();
    // Debug builds (the tests') panic a call whose input holds this text.
    let call = |input: &[u8]| {
        let child = w
            .cmd(&["run", "-W", "3", "sed", "-u", "s/^/> /"])
            .env("VIASOCK_FAULT_PANIC", "PANIC-HERE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        common::finish(child, input)
    };
    assert_eq!(ok_stdout(&call(b"a\n")), "> a\n");
    let server = w.server_pids()[0];
    let out = call(b"x PANIC-HERE y\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = viasock_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("the server hit a bug while serving this call"),
        "{lines:?}"
    );
    assert!(w.logs().contains("panic: "), "{}", w.logs());
    // The server serves on, and still idles out: the call is not counted
    // as active for ever.
    assert_eq!(ok_stdout(&call(b"b\n")), "> b\n");
    assert_eq!(w.server_pids(), [server]);
    assert!(
        wait_until(Duration::from_secs(15), || !process_alive(server)),
        "the server never idled out"
    );
}

#[test]
fn a_call_that_gave_up_on_a_stopped_server_is_never_run_later() {
    let w = World::new();
    w.script(
        "side.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"$l\" >> side-effects; echo \"ok $l\"; done\n",
    );
    assert_eq!(
        ok_stdout(&w.run(&["run", "./side.sh"], b"first\n")),
        "ok first\n"
    );
    let server = stop_the_server(&w);
    // Both ways a call's input can go: ready at once (a file: it goes
    // with the Hello) and later (a pipe written after the start).
    std::fs::write(w.work.join("given-up"), "given up from a file\n").unwrap();
    let from_file = w
        .cmd(&["run", "./side.sh"])
        .stdin(std::fs::File::open(w.work.join("given-up")).unwrap())
        .output()
        .unwrap();
    assert_eq!(from_file.status.code(), Some(69), "{from_file:?}");
    let out = w.run(&["run", "./side.sh"], b"given up\n");
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    signal(server.into(), "CONT");
    // Once resumed, the server serves again, but not the call that left.
    assert_eq!(
        ok_stdout(&w.run(&["run", "./side.sh"], b"after\n")),
        "ok after\n"
    );
    let done = std::fs::read_to_string(w.work.join("side-effects")).unwrap();
    assert_eq!(done, "first\nafter\n", "a call that failed with 69 ran");
}

#[test]
fn a_file_of_no_known_format_is_not_run_by_a_shell() {
    let w = World::new();
    w.script("data.txt", "hello world\n");
    let out = w.run(&["run", "./data.txt"], b"a\n");
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an executable format"),
        "{out:?}"
    );
}
