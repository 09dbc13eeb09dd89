//! The server (SPEC 4, 5): listens on the command's socket, hands each
//! client the tool instance in arrival order, and stops on idle, staleness,
//! a control request or a signal.
//!
//! Stopping follows one path whatever the reason: remove the socket so no
//! new client can reach us, accept and serve whatever already waits in the
//! listen backlog, let requests in flight finish (at most [`GRACE`]), then
//! stop the tool and remove the lock. A second signal, or `kill --force`,
//! skips the waiting.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::core::config::ToolSpec;
use crate::core::identity::{self, Id};
use crate::core::paths::{SocketPath, StateDir};
use crate::core::pool::{self, Slot};
use crate::core::protocol::{self, Kind, ProtocolError, Purpose};
use crate::core::records::Terminator;
use crate::core::session;

/// Longest time in-flight requests get to finish when the server stops.
pub const GRACE: Duration = Duration::from_secs(10);
/// How often a server checks that its tool and files are unchanged.
pub const IDENTITY_CHECK: Duration = Duration::from_secs(2);
/// Time a healthy tool gets to exit once its stdin is closed.
const TOOL_EXIT_GRACE: Duration = Duration::from_secs(2);

/// Everything a server needs to know, fixed at start.
pub struct ServerConfig {
    pub spec: ToolSpec,
    pub input: Terminator,
    pub output: Terminator,
    pub id: Id,
    pub cwd: PathBuf,
    pub dir: StateDir,
    pub socket: PathBuf,
    pub log: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Running,
    Draining,
    Forced,
}

struct Shared {
    cfg: ServerConfig,
    slot: tokio::sync::Mutex<Slot>,
    active: AtomicUsize,
    last_activity: Mutex<Instant>,
    left: Notify,
    mode: watch::Sender<Mode>,
}

impl Shared {
    /// Moves towards stopping; never back.
    fn stop(&self, mode: Mode, why: &str) {
        let changed = self.mode.send_if_modified(|m| {
            if mode > *m {
                *m = mode;
                true
            } else {
                false
            }
        });
        if changed {
            tracing::info!(
                "stopping ({why}){}",
                if mode == Mode::Forced { ", forced" } else { "" }
            );
        }
    }

    fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn log_hint(&self) -> String {
        match &self.cfg.log {
            Some(l) => format!(" (see log {})", l.display()),
            None => String::new(),
        }
    }
}

/// Binds the socket (0600). Refuses to take over a socket someone still
/// listens on; removes one nobody does.
pub fn bind(socket: &std::path::Path) -> anyhow::Result<UnixListener> {
    use anyhow::Context;
    let addr = SocketPath::new(socket)?;
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(addr.as_path()).is_ok() {
            anyhow::bail!("a server is already listening at {}", socket.display());
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("cannot remove {}", socket.display()))?;
    }
    let listener = UnixListener::bind(addr.as_path())
        .with_context(|| format!("cannot listen at {}", socket.display()))?;
    std::fs::set_permissions(socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(listener)
}

