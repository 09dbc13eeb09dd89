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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::SystemTime;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::core::config::{ToolSpec, Tuning};
use crate::core::identity::{self, Id};
use crate::core::paths::{SocketPath, StateDir};
use std::rc::Rc;

use crate::core::instance;
use crate::core::pool::{Pool, PoolConfig};
use crate::core::protocol::{self, Kind, ProtocolError, Purpose};
use crate::core::records::Terminator;
use crate::core::records::{self, Splitter};
use crate::core::request::{End, Request};
use crate::core::state::{self, InstanceState, Phase, ServerState, Stats};
use crate::core::worker::WorkerState;

/// Longest time in-flight requests get to finish when the server stops.
pub const GRACE: Duration = Duration::from_secs(10);
/// How often a server checks that its tool and files are unchanged.
pub const IDENTITY_CHECK: Duration = Duration::from_secs(2);
/// How often a call that waits hears from its server, so that a client
/// can tell a live server from a stopped or wedged one.
const KEEPALIVE: Duration = Duration::from_secs(2);

/// How often a server checks that its socket is still its own.
const SOCKET_CHECK: Duration = Duration::from_secs(1);
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
    started: SystemTime,
    /// The identity changed: the server drains as `stale`.
    stale: AtomicBool,
    active: AtomicUsize,
    last_activity: Mutex<Instant>,
    left: Notify,
    mode: watch::Sender<Mode>,
    /// Notes on calls' tuning options already logged.
    noted: Mutex<std::collections::HashSet<String>>,
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
    let socket_meta = std::fs::metadata(&cfg.socket)?;
    let socket_ino = socket_meta.ino();
    let socket_id = (socket_meta.dev(), socket_ino);
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
    });
    tracing::info!(
        pid = std::process::id(),
        id = %shared.cfg.id.short(),
        "listening at {}",
        shared.cfg.socket.display()
    );
    ready();

    let pool = Pool::new(
        PoolConfig {
            spec: shared.cfg.spec.clone(),
            input: shared.cfg.input.clone(),
            output: shared.cfg.output.clone(),
        },
        Rc::new(Stats::default()),
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
    tokio::spawn(watch_identity(shared.clone()));
    tokio::spawn(watch_socket(shared.clone(), socket_id));
    tokio::spawn(watch_signals(shared.clone()));

    // Every handler holds a sender; when all are gone, all are done.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => accept(&shared, &pool, stream, &done_tx),
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
                    accept(shared, pool, stream, done);
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

fn accept(shared: &Arc<Shared>, pool: &Rc<Pool>, stream: UnixStream, done: &mpsc::Sender<()>) {
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
    let pool = pool.clone();
    let done = done.clone();
    // Handlers and workers run on the server's one thread (a LocalSet) and
    // share plain cells, no locks.
    tokio::task::spawn_local(async move {
        if let Err(e) = handle(&shared, &pool, stream).await {
            tracing::debug!("connection ended: {e}");
        }
        drop(done);
    });
}

async fn handle(shared: &Shared, pool: &Rc<Pool>, stream: UnixStream) -> Result<(), ProtocolError> {
    let peer = Peer::of(&stream);
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
        Purpose::Run => {
            let tuning = Tuning::decode(protocol::hello_tuning(&hello));
            serve_client(shared, pool, &peer, &tuning, &mut rd, &mut wr).await
        }
        Purpose::Control => control(shared, pool, &mut rd, &mut wr).await,
    }
}

