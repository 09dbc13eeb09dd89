//! How a tool's input and output are cut into records: the options `-t`,
//! `-T`, `-P`, `--prelude-lines` and `-z`, and the named framings that
//! stand for common sets of them.

use std::fmt;

use crate::core::records::{Splitter, Terminator};
use crate::core::shell;

/// The framing options of one tool. They change what the output is, so
/// they belong to a server's identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Framing {
    /// `-t`: a line of input matching it ends a record; `""` is every line.
    pub input_terminator: String,
    /// `-T`: the same for the tool's output.
    pub output_terminator: String,
    /// `-P`: records (under `-T`) the tool writes at start-up.
    pub prelude: usize,
    /// `--prelude-lines`: lines the tool writes at start-up, before the
    /// `-P` records; each is a record of its own whatever `-T` says.
    pub prelude_lines: usize,
    /// `-z`: lines end with NUL instead of `\n`, both ways.
    pub null_data: bool,
}

/// A named framing: what a user can say instead of patterns that would
/// have to survive a shell or a Makefile.
#[derive(Debug)]
pub struct Named {
    pub name: &'static str,
    /// What it is for, in a few words.
    pub about: &'static str,
    input_terminator: &'static str,
    output_terminator: &'static str,
    prelude_lines: usize,
    null_data: bool,
}

/// The named framings, in the order `--help` lists them.
pub const NAMED: &[Named] = &[
    Named {
        name: "lines",
        about: "every line is a record, both ways (the default)",
        input_terminator: "",
        output_terminator: "",
        prelude_lines: 0,
        null_data: false,
    },
    Named {
        name: "blank",
        about: "records end with an empty line, both ways (paragraphs, CoNLL sentences)",
        input_terminator: "^$",
        output_terminator: "^$",
        prelude_lines: 0,
        null_data: false,
    },
    Named {
        name: "blank-answers",
        about: "every input line is a record; answers end with an empty line",
        input_terminator: "",
        output_terminator: "^$",
        prelude_lines: 0,
        null_data: false,
    },
    Named {
        name: "ispell",
        about: "ispell pipe mode (hunspell -a, aspell -a): a one-line banner, answers \
                ending with an empty line",
        input_terminator: "",
        output_terminator: "^$",
        prelude_lines: 1,
        null_data: false,
    },
    Named {
        name: "eos",
        about: "every input line is a record; answers end with an `EOS` line (MeCab, JUMAN)",
        input_terminator: "",
        output_terminator: "^EOS$",
        prelude_lines: 0,
        null_data: false,
    },
    Named {
        name: "nul",
        about: "every record ends with a NUL byte, both ways (null-flush modes)",
        input_terminator: "",
        output_terminator: "",
        prelude_lines: 0,
        null_data: true,
    },
];

impl Named {
    pub fn framing(&self) -> Framing {
        Framing {
            input_terminator: self.input_terminator.to_owned(),
            output_terminator: self.output_terminator.to_owned(),
            prelude: 0,
            prelude_lines: self.prelude_lines,
            null_data: self.null_data,
        }
    }

    pub fn find(name: &str) -> Option<&'static Named> {
        NAMED.iter().find(|n| n.name == name)
    }
}

impl Framing {
    fn line_end(&self) -> u8 {
        if self.null_data { 0 } else { b'\n' }
    }

    /// The rule that ends a client's records.
    pub fn input(&self) -> Result<Terminator, regex::Error> {
        Ok(Terminator::new(&self.input_terminator)?.with_line_end(self.line_end()))
    }

    /// The rule that ends the tool's answers.
    pub fn output(&self) -> Result<Terminator, regex::Error> {
        Ok(Terminator::new(&self.output_terminator)?.with_line_end(self.line_end()))
    }

    /// A splitter for the tool's output from its start, prelude lines
    /// counted.
    pub fn output_splitter(&self, output: &Terminator) -> Splitter {
        Splitter::with_leading_lines(output.clone(), self.prelude_lines)
    }

    /// Records the tool writes at start-up, prelude lines included.
    pub fn prelude_records(&self) -> usize {
        self.prelude_lines + self.prelude
    }

    /// The options that give this framing, shortest form: those that
    /// differ from the default, as `viasock run` takes them.
    pub fn options(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.input_terminator.is_empty() {
            out.extend(["-t".to_owned(), self.input_terminator.clone()]);
        }
        if !self.output_terminator.is_empty() {
            out.extend(["-T".to_owned(), self.output_terminator.clone()]);
        }
        if self.prelude_lines > 0 {
            out.extend(["--prelude-lines".to_owned(), self.prelude_lines.to_string()]);
        }
        if self.prelude > 0 {
            out.extend(["-P".to_owned(), self.prelude.to_string()]);
        }
        if self.null_data {
            out.push("-z".to_owned());
        }
        out
    }

    /// Whether both patterns compile; if not, why, naming the user's
    /// pattern (not the anchored one built from it). A server is only
    /// started for a framing that passes, so a call that finds its server
    /// has no need to ask: compiling a pattern costs more than the rest
    /// of a warm call.
    pub fn check(&self) -> Result<(), String> {
        for (flag, pattern) in [
            ("-t", &self.input_terminator),
            ("-T", &self.output_terminator),
        ] {
            if let Err(e) = regex::Regex::new(pattern) {
                let why = match &e {
                    regex::Error::Syntax(text) => text
                        .lines()
                        .rev()
                        .find_map(|l| l.strip_prefix("error: "))
                        .unwrap_or("not a valid pattern")
                        .to_owned(),
                    other => other.to_string(),
                };
                return Err(format!(
                    "bad {flag} pattern {}: {why}",
                    shell::quote(pattern.as_ref())
                ));
            }
        }
        Ok(())
    }

    /// The name of a named framing that is exactly this one.
    pub fn name(&self) -> Option<&'static str> {
        NAMED.iter().find(|n| n.framing() == *self).map(|n| n.name)
    }
}

/// The options, shell-quoted (`-t '' -T ''` for the default, so that a
/// message always names what it talks about).
impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut options = self.options();
        if options.is_empty() {
            options = ["-t", "", "-T", ""].map(String::from).to_vec();
        }
        f.write_str(&shell::join(options.iter().map(std::ffi::OsStr::new)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_framing_compiles_and_is_found_by_its_options() {
        for n in NAMED {
            let f = n.framing();
            f.input().unwrap();
            f.output().unwrap();
            assert_eq!(f.name(), Some(n.name), "{}", n.name);
        }
    }

    #[test]
    fn options_are_the_shortest_form() {
        assert!(Framing::default().options().is_empty());
        assert_eq!(Framing::default().to_string(), "-t '' -T ''");
        let f = Named::find("ispell").unwrap().framing();
        assert_eq!(f.to_string(), "-T '^$' --prelude-lines 1");
        assert_eq!(f.prelude_records(), 1);
    }
}
