//! Concurrency: `-j N` instances with FIFO waiting, and
//! `--interleave` sharing of instances record by record.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Child;
use std::time::{Duration, Instant};

use common::{World, ok_stdout, wait_until};

/// Answers each line after DELAY seconds; `die` makes it exit 3.
const SLOW_ECHO: &str = "#!/bin/sh\nwhile IFS= read -r l; do\n  sleep ${DELAY:-0.05}\n  \
                         if [ \"$l\" = die ]; then exit 3; fi\n  echo \"out $l\"\ndone\n";

/// Numbers the records it answers, so the order of service shows.
const COUNTER: &str =
    "#!/bin/sh\nn=0\nwhile IFS= read -r l; do\n  n=$((n+1))\n  sleep 0.2\n  echo \"$n $l\"\ndone\n";

fn input_of(client: usize, records: usize) -> String {
    (0..records)
        .map(|r| format!("client {client} record {r}\n"))
        .collect()
}

fn expected(input: &str) -> String {
    input.lines().map(|l| format!("out {l}\n")).collect()
}

/// Starts `n` concurrent calls of `args`, client i sending `input_of(i, records)`.
fn concurrent(
    w: &World,
    args: &[&str],
    n: usize,
    records: usize,
) -> Vec<(String, std::process::Output)> {
    let calls: Vec<(String, Child)> = (0..n)
        .map(|i| {
            let input = input_of(i, records);
            (input, w.spawn(args))
        })
        .collect();
    // All of them are fed at once: a call that waits for an instance must
    // not keep the calls ahead of it from getting their input.
    let threads: Vec<_> = calls
        .into_iter()
        .map(|(input, child)| {
            std::thread::spawn(move || {
                let out = common::finish(child, input.as_bytes());
                (input, out)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn tools_started(w: &World) -> usize {
    w.logs().matches("tool started").count()
}

#[test]
fn eight_clients_on_four_instances_get_their_own_answers() {
    let w = World::new();
    w.script("echo.sh", SLOW_ECHO);
    for (input, out) in concurrent(&w, &["run", "-j", "4", "./echo.sh"], 8, 5) {
        assert_eq!(ok_stdout(&out), expected(&input));
    }
    let started = tools_started(&w);
    assert!((2..=4).contains(&started), "{started} instances started");
}

#[test]
fn eight_interleaved_clients_on_one_instance_get_their_own_answers() {
    let w = World::new();
    w.script("echo.sh", SLOW_ECHO);
    let args = ["run", "--interleave", "-j", "1", "./echo.sh"];
    for (input, out) in concurrent(&w, &args, 8, 5) {
        assert_eq!(ok_stdout(&out), expected(&input));
    }
    assert_eq!(tools_started(&w), 1);
}

#[test]
fn eight_interleaved_clients_on_two_instances_get_their_own_answers() {
    let w = World::new();
    w.script("echo.sh", SLOW_ECHO);
    let args = ["run", "--interleave", "-j", "2", "./echo.sh"];
    for (input, out) in concurrent(&w, &args, 8, 5) {
        assert_eq!(ok_stdout(&out), expected(&input));
    }
    assert!(tools_started(&w) <= 2);
}

#[test]
fn fast_tool_streams_many_records_to_concurrent_interleaved_clients() {
    let w = World::new();
    let args = ["run", "--interleave", "-j", "2", "sed", "-u", "s/^/out /"];
    for (input, out) in concurrent(&w, &args, 4, 20_000) {
        assert!(ok_stdout(&out) == expected(&input));
    }
}

#[test]
fn waiting_clients_are_served_in_arrival_order() {
    let w = World::new();
    w.script("count.sh", COUNTER);
    let args = ["run", "-j", "1", "./count.sh"];
    ok_stdout(&w.run(&args, b"warm\n"));
    // The first call holds the instance (its answer proves it); each next
    // one starts only once the one before is in the server's queue.
    let mut first = w.spawn(&args);
    let mut first_in = first.stdin.take().unwrap();
    writeln!(first_in, "call 0").unwrap();
    let mut first_out = BufReader::new(first.stdout.take().unwrap());
    let mut line = String::new();
    first_out.read_line(&mut line).unwrap();
    assert_eq!(line, "2 call 0\n");
    let mut calls = Vec::new();
    for i in 1..4 {
        let mut c = w.spawn(&args);
        writeln!(c.stdin.as_mut().unwrap(), "call {i}").unwrap();
        calls.push(c);
        assert!(wait_until(Duration::from_secs(10), || {
            w.calls_waiting() == i as u64
        }));
    }
    drop(first_in);
    assert!(first.wait().unwrap().success());
    let mut served = Vec::new();
    for (i, c) in calls.into_iter().enumerate() {
        let out = common::finish(c, b"");
        let line = ok_stdout(&out);
        let (n, rest) = line.trim_end().split_once(' ').unwrap();
        assert_eq!(rest, format!("call {}", i + 1));
        served.push(n.parse::<u32>().unwrap());
    }
    assert_eq!(served, [3, 4, 5], "served in arrival order");
}

#[test]
fn client_giving_up_while_waiting_loses_nothing() {
    let w = World::new();
    w.script("echo.sh", SLOW_ECHO);
    let args = ["run", "-j", "1", "./echo.sh"];
    let mut holder = w.spawn(&args);
    let mut holder_in = holder.stdin.take().unwrap();
    writeln!(holder_in, "first").unwrap();
    let mut holder_out = BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    holder_out.read_line(&mut line).unwrap();
    assert_eq!(line, "out first\n");
    let mut waiter = w.spawn(&args);
    writeln!(waiter.stdin.as_mut().unwrap(), "never").unwrap();
    assert!(wait_until(Duration::from_secs(10), || w.calls_waiting() >= 1));
    waiter.kill().unwrap();
    waiter.wait().unwrap();
    writeln!(holder_in, "second").unwrap();
    drop(holder_in);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut holder_out, &mut rest).unwrap();
    assert!(holder.wait().unwrap().success());
    assert_eq!(rest, "out second\n");
    assert_eq!(ok_stdout(&w.run(&args, b"after\n")), "out after\n");
}

#[test]
fn idle_extra_instance_retires() {
    let w = World::new();
    w.script("echo.sh", SLOW_ECHO);
    let args = ["run", "-j", "2", "-W", "1", "./echo.sh"];
    // One call stays open, keeping the server (not its second instance) busy.
    let mut long = w.spawn(&args);
    let mut long_in = long.stdin.take().unwrap();
    writeln!(long_in, "a").unwrap();
    let mut long_out = BufReader::new(long.stdout.take().unwrap());
    let mut line = String::new();
    long_out.read_line(&mut line).unwrap();
    assert_eq!(line, "out a\n");
    assert_eq!(ok_stdout(&w.run(&args, b"b\n")), "out b\n");
    assert_eq!(tools_started(&w), 2);
    assert!(
        wait_until(Duration::from_secs(10), || w
            .logs()
            .contains("retiring an idle extra instance")),
        "{}",
        w.logs()
    );
    // The log line comes when the instance is told to stop; its tool then
    // has its stdin closed and a moment to exit.
    let server = w.server_pids()[0];
    let children = || {
        std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"))
            .unwrap()
            .split_whitespace()
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(5), || children() == 1),
        "one instance left, not {}",
        children()
    );
    writeln!(long_in, "c").unwrap();
    line.clear();
    long_out.read_line(&mut line).unwrap();
    assert_eq!(line, "out c\n");
    drop(long_in);
    assert!(long.wait().unwrap().success());
}

#[test]
fn dying_instance_fails_only_its_own_client() {
    let w = World::new();
    w.script("echo.sh", SLOW_ECHO);
    let args = ["run", "-j", "2", "./echo.sh"];
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let input = if i == 2 {
                "x\ndie\ny\n".to_owned()
            } else {
                input_of(i, 3)
            };
            let child = w.spawn(&args);
            std::thread::spawn(move || {
                let out = common::finish(child, input.as_bytes());
                (input, out)
            })
        })
        .collect();
    for (i, t) in calls.into_iter().enumerate() {
        let (input, out) = t.join().unwrap();
        if i == 2 {
            assert_eq!(
                out.status.code(),
                Some(3),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), "out x\n");
        } else {
            assert_eq!(ok_stdout(&out), expected(&input), "client {i}");
        }
    }
    assert_eq!(ok_stdout(&w.run(&args, b"later\n")), "out later\n");
}

