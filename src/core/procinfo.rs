//! Facts about processes, from `/proc`.

use std::collections::HashMap;
use std::fs;

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

/// Resident memory of a process in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resident memory by process group, in bytes: a tool runs in a group of
/// its own, so its entry counts the tool and whatever it started. One
/// pass over `/proc` serves every server on the screen.
pub fn rss_by_group() -> HashMap<u32, u64> {
    let mut groups = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return groups;
    };
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        if let (Some(g), Some(rss)) = (process_group(pid), rss_bytes(pid)) {
            *groups.entry(g).or_insert(0) += rss;
        }
    }
    groups
}

fn process_group(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_visible() {
        let me = std::process::id();
        assert!(start_ticks(me).is_some());
        assert!(start_ticks(u32::MAX - 1).is_none());
        assert!(rss_bytes(me).unwrap() > 0);
        let pgid = process_group(me).unwrap();
        assert!(rss_by_group()[&pgid] >= rss_bytes(me).unwrap());
    }
}
