//! What else stops a server by itself: idling out, its socket no longer
//! being its own, and signals. (Its identity changing: `identity_watch`.)

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use super::shared::{Mode, Shared};

/// How often a server checks that its socket is still its own.
pub(super) const SOCKET_CHECK: Duration = Duration::from_secs(1);

/// Stops the server after `-W` seconds without a client.
pub(super) async fn watch_idle(shared: Arc<Shared>) {
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

/// Stops the server, as stale, once its socket is no longer its own: the
/// state directory was removed (`rm -rf .viasock`, `git clean -fdx`) or
/// another server bound the same path. Nobody can reach it any more, and
/// a successor of the same id may already be serving.
pub(super) async fn watch_socket(shared: Arc<Shared>, (dev, ino): (u64, u64)) {
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
pub(super) async fn watch_signals(shared: Arc<Shared>) {
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
