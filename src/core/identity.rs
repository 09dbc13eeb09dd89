//! Server identity (SPEC 2): the SHA-256 of everything that decides what a
//! tool's output is, so that a changed tool, model or option gets a fresh
//! server and an unchanged one finds the warm server.
//!
//! `run` computes it on every call to find the socket; a server recomputes it
//! every two seconds to notice that it went stale. It must stay cheap: one
//! `stat` per argument, plus a bounded walk of directories named on the
//! command line.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::core::config::ToolSpec;
use crate::core::protocol;

/// Most directory entries one identity walks; beyond it the rest of the tree
/// is not looked at (the README says so).
pub const WALK_LIMIT: usize = 10_000;

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
    /// The exit status of SPEC 6, as a shell would give it.
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
        return fs::canonicalize(&c).map_err(|_| IdentityError::NotFound(shown()));
    }
    Err(if denied {
        IdentityError::NotExecutable(shown())
    } else {
        IdentityError::NotFound(shown())
    })
}

/// Computes the id of `spec` run from `cwd`. Walks skip `skip` (the state
/// directory, whose sockets and logs change all the time).
pub fn compute(spec: &ToolSpec, cwd: &Path, skip: Option<&Path>) -> Result<Id, IdentityError> {
    let program = resolve_program(&spec.program, cwd)?;
    let mut h = Hasher {
        sha: Sha256::new(),
        budget: WALK_LIMIT,
        skip,
        walked: HashSet::new(),
    };
    h.put(b"version", &protocol::VERSION.to_be_bytes());
    h.put(b"host", rustix::system::uname().nodename().to_bytes());
    h.put(b"cwd", cwd.as_os_str().as_bytes());
    h.stamp(b"program", &program);
    for arg in &spec.args {
        h.put(b"arg", arg.as_bytes());
        h.stamp_arg(arg, cwd);
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
    Ok(Id(h.sha.finalize().into()))
}

struct Hasher<'a> {
    sha: Sha256,
    budget: usize,
    skip: Option<&'a Path>,
    /// Directories walked so far (device, inode), so that symlink loops end.
    walked: HashSet<(u64, u64)>,
}

