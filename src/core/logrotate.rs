//! A server log that rotates by size: once it grows past its limit it is
//! renamed `LOG.1` (the one before becomes `LOG.2`, and so on; the oldest
//! beyond the number kept is overwritten) and a fresh `LOG` is begun.
//! `logs` and `top` read `LOG` from its end.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::core::paths::open_private_append;

#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    /// Bytes in `file`, as far as this writer knows.
    size: u64,
    limit: u64,
    /// Rotated files kept: `LOG.1` to `LOG.keep`.
    keep: usize,
}

impl RotatingFile {
    /// Opens (or creates, 0600, never through a symlink) the log at
    /// `path`, to be rotated past `limit` bytes with `keep` old files.
    pub fn open(path: &Path, limit: u64, keep: usize) -> io::Result<Self> {
        let file = open_private_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            limit,
            keep,
        })
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..self.keep).rev() {
            match std::fs::rename(self.numbered(n), self.numbered(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.keep > 0 {
            std::fs::rename(&self.path, self.numbered(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = open_private_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    /// Writes all of `buf` (a log line), then rotates if the file has
    /// grown past its limit. A rotation that fails (a full disk) leaves the
    /// line written and is tried again at the next one.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        if self.size > self.limit {
            let _ = self.rotate();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_past_its_limit_is_rotated_and_the_oldest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, "old\n").unwrap();
        let mut f = RotatingFile::open(&log, 10, 2).unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).ok();
        // 4 bytes there already: 8 does not pass the limit, 12 does.
        f.write_all(b"one\n").unwrap();
        assert_eq!(read("server.log").as_deref(), Some("old\none\n"));
        f.write_all(b"two\n").unwrap();
        assert_eq!(read("server.log.1").as_deref(), Some("old\none\ntwo\n"));
        assert_eq!(read("server.log").as_deref(), Some(""));
        for line in ["three-----\n", "four------\n"] {
            f.write_all(line.as_bytes()).unwrap();
        }
        assert_eq!(read("server.log.1").as_deref(), Some("four------\n"));
        assert_eq!(read("server.log.2").as_deref(), Some("three-----\n"));
        assert_eq!(read("server.log.3"), None, "two kept");
        f.write_all(b"five\n").unwrap();
        assert_eq!(read("server.log").as_deref(), Some("five\n"));
    }

    #[test]
    fn a_symlinked_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &log).unwrap();
        let e = RotatingFile::open(&log, 10, 2).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }
}
