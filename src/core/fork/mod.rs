//! Serving a one-shot tool (`run --fork`): a tool that reads its whole
//! input and exits.
//!
//! The tool is started once with the [preload library](library) and
//! becomes a fork server at its first read of stdin (the library's
//! `forkserver`); what it wrote to stdout before is its banner. For each
//! call the server passes the caller's stdin, stdout and stderr to the
//! fork server, which forks: the child goes on from that read with the
//! caller's descriptors, and its exit status is the call's. The server
//! sees none of the data; it bounds the calls at once (`-j`), passes on
//! the caller's signals, and reports how each child ended.
//!
//! Everything here runs on the server's one thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::SystemTime;

use tokio::time::Instant;

use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, Interest};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::core::asyncfd;
use crate::core::config::ToolSpec;
use crate::core::instance::{Failure, Instance};
use crate::core::records::Terminator;
use crate::core::status;

pub mod client;
pub mod library;
pub mod refuse;
#[path = "../../../preload/src/wire.rs"]
pub mod wire;

use wire::Msg;

/// Time a fork server gets to exit once its socket is closed.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Longest wait for the end of the banner once the tool has read: a
/// process the tool started may keep its stdout open.
const BANNER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How a call's child went.
#[derive(Debug)]
pub enum Event {
    /// It runs, with this pid.
    Started(u32),
    /// It ended with this wait status.
    Exited(i32),
    /// The call could not be served.
    Failed(Failure),
}

/// The one-shot tool of a server: its fork server, and the calls it runs.
pub struct Forker {
    spec: ToolSpec,
    output: Terminator,
    /// Where the preload library was written, or why it could not be.
    library: Result<PathBuf, String>,
    /// `-j`: children at once.
    slots: Arc<Semaphore>,
    max: Cell<usize>,
    waiting: Cell<usize>,
    current: RefCell<Option<Rc<ForkServer>>>,
    /// Fork servers a restart replaced, while their children run.
    retiring: RefCell<Vec<Rc<ForkServer>>>,
    next_call: Cell<u32>,
    /// The last start that failed, and when.
    failed: RefCell<Option<(Instant, Failure)>>,
}

/// Counts a call among those that wait for a slot while it does, however
/// its wait ends (the caller may leave).
struct Waiting<'a>(&'a Cell<usize>);