/// One call: the client's input goes to a request queue while the answers
/// the worker puts on it go back, then the final status.
async fn serve_client(
    shared: &Shared,
    pool: &Rc<Pool>,
    peer: &Peer,
    tuning: &Tuning,
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    wr: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<(), ProtocolError> {
    shared.active.fetch_add(1, Ordering::SeqCst);
    shared.touch();
    let stats = pool.stats();
    Stats::add(&stats.requests_total, 1);
    stats.last_request_at.set(Some(SystemTime::now()));
    stats.changed();
    let req = Request::new();
    // Runs however the call ends, a panic included: the worker must not
    // wait for a client that is not there, and the server must not count
    // it as active for ever.
    let _leaving = Leaving {
        shared,
        stats,
        req: &req,
        moved_before: stats.bytes_in.get() + stats.bytes_out.get(),
    };
    let input = read_input(&req, rd, &shared.cfg.input, stats);
    // An empty Info frame: nothing to tell but that the server is there.
    let keepalive = protocol::header(Kind::Info, 0);
    let output = async {
        for note in tune(shared, pool, tuning) {
            info(wr, &note).await?;
        }
        if let Some(why) = pool.wait_reason() {
            info(wr, &why).await?;
        }
        let assigned = {
            let mut assign = std::pin::pin!(pool.assign(&req));
            loop {
                tokio::select! {
                    r = &mut assign => break r,
                    _ = tokio::time::sleep(KEEPALIVE) => wr.write_all(&keepalive).await?,
                }
            }
        };
        match assigned {
            Err(f) => req.finish(f.code, Some(f.message)),
            Ok(()) if req.tool_starting() => info(wr, "waiting for the tool to start").await?,
            Ok(()) => {}
        }
        loop {
            let out = req.take_output();
            if !out.is_empty() {
                if wr.write_all(&out).await.is_err() {
                    req.set_gone();
                    return Ok(());
                }
                continue;
            }
            if req.is_gone() {
                return Ok(());
            }
            if let Some((status, message)) = req.finished() {
                if status != 0 {
                    Stats::add(&stats.errors_total, 1);
                }
                let mut f = Vec::new();
                if let Some(m) = message {
                    let text = format!("{m}{}", shared.log_hint());
                    protocol::encode(Kind::Error, text.as_bytes(), &mut f);
                }
                protocol::encode_status(status, &mut f);
                return wr.write_all(&f).await;
            }
            tokio::select! {
                _ = req.changed() => {}
                _ = tokio::time::sleep(KEEPALIVE) => {
                    if wr.write_all(&keepalive).await.is_err() {
                        req.set_gone();
                        return Ok(());
                    }
                }
            }
        }
    };
    let result = {
        let mut input = std::pin::pin!(input);
        let mut output = std::pin::pin!(output);
        let mut input_done = false;
        let mut peer_exited = false;
        loop {
            tokio::select! {
                r = &mut output => break r,
                _ = &mut input, if !input_done => input_done = true,
                // A client that dies while it waits (for an instance, or
                // for room in its queue) reads nothing that would tell.
                _ = peer.exited(), if !peer_exited => {
                    peer_exited = true;
                    req.set_gone();
                }
            }
        }
    };
    Ok(result?)
}

/// What the end of a call undoes, in its drop.
struct Leaving<'a> {
    shared: &'a Shared,
    stats: &'a Stats,
    req: &'a Request,
    /// Bytes all calls had moved when this one began.
    moved_before: u64,
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        if !self.req.is_finished() {
            self.req.set_gone();
            if std::thread::panicking() {
                tracing::error!("a call's handler panicked; the call was dropped");
            } else {
                tracing::info!(records = self.req.answered(), "client left before the end");
            }
        }
        self.shared.touch();
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
        self.shared.left.notify_one();
        self.stats.changed();
        // After a big call, the memory its buffers took goes back to the
        // system, so that the server returns near its idle size.
        let moved = self.stats.bytes_in.get() + self.stats.bytes_out.get();
        if moved - self.moved_before > records::SPARE_LIMIT as u64 {
            records::trim_heap();
        }
    }
}

/// Applies what a call's tuning options can change in a running server (a
/// higher `-j`) and returns a note on each one it cannot; the log gets each
/// note once.
fn tune(shared: &Shared, pool: &Rc<Pool>, t: &Tuning) -> Vec<String> {
    // Most calls give none: the warm path does no work for them.
    if *t == Tuning::default() {
        return Vec::new();
    }
    let spec = &shared.cfg.spec;
    let later = format!(
        "takes effect when a new server starts (viasock kill {}, then call again)",
        shared.cfg.id.short()
    );
    let secs = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
    let mut notes = Vec::new();
    if let Some(j) = t.instances {
        let max = pool.max();
        if j > max {
            pool.raise_max(j);
            tracing::info!("-j raised from {max} to {j} for a call that asked for it");
        } else if j < max {
            notes.push(format!(
                "this server runs up to {max} instances; -j {j} {later}"
            ));
        }
    }
    if let Some(w) = t.server_timeout
        && Some(w).filter(|d| !d.is_zero()) != spec.server_timeout
    {
        notes.push(format!(
            "this server was started with -W {}; -W {} {later}",
            secs(spec.server_timeout),
            w.as_secs_f64()
        ));
    }
    if t.interleave && !spec.interleave {
        notes.push(format!(
            "this server serves one call per instance; --interleave {later}"
        ));
    }
    if let Some(l) = &t.log
        && shared.cfg.log.as_ref() != Some(l)
    {
        let now = shared
            .cfg
            .log
            .as_ref()
            .map_or("nowhere".into(), |p| p.display().to_string());
        notes.push(format!(
            "this server logs to {now}; -l {} {later}",
            l.display()
        ));
    }
    let mut noted = shared.noted.lock().unwrap_or_else(|p| p.into_inner());
    for n in &notes {
        if noted.insert(n.clone()) {
            tracing::info!("{n}");
        }
    }
    notes
}