#[test]
fn short_client_is_not_stuck_behind_a_long_one_when_interleaved() {
    let w = World::new();
    w.script("echo.sh", SLOW_ECHO);
    let args = ["run", "--interleave", "-j", "1", "./echo.sh"];
    let mut long = w.cmd(&args);
    long.env("DELAY", "0.02");
    let mut long = long
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let long_input = input_of(0, 200);
    let mut long_in = long.stdin.take().unwrap();
    let feed = long_input.clone();
    let feeder = std::thread::spawn(move || long_in.write_all(feed.as_bytes()));
    let mut long_out = BufReader::new(long.stdout.take().unwrap());
    let mut first = String::new();
    long_out.read_line(&mut first).unwrap();
    assert_eq!(first, "out client 0 record 0\n");

    let started = Instant::now();
    let short = w.run(&args, b"short\n");
    let short_took = started.elapsed();
    assert_eq!(ok_stdout(&short), "out short\n");

    let mut rest = String::new();
    std::io::Read::read_to_string(&mut long_out, &mut rest).unwrap();
    feeder.join().unwrap().unwrap();
    assert!(long.wait().unwrap().success());
    let long_took = started.elapsed();
    assert_eq!(first + &rest, expected(&long_input));
    // 200 records take 4 s; the short one waits a few records, not them all.
    assert!(
        short_took * 4 < long_took,
        "short call took {short_took:?}, the long one {long_took:?}"
    );
}

