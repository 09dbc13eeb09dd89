//! One run of a tool under watch: started directly (no server) in a process
//! group of its own, fed through non-blocking pipes from one poll loop, and
//! asked after each step whether it is back waiting for input.

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use crate::core::procinfo::PipeReader;

/// How long output must stay quiet, once the tool is seen waiting for
/// input, before what it wrote counts as complete.
const SETTLE: Duration = Duration::from_millis(30);

/// How long output must stay quiet for a tool that is never seen waiting
/// for input (it polls, or `/proc` cannot tell) before it counts as idle.
pub const QUIET: Duration = Duration::from_millis(1500);

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
            reader,
            seen_waiting: false,
            started,
        })
    }

    /// Queues `data` for the tool's stdin; it is written as the tool reads.
    pub fn give(&mut self, data: &[u8]) {
        self.unwritten.extend_from_slice(data);
    }

    /// Closes the tool's stdin once everything given is written.
    pub fn close_input(&mut self, deadline: Instant) {
        while !self.unwritten.is_empty() && self.stdin.is_some() && Instant::now() < deadline {
            self.step(TICK);
        }
        self.stdin = None;
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
            let quiet = now - self.last_output;
            let waits = self.reader.as_mut().and_then(PipeReader::waits) == Some(true);
            self.seen_waiting |= waits;
            if waits && quiet >= SETTLE && self.output_drained() {
                return Pause::Waiting;
            }
            if !self.seen_waiting && quiet >= QUIET {
                return Pause::Quiet;
            }
        }
    }

    /// Reads output until `until` or end of output, whatever the tool does.
    pub fn drain(&mut self, until: Instant) {
        while self.stdout.is_some() && Instant::now() < until {
            self.step(TICK);
        }
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
        if read_some(&mut self.stdout, &mut self.out) {
            self.last_output = Instant::now();
        }
        read_some(&mut self.stderr, &mut self.err);
    }

    /// Kills the tool and whatever it started.
    pub fn kill(&mut self) {
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::KILL,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads what a non-blocking pipe holds into `into`; closes it at end of
/// file. Whether anything was read.
fn read_some(pipe: &mut Option<impl Read>, into: &mut Vec<u8>) -> bool {
    let Some(p) = pipe else {
        return false;
    };
    let mut got = false;
    let mut buf = [0u8; 64 * 1024];
    loop {
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
}
