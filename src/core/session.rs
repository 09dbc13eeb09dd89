//! One client's request, streamed through one tool instance (SPEC 5).
//!
//! Two halves run concurrently in the connection's task: the input half
//! reads the client's frames, cuts them into whole records and writes those
//! to the tool; the output half reads the tool's answers and forwards each
//! to the client as soon as it is complete, together with the tool's stderr.
//! The tool is never written to while its output goes unread, so a tool
//! that answers before it reads on cannot deadlock.
//!
//! A client that vanishes mid-stream still gets its owed answers read (and
//! dropped) before the instance serves anybody else.

use std::cell::Cell;
use std::pin::pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::core::pool::{Failure, Instance};
use crate::core::protocol::{self, Kind};
use crate::core::records::{Splitter, Terminator};

/// How a request ended.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status for `run` (SPEC 6).
    pub status: i32,
    pub message: Option<String>,
    /// Records answered for this client.
    pub records: u64,
    /// The client disconnected before it was done.
    pub client_gone: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Input {
    Reading,
    Ended,
    /// Input ended inside a record; this many bytes were dropped.
    Unfinished(usize),
    Gone,
    /// The tool stopped taking input (it will be seen to have exited).
    ToolClosed,
}

enum Stop {
    Done,
    ToolEof,
    Timeout,
}

/// Longest wait for one answer owed to a client that has gone, when no
/// `-w` is set; after it the instance is killed rather than kept busy.
const ORPHAN_ANSWER_WAIT: Duration = Duration::from_secs(30);
/// Once the tool has exited, how long its remaining output may take.
const AFTER_EXIT_WAIT: Duration = Duration::from_secs(1);

