//! Tool instances: spawning a tool, reading its prelude, collecting its
//! stderr, and telling how it ended.
//!
//! The server owns one [`Slot`] behind a fair (FIFO) lock; whoever holds the
//! lock has the instance to itself. Clients that were waiting while a start
//! failed all get that failure instead of starting the tool again each.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::core::config::ToolSpec;
use crate::core::records::{Splitter, Terminator};

/// Lines of the tool's stderr kept for error messages.
const TAIL_LINES: usize = 5;
/// Longest stderr line forwarded or logged in one piece.
const MAX_LINE: usize = 64 * 1024;

/// Why a tool could not serve: the exit status for the client and a message.
#[derive(Clone, Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

/// One running tool process.
pub struct Instance {
    pub pid: u32,
    child: Child,
    pub(crate) stdin: ChildStdin,
    pub(crate) stdout: ChildStdout,
    /// Splits the tool's output into answers; lives as long as the tool, so
    /// a partial answer is never lost between clients.
    pub(crate) out: Splitter,
    pub(crate) prelude: Vec<u8>,
    pub(crate) stderr: mpsc::Receiver<Vec<u8>>,
    stderr_task: Option<JoinHandle<()>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// Set once the tool has exited or was killed; the slot then drops it.
    pub(crate) dead: bool,
    /// Records answered over the instance's life.
    pub(crate) answered: u64,
}

impl Instance {
    /// Starts the tool and reads its prelude.
    pub async fn start(spec: &ToolSpec, output: &Terminator) -> Result<Self, Failure> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let shown = spec.program.to_string_lossy();
        let mut child = cmd.spawn().map_err(|e| {
            let (code, what) = match e.kind() {
                std::io::ErrorKind::NotFound => (127, "command not found".to_owned()),
                std::io::ErrorKind::PermissionDenied => (126, "permission denied".to_owned()),
                _ => (1, e.to_string()),
            };
            Failure {
                code,
                message: format!("cannot start the tool: {shown}: {what}"),
            }
        })?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three pipes were requested");
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel(1024);
        let stderr_task = tokio::spawn(pump_stderr(pid, stderr, tx, tail.clone()));
        tracing::info!(pid, "tool started: {}", describe(spec));
        let mut inst = Self {
            pid,
            child,
            stdin,
            stdout,
            out: Splitter::new(output.clone()),
            prelude: Vec::new(),
            stderr: rx,
            stderr_task: Some(stderr_task),
            tail,
            dead: false,
            answered: 0,
        };
        if spec.prelude > 0 {
            let mut buf = vec![0u8; 64 * 1024];
            while inst.out.complete() < spec.prelude {
                match inst.stdout.read(&mut buf).await {
                    Ok(0) | Err(_) => return Err(inst.ended("while writing its prelude").await),
                    Ok(n) => {
                        inst.out.push(&buf[..n]);
                    }
                }
            }
            let mut prelude = Vec::new();
            inst.out.take_into(spec.prelude, &mut prelude);
            inst.prelude = prelude;
            tracing::info!(pid, records = spec.prelude, "prelude read");
        }
        Ok(inst)
    }

    /// Whether the tool ever wrote anything: a tool that dies before that
    /// failed to start, as far as anybody can tell.
    pub fn has_spoken(&self) -> bool {
        self.answered > 0 || !self.prelude.is_empty()
    }

    /// Forgets stderr lines written while no client was attached.
    pub fn drop_stale_stderr(&mut self) {
        while self.stderr.try_recv().is_ok() {}
    }

    /// The failure of a tool whose stdout closed: waits (briefly) for its
    /// exit and its last stderr lines. Marks the instance dead.
    pub async fn ended(&mut self, when: &str) -> Failure {
        self.dead = true;
        let status = match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                let _ = self.child.start_kill();
                None
            }
        };
        if let Some(t) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
        let tail = self.stderr_tail();
        let (code, what) = match status {
            Some(s) => exit_code(s),
            None => (1, "closed its output but did not exit; killed".to_owned()),
        };
        tracing::warn!(pid = self.pid, "tool {what} {when}");
        let mut message = format!("the tool {what} {when}");
        if !tail.is_empty() {
            message.push_str(&format!("; its last stderr: {tail}"));
        }
        Failure { code, message }
    }

    /// Kills the tool (it did not answer in time).
    pub async fn kill(&mut self) {
        self.dead = true;
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        if let Some(t) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), t).await;
        }
    }

    /// Stops a healthy tool: closes its stdin, gives it `grace` to exit,
    /// then SIGTERM, then SIGKILL.
    pub async fn stop(self, grace: Duration) {
        let Self {
            mut child,
            stdin,
            pid,
            ..
        } = self;
        drop(stdin);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        tracing::info!(pid, "tool stopped");
    }

    fn stderr_tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

/// The exit status of SPEC 6 for a finished tool, and words for it.
pub fn exit_code(s: ExitStatus) -> (i32, String) {
    match (s.code(), s.signal()) {
        (Some(c), _) => (c, format!("exited with status {c}")),
        (None, Some(sig)) => (128 + sig, format!("was killed by signal {sig}")),
        _ => (1, "ended".to_owned()),
    }
}

fn describe(spec: &ToolSpec) -> String {
    std::iter::once(&spec.program)
        .chain(&spec.args)
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
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

/// The place of the server's one tool instance (SPEC 5 with `-j 1`).
#[derive(Default)]
pub struct Slot {
    pub instance: Option<Instance>,
    /// The last start that failed, and when it finished.
    failed: Option<(Instant, Failure)>,
}

impl Slot {
    /// Drops the instance if it died during a request. One that died
    /// without ever writing output failed to start: clients that waited
    /// meanwhile get `failure` rather than starting it again one by one.
    pub fn retire_dead(&mut self, failure: impl FnOnce() -> Failure) {
        if let Some(inst) = &self.instance
            && inst.dead
        {
            if !inst.has_spoken() {
                self.failed = Some((Instant::now(), failure()));
            }
            self.instance = None;
        }
    }

    /// A live instance for a client that arrived at `arrived`: the existing
    /// one, or a new one. If a start failed while the client waited, it gets
    /// that failure rather than a second attempt.
    pub async fn ensure(
        &mut self,
        spec: &ToolSpec,
        output: &Terminator,
        arrived: Instant,
    ) -> Result<&mut Instance, Failure> {
        if self.instance.as_ref().is_some_and(|i| i.dead) {
            self.instance = None;
        }
        if self.instance.is_none() {
            if let Some((at, f)) = &self.failed
                && *at >= arrived
            {
                return Err(f.clone());
            }
            match Instance::start(spec, output).await {
                Ok(i) => {
                    self.failed = None;
                    self.instance = Some(i);
                }
                Err(f) => {
                    tracing::warn!("tool failed to start: {}", f.message);
                    self.failed = Some((Instant::now(), f.clone()));
                    return Err(f);
                }
            }
        }
        match self.instance.as_mut() {
            Some(i) => Ok(i),
            None => unreachable!("an instance was just put in place"),
        }
    }
}
