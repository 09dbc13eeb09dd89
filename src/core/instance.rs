//! A tool process: spawning it, reading its prelude, collecting its
//! stderr, and telling how it ended. The [worker](crate::core::worker)
//! that owns an instance does the serving.
//!
//! Each tool runs in a process group of its own, so that killing it also
//! kills whatever it started (a wrapper script's children, say); the groups
//! of live tools are kept in [`GROUPS`] for a forced shutdown.

use std::collections::{BTreeSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::config::ToolSpec;
use crate::core::records::{Splitter, Terminator};

/// Without `-w`: how long a tool that wrote part of its prelude may stay
/// quiet before the waiting calls are told what it wrote.
const PRELUDE_QUIET: Duration = Duration::from_secs(5);
/// Turns of the runtime the stderr task gets to take in what waits in the
/// pipe before a new call's first record goes to the tool.
const STDERR_CATCH_UP: usize = 16;
/// Lines of the tool's stderr kept for error messages.
const TAIL_LINES: usize = 5;
/// Longest stderr line forwarded or logged in one piece.
const MAX_LINE: usize = 64 * 1024;

/// Process groups of the tools this process started and has not yet
/// killed.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Sends `sig` to every tool's process group.
pub fn signal_all(sig: rustix::process::Signal) {
    let groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for g in groups {
        signal_group(g, sig);
    }
}

/// Kills what is left of the process group the tool `pid` led.
pub fn kill_group(pid: u32) {
    signal_group(pid as i32, rustix::process::Signal::KILL);
}

fn signal_group(group: i32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(group) {
        let _ = rustix::process::kill_process_group(p, sig);
    }
}

/// Why a tool could not serve: the exit status for the client and a message.
#[derive(Clone, Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

/// One running tool process.
pub struct Instance {
    pub pid: u32,
    pub(crate) child: Child,
    /// `None` once closed for a graceful stop. A pipe the runtime watches,
    /// so that the tool closing its end is seen without writing to it.
    pub(crate) stdin: Option<pipe::Sender>,
    /// The inode of the stdin pipe, to see whether the tool waits on it.
    pub(crate) stdin_pipe: Option<u64>,
    pub(crate) stdout: ChildStdout,
    /// Splits the tool's output into answers; lives as long as the tool, so
    /// a partial answer is never lost between clients.
    pub(crate) out: Splitter,
    pub(crate) prelude: Vec<u8>,
    pub(crate) stderr: ToolStderr,
    stderr_task: Option<JoinHandle<()>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// Set once the tool has exited or was killed.
    pub(crate) dead: bool,
    /// Set by [`ended`](Self::ended) if the tool exited by itself (rather
    /// than closing its pipes and living on until killed).
    pub(crate) exited: bool,
}

impl Drop for Instance {
    /// Whatever the tool started dies with it; the server never leaves
    /// orphans behind.
    fn drop(&mut self) {
        signal_group(self.pid as i32, rustix::process::Signal::KILL);
        GROUPS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(self.pid as i32));
    }
}

impl Instance {
    /// Starts the tool and reads its prelude. Without `-w`, a tool that
    /// wrote part of a prelude and then went quiet is reported once
    /// through `notice` (for the calls that wait), and waited for.
    /// `spawned` is told the tool's pid as soon as it runs, before its
    /// prelude is read.
    pub async fn start(
        spec: &ToolSpec,
        output: &Terminator,
        notice: impl Fn(&str),
        spawned: impl FnOnce(u32),
    ) -> Result<Self, Failure> {
        let mut inst = Self::spawn(spec, output, None, spawned)?;
        inst.read_prelude(spec, notice).await?;
        Ok(inst)
    }

    /// Starts the tool to become a fork server (`--fork`): `control` is
    /// its socket to the server, `library` the preload library.
    pub fn start_fork_server(
        spec: &ToolSpec,
        output: &Terminator,
        control: std::os::fd::OwnedFd,
        library: &std::path::Path,
        spawned: impl FnOnce(u32),
    ) -> Result<Self, Failure> {
        Self::spawn(spec, output, Some((control, library)), spawned)
    }

