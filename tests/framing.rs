//! Framing options beyond `-t`/`-T`/`-P`: NUL-terminated lines (`-z`), a
//! banner counted in lines (`--prelude-lines`), the named framings, and
//! framing shown by `ls`.

mod common;

use std::process::{Command, Stdio};

use common::{World, finish, ok_stdout};

/// Bytes of every value but NUL, newlines and carriage returns included,
/// from a fixed seed.
fn binary_records(n: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            (0..(i % 97) + 1)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 255) as u8 + 1
                })
                .collect()
        })
        .collect()
}

fn nul_terminated(records: &[Vec<u8>]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|r| r.iter().copied().chain([0]))
        .collect()
}

/// What the tool writes when run directly on `input`.
fn direct(w: &World, program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let child = Command::new(program)
        .args(args)
        .current_dir(&w.work)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the tool");
    let out = finish(child, input);
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

#[test]
fn null_data_round_trips_binary_records() {
    let w = World::new();
    let input = nul_terminated(&binary_records(3000));
    assert!(input.contains(&b'\n') && input.contains(&0xff));
    let out = w.run(&["run", "-z", "cat"], &input);
    assert!(out.status.success(), "{:?}", out.status);
    assert!(out.stdout == input, "cat -z gives back every byte");

    let sed = ["-u", "-z", "s/^/>/"];
    let want = direct(&w, "sed", &sed, &input);
    for _ in 0..2 {
        let out = w.run(&["run", "-z", "sed", "-u", "-z", "s/^/>/"], &input);
        assert!(out.status.success(), "{:?}", out.status);
        assert!(out.stdout == want, "the same bytes as a direct run");
    }
}

#[test]
fn null_data_ends_a_last_record_without_its_nul() {
    let w = World::new();
    let out = w.run(&["run", "-z", "cat"], b"a\nb\0c\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"a\nb\0c\n\0");
}

#[test]
fn null_data_patterns_match_nul_terminated_lines() {
    let w = World::new();
    let input = b"a\0b\n\0\0c\0\0";
    let out = w.run(&["run", "-z", "-t", "^$", "-T", "^$", "cat"], input);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, input);
    // A newline-separated blank line is no record end under -z.
    let out = w.run(&["run", "-z", "-t", "^$", "-T", "^$", "cat"], b"a\n\n");
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(out.stdout.is_empty());
}

/// A spell checker in ispell pipe mode: a one-line banner, then for each
/// line an answer that ends with a blank line.
const ISPELL: &str = "#!/bin/sh\necho '@(#) International Ispell Version 3.2.06 (but really a script)'\nwhile IFS= read -r l; do echo \"* $l\"; echo; done\n";

#[test]
fn a_banner_counted_in_lines_comes_first_for_every_call() {
    let w = World::new();
    w.script("ispell.sh", ISPELL);
    let input = b"one\ntwo\n";
    let want = String::from_utf8(direct(&w, "./ispell.sh", &[], input)).unwrap();
    for options in [
        &["--prelude-lines", "1", "-T", "^$"][..],
        &["--framing", "ispell"][..],
    ] {
        for _ in 0..2 {
            let args: Vec<&str> = ["run", "-w", "10"]
                .iter()
                .chain(options)
                .chain(&["./ispell.sh"])
                .copied()
                .collect();
            assert_eq!(ok_stdout(&w.run(&args, input)), want, "{options:?}");
        }
    }
}

#[test]
fn a_named_framing_is_the_server_of_its_options() {
    let w = World::new();
    w.script(
        "eos.sh",
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"$l\"; echo EOS; done\n",
    );
    let out = w.run(&["run", "--framing", "eos", "./eos.sh"], b"x\n");
    assert_eq!(ok_stdout(&out), "x\nEOS\n");
    let out = w.run(&["run", "--no-spawn", "-T", "^EOS$", "./eos.sh"], b"y\n");
    assert_eq!(ok_stdout(&out), "y\nEOS\n");
    assert_eq!(w.sockets().len(), 1);
}

#[test]
fn servers_differing_only_in_framing_look_different_in_ls() {
    let w = World::new();
    for framing in [&[][..], &["-T", "^$"][..]] {
        let args: Vec<&str> = ["start"]
            .iter()
            .chain(framing)
            .chain(&["cat"])
            .copied()
            .collect();
        let out = w.run(&args, b"");
        assert!(out.status.success(), "{out:?}");
    }
    let table = ok_stdout(&w.run(&["ls"], b""));
    let mut commands: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().skip(8).collect::<Vec<_>>())
        .map(|words| {
            if words == ["cat"] {
                "cat"
            } else if words == ["-T", "'^$'", "cat"] {
                "-T"
            } else {
                "?"
            }
        })
        .collect();
    commands.sort();
    assert_eq!(commands, ["-T", "cat"], "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&ok_stdout(&w.run(&["ls", "--json"], b""))).unwrap();
    let mut framings: Vec<String> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["framing"].to_string())
        .collect();
    framings.sort();
    assert_eq!(framings, [r#"["-T","^$"]"#, "[]"]);
}
