//! Server identity: the SHA-256 of everything that decides what a
//! tool's output is, so that a changed tool, model or option gets a fresh
//! server and an unchanged one finds the warm server.
//!
//! `run` computes it on every call to find the socket; a server recomputes it
//! every two seconds to notice that it went stale. It must stay cheap and
//! cost the same whatever the size of a model: one `stat` per argument. A
//! directory is stamped by its path and inode; what is beneath it is
//! guarded by the server, which watches it (`core::watch`).

use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::core::config::ToolSpec;
use crate::core::protocol;

/// A server id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Id([u8; 32]);

impl Id {
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The 12 hex digits shown to people.
    pub fn short(&self) -> String {
        self.hex()[..12].to_owned()
    }

    /// The 32 hex digits that name its files.
    pub fn file_stem(&self) -> String {
        self.hex()[..32].to_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}: command not found")]
    NotFound(String),
    #[error("{0}: permission denied")]
    NotExecutable(String),
    #[error("cannot read the working directory: {0}")]
    Cwd(std::io::Error),
}

impl IdentityError {
    /// The exit status, as a shell would give it.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::NotFound(_) => 127,
            Self::NotExecutable(_) => 126,
            Self::Cwd(_) => 1,
        }
    }
}

/// Finds the file `execvp` would run for `program`, with symlinks resolved.
pub fn resolve_program(program: &OsStr, cwd: &Path) -> Result<PathBuf, IdentityError> {
    find_program(program, cwd).map(|(path, _)| path)
}

/// [`resolve_program`], with the file's metadata.
fn find_program(program: &OsStr, cwd: &Path) -> Result<(PathBuf, Metadata), IdentityError> {
    let shown = || program.to_string_lossy().into_owned();
    let candidates: Vec<PathBuf> = if program.as_bytes().contains(&b'/') {
        vec![cwd.join(program)]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/bin:/usr/bin"));
        path.as_bytes()
            .split(|&b| b == b':')
            .map(|dir| match dir {
                b"" => cwd.join(program),
                dir => cwd.join(OsStr::from_bytes(dir)).join(program),
            })
            .collect()
    };
    let mut denied = false;
    for c in candidates {
        let Ok(meta) = fs::metadata(&c) else { continue };
        if !meta.is_file() {
            denied = true;
            continue;
        }
        if rustix::fs::access(&c, rustix::fs::Access::EXEC_OK).is_err() {
            denied = true;
            continue;
        }
        return fs::canonicalize(&c)
            .map(|path| (path, meta))
            .map_err(|_| IdentityError::NotFound(shown()));
    }
    Err(if denied {
        IdentityError::NotExecutable(shown())
    } else {
        IdentityError::NotFound(shown())
    })
}

/// Computes the id of `spec` run from `cwd`.
pub fn compute(spec: &ToolSpec, cwd: &Path) -> Result<Id, IdentityError> {
    let (program, meta) = find_program(&spec.program, cwd)?;
    let mut h = Hasher { sha: Sha256::new() };
    h.put(b"version", &protocol::VERSION.to_be_bytes());
    h.put(b"host", rustix::system::uname().nodename().to_bytes());
    h.put(b"cwd", cwd.as_os_str().as_bytes());
    // Found canonical, and looked at, already.
    h.put(b"program", program.as_os_str().as_bytes());
    h.put_meta(&meta);
    for arg in &spec.args {
        h.put(b"arg", arg.as_bytes());
        for (tag, path) in arg_paths(arg, cwd) {
            h.stamp(tag, &path);
        }
    }
    for w in &spec.watch {
        h.put(b"watch", w.as_os_str().as_bytes());
        if !h.stamp(b"watched", &cwd.join(w)) {
            h.put(b"missing", b"");
        }
    }
    for name in &spec.env {
        h.put(b"env", name.as_bytes());
        match std::env::var_os(name) {
            Some(v) => h.put(b"value", v.as_bytes()),
            None => h.put(b"unset", b""),
        }
    }
    let f = &spec.framing;
    h.put(b"-t", f.input_terminator.as_bytes());
    h.put(b"-T", f.output_terminator.as_bytes());
    h.put(b"-P", &(f.prelude as u64).to_be_bytes());
    h.put(b"--prelude-lines", &(f.prelude_lines as u64).to_be_bytes());
    h.put(b"-z", &[u8::from(f.null_data)]);
    let w = spec.process_timeout.map_or(0, |d| d.as_nanos() as u64);
    h.put(b"-w", &w.to_be_bytes());
    // Only when given, so that the ids of record tools stay as they were.
    if spec.fork {
        h.put(b"--fork", b"");
    }
    Ok(Id(h.sha.finalize().into()))
}

/// Every path the id of `spec` stamps, existing or not: the program, what
/// the arguments name, the `--watch` paths. What a server watches.
pub fn named_paths(spec: &ToolSpec, cwd: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = resolve_program(&spec.program, cwd).into_iter().collect();
    for arg in &spec.args {
        paths.extend(arg_paths(arg, cwd).map(|(_, p)| p));
    }
    paths.extend(spec.watch.iter().map(|w| cwd.join(w)));
    paths
}

