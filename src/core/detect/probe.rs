//! One run of a tool under watch: started directly (no server) in a process
//! group of its own, fed through non-blocking pipes from one poll loop, and
//! asked after each step whether it is back waiting for input.

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use crate::core::procinfo::PipeReader;

/// How long output must stay quiet, once the tool is seen waiting for
/// input, before what it wrote counts as complete: a wrapper's child may
/// still be writing while the process that reads stdin waits again.
pub const SETTLE: Duration = Duration::from_millis(100);

/// How long a tool seen waiting for input must stay silent after it was
/// given something before that counts as no answer.
pub const SILENT: Duration = Duration::from_millis(300);

/// How long output must stay quiet for a tool that is never seen waiting
/// for input (it polls, or `/proc` cannot tell) before it counts as idle.
pub const QUIET: Duration = Duration::from_millis(1500);

/// Most output kept from one run; a tool that writes more for a sample
/// (`yes`) is cut off there and judged by it.
pub const OUTPUT_LIMIT: usize = 16 << 20;

/// Process groups of the tools running now, killed when detect itself is
/// stopped by a signal.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Makes SIGINT, SIGTERM and SIGHUP kill every tool being watched before
/// this process exits (128 + the signal), as the tools run in process
/// groups of their own that a terminal's Ctrl-C does not reach.
pub fn stop_tools_on_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        return;
    };
    // The handlers are in place once this returns, before any tool starts.
    let Ok((mut int, mut term, mut hup)) = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        ))
    }) else {
        return;
    };
    std::thread::spawn(move || {
        let n = runtime.block_on(async {
            tokio::select! {
                _ = int.recv() => 2,
                _ = term.recv() => 15,
                _ = hup.recv() => 1,
            }
        });
        for group in LIVE.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            kill_group(*group);
        }
        std::process::exit(128 + n);
    });
}

/// Longest a single poll sleeps, so readiness is looked at often.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// How a wait for the tool ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pause {
    /// Seen blocked reading its stdin, everything given read, output quiet.
    Waiting,
    /// Never seen blocked reading, but everything given was read and output
    /// stayed quiet for [`QUIET`].
    Quiet,
    /// Its stdout closed or it exited.
    Ended,
    /// The deadline passed first.
    TimedOut,
}

/// A running tool and everything it wrote so far.
pub struct Probe {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    /// Bytes given but not yet written into the pipe.
    unwritten: Vec<u8>,
    pub out: Vec<u8>,
    pub err: Vec<u8>,
    last_output: Instant,
    /// When something was last given (or the tool started).
    given_at: Instant,
    /// The tool wrote more than [`OUTPUT_LIMIT`]; its stdout was closed.
    pub overflowed: bool,
    reader: Option<PipeReader>,
    /// Ever seen blocked reading its stdin.
    pub seen_waiting: bool,
    pub started: Instant,
}