/// Tells a waiting client what it waits for.
async fn info(wr: &mut (impl tokio::io::AsyncWrite + Unpin), text: &str) -> std::io::Result<()> {
    let mut f = Vec::new();
    protocol::encode(Kind::Info, text.as_bytes(), &mut f);
    wr.write_all(&f).await
}

/// Reads the client's frames, queuing whole records on `req`. End of file
/// before the end of input means the client went away.
async fn read_input(
    req: &Request,
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    term: &Terminator,
    stats: &Stats,
) {
    let mut split = Splitter::new(term.clone());
    loop {
        let frame = match protocol::read_frame_async(rd).await {
            Ok(Some(f)) if !req.is_finished() => f,
            _ => break,
        };
        let end = match frame.kind {
            Kind::Data => {
                Stats::add(&stats.bytes_in, frame.payload.len() as u64);
                split.push(&frame.payload);
                None
            }
            Kind::End => Some(match split.finish() {
                Ok(_) => End::Complete,
                Err(u) => End::Unfinished(u.bytes),
            }),
            _ => break,
        };
        let n = split.complete();
        if n > 0 {
            let (mut data, mut ends) = (Vec::new(), Vec::new());
            split.take_records_into(n, &mut data, &mut ends);
            req.push(data, ends).await;
        }
        if let Some(end) = end {
            req.end_input(end);
            // Nothing more is expected. An end of file from here on is a
            // half-close (socat, `nc -N`), not a departure: a client that
            // dies is seen by its pidfd, or by the failed write.
            return;
        }
    }
    if !req.is_finished() {
        req.set_gone();
    }
}

async fn control(
    shared: &Shared,
    pool: &Rc<Pool>,
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
        "restart" => {
            pool.restart();
            protocol::encode_status(0, &mut f);
            return wr.write_all(&f).await.map_err(Into::into);
        }
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
            shared.stale.store(true, Ordering::SeqCst);
            shared.stop(
                Mode::Draining,
                "stale: the tool, a file it names or its environment changed",
            );
            return;
        }
    }
}

/// Stops the server, as stale, once its socket is no longer its own: the
/// state directory was removed (`rm -rf .viasock`, `git clean -fdx`) or
/// another server bound the same path. Nobody can reach it any more, and
/// a successor of the same id may already be serving.
async fn watch_socket(shared: Arc<Shared>, (dev, ino): (u64, u64)) {
    let mut tick = tokio::time::interval(SOCKET_CHECK);
    tick.tick().await;
    loop {
        tick.tick().await;
        let why = match std::fs::metadata(&shared.cfg.socket) {
            Ok(m) if (m.dev(), m.ino()) == (dev, ino) => continue,
            Ok(_) => "its socket was replaced by another server's",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                "its socket was removed (the state directory removed?)"
            }
            // Cannot tell now (a slow or unreachable file system): ask again.
            Err(_) => continue,
        };
        shared.stale.store(true, Ordering::SeqCst);
        shared.stop(Mode::Draining, &format!("stale: {why}"));
        return;
    }
}

/// SIGTERM, SIGINT, SIGHUP (a foreground server's terminal closed) or
/// SIGQUIT drains; a second one forces.
async fn watch_signals(shared: Arc<Shared>) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut quit)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::quit()),
    ) else {
        tracing::warn!("cannot handle signals");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {}
            _ = quit.recv() => {}
        }
        let next = match *shared.mode.borrow() {
            Mode::Running => Mode::Draining,
            _ => Mode::Forced,
        };
        shared.stop(next, "signal");
    }
}

/// How long after a change the state file is written.
const CHANGE_DELAY: Duration = Duration::from_millis(20);

