//! End-to-end benchmarks of the real binary against real tools, measured
//! side by side in one run against the performance targets. Run with
//! `cargo bench --bench e2e`: it needs the Rust toolchain and a POSIX
//! shell (a C compiler and `make` for two rows, which are left out
//! without them), and prints a table of target against measured: medians
//! of interleaved runs, whole processes, as a user would time them.
//! `VIASOCK_BENCH_BIN=PATH` measures another build of viasock (the musl
//! one, say) with the same harness.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary measured: this build's, or `VIASOCK_BENCH_BIN` (a relative
/// path counts from where the benchmark was started, not from the
/// directories its commands run in).
fn viasock_bin() -> PathBuf {
    match std::env::var_os("VIASOCK_BENCH_BIN") {
        Some(p) => std::path::absolute(&p).expect("VIASOCK_BENCH_BIN"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_viasock")),
    }
}

/// Runs of each command in the warm-call rows.
const WARM_RUNS: usize = 400;

struct Bench {
    tmp: tempfile::TempDir,
    state: PathBuf,
}

struct Row {
    what: String,
    target: String,
    measured: String,
    met: Option<bool>,
}

impl Row {
    fn new(what: &str, target: &str, measured: String, met: Option<bool>) -> Self {
        Self {
            what: what.to_owned(),
            target: target.to_owned(),
            measured,
            met,
        }
    }
}

fn main() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let state = tmp.path().join("state");
    let b = Bench { tmp, state };
    println!("measuring {}", viasock_bin().display());
    let mut rows = Vec::new();
    rows.extend(b.warm_call());
    rows.extend(b.model_sizes());
    rows.extend(b.streaming());
    rows.push(b.concurrency());
    rows.push(b.cold_start());
    rows.push(b.one_shot());
    rows.push(b.first_calls());
    rows.push(b.memory());
    rows.extend(b.make_pipeline());
    b.stop_servers();
    println!();
    println!("{:<66} {:>16} {:>34}", "what", "target", "measured");
    for r in &rows {
        let mark = match r.met {
            Some(true) => "ok",
            Some(false) => "MISSED",
            None => "",
        };
        println!("{:<66} {:>16} {:>34}  {mark}", r.what, r.target, r.measured);
    }
}

impl Bench {
    fn cwd(&self) -> &Path {
        self.tmp.path()
    }

    fn viasock(&self, args: &[&str]) -> Command {
        let mut c = Command::new(viasock_bin());
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
        let _ = self
            .viasock(&["kill", "--all", "--force"])
            .stdout(Stdio::null())
            .status();
    }

