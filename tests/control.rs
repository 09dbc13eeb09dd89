//! State files, the registry, and `ls`, `kill`, `restart`, `logs`,
//! `start`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdout, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    World, finish, finish_within, ok_stdout, process_alive, signal, viasock_lines, wait_until,
};
use serde_json::Value;

fn ls_json(w: &World) -> Vec<Value> {
    let out = w.run(&["ls", "--json"], b"");
    serde_json::from_str(&ok_stdout(&out)).expect("ls --json is JSON")
}

fn state_files(w: &World) -> Vec<Value> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(w.state.join("sockets"))
        .unwrap()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "json") {
            v.push(serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap());
        }
    }
    v
}

/// `ls --json` of every server of the user (the registry), not only those
/// of the world's state directory.
fn ls_json_everywhere(w: &World) -> Vec<Value> {
    let out = w
        .cmd(&["ls", "--json"])
        .env_remove("VIASOCK_DIR")
        .output()
        .unwrap();
    serde_json::from_str(&ok_stdout(&out)).expect("ls --json is JSON")
}

/// The id and server pid of the world's one server.
fn the_server(w: &World) -> (String, u32) {
    let files = state_files(w);
    assert_eq!(files.len(), 1, "one server wanted: {files:#?}");
    let id = files[0]["id"].as_str().unwrap().to_owned();
    (id, files[0]["server_pid"].as_u64().unwrap() as u32)
}

/// Whether process `pid` sleeps in poll(2), as `viasock kill` does while
/// it waits for a server to exit (and nowhere before).
fn waits_in_poll(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("poll"))
}

/// The lines a call writes, read on a thread so that the test waits for
/// each with a deadline instead of blocking for good.
struct Lines(mpsc::Receiver<String>);

impl Lines {
    fn of(out: ChildStdout) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(out);
            loop {
                let mut line = String::new();
                match out.read_line(&mut line) {
                    Ok(n) if n > 0 && tx.send(line).is_ok() => {}
                    _ => return,
                }
            }
        });
        Self(rx)
    }

    /// The next line; `None` at the end of the output or after 10 s.
    fn next(&self) -> Option<String> {
        self.0.recv_timeout(Duration::from_secs(10)).ok()
    }

    /// Every line left, up to the end of the output.
    fn rest(&self) -> Vec<String> {
        std::iter::from_fn(|| self.next()).collect()
    }
}

/// A server stopped with SIGSTOP. If the test fails, it is killed with
/// SIGKILL before [`World`] tries to stop it the polite way.
struct Stopped<'a> {
    w: &'a World,
    pid: u32,
}

