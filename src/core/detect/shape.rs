//! From what a tool was seen doing, line by line, to the framing that
//! serves it, or the reason none can.

use std::time::Duration;

use crate::core::detect::probe::Pause;
use crate::core::framing::Framing;

/// One line of the sample, given on its own.
#[derive(Debug)]
pub struct Step {
    /// The line's text, without its line end.
    pub line: Vec<u8>,
    /// What the tool wrote after it, until it waited for input again.
    pub answer: Vec<u8>,
    pub pause: Pause,
    /// Whether the tool read all of it.
    pub read: bool,
    pub took: Duration,
}

/// Everything one observing run saw.
#[derive(Debug)]
pub struct Observation {
    pub line_end: u8,
    /// What the tool wrote before it first waited for input.
    pub banner: Vec<u8>,
    /// How that first wait ended.
    pub ready: Pause,
    pub load: Duration,
    /// The lines given, until one was not answered in time or the tool ended.
    pub steps: Vec<Step>,
    /// What it wrote after its input was closed.
    pub at_end: Vec<u8>,
    /// Its exit status after its input was closed (`None`: killed).
    pub exit: Option<i32>,
    /// Ever seen blocked reading its stdin.
    pub seen_waiting: bool,
    /// It wrote more than the output limit, and was cut off there.
    pub overflowed: bool,
    /// The deadline of each wait.
    pub timeout: Duration,
}

/// What another run could change to get a servable tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Its output looks buffered: run it with line-buffered output.
    Unbuffered,
    /// It may want NUL-terminated records.
    NulRecords,
}

/// Why the tool cannot be served as observed.
#[derive(Debug)]
pub struct Unservable {
    /// What was seen that rules it out.
    pub reason: String,
    /// What a user could try.
    pub advice: String,
    pub retry: Vec<Retry>,
}

/// A framing that fits what was seen, with the lines of the sample it
/// holds for (whole records; empty lines left out when the tool does not
/// answer them).
#[derive(Debug)]
pub struct Fit {
    pub framing: Framing,
    pub findings: Vec<String>,
}

fn unservable(reason: impl Into<String>, advice: impl Into<String>) -> Unservable {
    Unservable {
        reason: reason.into(),
        advice: advice.into(),
        retry: Vec::new(),
    }
}

/// The advice for a tool that stops reading.
const KEEP_READING: &str = "viasock serves tools that keep reading their input and answer each \
                            record as it comes";

