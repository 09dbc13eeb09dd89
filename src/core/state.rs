//! State files and the instance registry: what a server tells the
//! world about itself, and how `ls`, `kill`, `restart`, `logs` and `top`
//! find every server of the user.
//!
//! A server writes `<dir>/sockets/<id32>.json` (schema below) by writing a
//! temporary file and renaming it, on every change (at most five times a
//! second) and at least once a second as a heartbeat. It also puts a small
//! pointer file into the per-user registry, `$XDG_RUNTIME_DIR/viasock/`
//! (else `/tmp/viasock-<uid>/`), holding the path of its state file. Both go
//! when the server stops; a server killed with SIGKILL leaves them behind,
//! and is then reported `dead` (its pid is gone or is another program).
//!
//! The schema is a public interface, documented in docs/STATE.md; fields
//! are only ever added, and `schema` changes if one changes meaning.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::core::paths::{PathError, Place, check_dir};

pub const SCHEMA: u32 = 1;
/// A server on another host whose heartbeat is older than this is dead.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(5);
/// The window of the latency figures and the throughput history.
pub const WINDOW_SECS: usize = 60;
/// Latency histograms each cover this many seconds of the window.
const SLICE_SECS: u64 = 10;

/// What a server is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// No tool instance has finished starting yet.
    Starting,
    /// Waiting for calls.
    Ready,
    /// Serving at least one call.
    Busy,
    /// Stopping: no new calls, finishing those in flight.
    Draining,
    /// Its tool or files changed; draining towards exit.
    Stale,
    /// Never written by a server: readers report a server whose process
    /// is gone so.
    Dead,
    /// Never written by a server: readers report a live server whose
    /// heartbeat is late so (it is stopped, or wedged).
    Unresponsive,
}

/// One tool instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceState {
    pub pid: u32,
    /// `starting`, `idle` or `busy`.
    pub state: String,
    pub started_at: String,
    pub requests: u64,
    pub records: u64,
    /// When the oldest record it has not answered yet was written to it;
    /// `null` when it owes no answer.
    #[serde(default)]
    pub oldest_in_flight_at: Option<String>,
}

/// Per-record latency over the last minute, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// The state file, schema 1.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerState {
    pub schema: u32,
    /// Full hex id; people see the first 12 digits.
    pub id: String,
    pub command: Vec<String>,
    /// The framing options the server runs with, as `viasock run` takes
    /// them (`["-T", "^$", "--prelude-lines", "1"]`); empty for the default.
    #[serde(default)]
    pub framing: Vec<String>,
    pub cwd: PathBuf,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub host: String,
    pub server_pid: u32,
    /// The server process's start time (clock ticks since boot, as in
    /// `/proc/PID/stat`), so that a reused pid is never taken for it.
    pub server_start_ticks: u64,
    pub started_at: String,
    pub heartbeat_at: String,
    pub state: Phase,
    /// `null` when the server never idles out.
    pub idle_timeout_s: Option<f64>,
    pub last_request_at: Option<String>,
    /// When the server stops if no call comes; `null` while busy.
    pub idle_deadline_at: Option<String>,
    pub max_instances: usize,
    pub interleave: bool,
    pub instances: Vec<InstanceState>,
    pub clients_active: usize,
    pub clients_waiting: usize,
    pub requests_total: u64,
    pub records_total: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub errors_total: u64,
    /// Of those, the calls that ended in the last 60 s.
    #[serde(default)]
    pub errors_last_minute: u64,
    /// When the oldest record not answered yet was written to a tool
    /// (the earliest of the instances'); `null` when none is.
    #[serde(default)]
    pub oldest_in_flight_at: Option<String>,
    /// Log lines that could not be written (a full disk): the server
    /// serves on without them.
    #[serde(default)]
    pub log_lines_dropped: u64,
    pub latency_ms: Latency,
    /// Records answered per second, one sample a second, oldest first.
    pub throughput: Vec<f64>,
}

impl ServerState {
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// Whether it serves a one-shot tool (`--fork`): its instances are
    /// its fork server and a child per call.
    pub fn is_fork(&self) -> bool {
        self.framing.iter().any(|f| f == "--fork")
    }

