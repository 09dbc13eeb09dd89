//! `viasock top`: a live monitor of the user's servers.
//!
//! The loop reads the servers' state files (through core) at least twice a
//! second, feeds keys and snapshots to [`app::App::update`], runs the
//! actions it returns (kill, restart, clean up) on threads of their own so
//! that the screen never freezes, and draws with [`view::draw`]. The terminal
//! is restored on every way out: normal exit, error, panic, SIGTERM.

pub mod app;
pub mod event;
pub mod logview;
pub mod view;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use ratatui::crossterm::event as term;

use crate::core::state::{self, Found, Health};
use crate::core::{Fatal, control, hangup, logfile, procinfo, status};
use app::App;
use event::{Action, Detail, Event, Server, Snapshot, ToolUsage};

/// How often the state files are read.
const REFRESH: Duration = Duration::from_millis(500);
/// Log lines in the detail pane.
const LOG_LINES: usize = 4;

/// Runs the monitor on the servers of `narrow` (all of the user's if
/// `None`) until the user quits.
pub fn run(narrow: Option<PathBuf>) -> anyhow::Result<i32> {
    if !std::io::stdout().is_terminal() {
        return Err(Fatal::new(status::FAILURE, "top needs a terminal (try viasock ls)").into());
    }
    // A terminal that cannot move its cursor would get the escape
    // sequences as text.
    if std::env::var_os("TERM").is_some_and(|t| t == "dumb") {
        return Err(Fatal::new(
            status::FAILURE,
            "top cannot draw on TERM=dumb (try viasock ls, or set TERM to your terminal's type)",
        )
        .into());
    }
    let theme = view::Theme {
        color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let (tx, rx) = mpsc::channel::<Event>();
    watch_signals(tx.clone());
    let alive = watchdog();
    // Installs a panic hook that restores the terminal; the guard restores
    // it on every other way out of this function.
    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    // The mouse is let go on a panic too, before ratatui's hook restores
    // the rest.
    let ratatui_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        mouse_capture(false);
        ratatui_hook(info);
    }));
    let mut captured = false;

    let mut app = App::new();
    let mut seen = Seen::default();
    let mut last_read = Instant::now() - REFRESH;
    while !app.quit {
        alive.fetch_add(1, Ordering::Relaxed);
        // Paused, the figures hold still: nothing is read.
        if last_read.elapsed() >= REFRESH && !app.paused {
            app.update(Event::Refresh(snapshot(
                narrow.as_deref(),
                app.selected.as_deref(),
                app.log.as_ref().map(|v| v.id.as_str()),
                &mut seen,
            )));
            last_read = Instant::now();
        }
        if app.mouse != captured {
            mouse_capture(app.mouse);
            captured = app.mouse;
        }
        terminal.draw(|f| view::draw(f, &app, theme))?;
        let wait = match app.paused {
            // Only keys to wait for.
            true => REFRESH,
            false => REFRESH.saturating_sub(last_read.elapsed()),
        };
        let mut events = Vec::new();
        if term::poll(wait)? {
            match term::read()? {
                term::Event::Key(k) => events.push(Event::Key(k)),
                term::Event::Mouse(m) => events.push(Event::Mouse(m)),
                // The next draw fits the new size.
                term::Event::Resize(..) => {}
                _ => {}
            }
        }
        events.extend(rx.try_iter());
        let was_selected = app.selected.clone();
        let had_log = app.log.is_some();
        let had_instances = app.instances_open;
        for e in events {
            if let Some(action) = app.update(e) {
                perform(action, narrow.clone(), tx.clone());
                // Show the outcome as soon as there is one.
                last_read = Instant::now() - REFRESH;
            }
        }
        // The detail pane's and the instances view's facts, and the log
        // view's lines, are read for one server only: a new one is read
        // at once.
        if app.log.is_some() && !had_log {
            seen.forget_log();
        }
        let shows_one = app.detail_open || app.instances_open;
        if (app.selected != was_selected && shows_one)
            || (app.log.is_some() && !had_log)
            || (app.instances_open && !had_instances)
        {
            last_read = Instant::now() - REFRESH;
        }
    }
    // Ended by a signal: the status a shell gives a command it killed.
    Ok(app.signalled.map_or(0, |n| 128 + n))
}

