//! The monitor's state and its one pure transition, [`App::update`]: keys
//! and fresh snapshots in, side effects ([`Action`]s) out. Nothing here
//! touches the terminal, the file system or a clock.

use std::cmp::Ordering;
use std::time::{Duration, SystemTime};

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};

use crate::core::state::{self, Health, Phase};
use crate::tui::event::{Action, Detail, Event, Server, Snapshot};

/// Rows a PgUp/PgDn moves before the table is first drawn.
pub const PAGE: usize = 10;
/// How long an outcome stays in the status line once nothing is pending.
pub const STATUS_FOR: Duration = Duration::from_secs(5);

/// Columns the table can be sorted by, in the table's order: `<` and `>`
/// move through them, `s` cycles them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Id,
    State,
    Clients,
    Requests,
    Rate,
    Idle,
    P99,
    Oldest,
    Errors,
    Memory,
    Cpu,
    Uptime,
    Records,
    P50,
    Command,
}

impl SortKey {
    const ALL: [SortKey; 15] = [
        Self::Id,
        Self::State,
        Self::Clients,
        Self::Requests,
        Self::Rate,
        Self::Idle,
        Self::P99,
        Self::Oldest,
        Self::Errors,
        Self::Memory,
        Self::Cpu,
        Self::Uptime,
        Self::Records,
        Self::P50,
        Self::Command,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::State => "state",
            Self::Clients => "clients",
            Self::Requests => "requests",
            Self::Rate => "records/s",
            Self::Idle => "idle",
            Self::P99 => "p99",
            Self::Memory => "memory",
            Self::Cpu => "cpu",
            Self::Uptime => "uptime",
            Self::Records => "records",
            Self::P50 => "p50",
            Self::Oldest => "oldest in flight",
            Self::Errors => "errors",
            Self::Command => "command",
        }
    }

    /// The heading of its column in the table.
    pub fn column(self) -> &'static str {
        match self {
            Self::Uptime => "UPTIME",
            Self::Id => "ID",
            Self::Command => "COMMAND",
            Self::State => "STATE",
            Self::Requests => "REQS",
            Self::Rate => "REC/S",
            Self::P99 => "P99",
            Self::Memory => "MEM",
            Self::Cpu => "CPU",
            Self::Clients => "CLNT",
            Self::Idle => "IDLE",
            Self::Records => "RECORDS",
            Self::P50 => "P50",
            Self::Oldest => "OLDEST",
            Self::Errors => "ERR",
        }
    }

    /// Whether the largest value comes first (oldest first for uptime;
    /// for idle, the one that stops soonest).
    pub fn descending(self) -> bool {
        !matches!(self, Self::Id | Self::Command | Self::State | Self::Idle)
    }

    /// The next column to the right (`by` = 1) or left (`by` = -1),
    /// round the end.
    fn step(self, by: isize) -> Self {
        let n = Self::ALL.len() as isize;
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0) as isize;
        Self::ALL[(i + by).rem_euclid(n) as usize]
    }
}

/// Where the last drawing put the table, for the mouse: its header line,
/// the lines of its rows, and each heading's columns `[from, to)`.
#[derive(Clone, Debug, Default)]
pub struct TableLayout {
    pub header_y: u16,
    pub rows: std::ops::Range<u16>,
    pub headings: Vec<(u16, u16, &'static str)>,
}

/// Rows a turn of the mouse wheel moves.
pub const WHEEL_ROWS: isize = 3;

/// A question that waits for y/n; anything but `y` is no.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirm {
    pub action: Action,
    pub command: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Popup {
    Confirm(Confirm),
    /// The keys, or the legend of states and columns.
    Help {
        legend: bool,
    },
}

pub struct App {
    pub servers: Vec<Server>,
    pub now: SystemTime,
    pub detail: Option<Detail>,
    /// Id of the selected server: the selection follows the server, not
    /// the row, across refreshes and sorts.
    pub selected: Option<String>,
    /// Where the selection was, for when its server goes away.
    last_row: usize,
    pub sort: SortKey,
    pub reverse: bool,
    pub filter: String,
    /// Typing a filter.
    pub filtering: bool,
    pub detail_open: bool,
    pub popup: Option<Popup>,
    pub status: Option<String>,
    /// When the status was set (by the snapshot clock), for its expiry.
    status_at: SystemTime,
    /// Actions handed out whose outcome has not come back.
    pending: usize,
    /// First visible row of the table: kept between frames so the view
    /// does not jump. Only the drawing sets it, from the rows it fits.
    pub scroll: std::cell::Cell<usize>,
    /// Rows the table showed when last drawn: what PgUp/PgDn move.
    pub page: std::cell::Cell<usize>,
    pub quit: bool,
    /// The signal that ended the monitor, if one did.
    pub signalled: Option<i32>,
    /// Refreshes are ignored (`p`): the figures hold still to be read.
    pub paused: bool,
    /// Where the table was drawn: only the drawing sets it.
    pub table_layout: std::cell::RefCell<TableLayout>,
    /// The mouse is captured (`m` lets the terminal have it back, to
    /// select text).
    pub mouse: bool,
    /// The instances of the selected server (`i`), over the whole screen.
    pub instances_open: bool,
    /// The full log of a server (`l`), over the whole screen.
    pub log: Option<crate::tui::logview::LogView>,
    /// Why the servers could not be read, as of the last refresh.
    pub error: Option<String>,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    pub fn new() -> Self {
        Self {
            servers: Vec::new(),
            now: SystemTime::UNIX_EPOCH,
            detail: None,
            selected: None,
            last_row: 0,
            sort: SortKey::Uptime,
            reverse: false,
            filter: String::new(),
            filtering: false,
            detail_open: false,
            popup: None,
            status: None,
            status_at: SystemTime::UNIX_EPOCH,
            pending: 0,
            scroll: std::cell::Cell::new(0),
            page: std::cell::Cell::new(PAGE),
            quit: false,
            signalled: None,
            paused: false,
            instances_open: false,
            table_layout: Default::default(),
            mouse: true,
            log: None,
            error: None,
        }
    }