    /// Medians of `commands` run in turn `WARM_RUNS` times, each whole
    /// process from spawn to exit with one line from a file on stdin and
    /// its output thrown away (as hyperfine runs a command), after one run
    /// each whose output is checked.
    fn interleaved(&self, commands: &mut [Command]) -> Vec<Duration> {
        let input = self.cwd().join("one-line");
        std::fs::write(&input, "hello\n").expect("input");
        let stdin = || std::fs::File::open(&input).expect("input");
        for c in commands.iter_mut() {
            let out = c
                .stdin(stdin())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .expect("spawn");
            assert_eq!(
                out.stdout,
                b"hello\n",
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut times = vec![Vec::with_capacity(WARM_RUNS); commands.len()];
        for _ in 0..WARM_RUNS {
            for (c, t) in commands.iter_mut().zip(&mut times) {
                c.stdin(stdin()).stdout(Stdio::null()).stderr(Stdio::null());
                let start = Instant::now();
                let status = c.status().expect("spawn");
                t.push(start.elapsed());
                assert!(status.success(), "{c:?} failed: {status}");
            }
        }
        times.iter_mut().map(|t| median(t)).collect()
    }

    /// A warm call on one line against `cat`, and against the least any
    /// program can cost: a static one that copies its input.
    fn warm_call(&self) -> Vec<Row> {
        let limit = self.minimal_program();
        let mut commands = vec![Command::new("cat"), self.viasock(&["run", "cat"])];
        if let Some(p) = &limit {
            commands.push(Command::new(p));
        }
        let t = self.interleaved(&mut commands);
        let (cat, via) = (t[0], t[1]);
        let ratio = via.as_secs_f64() / cat.as_secs_f64();
        println!(
            "warm call: viasock run cat {:.3} ms, cat {:.3} ms{} (medians of {WARM_RUNS})",
            ms(via),
            ms(cat),
            t.get(2)
                .map(|l| format!(", minimal static program {:.3} ms", ms(*l)))
                .unwrap_or_default()
        );
        let mut rows = vec![Row::new(
            "warm `viasock run cat`, one line, whole process, against `cat`",
            "ratio <= 0.85",
            format!("{ratio:.2} ({:.3} / {:.3} ms)", ms(via), ms(cat)),
            Some(ratio <= 0.85),
        )];
        if let Some(l) = t.get(2) {
            rows.push(Row::new(
                "  the same against a minimal static program that copies its input",
                "",
                format!(
                    "{:.2} (+{:.3} ms over {:.3} ms)",
                    via.as_secs_f64() / l.as_secs_f64(),
                    ms(via.saturating_sub(*l)),
                    ms(*l)
                ),
                None,
            ));
        }
        rows
    }

    /// A static program that copies stdin to stdout: a C one if there is
    /// a C compiler, else a Rust one.
    fn minimal_program(&self) -> Option<PathBuf> {
        let out = self.cwd().join("copy");
        let c = self.cwd().join("copy.c");
        std::fs::write(
            &c,
            "#include <unistd.h>\nint main(void){char b[65536];ssize_t n;\n\
             while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}\n",
        )
        .ok()?;
        let built = Command::new("cc")
            .args(["-O2", "-static", "-o"])
            .arg(&out)
            .arg(&c)
            .status()
            .is_ok_and(|s| s.success());
        if built {
            return Some(out);
        }
        let rs = self.cwd().join("copy.rs");
        std::fs::write(
            &rs,
            "use std::io::{Read, Write};\nfn main() { let mut b = [0u8; 65536];\n\
             let (mut i, mut o) = (std::io::stdin().lock(), std::io::stdout().lock());\n\
             while let Ok(n @ 1..) = i.read(&mut b) { o.write_all(&b[..n]).unwrap(); } }\n",
        )
        .ok()?;
        Command::new("rustc")
            .args(["-O", "-C", "target-feature=+crt-static", "-o"])
            .arg(&out)
            .arg(&rs)
            .status()
            .is_ok_and(|s| s.success())
            .then_some(out)
    }

    /// The warm call with a model directory of growing size.
    fn model_sizes(&self) -> Vec<Row> {
        let sizes = [(10, 1), (1_000, 10), (10_000, 100), (100_000, 1_000)];
        let mut commands = Vec::new();
        for (files, dirs) in sizes {
            let model = self.cwd().join(format!("model-{files}"));
            for d in 0..dirs {
                let dir = model.join(format!("g{}/d{d}", d % 10));
                std::fs::create_dir_all(&dir).expect("model dir");
                for f in 0..files / dirs {
                    std::fs::write(dir.join(format!("f{f}")), f.to_string()).expect("model file");
                }
            }
            let model = model.to_string_lossy().into_owned();
            // The tool ignores its model: only the cost of naming it shows.
            let started = Instant::now();
            feed(
                &mut self.viasock(&["run", "sh", "-c", "exec cat", "sh", &model]),
                b"x\n",
            );
            println!(
                "model of {files} files in {dirs} directories: server started in {:.3} s",
                started.elapsed().as_secs_f64()
            );
            commands.push(self.viasock(&["run", "sh", "-c", "exec cat", "sh", &model]));
        }
        let t = self.interleaved(&mut commands);
        println!(
            "warm call with a model of 10 / 1,000 / 10,000 / 100,000 files: {}",
            t.iter()
                .map(|d| format!("{:.3} ms", ms(*d)))
                .collect::<Vec<_>>()
                .join(" / ")
        );
        let (small, big) = (t[0], t[3]);
        let added = big.as_secs_f64() - small.as_secs_f64();
        vec![
            Row::new(
                "warm call with a model of 100,000 files in 1,000 dirs, against 10",
                "<= +0.2 ms",
                format!(
                    "{:+.3} ms ({:.3} / {:.3} ms)",
                    added * 1e3,
                    ms(big),
                    ms(small)
                ),
                Some(added <= 0.000_2),
            ),
            Row::new(
                "  with 1,000 / 10,000 files",
                "",
                format!("{:.3} / {:.3} ms", ms(t[1]), ms(t[2])),
                None,
            ),
        ]
    }

    /// 1,000,000 short lines through a warm server running `cat`.
    fn streaming(&self) -> Vec<Row> {
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
        vec![Row::new(
            "1,000,000 short lines through a warm `viasock run cat`",
            ">= 20,000,000/s",
            format!("{:.1} M records/s", rate / 1e6),
            Some(rate >= 20_000_000.0),
        )]
    }

    /// 8 concurrent clients x 5 records, tool sleeping 50 ms a record,
    /// `-j 4`.
    fn concurrency(&self) -> Row {
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
        Row::new(
            "8 clients x 5 records, 50 ms/record, -j 4",
            "<= 0.6 s",
            format!("{:.3} s", j4.as_secs_f64()),
            Some(j4 <= Duration::from_millis(600)),
        )
    }

    /// The first call of a tool that loads for 2 s, against the tool
    /// run directly.
    fn cold_start(&self) -> Row {
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
        Row::new(
            "first call of a tool that loads for 2 s, against a direct run",
            "<= +10 ms",
            format!("+{:.1} ms", ms(added)),
            Some(added <= Duration::from_millis(10)),
        )
    }

    /// A one-shot tool (it reads to the end of its input) that loads for
    /// 2 s: run directly, and warm through `--fork`, against a warm
    /// record-mode call.
    fn one_shot(&self) -> Row {
        let tool = self.script("oneshot2s.sh", "#!/bin/sh\nsleep 2\nexec cat\n");
        let tool = tool.to_string_lossy().into_owned();
        let mut direct = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            let out = feed(Command::new(&tool).current_dir(self.cwd()), b"hello\n");
            direct.push(start.elapsed());
            assert_eq!(out.stdout, b"hello\n");
        }
        let t = self.interleaved(&mut [
            self.viasock(&["run", "cat"]),
            self.viasock(&["run", "--fork", &tool]),
        ]);
        let (record, fork) = (t[0], t[1]);
        let d = median(&mut direct);
        let added = fork.saturating_sub(record);
        println!(
            "one-shot tool: {:.3} s directly, {:.3} ms warm through --fork, {:.3} ms a warm \
             record-mode call (medians of {WARM_RUNS})",
            d.as_secs_f64(),
            ms(fork),
            ms(record)
        );
        Row::new(
            "one-shot tool that loads for 2 s: direct vs `--fork` warm",
            "<= record +5 ms",
            format!(
                "{:.0} ms / {:.2} ms (+{:.2} ms)",
                ms(d),
                ms(fork),
                ms(added)
            ),
            Some(added <= Duration::from_millis(5)),
        )
    }

    /// 50 concurrent first calls of one command.
    fn first_calls(&self) -> Row {
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
        Row::new(
            "50 concurrent first calls of one command",
            "1 server, 50 ok",
            format!("{servers} server, {correct} ok"),
            Some(servers == 1 && correct == 50),
        )
    }

    /// Resident memory of a server (its tool excluded): idle, after
    /// 1,000,000 lines, and a few seconds after a 100 MB record.
    fn memory(&self) -> Row {
        let input: Vec<u8> = (0..1_000_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let args = ["run", "-j", "2", "sed", "-u", "s/^//"];
        feed(&mut self.viasock(&args), b"x\n");
        let pid = self.server_pid("sed");
        let idle = rss_kib(pid);
        feed(&mut self.viasock(&args), &input);
        let lines = rss_kib(pid);
        let mut big = vec![b'x'; 100_000_000];
        big.push(b'\n');
        let out = feed(&mut self.viasock(&args), &big);
        assert_eq!(
            out.stdout.len(),
            big.len(),
            "the 100 MB record came back changed"
        );
        drop((big, out));
        std::thread::sleep(Duration::from_secs(3));
        let after_big = rss_kib(pid);
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "server memory: {idle} KiB idle, {lines} KiB after 1M lines, {after_big} KiB 3 s after a \
             100 MB record"
        );
        Row::new(
            "server memory, tool excluded: idle / after 1M lines / after 100 MB",
            "<= 5 / 8 / 10 MiB",
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                mib(idle),
                mib(lines),
                mib(after_big)
            ),
            Some(idle <= 5 * 1024 && lines <= 8 * 1024 && after_big <= 10 * 1024),
        )
    }

