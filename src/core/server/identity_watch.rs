//! The identity watch: a server whose tool, a file it names, something
//! beneath a directory it names or an environment variable of its
//! identity changed marks itself stale and stops, so that nobody is
//! answered by an outdated tool or model.
//!
//! Three ways, from fastest: every call's Hello is checked against the
//! inotify events that have arrived ([`Shared::outdated`]); a task reacts
//! to events as they come; and every two seconds the id is computed again
//! and what inotify cannot see is walked again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::core::identity;
use crate::core::watch::{self, ModelWatch, Unwatched};

use super::shared::{Mode, ServerConfig, Shared};

/// How often a server checks that its tool and files are unchanged.
pub(super) const IDENTITY_CHECK: Duration = Duration::from_secs(2);

/// Starts watching what the command names, the state directory and the
/// log left out.
pub(super) fn watch_model(cfg: &ServerConfig) -> (ModelWatch, Unwatched) {
    let skip: Vec<_> = [Some(cfg.dir.root().to_owned()), cfg.log.clone()]
        .into_iter()
        .flatten()
        .filter_map(|p| std::fs::canonicalize(cfg.cwd.join(p)).ok())
        .collect();
    let (model, unwatched, notes) =
        watch::start(&identity::named_paths(&cfg.spec, &cfg.cwd), &skip);
    for note in notes {
        tracing::warn!("{note}");
    }
    (model, unwatched)
}

/// Marks the server stale as soon as an inotify event says that
/// something it watches changed, without waiting for the next call.
pub(super) async fn react_to_changes(shared: Arc<Shared>) {
    let fd = {
        let model = shared.model.lock().unwrap_or_else(|p| p.into_inner());
        model.fd().and_then(|fd| fd.try_clone().ok())
    };
    let Some(fd) = fd.and_then(crate::core::asyncfd::readable) else {
        return;
    };
    loop {
        let Ok(mut ready) = fd.readable().await else {
            return;
        };
        // `outdated` reads every event that has arrived.
        ready.clear_ready();
        if shared.outdated() {
            return;
        }
    }
}

/// Marks the server stale, and stops it, once its identity changes or a
/// tree inotify cannot fully see differs.
pub(super) async fn watch_identity(shared: Arc<Shared>, unwatched: Unwatched) {
    let unwatched = Arc::new(unwatched);
    let mut tick = tokio::time::interval(IDENTITY_CHECK);
    tick.tick().await;
    loop {
        tick.tick().await;
        let s = shared.clone();
        let u = unwatched.clone();
        let current = tokio::task::spawn_blocking(move || {
            identity::compute(&s.cfg.spec, &s.cfg.cwd).ok() == Some(s.cfg.id) && !u.changed()
        })
        .await
        .unwrap_or(false);
        if !current {
            shared.stale.store(true, Ordering::SeqCst);
            shared.withdraw();
            shared.stop(
                Mode::Draining,
                "stale: the tool, a file it names or its environment changed",
            );
            return;
        }
    }
}
