//! The server: listens on the command's socket, hands each
//! client the tool instance in arrival order, and stops on idle, staleness,
//! a control request or a signal.
//!
//! Stopping follows one path whatever the reason: remove the socket so no
//! new client can reach us, accept and serve whatever already waits in the
//! listen backlog, let requests in flight finish (at most [`GRACE`]), then
//! stop the tool and remove the lock. A second signal, or `kill --force`,
//! skips the waiting.

use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::core::fork::Forker;
use crate::core::instance;
use crate::core::paths::SocketPath;
use crate::core::pool::Pool;
use crate::core::protocol::{self, Kind};
use crate::core::state::{self, Stats};
use crate::core::worker::PoolConfig;

use connection::{Caller, handle};
use identity_watch::{react_to_changes, watch_identity, watch_model};
use report::{snapshot, write_states};
pub use shared::ServerConfig;
use shared::{Mode, Shared};
use watches::{watch_idle, watch_signals, watch_socket};

mod connection;
mod fork_call;
mod identity_watch;
mod report;
mod shared;
mod watches;

/// Longest time in-flight requests get to finish when the server stops.
pub const GRACE: Duration = Duration::from_secs(10);

/// Time a healthy tool gets to exit once its stdin is closed.
const TOOL_EXIT_GRACE: Duration = Duration::from_secs(2);

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