impl<'a> Waiting<'a> {
    fn enter(count: &'a Cell<usize>) -> Self {
        count.set(count.get() + 1);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// One start of the tool.
pub struct ForkServer {
    pid: Cell<u32>,
    pub started_at: SystemTime,
    phase: watch::Sender<Phase>,
    control: RefCell<Option<Rc<AsyncFd<OwnedFd>>>>,
    calls: RefCell<HashMap<u32, Running>>,
    requests: Cell<u64>,
    /// Told to stop: its control socket closes once its children are done.
    stop: tokio::sync::Notify,
    /// A call is over.
    left: tokio::sync::Notify,
    /// Threads the tool ran besides the one that read, when it read.
    threads: Cell<i32>,
    /// A caller was told of them.
    told_threads: Cell<bool>,
}

#[derive(Clone, Debug)]
enum Phase {
    Starting,
    Ready,
    Gone(Failure),
}

struct Running {
    events: mpsc::UnboundedSender<Event>,
    pid: Option<u32>,
    started_at: SystemTime,
}

/// What the state file shows of an instance.
pub struct InstanceView {
    pub pid: u32,
    pub state: &'static str,
    pub started_at: SystemTime,
    pub requests: u64,
}

impl Forker {
    /// `lib_dir`: where to write the preload library; `fallback`: where,
    /// if that path cannot be named in `LD_PRELOAD`.
    pub fn new(
        spec: ToolSpec,
        output: Terminator,
        lib_dir: &std::path::Path,
        fallback: Option<&std::path::Path>,
    ) -> Rc<Self> {
        let library = library::install(lib_dir, fallback).map_err(|e| {
            format!(
                "cannot write the preload library into {}: {e}",
                lib_dir.display()
            )
        });
        let max = spec.instances.max(1);
        Rc::new(Self {
            spec,
            output,
            library,
            slots: Arc::new(Semaphore::new(max)),
            max: Cell::new(max),
            waiting: Cell::new(0),
            current: RefCell::new(None),
            retiring: RefCell::new(Vec::new()),
            next_call: Cell::new(1),
            failed: RefCell::new(None),
        })
    }

    pub fn max(&self) -> usize {
        self.max.get()
    }

    /// A call's `-j` above the server's raises it.
    pub fn raise_max(&self, n: usize) {
        let n = n.min(wire::MAX_CHILDREN);
        if n > self.max.get() {
            self.slots.add_permits(n - self.max.get());
            self.max.set(n);
        }
    }

    /// Calls waiting for a slot (all `-j` children run).
    pub fn waiting(&self) -> usize {
        self.waiting.get()
    }

    /// Starts the tool, so that the first call waits less.
    pub fn prestart(self: &Rc<Self>) {
        let _ = self.server();
    }

    /// The fork server that takes new calls, started if there is none
    /// (or the last one is gone).
    fn server(self: &Rc<Self>) -> Rc<ForkServer> {
        if let Some(s) = &*self.current.borrow()
            && !matches!(*s.phase.borrow(), Phase::Gone(_))
        {
            return s.clone();
        }
        let s = ForkServer::start(&self.spec, &self.output, &self.library);
        *self.current.borrow_mut() = Some(s.clone());
        s
    }

    /// Replaces the fork server: calls from now on get a new one (the
    /// tool loads again); the old one ends once its children have.
    pub fn restart(self: &Rc<Self>) {
        if let Some(old) = self.current.borrow_mut().take() {
            old.stop.notify_one();
            self.retiring.borrow_mut().push(old);
        }
        self.prestart();
    }

    /// Stops every fork server once its children are done (with no
    /// control socket, a fork server exits), and waits until all are gone.
    pub async fn stop_all(&self) {
        let current = self.current.borrow_mut().take();
        let all: Vec<_> = current
            .into_iter()
            .chain(self.retiring.borrow_mut().drain(..))
            .collect();
        for s in &all {
            s.stop.notify_one();
        }
        for s in all {
            let _ = s
                .phase
                .subscribe()
                .wait_for(|p| matches!(p, Phase::Gone(_)))
                .await;
        }
    }

    /// Fails every call in flight with `why` (the server stops under
    /// them) and kills each child's process group: the child would die
    /// with its fork server, but not what it started.
    pub fn cut_all(&self, why: &str) {
        let current = self.current.borrow().clone();
        for s in current.iter().chain(self.retiring.borrow().iter()) {
            for c in s.calls.borrow().values() {
                let _ = c.events.send(Event::Failed(failure(why)));
                if let Some(group) = c.pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                    let _ =
                        rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                }
            }
        }
    }

    /// Waits for a slot and the fork server, then has it fork a child
    /// with the caller's `stdio`.
    pub async fn call(self: &Rc<Self>, stdio: [OwnedFd; 3]) -> Result<Call, Failure> {
        let arrived = Instant::now();
        let permit = {
            let _waiting = Waiting::enter(&self.waiting);
            self.slots.clone().acquire_owned().await
        };
        let permit = permit.map_err(|_| failure("the server is stopping"))?;
        // A tool that failed to start while this call waited is not
        // started once more for each call that waited with it.
        if let Some((at, f)) = &*self.failed.borrow()
            && *at >= arrived
        {
            return Err(f.clone());
        }
        let server = self.server();
        let mut phase = server.phase.subscribe();
        let ready = phase
            .wait_for(|p| !matches!(p, Phase::Starting))
            .await
            .map(|p| p.clone());
        match ready {
            Ok(Phase::Ready) => {}
            Ok(Phase::Gone(f)) => {
                *self.failed.borrow_mut() = Some((Instant::now(), f.clone()));
                return Err(f);
            }
            _ => return Err(failure("the tool's fork server is gone")),
        }
        let control = server
            .control
            .borrow()
            .clone()
            .ok_or_else(|| failure("the tool's fork server is gone"))?;
        let id = self.next_call.get();
        self.next_call.set(id.wrapping_add(1).max(1));
        let (tx, rx) = mpsc::unbounded_channel();
        server.calls.borrow_mut().insert(
            id,
            Running {
                events: tx,
                pid: None,
                started_at: SystemTime::now(),
            },
        );
        server.requests.set(server.requests.get() + 1);
        let call = Call {
            server,
            id,
            events: rx,
            over: false,
            _slot: permit,
        };
        let fds = stdio.each_ref().map(|f| f.as_fd());
        send(&control, Msg::new(wire::CALL, id, 0), &fds)
            .await
            .map_err(|e| failure(&format!("cannot reach the tool's fork server: {e}")))?;
        Ok(call)
    }

    /// The fork servers and their children, as instances.
    pub fn instances(&self) -> Vec<InstanceView> {
        self.prune();
        let current = self.current.borrow().clone();
        let mut out = Vec::new();
        for (s, retiring) in current
            .iter()
            .map(|s| (s, false))
            .chain(self.retiring.borrow().iter().map(|s| (s, true)))
        {
            out.push(InstanceView {
                pid: s.pid.get(),
                state: match &*s.phase.borrow() {
                    _ if retiring => "retiring",
                    Phase::Starting => "starting",
                    Phase::Ready => "idle",
                    Phase::Gone(_) => continue,
                },
                started_at: s.started_at,
                requests: s.requests.get(),
            });
            for c in s.calls.borrow().values() {
                out.push(InstanceView {
                    pid: c.pid.unwrap_or(0),
                    state: if c.pid.is_some() { "busy" } else { "starting" },
                    started_at: c.started_at,
                    requests: 1,
                });
            }
        }
        out
    }

    /// Forgets the retired fork servers that are gone.
    fn prune(&self) {
        self.retiring
            .borrow_mut()
            .retain(|s| !matches!(*s.phase.borrow(), Phase::Gone(_)));
    }

    /// Whether the tool has not yet read (the first call waits for it).
    pub fn starting(&self) -> bool {
        self.current
            .borrow()
            .as_ref()
            .is_some_and(|s| matches!(*s.phase.borrow(), Phase::Starting))
    }
}

fn failure(message: &str) -> Failure {
    Failure {
        code: status::FAILURE,
        message: message.to_owned(),
    }
}

/// A call the fork server took.
pub struct Call {
    server: Rc<ForkServer>,
    id: u32,
    events: mpsc::UnboundedReceiver<Event>,
    /// Its child was reaped, or never was.
    over: bool,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Call {
    /// The next thing that happened to the child.
    pub async fn next(&mut self) -> Event {
        let e = self
            .events
            .recv()
            .await
            .unwrap_or_else(|| Event::Failed(failure("the tool's fork server is gone")));
        self.over |= !matches!(e, Event::Started(_));
        e
    }

    /// Sends `signal` to the child (if it still runs).
    pub async fn signal(&self, signal: i32) {
        let control = self.server.control.borrow().clone();
        if let Some(c) = control {
            let _ = send(&c, Msg::new(wire::SIGNAL, self.id, signal), &[]).await;
        }
    }
}

impl Call {
    /// Once for a fork server whose tool ran other threads when it read:
    /// what that may mean, for a caller who watches (a call that hangs or
    /// dies then has a reason).
    pub fn threads_note(&self) -> Option<String> {
        let n = self.server.threads.get();
        if n == 0 || self.server.told_threads.replace(true) {
            return None;
        }
        Some(format!(
            "the tool ran {n} other thread{} when it was forked; its child has only the one \
             that read, so a tool that needs the others may hang or fail (see the log)",
            if n == 1 { "" } else { "s" }
        ))
    }
}

impl Drop for Call {
    /// A call dropped while its child runs (its caller went away) ends
    /// the child: the message is small enough to go without waiting.
    fn drop(&mut self) {
        if !self.over
            && let Some(c) = &*self.server.control.borrow()
        {
            let m = Msg::new(wire::SIGNAL, self.id, libc::SIGTERM).encode();
            let _ = rustix::net::send(c.get_ref(), &m, rustix::net::SendFlags::NOSIGNAL);
        }
        self.server.calls.borrow_mut().remove(&self.id);
        self.server.left.notify_one();
    }
}

impl ForkServer {
    fn start(spec: &ToolSpec, output: &Terminator, library: &Result<PathBuf, String>) -> Rc<Self> {
        let server = Rc::new(Self {
            pid: Cell::new(0),
            started_at: SystemTime::now(),
            phase: watch::Sender::new(Phase::Starting),
            control: RefCell::new(None),
            calls: RefCell::new(HashMap::new()),
            requests: Cell::new(0),
            stop: tokio::sync::Notify::new(),
            left: tokio::sync::Notify::new(),
            threads: Cell::new(0),
            told_threads: Cell::new(false),
        });
        let s = server.clone();
        let (spec, output, library) = (spec.clone(), output.clone(), library.clone());
        tokio::task::spawn_local(async move {
            let f = s.serve(&spec, &output, library).await;
            tracing::info!(pid = s.pid.get(), "fork server ended: {}", f.message);
            for c in s.calls.borrow_mut().drain() {
                let _ = c.1.events.send(Event::Failed(f.clone()));
            }
            s.control.borrow_mut().take();
            s.phase.send_replace(Phase::Gone(f));
        });
        server
    }

