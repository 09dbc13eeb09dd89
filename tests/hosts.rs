//! Two hosts sharing one file system: each runs its own server for the
//! same command in the same directories, and never reuses, kills or cleans
//! up the other's. The second host is a UTS and PID namespace with a host
//! name of its own (`unshare`, which needs root, as CI runs); elsewhere the
//! test is skipped with the reason printed.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, World, finish, ok_stdout, wait_until};

/// A namespace with its own host name and pids, kept alive by a `sleep`
/// that is its first process.
struct OtherHost {
    holder: Child,
    /// The `sleep`'s pid as this host sees it.
    pid: u32,
}

impl OtherHost {
    fn new(name: &str) -> Option<Self> {
        if !common::running_as_root() {
            eprintln!("skipped: a second host (unshare) needs root");
            return None;
        }
        let holder = Command::new("unshare")
            .args(["--uts", "--pid", "--fork", "--mount-proc", "sh", "-c"])
            .arg(format!("hostname {name} && exec sleep 600"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(holder) = holder else {
            eprintln!("skipped: unshare cannot be run here");
            return None;
        };
        let mut host = Self { holder, pid: 0 };
        let unshare = host.holder.id();
        let found = wait_until(Duration::from_secs(5), || {
            host.pid = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
                .ok()
                .and_then(|c| c.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            host.pid != 0 && host.hostname().as_deref() == Some(name)
        });
        if !found {
            eprintln!("skipped: no namespace of its own could be made here");
            return None;
        }
        Some(host)
    }

    fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.pid.to_string(),
            "--uts",
            "--pid",
            "--mount",
            "--",
        ]);
        c
    }

    fn hostname(&self) -> Option<String> {
        let out = self.enter().arg("hostname").output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// `viasock ARGS` on this host, in the world's directories.
    fn run(&self, w: &World, args: &[&str], input: &[u8]) -> std::process::Output {
        let child = self
            .enter()
            .arg(BIN)
            .args(args)
            .current_dir(&w.work)
            .env("VIASOCK_DIR", &w.state)
            .env("XDG_RUNTIME_DIR", w.tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter");
        finish(child, input)
    }
}

impl Drop for OtherHost {
    /// The namespace ends with its first process, and everything in it.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn servers(json: &[u8]) -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(json)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn hosts_sharing_a_file_system_keep_to_their_own_servers() {
    let w = World::new();
    let Some(b) = OtherHost::new("viasock-host-b") else {
        return;
    };
    let here = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    assert_eq!(ok_stdout(&w.run(&["run", "-W", "0", "cat"], b"a\n")), "a\n");
    // The same command in the same directories: a server of its own.
    assert_eq!(
        ok_stdout(&b.run(&w, &["run", "-W", "0", "cat"], b"b\n")),
        "b\n"
    );
    let all = servers(&w.run(&["ls", "--json"], b"").stdout);
    let mut hosts: Vec<&str> = all.iter().filter_map(|s| s["host"].as_str()).collect();
    hosts.sort();
    let mut want = vec![here.as_str(), "viasock-host-b"];
    want.sort();
    assert_eq!(hosts, want, "{all:?}");

    // Each sees the other's as remote.
    let table = ok_stdout(&w.run(&["ls"], b""));
    assert!(table.contains("@viasock-host-b"), "{table}");
    let table = ok_stdout(&b.run(&w, &["ls"], b""));
    assert!(table.contains(&format!("@{here}")), "{table}");

    // Neither kills nor cleans up the other's.
    let _ = w.run(&["kill", "--stale"], b"");
    let _ = w.run(&["kill", "--all"], b"");
    let out = b.run(&w, &["run", "--no-spawn", "-W", "0", "cat"], b"still\n");
    assert_eq!(ok_stdout(&out), "still\n", "host b's server is gone");
    assert_eq!(servers(&b.run(&w, &["ls", "--json"], b"").stdout).len(), 1);
    let out = b.run(&w, &["kill", "--all"], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(servers(&w.run(&["ls", "--json"], b"").stdout).is_empty());
}
