//! The identity watch: a server whose tool, a file it names or an
//! environment variable of its identity changed marks itself stale and
//! stops, so that nobody is answered by an outdated tool or model.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::core::identity;

use super::shared::{Mode, Shared};

/// How often a server checks that its tool and files are unchanged.
pub(super) const IDENTITY_CHECK: Duration = Duration::from_secs(2);

/// Marks the server stale, and stops it, once its identity changes.
pub(super) async fn watch_identity(shared: Arc<Shared>) {
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
