//! What every part of a server shares: its configuration, the mode it
//! is in (running, draining, forced), and the counters its watches read.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::core::config::ToolSpec;
use crate::core::identity::Id;
use crate::core::paths::StateDir;
use crate::core::records::Terminator;
use crate::core::watch::ModelWatch;

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
pub(super) enum Mode {
    Running,
    Draining,
    Forced,
}

pub(super) struct Shared {
    pub(super) cfg: ServerConfig,
    pub(super) started: SystemTime,
    /// The identity changed: the server drains as `stale`.
    pub(super) stale: AtomicBool,
    pub(super) active: AtomicUsize,
    pub(super) last_activity: Mutex<Instant>,
    pub(super) left: Notify,
    pub(super) mode: watch::Sender<Mode>,
    /// Notes on calls' tuning options already logged.
    pub(super) noted: Mutex<std::collections::HashSet<String>>,
    /// The files and trees the command names, watched since before its
    /// tool started.
    pub(super) model: Mutex<ModelWatch>,
    /// Device and inode of the socket this server bound: what it removes
    /// is its own, never a successor's.
    pub(super) socket_id: (u64, u64),
}

impl Shared {
    /// Moves towards stopping; never back.
    pub(super) fn stop(&self, mode: Mode, why: &str) {
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

    /// Whether this server must not take a new call: it is stale, or
    /// something it watches has changed (then it becomes stale now and
    /// leaves its socket, so that the caller, turned away without a
    /// Welcome, reaches a fresh server when it tries again).
    pub(super) fn outdated(&self) -> bool {
        if self.stale.load(Ordering::SeqCst) {
            self.withdraw();
            return true;
        }
        let changed = self
            .model
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .changed();
        let Some(what) = changed else {
            return false;
        };
        self.stale.store(true, Ordering::SeqCst);
        self.withdraw();
        self.stop(Mode::Draining, &format!("stale: {what} changed"));
        true
    }

    /// Removes the socket, if it is still this server's: no new caller
    /// can reach it.
    pub(super) fn withdraw(&self) {
        let ours =
            std::fs::metadata(&self.cfg.socket).is_ok_and(|m| (m.dev(), m.ino()) == self.socket_id);
        if ours {
            let _ = std::fs::remove_file(&self.cfg.socket);
        }
    }

    pub(super) fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    pub(super) fn log_hint(&self) -> String {
        match &self.cfg.log {
            Some(l) => format!(" (see log {})", l.display()),
            None => String::new(),
        }
    }
}