    /// Instances serving calls: the busy ones, and those a restart
    /// replaced, which live on only while they finish theirs.
    pub fn busy_instances(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.state == "busy" || i.state == "retiring")
            .count()
    }

    /// The framing options and the command, shell-quoted, as they would
    /// follow `viasock run`: two servers of one command that differ in
    /// framing never look the same.
    pub fn command_line(&self) -> String {
        crate::core::shell::join(
            self.framing
                .iter()
                .chain(&self.command)
                .map(std::ffi::OsStr::new),
        )
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

/// Counters a server keeps for its state file. Single-threaded: the
/// server's handlers and workers update it in place.
pub struct Stats {
    pub requests_total: Cell<u64>,
    pub records_total: Cell<u64>,
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    errors_total: Cell<u64>,
    /// Calls that failed in each of the last seconds.
    errors: RefCell<PerSecond>,
    pub last_request_at: Cell<Option<SystemTime>>,
    latency: RefCell<LatencyWindow>,
    throughput: RefCell<PerSecond>,
    /// Something changed that the state file should show.
    pub dirty: Notify,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            requests_total: Cell::new(0),
            records_total: Cell::new(0),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            errors_total: Cell::new(0),
            errors: RefCell::new(PerSecond::default()),
            last_request_at: Cell::new(None),
            latency: RefCell::new(LatencyWindow::default()),
            throughput: RefCell::new(PerSecond::default()),
            dirty: Notify::new(),
        }
    }
}

impl Stats {
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }

    /// `n` records answered, each after `latency`.
    pub fn answered(&self, n: u64, latency: Duration) {
        Self::add(&self.records_total, n);
        self.latency.borrow_mut().record(n, latency);
        self.throughput.borrow_mut().current += n;
    }

    /// A call ended with a non-zero status.
    pub fn failed(&self) {
        Self::add(&self.errors_total, 1);
        self.errors.borrow_mut().current += 1;
    }

    pub fn errors_total(&self) -> u64 {
        self.errors_total.get()
    }

    /// Calls that failed in the last minute (the second under way too).
    pub fn errors_last_minute(&self) -> u64 {
        let e = self.errors.borrow();
        e.current + e.samples.iter().sum::<u64>()
    }

    /// Closes the current second of the throughput and error histories.
    pub fn tick_second(&self) {
        self.throughput.borrow_mut().tick();
        self.errors.borrow_mut().tick();
    }

    pub fn latency(&self) -> Latency {
        self.latency.borrow_mut().summary()
    }

    pub fn throughput(&self) -> Vec<f64> {
        self.throughput
            .borrow()
            .samples
            .iter()
            .map(|&n| n as f64)
            .collect()
    }

    pub fn changed(&self) {
        self.dirty.notify_one();
    }
}

/// Counts of the last minute, one a second, and the second under way.
#[derive(Default)]
struct PerSecond {
    current: u64,
    samples: VecDeque<u64>,
}

impl PerSecond {
    fn tick(&mut self) {
        if self.samples.len() == WINDOW_SECS {
            self.samples.pop_front();
        }
        self.samples.push_back(std::mem::take(&mut self.current));
    }
}

/// Latency histograms of the last minute, in slices of ten seconds.
#[derive(Default)]
struct LatencyWindow {
    slices: VecDeque<(u64, Histogram<u64>)>,
}

impl LatencyWindow {
    fn slice_now() -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / SLICE_SECS)
    }

    fn prune(&mut self, now: u64) {
        let keep = WINDOW_SECS as u64 / SLICE_SECS;
        while self.slices.front().is_some_and(|(s, _)| s + keep <= now) {
            self.slices.pop_front();
        }
    }

    fn record(&mut self, n: u64, latency: Duration) {
        let now = Self::slice_now();
        self.prune(now);
        if self.slices.back().is_none_or(|(s, _)| *s != now) {
            // Microseconds up to an hour, two significant digits.
            match Histogram::new_with_bounds(1, 3_600_000_000, 2) {
                Ok(h) => self.slices.push_back((now, h)),
                Err(_) => return,
            }
        }
        if let Some((_, h)) = self.slices.back_mut() {
            h.saturating_record_n(latency.as_micros().max(1) as u64, n);
        }
    }

    fn summary(&mut self) -> Latency {
        self.prune(Self::slice_now());
        let mut all: Option<Histogram<u64>> = None;
        for (_, h) in &self.slices {
            match &mut all {
                None => all = Some(h.clone()),
                Some(a) => {
                    let _ = a.add(h);
                }
            }
        }
        let Some(all) = all.filter(|h| !h.is_empty()) else {
            return Latency::default();
        };
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(all.value_at_quantile(0.50)),
            p95: ms(all.value_at_quantile(0.95)),
            p99: ms(all.value_at_quantile(0.99)),
            max: ms(all.max()),
        }
    }
}