/// A short, printable view of some output.
pub fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 60;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    let shown: String = text.escape_debug().collect();
    if bytes.len() > MAX {
        format!("\"{shown}...\"")
    } else {
        format!("\"{shown}\"")
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The lines of `bytes`, each without its line end; `None` if the last
/// does not end.
fn lines(bytes: &[u8], end: u8) -> Option<Vec<&[u8]>> {
    let body = bytes.strip_suffix(&[end])?;
    Some(body.split(|&b| b == end).collect())
}

/// The pattern that matches exactly this line text, byte for byte (bytes
/// that are not UTF-8 as `(?-u:\xHH)`).
fn exact(text: &[u8]) -> String {
    let mut body = String::new();
    for chunk in text.utf8_chunks() {
        body.push_str(&regex::escape(chunk.valid()));
        for b in chunk.invalid() {
            body.push_str(&format!("(?-u:\\x{b:02X})"));
        }
    }
    format!("^{body}$")
}

/// Names a line for people: "an empty line", "the line \"EOS\"".
fn line_name(text: &[u8]) -> String {
    if text.is_empty() {
        "an empty line".into()
    } else {
        format!("the line {}", excerpt(text))
    }
}

/// The same without an article, after "each": "empty line", "line \"EOS\"".
fn line_kind(text: &[u8]) -> String {
    if text.is_empty() {
        "empty line".into()
    } else {
        format!("line {}", excerpt(text))
    }
}

pub fn fit(o: &Observation) -> Result<Fit, Unservable> {
    let mut findings = Vec::new();
    if o.overflowed {
        return Err(unservable(
            format!(
                "it wrote more than {} MiB for the sample ({}), more than any answers to it \
                 could be",
                crate::core::detect::probe::OUTPUT_LIMIT >> 20,
                excerpt(&o.banner)
            ),
            "A tool that writes without reading its input cannot be served",
        ));
    }
    match o.ready {
        Pause::TimedOut => {
            return Err(unservable(
                format!(
                    "it did not start reading its input within {}",
                    secs(o.timeout)
                ),
                "A tool that loads for longer needs a larger --timeout",
            ));
        }
        Pause::Ended => {
            let how = match o.exit {
                Some(0) => "it ended".to_owned(),
                Some(n) if n > 128 => format!("it was killed by signal {}", n - 128),
                Some(n) => format!("it exited with status {n}"),
                None => "it closed its output".to_owned(),
            };
            return Err(unservable(
                format!("{how} before reading any input{}", wrote(&o.banner)),
                match o.exit {
                    Some(n) if n != 0 => "Its stderr, below, may say why".to_owned(),
                    _ => KEEP_READING.to_owned(),
                },
            ));
        }
        Pause::Waiting => {
            findings.push(format!("it is ready for input after {}", secs(o.load)));
        }
        Pause::Quiet => findings.push(format!(
            "it was never seen waiting in a read of its input (an event loop?), so its pauses \
             were judged by {} of quiet output; it went quiet after {}",
            secs(crate::core::detect::probe::QUIET),
            secs(o.load)
        )),
    }
    let banner = if o.banner.is_empty() {
        findings.push("it writes nothing before reading input".into());
        0
    } else {
        let Some(lines) = lines(&o.banner, o.line_end) else {
            return Err(unservable(
                format!(
                    "before reading input it writes {}, which does not end with a line end (a \
                     prompt?)",
                    excerpt(&o.banner)
                ),
                "Look for a quiet or batch option of the tool that drops its prompt",
            ));
        };
        findings.push(format!(
            "it writes a banner of {} before reading input ({})",
            plural(lines.len(), "line", "lines"),
            excerpt(&o.banner)
        ));
        lines.len()
    };

    if let Some((i, s)) = o
        .steps
        .iter()
        .enumerate()
        .find(|(_, s)| matches!(s.pause, Pause::TimedOut | Pause::Ended))
    {
        let at = format!("sample line {} ({})", i + 1, excerpt(&s.line));
        return Err(match s.pause {
            Pause::TimedOut if !s.read => unservable(
                format!("it did not read {at} within {}", secs(o.timeout)),
                "A tool that takes longer needs a larger --timeout; one that never reads its \
                 standard input cannot be served",
            ),
            Pause::TimedOut => unservable(
                format!(
                    "after {at} it neither answered nor waited for more input within {}{}",
                    secs(o.timeout),
                    wrote(&s.answer)
                ),
                "A tool that takes longer needs a larger --timeout",
            ),
            _ => unservable(
                format!("it ended after {at}{}", wrote(&s.answer)),
                KEEP_READING,
            ),
        });
    }

    let answered: Vec<usize> = (0..o.steps.len())
        .filter(|&i| !o.steps[i].answer.is_empty())
        .collect();
    if answered.is_empty() {
        let nul = o.line_end == b'\n';
        if o.at_end.is_empty() {
            let mut u = unservable(
                format!(
                    "it wrote nothing for the {} sample lines, even at end of input",
                    o.steps.len()
                ),
                "Give a sample of the records it expects with --input (with -z if they end \
                 with NUL)",
            );
            if nul {
                u.retry.push(Retry::NulRecords);
            }
            return Err(u);
        }
        let mut u = unservable(
            format!(
                "it answered none of the {} sample lines while its input stayed open, and \
                 wrote its output only at end of input ({})",
                o.steps.len(),
                excerpt(&o.at_end)
            ),
            "It buffers its output when it writes to a pipe, or reads all of its input \
             before it answers. Look for an option that flushes each answer (`-u` for \
             Python, `--line-buffered` for grep, `-W interactive` for mawk, `stdbuf -oL` for \
             C programs), or a streaming mode (a null-flush mode answers each record with a \
             NUL: then -z)",
        );
        u.retry.push(Retry::Unbuffered);
        if nul {
            // Output cut by NULs suggests NUL records first.
            let at = if o.at_end.contains(&0) { 0 } else { 1 };
            u.retry.insert(at, Retry::NulRecords);
        }
        return Err(u);
    }

    // Which lines end a record: all, or those of one text.
    let input_terminator = input_framing(o, &answered, &mut findings)?;

    // The shape of an answer.
    let answers: Vec<&[u8]> = answered.iter().map(|&i| &o.steps[i].answer[..]).collect();
    let output_terminator = output_framing(&answers, o.line_end, &mut findings)?;

    let mut took: Vec<Duration> = answered.iter().map(|&i| o.steps[i].took).collect();
    took.sort();
    findings.push(format!(
        "it answers a record in {:.1} ms (median)",
        took[took.len() / 2].as_secs_f64() * 1e3
    ));

    if !o.at_end.is_empty() {
        return Err(unservable(
            format!(
                "at end of input it writes {} more ({}), which a served tool never reaches, so \
                 the output would differ",
                plural(o.at_end.len(), "byte", "bytes"),
                excerpt(&o.at_end)
            ),
            "Look for an option of the tool that turns that summary off",
        ));
    }
    match o.exit {
        Some(0) => findings.push("at end of input it writes nothing and exits with 0".into()),
        Some(n) => findings.push(format!(
            "at end of input it writes nothing but exits with {n}; a served call exits with 0 \
             once every record is answered"
        )),
        None => findings.push(format!(
            "at end of input it writes nothing, but did not exit within {}",
            secs(o.timeout)
        )),
    }
    Ok(Fit {
        framing: Framing {
            input_terminator,
            output_terminator,
            prelude: 0,
            prelude_lines: banner,
            null_data: o.line_end == 0,
        },
        findings,
    })
}

/// " and wrote \"...\"" for what a tool wrote, or nothing.
fn wrote(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        String::new()
    } else {
        format!(" (it wrote {})", excerpt(bytes))
    }
}

