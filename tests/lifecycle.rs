//! Server life cycle: start failures, shutdown races, crashes, identity
//! inputs, and the `serve`/`client`/`kill` commands.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::time::Duration;

use common::{KillOnDrop, World, ok_stdout, process_alive, wait_until};

/// Loads for a moment, then gives up with a message.
const BROKEN: &str = "#!/bin/sh\nsleep 0.5\necho 'cannot load model.bin' >&2\nexit 4\n";

fn four_clients(w: &World, args: &[&str]) {
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let mut c = w.spawn(args);
            writeln!(c.stdin.take().unwrap(), "x").unwrap();
            c
        })
        .collect();
    for c in clients {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{err}");
        assert!(
            err.contains("viasock: the tool exited with status 4"),
            "{err}"
        );
        assert!(err.contains("cannot load model.bin"), "{err}");
    }
}

#[test]
fn failed_start_reaches_every_waiting_client() {
    let w = World::new();
    w.script("broken.sh", BROKEN);
    // With a prelude, a start is known to have failed: one start, one
    // failure for everybody who waited for it.
    four_clients(&w, &["run", "-P", "1", "./broken.sh"]);
    assert_eq!(w.logs().matches("tool started").count(), 1, "{}", w.logs());
}

#[test]
fn tool_dying_on_every_call_fails_each_call_with_its_status() {
    let w = World::new();
    w.script("broken.sh", BROKEN);
    four_clients(&w, &["run", "./broken.sh"]);
}

#[test]
fn tool_that_died_while_idle_is_replaced_silently() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    let server = w.server_pids()[0];
    let tool = std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"))
        .unwrap()
        .trim()
        .to_owned();
    Command::new("kill").args(["-9", &tool]).status().unwrap();
    assert!(wait_until(Duration::from_secs(5), || !process_alive(
        tool.parse().unwrap()
    )));
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"y\n")), "y\n");
}

#[test]
fn calls_racing_an_idle_shutdown_all_succeed() {
    let w = World::new();
    for i in 0..40 {
        let input = format!("call {i}\n");
        let out = w.run(&["run", "-W", "0.02", "cat"], input.as_bytes());
        assert_eq!(ok_stdout(&out), input);
    }
}

#[test]
fn killed_server_is_replaced_on_the_next_call() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    let pids = w.server_pids();
    assert_eq!(pids.len(), 1);
    Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || !process_alive(
        pids[0]
    )));
    assert_eq!(
        w.sockets().len(),
        1,
        "a dead server leaves its socket behind"
    );
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"y\n")), "y\n");
    let now = w.server_pids();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], pids[0]);
}

#[test]
fn program_found_on_path_is_identified_by_its_file() {
    let w = World::new();
    let bin = w.work.join("bin");
    std::fs::create_dir(&bin).unwrap();
    common::write_executable(&bin.join("mytool"), "#!/bin/sh\nexec sed -u 's/^/a: /'\n");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |input: &[u8]| {
        let mut c = w.cmd(&["run", "mytool"]);
        c.env("PATH", &path);
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    assert_eq!(ok_stdout(&run(b"x\n")), "a: x\n");
    common::write_executable(&bin.join("mytool"), "#!/bin/sh\nexec sed -u 's/^/bbb: /'\n");
    assert_eq!(ok_stdout(&run(b"x\n")), "bbb: x\n");
}

#[test]
fn symlinked_program_is_identified_by_its_target() {
    let w = World::new();
    w.script("real.sh", "#!/bin/sh\nexec sed -u 's/^/a: /'\n");
    std::os::unix::fs::symlink("real.sh", w.work.join("link")).unwrap();
    assert_eq!(ok_stdout(&w.run(&["run", "./link"], b"x\n")), "a: x\n");
    w.script("real.sh", "#!/bin/sh\nexec sed -u 's/^/bbb: /'\n");
    assert_eq!(ok_stdout(&w.run(&["run", "./link"], b"x\n")), "bbb: x\n");
}

#[test]
fn watched_file_change_gives_a_new_server() {
    let w = World::new();
    w.script(
        "tool.sh",
        "#!/bin/sh\nm=$(cat lib/module.py)\nwhile IFS= read -r l; do echo \"$m $l\"; done\n",
    );
    w.write("lib/module.py", "v1");
    let args = ["run", "--watch", "lib", "./tool.sh"];
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "v1 x\n");
    w.write("lib/module.py", "v222");
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "v222 x\n");
}

