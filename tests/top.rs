//! `viasock top` end to end, in a real terminal: tmux runs it, keys go in
//! with `send-keys`, the screen comes out with `capture-pane`.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{BIN, World, ok_stdout, process_alive, wait_until};

/// A private tmux server, killed with everything in it when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Self {
        let probe = Command::new("tmux").arg("-V").output();
        assert!(
            probe.is_ok_and(|o| o.status.success()),
            "this test needs tmux (apt-get install tmux)"
        );
        Self {
            socket: format!("viasock-test-{}-{name}", std::process::id()),
        }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        assert!(self.cmd(&["send-keys", "-t", "top", keys]).status.success());
    }

    /// Waits until the screen shows `text`.
    #[track_caller]
    fn expect(&self, text: &str) {
        let shown = wait_until(Duration::from_secs(10), || self.screen().contains(text));
        assert!(
            shown,
            "the screen never showed {text:?}:\n{}",
            self.screen()
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn top_shows_a_server_kills_it_and_quits() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    let ls: Vec<serde_json::Value> =
        serde_json::from_str(&ok_stdout(&w.run(&["ls", "--json"], b""))).unwrap();
    let id = ls[0]["id"].as_str().unwrap()[..12].to_owned();
    let server = ls[0]["server_pid"].as_u64().unwrap() as u32;

    let tmux = Tmux::new("top");
    let command = format!(
        "env VIASOCK_DIR='{}' XDG_RUNTIME_DIR='{}' '{BIN}' top",
        w.state.display(),
        w.tmp.path().display()
    );
    let started = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let pane = tmux.cmd(&["list-panes", "-t", "top", "-F", "#{pane_pid}"]);
    let top_pid: u32 = String::from_utf8_lossy(&pane.stdout)
        .trim()
        .parse()
        .unwrap();

    tmux.expect(&id);
    let screen = tmux.screen();
    let row = screen.lines().find(|l| l.contains(&id)).unwrap();
    assert!(
        row.contains("ready") && row.trim_end().ends_with("cat"),
        "{screen}"
    );
    assert!(screen.contains("K kill"), "the key bar is shown: {screen}");

    tmux.keys("K");
    tmux.expect("Stop server");
    tmux.expect("cat");
    tmux.keys("y");
    assert!(
        wait_until(Duration::from_secs(15), || !process_alive(server)),
        "the server was not stopped:\n{}",
        tmux.screen()
    );
    tmux.expect(&format!("stopped {id}"));
    tmux.expect("No viasock servers are running");

    tmux.keys("q");
    assert!(
        wait_until(Duration::from_secs(10), || !process_alive(top_pid)),
        "top did not exit:\n{}",
        tmux.screen()
    );
    assert!(w.server_pids().is_empty());
}
