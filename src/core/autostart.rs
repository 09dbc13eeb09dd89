//! Finding or starting the server for a command.
//!
//! Connect first; only if nobody answers, take the command's lock, look
//! once more, and start `viasock serve` in a new session. The server says
//! `ready` on a pipe once it listens, so nobody sleeps a fixed time, and the
//! lock makes any number of concurrent first calls start exactly one server.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::core::client::{self, Handshake};
use crate::core::config::ToolSpec;
use crate::core::identity::Id;
use crate::core::paths::{StateDir, open_private_append};
use crate::core::protocol::Purpose;
use crate::core::{Fatal, status};

/// Longest wait for a server to say it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Servers that may close on us while shutting down before we give up.
const ATTEMPTS: usize = 5;

/// A connected, welcomed server.
pub struct Connection {
    pub stream: UnixStream,
    pub server_pid: u32,
}

/// Where a command's server lives.
pub struct Target<'a> {
    pub spec: &'a ToolSpec,
    /// The call's tuning options, encoded for the Hello.
    pub tuning: Vec<u8>,
    pub dir: &'a StateDir,
    pub id: Id,
    pub log: PathBuf,
}

/// Connects to the command's server, starting one if there is none (unless
/// `no_spawn`).
/// `opening` goes with the Hello (see [`client::Opening`]); it is sent
/// again if a server closes before its Welcome.
pub fn connect_or_start(t: &Target, no_spawn: bool, opening: &[u8]) -> Result<Connection, Fatal> {
    let socket = t.dir.socket(&t.id);
    for _ in 0..ATTEMPTS {
        let found = match t.dir.verify().map_err(unavailable)? {
            true => client::connect(&socket, client::HANDSHAKE_WAIT).map_err(unavailable)?,
            false => None,
        };
        let stream = match found {
            Some(s) => s,
            None => {
                // Only now: a server that listens was started with the
                // same patterns (they are part of the id), which passed.
                t.spec
                    .framing
                    .check()
                    .map_err(|why| Fatal::new(status::USAGE, why))?;
                if no_spawn {
                    return Err(no_server(&socket));
                }
                start(t, &socket)?
            }
        };
        if let Some(c) = welcome(stream, &t.id, &t.tuning, opening)? {
            return Ok(c);
        }
    }
    Err(Fatal::new(
        status::UNAVAILABLE,
        format!(
            "could not reach a server at {} (see log {})",
            socket.display(),
            t.log.display()
        ),
    ))
}

fn welcome(
    mut stream: UnixStream,
    id: &Id,
    tuning: &[u8],
    opening: &[u8],
) -> Result<Option<Connection>, Fatal> {
    match client::handshake(
        &mut stream,
        Purpose::Run,
        tuning,
        opening,
        client::HANDSHAKE_WAIT,
    ) {
        Ok(Handshake::Welcome(server_pid)) => Ok(Some(Connection { stream, server_pid })),
        Ok(Handshake::Closed) => Ok(None),
        Err(crate::core::protocol::ProtocolError::Io(e)) if client::timed_out(&e) => {
            Err(Fatal::new(
                status::UNAVAILABLE,
                format!(
                    "the server did not answer within {} s: it is stopped or wedged (`viasock ls` \
                 shows it as unresponsive; `viasock kill --force {}` stops it)",
                    client::HANDSHAKE_WAIT.as_secs(),
                    id.short()
                ),
            ))
        }
        Err(e) => Err(Fatal::new(
            status::UNAVAILABLE,
            format!("server handshake failed: {e}"),
        )),
    }
}

fn unavailable(e: impl std::fmt::Display) -> Fatal {
    Fatal::new(status::UNAVAILABLE, e.to_string())
}

fn no_server(socket: &Path) -> Fatal {
    Fatal::new(
        status::UNAVAILABLE,
        format!("no server is running at {} (--no-spawn)", socket.display()),
    )
}