/// Writes `state` to `path` atomically (a private temporary file, renamed).
pub fn write_state(path: &Path, state: &ServerState) -> io::Result<()> {
    // Named by pid: a draining server and its successor may both write.
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)?;
    let mut text = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    text.push(b'\n');
    let written = f.write_all(&text);
    drop(f);
    // A full disk must not leave a temporary file behind at every beat.
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Whether the state file at `path` is that of the server `pid` (started
/// at `start_ticks`), not of a successor with the same id.
pub fn is_own(path: &Path, pid: u32, start_ticks: u64) -> bool {
    read_state(path).is_some_and(|s| s.server_pid == pid && s.server_start_ticks == start_ticks)
}

pub fn read_state(path: &Path) -> Option<ServerState> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// The per-user registry directory, created (0700) and checked.
pub fn registry() -> Result<PathBuf, PathError> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(run) => PathBuf::from(run).join("viasock"),
        None => PathBuf::from(format!(
            "/tmp/viasock-{}",
            rustix::process::geteuid().as_raw()
        )),
    };
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(PathError::Create {
                place: Place::Registry,
                path: dir,
                source,
            });
        }
    }
    check_dir(&dir, Place::Registry)?;
    Ok(dir)
}

/// The registry entry of the server whose state file is `state_path`.
pub fn registry_entry(registry: &Path, state_path: &Path) -> PathBuf {
    let digest = Sha256::digest(state_path.as_os_str().as_encoded_bytes());
    let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    registry.join(format!("{name}.ref"))
}

/// Registers a server: its entry names its state file.
pub fn register(registry: &Path, state_path: &Path) -> io::Result<PathBuf> {
    let entry = registry_entry(registry, state_path);
    let tmp = entry.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)?;
    f.write_all(state_path.as_os_str().as_encoded_bytes())?;
    drop(f);
    fs::rename(&tmp, &entry)?;
    Ok(entry)
}

/// Whether a server is alive, judged from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Live,
    /// Its process is gone: it left its files behind.
    Dead,
    /// It runs on another host (a shared file system): not ours to judge.
    Remote,
}

/// A server found through the registry or a state directory.
#[derive(Clone, Debug)]
pub struct Found {
    pub state: ServerState,
    pub state_path: PathBuf,
    pub health: Health,
    /// Its registry entry, if it has one.
    pub entry: Option<PathBuf>,
}

/// Every server of the user (`narrow` = None), or of one state directory.
/// Only state files in directories that pass the checks of
/// [`check_dir`] are read: nobody else can have written them.
pub fn discover(narrow: Option<&Path>) -> Result<Vec<Found>, PathError> {
    let mut found = Vec::new();
    match narrow {
        Some(dir) => {
            let sockets = dir.join("sockets");
            let unreadable = |path: &Path, source| PathError::Read {
                place: Place::State,
                path: path.to_owned(),
                source,
            };
            match fs::metadata(&sockets) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
                Err(e) => return Err(unreadable(dir, e)),
                Ok(_) => {}
            }
            check_dir(dir, Place::State)?;
            check_dir(&sockets, Place::State)?;
            let registry = registry().ok();
            let entries = fs::read_dir(&sockets).map_err(|e| unreadable(&sockets, e))?;
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json") {
                    let entry = registry
                        .as_ref()
                        .map(|r| registry_entry(r, &p))
                        .filter(|e| e.exists());
                    push_found(&mut found, p, entry);
                }
            }
        }
        None => {
            let reg = registry()?;
            for e in fs::read_dir(&reg).into_iter().flatten().flatten() {
                let entry = e.path();
                if entry.extension().is_none_or(|x| x != "ref") {
                    continue;
                }
                let Ok(target) = fs::read(&entry) else {
                    continue;
                };
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(&target));
                let trusted = path.parent().is_some_and(|sockets| {
                    check_dir(sockets, Place::State).is_ok()
                        && sockets
                            .parent()
                            .is_some_and(|d| check_dir(d, Place::State).is_ok())
                });
                if !trusted || !push_found(&mut found, path, Some(entry.clone())) {
                    // The server's files are gone: a leftover pointer.
                    let _ = fs::remove_file(&entry);
                }
            }
        }
    }
    found.sort_by(|a, b| a.state.started_at.cmp(&b.state.started_at));
    Ok(found)
}