    fn spawn(
        spec: &ToolSpec,
        output: &Terminator,
        fork: Option<(std::os::fd::OwnedFd, &std::path::Path)>,
        spawned: impl FnOnce(u32),
    ) -> Result<Self, Failure> {
        // Through `viasock __exec-tool`, which makes the tool die with the
        // server; /proc/self/exe is this binary even if it was replaced.
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0("viasock")
            .arg("__exec-tool")
            .arg(format!("--parent={}", std::process::id()));
        let stdin = match fork {
            Some((control, library)) => {
                cmd.arg("--fork-library").arg(library);
                Stdio::from(control)
            }
            None => Stdio::piped(),
        };
        cmd.arg("--")
            .arg(&spec.program)
            .args(&spec.args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let shown = spec.program.to_string_lossy();
        let mut child = cmd.spawn().map_err(|e| {
            let (code, what) = match e.kind() {
                std::io::ErrorKind::NotFound => (127, "command not found".to_owned()),
                std::io::ErrorKind::PermissionDenied => (126, "permission denied".to_owned()),
                _ if e.raw_os_error() == Some(libc::ENOEXEC) => (
                    126,
                    "not an executable format (a script without a #! line?)".to_owned(),
                ),
                _ => (1, e.to_string()),
            };
            Failure {
                code,
                message: format!("cannot start the tool: {shown}: {what}"),
            }
        })?;
        let pid = child.id().unwrap_or(0);
        spawned(pid);
        GROUPS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid as i32);
        let stdin = child
            .stdin
            .take()
            .and_then(|s| s.into_owned_fd().ok())
            .and_then(|fd| pipe::Sender::from_owned_fd(fd).ok());
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            unreachable!("both output pipes were requested");
        };
        let stdin_pipe = stdin
            .as_ref()
            .and_then(|s| rustix::fs::fstat(s).ok())
            .map(|st| st.st_ino);
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        // Close-on-exec, as every descriptor of ours: a later tool must not
        // inherit this one's stderr.
        let stderr_pipe = rustix::io::fcntl_dupfd_cloexec(&stderr, 0).ok();
        let (tx, rx) = mpsc::channel(1024);
        let stderr_task = tokio::spawn(pump_stderr(pid, stderr, tx, tail.clone()));
        tracing::info!(pid, "tool started: {}", describe(spec));
        Ok(Self {
            pid,
            child,
            stdin,
            stdin_pipe,
            stdout,
            out: spec.framing.output_splitter(output),
            prelude: Vec::new(),
            stderr: ToolStderr {
                lines: rx,
                pipe: stderr_pipe,
            },
            stderr_task: Some(stderr_task),
            tail,
            dead: false,
            exited: false,
        })
    }

    /// Reads the `-P` records the tool writes at start-up.
    async fn read_prelude(
        &mut self,
        spec: &ToolSpec,
        notice: impl Fn(&str),
    ) -> Result<(), Failure> {
        let inst = self;
        let pid = inst.pid;
        let prelude_records = spec.framing.prelude_records();
        if prelude_records > 0 {
            // -w bounds the wait for the prelude too: a prelude that cannot
            // complete (a -P or -T that does not fit the tool) must not
            // keep every caller waiting for ever.
            let deadline = spec
                .process_timeout
                .map(|t| tokio::time::Instant::now() + t);
            let mut buf = vec![0u8; 64 * 1024];
            let mut noticed = false;
            while inst.out.complete() < prelude_records {
                let read = match deadline {
                    Some(d) => tokio::time::timeout_at(d, inst.stdout.read(&mut buf)).await,
                    None if noticed || inst.out.untaken().is_empty() => {
                        Ok(inst.stdout.read(&mut buf).await)
                    }
                    None => match tokio::time::timeout(PRELUDE_QUIET, inst.stdout.read(&mut buf))
                        .await
                    {
                        Ok(r) => Ok(r),
                        Err(_) => {
                            noticed = true;
                            let m = inst.incomplete_prelude(spec).message;
                            tracing::warn!(pid, "still waiting for the prelude: {m}");
                            notice(&format!("still waiting for the tool's prelude: {m}"));
                            continue;
                        }
                    },
                };
                match read {
                    Ok(Ok(0) | Err(_)) => {
                        return Err(inst.ended("while writing its prelude").await);
                    }
                    Ok(Ok(n)) => {
                        inst.out.push(&buf[..n]);
                    }
                    Err(_elapsed) => {
                        let f = inst.incomplete_prelude(spec);
                        tracing::warn!(pid, "{}", f.message);
                        inst.kill().await;
                        return Err(f);
                    }
                }
            }
            let mut prelude = Vec::new();
            inst.out.take_into(prelude_records, &mut prelude);
            inst.prelude = prelude;
            tracing::info!(pid, records = prelude_records, "prelude read");
        }
        Ok(())
    }

    /// The failure of a tool whose prelude did not complete within `-w`:
    /// what it wrote, against what `-P` and `-T` expect.
    fn incomplete_prelude(&self, spec: &ToolSpec) -> Failure {
        let written = self.out.untaken();
        let end = self.out.line_end();
        let lines = memchr::memchr_iter(end, written).count()
            + usize::from(!written.is_empty() && !written.ends_with(&[end]));
        let within = match spec.process_timeout {
            Some(t) => format!(" within {} s (-w); it was killed.", t.as_secs_f64()),
            None => "; set -w to bound the wait.".to_owned(),
        };
        let options = spec.framing.to_string();
        let message = match (lines, self.out.complete()) {
            (0, _) => format!(
                "the tool wrote no prelude at start-up ({options}){within} A tool that loads \
                 for longer needs a larger -w"
            ),
            (n, 0) => format!(
                "the tool wrote {n} line{} at start-up but no complete prelude record \
                 ({options}){within} Check -P, --prelude-lines and -T against what the tool \
                 writes before its first answer (`viasock detect` finds them)",
                plural(n)
            ),
            (n, k) => format!(
                "the tool wrote {n} line{} at start-up but only {k} of the {} prelude records \
                 ({options}){within} Check -P, --prelude-lines and -T against what the tool \
                 writes before its first answer (`viasock detect` finds them)",
                plural(n),
                spec.framing.prelude_records()
            ),
        };
        Failure {
            code: crate::core::status::TIMEOUT,
            message,
        }
    }

    /// The failure of a tool whose stdout closed or which exited: waits
    /// (briefly) for its exit and its last stderr lines, and kills what is
    /// left of its process group. Marks the instance dead.
    pub async fn ended(&mut self, when: &str) -> Failure {
        self.dead = true;
        let status = match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => None,
        };
        signal_group(self.pid as i32, rustix::process::Signal::KILL);
        self.exited = status.is_some();
        if status.is_none() {
            let _ = self.child.wait().await;
        }
        if let Some(t) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
        let tail = self.stderr_tail();
        let (code, what) = match status {
            Some(s) => exit_code(s),
            None => (
                1,
                "closed its input or output but did not exit; killed".to_owned(),
            ),
        };
        tracing::warn!(pid = self.pid, "tool {what} {when}");
        let mut message = format!("the tool {what} {when}");
        if !tail.is_empty() {
            message.push_str(&format!("; its last stderr: {tail}"));
        }
        Failure { code, message }
    }

    /// Kills the tool and its process group.
    pub async fn kill(&mut self) {
        self.dead = true;
        signal_group(self.pid as i32, rustix::process::Signal::KILL);
        let _ = self.child.wait().await;
        if let Some(t) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), t).await;
        }
    }

    /// Stops a healthy tool: closes its stdin, gives it `grace` to exit,
    /// then SIGTERM, then SIGKILL (dropping it kills its group).
    pub async fn stop(mut self, grace: Duration) {
        // A closed pipe is the tool's end of file.
        drop(self.stdin.take());
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            signal_group(self.pid as i32, rustix::process::Signal::TERM);
            let _ = tokio::time::timeout(grace, self.child.wait()).await;
        }
        tracing::info!(pid = self.pid, "tool stopped");
    }

    fn stderr_tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