/// The input terminator that explains after which lines answers came.
fn input_framing(
    o: &Observation,
    answered: &[usize],
    findings: &mut Vec<String>,
) -> Result<String, Unservable> {
    let n = o.steps.len();
    let text = |i: usize| &o.steps[i].line[..];
    if answered.len() == n {
        findings.push("it answers each line while its input stays open".into());
        return Ok(String::new());
    }
    let silent: Vec<usize> = (0..n).filter(|i| !answered.contains(i)).collect();
    let list = |v: &[usize]| {
        v.iter()
            .map(|i| (i + 1).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if silent.iter().all(|&i| text(i).is_empty()) {
        return Err(unservable(
            format!(
                "it answers each line but empty lines (sample lines {}), which get no answer \
                 at all, so a call with an empty line would wait for ever",
                list(&silent)
            ),
            "If your input never has empty lines, give a sample like it with --input",
        ));
    }
    let last = text(answered[0]);
    if answered.iter().all(|&i| text(i) == last) && silent.iter().all(|&i| text(i) != last) {
        let cut = answered.last().map_or(0, |&i| i + 1);
        if cut < n {
            let left = n - cut;
            findings.push(format!(
                "the last {} of the sample {} no whole record",
                plural(left, "line", "lines"),
                if left == 1 { "makes" } else { "make" }
            ));
        }
        findings.push(format!(
            "it answers after each {} (a record is the lines up to it)",
            line_kind(last)
        ));
        return Ok(exact(last));
    }
    Err(unservable(
        format!(
            "it answered after sample lines {} but not after lines {}, and the lines it \
             answered have nothing in common that could end a record (-t)",
            list(answered),
            list(&silent)
        ),
        "A tool that filters its input gives no answer to some records and cannot be served; \
         if the sample is not what it expects, give one with --input",
    ))
}

const ONE_ANSWER: &str = "viasock needs one answer per record, or answers that end with a line \
                          of their own (-T). Look for an option of the tool that gives one \
                          answer per input (n-best, verbose or trailer options)";

/// The output terminator under which every answer is one record.
fn output_framing(
    answers: &[&[u8]],
    end: u8,
    findings: &mut Vec<String>,
) -> Result<String, Unservable> {
    let mut split = Vec::new();
    for a in answers {
        let Some(l) = lines(a, end) else {
            return Err(unservable(
                format!("an answer does not end with a line end ({})", excerpt(a)),
                "A tool that writes a prompt needs a quiet or batch option",
            ));
        };
        split.push(l);
    }
    if split.iter().all(|l| l.len() == 1) {
        findings.push("each answer is one line".into());
        return Ok(String::new());
    }
    let last = *split[0].last().expect("lines are never empty");
    if split.iter().all(|l| l.last() == Some(&last)) {
        let counts: Vec<usize> = split
            .iter()
            .map(|l| l.iter().filter(|t| **t == last).count())
            .collect();
        if counts.iter().all(|&c| c == 1) {
            findings.push(format!(
                "each answer is one or more lines, ending with {}",
                line_name(last)
            ));
            return Ok(exact(last));
        }
        if counts.iter().all(|&c| c == counts[0]) {
            return Err(unservable(
                format!(
                    "it writes {} answers for each record, each ending with {}",
                    counts[0],
                    line_name(last)
                ),
                ONE_ANSWER,
            ));
        }
    }
    let counts: Vec<usize> = split.iter().map(Vec::len).collect();
    if counts.iter().all(|&c| c == counts[0]) {
        return Err(unservable(
            format!(
                "it writes {} lines for each record, and no line marks where an answer ends \
                 (first answer: {})",
                counts[0],
                excerpt(answers[0])
            ),
            ONE_ANSWER,
        ));
    }
    Err(unservable(
        format!(
            "its answers have {} lines, and no line marks where an answer ends (first answer: \
             {})",
            counts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            excerpt(answers[0])
        ),
        ONE_ANSWER,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(banner: &str, steps: &[(&str, &str)], at_end: &str) -> Observation {
        Observation {
            line_end: b'\n',
            banner: banner.into(),
            ready: Pause::Waiting,
            load: Duration::from_millis(10),
            steps: steps
                .iter()
                .map(|(line, answer)| Step {
                    line: line.as_bytes().to_vec(),
                    answer: answer.as_bytes().to_vec(),
                    pause: Pause::Waiting,
                    read: true,
                    took: Duration::from_millis(1),
                })
                .collect(),
            at_end: at_end.into(),
            exit: Some(0),
            seen_waiting: true,
            overflowed: false,
            timeout: Duration::from_secs(5),
        }
    }

    fn framing(o: &Observation) -> Framing {
        fit(o).unwrap_or_else(|u| panic!("{}", u.reason)).framing
    }

    #[test]
    fn one_line_answers_are_line_mode() {
        let f = framing(&observe("", &[("a", "A\n"), ("", "\n"), ("b", "B\n")], ""));
        assert_eq!(f, Framing::default());
    }

    #[test]
    fn an_ispell_banner_and_blank_line_answers() {
        let o = observe(
            "@(#) Ispell\n",
            &[
                ("helo", "& helo 1 0: hello\n\n"),
                ("", "\n"),
                ("hi", "*\n\n"),
            ],
            "",
        );
        assert_eq!(framing(&o).name(), Some("ispell"));
    }

    #[test]
    fn eos_answers_and_paragraph_records() {
        let o = observe("", &[("a b", "a\nb\nEOS\n"), ("c", "c\nEOS\n")], "");
        assert_eq!(framing(&o).name(), Some("eos"));
        let o = observe(
            "",
            &[
                ("a", ""),
                ("b", ""),
                ("", "A B\n\n"),
                ("c", ""),
                ("", "C\n\n"),
                ("d", ""),
            ],
            "",
        );
        let fit = fit(&o).unwrap();
        assert_eq!(fit.framing.name(), Some("blank"));
        assert!(
            fit.findings
                .iter()
                .any(|f| f == "the last 1 line of the sample makes no whole record"),
            "{:?}",
            fit.findings
        );
    }

    #[test]
    fn what_cannot_be_served_says_why() {
        let reason = |o: &Observation| {
            let u = fit(o).unwrap_err();
            format!("{} {}", u.reason, u.advice)
        };
        let two = observe("", &[("a", "a\na\n"), ("b", "b\nb\n")], "");
        assert!(
            reason(&two).contains("2 lines for each record"),
            "{}",
            reason(&two)
        );
        let nbest = observe(
            "",
            &[("a", "x\nEOS\ny\nEOS\n"), ("b", "z\nEOS\nw\nEOS\n")],
            "",
        );
        assert!(reason(&nbest).contains("2 answers for each record"));
        let buffered = observe("", &[("a", ""), ("b", "")], "A\nB\n");
        let u = fit(&buffered).unwrap_err();
        assert!(u.reason.contains("only at end of input"), "{}", u.reason);
        assert_eq!(u.retry, [Retry::Unbuffered, Retry::NulRecords]);
        let summary = observe("", &[("a", "A\n")], "1 line\n");
        assert!(reason(&summary).contains("at end of input it writes 7 bytes"));
        let prompt = observe("> ", &[("a", "A\n> ")], "");
        assert!(reason(&prompt).contains("prompt"));
        let filter = observe("", &[("a", "a\n"), ("b", ""), ("c", "c\n")], "");
        assert!(reason(&filter).contains("filters"));
    }

    #[test]
    fn a_tool_silent_on_empty_lines_is_not_served() {
        let o = observe("", &[("a", "A\n"), ("", ""), ("b", "B\n")], "");
        let u = fit(&o).unwrap_err();
        assert!(
            u.reason.contains("empty lines (sample lines 2)"),
            "{}",
            u.reason
        );
        assert!(u.advice.contains("--input"));
    }

    #[test]
    fn a_record_end_that_is_not_utf8_matches_its_bytes() {
        let pattern = exact(b"\xa7 end.");
        let term = crate::core::records::Terminator::new(&pattern).unwrap();
        assert!(term.ends_record(b"\xa7 end."));
        assert!(!term.ends_record(b"\xa7 endX"));
        assert!(!term.ends_record(b"x\xa7 end."));
    }
}
