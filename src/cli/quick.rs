//! The `viasock run` command line read without clap, for the warm path.
//!
//! Building clap's command tree costs a third of a millisecond at every
//! start, as much as the rest of a warm call. A plain `run` command line
//! is read here instead; anything this reader does not take for certain
//! (help, a misspelt option, a bad value, an option given twice, a
//! cluster it does not know) is left to clap, which then says what is
//! wrong exactly as always. A test checks that every command line read
//! here means what clap makes of it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use lexopt::Arg::{Long, Short, Value};

use crate::cli::{RunArgs, ToolArgs, parse_secs};
use crate::core::framing::Named;

/// A `run` command line: the state directory (`--dir` or `VIASOCK_DIR`)
/// and the call's options.
#[derive(Debug)]
pub struct QuickRun {
    pub dir: Option<PathBuf>,
    pub args: RunArgs,
}

/// Reads `argv` (program name first) as a `run` command line, or `None`
/// for clap to read. `env_dir`: the value of `VIASOCK_DIR`.
pub fn run(argv: &[OsString], env_dir: Option<&OsStr>) -> Option<QuickRun> {
    let mut words = argv.get(1..)?.iter();
    let mut dir = None;
    // `--dir` before the subcommand (read by hand: `-- run` is no `run`).
    loop {
        let word = words.next()?.as_bytes();
        let value = match word {
            b"run" => break,
            b"--dir" => words.next()?.as_bytes(),
            _ => word
                .strip_prefix(b"--dir=")
                .filter(|v| !v.starts_with(b"="))?,
        };
        if value.is_empty() || value.starts_with(b"-") {
            return None;
        }
        set(&mut dir, PathBuf::from(OsStr::from_bytes(value)))?;
    }
    let mut p = lexopt::Parser::from_args(words);
    let mut t = ToolArgs::default();
    let mut no_spawn = false;
    let program = loop {
        match p.next().ok()?? {
            Short('t') | Long("input-terminator") => {
                set(&mut t.input_terminator, text(&mut p)?)?;
            }
            Short('T') | Long("output-terminator") => {
                set(&mut t.output_terminator, text(&mut p)?)?;
            }
            Short('P') | Long("output-prelude") => set(&mut t.output_prelude, count(&mut p)?)?,
            Long("prelude-lines") => set(&mut t.prelude_lines, count(&mut p)?)?,
            Short('z') | Long("null-data") => flag(&mut t.null_data)?,
            Long("framing") => {
                let name = text(&mut p)?;
                Named::find(&name)?;
                set(&mut t.framing, name)?;
            }
            Short('w') | Long("process-timeout") => {
                set(&mut t.process_timeout, parse_secs(&text(&mut p)?).ok()?)?;
            }
            Short('W') | Long("server-timeout") => {
                set(&mut t.server_timeout, parse_secs(&text(&mut p)?).ok()?)?;
            }
            Short('j') | Long("instances") => {
                let n = u32::try_from(count(&mut p)?).ok().filter(|&n| n >= 1)?;
                set(&mut t.instances, n)?;
            }
            Long("interleave") => flag(&mut t.interleave)?,
            Long("fork") => flag(&mut t.fork)?,
            Long("watch") => t.watch.push(path(&mut p)?),
            Long("env") => t.env.push(text(&mut p)?),
            Short('l') | Long("log") => set(&mut t.log, path(&mut p)?)?,
            Long("no-spawn") => flag(&mut no_spawn)?,
            Long("dir") => set(&mut dir, path(&mut p)?)?,
            Value(program) => break program,
            _ => return None,
        }
    };
    // --fork takes none of the record options: clap says so.
    let record_options = t.input_terminator.is_some()
        || t.output_terminator.is_some()
        || t.output_prelude.is_some()
        || t.prelude_lines.is_some()
        || t.null_data
        || t.framing.is_some()
        || t.interleave;
    if t.fork && record_options {
        return None;
    }
    t.command = std::iter::once(program).chain(p.raw_args().ok()?).collect();
    let dir = match (dir, env_dir) {
        (Some(d), _) => Some(d),
        // clap's reading of an empty variable is its own.
        (None, Some(e)) if e.is_empty() => return None,
        (None, e) => e.map(PathBuf::from),
    };
    Some(QuickRun {
        dir,
        args: RunArgs { tool: t, no_spawn },
    })
}

/// An option's value. One in the next argument that starts with `-`, or
/// an attached one that starts with `=`, is clap's to judge.
fn value(p: &mut lexopt::Parser) -> Option<OsString> {
    match p.optional_value() {
        Some(v) if v.as_encoded_bytes().starts_with(b"=") => None,
        Some(v) => Some(v),
        None => p
            .value()
            .ok()
            .filter(|v| !v.as_encoded_bytes().starts_with(b"-")),
    }
}

fn text(p: &mut lexopt::Parser) -> Option<String> {
    value(p)?.into_string().ok()
}

/// A path: clap refuses an empty one.
fn path(p: &mut lexopt::Parser) -> Option<PathBuf> {
    value(p).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// A count in plain digits.
fn count(p: &mut lexopt::Parser) -> Option<usize> {
    let v = text(p)?;
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// An option that may be given once.
fn set<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(v);
            Some(())
        }
    }
}