impl Hasher<'_> {
    /// A tagged, length-prefixed field, so no two inputs hash alike.
    fn put(&mut self, tag: &[u8], data: &[u8]) {
        self.sha.update((tag.len() as u64).to_be_bytes());
        self.sha.update(tag);
        self.sha.update((data.len() as u64).to_be_bytes());
        self.sha.update(data);
    }

    /// Size, mtime and inode of a file. A directory's own size and mtime
    /// only change when entries come and go, which the walk sees by name;
    /// they are left out so that a file written next to a model (or the
    /// state directory appearing in `.`) does not change the id.
    fn put_meta(&mut self, meta: &Metadata) {
        if meta.is_dir() {
            self.put(b"dir", &meta.ino().to_be_bytes());
            return;
        }
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&meta.size().to_be_bytes());
        let mtime = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
        b[8..24].copy_from_slice(&mtime.to_be_bytes());
        b[24..32].copy_from_slice(&meta.ino().to_be_bytes());
        self.put(b"meta", &b);
    }

    /// An argument names a file either whole or as the value of `--opt=value`.
    fn stamp_arg(&mut self, arg: &OsStr, cwd: &Path) {
        let bytes = arg.as_bytes();
        if !bytes.is_empty() {
            self.stamp(b"file", &cwd.join(arg));
        }
        if let Some(eq) = bytes.iter().position(|&b| b == b'=') {
            let value = &bytes[eq + 1..];
            if !value.is_empty() {
                self.stamp(b"value-file", &cwd.join(OsStr::from_bytes(value)));
            }
        }
    }

    /// Stamps an existing file or directory tree; false if there is none.
    fn stamp(&mut self, tag: &[u8], path: &Path) -> bool {
        let Ok(meta) = fs::metadata(path) else {
            return false;
        };
        let canon = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        self.put(tag, canon.as_os_str().as_bytes());
        self.put_meta(&meta);
        if meta.is_dir() && self.walked.insert((meta.dev(), meta.ino())) {
            self.walk(&canon, Path::new(""));
        }
        true
    }

    /// Every entry beneath `root`, in name order, until the budget runs
    /// out. Symlinks count as their target; a linked directory is walked
    /// once (`models/current -> v3` is seen, a loop is not followed).
    fn walk(&mut self, root: &Path, rel: &Path) {
        let dir = root.join(rel);
        let Ok(read) = fs::read_dir(&dir) else {
            self.put(b"unreadable", rel.as_os_str().as_bytes());
            return;
        };
        let mut entries: Vec<_> = read.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if self.budget == 0 {
                self.put(b"truncated", b"");
                return;
            }
            let rel = rel.join(e.file_name());
            if self.skip.is_some_and(|s| s == root.join(&rel)) {
                continue;
            }
            self.budget -= 1;
            self.put(b"entry", rel.as_os_str().as_bytes());
            let Ok(lmeta) = e.metadata() else { continue };
            let meta = if lmeta.file_type().is_symlink() {
                match fs::metadata(root.join(&rel)) {
                    Ok(target) => target,
                    Err(_) => continue,
                }
            } else {
                lmeta
            };
            self.put_meta(&meta);
            if meta.is_dir() && self.walked.insert((meta.dev(), meta.ino())) {
                self.walk(root, &rel);
            }
        }
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
        assert_eq!(
            compute(&a, &cwd, None).unwrap(),
            compute(&b, &cwd, None).unwrap()
        );
        b.framing.input_terminator = "^$".into();
        assert_ne!(
            compute(&a, &cwd, None).unwrap(),
            compute(&b, &cwd, None).unwrap()
        );
        let mut c = a.clone();
        c.framing.null_data = true;
        assert_ne!(
            compute(&a, &cwd, None).unwrap(),
            compute(&c, &cwd, None).unwrap()
        );
        c.framing.null_data = false;
        c.framing.prelude_lines = 1;
        assert_ne!(
            compute(&a, &cwd, None).unwrap(),
            compute(&c, &cwd, None).unwrap()
        );
    }

    #[test]
    fn a_file_inside_an_argument_directory_counts() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("model");
        fs::create_dir_all(model.join("sub")).unwrap();
        fs::write(model.join("sub/weights"), "1").unwrap();
        let s = spec("cat", &["--model=model"]);
        let before = compute(&s, d.path(), None).unwrap();
        assert_eq!(before, compute(&s, d.path(), None).unwrap());
        fs::write(model.join("sub/weights"), "22").unwrap();
        assert_ne!(before, compute(&s, d.path(), None).unwrap());
    }

    #[test]
    fn linked_directory_inside_a_model_counts_and_loops_end() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("store/v3")).unwrap();
        fs::create_dir_all(d.path().join("model")).unwrap();
        fs::write(d.path().join("store/v3/weights"), "1").unwrap();
        std::os::unix::fs::symlink("../store/v3", d.path().join("model/current")).unwrap();
        std::os::unix::fs::symlink("../../model", d.path().join("store/v3/loop")).unwrap();
        let s = spec("cat", &["model"]);
        let before = compute(&s, d.path(), None).unwrap();
        fs::write(d.path().join("store/v3/weights"), "22").unwrap();
        assert_ne!(before, compute(&s, d.path(), None).unwrap());
    }

    #[test]
    fn skipped_directory_is_not_walked() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join(".viasock");
        fs::create_dir(&state).unwrap();
        let s = spec("cat", &["."]);
        let canon = fs::canonicalize(&state).unwrap();
        let before = compute(&s, d.path(), Some(&canon)).unwrap();
        fs::write(state.join("noise"), "x").unwrap();
        assert_eq!(before, compute(&s, d.path(), Some(&canon)).unwrap());
    }
}
