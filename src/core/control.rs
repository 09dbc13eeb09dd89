//! Acting on a running server from outside: the control requests of `kill`,
//! `restart` and the monitor, and waiting for a server to go.
//!
//! A server is asked through its socket. One that no longer listens (it is
//! stopping) gets a signal instead, but only once its pid is pinned with a
//! pidfd and proven, by its start time, to be that server: a reused pid is
//! never signalled.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use crate::core::client::{self, Handshake};
use crate::core::procinfo;
use crate::core::protocol::Purpose;
use crate::core::state::{self, Found, Health};

/// Longest wait for a stopped server to exit: its grace period and a bit.
pub const EXIT_WAIT: Duration = Duration::from_secs(15);

/// Sends a control command. `Ok(Some(pid))` once the server accepted it;
/// `Ok(None)` if it no longer listens (it is stopping).
pub fn request(f: &Found, command: &str) -> anyhow::Result<Option<u32>> {
    let Some(mut stream) = client::connect(&f.state.socket)? else {
        return Ok(None);
    };
    let pid = match client::handshake(&mut stream, Purpose::Control, &[])? {
        Handshake::Welcome(pid) => pid,
        Handshake::Closed => return Ok(None),
    };
    let ending = client::control(stream, command)?;
    if ending.status != 0 {
        anyhow::bail!("{}", ending.message.unwrap_or_else(|| "refused".into()));
    }
    Ok(Some(pid))
}

/// Stops a server and waits (at most [`EXIT_WAIT`]) until it is gone: calls
/// in flight finish first unless `force`. A dead server's leftovers are
/// removed instead.
pub fn stop(f: &Found, force: bool) -> anyhow::Result<()> {
    match f.health {
        Health::Dead => {
            state::clean_up(f);
            return Ok(());
        }
        Health::Remote => anyhow::bail!("it runs on host {}; stop it there", f.state.host),
        Health::Live => {}
    }
    // Pinned before anything is asked, so the wait below cannot be fooled
    // by a reused pid.
    let pidfd = pin(f);
    let command = if force { "kill --force" } else { "kill" };
    let asked = request(f, command).unwrap_or(None).is_some();
    let Some(pidfd) = pidfd else {
        // Exited meanwhile; whatever it left is cleaned up.
        state::clean_up(f);
        return Ok(());
    };
    if !asked {
        // It no longer listens: it is stopping already. A signal hurries
        // it (a second SIGTERM forces).
        let term = rustix::process::Signal::TERM;
        rustix::process::pidfd_send_signal(&pidfd, term)?;
        if force {
            rustix::process::pidfd_send_signal(&pidfd, term)?;
        }
    }
    wait_exit(&pidfd, EXIT_WAIT)
}

/// Replaces a server's tool instances with fresh ones.
pub fn restart(f: &Found) -> anyhow::Result<()> {
    match f.health {
        Health::Live => match request(f, "restart")? {
            Some(_) => Ok(()),
            None => anyhow::bail!("it is stopping"),
        },
        Health::Dead => anyhow::bail!("it is dead (viasock kill --stale cleans up)"),
        Health::Remote => anyhow::bail!("it runs on host {}", f.state.host),
    }
}

/// A pidfd for the server's process, if its pid is still that server.
fn pin(f: &Found) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(f.state.server_pid as i32)?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    // Checked after the pidfd is open: from here the pid cannot be reused.
    (procinfo::start_ticks(f.state.server_pid) == Some(f.state.server_start_ticks)).then_some(fd)
}

/// Waits until the process behind `pidfd` has exited.
fn wait_exit(pidfd: &impl AsFd, limit: Duration) -> anyhow::Result<()> {
    let ts = rustix::time::Timespec {
        tv_sec: limit.as_secs() as i64,
        tv_nsec: 0,
    };
    let mut fds = [rustix::event::PollFd::new(
        pidfd,
        rustix::event::PollFlags::IN,
    )];
    loop {
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => anyhow::bail!("still running after {limit:?}"),
            Err(rustix::io::Errno::INTR) => continue,
            _ => return Ok(()),
        }
    }
}
