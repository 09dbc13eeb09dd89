//! The state directory: where sockets, locks and logs live, who
//! may own it, and how to reach a socket whose path is too long for
//! `sun_path`.
//!
//! Layout: `<dir>/sockets/<id32>.sock`, `<dir>/locks/<id32>.lock`,
//! `<dir>/logs/<id32>.log`. Every directory is 0700 and must belong to the
//! user; a symlink or a directory others can write to is refused.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::core::identity::Id;

/// Which of viasock's directories a path error is about, named as the
/// user knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// `.viasock` or `--dir`: sockets, locks, logs.
    State,
    /// The per-user registry of servers, under `$XDG_RUNTIME_DIR`.
    Registry,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::State => "state directory",
            Self::Registry => "registry",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{0} {1} is a symlink; refusing to use it")]
    Symlink(Place, PathBuf),
    #[error("{0} {1} belongs to another user; refusing to use it")]
    Owner(Place, PathBuf),
    #[error("{0} {1} is writable by group or others; refusing to use it (chmod 700 it)")]
    Writable(Place, PathBuf),
    #[error("{0} is not a directory")]
    NotDir(PathBuf),
    #[error("cannot create {place} {path}: {source}")]
    Create {
        place: Place,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot read {place} {path}: {source}")]
    Read {
        place: Place,
        path: PathBuf,
        source: io::Error,
    },
}

/// A state directory; nothing touches the file system until asked.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

const SUBDIRS: [&str; 3] = ["sockets", "locks", "logs"];

impl StateDir {
    /// `root` is made absolute against `cwd`, so that a server started
    /// from elsewhere, or a log message, names the same place.
    pub fn new(root: &Path, cwd: &Path) -> Self {
        Self {
            root: cwd.join(root),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn sockets(&self) -> PathBuf {
        self.root.join("sockets")
    }

    pub fn socket(&self, id: &Id) -> PathBuf {
        self.sockets().join(format!("{}.sock", id.file_stem()))
    }

    pub fn lock(&self, id: &Id) -> PathBuf {
        self.root
            .join("locks")
            .join(format!("{}.lock", id.file_stem()))
    }

    pub fn log(&self, id: &Id) -> PathBuf {
        self.root
            .join("logs")
            .join(format!("{}.log", id.file_stem()))
    }

    /// Creates the directory tree (0700) and checks every part of it.
    pub fn ensure(&self) -> Result<(), PathError> {
        let create = |path: &Path| match DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(source) => Err(PathError::Create {
                place: Place::State,
                path: path.to_owned(),
                source,
            }),
        };
        if let Some(parent) = self.root.parent() {
            fs::create_dir_all(parent).map_err(|source| PathError::Create {
                place: Place::State,
                path: parent.to_owned(),
                source,
            })?;
        }
        create(&self.root)?;
        check_dir(&self.root, Place::State)?;
        for sub in SUBDIRS {
            let p = self.root.join(sub);
            create(&p)?;
            check_dir(&p, Place::State)?;
        }
        Ok(())
    }

    /// The checks of the warm path: the directory and its `sockets/`, if
    /// they exist. Returns false if they do not (no server can be there).
    pub fn verify(&self) -> Result<bool, PathError> {
        for p in [self.root.clone(), self.sockets()] {
            // Missing is told apart at the one look: another first call may
            // be creating it right now.
            match fs::symlink_metadata(&p) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(_) => return Err(PathError::NotDir(p)),
                Ok(meta) => check_meta(&p, &meta, Place::State)?,
            }
        }
        Ok(true)
    }
}

/// Refuses a path that is a symlink, not a directory, not the user's, or
/// writable by group or others.
pub fn check_dir(path: &Path, place: Place) -> Result<(), PathError> {
    let meta = fs::symlink_metadata(path).map_err(|_| PathError::NotDir(path.to_owned()))?;
    check_meta(path, &meta, place)
}

fn check_meta(path: &Path, meta: &fs::Metadata, place: Place) -> Result<(), PathError> {
    if meta.file_type().is_symlink() {
        return Err(PathError::Symlink(place, path.to_owned()));
    }
    if !meta.is_dir() {
        return Err(PathError::NotDir(path.to_owned()));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(PathError::Owner(place, path.to_owned()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(PathError::Writable(place, path.to_owned()));
    }
    Ok(())
}

/// Opens (creating, 0600) a file for appending, never through a symlink.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// `sun_path` holds 108 bytes with its NUL.
const SUN_PATH_MAX: usize = 107;

/// A path to bind or connect a Unix socket at. A path too long for
/// `sun_path` is reached through `/proc/self/fd/N/NAME`, where N is an open
/// descriptor of the socket's directory, kept open as long as this lives.
pub struct SocketPath {
    path: PathBuf,
    _dir: Option<OwnedFd>,
}

impl SocketPath {
    pub fn new(path: &Path) -> io::Result<Self> {
        if path.as_os_str().len() <= SUN_PATH_MAX {
            return Ok(Self {
                path: path.to_owned(),
                _dir: None,
            });
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad socket path",
            ));
        };
        let fd: OwnedFd = rustix::fs::open(
            dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let short = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name);
        Ok(Self {
            path: short,
            _dir: Some(fd),
        })
    }

    pub fn as_path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ensure_makes_private_dirs() {
        let t = tempfile::tempdir().unwrap();
        let d = StateDir::new(Path::new("a/.viasock"), t.path());
        d.ensure().unwrap();
        for sub in SUBDIRS {
            let m = fs::metadata(d.root().join(sub)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o700);
        }
        assert!(d.verify().unwrap());
    }

    #[test]
    fn group_writable_or_symlinked_dir_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = StateDir::new(Path::new("s"), t.path());
        d.ensure().unwrap();
        fs::set_permissions(d.root(), fs::Permissions::from_mode(0o770)).unwrap();
        assert!(matches!(d.ensure(), Err(PathError::Writable(..))));
        std::os::unix::fs::symlink(d.root(), t.path().join("link")).unwrap();
        let l = StateDir::new(Path::new("link"), t.path());
        assert!(matches!(l.verify(), Err(PathError::Symlink(..))));
    }

    #[test]
    fn missing_dir_verifies_as_absent() {
        let t = tempfile::tempdir().unwrap();
        let d = StateDir::new(Path::new("nothing"), t.path());
        assert!(!d.verify().unwrap());
    }
}
