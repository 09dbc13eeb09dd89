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
use crate::core::state::{self, Found, Health, ServerState};

/// Longest wait for a stopped server to exit: its grace period and a bit.
pub const EXIT_WAIT: Duration = Duration::from_secs(15);
/// The same for `--force`, before it resorts to SIGKILL.
const FORCE_WAIT: Duration = Duration::from_secs(5);
/// A live server answers a control request at once (before it acts on
/// it); one that takes longer is stuck (stopped, or wedged).
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// Longest wait for a live server's own account of itself; past it, its
/// state file stands (a stopped server must not hold `ls` up).
const STATE_WAIT: Duration = Duration::from_millis(250);

/// A server whose file is older than this is late (it writes every
/// second): it is not asked, since a stopped one would only pile up
/// connections it never takes.
const FRESH_FILE: Duration = Duration::from_secs(2);

/// Replaces the state of each live server of this host with the server's
/// account of this moment: its file is written a moment after a change,
/// so it may not count a call that has just returned. The servers are
/// asked all at once, with one deadline for all ([`STATE_WAIT`]); a server
/// that does not answer in time, or whose file is late, keeps what its
/// file says.
pub fn ask_live(found: &mut [Found]) {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut asked = 0;
    for (i, f) in found.iter().enumerate() {
        if f.health != Health::Live || state::heartbeat_age(&f.state) > FRESH_FILE {
            continue;
        }
        let (tx, socket, pid) = (tx.clone(), f.state.socket.clone(), f.state.server_pid);
        let spawned =
            std::thread::Builder::new().spawn(move || drop(tx.send((i, ask_state(&socket, pid)))));
        asked += usize::from(spawned.is_ok());
    }
    drop(tx);
    let deadline = std::time::Instant::now() + STATE_WAIT;
    for _ in 0..asked {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, Some(s))) => found[i].state = s,
            Ok((_, None)) => {}
            Err(_) => break,
        }
    }
}

/// The state of the server `pid` at `socket`, from itself.
fn ask_state(socket: &std::path::Path, pid: u32) -> Option<ServerState> {
    let mut stream = client::connect(socket, STATE_WAIT).ok()??;
    stream.set_read_timeout(Some(STATE_WAIT)).ok()?;
    stream.set_write_timeout(Some(STATE_WAIT)).ok()?;
    match client::handshake(&mut stream, Purpose::Control, &[], &[], STATE_WAIT).ok()? {
        // Only the server the file is of: a successor at the same socket
        // speaks for itself, and is found through its own file.
        Handshake::Welcome(p) if p == pid => {}
        _ => return None,
    }
    let answer = client::control(stream, "state").ok()?;
    if answer.status != 0 {
        return None;
    }
    serde_json::from_slice(&answer.output).ok()
}

/// Sends a control command. `Ok(Some(pid))` once the server accepted it;
/// `Ok(None)` if it no longer listens (it is stopping). An error if it
/// does not answer within [`ANSWER_WAIT`].
pub fn request(f: &Found, command: &str) -> anyhow::Result<Option<u32>> {
    let Some(mut stream) = client::connect(&f.state.socket, ANSWER_WAIT)? else {
        return Ok(None);
    };
    stream.set_read_timeout(Some(ANSWER_WAIT))?;
    stream.set_write_timeout(Some(ANSWER_WAIT))?;
    let pid = match client::handshake(&mut stream, Purpose::Control, &[], &[], ANSWER_WAIT)? {
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
    // Pinned before anything is asked, so the signals and the wait below
    // cannot reach a reused pid.
    let pidfd = pin(f);
    let command = if force { "kill --force" } else { "kill" };
    let answer = request(f, command);
    let Some(pidfd) = pidfd else {
        // Exited meanwhile; whatever it left is cleaned up.
        state::clean_up(f);
        return Ok(());
    };
    let term = rustix::process::Signal::TERM;
    match answer {
        Ok(Some(_)) => {}
        // It no longer listens: it is stopping already, finishing its
        // calls. Only `--force` hurries it (a second SIGTERM forces).
        Ok(None) if !force => {}
        Ok(None) => {
            rustix::process::pidfd_send_signal(&pidfd, term)?;
            rustix::process::pidfd_send_signal(&pidfd, term)?;
        }
        // It does not answer: a SIGTERM asks the same as `kill` (twice:
        // as `kill --force`).
        Err(_) => {
            rustix::process::pidfd_send_signal(&pidfd, term)?;
            if force {
                rustix::process::pidfd_send_signal(&pidfd, term)?;
            }
        }
    }
    // Forced, a server exits within a moment (it kills its tools at once).
    let limit = if force { FORCE_WAIT } else { EXIT_WAIT };
    match wait_exit(&pidfd, limit) {
        Err(_) if force => {
            // Stuck even for signals it handles (stopped, or wedged).
            rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL)?;
            wait_exit(&pidfd, FORCE_WAIT)?;
            state::clean_up(f);
            Ok(())
        }
        other => other,
    }
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