impl<'a> Stopped<'a> {
    fn new(w: &'a World, pid: u32) -> Self {
        signal(pid.into(), "STOP");
        Self { w, pid }
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if self.w.server_pids().contains(&self.pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// Waits until the one state file satisfies `cond`; returns it.
fn state_where(w: &World, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(10), || {
        let files = state_files(w);
        match files.as_slice() {
            [one] => {
                last = one.clone();
                cond(one)
            }
            _ => false,
        }
    });
    assert!(ok, "state never matched; last: {last:#}");
    last
}

#[test]
fn state_file_follows_the_requests() {
    let w = World::new();
    w.script(
        "slow.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do sleep 0.01; echo \"$l\"; done\n",
    );
    ok_stdout(&w.run(&["run", "-W", "30", "./slow.sh"], b"a\nb\nc\n"));
    // The file may show the call in flight first; it ends up showing it done.
    let s = state_where(&w, |s| s["requests_total"] == 1 && s["state"] == "ready");
    assert_eq!(s["schema"], 1);
    assert_eq!(s["records_total"], 3);
    assert_eq!(s["bytes_in"], 6);
    assert_eq!(s["bytes_out"], 6);
    assert_eq!(s["state"], "ready");
    assert_eq!(s["command"], serde_json::json!(["./slow.sh"]));
    assert_eq!(s["idle_timeout_s"], 30.0);
    assert!(s["latency_ms"]["p50"].as_f64().unwrap() >= 5.0, "{s:#}");
    assert!(s["latency_ms"]["max"].as_f64().unwrap() >= s["latency_ms"]["p50"].as_f64().unwrap());
    assert!(s["idle_deadline_at"].is_string());
    assert_eq!(s["instances"].as_array().unwrap().len(), 1);
    assert_eq!(s["instances"][0]["records"], 3);
    let first_deadline = s["idle_deadline_at"].clone();
    let first_heartbeat = s["heartbeat_at"].clone();

    ok_stdout(&w.run(&["run", "-W", "30", "./slow.sh"], b"d\n"));
    let s = state_where(&w, |s| s["requests_total"] == 2 && s["state"] == "ready");
    assert_eq!(s["records_total"], 4);
    assert_ne!(
        s["idle_deadline_at"], first_deadline,
        "the idle deadline moves on"
    );
    // Each second closes a throughput sample; all four records show up.
    let sum = |s: &Value| -> f64 {
        s["throughput"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum()
    };
    let s = state_where(&w, |s| {
        s["heartbeat_at"] != first_heartbeat && sum(s) == 4.0
    });
    assert!(s["throughput"].as_array().unwrap().len() <= 60);
}

#[test]
fn ls_from_another_directory_sees_the_server() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    let elsewhere = tempfile::tempdir().unwrap();
    let out = w
        .cmd(&["ls"])
        .env_remove("VIASOCK_DIR")
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let table = ok_stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("COMMAND"),
        "{table}"
    );
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[1].contains("ready") && lines[1].ends_with("cat"),
        "{table}"
    );
    let id = state_files(&w)[0]["id"].as_str().unwrap().to_owned();
    assert!(lines[1].starts_with(&id[..12]));
    // As JSON, from anywhere too.
    let json = w
        .cmd(&["ls", "--json"])
        .env_remove("VIASOCK_DIR")
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let v: Vec<Value> = serde_json::from_str(&ok_stdout(&json)).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["id"], id.as_str());
}

/// The servers a wrong id lists are named as `ls` names them: shell-quoted.
#[test]
fn a_wrong_id_lists_the_servers_shell_quoted() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "sh", "-c", "read l; echo \"it's $l\""], b"x\n"));
    let out = w.run(&["kill", "nothex"], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"(sh -c 'read l; echo "it'\''s $l"')"#),
        "{err}"
    );
}

#[test]
fn kill_by_prefix_all_and_ambiguous() {
    let w = World::new();
    // Seventeen servers: two of them must share a first hex digit.
    for i in 0..17 {
        ok_stdout(&w.run(&["run", "sed", "-u", &format!("s/^/{i}/")], b"x\n"));
    }
    let states = ls_json(&w);
    assert_eq!(states.len(), 17);
    let ids: Vec<String> = states
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    let digit = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| ids.iter().filter(|id| id.starts_with(d.as_str())).count() >= 2)
        .unwrap();
    let out = w.run(&["kill", &digit], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("viasock: id {digit} is ambiguous: ")),
        "{err}"
    );
    assert!(err.contains("sed -u"), "candidates are listed: {err}");
    assert_eq!(ls_json(&w).len(), 17, "nothing was killed");

    let out = w.run(&["kill", "nothex"], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("viasock: no server with id nothex; there are "),
        "{err}"
    );
    assert!(err.contains("and 12 more"), "at most five are named: {err}");

    let victim = &ids[0];
    let pid = states[0]["server_pid"].as_u64().unwrap() as u32;
    // Prefixes are taken in any case, as git and docker take them.
    let out = w.run(&["kill", &victim[..8].to_ascii_uppercase()], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!process_alive(pid), "kill waits until the server is gone");
    assert_eq!(ls_json(&w).len(), 16);

    let out = w.run(&["kill", "--all"], b"");
    assert!(out.status.success());
    assert!(ls_json(&w).is_empty());
    assert!(w.server_pids().is_empty());
}

