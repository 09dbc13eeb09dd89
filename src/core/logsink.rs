//! Where a server's log lines go: a writer that never fails. Serving
//! matters more than logging: when the log cannot be written (a full
//! disk, no inodes left), lines are dropped and counted, and the count
//! is shown in the state file, `ls` and `top`. A failing writer would
//! otherwise make the logging library report the failure on stderr, which
//! is the same full file, and panic there.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// Log lines that could not be written, since the server started.
static DROPPED: AtomicU64 = AtomicU64::new(0);

pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Wraps a writer so that its errors drop the line and count it.
#[derive(Debug)]
pub struct Lossy<W>(pub W);

impl<W: Write> Write for Lossy<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.write_all(buf).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails every time, as a full disk does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
    }

    #[test]
    fn a_failing_writer_drops_and_counts() {
        let before = dropped();
        let mut w = Lossy(Full);
        assert_eq!(w.write(b"line\n").unwrap(), 5);
        w.flush().unwrap();
        assert!(dropped() > before);
    }
}
