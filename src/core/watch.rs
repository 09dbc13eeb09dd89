//! Is what a server loaded still current? The files and directory trees
//! a command names are watched with inotify from before its tool starts,
//! so that a change made on this host is seen before the next call is
//! welcomed; what inotify cannot see is walked again every two seconds.
//!
//! The id a call computes stamps a directory by its path and inode only,
//! which costs the same for ten files as for a hundred thousand; what is
//! beneath it is this module's to guard. The server asks
//! [`ModelWatch::changed`] (one non-blocking read) before each Welcome, and
//! its identity check asks [`Unwatched::changed`] every two seconds.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use sha2::{Digest, Sha256};

use crate::core::identity;

/// Most entries a server watches beneath the directories its command
/// names; the rest is not watched (the log says so).
pub const WATCH_LIMIT: usize = 1_000_000;

/// Most entries one re-walk of what cannot be watched looks at, in name
/// order; beyond it changes are not seen (the README says so).
pub const WALK_LIMIT: usize = 10_000;

/// Most events one look reads (skipped ones: the state directory's).
const EVENTS_PER_LOOK: usize = 4096;

/// What changes a directory's contents, or a file's.
const DIR_EVENTS: WatchFlags = WatchFlags::MODIFY
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::CREATE)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF);
const FILE_EVENTS: WatchFlags = WatchFlags::MODIFY
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF);

/// File systems whose files other hosts change without an inotify event
/// here (`statfs` magic numbers): their trees are also re-walked.
const SHARED_FILE_SYSTEMS: &[(u64, &str)] = &[
    (0x6969, "NFS"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x517B, "SMB"),
    (0x6573_5546, "FUSE"),
    (0x0102_1997, "9P"),
    (0x00C3_6400, "Ceph"),
    (0x0BD0_0BD0, "Lustre"),
    (0x5346_414F, "AFS"),
    (0x6B41_4653, "AFS"),
    (0x0116_1970, "GFS2"),
    (0x7461_636F, "OCFS2"),
    (0x4750_4653, "GPFS"),
];

/// The inotify half: watches set on every directory of the trees and on
/// the named files, read without waiting.
#[derive(Debug)]
pub struct ModelWatch {
    inotify: Option<OwnedFd>,
    /// The directory of each directory watch, to name what changed and to
    /// tell the skipped names in it.
    dirs: HashMap<i32, PathBuf>,
    /// Files watched on their own: the named ones, and those beneath a
    /// tree that are reached through a symlink or have other hard links
    /// (a write through another path gives their directory no event).
    files: HashMap<i32, PathBuf>,
    skip: Vec<PathBuf>,
    /// Found while watching, for the re-walked half: subtrees on a shared
    /// file system, and each symlink followed with where it led (a link
    /// outside the trees can be re-pointed without an event here).
    shared: Vec<PathBuf>,
    links: Vec<(PathBuf, Option<PathBuf>)>,
}

/// The re-walked half: the trees inotify cannot fully see, with the stamp
/// of what was there when the server started.
#[derive(Debug)]
pub struct Unwatched {
    trees: Vec<PathBuf>,
    skip: Vec<PathBuf>,
    stamp: [u8; 32],
    links: Vec<(PathBuf, Option<PathBuf>)>,
}

/// Watches `paths` (the files and directories a command names; those that
/// do not exist are left out), skipping `skip` (the state directory, the
/// log) wherever it appears. Returns both halves and what the log should
/// say about what cannot be watched.
pub fn start(paths: &[PathBuf], skip: &[PathBuf]) -> (ModelWatch, Unwatched, Vec<String>) {
    let mut notes = Vec::new();
    let inotify = match inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK) {
        Ok(fd) => Some(fd),
        Err(e) => {
            notes.push(format!(
                "cannot watch the files of this command ({e}; see fs.inotify.max_user_instances): \
                 a change is seen within 2 s, not before the next call"
            ));
            None
        }
    };
    let mut w = ModelWatch {
        inotify,
        dirs: HashMap::new(),
        files: HashMap::new(),
        skip: skip.to_vec(),
        shared: Vec::new(),
        links: Vec::new(),
    };
    let mut unwatched = Vec::new();
    let mut seen = HashSet::new();
    let mut budget = WATCH_LIMIT;
    for path in paths {
        let Ok(meta) = fs::metadata(path) else {
            continue;
        };
        let path = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        if w.skip.contains(&path) {
            continue;
        }
        // Devices and pipes are not models (and /dev/null changes all
        // the time).
        if meta.is_file() && !w.watch_file(&path) {
            unwatched.push(path);
            continue;
        }
        if !meta.is_dir() {
            continue;
        }
        if let Some(fs) = shared_file_system(&path) {
            notes.push(format!(
                "{} is on {fs}: a change made on another host is seen within 2 s",
                path.display()
            ));
            unwatched.push(path.clone());
        }
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        match w.watch_tree(&path, &mut seen, &mut budget) {
            Ok(()) => {}
            Err(why) => {
                notes.push(format!(
                    "cannot watch all of {} ({why}): a change beneath it is seen within 2 s, \
                     not before the next call",
                    path.display()
                ));
                if !unwatched.contains(&path) {
                    unwatched.push(path);
                }
            }
        }
    }
    for tree in std::mem::take(&mut w.shared) {
        notes.push(format!(
            "{} is on a shared file system: a change made on another host is seen within 2 s",
            tree.display()
        ));
        unwatched.push(tree);
    }
    let mut u = Unwatched::new(unwatched, skip);
    u.links = std::mem::take(&mut w.links);
    (w, u, notes)
}