/// A second `kill` of a server that is draining after the first must not
/// force it: the call it is finishing is still served to its end.
#[test]
fn second_kill_while_draining_does_not_cut_the_call_in_flight() {
    let w = World::new();
    let mut call = w.spawn(&["run", "sed", "-u", "s/^/> /"]);
    let mut input = call.stdin.take().unwrap();
    let output = Lines::of(call.stdout.take().unwrap());
    writeln!(input, "a").unwrap();
    assert_eq!(output.next().as_deref(), Some("> a\n"));
    let (id, server) = the_server(&w);

    let first = w.spawn(&["kill", &id[..12]]);
    assert!(
        wait_until(Duration::from_secs(10), || w.sockets().is_empty()),
        "the server drains: {}",
        w.logs()
    );
    let second = w.spawn(&["kill", &id[..12]]);
    // Whatever the second kill does to the server, it has done it once it
    // waits for the server to exit.
    assert!(
        wait_until(Duration::from_secs(10), || !process_alive(second.id())
            || waits_in_poll(second.id())),
        "the second kill never got to wait"
    );
    for l in ["b", "c"] {
        writeln!(input, "{l}").expect("the call still reads its input");
        assert_eq!(
            output.next(),
            Some(format!("> {l}\n")),
            "the call is served to its end: {}",
            w.logs()
        );
    }
    drop(input);
    let out = finish(call, b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(output.rest(), Vec::<String>::new());
    for (which, kill) in [("first", first), ("second", second)] {
        let out = finish_within(kill, b"", Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{which} kill: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        !process_alive(server),
        "kill waits until the server is gone"
    );
    let logs = w.logs();
    assert!(!logs.contains("forced"), "{logs}");
}

/// `kill --force` of a server that cannot answer (SIGSTOP) gives up on it
/// after a while and kills it.
#[test]
fn kill_force_of_a_stopped_server_returns_with_the_server_gone() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    let (id, server) = the_server(&w);
    let _stopped = Stopped::new(&w, server);
    let start = Instant::now();
    let out = finish_within(
        w.spawn(&["kill", "--force", &id[..12]]),
        b"",
        Duration::from_secs(40),
    );
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(!process_alive(server), "the server is gone");
    assert!(ls_json(&w).is_empty(), "nothing is left of it");
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"y\n")), "y\n");
}

/// `kill` of a server that cannot answer (SIGSTOP) does not wait for it
/// for ever; the server stops once it runs again.
#[test]
fn kill_of_a_stopped_server_gives_up_after_its_wait() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    let (id, server) = the_server(&w);
    let stopped = Stopped::new(&w, server);
    let out = finish_within(w.spawn(&["kill", &id[..12]]), b"", Duration::from_secs(40));
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert!(
            !process_alive(server),
            "kill succeeded, yet the server runs"
        );
    } else {
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("viasock: {}", &id[..12])), "{err}");
    }
    signal(stopped.pid.into(), "CONT");
    assert!(
        wait_until(Duration::from_secs(15), || !process_alive(server)),
        "the server stops once it runs again: {}",
        w.logs()
    );
    assert!(ls_json(&w).is_empty(), "nothing is left of it");
}