/// Watchdog ticks (of [`REFRESH`]) the loop may miss before the terminal
/// is taken for gone; the loop turns at least once a tick. Counted in the
/// watchdog's own ticks, so a monitor stopped and continued (SIGSTOP) is
/// not mistaken for a stalled one.
const STALLED_TICKS: u32 = 10;

/// How often the watchdog looks for a hung-up terminal.
const HANGUP_LOOK: Duration = Duration::from_millis(100);

/// Ends the monitor when its terminal hangs up, or if its loop stops
/// turning. When the terminal goes away (a closed window, a killed tmux),
/// crossterm reads end-of-file from it in a busy loop and never returns to
/// us; without this the monitor would spin at full CPU forever. The
/// hang-up is seen within [`HANGUP_LOOK`]; the stall is the fallback.
/// Returns the loop's turn counter.
fn watchdog() -> Arc<AtomicU64> {
    let turns = Arc::new(AtomicU64::new(0));
    let seen = turns.clone();
    std::thread::spawn(move || {
        let (mut last, mut missed) = (u64::MAX, 0);
        let looks = (REFRESH.as_millis() / HANGUP_LOOK.as_millis()).max(1);
        loop {
            for _ in 0..looks {
                std::thread::sleep(HANGUP_LOOK);
                if hangup::hung_up(std::io::stdout()) {
                    restore();
                    std::process::exit(129);
                }
            }
            let now = seen.load(Ordering::Relaxed);
            missed = if now == last { missed + 1 } else { 0 };
            last = now;
            if missed >= STALLED_TICKS {
                restore();
                // As a shell's child does when its terminal hangs up.
                std::process::exit(129);
            }
        }
    });
    turns
}

struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

/// Gives the terminal back as it was: the mouse let go, raw mode and the
/// alternate screen left.
fn restore() {
    mouse_capture(false);
    ratatui::restore();
}

/// Asks the terminal to send mouse events (or to stop sending them). Where
/// it cannot, the keys do all.
fn mouse_capture(on: bool) {
    use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture};
    let mut out = std::io::stdout();
    let _ = match on {
        true => ratatui::crossterm::execute!(out, EnableMouseCapture),
        false => ratatui::crossterm::execute!(out, DisableMouseCapture),
    };
}

/// Turns SIGTERM, SIGHUP and SIGINT into a clean quit (the terminal is
/// restored) rather than a death that leaves it in raw mode; the monitor
/// then ends with 128 + the signal's number, as if the signal had ended
/// it.
fn watch_signals(tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            let number = tokio::select! {
                _ = term.recv() => libc::SIGTERM,
                _ = hup.recv() => libc::SIGHUP,
                _ = int.recv() => libc::SIGINT,
            };
            let _ = tx.send(Event::Signal(number));
        });
    });
}

