//! `run --fork`: one-shot tools, unmodified, served by forking the loaded
//! tool at its first read of stdin. Every call is compared byte for byte
//! (stdout, stderr, status) with a direct run of the same tool.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A Python tool as people write them: it loads (here, a model file and
/// a nap), reads all of stdin, answers, and exits 3 on some input.
const PY_TOOL: &str = r#"#!/usr/bin/env python3
import sys, time
model = open(sys.argv[1]).read().strip()
time.sleep(0.3)
data = sys.stdin.read()
words = data.split()
for w in words:
    print(model + ":" + w.upper())
print("words", len(words), file=sys.stderr)
sys.exit(3 if "bad" in words else 0)
"#;

/// A C tool: a banner left in the stdio buffer, an fgets loop, a summary
/// at end of input, and a status that depends on the input.
const C_TOOL: &str = r#"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char line[4096];
    long lines = 0, bytes = 0;
    usleep(200000);
    printf("%s ready\n", argc > 1 ? argv[1] : "tool");
    while (fgets(line, sizeof line, stdin)) {
        lines++;
        bytes += strlen(line);
        for (char *p = line; *p; p++) if (*p >= 'a' && *p <= 'z') *p -= 32;
        fputs(line, stdout);
    }
    printf("lines %ld bytes %ld\n", lines, bytes);
    fprintf(stderr, "done after %ld lines\n", lines);
    return lines > 2 ? 4 : 0;
}
"#;

/// Compiles `source` with the system's C compiler into the world.
fn compile(w: &World, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = w.write(&format!("{name}.c"), source);
    let out = w.work.join(name);
    let cc = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .output()
        .expect("a C compiler (cc)");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    out
}

/// A direct run of the tool, in the world's working directory.
fn direct(w: &World, command: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(command[0])
        .args(&command[1..])
        .current_dir(&w.work)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the tool");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn forked(w: &World, command: &[&str], input: &[u8]) -> Output {
    let mut args = vec!["run", "--fork"];
    args.extend_from_slice(command);
    w.run(&args, input)
}

/// The same stdout, stderr and status as a direct run.
fn assert_same(served: &Output, direct: &Output, what: &str) {
    assert_eq!(
        String::from_utf8_lossy(&served.stdout),
        String::from_utf8_lossy(&direct.stdout),
        "stdout of {what}"
    );
    assert_eq!(
        String::from_utf8_lossy(&served.stderr),
        String::from_utf8_lossy(&direct.stderr),
        "stderr of {what}"
    );
    assert_eq!(
        served.status.code(),
        direct.status.code(),
        "status of {what}"
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&served.status),
        None,
        "{what}: viasock itself must exit, not die"
    );
}

/// One call of `args` for each input, all at once, each fed by a thread
/// of its own: with `-j N`, children that hold a slot wait for their
/// input while others wait for a slot, so no call's input may wait for
/// another call to end.
fn all_at_once(w: &World, args: &[&str], inputs: &[Vec<u8>]) -> Vec<Output> {
    let calls: Vec<_> = inputs
        .iter()
        .map(|input| {
            let call = w.spawn(args);
            let input = input.clone();
            std::thread::spawn(move || finish(call, &input))
        })
        .collect();
    calls.into_iter().map(|c| c.join().unwrap()).collect()
}

fn python_world() -> World {
    let w = World::new();
    w.script("tag.py", PY_TOOL);
    w.write("model.txt", "en\n");
    w
}