/// Writes the state file on every change (at most five times a second) and
/// at least once a second, which also closes each second of throughput.
/// Once the server stops listening, a successor with the same id may own
/// the file: then it is left to it.
async fn write_states(
    shared: Arc<Shared>,
    pool: Rc<Pool>,
    path: PathBuf,
    entry: Option<PathBuf>,
    start_ticks: u64,
) {
    let me = std::process::id();
    let stats = pool.stats().clone();
    let mut mode = shared.mode.subscribe();
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = second.tick() => stats.tick_second(),
            _ = stats.dirty.notified() => {
                // A change is written a moment later, not in the middle of
                // the quick call that made it: the call comes first.
                tokio::time::sleep(CHANGE_DELAY).await;
            }
            _ = mode.changed() => {}
        }
        let listening = *shared.mode.borrow() == Mode::Running;
        let ours = listening || state::is_own(&path, me, start_ticks);
        if ours
            && let Err(e) = state::write_state(&path, &snapshot(&shared, &pool, start_ticks))
            && !std::mem::replace(&mut warned, true)
        {
            tracing::warn!("cannot write state file {}: {e}", path.display());
        }
        // A predecessor that stopped just as we started may have taken our
        // registry entry (it has the same name) with it.
        if listening
            && let Some(e) = &entry
            && std::fs::symlink_metadata(e).is_err()
            && let Ok(r) = state::registry()
        {
            let _ = state::register(&r, &path);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The server as the state file shows it.
fn snapshot(shared: &Shared, pool: &Pool, start_ticks: u64) -> ServerState {
    let cfg = &shared.cfg;
    let stats = pool.stats();
    let workers = pool.workers();
    let active = shared.active.load(Ordering::SeqCst);
    let waiting = pool.waiting();
    let now = SystemTime::now();
    let state = match *shared.mode.borrow() {
        Mode::Running if active > 0 => Phase::Busy,
        Mode::Running
            if !workers.is_empty()
                && workers.iter().all(|w| w.state() == WorkerState::Starting) =>
        {
            Phase::Starting
        }
        Mode::Running => Phase::Ready,
        _ if shared.stale.load(Ordering::SeqCst) => Phase::Stale,
        _ => Phase::Draining,
    };
    let idle_deadline_at = match cfg.spec.server_timeout {
        Some(idle) if active == 0 && state == Phase::Ready => {
            let last = *shared
                .last_activity
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let left = (last + idle).saturating_duration_since(Instant::now());
            Some(state::rfc3339(now + left))
        }
        _ => None,
    };
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    ServerState {
        schema: state::SCHEMA,
        id: cfg.id.hex(),
        command: std::iter::once(&cfg.spec.program)
            .chain(&cfg.spec.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        framing: cfg.spec.framing.options(),
        cwd: cfg.cwd.clone(),
        dir: cfg.dir.root().to_owned(),
        socket: cfg.socket.clone(),
        log: cfg.log.clone().unwrap_or_default(),
        host,
        server_pid: std::process::id(),
        server_start_ticks: start_ticks,
        started_at: state::rfc3339(shared.started),
        heartbeat_at: state::rfc3339(now),
        state,
        idle_timeout_s: cfg.spec.server_timeout.map(|d| d.as_secs_f64()),
        last_request_at: stats.last_request_at.get().map(state::rfc3339),
        idle_deadline_at,
        max_instances: pool.max(),
        interleave: cfg.spec.interleave,
        instances: workers
            .iter()
            .map(|w| InstanceState {
                pid: w.pid(),
                state: match w.state() {
                    WorkerState::Starting => "starting",
                    _ if w.load() > 0 => "busy",
                    _ => "idle",
                }
                .to_owned(),
                started_at: state::rfc3339(w.started_at),
                requests: w.requests(),
                records: w.records(),
            })
            .collect(),
        // Connected calls that wait for an instance are counted apart.
        clients_active: active.saturating_sub(waiting),
        clients_waiting: waiting,
        requests_total: stats.requests_total.get(),
        records_total: stats.records_total.get(),
        bytes_in: stats.bytes_in.get(),
        bytes_out: stats.bytes_out.get(),
        errors_total: stats.errors_total.get(),
        log_lines_dropped: crate::core::logsink::dropped(),
        latency_ms: stats.latency(),
        throughput: stats.throughput(),
    }
}

/// The process at the other end of a connection, watched through a pidfd.
struct Peer(Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>);

impl Peer {
    fn of(stream: &UnixStream) -> Self {
        let fd = stream
            .peer_cred()
            .ok()
            .and_then(|c| c.pid())
            .and_then(rustix::process::Pid::from_raw)
            .and_then(|pid| {
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK).ok()
            })
            .and_then(|fd| {
                // SAFETY: an OwnedFd is a valid descriptor that stays open,
                // and the same, for as long as the AsyncFd owns it.
                #[allow(unsafe_code)]
                let registered = unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        fd,
                        tokio::io::Interest::READABLE,
                    )
                };
                registered.ok()
            });
        Self(fd)
    }

    /// Resolves once the peer process has exited (never, if unknown).
    async fn exited(&self) {
        match &self.0 {
            Some(fd) => {
                let _ = fd.readable().await;
            }
            None => std::future::pending().await,
        }
    }
}