#[test]
fn prelude_reaches_every_client_in_both_modes() {
    for mode in [&["-j", "2"][..], &["--interleave", "-j", "2"][..]] {
        let w = World::new();
        w.script(
            "banner.sh",
            &format!(
                "#!/bin/sh\necho ready\n{}",
                &SLOW_ECHO["#!/bin/sh\n".len()..]
            ),
        );
        let mut args = vec!["run", "-P", "1"];
        args.extend_from_slice(mode);
        args.push("./banner.sh");
        for (input, out) in concurrent(&w, &args, 4, 3) {
            assert_eq!(
                ok_stdout(&out),
                format!("ready\n{}", expected(&input)),
                "{mode:?}"
            );
        }
    }
}

#[test]
fn hung_tool_in_a_pool_times_out_and_is_replaced() {
    let w = World::new();
    w.script("hang.sh", "#!/bin/sh\nwhile IFS= read -r l; do\n  if [ \"$l\" = hang ]; then sleep 888.5; fi\n  echo \"out $l\"\ndone\n");
    let args = ["run", "-j", "2", "-w", "1", "./hang.sh"];
    let hung = w.spawn(&args);
    let fine = w.run(&args, b"fine\n");
    assert_eq!(ok_stdout(&fine), "out fine\n");
    let out = common::finish(hung, b"hang\n");
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(ok_stdout(&w.run(&args, b"again\n")), "out again\n");
    assert!(wait_until(Duration::from_secs(5), || {
        !common::command_running("sleep 888.5")
    }));
}

#[test]
fn crash_on_a_first_record_fails_only_that_call() {
    let w = World::new();
    w.script(
        "die.sh",
        "#!/bin/sh\nsleep 0.5\nwhile IFS= read -r l; do\n  if [ \"$l\" = die ]; then exit 3; fi\n  echo \"out $l\"\ndone\n",
    );
    let args = ["run", "-j", "1", "./die.sh"];
    let dying = w.spawn(&args);
    let dying = std::thread::spawn(move || common::finish(dying, b"die\n"));
    assert!(wait_until(Duration::from_secs(10), || w
        .logs()
        .contains("tool started")));
    let waiting = w.spawn(&args);
    assert!(wait_until(Duration::from_secs(10), || w.calls_waiting() >= 1));
    let out = common::finish(waiting, b"hello\n");
    assert_eq!(ok_stdout(&out), "out hello\n");
    assert_eq!(dying.join().unwrap().status.code(), Some(3));
}