/// The servers of the world, as `ls --json` gives them.
fn servers(w: &World) -> Vec<serde_json::Value> {
    let out = w.run(&["ls", "--json"], b"");
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn server_count(w: &World) -> usize {
    servers(w).len()
}

#[test]
fn a_python_tool_that_reads_to_the_end_gives_what_a_direct_run_gives() {
    let w = python_world();
    let tool = ["./tag.py", "model.txt"];
    for input in [
        &b"hello world\n"[..],
        b"",
        b"no newline at the end",
        b"a bad word\n",
        b"caf\xc3\xa9 \xff\xfe bytes\n",
    ] {
        let served = forked(&w, &tool, input);
        assert_same(&served, &direct(&w, &tool, input), &format!("{input:?}"));
    }
    // Ten at once (-j 3: the others wait their turn).
    let inputs: Vec<String> = (0..10)
        .map(|i| format!("call {i} {}\n", "bad ".repeat(i % 2)))
        .collect();
    let inputs: Vec<Vec<u8>> = inputs.into_iter().map(String::into_bytes).collect();
    let served = all_at_once(
        &w,
        &["run", "--fork", "-j", "3", "./tag.py", "model.txt"],
        &inputs,
    );
    for (served, input) in served.iter().zip(&inputs) {
        assert_same(
            served,
            &direct(&w, &tool, input),
            &String::from_utf8_lossy(input),
        );
    }
    // One server, loaded once, served them all.
    assert_eq!(server_count(&w), 1, "{}", w.logs());
    assert_eq!(w.logs().matches("tool started").count(), 1, "{}", w.logs());
}

#[test]
fn a_c_tool_with_an_fgets_loop_gives_what_a_direct_run_gives_ten_at_a_time() {
    let w = World::new();
    let tool = compile(&w, "upper", C_TOOL, &["-O1"]);
    let tool = tool.to_str().unwrap();
    let big: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("line {i} of a long input\n").into_bytes())
        .collect();
    // Sequentially, the first call starting the server.
    for input in [&b"one\ntwo\n"[..], b"", b"a\nb\nc\n", &big] {
        let served = forked(&w, &[tool, "banner"], input);
        assert_same(&served, &direct(&w, &[tool, "banner"], input), "a call");
    }
    // Ten at once, with -j 4: every one gets its own answer and status.
    let inputs: Vec<Vec<u8>> = (0..10)
        .map(|i| {
            (0..i)
                .map(|k| format!("call {i} line {k}\n"))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    let served = all_at_once(&w, &["run", "--fork", "-j", "4", tool, "banner"], &inputs);
    for (served, input) in served.iter().zip(&inputs) {
        assert_same(
            served,
            &direct(&w, &[tool, "banner"], input),
            "a concurrent call",
        );
    }
    assert_eq!(w.logs().matches("tool started").count(), 1, "{}", w.logs());
}

#[test]
fn a_c_tool_that_reads_with_scanf_gives_what_a_direct_run_gives() {
    let w = World::new();
    let tool = compile(
        &w,
        "sum",
        r#"
#include <stdio.h>
int main(void) {
    double x, sum = 0;
    int n = 0;
    char word[64];
    while (scanf("%lf", &x) == 1) { sum += x; n++; }
    if (fscanf(stdin, "%63s", word) == 1) printf("stopped at %s\n", word);
    printf("sum %.2f of %d %s\n", sum, n, "numbers");
    return n;
}
"#,
        &[],
    );
    let tool = tool.to_str().unwrap();
    for input in [&b"1.5 2 3\n"[..], b"4 5\n6 x 7\n", b""] {
        let served = forked(&w, &[tool], input);
        assert_same(&served, &direct(&w, &[tool], input), &format!("{input:?}"));
    }
}

#[test]
fn a_banner_written_before_the_first_read_reaches_every_caller() {
    let w = World::new();
    // Flushed before the read (it reaches the server's pipe) and buffered
    // (it stays in stdio's buffer, which each child inherits).
    let tool = compile(
        &w,
        "banner",
        r#"
#include <stdio.h>
int main(void) {
    char line[256];
    printf("flushed banner\n");
    fflush(stdout);
    printf("buffered banner\n");
    while (fgets(line, sizeof line, stdin)) fputs(line, stdout);
    return 0;
}
"#,
        &[],
    );
    let tool = tool.to_str().unwrap();
    for input in [&b"first\n"[..], b"second\n", b"third\n"] {
        let served = forked(&w, &[tool], input);
        assert_same(&served, &direct(&w, &[tool], input), "a call");
        assert!(
            String::from_utf8_lossy(&served.stdout)
                .starts_with("flushed banner\nbuffered banner\n"),
            "{served:?}"
        );
    }
}

/// A banner bigger than a pipe holds: the tool must be able to write it
/// all before its first read (it waited for ever, and so did the call).
#[test]
fn a_banner_bigger_than_a_pipe_reaches_the_caller() {
    let w = World::new();
    w.script(
        "big.py",
        "#!/usr/bin/env python3\nimport sys\nsys.stdout.write('x' * 300000 + '\\n')\n\
         sys.stdout.flush()\nprint(len(sys.stdin.read()))\n",
    );
    for input in [&b"one\n"[..], b"two two\n"] {
        let call = w.spawn(&["run", "--fork", "./big.py"]);
        let served = common::finish_within(call, input, Duration::from_secs(30));
        assert_same(&served, &direct(&w, &["./big.py"], input), "a call");
    }
}

#[test]
fn what_a_tool_asks_of_its_stdin_before_reading_it_is_answered_as_for_a_pipe() {
    // wc sizes its columns by what stdin is: a pipe gives the default
    // width. Python asks whether stdin is seekable when it starts.
    let w = World::new();
    w.script(
        "seek.py",
        "#!/usr/bin/env python3\nimport sys\nd = sys.stdin.read()\nprint(len(d), sys.stdin.seekable())\n",
    );
    for tool in [&["wc"][..], &["./seek.py"]] {
        let input = b"two words\nand three more\n";
        let served = forked(&w, tool, input);
        assert_same(&served, &direct(&w, tool, input), &format!("{tool:?}"));
    }
}

#[test]
fn a_caller_on_a_terminal_is_seen_as_one_by_the_tool() {
    let w = World::new();
    w.script(
        "tty.py",
        "#!/usr/bin/env python3\nimport os, sys\ndata = sys.stdin.read()\n\
         print('stdin', os.isatty(0), 'stdout', os.isatty(1), 'read', len(data))\n",
    );
    w.write("input.txt", "some input\n");
    // `script` runs the command on a pseudo-terminal: stdout is one,
    // stdin is the file.
    let on_terminal = |command: &str| {
        let o = Command::new("script")
            .args(["-qec", command, "/dev/null"])
            .current_dir(&w.work)
            .env("VIASOCK_DIR", &w.state)
            .env("XDG_RUNTIME_DIR", w.tmp.path())
            .stdin(Stdio::null())
            .output()
            .expect("script (util-linux)");
        String::from_utf8_lossy(&o.stdout).replace('\r', "")
    };
    let direct = on_terminal("./tty.py < input.txt");
    assert_eq!(direct, "stdin False stdout True read 11\n");
    for _ in 0..2 {
        let served = on_terminal(&format!("{BIN} run --fork ./tty.py < input.txt"));
        assert_eq!(served, direct);
    }
}

#[test]
fn ctrl_c_of_a_caller_ends_its_child_and_nobody_elses() {
    let w = World::new();
    // Reads to the end, then answers: a caller whose input never ends
    // keeps its child reading.
    w.script(
        "count.py",
        "#!/usr/bin/env python3\nimport sys\ndata = sys.stdin.read()\nprint(len(data))\n",
    );
    let args = ["run", "--fork", "-j", "2", "./count.py"];
    ok_stdout(&w.run(&args, b"warm\n"));
    let mut interrupted = w.spawn(&args);
    let other = w.spawn(&args);
    interrupted
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"abc\n")
        .unwrap();
    // Both children run (the fork server and two busy children).
    assert!(
        wait_until(Duration::from_secs(10), || busy_children(&w) == 2),
        "{}",
        w.run(&["ls", "--json"], b"").stdout.escape_ascii()
    );
    // Its input stays open: the child is still reading when it is told.
    let held = interrupted.stdin.take();
    signal(interrupted.id() as i64, "INT");
    let out = finish_within(interrupted, b"", Duration::from_secs(10));
    drop(held);
    // Python dies of the SIGINT it does not handle outside a try, and so
    // does the caller, as a direct run would: a shell loop around it stops
    // (one that exited 130 would have it carry on).
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("KeyboardInterrupt"),
        "{out:?}"
    );
    // The other call is untouched.
    let out = finish(other, b"12345\n");
    assert_eq!(ok_stdout(&out), "6\n");
}