/// Serves one client with `inst`.
pub async fn serve<R, W>(
    inst: &mut Instance,
    input_term: &Terminator,
    timeout: Option<Duration>,
    rd: &mut R,
    wr: &mut W,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    inst.drop_stale_stderr();
    let mut client_ok = true;
    if !inst.prelude.is_empty() {
        let mut f = Vec::new();
        protocol::encode_stream(Kind::Output, &inst.prelude, &mut f);
        client_ok = wr.write_all(&f).await.is_ok();
    }

    let owed = Cell::new(0usize);
    let since = Cell::new(Instant::now());
    let input_state = Cell::new(Input::Reading);
    let input_done = Cell::new(false);
    let answered = Cell::new(0u64);
    let unsolicited = Cell::new(false);
    let wake = Notify::new();

    let Instance {
        pid,
        child,
        stdin,
        stdout,
        out,
        stderr,
        ..
    } = inst;

    let input = async {
        let mut split = Splitter::new(input_term.clone());
        let mut records = Vec::new();
        let state = loop {
            let frame = match protocol::read_frame_async(rd).await {
                Ok(Some(f)) => f,
                _ => break Input::Gone,
            };
            let (n, end) = match frame.kind {
                Kind::Data => (split.push(&frame.payload), None),
                Kind::End => match split.finish() {
                    Ok(n) => (n, Some(Input::Ended)),
                    Err(u) => (0, Some(Input::Unfinished(u.bytes))),
                },
                _ => break Input::Gone,
            };
            if n > 0 {
                records.clear();
                split.take_into(n, &mut records);
                if owed.get() == 0 {
                    since.set(Instant::now());
                }
                owed.set(owed.get() + n);
                wake.notify_one();
                let Some(stdin) = stdin.as_mut() else {
                    break Input::ToolClosed;
                };
                if stdin.write_all(&records).await.is_err() {
                    break Input::ToolClosed;
                }
            }
            if let Some(end) = end {
                break end;
            }
        };
        input_state.set(state);
        input_done.set(true);
        wake.notify_one();
    };

    let output = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut records = Vec::new();
        let mut frames = Vec::new();
        let mut exited_at = None;
        loop {
            if owed.get() == 0 && input_done.get() {
                return Stop::Done;
            }
            let gone = !client_ok || input_state.get() == Input::Gone;
            let limit = if gone {
                Some(timeout.unwrap_or(ORPHAN_ANSWER_WAIT))
            } else {
                timeout
            };
            let answer_due = limit.filter(|_| owed.get() > 0).map(|t| since.get() + t);
            let output_due = exited_at.map(|t: Instant| t + AFTER_EXIT_WAIT);
            tokio::select! {
                biased;
                r = stdout.read(&mut buf) => {
                    let n = match r {
                        Ok(0) | Err(_) => return Stop::ToolEof,
                        Ok(n) => n,
                    };
                    out.push(&buf[..n]);
                    let give = out.complete().min(owed.get());
                    if give > 0 {
                        records.clear();
                        out.take_into(give, &mut records);
                        owed.set(owed.get() - give);
                        answered.set(answered.get() + give as u64);
                        if client_ok {
                            frames.clear();
                            protocol::encode_stream(Kind::Output, &records, &mut frames);
                            client_ok = wr.write_all(&frames).await.is_ok();
                        }
                        // Time blocked on a slow reader is not the tool's.
                        since.set(Instant::now());
                    }
                    if out.complete() > 0 {
                        let extra = out.discard(usize::MAX);
                        unsolicited.set(true);
                        tracing::warn!(records = extra, "tool wrote answers nobody asked for; dropped");
                    }
                }
                Some(line) = stderr.recv() => {
                    if client_ok {
                        frames.clear();
                        protocol::encode_stream(Kind::Stderr, &line, &mut frames);
                        client_ok = wr.write_all(&frames).await.is_ok();
                    }
                }
                _ = wake.notified() => {}
                _ = child.wait(), if exited_at.is_none() => {
                    // Its output ends once whatever it started is gone too.
                    exited_at = Some(Instant::now());
                    crate::core::pool::kill_group(*pid);
                }
                _ = sleep_until(output_due) => return Stop::ToolEof,
                _ = sleep_until(answer_due) => return Stop::Timeout,
            }
        }
    };

    let stop = {
        let mut input = pin!(input);
        let mut output = pin!(output);
        let mut input_finished = false;
        loop {
            tokio::select! {
                s = &mut output => break s,
                _ = &mut input, if !input_finished => input_finished = true,
            }
        }
    };

    let records = answered.get();
    if !matches!(stop, Stop::ToolEof) {
        inst.answered += records;
    }
    if unsolicited.get() && matches!(stop, Stop::Done) {
        // Answers can no longer be matched to records: start afresh.
        tracing::warn!(
            pid = inst.pid,
            "retiring the tool: it wrote more answers than it read"
        );
        inst.kill().await;
    }
    let client_gone = matches!(input_state.get(), Input::Gone) || !client_ok;
    let (status, message) = match stop {
        Stop::Done => match input_state.get() {
            Input::Unfinished(bytes) => (
                65,
                Some(format!(
                    "input ended inside an unfinished record ({bytes} bytes after the last \
                     terminator line); that record was not sent"
                )),
            ),
            _ => (0, None),
        },
        Stop::ToolEof => {
            inst.answered += records;
            let when = if inst.has_spoken() {
                "while serving this call"
            } else {
                "before answering anything"
            };
            let Failure { code, message } = inst.ended(when).await;
            let code = if code == 0 { 1 } else { code };
            (code, Some(message))
        }
        Stop::Timeout => {
            let secs = timeout.map_or(0.0, |t| t.as_secs_f64());
            tracing::warn!(
                pid = inst.pid,
                "no answer within {secs} s; killing the tool"
            );
            inst.kill().await;
            (
                124,
                Some(format!(
                    "the tool did not answer a record within {secs} s (--process-timeout); it was killed"
                )),
            )
        }
    };
    if client_ok {
        // Stderr travels apart from stdout: a line written just before the
        // last answer may not have reached the channel yet. Letting the
        // runtime poll its pipes once more brings it in.
        for _ in 0..2 {
            tokio::task::yield_now().await;
        }
        let mut frames = Vec::new();
        while let Ok(line) = inst.stderr.try_recv() {
            protocol::encode_stream(Kind::Stderr, &line, &mut frames);
        }
        let _ = wr.write_all(&frames).await;
    }
    Outcome {
        status,
        message,
        records,
        client_gone,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