impl Probe {
    pub fn spawn(command: &[OsString]) -> std::io::Result<Self> {
        let (program, args) = command.split_first().ok_or(ErrorKind::InvalidInput)?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let started = Instant::now();
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child.id() as i32);
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let mut reader = None;
        if let Some(s) = &stdin {
            rustix::io::ioctl_fionbio(s, true)?;
            if let Ok(st) = rustix::fs::fstat(s) {
                reader = Some(PipeReader::new(child.id(), st.st_ino));
            }
        }
        for fd in [
            stdout.as_ref().map(AsFd::as_fd),
            stderr.as_ref().map(AsFd::as_fd),
        ]
        .into_iter()
        .flatten()
        {
            rustix::io::ioctl_fionbio(fd, true)?;
        }
        Ok(Self {
            child,
            stdin,
            stdout,
            stderr,
            unwritten: Vec::new(),
            out: Vec::new(),
            err: Vec::new(),
            last_output: started,
            given_at: started,
            overflowed: false,
            reader,
            seen_waiting: false,
            started,
        })
    }

    /// Queues `data` for the tool's stdin; it is written as the tool reads.
    pub fn give(&mut self, data: &[u8]) {
        self.unwritten.extend_from_slice(data);
        self.given_at = Instant::now();
    }

    /// Closes the tool's stdin once everything given is written.
    pub fn close_input(&mut self, deadline: Instant) {
        while !self.unwritten.is_empty() && self.stdin.is_some() && Instant::now() < deadline {
            self.step(TICK);
        }
        self.stdin = None;
        self.given_at = Instant::now();
    }

    /// Waits until the tool is back waiting for input with everything given
    /// read and its output quiet, or has ended, or `deadline` passed.
    pub fn pause(&mut self, deadline: Instant) -> Pause {
        loop {
            self.step(TICK);
            if self.stdout.is_none() || self.exited() {
                // What is still in the pipe is read by `step` until EOF.
                while self.stdout.is_some() && Instant::now() < deadline {
                    self.step(TICK);
                }
                return Pause::Ended;
            }
            let now = Instant::now();
            if now >= deadline {
                return Pause::TimedOut;
            }
            if !self.input_taken() {
                continue;
            }
            let answered = self.last_output > self.given_at;
            let quiet = now - self.last_output.max(self.given_at);
            if quiet < SETTLE.min(SILENT) {
                continue;
            }
            let waits = self.reader.as_mut().and_then(PipeReader::waits) == Some(true);
            self.seen_waiting |= waits;
            let settled = if answered { SETTLE } else { SILENT };
            if waits && quiet >= settled && self.output_drained() {
                return Pause::Waiting;
            }
            if !self.seen_waiting && quiet >= QUIET {
                return Pause::Quiet;
            }
        }
    }

    /// Reads output until it ends (true), or has been quiet for `quiet`
    /// since it was last written or input was last given or closed, or
    /// `deadline` passed.
    pub fn drain(&mut self, quiet: Duration, deadline: Instant) -> bool {
        while self.stdout.is_some() {
            let now = Instant::now();
            if now >= deadline || now - self.last_output.max(self.given_at) >= quiet {
                return false;
            }
            self.step(TICK);
        }
        true
    }

    /// Waits for the tool to exit; kills its group if it has not by
    /// `deadline`. Returns the status as a shell reports it (128 + S for a
    /// signal), `None` if it had to be killed.
    pub fn exit_status(&mut self, deadline: Instant) -> Option<i32> {
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            self.step(TICK);
        }
    }

    /// Whether everything given was written and read by the tool.
    pub fn input_taken(&self) -> bool {
        match &self.stdin {
            None => true,
            Some(s) => {
                self.unwritten.is_empty() && rustix::io::ioctl_fionread(s).is_ok_and(|n| n == 0)
            }
        }
    }

    fn output_drained(&self) -> bool {
        self.stdout
            .as_ref()
            .is_none_or(|s| rustix::io::ioctl_fionread(s).is_ok_and(|n| n == 0))
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// One round: waits up to `wait` for a pipe to be ready, then writes
    /// what the tool can take and reads what it wrote.
    fn step(&mut self, wait: Duration) {
        let want_write = !self.unwritten.is_empty();
        let mut fds = Vec::with_capacity(3);
        if let Some(s) = &self.stdout {
            fds.push(PollFd::new(s, PollFlags::IN));
        }
        if let Some(s) = &self.stderr {
            fds.push(PollFd::new(s, PollFlags::IN));
        }
        if let (Some(s), true) = (&self.stdin, want_write) {
            fds.push(PollFd::new(s, PollFlags::OUT));
        }
        if fds.is_empty() {
            std::thread::sleep(wait);
            return;
        }
        let timeout = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: wait.as_nanos() as _,
        };
        let _ = rustix::event::poll(&mut fds, Some(&timeout));
        drop(fds);
        if want_write && let Some(s) = &mut self.stdin {
            match s.write(&self.unwritten) {
                Ok(n) => {
                    self.unwritten.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The tool closed its stdin: nothing more can be given.
                Err(_) => {
                    self.unwritten.clear();
                    self.stdin = None;
                }
            }
        }
        if read_some(&mut self.stdout, &mut self.out, OUTPUT_LIMIT) {
            self.last_output = Instant::now();
            if self.out.len() > OUTPUT_LIMIT {
                self.out.truncate(OUTPUT_LIMIT);
                self.overflowed = true;
                self.stdout = None;
            }
        }
        read_some(&mut self.stderr, &mut self.err, OUTPUT_LIMIT);
    }

    /// Kills the tool and whatever it started.
    pub fn kill(&mut self) {
        let group = self.child.id() as i32;
        kill_group(group);
        let _ = self.child.wait();
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|g| *g != group);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill_group(group: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(group) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Reads what a non-blocking pipe holds into `into`, stopping once it
/// holds more than `limit`; closes it at end of file. Whether anything was
/// read.
fn read_some(pipe: &mut Option<impl Read>, into: &mut Vec<u8>, limit: usize) -> bool {
    let Some(p) = pipe else {
        return false;
    };
    let mut got = false;
    let mut buf = [0u8; 64 * 1024];
    while into.len() <= limit {
        match p.read(&mut buf) {
            Ok(0) => {
                *pipe = None;
                return got;
            }
            Ok(n) => {
                into.extend_from_slice(&buf[..n]);
                got = true;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return got,
            Err(_) => {
                *pipe = None;
                return got;
            }
        }
    }
    got
}