impl ModelWatch {
    /// Whether anything watched changed since the server started: the
    /// events that have arrived are read, without waiting. Some names
    /// what changed. A write that has returned has queued its event, so a
    /// call that connects after it is never welcomed by this server.
    pub fn changed(&mut self) -> Option<String> {
        let fd = self.inotify.as_ref()?;
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(fd.as_fd(), &mut buf);
        // The first change found is enough. Bounded: a directory written
        // as fast as this reads would keep it reading for ever; what is
        // left is read next time.
        for _ in 0..EVENTS_PER_LOOK {
            let event = match reader.next() {
                Ok(e) => e,
                Err(rustix::io::Errno::INTR) => continue,
                // WOULDBLOCK: nothing more has arrived.
                Err(_) => return None,
            };
            if event.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                return Some("many files (the event queue overflowed)".to_owned());
            }
            let name = event
                .file_name()
                .map(|n| OsStr::from_bytes(n.to_bytes()).to_owned());
            let path = match (self.dirs.get(&event.wd()), &name) {
                (Some(dir), Some(name)) => dir.join(name),
                (Some(dir), None) => dir.clone(),
                (None, _) => match self.files.get(&event.wd()) {
                    Some(f) => f.clone(),
                    None => continue,
                },
            };
            if self.skip.iter().any(|s| path.starts_with(s)) {
                continue;
            }
            return Some(path.display().to_string());
        }
        None
    }

    /// The inotify descriptor, for a task that reacts to events as they
    /// come (None if inotify could not be had).
    pub fn fd(&self) -> Option<&OwnedFd> {
        self.inotify.as_ref()
    }

    fn add(&self, path: &Path, events: WatchFlags) -> Result<i32, rustix::io::Errno> {
        let fd = self.inotify.as_ref().ok_or(rustix::io::Errno::NOSYS)?;
        inotify::add_watch(fd, path, events)
    }

    fn watch_file(&mut self, path: &Path) -> bool {
        match self.add(path, FILE_EVENTS) {
            Ok(wd) => {
                self.files.insert(wd, path.to_owned());
                true
            }
            Err(_) => false,
        }
    }

    /// Watches `dir` and everything beneath it, each directory before it
    /// is read, so that an entry made while this runs is either read or
    /// reported. Symlinked directories count as their target and are
    /// watched once (`models/current -> v3` is followed, a loop is not).
    fn watch_tree(
        &mut self,
        dir: &Path,
        seen: &mut HashSet<(u64, u64)>,
        budget: &mut usize,
    ) -> Result<(), String> {
        let wd = self.add(dir, DIR_EVENTS).map_err(|e| match e {
            rustix::io::Errno::NOSPC => {
                "the inotify watch limit is reached; see fs.inotify.max_user_watches".to_owned()
            }
            e => e.to_string(),
        })?;
        self.dirs.insert(wd, dir.to_owned());
        let here = fs::metadata(dir).map_or(0, |m| m.dev());
        let read = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut result = Ok(());
        for entry in read.flatten() {
            let path = entry.path();
            if self.skip.contains(&path) {
                continue;
            }
            if *budget == 0 {
                return Err(format!("more than {WATCH_LIMIT} entries"));
            }
            *budget -= 1;
            let Ok(lmeta) = entry.metadata() else {
                continue;
            };
            let linked = lmeta.file_type().is_symlink();
            if linked {
                // Dangling ones too: their target may appear.
                self.links
                    .push((path.clone(), fs::canonicalize(&path).ok()));
            }
            let meta = if linked {
                match fs::metadata(&path) {
                    Ok(m) => m,
                    Err(_) => continue,
                }
            } else {
                lmeta
            };
            if meta.is_dir() {
                let mounted = meta.dev() != here;
                let virtual_fs = mounted && kernel_file_system(&path);
                if mounted && !virtual_fs && shared_file_system(&path).is_some() {
                    self.shared.push(path.clone());
                }
                if !virtual_fs && seen.insert((meta.dev(), meta.ino())) {
                    let target = if linked {
                        fs::canonicalize(&path).unwrap_or(path)
                    } else {
                        path
                    };
                    if let Err(e) = self.watch_tree(&target, seen, budget) {
                        result = Err(e);
                    }
                }
            } else if meta.is_file() && (linked || meta.nlink() > 1) && !self.watch_file(&path) {
                result = Err(format!("cannot watch {}", path.display()));
            }
        }
        result
    }
}