#[test]
fn ctrl_c_while_the_tool_loads_ends_the_call_as_it_would_end_the_tool() {
    let w = World::new();
    w.script(
        "slow-load.py",
        "#!/usr/bin/env python3\nimport sys, time\ntime.sleep(30)\nprint(len(sys.stdin.read()))\n",
    );
    let mut call = w.spawn(&["run", "--fork", "./slow-load.py"]);
    let held = call.stdin.take();
    // The server is up and the tool loading: the call waits for it.
    assert!(wait_until(Duration::from_secs(10), || {
        servers(&w)
            .first()
            .is_some_and(|s| s["state"] == "starting" && s["clients_active"] == 1)
    }));
    signal(call.id() as i64, "INT");
    let out = finish_within(call, b"", Duration::from_secs(10));
    drop(held);
    // Ended by the signal, as a direct run of the loading tool would be.
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}

/// Children of the fork server running calls, as `ls --json` lists them.
fn busy_children(w: &World) -> usize {
    servers(w)
        .first()
        .and_then(|s| s["instances"].as_array())
        .map_or(0, |i| i.iter().filter(|i| i["state"] == "busy").count())
}

#[test]
fn a_signal_that_kills_the_child_is_the_calls_status() {
    let w = World::new();
    w.script(
        "die.py",
        "#!/usr/bin/env python3\nimport os, signal, sys\nsys.stdin.read()\n\
         os.kill(os.getpid(), signal.SIGTERM)\n",
    );
    let served = forked(&w, &["./die.py"], b"x\n");
    assert_eq!(served.status.code(), Some(143), "{served:?}");
    assert_eq!(direct(&w, &["./die.py"], b"x\n").status.code(), None);
}

