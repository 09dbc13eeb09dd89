//! `viasock kill`: stop servers of the state directory through their
//! control request, and wait until they are gone.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Cli, KillArgs};
use crate::core::client::{self, Handshake};
use crate::core::paths::StateDir;
use crate::core::protocol::Purpose;
use crate::core::{Fatal, status};

/// Longest wait for a stopped server to exit: its grace period and a bit.
const EXIT_WAIT: Duration = Duration::from_secs(15);

pub fn kill(cli: &Cli, args: &KillArgs) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let dir = StateDir::new(&cli.dir, &cwd);
    let sockets = list_sockets(&dir);
    let chosen: Vec<&(String, PathBuf)> = if args.all {
        sockets.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for prefix in &args.ids {
            let matches: Vec<_> = sockets
                .iter()
                .filter(|(id, _)| id.starts_with(prefix.as_str()))
                .collect();
            match matches[..] {
                [one] => chosen.push(one),
                [] => {
                    return Err(
                        Fatal::new(status::FAILURE, format!("no server with id {prefix}")).into(),
                    );
                }
                _ => {
                    let ids: Vec<_> = matches.iter().map(|(id, _)| &id[..12]).collect();
                    return Err(Fatal::new(
                        status::FAILURE,
                        format!("id {prefix} is ambiguous: {}", ids.join(", ")),
                    )
                    .into());
                }
            }
        }
        chosen
    };
    let command = if args.force { "kill --force" } else { "kill" };
    let mut failed = 0;
    for (id, socket) in chosen {
        if let Err(e) = stop(socket, command) {
            eprintln!("viasock: {}: {e}", &id[..12]);
            failed += 1;
        }
    }
    Ok(if failed == 0 { 0 } else { status::FAILURE })
}

/// Sockets in the state directory, by id.
fn list_sockets(dir: &StateDir) -> Vec<(String, PathBuf)> {
    let Ok(read) = std::fs::read_dir(dir.sockets()) else {
        return Vec::new();
    };
    let mut out: Vec<_> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_suffix(".sock")?.to_owned();
            Some((id, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn stop(socket: &std::path::Path, command: &str) -> anyhow::Result<()> {
    let Some(mut stream) = client::connect(socket)? else {
        // Nobody listens: what is left is a dead server's socket.
        let _ = std::fs::remove_file(socket);
        return Ok(());
    };
    let pid = match client::handshake(&mut stream, Purpose::Control)? {
        Handshake::Welcome(pid) => pid,
        Handshake::Closed => return Ok(()),
    };
    let pidfd = rustix::process::Pid::from_raw(pid as i32)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let ending = client::control(stream, command)?;
    if ending.status != 0 {
        anyhow::bail!("{}", ending.message.unwrap_or_else(|| "refused".into()));
    }
    if let Some(fd) = pidfd {
        wait_exit(&fd, EXIT_WAIT)?;
    }
    Ok(())
}

/// Waits until the process behind `pidfd` has exited.
fn wait_exit(pidfd: &impl std::os::fd::AsFd, limit: Duration) -> anyhow::Result<()> {
    let ts = rustix::time::Timespec {
        tv_sec: limit.as_secs() as i64,
        tv_nsec: 0,
    };
    let mut fds = [rustix::event::PollFd::new(
        pidfd,
        rustix::event::PollFlags::IN,
    )];
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(0) => anyhow::bail!("still running after {limit:?}"),
        _ => Ok(()),
    }
}
