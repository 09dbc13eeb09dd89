//! Faults of the machine around a server: signals, absurd values, a
//! state directory removed under it, a server that stops answering.

mod common;

use std::time::Duration;

use common::{World, ok_stdout, process_alive, signal, wait_until};

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
