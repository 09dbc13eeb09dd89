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