/// Serves until stopped. `ready` is called once the socket listens. Runs
/// inside a [`tokio::task::LocalSet`].
pub async fn run(
    cfg: ServerConfig,
    listener: UnixListener,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let socket_ino = std::fs::metadata(&cfg.socket)?.ino();
    let (mode, mut mode_rx) = watch::channel(Mode::Running);
    let shared = Arc::new(Shared {
        cfg,
        slot: tokio::sync::Mutex::new(Slot::default()),
        active: AtomicUsize::new(0),
        last_activity: Mutex::new(Instant::now()),
        left: Notify::new(),
        mode,
    });
    tracing::info!(
        pid = std::process::id(),
        id = %shared.cfg.id.short(),
        "listening at {}",
        shared.cfg.socket.display()
    );
    ready();

    // The tool starts loading now, so the first client waits less.
    let s = shared.clone();
    tokio::spawn(async move {
        let mut slot = s.slot.lock().await;
        let _ = slot
            .ensure(&s.cfg.spec, &s.cfg.output, Instant::now())
            .await;
    });
    tokio::spawn(watch_idle(shared.clone()));
    tokio::spawn(watch_identity(shared.clone()));
    tokio::spawn(watch_signals(shared.clone()));

    // Every handler holds a sender; when all are gone, all are done.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => accept(&shared, stream, &done_tx),
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = mode_rx.wait_for(|m| *m != Mode::Running) => break,
        }
    }

    // Nobody new can reach us once the socket is gone; those already in the
    // backlog are served.
    if std::fs::metadata(&shared.cfg.socket).is_ok_and(|m| m.ino() == socket_ino) {
        let _ = std::fs::remove_file(&shared.cfg.socket);
    }
    drain_backlog(&shared, listener, &done_tx);
    drop(done_tx);

    let forced = async {
        let _ = mode_rx.wait_for(|m| *m == Mode::Forced).await;
    };
    let finished = tokio::select! {
        _ = done_rx.recv() => true,
        _ = tokio::time::sleep(GRACE) => {
            tracing::warn!("requests still running after {GRACE:?}; stopping the tool");
            false
        }
        _ = forced => false,
    };
    if finished {
        if let Ok(mut slot) = shared.slot.try_lock()
            && let Some(inst) = slot.instance.take()
        {
            inst.stop(TOOL_EXIT_GRACE).await;
        }
    } else {
        // Requests still running end with the tool's death, which their
        // clients are told about; give them a moment to hear it.
        let (first, wait) = match *shared.mode.borrow() {
            Mode::Forced => (rustix::process::Signal::KILL, Duration::from_millis(200)),
            _ => (rustix::process::Signal::TERM, TOOL_EXIT_GRACE),
        };
        pool::signal_all(first);
        let _ = tokio::time::timeout(wait, done_rx.recv()).await;
        pool::signal_all(rustix::process::Signal::KILL);
    }
    remove_lock(&shared.cfg.dir.lock(&shared.cfg.id));
    tracing::info!("stopped");
    Ok(())
}

/// Accepts, without waiting, every connection still queued on the
/// listener. Asked of the kernel directly: the runtime may not have seen
/// the latest arrivals yet.
fn drain_backlog(shared: &Arc<Shared>, listener: UnixListener, done: &mpsc::Sender<()>) {
    let Ok(listener) = listener.into_std() else {
        return;
    };
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let stream = stream
                    .set_nonblocking(true)
                    .and_then(|()| UnixStream::from_std(stream));
                if let Ok(stream) = stream {
                    accept(shared, stream, done);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::warn!("accept failed while draining: {e}");
                return;
            }
        }
    }
}

/// Removes the command's lock file unless a client holds it (it is starting
/// a server; the lock protocol copes with either).
fn remove_lock(path: &std::path::Path) {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path)
        && f.try_lock().is_ok()
    {
        let _ = std::fs::remove_file(path);
    }
}

fn accept(shared: &Arc<Shared>, stream: UnixStream, done: &mpsc::Sender<()>) {
    let me = rustix::process::geteuid().as_raw();
    match stream.peer_cred() {
        Ok(c) if c.uid() == me => {}
        Ok(c) => {
            tracing::warn!(uid = c.uid(), "refused a connection from another user");
            return;
        }
        Err(e) => {
            tracing::warn!("refused a connection without credentials: {e}");
            return;
        }
    }
    let shared = shared.clone();
    let done = done.clone();
    // Handlers run on the server's one thread (a LocalSet): a request's two
    // halves share plain cells, no locks.
    tokio::task::spawn_local(async move {
        if let Err(e) = handle(&shared, stream).await {
            tracing::debug!("connection ended: {e}");
        }
        drop(done);
    });
}

async fn handle(shared: &Shared, stream: UnixStream) -> Result<(), ProtocolError> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let Some(hello) = protocol::read_frame_async(&mut rd).await? else {
        return Ok(());
    };
    let purpose = match protocol::parse_hello(&hello) {
        Ok(p) => p,
        Err(e) => {
            let mut f = Vec::new();
            protocol::encode(Kind::Error, e.to_string().as_bytes(), &mut f);
            wr.write_all(&f).await?;
            return Err(e);
        }
    };
    wr.write_all(&protocol::welcome(std::process::id())).await?;
    match purpose {
        Purpose::Run => serve_client(shared, &mut rd, &mut wr).await,
        Purpose::Control => control(shared, &mut rd, &mut wr).await,
    }
}