fn push_found(found: &mut Vec<Found>, path: PathBuf, entry: Option<PathBuf>) -> bool {
    let Some(state) = read_state(&path) else {
        return false;
    };
    let health = health(&state);
    found.push(Found {
        state,
        state_path: path,
        health,
        entry,
    });
    true
}

/// A server on this host is alive while its pid is still the process that
/// started at the recorded time: a pid that is gone, or reused by another
/// program, is a dead server's. A server on another host (sharing the file
/// system) is judged by its heartbeat alone.
fn health(s: &ServerState) -> Health {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if s.host == host {
        return if crate::core::procinfo::start_ticks(s.server_pid) == Some(s.server_start_ticks) {
            Health::Live
        } else {
            Health::Dead
        };
    }
    if heartbeat_age(s) > HEARTBEAT_STALE {
        Health::Dead
    } else {
        Health::Remote
    }
}

/// How long ago the server last wrote its state file (forever if it cannot
/// be told).
pub fn heartbeat_age(s: &ServerState) -> Duration {
    parse_time(&s.heartbeat_at)
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or(Duration::MAX)
}

impl Found {
    /// The state as `ls` and `top` report it: a dead server's says `dead`
    /// and shows nothing running (no instances, calls or rate), and a live
    /// one whose heartbeat (written at least once a second) is
    /// late says `unresponsive`: it is stopped, or wedged.
    pub fn shown_state(&self) -> ServerState {
        let mut s = self.state.clone();
        match self.health {
            // Nothing of it runs: what its file says of the moment (tools,
            // calls, rate, when it would idle out) is no longer so; its
            // totals and latencies are its history and stay.
            Health::Dead => {
                s.state = Phase::Dead;
                s.instances.clear();
                s.clients_active = 0;
                s.clients_waiting = 0;
                s.throughput.clear();
                s.idle_deadline_at = None;
            }
            Health::Live if heartbeat_age(&s) > HEARTBEAT_STALE => s.state = Phase::Unresponsive,
            _ => {}
        }
        s
    }
}

/// Removes what a dead server left behind: socket, state file, lock and
/// registry entry (the log stays). The paths are derived from where the
/// state file is, not taken from its content.
pub fn clean_up(f: &Found) {
    // A new server of the same command may have taken the names since the
    // dead one was found; then they are its own.
    let st = &f.state;
    if fs::symlink_metadata(&f.state_path).is_ok()
        && !is_own(&f.state_path, st.server_pid, st.server_start_ticks)
    {
        return;
    }
    let _ = fs::remove_file(f.state_path.with_extension("sock"));
    let _ = fs::remove_file(&f.state_path);
    if let (Some(stem), Some(dir)) = (
        f.state_path.file_stem(),
        f.state_path.parent().and_then(Path::parent),
    ) {
        let mut lock = dir.join("locks").join(stem);
        lock.set_extension("lock");
        let _ = fs::remove_file(lock);
    }
    if let Some(e) = &f.entry {
        let _ = fs::remove_file(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_reflects_records() {
        let mut w = LatencyWindow::default();
        assert_eq!(w.summary().max, 0.0);
        w.record(99, Duration::from_millis(2));
        w.record(1, Duration::from_millis(40));
        let l = w.summary();
        assert!((1.9..=2.1).contains(&l.p50), "{l:?}");
        assert!((39.0..=41.0).contains(&l.max), "{l:?}");
    }

    #[test]
    fn throughput_keeps_a_minute() {
        let mut t = PerSecond::default();
        for i in 0..70 {
            t.current = i;
            t.tick();
        }
        assert_eq!(t.samples.len(), WINDOW_SECS);
        assert_eq!(t.samples.back(), Some(&69));
    }

    #[test]
    fn rfc3339_round_trips() {
        let now = SystemTime::now();
        let back = parse_time(&rfc3339(now)).unwrap();
        let diff = now.duration_since(back).unwrap_or_default();
        assert!(diff < Duration::from_millis(2));
    }
}