/// The paths an argument may name: itself whole, and the value of
/// `--opt=value`.
fn arg_paths<'a>(
    arg: &'a OsStr,
    cwd: &'a Path,
) -> impl Iterator<Item = (&'static [u8], PathBuf)> + 'a {
    let bytes = arg.as_bytes();
    let whole = (!bytes.is_empty()).then(|| (&b"file"[..], cwd.join(arg)));
    let value = bytes
        .iter()
        .position(|&b| b == b'=')
        .map(|eq| &bytes[eq + 1..])
        .filter(|v| !v.is_empty())
        .map(|v| (&b"value-file"[..], cwd.join(OsStr::from_bytes(v))));
    whole.into_iter().chain(value)
}

struct Hasher {
    sha: Sha256,
}

/// A tagged, length-prefixed field, so no two inputs hash alike.
pub(crate) fn put(sha: &mut Sha256, tag: &[u8], data: &[u8]) {
    sha.update((tag.len() as u64).to_be_bytes());
    sha.update(tag);
    sha.update((data.len() as u64).to_be_bytes());
    sha.update(data);
}

/// Size, mtime and inode of a file. A directory counts by its inode
/// alone: its own size and mtime change when any entry comes or goes (the
/// state directory appearing in `.`), and what is beneath it is the
/// server's to watch.
pub(crate) fn put_meta(sha: &mut Sha256, meta: &Metadata) {
    if meta.is_dir() {
        put(sha, b"dir", &meta.ino().to_be_bytes());
        return;
    }
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&meta.size().to_be_bytes());
    let mtime = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
    b[8..24].copy_from_slice(&mtime.to_be_bytes());
    b[24..32].copy_from_slice(&meta.ino().to_be_bytes());
    put(sha, b"meta", &b);
}

impl Hasher {
    fn put(&mut self, tag: &[u8], data: &[u8]) {
        put(&mut self.sha, tag, data);
    }

    fn put_meta(&mut self, meta: &Metadata) {
        put_meta(&mut self.sha, meta);
    }

    /// Stamps an existing file or directory; false if there is none.
    fn stamp(&mut self, tag: &[u8], path: &Path) -> bool {
        let Ok(meta) = fs::metadata(path) else {
            return false;
        };
        let canon = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        self.put(tag, canon.as_os_str().as_bytes());
        self.put_meta(&meta);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(program: &str, args: &[&str]) -> ToolSpec {
        ToolSpec {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            framing: Default::default(),
            process_timeout: None,
            server_timeout: Some(Duration::from_secs(60)),
            instances: 1,
            interleave: false,
            fork: false,
            watch: vec![],
            env: vec![],
            log: None,
        }
    }

    #[test]
    fn path_lookup_finds_sh() {
        let p = resolve_program(OsStr::new("sh"), Path::new("/")).unwrap();
        assert!(p.is_absolute());
    }

    #[test]
    fn missing_program_is_127() {
        let e = resolve_program(OsStr::new("no-such-tool-xyz"), Path::new("/")).unwrap_err();
        assert_eq!(e.exit_code(), 127);
    }

    #[test]
    fn tuning_options_do_not_change_the_id() {
        let cwd = std::env::current_dir().unwrap();
        let a = spec("cat", &[]);
        let mut b = a.clone();
        b.instances = 4;
        b.server_timeout = None;
        b.interleave = true;
        assert_eq!(compute(&a, &cwd).unwrap(), compute(&b, &cwd).unwrap());
        b.framing.input_terminator = "^$".into();
        assert_ne!(compute(&a, &cwd).unwrap(), compute(&b, &cwd).unwrap());
        let mut c = a.clone();
        c.framing.null_data = true;
        assert_ne!(compute(&a, &cwd).unwrap(), compute(&c, &cwd).unwrap());
        c.framing.null_data = false;
        c.framing.prelude_lines = 1;
        assert_ne!(compute(&a, &cwd).unwrap(), compute(&c, &cwd).unwrap());
        let mut d = a.clone();
        d.fork = true;
        assert_ne!(compute(&a, &cwd).unwrap(), compute(&d, &cwd).unwrap());
    }

    #[test]
    fn a_directory_costs_one_stamp_whatever_is_beneath_it() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("model");
        fs::create_dir_all(model.join("sub")).unwrap();
        fs::write(model.join("sub/weights"), "1").unwrap();
        let s = spec("cat", &["--model=model"]);
        let before = compute(&s, d.path()).unwrap();
        // What is beneath is the server's to watch, and a state directory
        // appearing beside it changes nothing.
        fs::write(model.join("sub/weights"), "22").unwrap();
        fs::create_dir(model.join(".viasock")).unwrap();
        assert_eq!(before, compute(&s, d.path()).unwrap());
        // Another directory at the same path is another model.
        fs::rename(&model, d.path().join("old")).unwrap();
        fs::create_dir(&model).unwrap();
        assert_ne!(before, compute(&s, d.path()).unwrap());
    }

    #[test]
    fn named_paths_are_what_the_id_stamps() {
        let cwd = Path::new("/w");
        let mut s = spec("sh", &["-m", "models/en", "--dict=d.txt", ""]);
        s.watch = vec!["extra".into()];
        let paths = named_paths(&s, cwd);
        assert_eq!(paths[0], resolve_program(OsStr::new("sh"), cwd).unwrap());
        for p in [
            "/w/-m",
            "/w/models/en",
            "/w/--dict=d.txt",
            "/w/d.txt",
            "/w/extra",
        ] {
            assert!(paths.contains(&PathBuf::from(p)), "{p} in {paths:?}");
        }
        assert_eq!(paths.len(), 6, "{paths:?}");
    }
}