impl Unwatched {
    /// Stamps `trees` as they are now.
    pub fn new(trees: Vec<PathBuf>, skip: &[PathBuf]) -> Self {
        let mut u = Self {
            trees,
            skip: skip.to_vec(),
            stamp: [0; 32],
            links: Vec::new(),
        };
        u.stamp = u.walk();
        u
    }

    /// Whether a tree inotify cannot fully see differs from what it was
    /// when the server started. A walk: run it off the server's thread.
    pub fn changed(&self) -> bool {
        let relinked = self
            .links
            .iter()
            .any(|(link, target)| fs::canonicalize(link).ok() != *target);
        relinked || (!self.trees.is_empty() && self.walk() != self.stamp)
    }

    fn walk(&self) -> [u8; 32] {
        let mut h = TreeHasher {
            sha: Sha256::new(),
            budget: WALK_LIMIT,
            skip: &self.skip,
            walked: HashSet::new(),
        };
        for tree in &self.trees {
            h.put(b"tree", tree.as_os_str().as_bytes());
            match fs::metadata(tree) {
                Ok(meta) => {
                    h.put_meta(&meta);
                    if meta.is_dir() && h.walked.insert((meta.dev(), meta.ino())) {
                        h.walk(tree, Path::new(""));
                    }
                }
                Err(_) => h.put(b"missing", b""),
            }
        }
        h.sha.finalize().into()
    }
}

/// The file system `path` is on, if other hosts may change it.
fn shared_file_system(path: &Path) -> Option<&'static str> {
    let st = rustix::fs::statfs(path).ok()?;
    let magic = st.f_type as u64 & 0xFFFF_FFFF;
    SHARED_FILE_SYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

/// Whether `path` is on a file system of the kernel's own (/proc, /sys,
/// /dev): not a model, and no end to it.
fn kernel_file_system(path: &Path) -> bool {
    const KERNEL: &[u64] = &[
        0x9FA0,      // proc
        0x6265_6572, // sysfs
        0x1CD1,      // devpts
        0x2762_3FAC, // cgroup
        0x6367_7270, // cgroup2
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
        0x7365_6375, // securityfs
        0xCAFE_4A11, // bpf
    ];
    rustix::fs::statfs(path).is_ok_and(|st| KERNEL.contains(&(st.f_type as u64 & 0xFFFF_FFFF)))
}

/// A bounded walk that hashes every entry's relative path, size, mtime
/// and inode, in name order.
struct TreeHasher<'a> {
    sha: Sha256,
    budget: usize,
    skip: &'a [PathBuf],
    /// Directories walked so far (device, inode), so that symlink loops end.
    walked: HashSet<(u64, u64)>,
}

impl TreeHasher<'_> {
    fn put(&mut self, tag: &[u8], data: &[u8]) {
        identity::put(&mut self.sha, tag, data);
    }

    fn put_meta(&mut self, meta: &fs::Metadata) {
        identity::put_meta(&mut self.sha, meta);
    }

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
            if self.skip.contains(&root.join(&rel)) {
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

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(d.path()).unwrap().join("model");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/weights"), "1").unwrap();
        (d, root)
    }

    #[test]
    fn a_write_deep_in_a_tree_is_an_event_and_the_state_directory_is_not() {
        let (_d, root) = tree();
        let state = root.join(".viasock");
        fs::create_dir(&state).unwrap();
        let (mut w, unwatched, notes) =
            start(std::slice::from_ref(&root), std::slice::from_ref(&state));
        assert!(notes.is_empty(), "{notes:?}");
        assert!(!unwatched.changed());
        fs::write(state.join("sockets"), "x").unwrap();
        fs::remove_dir_all(&state).unwrap();
        assert_eq!(w.changed(), None);
        fs::write(root.join("a/b/weights"), "2").unwrap();
        let what = w.changed().unwrap();
        assert!(what.ends_with("a/b/weights"), "{what}");
    }

    #[test]
    fn the_rewalk_sees_a_change_and_ends_in_a_symlink_loop() {
        let (_d, root) = tree();
        std::os::unix::fs::symlink("..", root.join("a/b/up")).unwrap();
        let u = Unwatched::new(vec![root.clone()], &[]);
        assert!(!u.changed());
        fs::write(root.join("a/b/weights"), "22").unwrap();
        assert!(u.changed());
        assert!(!Unwatched::new(vec![], &[]).changed(), "nothing to walk");
    }

    #[test]
    fn a_device_named_by_a_command_is_not_watched() {
        let (mut w, _, _) = start(&[PathBuf::from("/dev/null")], &[]);
        fs::write("/dev/null", "x").unwrap();
        assert_eq!(w.changed(), None);
    }
}