    /// The one transition. Returns what should be done outside.
    pub fn update(&mut self, event: Event) -> Option<Action> {
        match event {
            Event::Refresh(_) if self.paused => None,
            Event::Refresh(snap) => {
                self.refresh(snap);
                None
            }
            Event::Done(message) => {
                self.pending = self.pending.saturating_sub(1);
                self.say(message);
                None
            }
            Event::Signal(number) => {
                self.quit = true;
                self.signalled = Some(number);
                None
            }
            Event::Key(key) => {
                let action = self.key(key);
                if action.is_some() {
                    self.pending += 1;
                }
                action
            }
            Event::Mouse(m) => {
                self.mouse_event(m);
                None
            }
        }
    }

    /// Sorts by the next column (`by` 1) or the one before (-1) of those
    /// the table shows at its width, once it has been drawn.
    fn step_sort(&mut self, by: isize) {
        let shown: Vec<&str> = self
            .table_layout
            .borrow()
            .headings
            .iter()
            .map(|h| h.2)
            .collect();
        let mut key = self.sort.step(by);
        for _ in 0..SortKey::ALL.len() {
            if shown.is_empty() || shown.contains(&key.column()) {
                break;
            }
            key = key.step(by);
        }
        self.sort = key;
        self.show_top();
    }

    fn say(&mut self, message: impl Into<String>) {
        self.status = Some(message.into());
        self.status_at = self.now;
    }

    fn refresh(&mut self, snap: Snapshot) {
        let Snapshot {
            now,
            error,
            servers,
            detail,
            log,
        } = snap;
        if let (Some(view), Some((id, lines))) = (&mut self.log, log)
            && view.id == id
        {
            view.refresh(lines);
        }
        self.now = now;
        let shown_for = now.duration_since(self.status_at).unwrap_or_default();
        if self.pending == 0 && shown_for >= STATUS_FOR {
            self.status = None;
        }
        if let Some(e) = &error {
            self.say(e.clone());
        }
        self.error = error;
        self.servers = servers;
        self.detail = detail;
        self.keep_selection();
    }

    /// The rows on screen: filtered by command, sorted.
    pub fn visible(&self) -> Vec<&Server> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&Server> = self
            .servers
            .iter()
            .filter(|s| needle.is_empty() || command_line(s).to_lowercase().contains(&needle))
            .collect();
        rows.sort_by(|a, b| {
            let o = self.compare(a, b).then_with(|| a.state.id.cmp(&b.state.id));
            if self.reverse { o.reverse() } else { o }
        });
        rows
    }

    fn compare(&self, a: &Server, b: &Server) -> Ordering {
        let f = |x: f64, y: f64| x.partial_cmp(&y).unwrap_or(Ordering::Equal);
        match self.sort {
            // Oldest first: new servers join at the bottom.
            SortKey::Uptime => a.state.started_at.cmp(&b.state.started_at),
            SortKey::Clients => clients(b).cmp(&clients(a)),
            SortKey::Records => b.state.records_total.cmp(&a.state.records_total),
            SortKey::P50 => f(b.state.latency_ms.p50, a.state.latency_ms.p50),
            SortKey::Oldest => oldest_wait(b, self.now).cmp(&oldest_wait(a, self.now)),
            SortKey::Errors => b.state.errors_last_minute.cmp(&a.state.errors_last_minute),
            // Soonest to stop first; those that never idle out last.
            SortKey::Idle => {
                let left = |s| idle_left(s, self.now).unwrap_or(Duration::MAX);
                left(a).cmp(&left(b))
            }
            SortKey::Id => a.state.id.cmp(&b.state.id),
            // By what the table shows (the program's name), then the rest.
            SortKey::Command => short_command(a)
                .cmp(&short_command(b))
                .then_with(|| command_line(a).cmp(&command_line(b))),
            // Those that ask for a look first.
            SortKey::State => {
                let rank = |s| STATES.iter().position(|&l| l == state_label(s, self.now));
                rank(a).cmp(&rank(b))
            }
            SortKey::Requests => b.state.requests_total.cmp(&a.state.requests_total),
            SortKey::Rate => f(rate(b), rate(a)),
            SortKey::P99 => f(b.state.latency_ms.p99, a.state.latency_ms.p99),
            SortKey::Memory => b.tool_memory.cmp(&a.tool_memory),
            SortKey::Cpu => f(b.tool_cpu.unwrap_or(-1.0), a.tool_cpu.unwrap_or(-1.0)),
        }
    }

