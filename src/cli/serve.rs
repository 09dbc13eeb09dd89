//! `viasock serve`: a server in the foreground.

use std::io::Write;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::cli::{Cli, ServeArgs};
use crate::core::identity;
use crate::core::logrotate::RotatingFile;
use crate::core::logsink::Lossy;
use crate::core::paths::StateDir;
use crate::core::server::{self, ServerConfig};
use crate::core::{Fatal, status};

pub fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<i32> {
    let result = listen_and_serve(cli, args);
    if let Err(e) = &result
        && args.notify_ready
    {
        tell_failed(e);
    }
    result
}

fn listen_and_serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<i32> {
    let spec = args.tool.checked_spec()?;
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let dir = StateDir::new(&cli.state_dir(), &cwd);
    dir.ensure()
        .map_err(|e| Fatal::new(status::UNAVAILABLE, e.to_string()))?;
    let id =
        identity::compute(&spec, &cwd).map_err(|e| Fatal::new(e.exit_code(), e.to_string()))?;
    let log = spec.log.as_ref().map(|l| cwd.join(l));
    init_logging(log.as_deref())?;
    // A panic is a bug: its message goes to the log, where one looks.
    std::panic::set_hook(Box::new(|info| tracing::error!("panic: {info}")));
    let cfg = ServerConfig {
        input: spec.framing.input()?,
        output: spec.framing.output()?,
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
    let starter = match args.caller_on_stdin {
        true => Some(caller_on_stdin()?),
        false => None,
    };
    tokio::task::LocalSet::new().block_on(&runtime, async move {
        let listener = server::bind(&cfg.socket)
            .map_err(|e| Fatal::new(status::UNAVAILABLE, format!("{e:#}")))?;
        let starter = starter
            .map(tokio::net::UnixStream::from_std)
            .transpose()
            .context("cannot take the starting call's connection")?;
        server::run(cfg, listener, starter, move || {
            if notify {
                tell_ready();
            }
        })
        .await
    })?;
    Ok(0)
}

/// The connection of the call that started us, given as our stdin; stdin
/// becomes `/dev/null`, so that the connection ends when it is dropped.
fn caller_on_stdin() -> anyhow::Result<std::os::unix::net::UnixStream> {
    let fd = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)
        .context("cannot take the starting call's connection")?;
    let null = std::fs::File::open("/dev/null").context("cannot open /dev/null")?;
    rustix::stdio::dup2_stdin(&null).context("cannot replace stdin")?;
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// Tells the `run` that started us why we could not start: our stderr is
/// the log, which may be what cannot be written (a full disk).
fn tell_failed(e: &anyhow::Error) {
    let line = format!("failed: {e:#}").replace('\n', " ");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
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

/// A log file grows to this size before it is rotated...
const LOG_BYTES: u64 = 10 << 20;
/// ...and this many rotated files (`LOG.1` newest) are kept.
const LOG_FILES: usize = 3;

/// Server messages and the tool's stderr go, with timestamps, to the log
/// file if there is one (rotated by size), else to stderr.
/// `VIASOCK_LOG` (`debug`, `warn`, `viasock=trace`...: tracing's filter
/// syntax) sets which lines are written; `info` when unset. A value that
/// does not parse is said in the log, and `info` used.
fn init_logging(log: Option<&std::path::Path>) -> anyhow::Result<()> {
    let (filter, bad_filter) = match std::env::var("VIASOCK_LOG") {
        Err(_) => (EnvFilter::new("info"), None),
        Ok(v) => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new("info"), Some(format!("{v:?}: {e}"))),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .log_internal_errors(false);
    let stderr = || Lossy(std::io::stderr());
    let mut unwritable = None;
    let writer = match log.map(|p| (p, RotatingFile::open(p, LOG_BYTES, LOG_FILES))) {
        None => BoxMakeWriter::new(stderr),
        Some((_, Ok(file))) => BoxMakeWriter::new(std::sync::Mutex::new(Lossy(file))),
        Some((path, Err(e))) if e.raw_os_error() == Some(libc::ELOOP) => {
            anyhow::bail!("cannot open log {}: it is a symlink", path.display());
        }
        // Serving matters more than logging (a full or read-only disk):
        // go on, logging to stderr.
        Some((path, Err(e))) => {
            unwritable = Some(format!(
                "cannot write log {}: {e}; running without it",
                path.display()
            ));
            BoxMakeWriter::new(stderr)
        }
    };
    builder.with_writer(writer).init();
    if let Some(why) = bad_filter {
        tracing::warn!("VIASOCK_LOG {why}; logging at info");
    }
    if let Some(why) = unwritable {
        tracing::warn!("{why}");
    }
    Ok(())
}
