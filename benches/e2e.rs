//! End-to-end benchmarks of the real binary against real tools, measured
//! side by side in one run against the targets of SPEC 9. Run with
//! `cargo bench --bench e2e`: it needs only the Rust toolchain and a POSIX
//! shell, and prints a table of target against measured (medians of
//! several repetitions).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const VIASOCK: &str = env!("CARGO_BIN_EXE_viasock");

struct Bench {
    tmp: tempfile::TempDir,
    state: PathBuf,
}

struct Result {
    what: &'static str,
    target: String,
    measured: String,
    met: Option<bool>,
}

fn main() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let state = tmp.path().join("state");
    let b = Bench { tmp, state };
    let results = vec![
        b.warm_call(),
        b.streaming(),
        b.concurrency(),
        b.cold_start(),
        b.first_calls(),
        b.memory(),
    ];
    b.stop_servers();
    println!();
    println!(
        "{:<62} {:>14} {:>22}",
        "what (SPEC 9)", "target", "measured"
    );
    for r in &results {
        let mark = match r.met {
            Some(true) => "ok",
            Some(false) => "MISSED",
            None => "",
        };
        println!("{:<62} {:>14} {:>22}  {mark}", r.what, r.target, r.measured);
    }
}

impl Bench {
    fn cwd(&self) -> &Path {
        self.tmp.path()
    }

    fn viasock(&self, args: &[&str]) -> Command {
        let mut c = Command::new(VIASOCK);
        c.args(args)
            .env("VIASOCK_DIR", &self.state)
            .env("XDG_RUNTIME_DIR", self.tmp.path())
            .current_dir(self.cwd());
        c
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.cwd().join(name);
        std::fs::write(&path, body).expect("write tool");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn stop_servers(&self) {
        let _ = self.viasock(&["kill", "--all", "--force"]).status();
    }

    /// (1) A warm call on one line, whole process, against `cat`.
    fn warm_call(&self) -> Result {
        let runs = 300;
        let one = |c: &mut Command| -> Duration {
            let start = Instant::now();
            let out = feed(c, b"hello\n");
            let took = start.elapsed();
            assert_eq!(
                out.stdout,
                b"hello\n",
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            took
        };
        one(&mut self.viasock(&["run", "cat"]));
        let (mut direct, mut via) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            direct.push(one(&mut Command::new("cat")));
            via.push(one(&mut self.viasock(&["run", "cat"])));
        }
        let (d, v) = (median(&mut direct), median(&mut via));
        let added = v.saturating_sub(d);
        println!(
            "warm call: viasock run cat {:.3} ms, cat {:.3} ms (medians of {runs})",
            ms(v),
            ms(d)
        );
        Result {
            what: "(1) warm `viasock run cat`, one line, minus `cat`",
            target: "<= 1 ms".into(),
            measured: format!("{:.3} ms added", ms(added)),
            met: Some(added <= Duration::from_millis(1)),
        }
    }

    /// (2) 1,000,000 short lines through a warm server running `cat`.
    fn streaming(&self) -> Result {
        let input: Vec<u8> = (0..1_000_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        feed(&mut self.viasock(&["run", "cat"]), b"warm\n");
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let start = Instant::now();
                let out = feed(&mut self.viasock(&["run", "cat"]), &input);
                let took = start.elapsed();
                assert!(out.stdout == input, "1M lines came back changed");
                took
            })
            .collect();
        let rate = 1_000_000.0 / median(&mut times).as_secs_f64();
        println!("streaming: {rate:.0} records/s");
        Result {
            what: "(2) 1,000,000 short lines through a warm `cat` server",
            target: ">= 1000000/s".into(),
            measured: format!("{rate:.0} records/s"),
            met: Some(rate >= 1_000_000.0),
        }
    }