/// A server draining after `kill` while a successor with the same id
/// already serves must not take the successor's state file or registry
/// entry with it when it exits.
#[test]
fn draining_server_leaves_its_successor_listed() {
    let w = World::new();
    w.script(
        "slow.sh",
        "#!/bin/sh\nsleep 0.5\nwhile IFS= read -r l; do sleep 0.1; echo \"$l\"; done\n",
    );
    let args = ["run", "./slow.sh"];
    let mut call = w.spawn(&args);
    let mut input = call.stdin.take().unwrap();
    let output = Lines::of(call.stdout.take().unwrap());
    writeln!(input, "a").unwrap();
    assert_eq!(output.next().as_deref(), Some("a\n"));
    let (id, old) = the_server(&w);

    let kill = w.spawn(&["kill", &id[..12]]);
    assert!(
        wait_until(Duration::from_secs(10), || w.sockets().is_empty()),
        "the server drains: {}",
        w.logs()
    );
    assert_eq!(ok_stdout(&w.run(&args, b"b\n")), "b\n");
    let servers = w.server_pids();
    let new: Vec<u32> = servers.iter().copied().filter(|&p| p != old).collect();
    assert_eq!(new.len(), 1, "one successor wanted: {servers:?}");
    let new = new[0];
    state_where(&w, |s| s["server_pid"] == new);

    drop(input);
    let out = finish(call, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(output.rest(), Vec::<String>::new());
    let out = finish_within(kill, b"", Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!process_alive(old), "kill waits until the server is gone");

    // Looked at right away: the successor rewrites its state file within a
    // second, which would hide a loss for a moment only.
    let listed = ls_json_everywhere(&w);
    let files = state_files(&w);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["server_pid"], new, "{listed:#?}");
    assert_eq!(files.len(), 1, "the state file is kept");
    assert_eq!(files[0]["server_pid"], new);
    assert!(process_alive(new));
    assert_eq!(ok_stdout(&w.run(&args, b"c\n")), "c\n");
    assert_eq!(w.server_pids(), vec![new], "the successor served it");
}

/// `ls` run right after a call returns counts it, and does not show the
/// server busy with it: it asks a live server, not only its file.
#[test]
fn ls_right_after_a_call_counts_it() {
    let w = World::new();
    for i in 1..=10u64 {
        assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"x\n")), "x\n");
        let s = ls_json(&w).remove(0);
        assert_eq!(s["requests_total"], i, "{s}");
        assert_eq!(s["records_total"], i, "{s}");
        assert_eq!(s["state"], "ready", "{s}");
    }
}

/// Runs a call through `cat`, waits until the state file shows it and its
/// tool, then SIGKILLs the server (the file stays behind, its figures as
/// they were) and waits until it is gone.
fn kill_a_server_hard(w: &World) {
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    assert!(wait_until(Duration::from_secs(10), || {
        let s = &state_files(w)[0];
        s["requests_total"] == 1 && s["instances"].as_array().is_some_and(|i| i.len() == 1)
    }));
    let s = state_files(w).remove(0);
    let pid = s["server_pid"].as_u64().unwrap() as u32;
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || !process_alive(pid)));
}

#[test]
fn a_dead_server_shows_no_live_figures() {
    let w = World::new();
    kill_a_server_hard(&w);
    let listed = ls_json(&w);
    let dead = &listed[0];
    assert_eq!(dead["state"], "dead");
    assert_eq!(dead["instances"], serde_json::json!([]), "{dead}");
    assert_eq!(dead["clients_active"], 0, "{dead}");
    assert_eq!(dead["throughput"], serde_json::json!([]), "{dead}");
    assert_eq!(dead["idle_deadline_at"], serde_json::Value::Null, "{dead}");
    // What it did while it lived stays.
    assert_eq!(dead["requests_total"], 1, "{dead}");
}

/// While the tool starts (here: a prelude it writes after 2 s), the
/// server says `starting` even with a call waiting, and its instance has
/// the tool's real pid, whose process group `top` sums the memory of.
#[test]
fn a_starting_tool_is_shown_starting_with_its_pid() {
    let w = World::new();
    w.script(
        "slow.sh",
        "#!/bin/sh\nsleep 2\necho banner\nexec sed -u 's/^/ok /'\n",
    );
    let mut call = w.spawn(&["run", "-P", "1", "./slow.sh"]);
    writeln!(call.stdin.as_mut().unwrap(), "x").unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        ls_json(&w)
            .first()
            .is_some_and(|s| s["instances"].as_array().is_some_and(|i| !i.is_empty()))
    }));
    let s = ls_json(&w).remove(0);
    assert_eq!(s["state"], "starting", "{s}");
    let inst = &s["instances"][0];
    assert_eq!(inst["state"], "starting", "{s}");
    let pid = inst["pid"].as_u64().unwrap() as u32;
    assert!(pid != 0 && process_alive(pid), "{s}");
    drop(call.stdin.take());
    let out = common::finish(call, b"");
    assert_eq!(ok_stdout(&out), "banner\nok x\n");
}

