//! One connection: the handshake, then a call (the client's records to
//! the pool, the answers back, the final status) or a control request.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::core::config::Tuning;
use crate::core::hangup;
use crate::core::pool::Pool;
use crate::core::protocol::{self, Kind, ProtocolError, Purpose};
use crate::core::records::{self, Splitter, Terminator};
use crate::core::request::{End, Request};
use crate::core::state::Stats;

use super::report;
use super::shared::{Mode, Shared};

/// How often a call that waits hears from its server, so that a client
/// can tell a live server from a stopped or wedged one.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(2);

/// The buffer a connection's frames are read through.
const READ_BUFFER: usize = 8 * 1024;

/// Who is at the other end of a connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    /// The call that started this server: it began before the server
    /// watched the model, so it overlaps any change the server sees and
    /// is served even by a server that is stale.
    Starter,
    Other,
}

pub(super) async fn handle(
    shared: &Shared,
    pool: &Rc<Pool>,
    stream: UnixStream,
    caller: Caller,
    peer: Peer,
    welcomed: Rc<Cell<bool>>,
) -> Result<(), ProtocolError> {
    // Borrowed halves: dropping them does not shut the socket down, so a
    // handler that panics leaves it to the spare descriptor that reports it.
    let mut stream = stream;
    let (rd, mut wr) = stream.split();
    // Small: it is zeroed at every call, and a big Data frame is read
    // past it into its own buffer anyway.
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
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
    let welcome = protocol::welcome(std::process::id());
    match purpose {
        Purpose::Run => {
            // Turned away unwelcomed, a caller tries again and finds (or
            // starts) a server whose tool loaded what is there now.
            if caller != Caller::Starter && shared.outdated() {
                return Ok(());
            }
            // A caller that gave up (it waited out a stopped server) has
            // closed its socket: nothing of the input that came with its
            // Hello is run.
            if hangup::hung_up(rd.get_ref().as_ref()) {
                tracing::info!("a caller left before its call was read; nothing of it is run");
                return Ok(());
            }
            let tuning = Tuning::decode(protocol::hello_tuning(&hello));
            if let Some(forker) = pool.fork() {
                // At once: the caller sends its descriptors once welcomed.
                welcomed.set(true);
                wr.write_all(&welcome).await?;
                return super::fork_call::serve(shared, pool, forker, &tuning, &mut rd, &mut wr)
                    .await;
            }
            let mut answers = Answers::new(&mut wr, welcome, welcomed);
            serve_client(shared, pool, &peer, &tuning, &mut rd, &mut answers).await
        }
        Purpose::Control => {
            welcomed.set(true);
            wr.write_all(&welcome).await?;
            control(shared, pool, &mut rd, &mut wr).await
        }
    }
}

/// How long a call's Welcome may wait for its first answer to go with.
const WELCOME_WAIT: Duration = Duration::from_millis(5);

/// What a call sends its client, the Welcome first. The Welcome goes in
/// the same write as the first frame the call has to send, or alone once
/// [`WELCOME_WAIT`] has passed: a quick call wakes its client once, not
/// twice.
pub(super) struct Answers<'a, W> {
    wr: &'a mut W,
    welcome: Option<Vec<u8>>,
    due: tokio::time::Instant,
    /// Set once the Welcome is on its way, for whoever reports a panic.
    welcomed: Rc<Cell<bool>>,
}

impl<'a, W: tokio::io::AsyncWrite + Unpin> Answers<'a, W> {
    pub(super) fn new(wr: &'a mut W, welcome: Vec<u8>, welcomed: Rc<Cell<bool>>) -> Self {
        Self {
            wr,
            welcome: Some(welcome),
            due: tokio::time::Instant::now() + WELCOME_WAIT,
            welcomed,
        }
    }

    async fn send(&mut self, frames: &[u8]) -> std::io::Result<()> {
        match self.welcome.take() {
            Some(mut w) => {
                self.welcomed.set(true);
                w.extend_from_slice(frames);
                self.wr.write_all(&w).await
            }
            None => self.wr.write_all(frames).await,
        }
    }

    /// Resolves when the Welcome is due on its own (never once sent).
    async fn welcome_due(&self) {
        match self.welcome {
            Some(_) => tokio::time::sleep_until(self.due).await,
            None => std::future::pending().await,
        }
    }

    async fn info(&mut self, text: &str) -> std::io::Result<()> {
        let mut f = Vec::new();
        protocol::encode(Kind::Info, text.as_bytes(), &mut f);
        self.send(&f).await
    }
}