/// Starts a server under the command's lock and returns a connection to
/// it, or to the one another caller started while we waited for the lock.
fn start(t: &Target, socket: &Path) -> Result<UnixStream, Fatal> {
    t.dir.ensure().map_err(unavailable)?;
    let lock_path = t.dir.lock(&t.id);
    let _lock = lock(&lock_path).map_err(|e| {
        unavailable(format!(
            "cannot take the start lock {}: {e}",
            lock_path.display()
        ))
    })?;
    if let Some(s) = client::connect(socket, client::HANDSHAKE_WAIT).map_err(unavailable)? {
        return Ok(s);
    }
    // Nobody listens: whatever is at the path was left by a dead server.
    match fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(unavailable(format!(
                "cannot remove stale socket {}: {e}",
                socket.display()
            )));
        }
    }
    spawn(t, socket)
}

/// Takes the exclusive lock at `path`. A server removes its lock file when
/// it stops; if that happened between our open and our lock, the file we
/// hold is no longer the lock, so open it again.
pub fn lock(path: &Path) -> io::Result<File> {
    loop {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)?;
        f.lock()?;
        let held = f.metadata()?;
        match fs::metadata(path) {
            Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => return Ok(f),
            _ => continue,
        }
    }
}

/// Runs `viasock serve` for the command in a new session, its output in the
/// log, and waits until it listens. Returns a connection the server took
/// at its start, as its stdin: it is this call's whatever happens at the
/// socket's path meanwhile, and the server serves it even if the model
/// changes before it is read (the call began before the tool loaded, so
/// it overlaps the change). A model directory written all the time thus
/// gives a cold call, not a failure.
fn spawn(t: &Target, socket: &Path) -> Result<UnixStream, Fatal> {
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| unavailable(format!("cannot make a socket pair: {e}")))?;
    let log = match open_private_append(&t.log) {
        Ok(f) => Stdio::from(f),
        // A symlink where the log goes was planted: refuse.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unavailable(format!(
                "cannot open log {}: it is a symlink",
                t.log.display()
            )));
        }
        // A read-only or full disk costs the log, not the service.
        Err(e) => {
            eprintln!(
                "viasock: warning: cannot write log {}: {e}; the server runs without a log",
                t.log.display()
            );
            Stdio::null()
        }
    };
    let exe = std::env::current_exe()
        .map_err(|e| unavailable(format!("cannot find the viasock executable: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--dir")
        .arg(t.dir.root())
        .arg("serve")
        .args(t.spec.serve_options())
        .arg("--log")
        .arg(&t.log)
        .arg("--socket")
        .arg(socket)
        .arg("--notify-ready")
        .arg("--caller-on-stdin")
        .arg("--")
        .arg(&t.spec.program)
        .args(&t.spec.args)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(log);
    // One of the crate's few unsafe blocks, each with its reason.
    // SAFETY: both calls are plain system calls, async-signal-safe,
    // touching no memory of the parent. setsid detaches the server from
    // the caller's terminal and job, so Ctrl-C or a closed terminal does
    // not take it down; close_range marks every descriptor the caller let
    // us inherit (a make jobserver, a test harness's pipe) close-on-exec,
    // so the server, which lives on, does not hold the caller's pipes
    // open.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid().map_err(io::Error::from)?;
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| unavailable(format!("cannot start the server: {e}")))?;
    let said = match child.stdout.take() {
        Some(out) => wait_ready(out),
        None => None,
    };
    if said.as_deref() == Some("ready") {
        return Ok(ours);
    }
    let _ = child.kill();
    let _ = child.wait();
    let why = match said {
        Some(line) => line.strip_prefix("failed: ").unwrap_or(&line).to_owned(),
        None => last_line(&t.log)
            .unwrap_or_else(|| "it exited without a word, and its log is empty".to_owned()),
    };
    Err(Fatal::new(
        status::UNAVAILABLE,
        format!(
            "the server did not start: {why} (see log {})",
            t.log.display()
        ),
    ))
}

/// Reads the server's first line (`ready`, or `failed: WHY`), within
/// [`READY_TIMEOUT`]; `None` if it died or timed out without one.
fn wait_ready(mut out: impl Read + AsFd) -> Option<String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    while !got.ends_with(b"\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [rustix::event::PollFd::new(
            &out,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
        match out.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&got);
    Some(line.trim_end().to_owned())
}

/// The last non-empty line of a file, for error messages.
pub fn last_line(path: &Path) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(8192))).ok()?;
    let mut text = Vec::new();
    f.read_to_end(&mut text).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_owned)
}