    /// Row of the selection among the visible rows.
    pub fn selected_row(&self) -> Option<usize> {
        let id = self.selected.as_ref()?;
        self.visible().iter().position(|s| &s.state.id == id)
    }

    pub fn selected_server(&self) -> Option<&Server> {
        let id = self.selected.as_ref()?;
        self.servers.iter().find(|s| &s.state.id == id)
    }

    /// Keeps the selection on its server; if that is gone (or filtered
    /// out), on the row where it was.
    fn keep_selection(&mut self) {
        if let Some(row) = self.selected_row() {
            self.last_row = row;
            return;
        }
        let rows = self.visible();
        self.selected = match rows.len() {
            0 => None,
            n => Some(rows[self.last_row.min(n - 1)].state.id.clone()),
        };
    }

    fn select_row(&mut self, row: usize) {
        let rows = self.visible();
        if rows.is_empty() {
            self.selected = None;
            return;
        }
        let row = row.min(rows.len() - 1);
        self.selected = Some(rows[row].state.id.clone());
        self.last_row = row;
    }

    /// After a sort change: the first rows are what the new order is
    /// about, so the view goes to them, the first selected.
    fn show_top(&mut self) {
        self.select_row(0);
        self.scroll.set(0);
    }

    fn move_by(&mut self, delta: isize) {
        let row = self.selected_row().unwrap_or(0);
        self.select_row(row.saturating_add_signed(delta));
    }

