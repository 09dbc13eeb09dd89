//! `viasock detect`: finds how a tool frames its records by running it
//! directly and watching it, then checks the framing found before it is
//! suggested.
//!
//! Three kinds of run, each of a fresh tool in a process group of its own:
//! an observing run gives the sample one line at a time and waits after
//! each until the tool waits for input again (seen in `/proc`), so every
//! answer is known with the line it answers; a direct run gives the whole
//! sample and closes the input, for the bytes a user gets without viasock;
//! and a framed run gives the sample as a server would (prelude first,
//! records pipelined, answers cut by the output terminator), whose bytes
//! must equal the direct run's. When the observing run shows buffered
//! output, it is tried again line-buffered; when it shows no record end,
//! with NUL-terminated records.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::core::framing::Framing;
use crate::core::records::Splitter;
use crate::core::shell;
use crate::core::{Fatal, status};

mod fork;
pub mod probe;
pub mod shape;

use probe::{Pause, Probe};
use shape::{Observation, Retry, Step};

/// The sample used when none is given: short sentences, a misspelling
/// for spell checkers, and empty lines between paragraphs, two in a row
/// once, for tools that read paragraphs.
pub const SAMPLE: &str = "The quick brown fox jumps over the lazy dog.\n\
                          Colorless green ideas sleep furiously.\n\
                          \n\
                          Helo wrold, this is a tset.\n\
                          A second line of the second paragraph.\n\
                          \n\
                          \n\
                          The end.\n\
                          \n";

/// Most runs of the tool one detection makes when looking for a servable
/// way (each loads the tool once); the direct and framed runs come on top.
const ATTEMPTS: usize = 3;

/// Lines of the sample given one at a time (each costs a pause of at
/// least [`probe::SETTLE`]); the check uses the whole sample.
const OBSERVED_LINES: usize = 40;

/// How long a tool's output must stay quiet after its input was closed
/// before a tool that neither exits nor closes its output is taken to be
/// done.
const DONE_QUIET: Duration = Duration::from_secs(2);

pub struct Options<'a> {
    /// The sample, lines ending with `\n` (NUL with `null_data`).
    pub sample: Vec<u8>,
    pub null_data: bool,
    /// Longest wait for the tool to load, or to answer one line.
    pub timeout: Duration,
    /// Told what is being done, for a person watching.
    pub progress: &'a dyn Fn(&str),
}

/// What detection found, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub servable: bool,
    /// The suggested `viasock run` command line as words, when servable
    /// and every word is UTF-8.
    pub command: Option<Vec<String>>,
    /// The same, shell-quoted, ready to paste.
    pub command_line: Option<String>,
    /// The framing options found.
    pub framing: Option<Vec<String>>,
    /// The named framing that equals them.
    pub framing_name: Option<&'static str>,
    /// What was seen, in plain words.
    pub findings: Vec<String>,
    /// Why it cannot be served, with what to try, when it cannot.
    pub reason: Option<String>,
    /// The end of the tool's stderr when it cannot be served.
    pub stderr: Option<String>,
}

/// One way of running the tool.
#[derive(Clone, Debug, PartialEq)]
struct Attempt {
    /// Words put before the command (`stdbuf -oL`).
    prefix: Vec<OsString>,
    line_end: u8,
}

