//! Model directories: a call stamps a directory in constant time, and the
//! server watches what is beneath it, so that a write that has returned is
//! seen by the very next call, however big the model.

mod common;

use common::{World, ok_stdout};

/// Loads its model once, at start (the file at `$1/$2`), and prints it
/// before each line.
const LOADER: &str = "#!/bin/sh\nm=$(cat \"$1/$2\")\n\
while IFS= read -r l; do printf '%s %s\\n' \"$m\" \"$l\"; done\n";

/// A model of `dirs` directories of `files` files each, three levels deep.
fn model(w: &World, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = w.work.join(format!("model/l{}/m{}/d{d}", d % 3, d % 7));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}.{f}")).unwrap();
        }
    }
}

#[test]
fn a_rewrite_deep_in_a_big_model_is_seen_by_the_very_next_call() {
    let w = World::new();
    w.script("tool.sh", LOADER);
    model(&w, 40, 50);
    let deep = "model/l2/m5/d26/f49";
    let args = ["run", "./tool.sh", "model", "l2/m5/d26/f49"];
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "26.49 x\n");
    // Rewritten in place with the same length: no inode, size or (coarse)
    // mtime tells the versions apart, only the watch does.
    for i in 10..40 {
        std::fs::write(w.work.join(deep), format!("v{i}")).unwrap();
        assert_eq!(
            ok_stdout(&w.run(&args, b"x\n")),
            format!("v{i} x\n"),
            "call {i} right after its write"
        );
    }
}

#[test]
fn entries_made_or_removed_deep_in_a_model_are_seen() {
    let w = World::new();
    w.script(
        "tool.sh",
        "#!/bin/sh\nm=$(find \"$1\" -type f | sort | tr '\\n' ,)\n\
         while IFS= read -r l; do printf '%s %s\\n' \"$m\" \"$l\"; done\n",
    );
    w.write("model/a/b/one", "1");
    let args = ["run", "./tool.sh", "model"];
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "model/a/b/one, x\n");
    std::fs::create_dir(w.work.join("model/a/b/c")).unwrap();
    std::fs::write(w.work.join("model/a/b/c/two"), "2").unwrap();
    assert_eq!(
        ok_stdout(&w.run(&args, b"x\n")),
        "model/a/b/c/two,model/a/b/one, x\n"
    );
    std::fs::remove_file(w.work.join("model/a/b/one")).unwrap();
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "model/a/b/c/two, x\n");
    std::fs::rename(w.work.join("model/a/b/c"), w.work.join("model/a/d")).unwrap();
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "model/a/d/two, x\n");
}

#[test]
fn files_a_model_reaches_through_links_are_watched_too() {
    let w = World::new();
    w.script("tool.sh", LOADER);
    w.write("store/weights", "w1");
    w.write("store/v1/vocab", "v1");
    w.write("model/README", "a model");
    std::os::unix::fs::symlink("../store/weights", w.work.join("model/weights")).unwrap();
    std::os::unix::fs::symlink("../store/v1", w.work.join("model/current")).unwrap();
    std::fs::hard_link(w.work.join("model/README"), w.work.join("readme-link")).unwrap();

    let weights = ["run", "./tool.sh", "model", "weights"];
    assert_eq!(ok_stdout(&w.run(&weights, b"x\n")), "w1 x\n");
    std::fs::write(w.work.join("store/weights"), "w2").unwrap();
    assert_eq!(ok_stdout(&w.run(&weights, b"x\n")), "w2 x\n");

    let vocab = ["run", "./tool.sh", "model", "current/vocab"];
    assert_eq!(ok_stdout(&w.run(&vocab, b"x\n")), "v1 x\n");
    std::fs::write(w.work.join("store/v1/vocab"), "v2").unwrap();
    assert_eq!(ok_stdout(&w.run(&vocab, b"x\n")), "v2 x\n");

    // Written through another hard link: the model's directory hears
    // nothing, the file's own watch does.
    let readme = ["run", "./tool.sh", "model", "README"];
    assert_eq!(ok_stdout(&w.run(&readme, b"x\n")), "a model x\n");
    std::fs::write(w.work.join("readme-link"), "another").unwrap();
    assert_eq!(ok_stdout(&w.run(&readme, b"x\n")), "another x\n");
}

