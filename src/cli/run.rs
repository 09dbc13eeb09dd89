//! `viasock run`: the main job. Compute the command's id, reach (or start)
//! its server, stream stdin through it.

use std::path::Path;

use crate::cli::RunArgs;
use crate::core::autostart::{self, Connection, Target};
use crate::core::client;
use crate::core::fork;
use crate::core::identity;
use crate::core::paths::StateDir;
use crate::core::{Fatal, status};

/// `state_dir`: as `--dir` gave it, relative to the working directory.
pub fn run(state_dir: &Path, args: &RunArgs) -> anyhow::Result<i32> {
    let spec = args.tool.spec()?;
    let cwd = std::env::current_dir().map_err(|e| {
        Fatal::new(
            status::FAILURE,
            format!("cannot read the working directory: {e}"),
        )
    })?;
    let dir = StateDir::new(state_dir, &cwd);
    let id =
        identity::compute(&spec, &cwd).map_err(|e| Fatal::new(e.exit_code(), e.to_string()))?;
    let log = spec
        .log
        .as_ref()
        .map_or_else(|| dir.log(&id), |l| cwd.join(l));
    let target = Target {
        spec: &spec,
        tuning: args.tool.tuning(&cwd).encode(),
        dir: &dir,
        id,
        log,
    };
    if spec.fork {
        // The tool's child reads stdin itself: nothing of it is read here.
        let conn = autostart::connect_or_start(&target, args.no_spawn, &[])?;
        return finish_fork(conn, &target.log);
    }
    let opening = client::ready_input();
    let conn = autostart::connect_or_start(&target, args.no_spawn, &opening.frames)?;
    finish(
        conn,
        opening.input_done,
        Some(&target.log),
        spec.process_timeout,
    )
}

/// Streams stdio through a welcomed connection; prints the server's
/// message, if any, and returns the call's exit status. `patience`: `-w`.
pub fn finish(
    conn: Connection,
    input_done: bool,
    log: Option<&Path>,
    patience: Option<std::time::Duration>,
) -> anyhow::Result<i32> {
    let ending = client::stream_stdio(conn.stream, input_done, patience).map_err(|mut f| {
        if let Some(log) = log {
            f.message.push_str(&format!(" (see log {})", log.display()));
        }
        f
    })?;
    if let Some(m) = ending.message {
        eprintln!("viasock: {m}");
    }
    Ok(ending.status)
}

/// Hands stdio to a `--fork` server and returns the child's status.
fn finish_fork(conn: Connection, log: &Path) -> anyhow::Result<i32> {
    let ending = fork::client::call(conn.stream).map_err(|mut f| {
        f.message.push_str(&format!(" (see log {})", log.display()));
        f
    })?;
    if let Some(m) = ending.message {
        eprintln!("viasock: {m} (see log {})", log.display());
    }
    if let Some(signal) = ending.died_of {
        fork::client::end_by(signal);
    }
    Ok(ending.status)
}