    fn key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return None;
        }
        if let Some(popup) = self.popup.take() {
            let c = match popup {
                Popup::Confirm(c) => c,
                // `?` turns the page; any other key closes the help.
                Popup::Help { legend } => {
                    if key.code == KeyCode::Char('?') {
                        self.popup = Some(Popup::Help { legend: !legend });
                    }
                    return None;
                }
            };
            let action = match (key.code, c.action) {
                (KeyCode::Char('y' | 'Y'), action) => action,
                (KeyCode::Char('f' | 'F'), Action::Kill(id)) => Action::ForceKill(id),
                // Default no: any other key cancels.
                _ => return None,
            };
            let message = match &action {
                Action::Kill(id) => format!("stopping {} (its calls finish first)…", short(id)),
                Action::ForceKill(id) => format!("stopping {} now…", short(id)),
                Action::Restart(id) => format!("restarting the tool of {}…", short(id)),
                Action::CleanDead => "cleaning up…".to_owned(),
            };
            self.say(message);
            return Some(action);
        }
        if let Some(view) = &mut self.log {
            match view.key(key) {
                Ok(true) => {}
                Ok(false) => self.log = None,
                Err(why) => self.say(why),
            }
            return None;
        }
        if self.filtering {
            match key.code {
                KeyCode::Esc => {
                    self.filter.clear();
                    self.filtering = false;
                }
                KeyCode::Enter => self.filtering = false,
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(ch) => self.filter.push(ch),
                _ => {}
            }
            // A selection the filter hides goes to the first match.
            if self.selected_row().is_none() {
                self.select_row(0);
            }
            return None;
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            // Esc backs out one layer at a time, as in k9s: a view, then
            // the pane, then the filter; only the plain table quits.
            KeyCode::Esc if self.instances_open => self.instances_open = false,
            KeyCode::Esc if self.detail_open => self.detail_open = false,
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.keep_selection();
            }
            KeyCode::Esc => self.quit = true,
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-(self.page.get() as isize)),
            KeyCode::PageDown => self.move_by(self.page.get() as isize),
            KeyCode::Home | KeyCode::Char('g') => self.select_row(0),
            KeyCode::End | KeyCode::Char('G') => self.select_row(usize::MAX),
            KeyCode::Enter => self.detail_open = !self.detail_open,
            KeyCode::Char('s' | '>') => self.step_sort(1),
            KeyCode::Char('<') => self.step_sort(-1),
            KeyCode::Char('p') => self.paused = !self.paused,
            KeyCode::Char('i' | 'l') if self.selected_row().is_none() => {
                self.say("no server selected");
            }
            KeyCode::Char('i') => self.instances_open = !self.instances_open,
            KeyCode::Char('m') => {
                self.mouse = !self.mouse;
                self.say(match self.mouse {
                    true => "mouse on: click selects and sorts (Shift+drag selects text)",
                    false => "mouse off: the terminal selects text (m turns it on)",
                });
            }
            KeyCode::Char('l') => {
                if let Some(id) = self.selected.clone() {
                    self.log = Some(crate::tui::logview::LogView::new(id));
                }
            }
            KeyCode::Char('S') => {
                self.reverse = !self.reverse;
                self.show_top();
            }
            KeyCode::Char('/') => self.filtering = true,
            KeyCode::Char('?') => self.popup = Some(Popup::Help { legend: false }),
            KeyCode::Char('c') => {
                let dead = self
                    .servers
                    .iter()
                    .filter(|s| s.health == Health::Dead)
                    .count();
                if dead == 0 {
                    self.say("no dead servers to clean up");
                } else {
                    self.say(format!("cleaning up {dead} dead server(s)…"));
                    return Some(Action::CleanDead);
                }
            }
            KeyCode::Char('K') | KeyCode::Delete => self.ask(Action::Kill),
            KeyCode::Char('r') => self.ask(Action::Restart),
            _ => {}
        }
        None
    }

    /// A click selects a row or sorts by a column (again: the other way);
    /// the wheel moves the selection, or scrolls the log. Questions and
    /// help wait for keys.
    fn mouse_event(&mut self, m: MouseEvent) {
        if self.popup.is_some() || self.filtering {
            return;
        }
        let wheel = match m.kind {
            MouseEventKind::ScrollDown => Some(KeyCode::Down),
            MouseEventKind::ScrollUp => Some(KeyCode::Up),
            _ => None,
        };
        if let Some(view) = &mut self.log {
            for code in wheel.into_iter().cycle().take(WHEEL_ROWS as usize) {
                let _ = view.key(KeyEvent::new(code, KeyModifiers::NONE));
            }
            return;
        }
        if let Some(code) = wheel {
            // In the instances view the wheel goes through the servers.
            let rows = if self.instances_open { 1 } else { WHEEL_ROWS };
            self.move_by(if code == KeyCode::Down { rows } else { -rows });
            return;
        }
        if m.kind != MouseEventKind::Down(MouseButton::Left) || self.instances_open {
            return;
        }
        let layout = self.table_layout.borrow().clone();
        if m.row == layout.header_y {
            let clicked = layout
                .headings
                .iter()
                .find(|(from, to, _)| (*from..*to).contains(&m.column));
            let key = clicked.and_then(|(_, _, name)| {
                SortKey::ALL.iter().copied().find(|k| k.column() == *name)
            });
            if let Some(key) = key {
                if key == self.sort {
                    self.reverse = !self.reverse;
                } else {
                    self.sort = key;
                }
                self.show_top();
            }
        } else if layout.rows.contains(&m.row) {
            let row = self.scroll.get() + usize::from(m.row - layout.rows.start);
            if row < self.visible().len() {
                self.select_row(row);
            }
        }
    }

    /// Opens the y/n question for an action on the selected server, or
    /// says at once why there is nothing to ask.
    fn ask(&mut self, action: fn(String) -> Action) {
        let refusal = match self.selected_server() {
            None => "no server selected".to_owned(),
            Some(s) if s.health == Health::Dead => format!(
                "{} is dead already: c cleans up after dead servers",
                short(&s.state.id)
            ),
            Some(s) if s.health == Health::Remote => format!(
                "{} runs on host {}: control it there",
                short(&s.state.id),
                s.state.host
            ),
            Some(s) => {
                let command = command_line(s);
                self.popup = Some(Popup::Confirm(Confirm {
                    action: action(s.state.id.clone()),
                    command,
                }));
                return;
            }
        };
        self.say(refusal);
    }
}

pub fn command_line(s: &Server) -> String {
    s.state.command_line()
}

/// The command as the table shows it: the program's file name (the
/// detail pane has the full path) and the arguments.
pub fn short_command(s: &Server) -> String {
    let mut words = s.state.command.iter().map(String::as_str);
    let program = words
        .next()
        .map_or("", |p| p.rsplit('/').next().unwrap_or(p));
    let framing = s.state.framing.iter().map(String::as_str);
    crate::core::shell::join(
        framing
            .chain(std::iter::once(program))
            .chain(words)
            .map(std::ffi::OsStr::new),
    )
}

/// Every state word, those that ask for a look first: the order of a sort
/// by state and of the header's counts.
pub const STATES: [&str; 9] = [
    "stuck",
    "unresponsive",
    "dead",
    "stale",
    "draining",
    "starting",
    "busy",
    "ready",
    "remote",
];