#[test]
fn kill_stale_cleans_up_after_a_killed_server() {
    let w = World::new();
    kill_a_server_hard(&w);
    let listed = ls_json(&w);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["state"], "dead");
    let table = ok_stdout(&w.run(&["ls"], b""));
    assert!(table.lines().nth(1).unwrap().contains("dead"), "{table}");
    let out = w.run(&["kill", "--stale"], b"");
    assert!(out.status.success());
    assert!(ls_json(&w).is_empty());
    assert!(
        w.sockets().is_empty(),
        "socket and state file are gone: {:?}",
        w.sockets()
    );
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"y\n")), "y\n");
}

#[test]
fn restart_replaces_the_tool_but_not_the_server_while_a_client_streams() {
    let w = World::new();
    w.script(
        "pid.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"$$ $l\"; done\n",
    );
    let mut streaming = w.spawn(&["run", "./pid.sh"]);
    let mut input = streaming.stdin.take().unwrap();
    let mut output = BufReader::new(streaming.stdout.take().unwrap());
    writeln!(input, "one").unwrap();
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    let old_tool = line.split_whitespace().next().unwrap().to_owned();
    let s = state_where(&w, |s| {
        s["instances"][0]["pid"].as_u64().is_some_and(|p| p > 0)
    });
    let server = s["server_pid"].clone();
    assert_eq!(s["instances"][0]["pid"].to_string(), old_tool);

    let out = w.run(&["restart", &s["id"].as_str().unwrap()[..10]], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // While it serves that call, the old instance is still shown: retiring.
    let s = ls_json(&w).remove(0);
    let shown = s["instances"].as_array().unwrap();
    let old_pid: u64 = old_tool.parse().unwrap();
    assert!(
        shown
            .iter()
            .any(|i| i["pid"] == old_pid && i["state"] == "retiring"),
        "{s}"
    );

    // The streaming call goes on, on its old tool, and ends well.
    writeln!(input, "two").unwrap();
    drop(input);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut output, &mut rest).unwrap();
    assert_eq!(rest, format!("{old_tool} two\n"));
    assert!(streaming.wait().unwrap().success());

    let next = ok_stdout(&w.run(&["run", "./pid.sh"], b"three\n"));
    let new_tool = next.split_whitespace().next().unwrap();
    assert_ne!(new_tool, old_tool, "a fresh tool");
    let s = state_where(&w, |s| {
        s["instances"].as_array().is_some_and(|i| i.len() == 1) && s["requests_total"] == 2
    });
    assert_eq!(s["server_pid"], server, "the same server");
    assert_eq!(s["instances"][0]["pid"].to_string(), new_tool);
}

#[test]
fn logs_show_the_tool_stderr() {
    let w = World::new();
    w.script(
        "chatty.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"noted $l\" >&2; echo \"$l\"; done\n",
    );
    ok_stdout(&w.run(&["run", "./chatty.sh"], b"hello\n"));
    let id = state_files(&w)[0]["id"].as_str().unwrap().to_owned();
    assert!(wait_until(Duration::from_secs(5), || {
        ok_stdout(&w.run(&["logs", &id[..6]], b"")).contains("stderr: noted hello")
    }));
    let one = ok_stdout(&w.run(&["logs", "-n", "1", &id[..6]], b""));
    assert_eq!(one.lines().count(), 1, "{one}");
}

