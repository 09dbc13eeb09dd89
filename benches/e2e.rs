//! End-to-end benchmarks of the real binary against real tools, measured
//! side by side against the targets of SPEC 9. Run with
//! `cargo bench --bench e2e`; each case is repeated and its median shown.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const VIASOCK: &str = env!("CARGO_BIN_EXE_viasock");
const REPEAT: usize = 5;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let tool = dir.path().join("slow.sh");
    std::fs::write(
        &tool,
        "#!/bin/sh\nwhile IFS= read -r l; do sleep 0.05; echo \"out $l\"; done\n",
    )
    .expect("write tool");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    println!("{:<58} {:>10} {:>10}", "case", "target", "median");
    for (label, args, target) in [
        (
            "8 clients x 5 records, 50 ms/record, -j 4",
            vec!["-j", "4"],
            Some(0.6),
        ),
        (
            "8 clients x 5 records, 50 ms/record, -j 4 --interleave",
            vec!["-j", "4", "--interleave"],
            None,
        ),
        (
            "8 clients x 5 records, 50 ms/record, -j 1 (one at a time)",
            vec!["-j", "1"],
            None,
        ),
    ] {
        let secs = median(|| concurrent(&state, dir.path(), &tool, &args, 8, 5));
        let target = target.map_or("-".to_owned(), |t| format!("<= {t:.2} s"));
        println!("{label:<58} {target:>10} {secs:>8.3} s");
        stop_servers(&state);
    }
}

/// Wall time of `clients` concurrent calls of `records` records each, on a
/// server started (and warmed) beforehand.
fn concurrent(
    state: &Path,
    cwd: &Path,
    tool: &Path,
    opts: &[&str],
    clients: usize,
    records: usize,
) -> f64 {
    let run = || {
        let children: Vec<_> = (0..clients)
            .map(|c| {
                let mut child = Command::new(VIASOCK)
                    .arg("run")
                    .args(opts)
                    .arg(tool)
                    .env("VIASOCK_DIR", state)
                    .current_dir(cwd)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn viasock");
                let input: String = (0..records)
                    .map(|r| format!("client {c} record {r}\n"))
                    .collect();
                let mut stdin = child.stdin.take().expect("stdin");
                std::thread::spawn(move || stdin.write_all(input.as_bytes()));
                child
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().expect("wait");
            assert!(out.status.success(), "a call failed");
            assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), records);
        }
    };
    run(); // warm: the server and its instances exist from here on
    let start = Instant::now();
    run();
    start.elapsed().as_secs_f64()
}

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..REPEAT).map(|_| f()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn stop_servers(state: &Path) {
    let _ = Command::new(VIASOCK)
        .args(["kill", "--all", "--force"])
        .env("VIASOCK_DIR", state)
        .status();
}
