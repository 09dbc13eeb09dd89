//! `viasock detect`: what a tool does with its input, in plain words, and
//! the `viasock run` command line that serves it.

use std::io::{IsTerminal, Write};

use anyhow::Context;

use crate::cli::DetectArgs;
use crate::core::detect::{self, Options, Report};
use crate::core::shell;
use crate::core::{Fatal, status};

pub fn detect(args: &DetectArgs) -> anyhow::Result<i32> {
    let sample = match &args.input {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read the sample {}", path.display()))
            .map_err(|e| Fatal::new(status::FAILURE, format!("{e:#}")))?,
        None if args.null_data => detect::SAMPLE.replace('\n', "\0").into_bytes(),
        None => detect::SAMPLE.as_bytes().to_vec(),
    };
    if sample.is_empty() {
        return Err(Fatal::new(status::USAGE, "the sample is empty").into());
    }
    crate::core::detect::probe::stop_tools_on_signals();
    let tell = std::io::stderr().is_terminal() && !args.json;
    let progress = |what: &str| {
        if tell {
            let _ = writeln!(std::io::stderr(), "viasock: {what}...");
        }
    };
    let report = detect::detect(
        &args.command,
        &Options {
            sample,
            null_data: args.null_data,
            timeout: args.timeout,
            progress: &progress,
        },
    )?;
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        human(&report)
    };
    crate::cli::print_out(text.as_bytes())?;
    Ok(if report.servable { 0 } else { status::FAILURE })
}

/// The findings as a list, then the command line on a line of its own
/// (the last, so `| tail -1` gives it), or why there is none.
fn human(r: &Report) -> String {
    let mut out = String::from("Found:\n");
    for f in &r.findings {
        out.push_str(&format!("  - {f}\n"));
    }
    match (&r.command_line, &r.reason) {
        (Some(command), _) => {
            if let (Some(name), Some(options)) = (r.framing_name, &r.framing)
                && name != "lines"
            {
                let options = shell::join(options.iter().map(std::ffi::OsStr::new));
                out.push_str(&format!("--framing {name} is {options}.\n"));
            }
            out.push_str("Serve it with:\n");
            out.push_str(command);
            out.push('\n');
        }
        (None, reason) => {
            out.push_str(&format!(
                "It cannot be served: {}.\n",
                reason.as_deref().unwrap_or("no framing fits it")
            ));
            if let Some(err) = &r.stderr {
                out.push_str("Its stderr ended with:\n");
                for line in err.lines() {
                    out.push_str(&format!("  | {line}\n"));
                }
            }
        }
    }
    out
}