    /// Runs the fork server until it ends; returns why.
    async fn serve(
        self: &Rc<Self>,
        spec: &ToolSpec,
        output: &Terminator,
        library: Result<PathBuf, String>,
    ) -> Failure {
        let cwd = std::env::current_dir().unwrap_or_default();
        if let Some(why) = refuse::reason(&spec.program, &cwd) {
            tracing::warn!("{why}");
            return failure(&format!("--fork cannot serve this tool: {why}"));
        }
        let library = match library {
            Ok(l) => l,
            Err(e) => return failure(&e),
        };
        let pair = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        );
        let (ours, theirs) = match pair {
            Ok(p) => p,
            Err(e) => return failure(&format!("cannot make the fork server's socket: {e}")),
        };
        // Its line to us: the one socket the tool may hold when it reads.
        let control_inode = rustix::fs::fstat(&theirs).ok().map(|st| st.st_ino);
        let mut inst = match Instance::start_fork_server(spec, output, theirs, &library, |p| {
            self.pid.set(p)
        }) {
            Ok(i) => i,
            Err(f) => return f,
        };
        // Ours only: the fork server's end blocks.
        if let Err(e) = rustix::io::ioctl_fionbio(&ours, true) {
            return failure(&format!("cannot use the fork server's socket: {e}"));
        }
        let control = match asyncfd::register(ours, Interest::READABLE | Interest::WRITABLE) {
            Some(c) => Rc::new(c),
            None => return failure("cannot watch the fork server's socket"),
        };
        // The tool loads, then reads: Ready. What it writes meanwhile is
        // its banner, taken as it comes: a banner bigger than the pipe
        // holds would keep it from ever reading.
        let mut banner = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut stdout_open = true;
        let ready = loop {
            tokio::select! {
                m = recv(&control) => break m,
                _ = inst.child.wait() => break None,
                r = inst.stdout.read(&mut chunk), if stdout_open => match r {
                    Ok(n) if n > 0 => banner.extend_from_slice(&chunk[..n]),
                    _ => stdout_open = false,
                },
            }
        };
        drop(chunk);
        match ready {
            Some(m) if m.kind == wire::READY => {
                self.threads.set(m.a);
                if m.a > 0 {
                    tracing::warn!(
                        pid = inst.pid,
                        threads = m.a,
                        "the tool runs {} other thread{} at its first read; a fork keeps only \
                         the one that read (most runtimes prepare for that, one that does not \
                         may hang or fail in its children)",
                        m.a,
                        if m.a == 1 { "" } else { "s" }
                    );
                }
            }
            _ => {
                let mut f = inst.ended("before it read its input").await;
                if f.code == 0 {
                    // Never a call that exits 0 with nothing of the tool's.
                    f.code = status::FAILURE;
                    f.message.push_str(
                        ": --fork serves a program that reads stdin itself, through the C \
                         library's read or stdio functions; not one whose input a program it \
                         starts reads (a shell script can `exec` the tool), nor one that reads \
                         in a way the library does not see (a raw system call, io_uring)",
                    );
                }
                return f;
            }
        }
        if let Some(why) = refuse::runtime_at_read(inst.pid) {
            inst.kill().await;
            tracing::warn!("{why}");
            return failure(&format!("--fork cannot serve this tool: {why}"));
        }
        if let Some(what) = refuse::shared_descriptors(inst.pid, control_inode).first() {
            inst.kill().await;
            let why = format!(
                "before its first read the tool opened {what}; every call's child would share \
                 it with every other, and one caller's data could reach another"
            );
            tracing::warn!("{why}");
            return failure(&format!("--fork cannot serve this tool: {why}"));
        }
        if tokio::time::timeout(BANNER_WAIT, inst.stdout.read_to_end(&mut banner))
            .await
            .is_err()
        {
            tracing::warn!(
                "the tool's stdout stayed open after its first read (a process it started?); \
                 the banner is what it wrote within {BANNER_WAIT:?}"
            );
        }
        if let Err(e) = send_banner(&control, &banner).await {
            return failure(&format!("cannot hand the banner to the fork server: {e}"));
        }
        tracing::info!(
            pid = inst.pid,
            banner_bytes = banner.len(),
            "the tool read its stdin: serving with --fork"
        );
        *self.control.borrow_mut() = Some(control.clone());
        self.phase.send_replace(Phase::Ready);
        let mut stopping = false;
        loop {
            tokio::select! {
                m = recv(&control) => match m {
                    Some(m) => self.dispatch(m),
                    None => break,
                },
                _ = inst.child.wait() => break,
                _ = self.stop.notified(), if !stopping => stopping = true,
                _ = self.left.notified() => {}
            }
            if stopping && self.calls.borrow().is_empty() {
                // No control socket: the fork server exits.
                self.control.borrow_mut().take();
                drop(control);
                if tokio::time::timeout(EXIT_GRACE, inst.child.wait())
                    .await
                    .is_err()
                {
                    inst.kill().await;
                }
                return failure("stopped");
            }
        }
        inst.ended("while serving with --fork").await
    }

