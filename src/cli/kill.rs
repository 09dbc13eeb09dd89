//! `viasock kill`: stop servers through their control request (graceful:
//! calls in flight finish, at most 10 s), and wait until they are gone.
//! A server that no longer listens (it is stopping) gets a signal instead,
//! but only once its pid is pinned and proven to be that server.

use std::os::fd::AsFd;
use std::time::Duration;

use crate::cli::{Cli, KillArgs, select};
use crate::core::state::{self, Found, Health};
use crate::core::status;

/// Longest wait for a stopped server to exit: its grace period and a bit.
const EXIT_WAIT: Duration = Duration::from_secs(15);

pub fn kill(cli: &Cli, args: &KillArgs) -> anyhow::Result<i32> {
    let found = select::discover(cli);
    let chosen = if args.all || args.stale {
        found
    } else {
        select::by_prefixes(&found, &args.ids)?
    };
    let mut failed = 0;
    for f in &chosen {
        let result = match f.health {
            Health::Dead => {
                state::clean_up(f);
                Ok(())
            }
            _ if args.stale => continue,
            Health::Remote => Err(anyhow::anyhow!(
                "runs on host {}; kill it there",
                f.state.host
            )),
            Health::Live => stop(f, args.force),
        };
        if let Err(e) = result {
            eprintln!("viasock: {}: {e:#}", f.state.short_id());
            failed += 1;
        }
    }
    Ok(if failed == 0 { 0 } else { status::FAILURE })
}

fn stop(f: &Found, force: bool) -> anyhow::Result<()> {
    // Pinned before anything is asked, so the wait below cannot be fooled
    // by a reused pid.
    let pidfd = pin(f);
    let command = if force { "kill --force" } else { "kill" };
    let asked = select::control(f, command).unwrap_or(None).is_some();
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

/// A pidfd for the server's process, if its pid is still that server.
fn pin(f: &Found) -> Option<std::os::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(f.state.server_pid as i32)?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    // Checked after the pidfd is open: from here the pid cannot be reused.
    (state::process_start_ticks(f.state.server_pid) == Some(f.state.server_start_ticks))
        .then_some(fd)
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
