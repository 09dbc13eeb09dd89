//! Whether a tool that answers only at end of input can be served with
//! `--fork`: the sample through a real `--fork` server of its own (twice,
//! the second call a fork of the loaded tool), against a direct run.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::Options;

/// The findings of a check that passed, or why it failed.
pub fn check(
    command: &[OsString],
    sample: &[u8],
    want: &[u8],
    opts: &Options,
) -> Result<Vec<String>, String> {
    let cwd = std::env::current_dir().unwrap_or_default();
    if let Some(why) = crate::core::fork::refuse::reason(&command[0], &cwd) {
        return Err(why);
    }
    (opts.progress)("checking it through a --fork server");
    let dir = Scratch::new().map_err(|e| format!("cannot make a state directory: {e}"))?;
    let mut notes = Vec::new();
    for (n, when) in ["a first call", "a second call"].iter().enumerate() {
        // The first call waits for the tool to load.
        let limit = opts.timeout * if n == 0 { 2 } else { 1 };
        let out = call(&dir.0, command, sample, limit)?;
        // viasock's own word on a call it could not serve.
        let said = String::from_utf8_lossy(&out.stderr)
            .lines()
            .find_map(|l| l.strip_prefix("viasock: ").map(str::to_owned))
            // Its log goes with the scratch directory.
            .map(|l| l.split(" (see log ").next().unwrap_or_default().to_owned());
        if let Some(said) = said.filter(|_| out.stdout != want) {
            return Err(said);
        }
        if out.stdout != want {
            let at = out
                .stdout
                .iter()
                .zip(want)
                .take_while(|(a, b)| a == b)
                .count();
            return Err(format!(
                "through --fork, {when} gives other bytes than a direct run (from byte {at}: {} \
                 instead of {})",
                super::shape::excerpt(&out.stdout[at..]),
                super::shape::excerpt(&want[at..])
            ));
        }
        if n == 1 {
            notes.push(format!(
                "through --fork, two calls give the bytes of a direct run{}",
                match out.status.code() {
                    Some(0) => String::new(),
                    Some(c) => format!(" and its status, {c}"),
                    None => String::new(),
                }
            ));
        }
    }
    Ok(notes)
}

/// A call through `viasock run --fork` in state directory `dir`.
fn call(
    dir: &Path,
    command: &[OsString],
    sample: &[u8],
    limit: Duration,
) -> Result<Output, String> {
    let mut child = viasock(dir)
        .arg("run")
        .arg("--fork")
        .arg("--")
        .args(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run viasock: {e}"))?;
    let pid = child.id();
    let mut stdin = child.stdin.take();
    let sample = sample.to_vec();
    std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&sample);
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(format!("a --fork call failed: {e}")),
        Err(_) => {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
            Err(format!(
                "a --fork call did not end within {} s",
                limit.as_secs_f64()
            ))
        }
    }
}

/// This binary, with its state (and registry) in `dir`.
fn viasock(dir: &Path) -> Command {
    let mut c = Command::new("/proc/self/exe");
    c.env("VIASOCK_DIR", dir.join("state"))
        .env("XDG_RUNTIME_DIR", dir)
        .env_remove("VIASOCK_NO_SPAWN")
        .env_remove("VIASOCK_INSTANCES")
        .env_remove("VIASOCK_SERVER_TIMEOUT");
    c
}

/// A private directory, removed (its server stopped first) when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("viasock-detect-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = viasock(&self.0)
            .args(["kill", "--all", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