/// The servers as their state files and `/proc` show them now.
/// `log_for`: the server whose log the log view shows.
/// `seen`: what the last refresh saw, to tell the CPU share since and
/// whether the log changed.
fn snapshot(
    narrow: Option<&std::path::Path>,
    selected: Option<&str>,
    log_for: Option<&str>,
    seen: &mut Seen,
) -> Snapshot {
    let (mut found, error) = match state::discover(narrow) {
        Ok(f) => (f, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    control::ask_live(&mut found);
    let usage = procinfo::usage_by_group();
    let shares = seen.cpu.look(&usage);
    // A pid of 0 (a tool not started yet) is no process group of ours:
    // group 0 would be init's and the kernel's.
    let groups = |f: &Found| -> Vec<u32> {
        f.state
            .instances
            .iter()
            .map(|i| i.pid)
            .filter(|&pid| pid != 0)
            .collect()
    };
    let tool_memory = |f: &Found| -> u64 {
        groups(f)
            .iter()
            .filter_map(|g| usage.get(g))
            .map(|u| u.rss)
            .sum()
    };
    // Known once a group was seen twice.
    let tool_cpu = |f: &Found| -> Option<f64> {
        let seen: Vec<f64> = groups(f)
            .iter()
            .filter_map(|g| shares.get(g).copied())
            .collect();
        (!seen.is_empty()).then(|| seen.iter().sum())
    };
    let detail = selected
        .and_then(|id| found.iter().find(|f| f.state.id == id))
        .map(|f| detail(f, &usage, &shares));
    // Read again only when the file changed: the view keeps what it has.
    let log = log_for
        .and_then(|id| found.iter().find(|f| f.state.id == id))
        .filter(|f| seen.log_changed(&f.state.log))
        .map(|f| {
            let lines = logfile::last_lines(&f.state.log, logview::LOG_VIEW_LINES);
            (f.state.id.clone(), lines)
        });
    Snapshot {
        now: SystemTime::now(),
        error,
        servers: found
            .iter()
            .map(|f| Server {
                state: f.shown_state(),
                health: f.health,
                tool_memory: if f.health == Health::Live {
                    tool_memory(f)
                } else {
                    0
                },
                tool_cpu: match f.health {
                    Health::Live => tool_cpu(f),
                    _ => None,
                },
            })
            .collect(),
        detail,
        log,
    }
}

/// What the last refresh saw.
#[derive(Default)]
struct Seen {
    cpu: CpuMeter,
    /// The log the log view showed: its path, length and modification
    /// time.
    log: Option<(PathBuf, u64, Option<SystemTime>)>,
}

impl Seen {
    /// Whether the log at `path` differs from what was seen of it last
    /// (another file counts as changed); remembers it.
    fn log_changed(&mut self, path: &std::path::Path) -> bool {
        let now = std::fs::metadata(path)
            .map(|m| (path.to_owned(), m.len(), m.modified().ok()))
            .unwrap_or_else(|_| (path.to_owned(), 0, None));
        self.log.replace(now.clone()) != Some(now)
    }

    /// The next look at a log reads it whatever it holds (a view opened).
    fn forget_log(&mut self) {
        self.log = None;
    }
}

/// CPU time of each process group at the last look, to tell its share of
/// a core since.
#[derive(Default)]
struct CpuMeter {
    last: HashMap<u32, (u64, Instant)>,
}

impl CpuMeter {
    /// The percent of one core each group used since the last look (for
    /// groups seen then too), and remembers this look.
    fn look(&mut self, usage: &HashMap<u32, procinfo::Usage>) -> HashMap<u32, f64> {
        self.look_at(usage, Instant::now())
    }

    fn look_at(
        &mut self,
        usage: &HashMap<u32, procinfo::Usage>,
        now: Instant,
    ) -> HashMap<u32, f64> {
        let mut shares = HashMap::new();
        for (group, u) in usage {
            if let Some((before, then)) = self.last.get(group) {
                let ms = now.duration_since(*then).as_secs_f64() * 1000.0;
                if ms > 0.0 {
                    let used = u.cpu_ms.saturating_sub(*before) as f64;
                    shares.insert(*group, 100.0 * used / ms);
                }
            }
        }
        self.last = usage.iter().map(|(g, u)| (*g, (u.cpu_ms, now))).collect();
        shares
    }
}

/// The detail pane's and the instances view's facts of one server.
/// `usage`: by process group; `shares`: of a core, by group.
fn detail(f: &Found, usage: &HashMap<u32, procinfo::Usage>, shares: &HashMap<u32, f64>) -> Detail {
    // The pids of a dead or remote server are nobody's or another
    // machine's: /proc says nothing about them. A pid of 0 is a tool not
    // started yet.
    let tools = match f.health {
        Health::Live => f
            .state
            .instances
            .iter()
            .filter(|i| i.pid != 0)
            .map(|i| {
                let u = usage.get(&i.pid).copied().unwrap_or_default();
                ToolUsage {
                    pid: i.pid,
                    rss: u.rss,
                    cpu: shares.get(&i.pid).copied(),
                    processes: u.processes,
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    Detail {
        id: f.state.id.clone(),
        tools,
        // A dead server's log is where one looks for why it died.
        log_tail: logfile::last_lines(&f.state.log, LOG_LINES),
    }
}

/// Runs an action on a thread; its outcome comes back as [`Event::Done`].
fn perform(action: Action, narrow: Option<PathBuf>, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let found = state::discover(narrow.as_deref()).unwrap_or_default();
        let by_id = |id: &str| found.iter().find(|f| f.state.id == id);
        let message = match &action {
            Action::Kill(id) | Action::ForceKill(id) => match by_id(id) {
                None => format!("{} is gone already", app::short(id)),
                Some(f) => match control::stop(f, matches!(action, Action::ForceKill(_))) {
                    Ok(()) => format!("stopped {}", app::short(id)),
                    Err(e) => format!("kill {} failed: {e:#}", app::short(id)),
                },
            },
            Action::Restart(id) => match by_id(id) {
                None => format!("{} is gone", app::short(id)),
                Some(f) => match control::restart(f) {
                    Ok(()) => format!("restarted the tool of {}", app::short(id)),
                    Err(e) => format!("restart {} failed: {e:#}", app::short(id)),
                },
            },
            Action::CleanDead => {
                let dead: Vec<&Found> = found.iter().filter(|f| f.health == Health::Dead).collect();
                for f in &dead {
                    state::clean_up(f);
                }
                format!("cleaned up {} dead server(s)", dead.len())
            }
        };
        let _ = tx.send(Event::Done(message));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(health: Health, log: &std::path::Path) -> Found {
        let mut state =
            app::tests::server("dead00beef01", "cat", "2026-11-25T09:00:00.000Z", 3).state;
        state.log = log.to_owned();
        Found {
            state,
            state_path: log.with_extension("json"),
            health,
            entry: None,
        }
    }

    #[test]
    fn cpu_share_is_told_from_two_looks() {
        let mut meter = CpuMeter::default();
        let t0 = Instant::now();
        let at = |cpu_ms| {
            [(
                7,
                procinfo::Usage {
                    rss: 1,
                    cpu_ms,
                    processes: 1,
                },
            )]
            .into_iter()
            .collect()
        };
        assert!(
            meter.look_at(&at(1000), t0).is_empty(),
            "one look tells nothing"
        );
        let shares = meter.look_at(&at(1500), t0 + Duration::from_secs(1));
        assert!((shares[&7] - 50.0).abs() < 0.01, "{shares:?}");
    }

    #[test]
    fn a_log_is_read_again_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, "one\n").unwrap();
        let mut seen = Seen::default();
        assert!(seen.log_changed(&log), "first look");
        assert!(!seen.log_changed(&log), "nothing new");
        std::fs::write(&log, "one\ntwo\n").unwrap();
        assert!(seen.log_changed(&log), "grown");
        assert!(seen.log_changed(&dir.path().join("other.log")), "another");
        assert!(seen.log_changed(&log));
        seen.forget_log();
        assert!(seen.log_changed(&log), "forgotten: read again");
    }

    #[test]
    fn a_dead_server_shows_its_last_log_lines_and_no_tools() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, "started\ntool exited: signal 9\nserver killed\n").unwrap();
        let usage = [(
            4243,
            procinfo::Usage {
                rss: 1 << 20,
                cpu_ms: 5,
                processes: 2,
            },
        )]
        .into_iter()
        .collect();
        let shares = [(4243, 25.0)].into_iter().collect();
        let d = detail(&found(Health::Dead, &log), &usage, &shares);
        assert_eq!(d.log_tail.last().map(String::as_str), Some("server killed"));
        assert!(
            d.tools.is_empty(),
            "its tool pid is nobody's now: {:?}",
            d.tools
        );
        let d = detail(&found(Health::Live, &log), &usage, &shares);
        assert_eq!(
            d.tools,
            [ToolUsage {
                pid: 4243,
                rss: 1 << 20,
                cpu: Some(25.0),
                processes: 2
            }]
        );
        assert_eq!(d.log_tail.len(), 3);
    }
}