impl Attempt {
    fn command(&self, command: &[OsString]) -> Vec<OsString> {
        self.prefix.iter().chain(command).cloned().collect()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.prefix.is_empty() {
            parts.push(format!(
                "under `{}`",
                shell::join(self.prefix.iter().map(OsString::as_os_str))
            ));
        }
        if self.line_end == 0 {
            parts.push("with NUL-terminated records".to_owned());
        }
        if parts.is_empty() {
            "as given".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

pub fn detect(command: &[OsString], opts: &Options) -> Result<Report, Fatal> {
    let cwd = std::env::current_dir().map_err(|e| {
        Fatal::new(
            status::FAILURE,
            format!("cannot read the working directory: {e}"),
        )
    })?;
    let program = crate::core::identity::resolve_program(&command[0], &cwd)
        .map_err(|e| Fatal::new(e.exit_code(), e.to_string()))?;
    let lines = sample_lines(&opts.sample, opts.null_data);
    let mut queue = vec![Attempt {
        prefix: Vec::new(),
        line_end: if opts.null_data { 0 } else { b'\n' },
    }];
    let mut tried = Vec::new();
    let mut findings = Vec::new();
    let mut first_failure: Option<(String, Option<String>)> = None;
    // Some run wrote its output at end of input: a one-shot tool, maybe.
    let mut answers_at_end = false;
    while !queue.is_empty() && tried.len() < ATTEMPTS {
        let attempt = queue.remove(0);
        tried.push(attempt.clone());
        let cmd = attempt.command(command);
        let observed = &lines[..lines.len().min(OBSERVED_LINES)];
        (opts.progress)(&format!(
            "watching {} answer {} sample lines, {}",
            shell::join(command.iter().map(OsString::as_os_str)),
            observed.len(),
            attempt.describe()
        ));
        let (obs, stderr) = observe(&cmd, observed, attempt.line_end, opts.timeout)?;
        answers_at_end |= !obs.at_end.is_empty() && obs.exit.is_some();
        let u = match shape::fit(&obs) {
            Ok(fit) => {
                // Findings of a later attempt say under what they hold.
                let under = if tried.len() > 1 {
                    format!("{}, ", attempt.describe())
                } else {
                    String::new()
                };
                findings.extend(fit.findings.iter().map(|f| format!("{under}{f}")));
                let checked = verify(command, &cmd, &fit.framing, &lines, opts);
                let framing = Some(fit.framing.options());
                let framing_name = fit.framing.name();
                return Ok(match checked {
                    Ok(notes) => {
                        findings.extend(notes);
                        Report {
                            framing,
                            framing_name,
                            ..Report::servable(suggestion(&cmd, &fit.framing), findings)
                        }
                    }
                    Err(reason) => Report {
                        servable: false,
                        command: None,
                        command_line: None,
                        framing,
                        framing_name,
                        findings,
                        reason: Some(reason),
                        stderr,
                    },
                });
            }
            Err(u) => u,
        };
        let said_before = first_failure
            .as_ref()
            .is_some_and(|(r, _)| r.starts_with(&u.reason));
        findings.push(format!(
            "{}: {}",
            capitalize(&attempt.describe()),
            if said_before { "the same" } else { &u.reason }
        ));
        first_failure.get_or_insert((format!("{}. {}", u.reason, u.advice), stderr));
        for retry in u.retry {
            let mut next = attempt.clone();
            match retry {
                Retry::NulRecords => next.line_end = 0,
                Retry::Unbuffered => match unbuffered(&program) {
                    Some(prefix) if attempt.prefix.is_empty() => next.prefix = prefix,
                    _ => continue,
                },
            }
            if !tried.contains(&next) && !queue.contains(&next) {
                queue.push(next);
            }
        }
    }
    let (reason, stderr) = first_failure.unwrap_or_default();
    if answers_at_end {
        match one_shot(command, &lines, opts) {
            Ok(notes) => {
                findings.extend(notes);
                let words = run_words(vec!["--fork".into()], command);
                return Ok(Report::servable(words, findings));
            }
            Err(why) => findings.push(format!("Served with --fork: {why}")),
        }
    }
    Ok(Report {
        servable: false,
        command: None,
        command_line: None,
        framing: None,
        framing_name: None,
        findings,
        reason: Some(reason),
        stderr,
    })
}

/// The sample's lines, each ended with `end`.
fn joined(lines: &[Vec<u8>], end: u8) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| l.iter().copied().chain([end]))
        .collect()
}

/// Whether a tool that answers at end of input is served with `--fork`
/// as a direct run answers the whole sample.
fn one_shot(
    command: &[OsString],
    lines: &[Vec<u8>],
    opts: &Options,
) -> Result<Vec<String>, String> {
    let whole = joined(lines, if opts.null_data { 0 } else { b'\n' });
    let (want, exited) = direct_run(command, &whole, opts.timeout)?;
    if !exited {
        return Err("a direct run did not end at end of input, as a one-shot tool does".into());
    }
    let mut notes = vec![
        "it reads its whole input before it answers, then exits: a one-shot tool, which \
         --fork serves by forking the loaded tool for each call"
            .to_owned(),
    ];
    notes.extend(fork::check(command, &whole, &want, opts)?);
    Ok(notes)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The sample's lines, without their line ends (NUL with `-z`, else `\n`).
fn sample_lines(sample: &[u8], null_data: bool) -> Vec<Vec<u8>> {
    let sep = if null_data { 0 } else { b'\n' };
    let body = sample.strip_suffix(&[sep]).unwrap_or(sample);
    body.split(|&b| b == sep).map(<[u8]>::to_vec).collect()
}

/// How to run the tool with line-buffered output: Python reads an
/// environment variable, C programs take `stdbuf`.
fn unbuffered(program: &std::path::Path) -> Option<Vec<OsString>> {
    let name = program.file_name()?.to_string_lossy().into_owned();
    let mut head = [0u8; 128];
    let n = std::fs::File::open(program)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    let first_line = head[..n].split(|&b| b == b'\n').next().unwrap_or(&[]);
    let python = name.starts_with("python")
        || (first_line.starts_with(b"#!") && memchr::memmem::find(first_line, b"python").is_some());
    if python {
        return Some(vec!["env".into(), "PYTHONUNBUFFERED=1".into()]);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .any(|d| d.join("stdbuf").is_file())
        .then(|| vec!["stdbuf".into(), "-oL".into()])
}

/// The observing run: banner, then each line on its own, then end of input.
fn observe(
    cmd: &[OsString],
    lines: &[Vec<u8>],
    line_end: u8,
    timeout: Duration,
) -> Result<(Observation, Option<String>), Fatal> {
    let mut p = spawn(cmd)?;
    let ready = p.pause(Instant::now() + timeout);
    let load = p.started.elapsed();
    let banner = std::mem::take(&mut p.out);
    let mut steps = Vec::new();
    if matches!(ready, Pause::Waiting | Pause::Quiet) {
        for line in lines {
            let began = Instant::now();
            p.give(line);
            p.give(&[line_end]);
            let pause = p.pause(began + timeout);
            let answer = std::mem::take(&mut p.out);
            let waited = match (pause, answer.is_empty()) {
                (Pause::Waiting, false) => probe::SETTLE,
                (Pause::Waiting, true) => probe::SILENT,
                _ => probe::QUIET,
            };
            steps.push(Step {
                line: line.clone(),
                answer,
                pause,
                read: p.input_taken(),
                took: began.elapsed().saturating_sub(waited),
            });
            if !matches!(pause, Pause::Waiting | Pause::Quiet) || p.overflowed {
                break;
            }
        }
    }
    let deadline = Instant::now() + timeout;
    p.close_input(deadline);
    p.drain(DONE_QUIET, deadline);
    let exit = p.exit_status(Instant::now() + DONE_QUIET);
    let stderr = stderr_text(&p.err);
    let overflowed = p.overflowed;
    Ok((
        Observation {
            line_end,
            banner,
            ready,
            load,
            steps,
            at_end: std::mem::take(&mut p.out),
            exit,
            seen_waiting: p.seen_waiting,
            overflowed,
            timeout,
        },
        stderr,
    ))
}

fn stderr_text(err: &[u8]) -> Option<String> {
    (!err.is_empty()).then(|| {
        let text = String::from_utf8_lossy(err);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    })
}

fn spawn(cmd: &[OsString]) -> Result<Probe, Fatal> {
    Probe::spawn(cmd).map_err(|e| {
        let code = match e.kind() {
            std::io::ErrorKind::NotFound => status::NOT_FOUND,
            std::io::ErrorKind::PermissionDenied => status::NOT_EXECUTABLE,
            _ => status::FAILURE,
        };
        Fatal::new(
            code,
            format!("cannot run {}: {e}", cmd[0].to_string_lossy()),
        )
    })
}

/// Checks the framing: the sample's whole records, given twice to a fresh
/// run as a server gives them, must come back both times as the same bytes
/// as a direct run of the command as the user gave it. Returns findings.
fn verify(
    original: &[OsString],
    cmd: &[OsString],
    framing: &Framing,
    lines: &[Vec<u8>],
    opts: &Options,
) -> Result<Vec<String>, String> {
    let whole = joined(lines, if framing.null_data { 0 } else { b'\n' });
    // Only whole records: a call that ends inside one fails.
    let mut split = Splitter::new(framing.input().map_err(|e| e.to_string())?);
    split.push(&whole);
    let records = split.complete();
    let mut sample = Vec::new();
    split.take_into(records, &mut sample);
    if records == 0 {
        return Err("no line of the sample ends a record under the framing found".to_owned());
    }
    (opts.progress)("checking the framing against a direct run");
    let mut notes = Vec::new();
    let (want, exited) = direct_run(original, &sample, opts.timeout)?;
    if !exited {
        notes.push(format!(
            "a direct run did not end within {} s of its end of input; its output until then \
             was compared",
            DONE_QUIET.as_secs()
        ));
    }
    let Served {
        prelude,
        first,
        second,
    } = framed_run(cmd, framing, &sample, records, opts.timeout)?;
    let mismatch = |got: &[u8], want: &[u8], when: &str| {
        let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
        format!(
            "{when}, the sample through the framing found gives other bytes than a direct run \
             (from byte {at}: {} instead of {})",
            shape::excerpt(&got[at..]),
            shape::excerpt(&want[at..])
        )
    };
    let once: Vec<u8> = [&prelude[..], &first].concat();
    if once != want {
        return Err(
            mismatch(&once, &want, "Given once") + "; its output may differ from run to run"
        );
    }
    let twice: Vec<u8> = [&prelude[..], &second].concat();
    if twice != want {
        return Err(
            mismatch(&twice, &want, "Given a second time to the same run")
                + ": it keeps state from one record to the next, and a served tool sees the \
               records of every call in one run",
        );
    }
    notes.push(format!(
        "checked: the sample's {} {}, given twice to one run as viasock gives them, came back \
         both times as the {} bytes of a direct run",
        records,
        if records == 1 { "record" } else { "records" },
        want.len()
    ));
    Ok(notes)
}

/// What the tool writes for `sample` with its input closed after it, and
/// whether its output ended (else it was taken once quiet).
fn direct_run(
    cmd: &[OsString],
    sample: &[u8],
    timeout: Duration,
) -> Result<(Vec<u8>, bool), String> {
    let mut p = spawn(cmd).map_err(|e| e.message)?;
    let deadline = Instant::now() + timeout;
    p.give(sample);
    p.close_input(deadline);
    let ended = p.drain(DONE_QUIET, deadline);
    if p.overflowed {
        return Err(format!(
            "a direct run wrote more than {} MiB for the sample",
            probe::OUTPUT_LIMIT >> 20
        ));
    }
    Ok((std::mem::take(&mut p.out), ended))
}

/// What two served calls of one sample get from one run of the tool.
struct Served {
    prelude: Vec<u8>,
    first: Vec<u8>,
    second: Vec<u8>,
}

/// Gives `sample` twice to one run as a server would, cutting the answers
/// by the output terminator.
fn framed_run(
    cmd: &[OsString],
    framing: &Framing,
    sample: &[u8],
    records: usize,
    timeout: Duration,
) -> Result<Served, String> {
    let output = framing.output().map_err(|e| e.to_string())?;
    let mut split = framing.output_splitter(&output);
    let mut p = spawn(cmd).map_err(|e| e.message)?;
    let prelude = framing.prelude_records();
    let short = |got: usize, of: usize, ended: bool| {
        format!(
            "given as viasock gives it, the sample got {got} of its {of} answers{}",
            if ended {
                " before the tool ended"
            } else {
                " in time"
            }
        )
    };
    await_records(&mut p, &mut split, prelude, timeout).map_err(|ended| {
        format!(
            "given as viasock gives it, the tool's prelude of {prelude} lines did not come{}",
            if ended {
                " before the tool ended"
            } else {
                " in time"
            }
        )
    })?;
    let mut parts = [Vec::new(), Vec::new(), Vec::new()];
    split.take_into(prelude, &mut parts[0]);
    for part in &mut parts[1..] {
        p.give(sample);
        await_records(&mut p, &mut split, records, timeout)
            .map_err(|ended| short(split.complete(), records, ended))?;
        split.take_into(records, part);
    }
    p.pause(Instant::now() + timeout);
    split.push(&std::mem::take(&mut p.out));
    if !split.untaken().is_empty() {
        return Err(format!(
            "given as viasock gives it, the sample got more than one answer per record (then \
             {})",
            shape::excerpt(split.untaken())
        ));
    }
    let [prelude, first, second] = parts;
    Ok(Served {
        prelude,
        first,
        second,
    })
}

/// Reads the tool's output into `split` until it holds `n` records, with
/// `timeout` for each; the error says whether the tool ended.
fn await_records(
    p: &mut Probe,
    split: &mut Splitter,
    n: usize,
    timeout: Duration,
) -> Result<(), bool> {
    let mut deadline = Instant::now() + timeout;
    let mut seen = split.complete();
    loop {
        split.push(&std::mem::take(&mut p.out));
        if split.complete() >= n {
            return Ok(());
        }
        if split.complete() > seen {
            seen = split.complete();
            deadline = Instant::now() + timeout;
        }
        let pause = p.pause(Instant::now() + probe::TICK);
        if pause == Pause::Ended || Instant::now() >= deadline {
            split.push(&std::mem::take(&mut p.out));
            if split.complete() >= n {
                return Ok(());
            }
            return Err(pause == Pause::Ended);
        }
    }
}

/// The `viasock run` command line that serves `cmd` with `framing`.
fn suggestion(cmd: &[OsString], framing: &Framing) -> Vec<OsString> {
    let options = match framing.name() {
        Some("lines") => Vec::new(),
        Some(name) => vec!["--framing".into(), name.into()],
        None => framing.options().into_iter().map(OsString::from).collect(),
    };
    run_words(options, cmd)
}

/// `viasock run OPTIONS [--] CMD...`, with the `--` a command that starts
/// with `-` needs.
fn run_words(options: Vec<OsString>, cmd: &[OsString]) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["viasock".into(), "run".into()];
    out.extend(options);
    if cmd[0].as_encoded_bytes().starts_with(b"-") {
        out.push("--".into());
    }
    out.extend(cmd.iter().cloned());
    out
}

impl Report {
    /// A servable verdict: the command line to paste, and what was seen.
    fn servable(words: Vec<OsString>, findings: Vec<String>) -> Self {
        Self {
            servable: true,
            command: words
                .iter()
                .map(|w| w.to_str().map(str::to_owned))
                .collect(),
            command_line: Some(shell::join(words.iter().map(OsString::as_os_str))),
            framing: None,
            framing_name: None,
            findings,
            reason: None,
            stderr: None,
        }
    }
}