async fn serve_client(
    shared: &Shared,
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    wr: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<(), ProtocolError> {
    shared.active.fetch_add(1, Ordering::SeqCst);
    shared.touch();
    let arrived = Instant::now();
    let cfg = &shared.cfg;
    let outcome = {
        let mut slot = shared.slot.lock().await;
        let outcome = match slot.ensure(&cfg.spec, &cfg.output, arrived).await {
            Ok(inst) => session::serve(inst, &cfg.input, cfg.spec.process_timeout, rd, wr).await,
            Err(f) => session::Outcome {
                status: f.code,
                message: Some(f.message),
                records: 0,
                client_gone: false,
            },
        };
        if slot.instance.as_ref().is_some_and(|i| i.dead) {
            slot.instance = None;
        }
        outcome
    };
    shared.touch();
    shared.active.fetch_sub(1, Ordering::SeqCst);
    shared.left.notify_one();
    if outcome.client_gone {
        tracing::info!(records = outcome.records, "client left before the end");
        return Ok(());
    }
    let mut f = Vec::new();
    if let Some(m) = &outcome.message {
        protocol::encode(
            Kind::Error,
            format!("{m}{}", shared.log_hint()).as_bytes(),
            &mut f,
        );
    }
    protocol::encode_status(outcome.status, &mut f);
    wr.write_all(&f).await?;
    Ok(())
}

async fn control(
    shared: &Shared,
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    wr: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<(), ProtocolError> {
    let Some(req) = protocol::read_frame_async(rd).await? else {
        return Ok(());
    };
    let command = String::from_utf8_lossy(&req.payload).into_owned();
    let mut f = Vec::new();
    let mode = match command.as_str() {
        "kill" => Some(Mode::Draining),
        "kill --force" => Some(Mode::Forced),
        _ => None,
    };
    match mode {
        Some(_) => protocol::encode_status(0, &mut f),
        None => {
            protocol::encode(
                Kind::Error,
                format!("unknown control request {command:?}").as_bytes(),
                &mut f,
            );
            protocol::encode_status(crate::core::status::USAGE, &mut f);
        }
    }
    wr.write_all(&f).await?;
    if let Some(mode) = mode {
        shared.stop(mode, "kill requested");
    }
    Ok(())
}

/// Stops the server after `-W` seconds without a client.
async fn watch_idle(shared: Arc<Shared>) {
    let Some(idle) = shared.cfg.spec.server_timeout else {
        return;
    };
    loop {
        if shared.active.load(Ordering::SeqCst) > 0 {
            shared.left.notified().await;
            continue;
        }
        let due = *shared
            .last_activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            + idle;
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = shared.left.notified() => continue,
        }
        let last = *shared
            .last_activity
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if shared.active.load(Ordering::SeqCst) == 0 && last + idle <= Instant::now() {
            shared.stop(Mode::Draining, "idle");
            return;
        }
    }
}

/// Marks the server stale, and stops it, once its identity changes.
async fn watch_identity(shared: Arc<Shared>) {
    let skip = std::fs::canonicalize(shared.cfg.dir.root()).ok();
    let mut tick = tokio::time::interval(IDENTITY_CHECK);
    tick.tick().await;
    loop {
        tick.tick().await;
        let s = shared.clone();
        let skip = skip.clone();
        let now = tokio::task::spawn_blocking(move || {
            identity::compute(&s.cfg.spec, &s.cfg.cwd, skip.as_deref()).ok()
        })
        .await
        .ok()
        .flatten();
        if now != Some(shared.cfg.id) {
            shared.stop(
                Mode::Draining,
                "stale: the tool, a file it names or its environment changed",
            );
            return;
        }
    }
}

/// SIGTERM or SIGINT drains; a second one forces.
async fn watch_signals(shared: Arc<Shared>) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot handle signals");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let next = match *shared.mode.borrow() {
            Mode::Running => Mode::Draining,
            _ => Mode::Forced,
        };
        shared.stop(next, "signal");
    }
}