fn flag(slot: &mut bool) -> Option<()> {
    if *slot {
        return None;
    }
    *slot = true;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use proptest::prelude::*;
    use std::os::unix::ffi::OsStringExt;

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("viasock")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// What clap makes of a command line, if it is a `run`.
    fn clap_reading(argv: &[OsString]) -> Option<(Option<PathBuf>, RunArgs)> {
        match Cli::try_parse_from(argv).ok()? {
            Cli {
                dir,
                command: Command::Run(args),
            } => Some((dir, args)),
            _ => None,
        }
    }

    fn env_dir() -> Option<OsString> {
        std::env::var_os("VIASOCK_DIR")
    }

    #[test]
    fn common_command_lines_are_read_here() {
        for words in [
            &["run", "cat"][..],
            &["run", "-j", "4", "--interleave", "./tag", "-m", "models/en"],
            &[
                "run", "-t", "^$", "-T", "^$", "-P", "1", "-w", "60", "java", "-jar", "p.jar",
            ],
            &[
                "run",
                "--framing",
                "ispell",
                "hunspell",
                "-a",
                "-d",
                "en_US",
            ],
            &["run", "--framing=eos", "-W", "10m", "--", "mecab"],
            &[
                "--dir",
                "/tmp/s",
                "run",
                "--no-spawn",
                "-z",
                "-l",
                "x.log",
                "tr",
                "a",
                "b",
            ],
            &[
                "run",
                "--watch",
                "m",
                "--watch=n",
                "--env",
                "LANG",
                "-j2",
                "cat",
                "--help",
            ],
            &["run", "-t", "", "cat"],
            &["run", "--fork", "-j", "3", "-w", "5", "python3", "tag.py"],
        ] {
            let argv = argv(words);
            let quick = run(&argv, env_dir().as_deref()).unwrap_or_else(|| panic!("{words:?}"));
            assert_eq!(
                Some((quick.dir, quick.args)),
                clap_reading(&argv),
                "{words:?}"
            );
        }
    }

    #[test]
    fn what_is_not_certain_is_left_to_clap() {
        for words in [
            &["run"][..],
            &["run", "--help"],
            &["--version"],
            &["run", "-j", "0", "cat"],
            &["run", "-t", "a", "-t", "b", "cat"],
            &["run", "--interleave", "--interleave", "cat"],
            &["run", "--framing", "nope", "cat"],
            &["run", "--fork", "-t", "^$", "cat"],
            &["run", "--fork", "--fork", "cat"],
            &["run", "--bogus", "cat"],
            &["run", "-w", "x", "cat"],
            &["ls"],
        ] {
            assert!(run(&argv(words), None).is_none(), "{words:?}");
        }
    }

    /// Words a command line is made of: every option of `run` in each of
    /// its spellings, good and bad values, and tools.
    fn word() -> impl Strategy<Value = OsString> {
        const WORDS: &[&str] = &[
            "run",
            "--dir",
            "d",
            "-t",
            "--input-terminator",
            "-T",
            "--output-terminator",
            "^$",
            "",
            "-P",
            "--output-prelude",
            "--prelude-lines",
            "1",
            "0",
            "01",
            "+2",
            "-1",
            "999999999999",
            "-z",
            "--null-data",
            "--framing",
            "ispell",
            "lines",
            "nope",
            "--framing=eos",
            "-w",
            "--process-timeout",
            "-W",
            "--server-timeout",
            "1.5",
            "10m",
            "NaN",
            "1e-10",
            "-j",
            "--instances",
            "2",
            "--interleave",
            "--fork",
            "--watch",
            "--watch=",
            "m",
            "--env",
            "X",
            "-l",
            "--log",
            "--no-spawn",
            "--",
            "-zj2",
            "-j2",
            "-j=2",
            "-t=x",
            "-t==x",
            "-tx",
            "-zt",
            "--input-terminator=^$",
            "-h",
            "--help",
            "-V",
            "cat",
            "-n",
            "é",
            "-",
            "-x",
            "--bogus",
            "=",
            "--interleave=1",
            "-zz",
        ];
        prop_oneof![
            8 => proptest::sample::select(WORDS).prop_map(OsString::from),
            1 => Just(OsString::from_vec(vec![b'-', b't', 0xff])),
            1 => Just(OsString::from_vec(vec![0xfe, b'x'])),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8000))]

        /// Whatever this reader takes, clap takes too, and means the same.
        #[test]
        fn every_command_line_read_here_means_what_clap_makes_of_it(
            words in proptest::collection::vec(word(), 0..9),
            start_with_run in any::<bool>(),
        ) {
            let mut line = vec![OsString::from("viasock")];
            if start_with_run {
                line.push("run".into());
            }
            line.extend(words);
            if let Some(quick) = run(&line, env_dir().as_deref()) {
                prop_assert_eq!(Some((quick.dir, quick.args)), clap_reading(&line), "{:?}", line);
            }
        }
    }
}
