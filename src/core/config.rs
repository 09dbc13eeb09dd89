//! The validated description of a served tool, shared by `run`, `serve` and
//! `start`: what to run and the options of SPEC 1 that shape its server.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::records::Terminator;

/// A tool command line plus the options that go with it.
#[derive(Clone, Debug)]
pub struct ToolSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub input_terminator: String,
    pub output_terminator: String,
    /// Records the tool writes at start-up, before any input.
    pub prelude: usize,
    /// Longest wait for one answer; `None` waits forever.
    pub process_timeout: Option<Duration>,
    /// Idle time before the server stops; `None` never stops.
    pub server_timeout: Option<Duration>,
    pub instances: usize,
    pub interleave: bool,
    pub watch: Vec<PathBuf>,
    pub env: Vec<String>,
    pub log: Option<PathBuf>,
}

impl ToolSpec {
    pub fn input(&self) -> Result<Terminator, regex::Error> {
        Terminator::new(&self.input_terminator)
    }

    pub fn output(&self) -> Result<Terminator, regex::Error> {
        Terminator::new(&self.output_terminator)
    }

    /// The `viasock serve` options that recreate this spec, but for the
    /// program, its arguments and the log (the caller decides where that is).
    pub fn serve_options(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![
            "--input-terminator".into(),
            self.input_terminator.clone().into(),
            "--output-terminator".into(),
            self.output_terminator.clone().into(),
            "--output-prelude".into(),
            self.prelude.to_string().into(),
            "--server-timeout".into(),
            self.server_timeout
                .map_or(0.0, |d| d.as_secs_f64())
                .to_string()
                .into(),
            "--instances".into(),
            self.instances.to_string().into(),
        ];
        if let Some(t) = self.process_timeout {
            out.push("--process-timeout".into());
            out.push(t.as_secs_f64().to_string().into());
        }
        if self.interleave {
            out.push("--interleave".into());
        }
        for w in &self.watch {
            out.push("--watch".into());
            out.push(w.into());
        }
        for e in &self.env {
            out.push("--env".into());
            out.push(e.into());
        }
        out
    }
}
