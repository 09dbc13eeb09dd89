//! A soak test: several client loops in parallel against one server, for
//! a bounded time (15 s; `VIASOCK_SOAK_SECS=600 cargo test --test soak` for
//! longer). Zero errors, every output checked, and the server's open
//! descriptors and memory do not grow from the start to the end.

mod common;

use std::time::{Duration, Instant};

use common::{World, wait_until};

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Runs `clients` loops of calls for `secs`; returns the calls made.
fn load(w: &World, clients: usize, secs: f64) -> usize {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    std::thread::scope(|s| {
        let loops: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let mut calls = 0;
                    let mut seed = c as u64 * 7919 + 1;
                    while Instant::now() < end {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let lines = 1 + (seed >> 33) % 300;
                        let input: String = (0..lines)
                            .map(|i| format!("c{c} n{calls} l{i} {seed:x}\n"))
                            .collect();
                        let out = w.run(
                            &["run", "-j", "2", "-W", "120", "./tool.sh"],
                            input.as_bytes(),
                        );
                        assert!(
                            out.status.success(),
                            "call failed: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                        let want: String = input.lines().map(|l| format!("{l} ok\n")).collect();
                        assert!(
                            out.stdout == want.as_bytes(),
                            "client {c} call {calls}: wrong output"
                        );
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        loops.into_iter().map(|l| l.join().unwrap()).sum()
    })
}

#[test]
fn parallel_loops_make_no_errors_and_leak_nothing() {
    let secs: f64 = std::env::var("VIASOCK_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15.0);
    let w = World::new();
    w.script("tool.sh", "#!/bin/sh\nexec sed -u 's/$/ ok/'\n");
    // Warm up: the server, both instances, and the allocator's pools.
    load(&w, 4, 3.0);
    let server = w.server_pids()[0];
    let settled = |pid| {
        let mut last = fds(pid);
        wait_until(Duration::from_secs(5), || {
            let now = fds(pid);
            let same = now == last;
            last = now;
            same
        });
        last
    };
    let (fds_before, rss_before) = (settled(server), rss_kib(server));
    let calls = load(&w, 4, secs);
    assert!(calls > 20, "only {calls} calls");
    assert_eq!(w.server_pids(), [server], "one server throughout");
    let fds_after = settled(server);
    let rss_after = rss_kib(server);
    eprintln!(
        "{calls} calls; fds {fds_before} -> {fds_after}; rss {rss_before} -> {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before,
        "descriptors grew: {fds_before} -> {fds_after}"
    );
    // Buffers and the allocator's pools settle at a size that depends on
    // how loaded the machine was; a leak grows with the calls. Three thousand
    // calls leaking a kilobyte each would not pass this bound.
    let slack = 3 * 1024;
    assert!(
        rss_after <= rss_before + slack,
        "memory grew: {rss_before} -> {rss_after} KiB over {calls} calls"
    );
}