    fn dispatch(&self, m: Msg) {
        let mut calls = self.calls.borrow_mut();
        let Some(c) = calls.get_mut(&m.id) else {
            return;
        };
        let event = match m.kind {
            wire::STARTED => {
                c.pid = Some(m.a as u32);
                Event::Started(m.a as u32)
            }
            wire::EXITED => Event::Exited(m.a),
            wire::FAILED => Event::Failed(failure(&format!(
                "the tool's fork server could not fork: {}",
                std::io::Error::from_raw_os_error(m.a)
            ))),
            _ => return,
        };
        let _ = c.events.send(event);
    }
}

/// Sends one message with descriptors.
async fn send(control: &AsyncFd<OwnedFd>, m: Msg, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let bytes = m.encode();
    loop {
        let mut guard = control.writable().await?;
        let sent = guard.try_io(|c| {
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
            let mut ancillary = rustix::net::SendAncillaryBuffer::new(&mut space);
            if !fds.is_empty() {
                ancillary.push(rustix::net::SendAncillaryMessage::ScmRights(fds));
            }
            rustix::net::sendmsg(
                c.get_ref(),
                &[std::io::IoSlice::new(&bytes)],
                &mut ancillary,
                rustix::net::SendFlags::NOSIGNAL,
            )
            .map_err(std::io::Error::from)
        });
        match sent {
            Ok(r) => return r.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

/// Receives one message; `None` once the fork server is gone.
async fn recv(control: &AsyncFd<OwnedFd>) -> Option<Msg> {
    let mut buf = [0u8; wire::LEN];
    loop {
        let mut guard = control.readable().await.ok()?;
        match guard.try_io(|c| {
            rustix::net::recv(c.get_ref(), &mut buf, rustix::net::RecvFlags::empty())
                .map_err(std::io::Error::from)
        }) {
            Ok(Ok((n, _))) if n > 0 => return Msg::decode(&buf[..n]),
            Ok(_) => return None,
            Err(_would_block) => continue,
        }
    }
}

/// Hands the banner to the fork server in a memory file, for each child
/// to write first.
async fn send_banner(control: &AsyncFd<OwnedFd>, banner: &[u8]) -> std::io::Result<()> {
    let msg = Msg::new(wire::BANNER, 0, banner.len() as i32);
    if banner.is_empty() {
        return send(control, msg, &[]).await;
    }
    let memfd = rustix::fs::memfd_create("viasock-banner", rustix::fs::MemfdFlags::CLOEXEC)?;
    std::io::Write::write_all(&mut std::fs::File::from(memfd.try_clone()?), banner)?;
    send(control, msg, &[memfd.as_fd()]).await
}

/// The exit status of a call whose child ended with `wait_status`.
pub fn exit_code(wait_status: i32) -> (i32, String) {
    use std::os::unix::process::ExitStatusExt;
    crate::core::instance::exit_code(std::process::ExitStatus::from_raw(wait_status))
}
