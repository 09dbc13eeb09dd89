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

    /// Runs `command` (a shell command line) in a new `width`×`height`
    /// session named `top`; returns the pid of its pane's process.
    fn start(&self, width: u16, height: u16, command: &str) -> u32 {
        let (x, y) = (width.to_string(), height.to_string());
        let started = self.cmd(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            &x,
            "-y",
            &y,
            "sh",
            "-c",
            command,
        ]);
        assert!(
            started.status.success(),
            "{}",
            String::from_utf8_lossy(&started.stderr)
        );
        let pane = self.cmd(&["list-panes", "-t", "top", "-F", "#{pane_pid}"]);
        String::from_utf8_lossy(&pane.stdout)
            .trim()
            .parse()
            .unwrap()
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
    // `exec`: the pane's process is top itself.
    let top_pid = tmux.start(100, 30, &format!("exec {command}"));

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

#[test]
fn top_shows_dead_servers_filters_resizes_and_restores_the_terminal() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    ok_stdout(&w.run(&["run", "sed", "-u", "s/a/b/"], b"x\n"));
    let ls: Vec<serde_json::Value> =
        serde_json::from_str(&ok_stdout(&w.run(&["ls", "--json"], b""))).unwrap();
    let find = |program: &str| {
        ls.iter()
            .find(|s| s["command"][0] == program)
            .map(|s| {
                (
                    s["id"].as_str().unwrap()[..12].to_owned(),
                    s["server_pid"].as_u64().unwrap() as u32,
                )
            })
            .unwrap()
    };
    let (cat_id, cat_pid) = find("cat");
    let (sed_id, _) = find("sed");

    let tmux = Tmux::new("top2");
    let stty = w.tmp.path().join("stty-after");
    // A shell runs top, then records the terminal's modes once it is back.
    let command = format!(
        "env NO_COLOR=1 VIASOCK_DIR='{}' XDG_RUNTIME_DIR='{}' '{BIN}' top; stty -a > '{}'; sleep 60",
        w.state.display(),
        w.tmp.path().display(),
        stty.display()
    );
    tmux.start(120, 30, &command);
    tmux.expect(&cat_id);
    tmux.expect(&sed_id);
    let colours = tmux.cmd(&["capture-pane", "-p", "-e", "-t", "top"]);
    let escapes = String::from_utf8_lossy(&colours.stdout);
    // Foreground or background colours (39 and 49 reset to the default).
    let colour =
        regex::Regex::new(r"\x1b\[(?:[0-9]*;)*(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])[;m]").unwrap();
    assert!(
        !colour.is_match(&escapes),
        "NO_COLOR: no colours:\n{escapes:?}"
    );
    assert!(
        tmux.screen().contains("▶ "),
        "the selection is marked without colour"
    );

    // A server killed behind its back shows as dead, with a word.
    Command::new("kill")
        .args(["-9", &cat_pid.to_string()])
        .status()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let screen = tmux.screen();
            screen
                .lines()
                .any(|l| l.contains(&cat_id) && l.contains("dead"))
        }),
        "{}",
        tmux.screen()
    );
    tmux.keys("c");
    tmux.expect("cleaned up 1 dead server");
    assert!(wait_until(Duration::from_secs(10), || !tmux
        .screen()
        .contains(&cat_id)));

    // A filter that matches nothing says so; Esc brings the rows back.
    tmux.keys("/");
    tmux.keys("zzz");
    tmux.expect("No server's command matches");
    tmux.keys("Escape");
    tmux.expect(&sed_id);

    // Smaller, as a classic terminal: still the id, the state and the keys.
    assert!(
        tmux.cmd(&["resize-window", "-t", "top", "-x", "80", "-y", "24"])
            .status
            .success()
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let screen = tmux.screen();
            screen.lines().all(|l| l.chars().count() <= 80)
                && screen
                    .lines()
                    .any(|l| l.contains(&sed_id) && l.contains("ready"))
                && screen.contains("q quit")
        }),
        "{}",
        tmux.screen()
    );

    tmux.keys("q");
    assert!(wait_until(Duration::from_secs(10), || stty.exists()
        && std::fs::metadata(&stty).is_ok_and(|m| m.len() > 0)));
    let modes = std::fs::read_to_string(&stty).unwrap();
    // Raw mode turned these off ("-icanon"); they are back on.
    let words: Vec<&str> = modes.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig"] {
        assert!(words.contains(&mode), "{mode} restored: {modes}");
    }
}

#[test]
fn top_exits_when_its_terminal_goes_away() {
    let w = World::new();
    let tmux = Tmux::new("top3");
    let command = format!(
        "env VIASOCK_DIR='{}' XDG_RUNTIME_DIR='{}' '{BIN}' top",
        w.state.display(),
        w.tmp.path().display()
    );
    let top_pid = tmux.start(80, 24, &format!("exec {command}"));
    tmux.expect("No viasock servers are running");
    // The window goes away under it, as when a terminal emulator is closed:
    // it sees the hang-up within a moment, not after seconds at full CPU.
    assert!(tmux.cmd(&["kill-server"]).status.success());
    let gone = wait_until(Duration::from_secs(3), || !process_alive(top_pid));
    if !gone {
        let _ = Command::new("kill")
            .args(["-9", &top_pid.to_string()])
            .status();
    }
    assert!(gone, "top outlived its terminal");
}