    /// `make -j4` over 50 small files through a tool that loads for 1 s,
    /// directly and through viasock.
    fn make_pipeline(&self) -> Option<Row> {
        if !Command::new("make")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            println!("make pipeline: left out (no make)");
            return None;
        }
        let dir = self.cwd().join("pipeline");
        std::fs::create_dir_all(dir.join("in")).expect("pipeline dir");
        for i in 0..50 {
            std::fs::write(dir.join(format!("in/{i}.txt")), format!("text {i}\nmore\n"))
                .expect("input");
        }
        self.script(
            "pipeline/tag",
            "#!/bin/sh\nsleep 1\nexec sed -u 's/^/tag /'\n",
        );
        std::fs::write(
            dir.join("Makefile"),
            "IN := $(wildcard in/*.txt)\nall: $(IN:in/%=out/%)\n\
             out/%.txt: in/%.txt\n\t@mkdir -p out\n\t@$(RUN) ./tag < $< > $@\n",
        )
        .expect("Makefile");
        let make = |run: &str| -> Duration {
            let _ = std::fs::remove_dir_all(dir.join("out"));
            let start = Instant::now();
            let ok = Command::new("make")
                .args(["-s", "-j4", &format!("RUN={run}")])
                .current_dir(&dir)
                .env("VIASOCK_DIR", &self.state)
                .env("XDG_RUNTIME_DIR", self.tmp.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "make failed");
            let took = start.elapsed();
            let out = std::fs::read_to_string(dir.join("out/7.txt")).expect("output");
            assert_eq!(out, "tag text 7\ntag more\n");
            took
        };
        let direct = make("");
        let via = make(&format!("{} run", viasock_bin().display()));
        println!(
            "make -j4, 50 files, a tool that loads for 1 s: {:.2} s directly, {:.2} s through \
             viasock (its first call starts the server)",
            direct.as_secs_f64(),
            via.as_secs_f64()
        );
        Some(Row::new(
            "make -j4 over 50 files, tool loading 1 s: direct / viasock",
            "",
            format!("{:.2} s / {:.2} s", direct.as_secs_f64(), via.as_secs_f64()),
            None,
        ))
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