/// The state as a word: a dead server says so whatever its file says, one
/// of another host is not judged from here, and a live one whose oldest
/// record has waited far too long ([`wait_level`]) is `stuck`.
pub fn state_label(s: &Server, now: SystemTime) -> &'static str {
    match s.health {
        Health::Dead => return "dead",
        Health::Remote => return "remote",
        Health::Live => {}
    }
    if s.state.state != Phase::Unresponsive && wait_level(s, now) == Level::Alarm {
        return "stuck";
    }
    match s.state.state {
        Phase::Starting => "starting",
        Phase::Ready => "ready",
        Phase::Busy => "busy",
        Phase::Draining => "draining",
        Phase::Stale => "stale",
        Phase::Dead => "dead",
        Phase::Unresponsive => "unresponsive",
    }
}

/// How much a figure asks for a look: the table colours it, or under
/// `NO_COLOR` marks it `!` or `!!`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Normal,
    Warn,
    Alarm,
}

impl Level {
    /// How it is said in text, where colour cannot say it.
    pub fn mark(self) -> &'static str {
        match self {
            Self::Normal => "",
            Self::Warn => "!",
            Self::Alarm => "!!",
        }
    }
}

/// A record in flight this long is worth a look, and one this long looks
/// stuck, unless the server's own p99 says its records take that long:
/// then three and ten times its p99.
pub const WAIT_WARN: Duration = Duration::from_secs(10);
pub const WAIT_ALARM: Duration = Duration::from_secs(60);
/// A heartbeat this old is late; at [`state::HEARTBEAT_STALE`] the server
/// is `unresponsive`.
pub const BEAT_WARN: Duration = Duration::from_secs(2);

/// How long the oldest record in flight of a live server has waited for
/// its answer, as of `now`.
pub fn oldest_wait(s: &Server, now: SystemTime) -> Option<Duration> {
    if s.health != Health::Live {
        return None;
    }
    let since = state::parse_time(s.state.oldest_in_flight_at.as_ref()?)?;
    Some(now.duration_since(since).unwrap_or_default())
}

pub fn wait_level(s: &Server, now: SystemTime) -> Level {
    oldest_wait(s, now).map_or(Level::Normal, |wait| judge_wait(wait, s))
}

/// How much a record in flight for `wait` asks for a look, on server `s`.
pub fn judge_wait(wait: Duration, s: &Server) -> Level {
    let usual = Duration::from_secs_f64(s.state.latency_ms.p99.max(0.0) / 1000.0);
    if wait >= WAIT_ALARM.max(usual * 10) {
        Level::Alarm
    } else if wait >= WAIT_WARN.max(usual * 3) {
        Level::Warn
    } else {
        Level::Normal
    }
}

/// How old the server's last word is (its state file, or its answer when
/// asked), as of `now`; nothing for a dead server.
pub fn heartbeat_age(s: &Server, now: SystemTime) -> Option<Duration> {
    if s.health == Health::Dead {
        return None;
    }
    let beat = state::parse_time(&s.state.heartbeat_at)?;
    Some(now.duration_since(beat).unwrap_or_default())
}

pub fn beat_level(s: &Server, now: SystemTime) -> Level {
    match heartbeat_age(s, now) {
        Some(age) if age > state::HEARTBEAT_STALE => Level::Alarm,
        Some(age) if age >= BEAT_WARN => Level::Warn,
        _ => Level::Normal,
    }
}

/// Any failed call in the last minute is worth a look.
pub fn errors_level(s: &Server) -> Level {
    match s.state.errors_last_minute {
        0 => Level::Normal,
        _ => Level::Alarm,
    }
}

/// Calls connected, served or waiting.
pub fn clients(s: &Server) -> usize {
    s.state.clients_active + s.state.clients_waiting
}

/// Records per second over the last full second.
pub fn rate(s: &Server) -> f64 {
    s.state.throughput.last().copied().unwrap_or(0.0)
}

/// Seconds until the server idles out, counted from `now`.
pub fn idle_left(s: &Server, now: SystemTime) -> Option<Duration> {
    if s.health != Health::Live {
        return None;
    }
    let deadline = state::parse_time(s.state.idle_deadline_at.as_ref()?)?;
    Some(deadline.duration_since(now).unwrap_or_default())
}

