//! The preload library, built with this binary (the `preload` crate) and
//! written out where a tool's dynamic loader can open it.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const LIBRARY: &[u8] = include_bytes!(env!("VIASOCK_PRELOAD_LIB"));

/// Writes the library into `dir` (the state directory's `lib/`) unless it
/// is there already, and returns its path. A file per build: servers of
/// two versions never share one. The loader splits `LD_PRELOAD` at
/// colons and spaces, so a directory whose path holds either gives way
/// to `fallback` (the per-user registry).
pub fn install(dir: &Path, fallback: Option<&Path>) -> io::Result<PathBuf> {
    let usable = |p: &Path| {
        !p.as_os_str()
            .as_encoded_bytes()
            .iter()
            .any(|&b| b == b':' || b == b' ')
    };
    let dir = match fallback {
        Some(f) if !usable(dir) => f.to_owned(),
        _ => dir.to_owned(),
    };
    if !usable(&dir) {
        return Err(io::Error::other(format!(
            "{} holds a colon or a space, which LD_PRELOAD cannot name",
            dir.display()
        )));
    }
    let digest = Sha256::digest(LIBRARY);
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("viasock-preload-{name}.so"));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == LIBRARY.len() as u64) {
        return Ok(path);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    // Whole or not at all: a loader never maps a half-written file.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(LIBRARY)?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_a_shared_object() {
        assert!(LIBRARY.starts_with(b"\x7fELF"));
    }

    #[test]
    fn a_directory_with_a_space_gives_way_to_the_fallback() {
        let t = tempfile::tempdir().unwrap();
        let spaced = t.path().join("a b");
        let fallback = t.path().join("plain");
        let p = install(&spaced, Some(&fallback)).unwrap();
        assert!(p.starts_with(&fallback), "{}", p.display());
        assert_eq!(std::fs::read(&p).unwrap(), LIBRARY);
        assert_eq!(install(&spaced, Some(&fallback)).unwrap(), p);
        assert!(install(&spaced, None).is_err());
    }
}