/// `viasock logs -f ID`, started, and its stdout to read by lines.
fn follow_logs(w: &World, id: &str) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut follow = w
        .cmd(&["logs", "-f", id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(follow.stdout.take().unwrap());
    (follow, lines)
}

#[test]
fn logs_follow_shows_new_lines() {
    let w = World::new();
    w.script(
        "chatty.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"noted $l\" >&2; echo \"$l\"; done\n",
    );
    ok_stdout(&w.run(&["run", "./chatty.sh"], b"first\n"));
    let id = state_files(&w)[0]["id"].as_str().unwrap().to_owned();
    let (mut follow, mut lines) = follow_logs(&w, &id);
    ok_stdout(&w.run(&["run", "./chatty.sh"], b"second\n"));
    let mut seen = String::new();
    while !seen.contains("noted second") {
        let mut line = String::new();
        assert!(lines.read_line(&mut line).unwrap() > 0);
        seen.push_str(&line);
    }
    follow.kill().unwrap();
    follow.wait().unwrap();
}

/// `logs -f | head -1`: once the reader has gone, following ends at
/// once, as `tail -f` does, though nothing more is written to the log.
#[test]
fn logs_follow_ends_when_its_reader_goes() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    let id = state_files(&w)[0]["id"].as_str().unwrap().to_owned();
    let (mut follow, mut lines) = follow_logs(&w, &id);
    let mut line = String::new();
    assert!(lines.read_line(&mut line).unwrap() > 0);
    drop(lines);
    let mut status = None;
    let ended = wait_until(Duration::from_secs(5), || {
        status = follow.try_wait().unwrap();
        status.is_some()
    });
    if !ended {
        follow.kill().unwrap();
        follow.wait().unwrap();
    }
    assert!(ended, "logs -f still runs with nobody reading");
    assert_eq!(status.unwrap().code(), Some(0));
}

