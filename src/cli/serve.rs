//! `viasock serve`: a server in the foreground.

use std::io::Write;

use anyhow::Context;

use crate::cli::{Cli, ServeArgs};
use crate::core::identity;
use crate::core::paths::{StateDir, open_private_append};
use crate::core::server::{self, ServerConfig};
use crate::core::{Fatal, status};

pub fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<i32> {
    let spec = args.tool.spec()?;
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let dir = StateDir::new(&cli.dir, &cwd);
    dir.ensure()
        .map_err(|e| Fatal::new(status::UNAVAILABLE, e.to_string()))?;
    let skip = std::fs::canonicalize(dir.root()).ok();
    let id = identity::compute(&spec, &cwd, skip.as_deref())
        .map_err(|e| Fatal::new(e.exit_code(), e.to_string()))?;
    let log = spec.log.as_ref().map(|l| cwd.join(l));
    init_logging(log.as_deref())?;
    let cfg = ServerConfig {
        input: spec.input()?,
        output: spec.output()?,
        socket: args
            .socket
            .as_ref()
            .map_or_else(|| dir.socket(&id), |s| cwd.join(s)),
        spec,
        id,
        cwd,
        dir,
        log,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let notify = args.notify_ready;
    tokio::task::LocalSet::new().block_on(&runtime, async move {
        let listener = server::bind(&cfg.socket)
            .map_err(|e| Fatal::new(status::UNAVAILABLE, format!("{e:#}")))?;
        server::run(cfg, listener, move || {
            if notify {
                tell_ready();
            }
        })
        .await
    })?;
    Ok(0)
}

/// Tells the `run` that started us that we listen, then lets go of the
/// pipe so that it sees end of file too and no tool inherits it.
fn tell_ready() {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b"ready\n");
    let _ = out.flush();
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
}

/// Server messages and the tool's stderr go, with timestamps, to the log
/// file if there is one, else to stderr.
fn init_logging(log: Option<&std::path::Path>) -> anyhow::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false);
    match log {
        Some(path) => {
            let file = open_private_append(path)
                .with_context(|| format!("cannot open log {}", path.display()))?;
            builder.with_writer(std::sync::Mutex::new(file)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}
