//! What the monitor reacts to, and what it asks to be done.

use std::time::SystemTime;

use ratatui::crossterm::event::{KeyEvent, MouseEvent};

use crate::core::state::{Health, ServerState};

/// The one input of [`App::update`](crate::tui::app::App::update).
#[derive(Clone, Debug)]
pub enum Event {
    Key(KeyEvent),
    Mouse(MouseEvent),
    /// Fresh state of every server, read at `now`.
    Refresh(Snapshot),
    /// An action finished; the status line says how.
    Done(String),
    /// Stop: this signal arrived.
    Signal(i32),
}

/// A side effect `update` asks the event loop for; the result comes back
/// as [`Event::Done`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop the server once its calls in flight finish.
    Kill(String),
    /// Stop it without waiting for its calls.
    ForceKill(String),
    Restart(String),
    CleanDead,
}

/// The servers as read from their state files and `/proc`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub now: SystemTime,
    /// Why the servers could not be read (a refused registry).
    pub error: Option<String>,
    pub servers: Vec<Server>,
    /// Extra facts about the selected server, for the detail pane.
    pub detail: Option<Detail>,
    /// The end of the log the log view shows: its server's id and lines.
    pub log: Option<(String, Vec<String>)>,
}

#[derive(Clone, Debug)]
pub struct Server {
    pub state: ServerState,
    pub health: Health,
    /// Resident memory of its tool processes, bytes.
    pub tool_memory: u64,
    /// The percent of one core its tools used since the last refresh
    /// (`None` until they were seen twice).
    pub tool_cpu: Option<f64>,
}

#[derive(Clone, Debug, Default)]
pub struct Detail {
    pub id: String,
    /// What each tool instance uses, with whatever it started.
    pub tools: Vec<ToolUsage>,
    pub log_tail: Vec<String>,
}

/// What one tool instance uses: its process group, so the tool and what
/// it started (a shell script's children).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ToolUsage {
    pub pid: u32,
    /// Resident memory, bytes.
    pub rss: u64,
    /// The percent of one core used since the last refresh (`None` until
    /// seen twice).
    pub cpu: Option<f64>,
    /// Processes in its group: 1 for a tool that started nothing.
    pub processes: u32,
}
