//! Test harness: a private temp directory per test, the real `viasock`
//! binary pointed at it, and a guard that stops every server the test
//! started.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_viasock");

/// A test's world: `work` is the working directory of every call, `state`
/// the state directory. Dropping it kills every server started in it.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub work: PathBuf,
    pub state: PathBuf,
}

impl World {
    pub fn new() -> Self {
        Self::with_state_name(".viasock")
    }

    /// A world whose state directory is `work/<name>` (`name` may nest).
    pub fn with_state_name(name: &str) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).expect("work dir");
        let state = work.join(name);
        Self { tmp, work, state }
    }

    /// `viasock ARGS` in this world.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.in_world(BIN);
        c.args(args);
        c
    }

    /// `program` in this world, with `viasock` first on its `PATH` (a
    /// shell that calls it by name).
    pub fn program(&self, program: &str) -> Command {
        let bin_dir = Path::new(BIN).parent().expect("the binary's directory");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(bin_dir.to_owned()).chain(std::env::split_paths(&path)),
        )
        .expect("a PATH");
        let mut c = self.in_world(program);
        c.env("PATH", path);
        c
    }

    /// `program` in the world's working directory, with its state
    /// directory and registry.
    fn in_world(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.current_dir(&self.work)
            .env("VIASOCK_DIR", &self.state)
            .env("XDG_RUNTIME_DIR", self.tmp.path())
            .env_remove("RUST_LOG")
            .env_remove("VIASOCK_LOG");
        c
    }

    /// Runs `viasock ARGS` with `input` on stdin and waits for it (a call
    /// that hangs for a minute is killed and fails the test).
    pub fn run(&self, args: &[&str], input: &[u8]) -> Output {
        let child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn viasock");
        finish(child, input)
    }

    /// Calls the world's first server has waiting for a free instance,
    /// as `ls --json` says (0 while there is no server).
    pub fn calls_waiting(&self) -> u64 {
        let out = self.run(&["ls", "--json"], b"");
        let servers: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).unwrap_or_default();
        servers
            .first()
            .and_then(|s| s["clients_waiting"].as_u64())
            .unwrap_or(0)
    }

    /// Starts `viasock ARGS` with piped stdio, for tests that drive it.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn viasock")
    }

    /// Writes an executable script into the working directory.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.work.join(name);
        write_executable(&path, body);
        path
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.work.join(name);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write");
        path
    }

    /// Pids of live servers of this world (found by their command line).
    pub fn server_pids(&self) -> Vec<u32> {
        let needle = self.state.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_server = args.first().is_some_and(|a| a.ends_with("viasock"))
                && args.iter().any(|a| a == "serve")
                && args.iter().any(|a| a.contains(&needle));
            if is_server && !is_zombie(pid) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Socket files in the state directory.
    pub fn sockets(&self) -> Vec<PathBuf> {
        files_in(&self.state.join("sockets"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "sock"))
            .collect()
    }

    /// All server logs concatenated.
    pub fn logs(&self) -> String {
        files_in(&self.state.join("logs"))
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill", "--all", "--force"]).output();
        // Servers that already removed their socket (stale, idling out) are
        // not reachable by `kill`; they must not outlive the test either.
        for pid in self.server_pids() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Sends signal `sig` (a name: INT, KILL, STOP...) to `pid`; a negative
/// pid is a process group.
pub fn signal(pid: i64, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), "--", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Feeds `input` to a started call and waits for it, at most a minute.
pub fn finish(child: Child, input: &[u8]) -> Output {
    finish_within(child, input, CALL_LIMIT)
}

/// [`finish`] with a limit of its own: a call still running after `limit`
/// is killed and fails the test.
pub fn finish_within(mut child: Child, input: &[u8], limit: Duration) -> Output {
    let pid = child.id();
    // A caller that kept stdin for itself (to write by hand) has `None` here.
    let stdin = child.stdin.take();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&input);
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait viasock"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("viasock call {pid} hung for {limit:?}");
        }
    };
    feeder.join().expect("feeder");
    out
}

/// A process the test started itself (a foreground server, say), which
/// must not outlive the test even if it fails: [`World`] cannot find it.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Longest a single call may take in a test before it counts as hung.
pub const CALL_LIMIT: Duration = Duration::from_secs(60);

pub fn write_executable(path: &Path, body: &str) {
    // Exec fails with ETXTBSY while any process holds the file open for
    // writing, and a child that another test thread is forking inherits
    // our descriptors until its own exec. So the file that is run is
    // written by a `cp` of its own, never opened for writing here, and
    // renamed into place (a script being run keeps its old inode).
    let src = path.with_extension("src~");
    let tmp = path.with_extension("tmp~");
    std::fs::write(&src, body).expect("write script");
    let copied = Command::new("cp")
        .arg(&src)
        .arg(&tmp)
        .status()
        .expect("run cp");
    assert!(copied.success(), "cp {} failed", path.display());
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, path).expect("rename script");
    let _ = std::fs::remove_file(&src);
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn process_alive(pid: u32) -> bool {
    !is_zombie(pid)
}

/// stdout of a finished call, as text, with its status and stderr checked.
#[track_caller]
pub fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "viasock failed: {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// Lines of a call's stderr that viasock itself wrote.
pub fn viasock_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("viasock: "))
        .map(str::to_owned)
        .collect()
}

/// Whether any process runs with exactly this command line (args joined by
/// spaces).
pub fn command_running(cmdline: &str) -> bool {
    std::fs::read_dir("/proc")
        .map(|r| {
            r.flatten().any(|e| {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    return false;
                };
                let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
                    return false;
                };
                let args: Vec<_> = raw
                    .split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(String::from_utf8_lossy)
                    .collect();
                args.join(" ") == cmdline && !is_zombie(pid)
            })
        })
        .unwrap_or(false)
}

pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|uids| uids.split_whitespace().nth(1) == Some("0"))
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