#[test]
fn start_returns_once_the_prelude_is_read() {
    let w = World::new();
    // The marker is made just before the prelude is written: if it is
    // missing when `start` returns, `start` did not wait for the prelude.
    w.script(
        "banner.sh",
        "#!/bin/sh\nsleep 1\ntouch loaded\necho ready\nexec sed -u 's/^/: /'\n",
    );
    let out = w.run(&["start", "-P", "1", "./banner.sh"], b"");
    assert!(
        w.work.join("loaded").exists(),
        "start returned before the prelude"
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    state_where(&w, |s| s["instances"][0]["state"] == "idle");
    assert_eq!(
        ok_stdout(&w.run(&["run", "-P", "1", "./banner.sh"], b"x\n")),
        "ready\n: x\n"
    );
    assert_eq!(w.server_pids().len(), 1, "run found the started server");
}

#[test]
fn start_with_a_probe_and_start_failures() {
    let w = World::new();
    let out = w.run(&["start", "--probe", "hello", "cat"], b"");
    assert!(out.status.success());
    let s = state_where(&w, |s| s["records_total"] == 1);
    assert_eq!(s["requests_total"], 1);
    let out = w.run(&["start", "no-such-tool-for-viasock"], b"");
    assert_eq!(out.status.code(), Some(127));
    w.script("broken.sh", "#!/bin/sh\necho 'no model' >&2\nexit 7\n");
    let out = w.run(&["start", "-P", "1", "./broken.sh"], b"");
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.logs()
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no model"));
}

/// A tool that fails at start-up fails `start --probe` with its status
/// and one line saying why (its stderr may be shown as well), however
/// early the server closed the call.
#[test]
fn start_probe_of_a_tool_failing_at_start_up_gives_its_status() {
    let w = World::new();
    w.script(
        "broken.sh",
        "#!/bin/sh\necho 'cannot load the model' >&2\nexit 3\n",
    );
    // The server may fail the call before it read the probe, or after:
    // each argument gives a new server, so a new try of that race.
    for i in 0..32 {
        let out = w.run(
            &["start", "--probe", "hello", "./broken.sh", &i.to_string()],
            b"",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}\n{}", w.logs());
        assert_eq!(viasock_lines(&out).len(), 1, "{err}");
        assert!(err.contains("cannot load the model"), "{err}");
    }
}

/// A record the tool sits on shows as the age of the oldest record in
/// flight, of the server and of its instance, and goes once answered.
#[test]
fn ls_shows_how_long_the_oldest_record_has_waited() {
    let w = World::new();
    w.script(
        "slow.sh",
        "#!/bin/sh\nwhile read l; do [ \"$l\" = slow ] && sleep 3; echo \"$l\"; done\n",
    );
    ok_stdout(&w.run(&["run", "./slow.sh"], b"warm\n"));
    let before = std::time::SystemTime::now();
    let mut call = w.spawn(&["run", "./slow.sh"]);
    writeln!(call.stdin.as_mut().unwrap(), "slow").unwrap();
    let mut s = Value::Null;
    assert!(wait_until(Duration::from_secs(10), || {
        s = ls_json(&w).remove(0);
        s["oldest_in_flight_at"].is_string()
    }));
    let at = humantime::parse_rfc3339_weak(s["oldest_in_flight_at"].as_str().unwrap()).unwrap();
    assert!(at >= before - Duration::from_millis(5), "{s}");
    assert_eq!(
        s["instances"][0]["oldest_in_flight_at"], s["oldest_in_flight_at"],
        "{s}"
    );
    drop(call.stdin.take());
    assert_eq!(ok_stdout(&finish(call, b"")), "slow\n");
    let s = ls_json(&w).remove(0);
    assert_eq!(s["oldest_in_flight_at"], Value::Null, "{s}");
    assert_eq!(s["instances"][0]["oldest_in_flight_at"], Value::Null, "{s}");
}

/// A failed call counts among the errors of the last minute as well as
/// in all.
#[test]
fn ls_counts_the_errors_of_the_last_minute() {
    let w = World::new();
    w.script(
        "fragile.sh",
        "#!/bin/sh\nwhile read l; do [ \"$l\" = die ] && exit 3; echo \"$l\"; done\n",
    );
    ok_stdout(&w.run(&["run", "./fragile.sh"], b"ok\n"));
    let s = ls_json(&w).remove(0);
    assert_eq!(s["errors_last_minute"], 0, "{s}");
    let failed = w.run(&["run", "./fragile.sh"], b"die\n");
    assert!(!failed.status.success(), "{failed:?}");
    let s = ls_json(&w).remove(0);
    assert_eq!(s["errors_total"], 1, "{s}");
    assert_eq!(s["errors_last_minute"], 1, "{s}");
}

/// `ls` into a pipe nobody reads (`| head -0` that has exited) ends
/// quietly; into a full disk it says so in one line. It used to panic
/// (status 101) on both.
#[test]
fn ls_ends_quietly_on_a_closed_pipe_and_says_so_on_a_full_one() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    for args in [&["ls"][..], &["ls", "--json"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = w.cmd(args).stdout(writer).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = w.cmd(args).stdout(full).output().unwrap();
        let lines = viasock_lines(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert_eq!(lines.len(), 1, "{args:?}: {out:?}");
        assert!(lines[0].contains("No space left"), "{lines:?}");
    }
}

/// Runs two calls of `cat` on one instance, the second waiting for the
/// first, with `VIASOCK_LOG` set to `log` (unset if `None`); returns the
/// server log.
fn log_of_a_wait(log: Option<&str>) -> String {
    let w = World::new();
    let call = |w: &World| {
        let mut c = w.cmd(&["run", "-j", "1", "cat"]);
        if let Some(l) = log {
            c.env("VIASOCK_LOG", l);
        }
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let mut first = call(&w);
    writeln!(first.stdin.as_mut().unwrap(), "a").unwrap();
    let lines = Lines::of(first.stdout.take().unwrap());
    assert_eq!(lines.next().as_deref(), Some("a\n"));
    let second = call(&w);
    state_where(&w, |s| s["clients_waiting"] == 1);
    drop(first.stdin.take());
    assert!(first.wait().unwrap().success());
    assert_eq!(ok_stdout(&finish(second, b"b\n")), "b\n");
    w.logs()
}

/// The log level comes from `VIASOCK_LOG`; a call waiting for a busy
/// instance is a debug line (under `make -j` it came 30 times a second
/// and buried the tool's own stderr).
#[test]
fn viasock_log_sets_the_level_and_waits_for_an_instance_are_debug_lines() {
    let quiet = log_of_a_wait(None);
    assert!(quiet.contains("INFO"), "{quiet}");
    assert!(!quiet.contains("instances busy"), "{quiet}");
    let debug = log_of_a_wait(Some("debug"));
    assert!(debug.contains("DEBUG"), "{debug}");
    assert!(debug.contains("all 1 instances busy"), "{debug}");
    let warn = log_of_a_wait(Some("warn"));
    assert!(!warn.contains("INFO"), "{warn}");
    let bad = log_of_a_wait(Some("viasock=[[["));
    assert!(bad.contains("VIASOCK_LOG"), "{bad}");
    assert!(bad.contains("INFO"), "it logs at info: {bad}");
}

/// `ls -q` prints the ids alone, which `kill` takes back.
#[test]
fn ls_quiet_prints_ids_for_xargs() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    ok_stdout(&w.run(&["run", "sed", "-u", "s/x/y/"], b"x\n"));
    let ids = ok_stdout(&w.run(&["ls", "-q"], b""));
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.iter().all(|i| i.len() == 12), "{ids:?}");
    let mut kill = vec!["kill"];
    kill.extend(&ids);
    ok_stdout(&w.run(&kill, b""));
    assert_eq!(ok_stdout(&w.run(&["ls", "-q"], b"")), "");
    let both = w.run(&["ls", "-q", "--json"], b"");
    assert_eq!(both.status.code(), Some(2), "{both:?}");
}

/// The log names the tool's command line shell-quoted, as `ls` and `top`
/// show it: `sh -c 'read l; echo "$l"'`, not `sh -c read l; echo "$l"`.
#[test]
fn the_log_shows_the_command_shell_quoted() {
    let w = World::new();
    let script = "while read l; do echo \"$l\"; done";
    ok_stdout(&w.run(&["run", "sh", "-c", script], b"x\n"));
    let logs = w.logs();
    let quoted = format!("tool started: sh -c '{script}'");
    assert!(logs.contains(&quoted), "{quoted}\n{logs}");
    let listed = ok_stdout(&w.run(&["ls"], b""));
    assert!(listed.contains(&format!("sh -c '{script}'")), "{listed}");
}

/// A stopped server whose queue of connections is full (every `ls` and
/// `top` refresh used to leave one there) neither holds `ls` up nor
/// `kill --force`: connects give up after their wait, and a server whose
/// file is late is not asked at all.
#[test]
fn a_stopped_server_with_a_full_queue_holds_nothing_up() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    let (_, pid) = the_server(&w);
    let socket = state_files(&w)[0]["socket"].as_str().unwrap().to_owned();
    let stopped = Stopped::new(&w, pid);
    // Fill its queue: connections it never takes stay queued, closed or
    // not; the filler blocks once there is no room (and is let go when
    // the server dies).
    let made = std::sync::Arc::new(AtomicUsize::new(0));
    let count = made.clone();
    std::thread::spawn(move || {
        while std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut last = usize::MAX;
    let full = wait_until(Duration::from_secs(60), || {
        let now = made.load(Ordering::Relaxed);
        let still = now == last && now > 0;
        last = now;
        std::thread::sleep(Duration::from_millis(200));
        still
    });
    assert!(
        full,
        "the queue never filled: {} connections",
        made.load(Ordering::Relaxed)
    );
    for _ in 0..3 {
        let out = finish_within(w.spawn(&["ls", "--json"]), b"", Duration::from_secs(5));
        let listed: Vec<Value> = serde_json::from_str(&ok_stdout(&out)).unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
    }
    let out = finish_within(
        w.spawn(&["kill", "--all", "--force"]),
        b"",
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(wait_until(Duration::from_secs(10), || !process_alive(pid)));
    drop(stopped);
}