pub fn uptime(s: &Server, now: SystemTime) -> Option<Duration> {
    if s.health != Health::Live {
        return None;
    }
    now.duration_since(state::parse_time(&s.state.started_at)?)
        .ok()
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::core::state::{InstanceState, Latency, ServerState};

    /// A server as a state file would describe it, at a fixed time.
    pub fn server(id: &str, command: &str, started: &str, requests: u64) -> Server {
        Server {
            state: ServerState {
                schema: 1,
                id: format!("{id:0<64}"),
                command: command.split(' ').map(str::to_owned).collect(),
                framing: vec![],
                cwd: "/home/ada/corpus".into(),
                dir: "/home/ada/corpus/.viasock".into(),
                socket: format!("/home/ada/corpus/.viasock/sockets/{id:0<32}.sock").into(),
                log: format!("/home/ada/corpus/.viasock/logs/{id:0<32}.log").into(),
                host: "vm".into(),
                server_pid: 4242,
                server_start_ticks: 1,
                started_at: started.into(),
                heartbeat_at: "2026-11-25T12:00:00.000Z".into(),
                state: Phase::Ready,
                idle_timeout_s: Some(60.0),
                last_request_at: Some("2026-11-25T11:59:50.000Z".into()),
                idle_deadline_at: Some("2026-11-25T12:00:42.000Z".into()),
                max_instances: 2,
                interleave: false,
                instances: vec![InstanceState {
                    pid: 4243,
                    state: "idle".into(),
                    started_at: started.into(),
                    requests,
                    records: requests * 10,
                    oldest_in_flight_at: None,
                }],
                clients_active: 0,
                clients_waiting: 0,
                requests_total: requests,
                records_total: requests * 10,
                bytes_in: requests * 100,
                bytes_out: requests * 120,
                errors_total: 0,
                errors_last_minute: 0,
                oldest_in_flight_at: None,
                log_lines_dropped: 0,
                latency_ms: Latency {
                    p50: 1.5,
                    p95: 3.0,
                    p99: 4.25,
                    max: 9.0,
                },
                throughput: vec![0.0, 12.0, 30.0, 18.0],
            },
            health: Health::Live,
            tool_memory: 48 << 20,
            tool_cpu: Some(12.0),
        }
    }

    pub fn at(t: &str) -> SystemTime {
        state::parse_time(t).unwrap()
    }

    pub fn app_with(servers: Vec<Server>) -> App {
        let mut app = App::new();
        app.update(Event::Refresh(Snapshot {
            now: at("2026-11-25T12:00:00.000Z"),
            error: None,
            servers,
            detail: None,
            log: None,
        }));
        app
    }

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn three() -> Vec<Server> {
        vec![
            server("aaa", "sed -u s/a/b/", "2026-11-25T11:00:00.000Z", 5),
            server("bbb", "tokenize --model en", "2026-11-25T11:10:00.000Z", 50),
            server("ccc", "parse -m models/de", "2026-11-25T11:20:00.000Z", 20),
        ]
    }

    fn ids(app: &App) -> Vec<&str> {
        app.visible().iter().map(|s| &s.state.id[..3]).collect()
    }

    #[test]
    fn selection_starts_on_the_first_row_and_moves() {
        let mut app = app_with(three());
        assert_eq!(app.selected_row(), Some(0));
        app.update(key(KeyCode::Down));
        app.update(key(KeyCode::Char('j')));
        app.update(key(KeyCode::Char('j')));
        assert_eq!(app.selected_row(), Some(2), "stops at the last row");
        app.update(key(KeyCode::Char('g')));
        assert_eq!(app.selected_row(), Some(0));
        app.update(key(KeyCode::Char('G')));
        assert_eq!(app.selected_row(), Some(2));
        app.update(key(KeyCode::PageUp));
        assert_eq!(app.selected_row(), Some(0));
    }

    #[test]
    fn selection_follows_its_server_across_refreshes_and_a_sort_goes_to_the_top() {
        let mut app = app_with(three());
        app.update(key(KeyCode::Down));
        let chosen = app.selected.clone();
        assert_eq!(&chosen.as_ref().unwrap()[..3], "bbb");
        // A new server that sorts first shifts the rows; the selection stays.
        let mut more = three();
        more.insert(0, server("000", "cat", "2026-11-25T10:00:00.000Z", 1));
        app.update(Event::Refresh(Snapshot {
            now: at("2026-11-25T12:00:01.000Z"),
            error: None,
            servers: more,
            detail: None,
            log: None,
        }));
        assert_eq!(app.selected, chosen);
        assert_eq!(app.selected_row(), Some(2));
        // A sort change shows the top, its first row selected.
        while app.sort != SortKey::Requests {
            app.update(key(KeyCode::Char('s')));
        }
        assert_eq!(app.sort, SortKey::Requests);
        assert_eq!(ids(&app), ["bbb", "ccc", "aaa", "000"]);
        assert_eq!(app.selected_row(), Some(0));
        app.update(key(KeyCode::Char('S')));
        assert_eq!(ids(&app), ["000", "aaa", "ccc", "bbb"]);
        assert_eq!(app.selected_row(), Some(0));
        assert_ne!(app.selected, chosen);
    }

    #[test]
    fn selection_moves_to_a_neighbour_when_its_server_goes() {
        let mut app = app_with(three());
        app.update(key(KeyCode::Char('G')));
        let mut two = three();
        two.pop();
        app.update(Event::Refresh(Snapshot {
            now: at("2026-11-25T12:00:01.000Z"),
            error: None,
            servers: two,
            detail: None,
            log: None,
        }));
        assert_eq!(app.selected_row(), Some(1));
        app.update(Event::Refresh(Snapshot {
            now: at("2026-11-25T12:00:02.000Z"),
            error: None,
            servers: Vec::new(),
            detail: None,
            log: None,
        }));
        assert_eq!(app.selected, None);
    }

    #[test]
    fn filter_matches_commands_and_esc_clears_it() {
        let mut app = app_with(three());
        app.update(key(KeyCode::Char('/')));
        for ch in "MODEL".chars() {
            app.update(key(KeyCode::Char(ch)));
        }
        assert!(app.filtering);
        assert_eq!(ids(&app), ["bbb", "ccc"], "case does not matter");
        app.update(key(KeyCode::Enter));
        assert!(!app.filtering);
        // Keys act again once the filter is typed.
        app.update(key(KeyCode::Char('j')));
        assert_eq!(&app.selected.as_ref().unwrap()[..3], "ccc");
        app.update(key(KeyCode::Esc));
        assert!(app.filter.is_empty());
        assert!(!app.quit, "the first Esc clears the filter");
        assert_eq!(ids(&app).len(), 3);
        app.update(key(KeyCode::Esc));
        assert!(app.quit);
    }

    #[test]
    fn kill_asks_first_and_defaults_to_no() {
        let mut app = app_with(three());
        assert_eq!(app.update(key(KeyCode::Char('K'))), None);
        match &app.popup {
            Some(Popup::Confirm(c)) => assert_eq!(c.command, "sed -u s/a/b/"),
            other => panic!("no confirmation: {other:?}"),
        }
        assert_eq!(app.update(key(KeyCode::Enter)), None, "Enter is no");
        assert_eq!(app.popup, None);
        app.update(key(KeyCode::Delete));
        assert_eq!(app.update(key(KeyCode::Char('n'))), None);
        app.update(key(KeyCode::Char('K')));
        let action = app.update(key(KeyCode::Char('y')));
        assert_eq!(action, Some(Action::Kill(format!("{:0<64}", "aaa"))));
        assert!(app.status.as_ref().unwrap().starts_with("stopping aaa"));
        app.update(Event::Done("kill failed: permission denied".into()));
        assert_eq!(
            app.status.as_deref(),
            Some("kill failed: permission denied")
        );
    }

    #[test]
    fn restart_asks_too() {
        let mut app = app_with(three());
        app.update(key(KeyCode::Char('j')));
        app.update(key(KeyCode::Char('r')));
        let action = app.update(key(KeyCode::Char('y')));
        assert_eq!(action, Some(Action::Restart(format!("{:0<64}", "bbb"))));
    }

    #[test]
    fn clean_up_only_when_something_is_dead() {
        let mut app = app_with(three());
        assert_eq!(app.update(key(KeyCode::Char('c'))), None);
        let mut servers = three();
        servers[1].health = Health::Dead;
        app.update(Event::Refresh(Snapshot {
            now: at("2026-11-25T12:00:01.000Z"),
            error: None,
            servers,
            detail: None,
            log: None,
        }));
        assert_eq!(app.update(key(KeyCode::Char('c'))), Some(Action::CleanDead));
    }

    #[test]
    fn kill_can_be_forced_from_the_question() {
        let mut app = app_with(three());
        app.update(key(KeyCode::Char('K')));
        let action = app.update(key(KeyCode::Char('f')));
        assert_eq!(action, Some(Action::ForceKill(format!("{:0<64}", "aaa"))));
        // `f` means nothing to a restart question: it is a no.
        app.update(key(KeyCode::Char('r')));
        assert_eq!(app.update(key(KeyCode::Char('f'))), None);
    }

    #[test]
    fn dead_and_remote_servers_are_not_asked_about() {
        let mut servers = three();
        servers[0].health = Health::Dead;
        servers[1].health = Health::Remote;
        servers[1].state.host = "otherhost".into();
        let mut app = app_with(servers);
        for k in ['K', 'r'] {
            app.update(key(KeyCode::Char(k)));
            assert_eq!(app.popup, None);
            assert!(app.status.as_ref().unwrap().contains("is dead already"));
        }
        app.update(key(KeyCode::Down));
        app.update(key(KeyCode::Char('K')));
        assert_eq!(app.popup, None);
        assert!(
            app.status
                .as_ref()
                .unwrap()
                .contains("runs on host otherhost")
        );
        assert_eq!(
            state_label(app.selected_server().unwrap(), app.now),
            "remote"
        );
    }

    #[test]
    fn status_goes_away_after_a_while_but_not_while_an_action_runs() {
        let mut app = app_with(three());
        let refresh_at = |app: &mut App, t: &str| {
            app.update(Event::Refresh(Snapshot {
                now: at(t),
                error: None,
                servers: three(),
                detail: None,
                log: None,
            }));
        };
        app.update(key(KeyCode::Char('K')));
        assert!(app.update(key(KeyCode::Char('y'))).is_some());
        refresh_at(&mut app, "2026-11-25T12:00:30.000Z");
        assert!(
            app.status.as_ref().unwrap().starts_with("stopping"),
            "pending"
        );
        app.update(Event::Done("stopped aaa".into()));
        refresh_at(&mut app, "2026-11-25T12:00:33.000Z");
        assert_eq!(app.status.as_deref(), Some("stopped aaa"));
        refresh_at(&mut app, "2026-11-25T12:00:36.000Z");
        assert_eq!(app.status, None);
    }

    #[test]
    fn sort_arrow_follows_what_is_on_top() {
        let mut app = app_with(three());
        assert!(app.sort.descending(), "oldest (largest uptime) first");
        while app.sort != SortKey::Id {
            app.update(key(KeyCode::Char('s')));
        }
        assert!(!app.sort.descending());
    }

    #[test]
    fn table_shows_the_program_name_not_its_path() {
        let s = server(
            "aaa",
            "/opt/nlp/bin/parse -m /m/en",
            "2026-11-25T11:00:00.000Z",
            1,
        );
        assert_eq!(short_command(&s), "parse -m /m/en");
        assert_eq!(command_line(&s), "/opt/nlp/bin/parse -m /m/en");
    }

    #[test]
    fn commands_show_their_framing_options_quoted() {
        let mut s = server("aaa", "/usr/bin/hunspell -a", "2026-11-25T11:00:00.000Z", 1);
        s.state.framing = ["-T", "^$", "--prelude-lines", "1"]
            .map(String::from)
            .to_vec();
        assert_eq!(short_command(&s), "-T '^$' --prelude-lines 1 hunspell -a");
        assert_eq!(
            command_line(&s),
            "-T '^$' --prelude-lines 1 /usr/bin/hunspell -a"
        );
    }

    #[test]
    fn esc_closes_the_detail_pane_then_the_filter_then_quits() {
        let mut app = app_with(three());
        app.update(key(KeyCode::Enter));
        app.update(key(KeyCode::Esc));
        assert!(
            !app.quit && !app.detail_open,
            "the first Esc closes the pane"
        );
        app.update(key(KeyCode::Enter));
        app.update(key(KeyCode::Char('/')));
        app.update(key(KeyCode::Char('c')));
        app.update(key(KeyCode::Enter));
        app.update(key(KeyCode::Esc));
        assert!(!app.quit && !app.detail_open, "the pane closes first");
        assert_eq!(app.filter, "c", "the filter stays for the next Esc");
        app.update(key(KeyCode::Esc));
        assert!(!app.quit && app.filter.is_empty(), "then the filter goes");
        app.update(key(KeyCode::Esc));
        assert!(app.quit, "Esc quits from the plain table");
    }

    #[test]
    fn instances_and_log_need_a_selected_server() {
        let mut app = app_with(three());
        app.update(key(KeyCode::Char('/')));
        for c in "zzz".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        app.update(key(KeyCode::Enter));
        assert!(app.visible().is_empty());
        app.update(key(KeyCode::Char('i')));
        app.update(key(KeyCode::Char('l')));
        assert!(!app.instances_open && app.log.is_none());
    }

    #[test]
    fn sort_by_command_follows_the_name_the_table_shows() {
        let mut app = app_with(vec![
            server("aaa", "/a/zcat", "2026-11-25T10:00:00.000Z", 1),
            server("bbb", "/z/bcat", "2026-11-25T10:01:00.000Z", 1),
        ]);
        while app.sort != SortKey::Command {
            app.update(key(KeyCode::Char('s')));
        }
        assert_eq!(ids(&app), ["bbb", "aaa"]);
    }

    #[test]
    fn a_filter_that_hides_the_selection_selects_the_first_match() {
        let mut app = app_with(vec![
            server("aaa", "tag en", "2026-11-25T10:00:00.000Z", 1),
            server("bbb", "tag de", "2026-11-25T10:01:00.000Z", 1),
            server("ccc", "cat", "2026-11-25T10:02:00.000Z", 1),
        ]);
        app.update(key(KeyCode::Char('G')));
        app.update(key(KeyCode::Char('/')));
        for c in "tag".chars() {
            app.update(key(KeyCode::Char(c)));
        }
        assert_eq!(app.selected_row(), Some(0));
        assert_eq!(&app.selected.as_ref().unwrap()[..3], "aaa");
    }

    #[test]
    fn quit_keys() {
        for k in [
            KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE),
            KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE),
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
        ] {
            let mut app = app_with(three());
            app.update(Event::Key(k));
            assert!(app.quit, "{k:?}");
        }
    }

    #[test]
    fn help_closes_on_any_key_and_enter_toggles_details() {
        let mut app = app_with(three());
        app.update(key(KeyCode::Char('?')));
        assert_eq!(app.popup, Some(Popup::Help { legend: false }));
        app.update(key(KeyCode::Char('q')));
        assert_eq!(app.popup, None);
        assert!(!app.quit, "the key closed the help only");
        app.update(key(KeyCode::Enter));
        assert!(app.detail_open);
        app.update(key(KeyCode::Enter));
        assert!(!app.detail_open);
    }
}
