//! Reading server logs from their end, for `logs` and the monitor.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The last `n` lines of an open file and the length read up to.
pub fn tail(file: &mut File, n: usize) -> io::Result<(Vec<u8>, u64)> {
    let len = file.metadata()?.len();
    let mut start = len;
    let mut tail = Vec::new();
    // Read backwards in blocks until enough lines are in.
    while start > 0 && memchr::memchr_iter(b'\n', &tail).count() <= n {
        let block = start.min(64 * 1024);
        start -= block;
        let mut buf = vec![0u8; block as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail = buf;
    }
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let from = match n {
        0 => tail.len(),
        n => memchr::memrchr_iter(b'\n', body)
            .nth(n - 1)
            .map_or(0, |i| i + 1),
    };
    Ok((tail[from..].to_vec(), len))
}

/// The last `n` lines of the file at `path`, as text.
pub fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = File::open(path) else {
        return Vec::new();
    };
    match tail(&mut f, n) {
        Ok((bytes, _)) => String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_takes_the_last_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(last_lines(&p, 2), ["b", "c"]);
        assert_eq!(last_lines(&p, 9), ["a", "b", "c"]);
        assert!(last_lines(&p, 0).is_empty());
        std::fs::write(&p, "a\nb").unwrap();
        assert_eq!(last_lines(&p, 1), ["b"]);
    }
}
