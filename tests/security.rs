//! Security: private state directories and registry, private
//! files, peer checks, and no symlink ever followed.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::process::Command;
use std::time::Duration;

use common::{World, ok_stdout, wait_until};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn refused(out: &std::process::Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.starts_with("viasock: ") && err.contains(what), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn world_writable_or_symlinked_state_dir_is_refused() {
    let w = World::new();
    std::fs::create_dir(&w.state).unwrap();
    std::fs::set_permissions(&w.state, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused(
        &w.run(&["run", "cat"], b"x\n"),
        "writable by group or others",
    );

    let w = World::new();
    let elsewhere = w.work.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    symlink(&elsewhere, &w.state).unwrap();
    refused(&w.run(&["run", "cat"], b"x\n"), "is a symlink");
    assert!(
        std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "nothing was created through it"
    );
}

#[test]
fn state_dir_of_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to give a directory to another user");
        return;
    }
    let w = World::new();
    std::fs::create_dir(&w.state).unwrap();
    std::fs::set_permissions(&w.state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&w.state, Some(65534), Some(65534)).unwrap();
    refused(&w.run(&["run", "cat"], b"x\n"), "belongs to another user");
}

#[test]
fn files_are_private() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    for sub in ["", "sockets", "locks", "logs"] {
        assert_eq!(mode(&w.state.join(sub)), 0o700, "{sub}");
    }
    assert_eq!(mode(&w.sockets()[0]), 0o600, "socket");
    let state_file = w.sockets()[0].with_extension("json");
    assert!(wait_until(Duration::from_secs(5), || state_file.exists()));
    assert_eq!(mode(&state_file), 0o600, "state file");
    for e in std::fs::read_dir(w.state.join("logs")).unwrap().flatten() {
        assert_eq!(mode(&e.path()), 0o600, "{:?}", e.path());
    }
    for e in std::fs::read_dir(w.state.join("locks")).unwrap().flatten() {
        assert_eq!(mode(&e.path()), 0o600, "{:?}", e.path());
    }
    let registry = w.tmp.path().join("viasock");
    assert_eq!(mode(&registry), 0o700);
}

#[test]
fn planted_symlinks_are_not_followed() {
    let w = World::new();
    // Learn the file names of the command's server, then start afresh
    // with symlinks planted where its log and lock go.
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    let stem = w.sockets()[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(w.run(&["kill", "--all"], b"").status.success());
    let victim = w.work.join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let log = w.state.join("logs").join(format!("{stem}.log"));
    std::fs::remove_file(&log).unwrap();
    symlink(&victim, &log).unwrap();
    let out = w.run(&["run", "cat"], b"x\n");
    refused(&out, "cannot open log");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

    std::fs::remove_file(&log).unwrap();
    let lock = w.state.join("locks").join(format!("{stem}.lock"));
    let _ = std::fs::remove_file(&lock);
    symlink(&victim, &lock).unwrap();
    let out = w.run(&["run", "cat"], b"x\n");
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(w.server_pids().is_empty());
}

#[test]
fn registry_of_another_user_or_symlinked_is_refused() {
    let w = World::new();
    let registry = w.tmp.path().join("viasock");
    let target = w.tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    symlink(&target, &registry).unwrap();
    let out = w.cmd(&["ls"]).env_remove("VIASOCK_DIR").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("viasock: registry ") && err.contains("symlink"),
        "the registry is called the registry: {err}"
    );
    // A server still serves; it only cannot register.
    assert_eq!(ok_stdout(&w.run(&["run", "cat"], b"x\n")), "x\n");
    assert!(wait_until(Duration::from_secs(5), || w
        .logs()
        .contains("not in the registry")));
    assert!(std::fs::read_dir(&target).unwrap().next().is_none());
}

#[test]
fn peers_of_another_user_are_refused() {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv to connect as another user");
        return;
    }
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    // Open the way on the file system, as a careless admin might: only the
    // peer check stands between another user and the tool.
    for dir in [
        w.tmp.path().to_path_buf(),
        w.work.clone(),
        w.state.clone(),
        w.state.join("sockets"),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let socket = w.sockets()[0].clone();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            common::BIN,
            "client",
        ])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        wait_until(Duration::from_secs(5), || w
            .logs()
            .contains("refused a connection from another user")),
        "{}",
        w.logs()
    );
}
