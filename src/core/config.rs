//! The validated description of a served tool, shared by `run`, `serve` and
//! `start`: what to run and the options that shape its server.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use crate::core::framing::Framing;

/// The options a command line gave that shape a server but not its id:
/// they take effect when a server starts. Each call sends them, so that a
/// server started with others can apply what it can (a higher `-j`) and
/// say what it cannot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tuning {
    /// `-j`
    pub instances: Option<usize>,
    /// `-W`; zero is never.
    pub server_timeout: Option<Duration>,
    /// `--interleave` was given.
    pub interleave: bool,
    /// `-l`, as an absolute path.
    pub log: Option<PathBuf>,
}

impl Tuning {
    /// NUL-separated `key=value` items (no path holds a NUL).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut item = |key: &[u8], value: &[u8]| {
            out.extend_from_slice(key);
            out.push(b'=');
            out.extend_from_slice(value);
            out.push(0);
        };
        if let Some(j) = self.instances {
            item(b"j", j.to_string().as_bytes());
        }
        if let Some(w) = self.server_timeout {
            item(b"W", w.as_secs_f64().to_string().as_bytes());
        }
        if self.interleave {
            item(b"interleave", b"1");
        }
        if let Some(l) = &self.log {
            item(b"l", l.as_os_str().as_bytes());
        }
        out
    }

    /// Reads what [`encode`](Self::encode) wrote; unknown or malformed
    /// items are skipped (a hint, never a reason to refuse a call).
    pub fn decode(bytes: &[u8]) -> Self {
        let mut t = Self::default();
        for item in bytes.split(|&b| b == 0) {
            let Some(eq) = item.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (key, value) = (&item[..eq], &item[eq + 1..]);
            let text = std::str::from_utf8(value).unwrap_or("");
            match key {
                b"j" => t.instances = text.parse().ok(),
                b"W" => {
                    t.server_timeout = text
                        .parse()
                        .ok()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                }
                b"interleave" => t.interleave = value == b"1",
                b"l" => t.log = Some(PathBuf::from(OsString::from_vec(value.to_vec()))),
                _ => {}
            }
        }
        t
    }
}

/// A tool command line plus the options that go with it.
#[derive(Clone, Debug)]
pub struct ToolSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub framing: Framing,
    /// Longest wait for one answer; `None` waits forever.
    pub process_timeout: Option<Duration>,
    /// Idle time before the server stops; `None` never stops.
    pub server_timeout: Option<Duration>,
    pub instances: usize,
    pub interleave: bool,
    /// `--fork`: a one-shot tool, forked at its first read for each call.
    pub fork: bool,
    pub watch: Vec<PathBuf>,
    pub env: Vec<String>,
    pub log: Option<PathBuf>,
}

impl ToolSpec {
    /// The `viasock serve` options that recreate this spec, but for the
    /// program, its arguments and the log (the caller decides where that is).
    pub fn serve_options(&self) -> Vec<OsString> {
        let f = &self.framing;
        // --fork takes no framing (its tool's input is one whole).
        let mut out: Vec<OsString> = if self.fork {
            vec!["--fork".into()]
        } else {
            vec![
                "--input-terminator".into(),
                f.input_terminator.clone().into(),
                "--output-terminator".into(),
                f.output_terminator.clone().into(),
                "--output-prelude".into(),
                f.prelude.to_string().into(),
                "--prelude-lines".into(),
                f.prelude_lines.to_string().into(),
            ]
        };
        out.extend::<[OsString; 4]>([
            "--server-timeout".into(),
            self.server_timeout
                .map_or(0.0, |d| d.as_secs_f64())
                .to_string()
                .into(),
            "--instances".into(),
            self.instances.to_string().into(),
        ]);
        if let Some(t) = self.process_timeout {
            out.push("--process-timeout".into());
            out.push(t.as_secs_f64().to_string().into());
        }
        if f.null_data {
            out.push("--null-data".into());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_round_trips() {
        let t = Tuning {
            instances: Some(4),
            server_timeout: Some(Duration::from_millis(1500)),
            interleave: true,
            log: Some(PathBuf::from("/tmp/a b=c.log")),
        };
        assert_eq!(Tuning::decode(&t.encode()), t);
        assert_eq!(Tuning::decode(b""), Tuning::default());
        assert_eq!(Tuning::decode(b"j=x\0zz=1\0nonsense\0"), Tuning::default());
    }
}
