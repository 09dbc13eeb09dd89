//! `viasock start`: start (or find) the server for a command and return
//! once its tool runs, its prelude was read (`-P`), or a probe record was
//! answered (`--probe`), so that scripts can take the cold start early.

use crate::cli::{Cli, StartArgs};
use crate::core::autostart::{self, Target};
use crate::core::identity;
use crate::core::paths::StateDir;
use crate::core::{Fatal, client, fork, status};

pub fn start(cli: &Cli, args: &StartArgs) -> anyhow::Result<i32> {
    let spec = args.tool.checked_spec()?;
    let cwd = std::env::current_dir().map_err(|e| {
        Fatal::new(
            status::FAILURE,
            format!("cannot read the working directory: {e}"),
        )
    })?;
    let dir = StateDir::new(&cli.state_dir(), &cwd);
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
        log: log.clone(),
    };
    let conn = autostart::connect_or_start(&target, false, &[])?;
    if spec.fork {
        return start_fork(conn, args.probe.as_deref().unwrap_or_default(), &log);
    }
    // A call with no record returns once the tool runs (and its prelude is
    // read); with the probe, once that is answered. The server ends a last
    // line that has no line end (`\n`, or NUL under -z).
    let input = args.probe.as_deref().unwrap_or_default();
    let ending =
        client::call(conn.stream, input.as_bytes(), spec.process_timeout).map_err(|mut f| {
            f.message.push_str(&format!(" (see log {})", log.display()));
            f
        })?;
    if let Some(m) = ending.message {
        eprintln!("viasock: {m}");
    }
    Ok(ending.status)
}

/// A one-shot tool is ready once it has read: one call, with the probe
/// (or nothing) as its input and its output thrown away, returns after
/// that. Its status is the call's.
fn start_fork(
    conn: autostart::Connection,
    probe: &str,
    log: &std::path::Path,
) -> anyhow::Result<i32> {
    use std::os::fd::AsFd;
    let failed =
        |e: std::io::Error| Fatal::new(status::FAILURE, format!("cannot start the probe: {e}"));
    let (input, mut feed) = std::io::pipe().map_err(failed)?;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(failed)?;
    let probe = probe.as_bytes().to_vec();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut feed, &probe));
    let ending = fork::client::call_with(
        conn.stream,
        [input.as_fd(), null.as_fd(), rustix::stdio::stderr()],
    )
    .map_err(|mut f| {
        f.message.push_str(&format!(" (see log {})", log.display()));
        f
    })?;
    drop(input);
    let _ = feeder.join();
    if let Some(m) = ending.message {
        eprintln!("viasock: {m}");
    }
    Ok(ending.status)
}