/// A shell command line that runs `top` on the world's servers with
/// `env` set too, then `then`.
fn top_then(w: &World, env: &str, then: &str) -> String {
    format!(
        "env {env} VIASOCK_DIR='{}' XDG_RUNTIME_DIR='{}' '{BIN}' top{then}",
        w.state.display(),
        w.tmp.path().display(),
    )
}

#[test]
fn top_ends_with_128_plus_the_signal_that_stopped_it() {
    let w = World::new();
    let tmux = Tmux::new("top4");
    let status = w.tmp.path().join("status");
    let command = top_then(
        &w,
        "",
        &format!("; echo $? > '{}'; sleep 60", status.display()),
    );
    let shell = tmux.start(80, 24, &command);
    tmux.expect("No viasock servers are running");
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
    let top_pid = children
        .split_whitespace()
        .next()
        .expect("top runs")
        .to_owned();
    assert!(
        Command::new("kill")
            .args(["-TERM", &top_pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&status).is_ok_and(|s| s.ends_with('\n'))
    }));
    // As a shell reports a command a signal ended: the terminal restored all the same.
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "143");
}

#[test]
fn top_refuses_a_dumb_terminal_with_a_message() {
    let w = World::new();
    let tmux = Tmux::new("top5");
    let out = w.tmp.path().join("out");
    let command = top_then(
        &w,
        "TERM=dumb",
        &format!(
            " 2> '{out}'; echo \"status $?\" >> '{out}'; sleep 60",
            out = out.display()
        ),
    );
    tmux.start(80, 24, &command);
    let ended = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("status "))
    });
    assert!(ended, "top drew on a dumb terminal:\n{}", tmux.screen());
    // Nothing was drawn: the screen has no table or key bar.
    assert!(!tmux.screen().contains("q quit"), "{}", tmux.screen());
    let said = std::fs::read_to_string(&out).unwrap();
    assert!(said.starts_with("viasock: "), "{said:?}");
    assert!(said.contains("TERM=dumb"), "{said:?}");
    assert!(said.ends_with("status 1\n"), "{said:?}");
}

/// The mouse as a terminal reports it (SGR sequences, as tmux passes
/// them on), and the instances view of a real tool: its pid as `ls`
/// has it, with memory and a process count from `/proc`.
#[test]
fn top_takes_clicks_and_shows_the_instances_of_a_server() {
    let w = World::new();
    ok_stdout(&w.run(&["run", "cat"], b"x\n"));
    ok_stdout(&w.run(&["run", "sed", "-u", "s/x/y/"], b"x\nx\n"));
    let ls: Vec<serde_json::Value> =
        serde_json::from_str(&ok_stdout(&w.run(&["ls", "--json"], b""))).unwrap();
    let sed = ls.iter().find(|s| s["command"][0] == "sed").unwrap();
    let sed_id = sed["id"].as_str().unwrap()[..12].to_owned();
    let tool = sed["instances"][0]["pid"].as_u64().unwrap().to_string();

    let tmux = Tmux::new("mouse");
    tmux.start(120, 12, &format!("exec {}", top_then(&w, "", "")));
    tmux.expect(&sed_id);
    let row_of = |id: &str| {
        let screen = tmux.screen();
        screen.lines().position(|l| l.contains(id)).unwrap()
    };
    // A left click (press, then release) on the sed row selects it.
    let y = row_of(&sed_id) + 1;
    let click = |x: usize, y: usize| {
        for end in ['M', 'm'] {
            let seq = format!("\x1b[<0;{x};{y}{end}");
            assert!(
                tmux.cmd(&["send-keys", "-t", "top", "-l", &seq])
                    .status
                    .success()
            );
        }
    };
    click(40, y);
    let selected = wait_until(Duration::from_secs(10), || {
        tmux.screen()
            .lines()
            .any(|l| l.starts_with('▶') && l.contains(&sed_id))
    });
    assert!(selected, "the click did not select:\n{}", tmux.screen());
    // A click on a heading sorts by it.
    let heading = tmux.screen().lines().nth(1).unwrap().to_owned();
    let x = heading[..heading.find("MEM").unwrap()].chars().count() + 2;
    click(x, 2);
    tmux.expect("sort: memory");
    tmux.expect("MEM▼");

    tmux.keys("i");
    tmux.expect(&format!("instances of {sed_id}"));
    // Its usage comes with the next look at /proc.
    let mut screen = String::new();
    let seen = wait_until(Duration::from_secs(10), || {
        screen = tmux.screen();
        screen
            .lines()
            .find(|l| l.starts_with(&tool))
            .is_some_and(|l| l.split_whitespace().nth(6) != Some("-"))
    });
    assert!(seen, "no usage of the tool: {screen}");
    let row: Vec<&str> = screen
        .lines()
        .find(|l| l.starts_with(&tool))
        .unwrap()
        .split_whitespace()
        .collect();
    // pid, state, requests, records, age, oldest, RSS, CPU, processes.
    assert_eq!(&row[..4], [tool.as_str(), "idle", "1", "2"], "{screen}");
    assert_eq!(row[5], "-", "nothing in flight: {screen}");
    assert!(row[6].ends_with('M') || row[6].ends_with('k'), "{screen}");
    assert_eq!(row[8], "1", "sed started nothing: {screen}");
    tmux.keys("Escape");
    tmux.expect("COMMAND");
    tmux.keys("m");
    tmux.expect("mouse off");
    tmux.keys("q");
}
