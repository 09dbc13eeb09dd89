//! `viasock logs`: the end of a server's log, and with `-f` what follows,
//! across log rotation (as `tail -F`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::cli::{Cli, LogsArgs, select};
use crate::core::{Fatal, hangup, logfile, status};

/// How often a followed log is looked at.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub fn logs(cli: &Cli, args: &LogsArgs) -> anyhow::Result<i32> {
    let found = select::discover(cli)?;
    let chosen = select::by_prefixes(&found, std::slice::from_ref(&args.id))?;
    let log = &chosen[0].state.log;
    if log.as_os_str().is_empty() {
        return Err(Fatal::new(
            status::FAILURE,
            "this server logs to its terminal, not to a file",
        )
        .into());
    }
    let mut file = File::open(log).map_err(|e| {
        Fatal::new(
            status::FAILURE,
            format!("cannot read {}: {e}", log.display()),
        )
    })?;
    let mut out = io::stdout().lock();
    let mut pos = print_tail(&mut file, args.lines, &mut out)?;
    if !args.follow {
        return Ok(0);
    }
    let mut ino = file.metadata()?.ino();
    loop {
        pos = copy_from(&mut file, pos, &mut out)?;
        std::thread::sleep(FOLLOW_POLL);
        // Nobody reads any more (`| head -1` has exited, the terminal is
        // gone): end now, not at the next line the log gets.
        if hangup::hung_up(io::stdout()) {
            return Ok(0);
        }
        // Rotated (a new file at the path) or truncated: start over.
        match std::fs::metadata(log) {
            Ok(m) if m.ino() != ino => {
                pos = copy_from(&mut file, pos, &mut out)?;
                if let Ok(f) = File::open(log) {
                    file = f;
                    ino = m.ino();
                    pos = 0;
                }
            }
            Ok(m) if m.len() < pos => pos = 0,
            _ => {}
        }
    }
}

/// Prints the last `n` lines; returns the offset read up to.
fn print_tail(file: &mut File, n: usize, out: &mut impl Write) -> io::Result<u64> {
    let (bytes, len) = logfile::tail(file, n)?;
    write_or_quit(out, &bytes)?;
    Ok(len)
}

fn copy_from(file: &mut File, pos: u64, out: &mut impl Write) -> io::Result<u64> {
    file.seek(SeekFrom::Start(pos))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    write_or_quit(out, &buf)?;
    Ok(pos + buf.len() as u64)
}

/// Writes to stdout; a closed stdout (`| head`) ends the command quietly.
fn write_or_quit(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => r,
    }
}