/// One call: the client's input goes to a request queue while the answers
/// the worker puts on it go back, then the final status.
pub(super) async fn serve_client(
    shared: &Shared,
    pool: &Rc<Pool>,
    peer: &Peer,
    tuning: &Tuning,
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    wr: &mut Answers<'_, impl tokio::io::AsyncWrite + Unpin>,
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
            wr.info(&note).await?;
        }
        if let Some(why) = pool.wait_reason() {
            wr.info(&why).await?;
        }
        let assigned = {
            let mut assign = std::pin::pin!(pool.assign(&req));
            loop {
                tokio::select! {
                    r = &mut assign => break r,
                    _ = wr.welcome_due() => wr.send(&[]).await?,
                    _ = tokio::time::sleep(KEEPALIVE) => wr.send(&keepalive).await?,
                }
            }
        };
        match assigned {
            Err(f) => req.finish(f.code, Some(f.message)),
            Ok(()) if req.tool_starting() => wr.info("waiting for the tool to start").await?,
            Ok(()) => {}
        }
        loop {
            let mut out = req.take_output();
            if out.is_empty() && req.is_gone() {
                return Ok(());
            }
            if let Some((status, message)) = req.finished() {
                // The last answers and the status in one write.
                if status != 0 {
                    stats.failed();
                }
                if let Some(m) = message {
                    let text = format!("{m}{}", shared.log_hint());
                    protocol::encode(Kind::Error, text.as_bytes(), &mut out);
                }
                protocol::encode_status(status, &mut out);
                return wr.send(&out).await;
            }
            if !out.is_empty() {
                if wr.send(&out).await.is_err() {
                    req.set_gone();
                    return Ok(());
                }
                continue;
            }
            tokio::select! {
                _ = req.changed() => {}
                _ = wr.welcome_due() => wr.send(&[]).await?,
                _ = tokio::time::sleep(KEEPALIVE) => {
                    if wr.send(&keepalive).await.is_err() {
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
        let mut exited = std::pin::pin!(peer.exited());
        loop {
            tokio::select! {
                r = &mut output => break r,
                _ = &mut input, if !input_done => input_done = true,
                // A client that dies while it waits (for an instance, or
                // for room in its queue) reads nothing that would tell.
                _ = &mut exited, if !peer_exited => {
                    peer_exited = true;
                    req.set_gone();
                }
            }
        }
    };
    Ok(result?)
}

/// What the end of a call undoes, in its drop.
pub(super) struct Leaving<'a> {
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
pub(super) fn tune(shared: &Shared, pool: &Rc<Pool>, t: &Tuning) -> Vec<String> {
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

/// Reads the client's frames, queuing whole records on `req`. End of file
/// before the end of input means the client went away.
pub(super) async fn read_input(
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
                #[cfg(debug_assertions)]
                fault::panic_on(&frame.payload);
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

pub(super) async fn control(
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
        // The state file's content as of now: `ls` and `top` count a call
        // that has returned, which the file may not show yet.
        "state" => {
            let ticks = crate::core::procinfo::start_ticks(std::process::id()).unwrap_or(0);
            let json = serde_json::to_vec(&report::snapshot(shared, pool, ticks))
                .map_err(|e| ProtocolError::Io(std::io::Error::other(e)))?;
            protocol::encode(Kind::Output, &json, &mut f);
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

/// How long a call runs before its client is watched through a pidfd:
/// most are over by then, and need none of its system calls.
const PEER_WATCH_AFTER: Duration = Duration::from_millis(20);

/// The process at the other end of a connection (its pid, from the
/// socket's credentials).
pub(super) struct Peer(Option<rustix::process::Pid>);

impl Peer {
    pub(super) fn new(pid: Option<i32>) -> Self {
        Self(pid.and_then(rustix::process::Pid::from_raw))
    }

    /// Resolves once the peer process has exited (never, if that cannot
    /// be told), looked at from [`PEER_WATCH_AFTER`] on.
    async fn exited(&self) {
        tokio::time::sleep(PEER_WATCH_AFTER).await;
        let Some(pid) = self.0 else {
            return std::future::pending().await;
        };
        match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK) {
            // Gone already.
            Err(rustix::io::Errno::SRCH) => {}
            Err(_) => std::future::pending().await,
            Ok(fd) => match crate::core::asyncfd::readable(fd) {
                Some(fd) => {
                    let _ = fd.readable().await;
                }
                None => std::future::pending().await,
            },
        }
    }
}

/// A fault for the tests, in debug builds only: a call whose input holds
/// the text of `VIASOCK_FAULT_PANIC` (as the server's environment had it)
/// panics its handler, as a bug would.
#[cfg(debug_assertions)]
mod fault {
    use std::sync::OnceLock;

    pub(super) fn panic_on(data: &[u8]) {
        static MARKER: OnceLock<Option<Vec<u8>>> = OnceLock::new();
        let marker = MARKER.get_or_init(|| {
            std::env::var_os("VIASOCK_FAULT_PANIC")
                .map(std::os::unix::ffi::OsStringExt::into_vec)
                .filter(|m| !m.is_empty())
        });
        if let Some(m) = marker
            && memchr::memmem::find(data, m).is_some()
        {
            panic!("a fault injected for a test (VIASOCK_FAULT_PANIC)");
        }
    }
}