    /// (3) 8 concurrent clients x 5 records, tool sleeping 50 ms a record,
    /// `-j 4`.
    fn concurrency(&self) -> Result {
        let tool = self.script(
            "slow.sh",
            "#!/bin/sh\nwhile IFS= read -r l; do sleep 0.05; echo \"out $l\"; done\n",
        );
        let tool = tool.to_string_lossy().into_owned();
        let run = |opts: &[&str]| -> Duration {
            let start = Instant::now();
            let children: Vec<_> = (0..8)
                .map(|c| {
                    let mut args = vec!["run"];
                    args.extend_from_slice(opts);
                    args.push(&tool);
                    let mut child = self
                        .viasock(&args)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .spawn()
                        .expect("spawn viasock");
                    let input: String =
                        (0..5).map(|r| format!("client {c} record {r}\n")).collect();
                    let mut stdin = child.stdin.take().expect("stdin");
                    std::thread::spawn(move || stdin.write_all(input.as_bytes()));
                    child
                })
                .collect();
            for c in children {
                let out = c.wait_with_output().expect("wait");
                assert!(out.status.success(), "a call failed");
                assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 5);
            }
            start.elapsed()
        };
        let line = |label: &str, opts: &[&str]| -> Duration {
            // Tuning options take effect when a server starts: a new one.
            self.stop_servers();
            run(opts); // the server and its instances exist from here on
            let mut t: Vec<Duration> = (0..5).map(|_| run(opts)).collect();
            let m = median(&mut t);
            println!("concurrency, {label}: {:.3} s", m.as_secs_f64());
            m
        };
        let j4 = line("-j 4", &["-j", "4"]);
        line("-j 4 --interleave", &["-j", "4", "--interleave"]);
        line("-j 1", &["-j", "1"]);
        Result {
            what: "(3) 8 clients x 5 records, 50 ms/record, -j 4",
            target: "<= 0.6 s".into(),
            measured: format!("{:.3} s", j4.as_secs_f64()),
            met: Some(j4 <= Duration::from_millis(600)),
        }
    }

    /// (4) The first call of a tool that loads for 2 s, against the tool
    /// run directly.
    fn cold_start(&self) -> Result {
        let tool = self.script("load2s.sh", "#!/bin/sh\nsleep 2\nexec cat\n");
        let tool = tool.to_string_lossy().into_owned();
        let (mut direct, mut cold) = (Vec::new(), Vec::new());
        for rep in 0..3 {
            let start = Instant::now();
            let out = feed(Command::new(&tool).current_dir(self.cwd()), b"x\n");
            direct.push(start.elapsed());
            assert_eq!(out.stdout, b"x\n");
            // A new argument is a new command: a cold server each time.
            let arg = format!("-{rep}");
            let start = Instant::now();
            let out = feed(&mut self.viasock(&["run", &tool, &arg]), b"x\n");
            cold.push(start.elapsed());
            assert_eq!(
                out.stdout,
                b"x\n",
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (d, c) = (median(&mut direct), median(&mut cold));
        let added = c.saturating_sub(d);
        println!(
            "cold start: {:.3} s through viasock, {:.3} s directly",
            c.as_secs_f64(),
            d.as_secs_f64()
        );
        Result {
            what: "(4) first call of a tool that loads for 2 s",
            target: "<= 50 ms added".into(),
            measured: format!("{:.1} ms added", ms(added)),
            met: Some(added <= Duration::from_millis(50)),
        }
    }

    /// (5) 50 concurrent first calls of one command.
    fn first_calls(&self) -> Result {
        let tool = self.script("fifty.sh", "#!/bin/sh\nsleep 0.2\nexec sed -u 's/^/ok /'\n");
        let tool = tool.to_string_lossy().into_owned();
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let mut child = self
                    .viasock(&["run", &tool])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn");
                let mut stdin = child.stdin.take().expect("stdin");
                let _ = writeln!(stdin, "call {i}");
                (i, child)
            })
            .collect();
        let correct = calls
            .into_iter()
            .map(|(i, c)| (i, c.wait_with_output().expect("wait")))
            .filter(|(i, out)| {
                out.status.success() && out.stdout == format!("ok call {i}\n").as_bytes()
            })
            .count();
        let servers = std::fs::read_dir(self.state.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .filter(|log| log.contains("fifty.sh"))
            .map(|log| log.matches("listening at").count())
            .sum::<usize>();
        println!("50 first calls: {servers} server(s) started, {correct}/50 outputs correct");
        Result {
            what: "(5) 50 concurrent first calls of one command",
            target: "1 server, 50 ok".into(),
            measured: format!("{servers} server, {correct} ok"),
            met: Some(servers == 1 && correct == 50),
        }
    }

    /// (6) Resident memory of a server (its tool excluded), idle and after
    /// streaming 1,000,000 lines.
    fn memory(&self) -> Result {
        let input: Vec<u8> = (0..1_000_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let mut args = vec!["run", "-j", "2", "sed", "-u", "s/^//"];
        feed(&mut self.viasock(&args), b"x\n");
        let pid = self.server_pid("sed");
        let idle = rss_kib(pid);
        args.truncate(6);
        feed(&mut self.viasock(&args), &input);
        let busy = rss_kib(pid);
        println!(
            "server memory: {} KiB idle, {} KiB after 1M lines",
            idle, busy
        );
        let worst = idle.max(busy);
        Result {
            what: "(6) server resident memory, tool excluded",
            target: "<= 10 MiB".into(),
            measured: format!("{:.1} MiB", worst as f64 / 1024.0),
            met: Some(worst <= 10 * 1024),
        }
    }

    fn server_pid(&self, command: &str) -> u32 {
        let out = self.viasock(&["ls", "--json"]).output().expect("ls");
        let states: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).expect("ls --json");
        states
            .iter()
            .find(|s| s["command"][0] == command)
            .and_then(|s| s["server_pid"].as_u64())
            .expect("a server for the command") as u32
    }
}

/// Runs a command with `input` on stdin and returns its output.
fn feed(c: &mut Command, input: &[u8]) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait");
    let _ = feeder.join();
    out
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
