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

use std::ffi::{OsStr, OsString};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::core::framing::Framing;
use crate::core::records::Splitter;
use crate::core::shell;
use crate::core::{Fatal, status};

pub mod probe;
pub mod shape;

use probe::{Pause, Probe};
use shape::{Observation, Retry, Step};

/// The sample used when none is given: short sentences, a misspelling
/// for spell checkers, and empty lines for tools that read paragraphs.
pub const SAMPLE: &str = "The quick brown fox jumps over the lazy dog.\n\
                          Colorless green ideas sleep furiously.\n\
                          \n\
                          Helo wrold, this is a tset.\n\
                          A second line of the second paragraph.\n\
                          \n";

/// Most runs of the tool one detection makes when looking for a servable
/// way (each loads the tool once); the direct and framed runs come on top.
const ATTEMPTS: usize = 3;

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
    /// The suggested `viasock run` command line, when servable.
    pub command: Option<Vec<String>>,
    /// The framing options in it, and the name of a named framing that
    /// equals them.
    pub framing: Option<Vec<String>>,
    pub framing_name: Option<&'static str>,
    /// What was seen, in plain words.
    pub findings: Vec<String>,
    /// Why it cannot be served, when it cannot.
    pub reason: Option<String>,
    /// The tool's stderr in the run that decided, when it wrote any.
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
    let mut queue = vec![Attempt {
        prefix: Vec::new(),
        line_end: if opts.null_data { 0 } else { b'\n' },
    }];
    let mut tried = Vec::new();
    let mut findings = Vec::new();
    let mut first_failure: Option<(String, Option<String>)> = None;
    let mut seen_reasons: Vec<String> = Vec::new();
    while let Some(attempt) = queue.first().cloned() {
        queue.remove(0);
        if tried.len() == ATTEMPTS {
            break;
        }
        tried.push(attempt.clone());
        let cmd = attempt.command(command);
        let lines = sample_lines(&opts.sample, opts.null_data);
        (opts.progress)(&format!(
            "watching {} answer {} sample lines, {}",
            shell::join(command.iter().map(OsString::as_os_str)),
            lines.len(),
            attempt.describe()
        ));
        let (obs, stderr) = observe(&cmd, &lines, attempt.line_end, opts.timeout)?;
        match shape::fit(&obs) {
            Ok(fit) => {
                let mut fit = fit;
                if tried.len() > 1 {
                    findings.push(format!(
                        "{}, it can be served:",
                        capitalize(&attempt.describe())
                    ));
                }
                findings.append(&mut fit.findings);
                let used: Vec<&[u8]> = fit.lines.iter().map(|&i| &lines[i][..]).collect();
                let checked = verify(command, &cmd, &fit.framing, &used, opts);
                let framing_name = fit.framing.name();
                return Ok(match checked {
                    Ok(note) => {
                        findings.push(note);
                        Report {
                            servable: true,
                            command: Some(suggestion(&cmd, &fit.framing)),
                            framing: Some(fit.framing.options()),
                            framing_name,
                            findings,
                            reason: None,
                            stderr: None,
                        }
                    }
                    Err(reason) => Report {
                        servable: false,
                        command: None,
                        framing: Some(fit.framing.options()),
                        framing_name,
                        findings,
                        reason: Some(reason),
                        stderr,
                    },
                });
            }
            Err(u) => {
                let same = seen_reasons.contains(&u.reason);
                findings.push(format!(
                    "{}: {}",
                    capitalize(&attempt.describe()),
                    if same { "the same" } else { &u.reason }
                ));
                seen_reasons.push(u.reason.clone());
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
        }
    }
    let (reason, stderr) = first_failure.unwrap_or_default();
    Ok(Report {
        servable: false,
        command: None,
        framing: None,
        framing_name: None,
        findings,
        reason: Some(reason),
        stderr,
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The sample's lines, without their line ends. A sample given with `-z`
/// is cut at NULs; any other at newlines (and tried with NUL ends as is).
fn sample_lines(sample: &[u8], null_data: bool) -> Vec<Vec<u8>> {
    let sep = if null_data { 0 } else { b'\n' };
    let body = sample.strip_suffix(&[sep]).unwrap_or(sample);
    if body.is_empty() {
        return Vec::new();
    }
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
            let took = began.elapsed().saturating_sub(if pause == Pause::Waiting {
                Duration::from_millis(30)
            } else {
                probe::QUIET
            });
            steps.push(Step {
                line: line.clone(),
                answer: std::mem::take(&mut p.out),
                pause,
                read: p.input_taken(),
                took,
            });
            if !matches!(pause, Pause::Waiting | Pause::Quiet) {
                break;
            }
        }
    }
    let deadline = Instant::now() + timeout;
    p.close_input(deadline);
    p.drain(deadline);
    let exit = p.exit_status(deadline);
    let stderr = stderr_text(&p.err);
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

/// Checks the framing: the sample's whole records, given as a server
/// gives them, must come back as the same bytes as a direct run of the
/// command as the user gave it. Returns what was checked.
fn verify(
    original: &[OsString],
    cmd: &[OsString],
    framing: &Framing,
    lines: &[&[u8]],
    opts: &Options,
) -> Result<String, String> {
    let end = if framing.null_data { 0 } else { b'\n' };
    let sample: Vec<u8> = lines
        .iter()
        .flat_map(|l| l.iter().copied().chain([end]))
        .collect();
    (opts.progress)("checking the framing against a direct run");
    let want = direct_run(original, &sample, opts.timeout)?;
    let got = framed_run(cmd, framing, &sample, opts.timeout)?;
    if got != want {
        let at = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        return Err(format!(
            "through the framing found the sample gives other bytes than a direct run (from \
             byte {at}: {} instead of {}); the tool's output may differ from run to run",
            shape::excerpt(&got[at..]),
            shape::excerpt(&want[at..])
        ));
    }
    Ok(format!(
        "checked: the {} of the sample, given as viasock gives them, come back as the same {} \
         bytes as a direct run",
        match lines.len() {
            1 => "line".to_owned(),
            n => format!("{n} lines"),
        },
        want.len()
    ))
}

/// What the tool writes for `sample` with its input closed after it.
fn direct_run(cmd: &[OsString], sample: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
    let mut p = spawn(cmd).map_err(|e| e.message)?;
    let deadline = Instant::now() + timeout;
    p.give(sample);
    p.close_input(deadline);
    p.drain(deadline);
    if p.exit_status(deadline).is_none() {
        return Err(format!(
            "a direct run with the sample did not end within {} s of its end of input",
            timeout.as_secs_f64()
        ));
    }
    Ok(std::mem::take(&mut p.out))
}

/// What a served call of `sample` gives: the prelude, then as many answers
/// as there are records, cut by the output terminator.
fn framed_run(
    cmd: &[OsString],
    framing: &Framing,
    sample: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let bad = |e: regex::Error| e.to_string();
    let mut input = Splitter::new(framing.input().map_err(bad)?);
    input.push(sample);
    input.finish().map_err(|e| e.to_string())?;
    let records = input.complete();
    let output = framing.output().map_err(bad)?;
    let mut split = framing.output_splitter(&output);
    let mut p = spawn(cmd).map_err(|e| e.message)?;
    let prelude = framing.prelude_records();
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
    p.give(sample);
    await_records(&mut p, &mut split, prelude + records, timeout).map_err(|ended| {
        format!(
            "given as viasock gives it, the sample got {} of its {records} answers{}",
            split.complete().saturating_sub(prelude),
            if ended {
                " before the tool ended"
            } else {
                " in time"
            }
        )
    })?;
    p.pause(Instant::now() + timeout);
    split.push(&std::mem::take(&mut p.out));
    let mut got = Vec::new();
    split.take_into(prelude + records, &mut got);
    if !split.untaken().is_empty() {
        return Err(format!(
            "given as viasock gives it, the sample got more than one answer per record \
             (then {})",
            shape::excerpt(split.untaken())
        ));
    }
    Ok(got)
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
    while split.complete() < n {
        let pause = p.pause(Instant::now() + probe::TICK);
        split.push(&std::mem::take(&mut p.out));
        if split.complete() > seen {
            seen = split.complete();
            deadline = Instant::now() + timeout;
        }
        if split.complete() >= n {
            break;
        }
        if pause == Pause::Ended || Instant::now() >= deadline {
            return Err(pause == Pause::Ended);
        }
    }
    Ok(())
}

/// The `viasock run` command line that serves `cmd` with `framing`.
fn suggestion(cmd: &[OsString], framing: &Framing) -> Vec<String> {
    let mut out = vec!["viasock".to_owned(), "run".to_owned()];
    match framing.name() {
        Some("lines") => {}
        Some(name) => out.extend(["--framing".to_owned(), name.to_owned()]),
        None => out.extend(framing.options()),
    }
    if cmd[0].as_encoded_bytes().starts_with(b"-") {
        out.push("--".to_owned());
    }
    out.extend(cmd.iter().map(|a| a.to_string_lossy().into_owned()));
    out
}

/// A command line for people: shell-quoted, ready to paste.
pub fn shown(words: &[String]) -> String {
    shell::join(words.iter().map(OsStr::new))
}
