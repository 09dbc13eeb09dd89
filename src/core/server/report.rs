//! The state file: written on every change (at most five times a second)
//! and at least once a second as the heartbeat.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::core::pool::Pool;
use crate::core::state::{self, InstanceState, Phase, ServerState};
use crate::core::worker::{Worker, WorkerState};

use super::shared::{Mode, Shared};

/// How long after a change the state file is written.
pub(super) const CHANGE_DELAY: Duration = Duration::from_millis(20);

/// Writes the state file on every change (at most five times a second) and
/// at least once a second, which also closes each second of throughput.
/// Once the server stops listening, a successor with the same id may own
/// the file: then it is left to it.
pub(super) async fn write_states(
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
pub(super) fn snapshot(shared: &Shared, pool: &Pool, start_ticks: u64) -> ServerState {
    let cfg = &shared.cfg;
    let stats = pool.stats();
    let workers = pool.workers();
    let retiring = pool.retiring();
    let active = shared.active.load(Ordering::SeqCst);
    let waiting = pool.waiting();
    let now = SystemTime::now();
    // One clock reading for every time of the snapshot, so that the
    // server's oldest record and its instance's are the same instant.
    let mono = Instant::now();
    let since = |at: Option<Instant>| at.map(|t| state::rfc3339(now - mono.duration_since(t)));
    // Starting while no tool has finished starting, whether or not calls
    // wait for one.
    let listening = *shared.mode.borrow() == Mode::Running;
    let oldest = workers
        .iter()
        .chain(retiring.iter())
        .filter_map(|w| w.oldest_in_flight())
        .min();
    let (instances, oldest_in_flight_at) = match pool.fork() {
        // The fork servers, then the children of each; a call's child
        // owes its answer from the call's start.
        Some(f) => {
            let views = f.instances();
            let oldest = views
                .iter()
                .filter(|i| i.state == "busy")
                .map(|i| i.started_at)
                .min();
            let instances = views
                .into_iter()
                .map(|i| InstanceState {
                    pid: i.pid,
                    state: i.state.to_owned(),
                    started_at: state::rfc3339(i.started_at),
                    requests: i.requests,
                    records: i.requests,
                    oldest_in_flight_at: (i.state == "busy").then(|| state::rfc3339(i.started_at)),
                })
                .collect();
            (instances, oldest.map(state::rfc3339))
        }
        None => (
            record_instances(&workers, &retiring, listening, &since),
            since(oldest),
        ),
    };
    let forking = pool.fork().is_some_and(|f| f.starting());
    let state = match *shared.mode.borrow() {
        Mode::Running if forking => Phase::Starting,
        Mode::Running
            if !workers.is_empty()
                && retiring.is_empty()
                && workers.iter().all(|w| w.state() == WorkerState::Starting) =>
        {
            Phase::Starting
        }
        Mode::Running if active > 0 => Phase::Busy,
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
        // Shown before the command, so that a --fork server of a command
        // never looks like its record server.
        framing: if cfg.spec.fork {
            vec!["--fork".to_owned()]
        } else {
            cfg.spec.framing.options()
        },
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
        instances,
        // Connected calls that wait for an instance are counted apart.
        clients_active: active.saturating_sub(waiting),
        clients_waiting: waiting,
        requests_total: stats.requests_total.get(),
        records_total: stats.records_total.get(),
        bytes_in: stats.bytes_in.get(),
        bytes_out: stats.bytes_out.get(),
        errors_total: stats.errors_total(),
        errors_last_minute: stats.errors_last_minute(),
        oldest_in_flight_at,
        log_lines_dropped: crate::core::logsink::dropped(),
        latency_ms: stats.latency(),
        throughput: stats.throughput(),
    }
}

/// The workers of a record tool, and those a restart replaced while they
/// finish their calls.
fn record_instances(
    workers: &[Rc<Worker>],
    retiring: &[Rc<Worker>],
    listening: bool,
    since: &impl Fn(Option<Instant>) -> Option<String>,
) -> Vec<InstanceState> {
    workers
        .iter()
        .map(|w| (w, false))
        .chain(retiring.iter().map(|w| (w, true)))
        .map(|(w, retiring)| InstanceState {
            pid: w.pid(),
            state: match w.state() {
                _ if retiring => "retiring",
                WorkerState::Starting => "starting",
                _ if w.load() > 0 && !listening => "draining",
                _ if w.load() > 0 => "busy",
                _ => "idle",
            }
            .to_owned(),
            started_at: state::rfc3339(w.started_at),
            requests: w.requests(),
            records: w.records(),
            oldest_in_flight_at: since(w.oldest_in_flight()),
        })
        .collect()
}