/// The tool's stderr lines, as the stderr task logged them, for the worker
/// to forward to the call they belong to.
pub struct ToolStderr {
    lines: mpsc::Receiver<Vec<u8>>,
    /// The read end of the tool's stderr pipe, only to ask how much waits
    /// in it (the stderr task reads it).
    pipe: Option<std::os::fd::OwnedFd>,
}

impl ToolStderr {
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.lines.recv().await
    }

    pub fn try_recv(&mut self) -> Option<Vec<u8>> {
        self.lines.try_recv().ok()
    }

    /// Lets the stderr task take in everything the tool has written to
    /// stderr so far (for a moment at most, for a tool that never stops
    /// writing), then returns the lines it took that nobody has forwarded
    /// yet. They are logged already.
    pub async fn so_far(&mut self) -> Vec<Vec<u8>> {
        if let Some(pipe) = &self.pipe {
            for _ in 0..STDERR_CATCH_UP {
                if !rustix::io::ioctl_fionread(pipe).is_ok_and(|n| n > 0) {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        std::iter::from_fn(|| self.try_recv()).collect()
    }
}

/// The exit status of `run` for a finished tool, and words for it.
pub fn exit_code(s: ExitStatus) -> (i32, String) {
    match (s.code(), s.signal()) {
        (Some(c), _) => (c, format!("exited with status {c}")),
        (None, Some(sig)) => (128 + sig, format!("was killed by signal {sig}")),
        _ => (1, "ended".to_owned()),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The tool's command line, shell-quoted as `ls` and `top` show it.
fn describe(spec: &ToolSpec) -> String {
    crate::core::shell::join(
        std::iter::once(&spec.program)
            .chain(&spec.args)
            .map(|a| a.as_os_str()),
    )
}

/// Copies the tool's stderr, line by line, into the log (with a timestamp),
/// the tail kept for error messages, and the channel the serving client
/// forwards from. A client that is not reading never slows the tool down:
/// lines that do not fit the channel are only logged.
async fn pump_stderr(
    pid: u32,
    stderr: ChildStderr,
    tx: mpsc::Sender<Vec<u8>>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut r = BufReader::new(stderr);
    loop {
        let mut line = Vec::new();
        match (&mut r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned();
        tracing::info!(target: "tool", pid, "stderr: {text}");
        {
            let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(text);
        }
        let _ = tx.try_send(line);
    }
}