/// Serves until stopped. `ready` is called once the socket listens.
/// `starter`: the connection of the call that started this server, served
/// first. Runs inside a [`tokio::task::LocalSet`].
pub async fn run(
    cfg: ServerConfig,
    listener: UnixListener,
    starter: Option<UnixStream>,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let socket_meta = std::fs::metadata(&cfg.socket)?;
    let socket_id = (socket_meta.dev(), socket_meta.ino());
    // Watched before the tool starts: whatever it loads, a change after
    // that is seen.
    let (model, unwatched) = watch_model(&cfg);
    let (mode, mut mode_rx) = watch::channel(Mode::Running);
    let shared = Arc::new(Shared {
        cfg,
        started: SystemTime::now(),
        stale: AtomicBool::new(false),
        active: AtomicUsize::new(0),
        last_activity: Mutex::new(Instant::now()),
        left: Notify::new(),
        mode,
        noted: Mutex::default(),
        model: Mutex::new(model),
        socket_id,
    });
    tracing::info!(
        pid = std::process::id(),
        id = %shared.cfg.id.short(),
        "listening at {}",
        shared.cfg.socket.display()
    );
    ready();

    let fork = shared.cfg.spec.fork.then(|| {
        let registry = state::registry().ok();
        Forker::new(
            shared.cfg.spec.clone(),
            shared.cfg.output.clone(),
            &shared.cfg.dir.root().join("lib"),
            registry.as_deref(),
        )
    });
    let pool = Pool::new(
        PoolConfig {
            spec: shared.cfg.spec.clone(),
            input: shared.cfg.input.clone(),
            output: shared.cfg.output.clone(),
        },
        Rc::new(Stats::default()),
        fork,
    );
    let state_path = shared.cfg.socket.with_extension("json");
    let start_ticks = crate::core::procinfo::start_ticks(std::process::id()).unwrap_or(0);
    let snap = || snapshot(&shared, &pool, start_ticks);
    if let Err(e) = state::write_state(&state_path, &snap()) {
        tracing::warn!("cannot write state file {}: {e}", state_path.display());
    }
    let entry = match state::registry()
        .map_err(anyhow::Error::from)
        .and_then(|r| state::register(&r, &state_path).map_err(anyhow::Error::from))
    {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(
                "not in the registry (ls from elsewhere will not see this server): {e:#}"
            );
            None
        }
    };
    // The tool starts loading now, so the first client waits less.
    pool.prestart();
    tokio::task::spawn_local(write_states(
        shared.clone(),
        pool.clone(),
        state_path.clone(),
        entry.clone(),
        start_ticks,
    ));
    tokio::spawn(watch_idle(shared.clone()));
    tokio::spawn(watch_identity(shared.clone(), unwatched));
    tokio::task::spawn_local(react_to_changes(shared.clone()));
    tokio::spawn(watch_socket(shared.clone(), socket_id));
    tokio::spawn(watch_signals(shared.clone()));

    // Every handler holds a sender; when all are gone, all are done.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    if let Some(stream) = starter {
        accept(&shared, &pool, stream, Caller::Starter, &done_tx);
    }
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => accept(&shared, &pool, stream, Caller::Other, &done_tx),
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
    shared.withdraw();
    drain_backlog(&shared, &pool, listener, &done_tx);
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
        tokio::select! {
            _ = pool.stop_all(TOOL_EXIT_GRACE * 2 + Duration::from_secs(1)) => {}
            // A second SIGTERM while the tools take their time to exit.
            _ = mode_rx.wait_for(|m| *m == Mode::Forced) => {
                instance::signal_all(rustix::process::Signal::KILL);
            }
        }
    } else {
        // Requests still running end with the tool's death, which their
        // clients are told about; give them a moment to hear it.
        let (first, wait, why) = match *shared.mode.borrow() {
            Mode::Forced => (
                rustix::process::Signal::KILL,
                Duration::from_millis(200),
                "the server was stopped before this call finished (kill --force, or a second SIGTERM)",
            ),
            _ => (
                rustix::process::Signal::TERM,
                TOOL_EXIT_GRACE,
                "the server stopped: this call outlasted its shutdown grace of 10 s",
            ),
        };
        pool.begin_stop();
        for w in pool.workers() {
            w.cut(crate::core::status::FAILURE, why);
        }
        if let Some(f) = pool.fork() {
            f.cut_all(why);
        }
        instance::signal_all(first);
        let _ = tokio::time::timeout(wait, done_rx.recv()).await;
        instance::signal_all(rustix::process::Signal::KILL);
    }
    remove_lock(&shared.cfg.dir.lock(&shared.cfg.id));
    // A successor started once our socket was gone owns the same names.
    if state::is_own(&state_path, std::process::id(), start_ticks) {
        let _ = std::fs::remove_file(&state_path);
        if let Some(e) = entry {
            let _ = std::fs::remove_file(e);
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Accepts, without waiting, every connection still queued on the
/// listener. Asked of the kernel directly: the runtime may not have seen
/// the latest arrivals yet.
fn drain_backlog(
    shared: &Arc<Shared>,
    pool: &Rc<Pool>,
    listener: UnixListener,
    done: &mpsc::Sender<()>,
) {
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
                    accept(shared, pool, stream, Caller::Other, done);
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

fn accept(
    shared: &Arc<Shared>,
    pool: &Rc<Pool>,
    stream: UnixStream,
    caller: Caller,
    done: &mpsc::Sender<()>,
) {
    let me = rustix::process::geteuid().as_raw();
    let peer = match stream.peer_cred() {
        Ok(c) if c.uid() == me => connection::Peer::new(c.pid()),
        Ok(c) => {
            tracing::warn!(uid = c.uid(), "refused a connection from another user");
            return;
        }
        Err(e) => {
            tracing::warn!("refused a connection without credentials: {e}");
            return;
        }
    };
    let shared = shared.clone();
    let pool = pool.clone();
    let done = done.clone();
    // Handlers and workers run on the server's one thread (a LocalSet) and
    // share plain cells, no locks.
    tokio::task::spawn_local(async move {
        // A second handle on the socket, to tell the client when its
        // handler panics (a bug): the call fails with a message, and the
        // server serves on.
        let spare = rustix::io::fcntl_dupfd_cloexec(&stream, 0).ok();
        let welcomed = Rc::new(std::cell::Cell::new(false));
        let told = welcomed.clone();
        let handler = tokio::task::spawn_local(async move {
            handle(&shared, &pool, stream, caller, peer, told).await
        });
        match handler.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("connection ended: {e}"),
            Err(e) if e.is_panic() => {
                if let Some(fd) = spare {
                    tell_bug(fd, welcomed.get());
                }
            }
            Err(_) => {}
        }
        drop(done);
    });
}

/// Fails a call whose handler panicked, through a spare descriptor of its
/// socket: the Welcome if it has not gone yet, an Error frame and status
/// 1. Best effort, for at most a second.
fn tell_bug(fd: std::os::fd::OwnedFd, welcomed: bool) {
    use std::io::Write;
    let mut frames = Vec::new();
    if !welcomed {
        frames = protocol::welcome(std::process::id());
    }
    protocol::encode(
        Kind::Error,
        b"the server hit a bug while serving this call (its log has the panic); it serves on",
        &mut frames,
    );
    protocol::encode_status(crate::core::status::FAILURE, &mut frames);
    let _ = rustix::io::ioctl_fionbio(&fd, false);
    let mut stream = std::os::unix::net::UnixStream::from(fd);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&frames);
}
