//! A call gives what the tool would have given, or fails loudly: the
//! command line reaches the tool untouched, a prelude that never completes
//! is bounded by `-w`, wrong framing fails the call, a tool that exits
//! between calls costs nobody a call, and stderr goes to the call it
//! belongs to.

mod common;

use std::time::Duration;

use common::{KillOnDrop, World, ok_stdout, wait_until};

/// Answers each line with its arguments, `|`-separated, then the line.
const SHOW_ARGS: &str =
    "#!/bin/sh\nwhile IFS= read -r l; do printf '%s|' \"$@\"; printf '%s\\n' \"$l\"; done\n";

#[test]
fn options_after_program_reach_the_tool_unchanged() {
    let w = World::new();
    w.script("args.sh", SHOW_ARGS);
    let out = w.run(
        &[
            "run",
            "./args.sh",
            "-l",
            "5",
            "-w",
            "2",
            "--dir",
            "d",
            "--",
            "y",
        ],
        b"a\n",
    );
    assert_eq!(ok_stdout(&out), "-l|5|-w|2|--dir|d|--|y|a\n");
    assert!(!w.work.join("5").exists(), "no log file named 5");
    assert!(!w.work.join("d").exists(), "no state directory d");
    assert!(
        w.state.join("sockets").is_dir(),
        "the state directory is the world's"
    );
}

#[test]
fn help_and_double_dash_after_program_are_the_tools() {
    let w = World::new();
    w.script("args.sh", SHOW_ARGS);
    let out = w.run(&["run", "./args.sh", "--help"], b"a\n");
    assert_eq!(ok_stdout(&out), "--help|a\n");
    let out = w.run(&["run", "--", "./args.sh", "--", "x"], b"b\n");
    assert_eq!(ok_stdout(&out), "--|x|b\n");
    let out = w.run(&["run", "-W", "30", "./args.sh", "-W", "5"], b"c\n");
    assert_eq!(ok_stdout(&out), "-W|5|c\n");
}

#[test]
fn a_real_tool_gets_its_own_short_options() {
    let w = World::new();
    let out = w.run(&["run", "grep", "-w", "--line-buffered", "x"], b"x\n");
    assert_eq!(ok_stdout(&out), "x\n");
    // sed's -l (line wrap) is not viasock's --log.
    let out = w.run(&["run", "sed", "-l", "5", "-u", "s/a/b/"], b"a\n");
    assert_eq!(ok_stdout(&out), "b\n");
}

#[test]
fn start_and_serve_pass_options_after_program_to_the_tool() {
    let w = World::new();
    w.script("args.sh", SHOW_ARGS);
    let out = w.run(&["start", "./args.sh", "-l", "5", "--probe", "p"], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(!w.work.join("5").exists(), "no log file named 5");
    // The same command finds the server start started.
    let out = w.run(
        &["run", "--no-spawn", "./args.sh", "-l", "5", "--probe", "p"],
        b"a\n",
    );
    assert_eq!(ok_stdout(&out), "-l|5|--probe|p|a\n");

    let socket = w.work.join("fg.sock");
    let server = KillOnDrop(
        w.cmd(&["serve", "--socket", "fg.sock", "./args.sh", "--socket", "z"])
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(10), || socket.exists()));
    let out = w.run(&["client", "fg.sock"], b"s\n");
    assert_eq!(ok_stdout(&out), "--socket|z|s\n");
    drop(server);
}

#[test]
fn unknown_option_before_program_is_a_usage_error() {
    let w = World::new();
    let out = w.run(&["run", "--no-such-option", "cat"], b"a\n");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