#[test]
fn the_process_timeout_bounds_a_whole_call() {
    let w = World::new();
    w.script(
        "slow.py",
        "#!/usr/bin/env python3\nimport sys, time\nsys.stdin.read()\ntime.sleep(60)\n",
    );
    let begun = Instant::now();
    let out = w.run(&["run", "--fork", "-w", "1", "./slow.py"], b"x\n");
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(
        begun.elapsed() < Duration::from_secs(20),
        "{:?}",
        begun.elapsed()
    );
    let lines = viasock_lines(&out);
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(lines[0].contains("-w"), "{lines:?}");
}

#[test]
fn a_changed_model_gives_a_new_fork_server() {
    let w = python_world();
    let tool = ["./tag.py", "model.txt"];
    assert_eq!(ok_stdout(&forked(&w, &tool, b"x\n")), "en:X\n");
    w.write("model.txt", "de\n");
    assert_eq!(ok_stdout(&forked(&w, &tool, b"x\n")), "de:X\n");
    // And a changed tool, too.
    w.script("tag.py", &PY_TOOL.replace("\":\"", "\"=\""));
    assert_eq!(ok_stdout(&forked(&w, &tool, b"x\n")), "de=X\n");
}

#[test]
fn what_cannot_be_forked_is_refused_with_a_reason() {
    let w = World::new();
    let src = "#include <stdio.h>\nint main(void){char l[64];while(fgets(l,64,stdin))fputs(l,stdout);return 0;}\n";
    let static_tool = compile(&w, "static-cat", src, &["-static"]);
    let out = forked(&w, &[static_tool.to_str().unwrap()], b"x\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = viasock_lines(&out);
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(lines[0].contains("statically linked"), "{lines:?}");
    assert!(out.stdout.is_empty());

    // A JVM (a program named java: its runtime threads do not survive a
    // fork), found through PATH as users call it.
    let bin = w.work.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let threaded = compile(
        &w,
        "threads",
        "#include <pthread.h>\n#include <unistd.h>\nstatic void *t(void *a){(void)a;pause();return 0;}\n\
         int main(void){pthread_t x;pthread_create(&x,0,t,0);char b[64];return read(0,b,64)<0;}\n",
        &["-pthread"],
    );
    std::fs::copy(threaded, bin.join("java")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = w
        .cmd(&["run", "--fork", "java", "-jar", "tagger.jar"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        viasock_lines(&out)[0].contains("Java virtual machine"),
        "{out:?}"
    );

    // A script whose stdin a program it starts reads.
    w.script("pipeline.sh", "#!/bin/sh\ntr a-z A-Z\n");
    let out = forked(&w, &["./pipeline.sh"], b"x\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        viasock_lines(&out)[0].contains("reads stdin itself"),
        "{out:?}"
    );
}

#[test]
fn a_tool_with_threads_at_its_first_read_is_served_with_a_warning() {
    let w = World::new();
    let tool = compile(
        &w,
        "threaded",
        r#"
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void *idle(void *arg) { (void)arg; for (;;) pause(); return 0; }
int main(void) {
    pthread_t t;
    char line[256];
    pthread_create(&t, 0, idle, 0);
    while (fgets(line, sizeof line, stdin)) fputs(line, stdout);
    puts("end");
    return 0;
}
"#,
        &["-pthread"],
    );
    let tool = tool.to_str().unwrap();
    let served = forked(&w, &[tool], b"a\nb\n");
    assert_same(&served, &direct(&w, &[tool], b"a\nb\n"), "a call");
    assert!(w.logs().contains("1 other thread"), "{}", w.logs());
}

#[test]
fn a_wrapper_that_execs_the_tool_is_served_through_env() {
    // `#!/usr/bin/env python3`, `exec` in a shell script: the process is
    // the same across the exec, and so is the one the library serves.
    let w = World::new();
    w.script(
        "wrapper.sh",
        "#!/bin/sh\nexport GREETING=hi\nexec python3 -c 'import os,sys; d=sys.stdin.read(); print(os.environ[\"GREETING\"], len(d), \"LD_PRELOAD\" in os.environ)'\n",
    );
    let served = forked(&w, &["./wrapper.sh"], b"four");
    assert_same(&served, &direct(&w, &["./wrapper.sh"], b"four"), "a call");
}

#[test]
fn programs_the_tool_starts_run_without_the_library() {
    let w = World::new();
    w.script(
        "env.py",
        "#!/usr/bin/env python3\nimport subprocess, sys\nsys.stdin.read()\n\
         sys.stdout.write(subprocess.run(['env'], capture_output=True, text=True).stdout)\n",
    );
    let out = ok_stdout(&forked(&w, &["./env.py"], b""));
    assert!(!out.contains("LD_PRELOAD"), "{out}");
    assert!(!out.contains("VIASOCK_FORK"), "{out}");
}

#[test]
fn ls_shows_the_children_of_a_fork_server_as_its_instances_and_kill_stops_it() {
    let w = World::new();
    w.script(
        "hold.py",
        "#!/usr/bin/env python3\nimport sys\nprint(len(sys.stdin.read()))\n",
    );
    ok_stdout(&forked(&w, &["./hold.py"], b""));
    let call = w.spawn(&["run", "--fork", "./hold.py"]);
    assert!(wait_until(Duration::from_secs(10), || busy_children(&w) == 1));
    let s = servers(&w);
    let instances = s[0]["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2, "{}", s[0]);
    // Told apart from a record server of the same command.
    assert_eq!(s[0]["framing"], serde_json::json!(["--fork"]), "{}", s[0]);
    let listed = String::from_utf8(w.run(&["ls"], b"").stdout).unwrap();
    assert!(listed.contains("--fork ./hold.py"), "{listed}");
    assert_eq!(instances[0]["state"], "idle", "{}", s[0]);
    // The call in flight is the server's oldest, as a record would be:
    // a hung call shows in the table.
    assert!(s[0]["oldest_in_flight_at"].is_string(), "{}", s[0]);
    assert_eq!(
        s[0]["oldest_in_flight_at"], instances[1]["oldest_in_flight_at"],
        "{}",
        s[0]
    );
    let child = instances[1]["pid"].as_u64().unwrap() as u32;
    assert!(process_alive(child));
    assert_eq!(ok_stdout(&finish(call, b"abc")), "3\n");
    let fork_server = instances[0]["pid"].as_u64().unwrap() as u32;
    assert!(w.run(&["kill", "--all"], b"").status.success());
    assert!(wait_until(Duration::from_secs(10), || !process_alive(
        fork_server
    )));
    assert!(!process_alive(child));
}

#[test]
fn an_idle_fork_server_stops_and_a_restart_loads_the_tool_again() {
    let w = World::new();
    w.script(
        "echo.py",
        "#!/usr/bin/env python3\nimport os, sys\nsys.stdin.read()\nprint(os.getppid())\n",
    );
    // Each child says whose fork it is: its parent, the fork server.
    let first: u32 = ok_stdout(&forked(&w, &["./echo.py"], b""))
        .trim()
        .parse()
        .unwrap();
    let id = String::from_utf8(w.run(&["ls", "-q"], b"").stdout).unwrap();
    let restarted = w.run(&["restart", id.trim()], b"");
    assert!(restarted.status.success(), "{restarted:?}");
    let second: u32 = ok_stdout(&forked(&w, &["./echo.py"], b""))
        .trim()
        .parse()
        .unwrap();
    assert_ne!(first, second);
    assert!(wait_until(Duration::from_secs(10), || !process_alive(
        first
    )));
    // -W 1: the server and its fork server stop once idle.
    let out = w.run(&["run", "--fork", "-W", "1", "./echo.py", "idle"], b"");
    let third: u32 = ok_stdout(&out).trim().parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || !process_alive(third)),
        "{}",
        w.logs()
    );
}

#[test]
fn a_child_leads_its_own_process_group_and_dies_with_its_fork_server() {
    let w = World::new();
    w.script(
        "group.py",
        "#!/usr/bin/env python3\nimport os, sys, time\nsys.stdin.read()\n\
         print(os.getpgid(0) == os.getpid(), flush=True)\ntime.sleep(60)\n",
    );
    let mut call = w.spawn(&["run", "--fork", "./group.py"]);
    drop(call.stdin.take());
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(call.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "True\n");
    let s = servers(&w);
    let fork_server = s[0]["instances"][0]["pid"].as_u64().unwrap() as i64;
    let child = s[0]["instances"][1]["pid"].as_u64().unwrap() as u32;
    signal(fork_server, "KILL");
    assert!(wait_until(Duration::from_secs(10), || !process_alive(
        child
    )));
    let out = finish_within(call, b"", Duration::from_secs(15));
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(viasock_lines(&out).len(), 1, "{out:?}");
}

#[test]
fn a_call_that_outlasts_its_servers_shutdown_grace_fails_with_a_message() {
    let w = python_world();
    w.script(
        "long.py",
        "#!/usr/bin/env python3\nimport sys, time\nopen(sys.argv[1]).read()\nsys.stdin.read()\n\
         time.sleep(60)\nprint('done')\n",
    );
    let call = w.spawn(&["run", "--fork", "./long.py", "model.txt"]);
    let mut call = call;
    drop(call.stdin.take());
    assert!(wait_until(Duration::from_secs(10), || busy_children(&w) == 1));
    let s = servers(&w);
    let child = s[0]["instances"][1]["pid"].as_u64().unwrap() as u32;
    // The model changes under the call: the server goes stale and stops.
    w.write("model.txt", "de\n");
    let out = finish_within(call, b"", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = viasock_lines(&out);
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(lines[0].contains("shutdown grace"), "{lines:?}");
    assert!(wait_until(Duration::from_secs(10), || !process_alive(
        child
    )));
}

/// A wrapper that `exec`s a runtime refused by name (here `cat` named
/// `node`): found when the tool reads, by what it has become.
#[test]
fn a_wrapper_that_execs_a_runtime_that_cannot_fork_is_refused() {
    let w = World::new();
    std::fs::copy("/bin/cat", w.work.join("node")).unwrap();
    w.script("wrap.sh", "#!/bin/sh\nexec ./node\n");
    let out = forked(&w, &["./wrap.sh"], b"x\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let lines = viasock_lines(&out);
    assert!(
        lines[0].contains("cannot serve this tool") && lines[0].contains("JavaScript runtime"),
        "{lines:?}"
    );
}

/// A tool with a co-process started while it loads (a pipe to it and
/// one from it): the children would share them, and callers got each
/// other's answers. Refused, as is a socket it holds.
#[test]
fn a_tool_holding_a_pipe_or_socket_when_it_reads_is_refused() {
    let w = World::new();
    w.script(
        "coproc.py",
        "#!/usr/bin/env python3\nimport subprocess, sys\n\
         h = subprocess.Popen(['cat'], stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n\
         d = sys.stdin.read()\nh.stdin.write(d.encode()); h.stdin.close()\n\
         print(h.stdout.read().decode(), end='')\n",
    );
    w.script(
        "sock.py",
        "#!/usr/bin/env python3\nimport socket, sys\na, b = socket.socketpair()\n\
         print(len(sys.stdin.read()))\n",
    );
    for (tool, what) in [("./coproc.py", "a pipe"), ("./sock.py", "a socket")] {
        let out = forked(&w, &[tool], b"alice's secret\n");
        assert_eq!(out.status.code(), Some(1), "{tool}: {out:?}");
        assert!(out.stdout.is_empty(), "{tool}: {out:?}");
        let lines = viasock_lines(&out);
        assert!(
            lines[0].contains("cannot serve this tool") && lines[0].contains(what),
            "{lines:?}"
        );
    }
}

#[test]
fn a_tool_that_opens_a_file_for_writing_before_it_reads_is_refused() {
    // Every child would share the file: tac's scratch file carried one
    // caller's input into the next caller's output; a log opened at
    // start-up gathered every call's lines.
    let w = World::new();
    w.script(
        "log.py",
        "#!/usr/bin/env python3\nimport sys\nlog = open('out.log', 'w')\n\
         d = sys.stdin.read()\nlog.write('saw ' + d)\n",
    );
    for tool in [&["tac"][..], &["./log.py"]] {
        for input in [&b"alice's secret\n"[..], b"bob\n"] {
            let out = forked(&w, tool, input);
            assert_eq!(out.status.code(), Some(1), "{tool:?}: {out:?}");
            assert!(out.stdout.is_empty(), "{tool:?}: {out:?}");
            let lines = viasock_lines(&out);
            assert!(lines[0].contains("for writing"), "{lines:?}");
        }
    }
}

#[test]
fn the_users_own_preload_reaches_the_tool_and_its_programs() {
    let w = World::new();
    let lib = w.work.join("libnothing.so");
    let src = w.write(
        "nothing.c",
        "int viasock_test_nothing(void) { return 0; }\n",
    );
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .unwrap();
    assert!(cc.status.success(), "{cc:?}");
    let tool = compile(
        &w,
        "genv",
        r#"
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    char b[64];
    const char *before = getenv("LD_PRELOAD");
    while (fgets(b, sizeof b, stdin)) {}
    const char *after = getenv("LD_PRELOAD");
    printf("before %s after %s\n", before ? before : "-", after ? after : "-");
    fflush(stdout);
    return system("printenv LD_PRELOAD");
}
"#,
        &[],
    );
    let tool = tool.to_str().unwrap();
    for _ in 0..2 {
        let served = w
            .cmd(&["run", "--fork", tool])
            .env("LD_PRELOAD", &lib)
            .output()
            .unwrap();
        let direct = Command::new(tool).env("LD_PRELOAD", &lib).output().unwrap();
        assert_same(&served, &direct, "a call");
    }
}

#[test]
fn ctrl_c_works_though_the_server_was_started_where_it_was_ignored() {
    let w = World::new();
    w.script(
        "count.py",
        "#!/usr/bin/env python3\nimport sys\nprint(len(sys.stdin.read()))\n",
    );
    // A background job of a script ignores SIGINT; so would its server.
    let first = Command::new("sh")
        .args([
            "-c",
            &format!("trap '' INT HUP; exec {BIN} run --fork ./count.py"),
        ])
        .current_dir(&w.work)
        .env("VIASOCK_DIR", &w.state)
        .env("XDG_RUNTIME_DIR", w.tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&first.stdout), "0\n", "{first:?}");
    let mut call = w.spawn(&["run", "--fork", "./count.py"]);
    let held = call.stdin.take();
    assert!(wait_until(Duration::from_secs(10), || busy_children(&w) == 1));
    signal(call.id() as i64, "INT");
    let out = finish_within(call, b"", Duration::from_secs(10));
    drop(held);
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("KeyboardInterrupt"),
        "{out:?}"
    );
}

#[test]
fn a_tool_that_reaps_its_own_children_still_gives_its_status() {
    // bash waits for its children in a SIGCHLD handler; Python can ignore
    // SIGCHLD: either took the child's status from the fork server.
    let w = World::new();
    for tool in [
        &["bash", "-c", "read x; echo \"got $x\"; exit 4"][..],
        &[
            "python3",
            "-c",
            "import signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); \
             print(sys.stdin.read().upper()); sys.exit(5)",
        ],
    ] {
        for input in [&b"one\n"[..], b"two\n"] {
            let served = forked(&w, tool, input);
            assert_same(&served, &direct(&w, tool, input), &format!("{tool:?}"));
        }
    }
}

#[test]
fn the_process_timeout_ends_what_the_child_started_too() {
    let w = World::new();
    w.script(
        "starts.py",
        "#!/usr/bin/env python3\nimport subprocess, sys\nsys.stdin.read()\n\
         subprocess.run(['sleep', '41.5'])\n",
    );
    let out = w.run(&["run", "--fork", "-w", "1", "./starts.py"], b"x\n");
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(
        wait_until(Duration::from_secs(10), || !command_running("sleep 41.5")),
        "the tool's own child outlived -w"
    );
    // Nor does it outlive a server stopped under it.
    w.script(
        "starts2.py",
        "#!/usr/bin/env python3\nimport subprocess, sys\nsys.stdin.read()\n\
         subprocess.run(['sleep', '41.6'])\n",
    );
    let call = w.spawn(&["run", "--fork", "./starts2.py"]);
    let mut call = call;
    drop(call.stdin.take());
    assert!(wait_until(Duration::from_secs(10), || command_running(
        "sleep 41.6"
    )));
    assert!(w.run(&["kill", "--all", "--force"], b"").status.success());
    let out = finish_within(call, b"", Duration::from_secs(10));
    assert!(!out.status.success(), "{out:?}");
    assert!(
        wait_until(Duration::from_secs(10), || !command_running("sleep 41.6")),
        "the tool's own child outlived its server"
    );
}

#[test]
fn a_wrapper_that_uses_descriptor_3_is_served() {
    let w = World::new();
    w.script(
        "wrap.sh",
        "#!/bin/sh\nexec 3>/dev/null 4<&-\nexec sort \"$@\"\n",
    );
    for input in [&b"b\na\n"[..], b"z\ny\n"] {
        let served = forked(&w, &["./wrap.sh"], input);
        assert_same(&served, &direct(&w, &["./wrap.sh"], input), "a call");
    }
}

#[test]
fn a_client_that_streams_its_input_to_a_fork_server_is_told_how_to_call_it() {
    let w = World::new();
    ok_stdout(&forked(&w, &["sort"], b"b\na\n"));
    let socket = w.sockets().remove(0);
    let out = w.run(&["client", socket.to_str().unwrap()], b"b\na\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let lines = viasock_lines(&out);
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(lines[0].contains("run --fork"), "{lines:?}");
}

#[test]
fn start_returns_once_a_one_shot_tool_has_loaded() {
    let w = World::new();
    w.script(
        "slow.py",
        "#!/usr/bin/env python3\nimport sys, time\ntime.sleep(1)\nd = sys.stdin.read()\nprint(len(d))\n",
    );
    let begun = Instant::now();
    let out = w.run(&["start", "--fork", "./slow.py"], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(begun.elapsed() >= Duration::from_secs(1));
    let s = servers(&w);
    assert_eq!(s[0]["instances"][0]["state"], "idle", "{}", s[0]);
    // The call after it is warm: no second load.
    assert_eq!(ok_stdout(&forked(&w, &["./slow.py"], b"abc")), "3\n");
    assert_eq!(w.logs().matches("tool started").count(), 1, "{}", w.logs());
}

#[test]
fn calls_that_wait_for_a_tool_that_fails_to_load_share_its_failure() {
    let w = World::new();
    w.script(
        "broken.py",
        "#!/usr/bin/env python3\nimport sys, time\ntime.sleep(1)\n\
         print('no model', file=sys.stderr)\nsys.exit(5)\n",
    );
    let calls: Vec<_> = (0..3)
        .map(|_| w.spawn(&["run", "--fork", "./broken.py"]))
        .collect();
    for call in calls {
        let out = finish_within(call, b"", Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(5), "{out:?}");
    }
    assert_eq!(w.logs().matches("tool started").count(), 1, "{}", w.logs());
}

#[test]
fn a_caller_that_leaves_while_it_waits_for_a_slot_is_not_counted_as_waiting() {
    let w = World::new();
    w.script(
        "hold.py",
        "#!/usr/bin/env python3\nimport sys\nprint(len(sys.stdin.read()))\n",
    );
    ok_stdout(&forked(&w, &["./hold.py"], b""));
    let mut busy = w.spawn(&["run", "--fork", "./hold.py"]);
    let held = busy.stdin.take();
    assert!(wait_until(Duration::from_secs(10), || busy_children(&w) == 1));
    let mut queued = w.spawn(&["run", "--fork", "./hold.py"]);
    assert!(wait_until(Duration::from_secs(10), || w.calls_waiting() == 1));
    queued.kill().unwrap();
    let _ = queued.wait();
    assert!(wait_until(Duration::from_secs(10), || w.calls_waiting() == 0));
    drop(held);
    assert_eq!(ok_stdout(&finish(busy, b"")), "0\n");
}

#[test]
fn a_tool_that_fails_to_load_fails_every_waiting_call_with_its_reason() {
    let w = World::new();
    w.script(
        "broken.py",
        "#!/usr/bin/env python3\nimport sys\nprint('cannot load the model', file=sys.stderr)\nsys.exit(5)\n",
    );
    let out = forked(&w, &["./broken.py"], b"x\n");
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let lines = viasock_lines(&out);
    assert!(
        lines.iter().any(|l| l.contains("cannot load the model")),
        "{out:?}"
    );
}
