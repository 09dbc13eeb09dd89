//! Facts about processes, from `/proc`.

use std::collections::HashMap;
use std::fs;

/// Tells whether a process, or one it started, waits for input on a pipe:
/// whether one of their threads is blocked reading it (`/proc/PID/task/TID/syscall` names the
/// system call a blocked thread is in, with its arguments). Asked once per
/// call, so it is kept cheap: the thread last seen reading is looked at
/// first, through files kept open; its `stat` is read first, since asking
/// a running thread for its system call makes the kernel wait for it to
/// stop; and a descriptor is checked to be the pipe once.
pub struct PipeReader {
    pid: u32,
    /// `pipe:[INODE]`, as `/proc/PID/fd/N` names the pipe.
    pipe: String,
    /// The thread last seen reading the pipe.
    reader: Option<Thread>,
    /// The descriptor (of a process) last seen to be the pipe.
    fd: Option<(u32, u32)>,
}

/// Processes looked at below the tool: a wrapper script's children, and
/// theirs.
const DESCENDANTS: usize = 16;

/// The `stat` and `syscall` files of one thread, of process `pid`.
struct Thread {
    pid: u32,
    stat: fs::File,
    syscall: fs::File,
}

impl Thread {
    fn open(pid: u32, dir: &std::path::Path) -> Option<Self> {
        Some(Self {
            pid,
            stat: fs::File::open(dir.join("stat")).ok()?,
            syscall: fs::File::open(dir.join("syscall")).ok()?,
        })
    }

    /// The descriptor the thread is blocked reading, if it is.
    fn blocked_read(&self) -> Option<u32> {
        use std::os::unix::fs::FileExt;
        let reads = [
            libc::SYS_read,
            libc::SYS_readv,
            libc::SYS_pread64,
            libc::SYS_preadv,
        ];
        let mut buf = [0u8; 512];
        let n = self.stat.read_at(&mut buf, 0).ok()?;
        let stat = &buf[..n];
        // The state follows the command name, which may hold ") ".
        let state = stat
            .iter()
            .rposition(|&b| b == b')')
            .and_then(|i| stat.get(i + 2))?;
        if *state != b'S' {
            return None;
        }
        let n = self.syscall.read_at(&mut buf, 0).ok()?;
        let line = std::str::from_utf8(&buf[..n]).ok()?;
        let mut fields = line.split_whitespace();
        let nr: i64 = fields.next()?.parse().ok()?;
        let fd = u32::from_str_radix(fields.next()?.strip_prefix("0x")?, 16).ok()?;
        reads.contains(&nr).then_some(fd)
    }
}

impl PipeReader {
    pub fn new(pid: u32, pipe_inode: u64) -> Self {
        Self {
            pid,
            pipe: format!("pipe:[{pipe_inode}]"),
            reader: None,
            fd: None,
        }
    }

    /// Whether some thread is blocked reading the pipe now; `None` when
    /// that cannot be told (no `/proc`, no permission).
    pub fn waits(&mut self) -> Option<bool> {
        if let Some(t) = &self.reader
            && let Some(fd) = t.blocked_read()
            && self.is_pipe(t.pid, fd)
        {
            return Some(true);
        }
        self.reader = None;
        let mut processes = vec![self.pid];
        let mut readable = false;
        let mut next = 0;
        while let Some(&pid) = processes.get(next) {
            next += 1;
            let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let dir = task.path();
                if processes.len() < DESCENDANTS
                    && let Ok(children) = fs::read_to_string(dir.join("children"))
                {
                    processes.extend(
                        children
                            .split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
                let Some(t) = Thread::open(pid, &dir) else {
                    continue;
                };
                readable = true;
                if let Some(fd) = t.blocked_read()
                    && self.is_pipe(pid, fd)
                {
                    self.reader = Some(t);
                    return Some(true);
                }
            }
        }
        readable.then_some(false)
    }

    fn is_pipe(&mut self, pid: u32, fd: u32) -> bool {
        if self.fd == Some((pid, fd)) {
            return true;
        }
        let yes = fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .is_ok_and(|l| l.as_os_str() == self.pipe.as_str());
        if yes {
            self.fd = Some((pid, fd));
        }
        yes
    }
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`,
/// field 22), or `None` if there is no such (live) process.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// What the processes of a group use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Resident memory, bytes.
    pub rss: u64,
    /// CPU time used so far (user and system), in seconds × 1000.
    pub cpu_ms: u64,
    /// How many processes the group has.
    pub processes: u32,
}

/// Usage by process group: a tool runs in a group of its own, so its
/// entry counts the tool and whatever it started. One pass over `/proc`
/// (one read of each process's `stat`) serves every server on the screen.
pub fn usage_by_group() -> HashMap<u32, Usage> {
    let mut groups: HashMap<u32, Usage> = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return groups;
    };
    let page = rustix::param::page_size() as u64;
    let tick_ms = 1000 / rustix::param::clock_ticks_per_second().max(1);
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's `)`: state is field 3, so pgrp (5) is at
        // 2, utime (14) at 11, stime (15) at 12, rss (24, pages) at 21.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        if let (Some(g), Some(user), Some(system), Some(rss)) = (num(2), num(11), num(12), num(21))
        {
            let u = groups.entry(g as u32).or_default();
            u.rss += rss * page;
            u.cpu_ms += (user + system) * tick_ms;
            u.processes += 1;
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_visible() {
        let me = std::process::id();
        assert!(start_ticks(me).is_some());
        assert!(start_ticks(u32::MAX - 1).is_none());
        let pgid = rustix::process::getpgrp().as_raw_pid() as u32;
        let mine = usage_by_group()[&pgid];
        assert!(mine.rss > 0 && mine.processes >= 1, "{mine:?}");
        // This test process has run some code by now.
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        assert!(usage_by_group()[&pgid].cpu_ms > 0);
    }

    #[test]
    fn a_process_blocked_reading_its_stdin_pipe_is_seen() {
        use std::os::unix::fs::MetadataExt;
        use std::process::{Command, Stdio};
        let spawn = |prog: &str, arg: &str| {
            let mut c = Command::new(prog)
                .arg(arg)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let ino = std::fs::File::from(std::os::fd::OwnedFd::from(c.stdin.take().unwrap()));
            let pipe = ino.metadata().unwrap().ino();
            (c, ino, pipe)
        };
        let (mut cat, _keep, pipe) = spawn("cat", "-");
        let mut watch = PipeReader::new(cat.id(), pipe);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while watch.waits() != Some(true) {
            assert!(std::time::Instant::now() < end, "cat never seen reading");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Again, through the thread and descriptor it remembers.
        assert_eq!(watch.waits(), Some(true));
        let (mut sleeper, _keep2, pipe2) = spawn("sleep", "5");
        assert_eq!(PipeReader::new(sleeper.id(), pipe2).waits(), Some(false));
        for c in [&mut cat, &mut sleeper] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