#[test]
fn calls_in_a_model_that_holds_the_state_directory_share_one_server() {
    let w = World::new();
    w.script("tool.sh", LOADER);
    w.write("weights", "w");
    // `.` is the model, and the state directory (sockets, logs, state
    // files written at every call) is inside it.
    let args = ["run", "./tool.sh", ".", "weights"];
    for _ in 0..5 {
        assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "w x\n");
    }
    assert_eq!(w.server_pids().len(), 1);
    assert_eq!(w.logs().matches("listening at").count(), 1, "{}", w.logs());
}

#[test]
fn a_changed_model_leaves_one_fresh_server() {
    let w = World::new();
    w.script("tool.sh", LOADER);
    model(&w, 3, 3);
    let args = ["run", "./tool.sh", "model", "l0/m0/d0/f0"];
    ok_stdout(&w.run(&args, b"x\n"));
    let old = w.server_pids();
    std::fs::write(w.work.join("model/l0/m0/d0/f0"), "new").unwrap();
    assert!(
        common::wait_until(std::time::Duration::from_secs(5), || {
            !common::process_alive(old[0])
        }),
        "a server whose model changed stops by itself, without a call"
    );
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "new x\n");
    assert_eq!(w.server_pids().len(), 1);
    assert!(w.logs().contains("stale: "), "{}", w.logs());
}

/// A walk on every call stopped after 10,000 entries, so a change beyond
/// them was never seen; a watch has no such limit.
#[test]
fn a_change_beyond_ten_thousand_entries_is_seen() {
    let w = World::new();
    w.script("tool.sh", LOADER);
    model(&w, 21, 500);
    // Last in name order: l2/m6/d20.
    let last = "l2/m6/d20/f99";
    let args = ["run", "./tool.sh", "model", last];
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "20.99 x\n");
    std::fs::write(w.work.join("model").join(last), "changed").unwrap();
    assert_eq!(ok_stdout(&w.run(&args, b"x\n")), "changed x\n");
}

/// A directory the command names that keeps changing gives a cold call
/// each time, never a failure: the call that starts a server began before
/// the server watched anything, so it overlaps every change the server
/// sees and is served by it.
#[test]
fn a_named_directory_that_keeps_changing_never_fails_a_call() {
    let w = World::new();
    w.script("tool.sh", "#!/bin/sh\nexec sed -u 's/^/ok /'\n");
    std::fs::create_dir(w.work.join("busy")).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::fs::write(w.work.join("busy/f"), i.to_string()).unwrap();
                i += 1;
            }
        });
        // The writer stops however the calls end (a hung call panics).
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let stopping = Stop(&stop);
        let outs: Vec<_> = (0..10)
            .map(|i| {
                let out = w.run(
                    &["run", "./tool.sh", "--work=busy"],
                    format!("{i}\n").as_bytes(),
                );
                (i, out)
            })
            .collect();
        drop(stopping);
        for (i, out) in outs {
            assert_eq!(ok_stdout(&out), format!("ok {i}\n"), "call {i}");
        }
    });
}

/// A model reached through a symlink outside it (`current -> releases/41`)
/// can be switched without an event in the model: the server checks its
/// links again every 2 s.
#[test]
fn a_model_switched_by_a_symlink_outside_it_is_seen_within_seconds() {
    let w = World::new();
    w.script("tool.sh", LOADER);
    w.write("data/releases/41/weights", "model41");
    w.write("data/releases/42/weights", "model42");
    std::os::unix::fs::symlink("releases/41", w.work.join("data/current")).unwrap();
    std::fs::create_dir(w.work.join("models")).unwrap();
    std::os::unix::fs::symlink("../data/current", w.work.join("models/en")).unwrap();
    let args = ["run", "./tool.sh", "models", "en/weights"];
    assert_eq!(ok_stdout(&w.run(&args, b"a\n")), "model41 a\n");
    let old = w.server_pids();
    // Re-pointed as `ln -sfn` does: a new link renamed over the old.
    std::os::unix::fs::symlink("releases/42", w.work.join("data/next")).unwrap();
    std::fs::rename(w.work.join("data/next"), w.work.join("data/current")).unwrap();
    assert!(
        common::wait_until(std::time::Duration::from_secs(6), || {
            !common::process_alive(old[0])
        }),
        "the server that loaded release 41 stops"
    );
    assert_eq!(ok_stdout(&w.run(&args, b"b\n")), "model42 b\n");
}