#[test]
fn env_variable_value_is_part_of_the_identity() {
    let w = World::new();
    w.script(
        "tool.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"$LANG_MODEL $l\"; done\n",
    );
    for model in ["en", "de", "en"] {
        let out = w
            .cmd(&["run", "--env", "LANG_MODEL", "./tool.sh"])
            .env("LANG_MODEL", model)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(b"x\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert_eq!(ok_stdout(&out), format!("{model} x\n"));
    }
    assert_eq!(w.server_pids().len(), 2, "en and de each have a server");
}

#[test]
fn serve_in_the_foreground_and_client_on_its_socket() {
    let w = World::new();
    let socket = w.work.join("my.sock");
    let mut server = w.cmd(&[
        "serve",
        "--socket",
        "my.sock",
        "--",
        "sed",
        "-u",
        "s/^/served /",
    ]);
    // Not a server World knows of: it is killed here if the test fails.
    let mut server = KillOnDrop(server.stderr(std::process::Stdio::piped()).spawn().unwrap());
    let mut log = BufReader::new(server.0.stderr.take().unwrap());
    let mut line = String::new();
    log.read_line(&mut line).unwrap();
    assert!(line.contains("listening at"), "{line}");
    assert!(socket.exists());
    assert_eq!(
        ok_stdout(&w.run(&["client", "my.sock"], b"x\n")),
        "served x\n"
    );
    Command::new("kill")
        .args(["-INT", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(server.0.wait().unwrap().success());
    assert!(!socket.exists());
}

#[test]
fn client_without_a_server_is_69() {
    let w = World::new();
    let out = w.run(&["client", "nothing.sock"], b"x\n");
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("viasock: no server is listening"));
}

#[test]
fn kill_by_prefix_and_all() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    ok_stdout(&w.run(&["run", "sed", "-u", "s/a/b/"], b"x\n"));
    let sockets = w.sockets();
    assert_eq!(sockets.len(), 2);
    let id = sockets[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let out = w.run(&["kill", &id[..6]], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.sockets().len(), 1);
    assert_eq!(w.server_pids().len(), 1);
    let out = w.run(&["kill", "zzzz"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no server with id zzzz"));
    assert!(w.run(&["kill", "--all"], b"").status.success());
    assert!(w.server_pids().is_empty());
    assert!(w.sockets().is_empty());
}

#[test]
fn tool_exit_is_seen_even_if_its_child_keeps_stdout_open() {
    let w = World::new();
    w.script(
        "wrapper.sh",
        "#!/bin/sh\nsleep 31.5 &\nwhile IFS= read -r l; do\n  if [ \"$l\" = die ]; then exit 3; fi\n  echo \"$l\"\ndone\n",
    );
    let start = std::time::Instant::now();
    let out = w.run(&["run", "./wrapper.sh"], b"a\ndie\n");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\n");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        wait_until(Duration::from_secs(5), || !common::command_running(
            "sleep 31.5"
        )),
        "the tool's child was killed with it"
    );
}

#[test]
fn timeout_kills_the_tool_with_its_children() {
    let w = World::new();
    w.script(
        "hang.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do sleep 987.5; done\n",
    );
    let out = w.run(&["run", "-w", "0.5", "./hang.sh"], b"x\n");
    assert_eq!(out.status.code(), Some(124));
    assert!(wait_until(Duration::from_secs(5), || {
        !common::command_running("sleep 987.5")
    }));
}

#[test]
fn slow_reader_does_not_trip_the_timeout() {
    let w = World::new();
    let input: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
    let mut c = w.spawn(&["run", "-w", "1", "cat"]);
    let mut stdin = c.stdin.take().unwrap();
    let feed = input.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(feed.as_bytes()));
    // The reader stalls longer than -w while the answers pile up.
    std::thread::sleep(Duration::from_secs(2));
    let out = c.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == input.as_bytes(),
        "got {} bytes",
        out.stdout.len()
    );
}

#[test]
fn unsolicited_output_retires_the_instance() {
    let w = World::new();
    // A forgotten -P: the banner answers the first record of each instance,
    // and that record's own answer comes when nobody asked for it.
    w.script(
        "banner.sh",
        "#!/bin/sh\necho banner\nexec sed -u 's/^/: /'\n",
    );
    let retired = |n: usize| {
        wait_until(Duration::from_secs(10), || {
            w.logs().matches("retiring the tool").count() >= n
        })
    };
    for (k, input) in ["a\n", "b\n", "c\n"].iter().enumerate() {
        let out = w.run(&["run", "./banner.sh"], input.as_bytes());
        // Each call meets a fresh instance (the last one was retired for its
        // stray answer or stopped for its framing). It fails, as the banner
        // came with its answer or before the tool read its record; or gets
        // its own answer if the banner came (and was dropped) before the
        // call; or, if the tool read the record before the banner reached
        // us, the banner (which cannot be told from an answer). Never an
        // answer to somebody else's record.
        let got = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            assert!(
                got == "banner\n" || got == format!(": {input}"),
                "call {k}: {got:?}"
            );
            assert!(retired(k + 1), "call {k}: {}", w.logs());
        } else {
            assert!(err.contains("cannot be matched"), "call {k}: {err}");
            assert!(got.is_empty() || got == "banner\n", "call {k}: {got:?}");
        }
    }
}

#[test]
fn unwritable_log_costs_the_log_not_the_service() {
    let w = World::new();
    // Nobody, not even root, can create a file in /proc.
    let args = ["run", "-l", "/proc/viasock-test-no-such.log", "cat"];
    let out = w.run(&args, b"x\n");
    assert_eq!(ok_stdout(&out), "x\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("viasock: warning: cannot write log /proc/"),
        "{err}"
    );
    assert_eq!(ok_stdout(&w.run(&args, b"y\n")), "y\n");
    assert_eq!(w.server_pids().len(), 1);
}