#[test]
fn instance_whose_tool_is_going_away_is_not_handed_out() {
    let w = World::new();
    // Answers one record, then closes its output and takes a while to exit.
    w.script(
        "quit.sh",
        "#!/bin/sh\nIFS= read -r l\necho \"out $l\"\nexec >&-\nsleep 1.5\nexit 5\n",
    );
    assert_eq!(ok_stdout(&w.run(&["run", "./quit.sh"], b"a\n")), "out a\n");
    assert!(wait_until(Duration::from_secs(5), || w
        .logs()
        .contains("exited")
        || w.logs().contains("closed its output")
        || w.logs().contains("tool started: ./quit.sh")
            && w.logs().matches("tool started").count() >= 2));
    let out = w.run(&["run", "./quit.sh"], b"b\n");
    assert_eq!(
        ok_stdout(&out),
        "out b\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn waiting_client_killed_with_a_full_queue_costs_nothing() {
    let w = World::new();
    w.script(
        "slow.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do\n  if [ \"$l\" = long ]; then sleep 1; else sleep 0.01; fi\n  echo \"out $l\"\ndone\n",
    );
    let args = ["run", "-j", "1", "./slow.sh"];
    ok_stdout(&w.run(&args, b"warm\n"));
    let holder = w.spawn(&args);
    let holder = std::thread::spawn(move || common::finish(holder, b"long\n"));
    assert!(wait_until(Duration::from_secs(10), || w
        .logs()
        .matches("tool started")
        .count()
        == 1
        && ls_busy(&w)));
    let mut flood = w.spawn(&args);
    let mut stdin = flood.stdin.take().unwrap();
    let line = format!("{}\n", "x".repeat(99));
    let feeder = std::thread::spawn(move || {
        for _ in 0..60_000 {
            if stdin.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
    });
    assert!(wait_until(Duration::from_secs(10), || w.calls_waiting() >= 1));
    flood.kill().unwrap();
    flood.wait().unwrap();
    feeder.join().unwrap();
    assert!(holder.join().unwrap().status.success());
    let started = Instant::now();
    assert_eq!(ok_stdout(&w.run(&args, b"next\n")), "out next\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// Whether the server's state file says a call is being served.
fn ls_busy(w: &World) -> bool {
    let out = w.run(&["ls", "--json"], b"");
    String::from_utf8_lossy(&out.stdout).contains("\"busy\"")
}

#[test]
fn forced_kill_starts_no_new_tool_and_tells_waiting_clients() {
    let w = World::new();
    w.script(
        "slow.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do sleep 5; echo \"out $l\"; done\n",
    );
    let args = ["run", "-j", "1", "./slow.sh"];
    let busy = w.spawn(&args);
    let busy = std::thread::spawn(move || common::finish(busy, b"a\n"));
    assert!(wait_until(Duration::from_secs(10), || ls_busy(&w)));
    let waiting = w.spawn(&args);
    let waiting = std::thread::spawn(move || common::finish(waiting, b"b\n"));
    assert!(wait_until(Duration::from_secs(10), || w.calls_waiting() >= 1));
    assert!(w.run(&["kill", "--all", "--force"], b"").status.success());
    let out = waiting.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("shutting down"));
    assert!(!busy.join().unwrap().status.success());
    let logs = w.logs();
    let stop = logs.find("stopping").unwrap();
    assert!(!logs[stop..].contains("tool started"), "{logs}");
}

/// Calls connected to the one server, waiting ones included, per its state file.
fn calls_connected(w: &World) -> u64 {
    let out = w.run(&["ls", "--json"], b"");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.get(0).map_or(0, |s| {
        s["clients_active"].as_u64().unwrap_or(0) + s["clients_waiting"].as_u64().unwrap_or(0)
    })
}

#[test]
fn a_tool_failing_at_start_fails_every_waiting_call_at_once() {
    let w = World::new();
    // "Loads" until the test lets it go on, then fails as a missing model would.
    w.script(
        "failing.sh",
        "#!/bin/sh\nwhile [ ! -e go ]; do sleep 0.02; done\necho 'model missing' >&2\nexit 3\n",
    );
    let calls: Vec<Child> = (0..4).map(|_| w.spawn(&["run", "./failing.sh"])).collect();
    let calls: Vec<_> = calls
        .into_iter()
        .map(|c| std::thread::spawn(move || common::finish(c, b"x\n")))
        .collect();
    assert!(wait_until(Duration::from_secs(20), || calls_connected(&w) == 4));
    w.write("go", "");
    for call in calls {
        let out = call.join().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(err.contains("model missing"), "{err}");
    }
    assert_eq!(tools_started(&w), 1, "one start for all: {}", w.logs());
}

#[test]
fn a_call_waiting_during_a_restart_is_served() {
    let w = World::new();
    let args = ["run", "-j", "1", "sed", "-u", "s/^/> /"];
    let mut first = w.spawn(&args);
    let mut first_in = first.stdin.take().unwrap();
    let mut first_out = BufReader::new(first.stdout.take().unwrap());
    writeln!(first_in, "a").unwrap();
    let mut line = String::new();
    first_out.read_line(&mut line).unwrap();
    assert_eq!(line, "> a\n");
    let second = w.spawn(&args);
    let second = std::thread::spawn(move || common::finish(second, b"b\n"));
    assert!(wait_until(Duration::from_secs(10), || w.calls_waiting() >= 1));
    let ls = w.run(&["ls", "--json"], b"");
    let servers: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let id = servers[0]["id"].as_str().unwrap().to_owned();
    assert!(w.run(&["restart", &id], b"").status.success());
    // The first call finishes on the old tool; the waiting one then gets a
    // fresh tool instead of waiting for somebody else to come along.
    drop(first_in);
    let rest = {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut first_out, &mut s).unwrap();
        s
    };
    assert_eq!(rest, "");
    assert!(common::finish(first, b"").status.success());
    assert_eq!(ok_stdout(&second.join().unwrap()), "> b\n");
}
