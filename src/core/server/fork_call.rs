//! One call to a `--fork` server: the caller's descriptors to the fork
//! server, the caller's signals to its child, the child's exit status
//! back.

use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::UnixStream;
use tokio::net::unix::{ReadHalf, WriteHalf};
use tokio::time::Instant;

use crate::core::config::Tuning;
use crate::core::fork::{Event, Forker};
use crate::core::instance::Failure;
use crate::core::pool::Pool;
use crate::core::protocol::{self, Kind, ProtocolError};
use crate::core::state::Stats;
use crate::core::status;

use super::connection::KEEPALIVE;
use super::shared::Shared;

/// Longest wait for the caller's descriptors once it is welcomed (it
/// sends them at once).
const STDIO_WAIT: Duration = Duration::from_secs(10);

/// Time a child whose caller left gets between SIGTERM and SIGKILL.
const LEFT_GRACE: Duration = Duration::from_secs(2);

pub(super) async fn serve(
    shared: &Shared,
    pool: &Rc<Pool>,
    forker: &Rc<Forker>,
    tuning: &Tuning,
    rd: &mut BufReader<ReadHalf<'_>>,
    wr: &mut WriteHalf<'_>,
) -> Result<(), ProtocolError> {
    let stdio = match tokio::time::timeout(STDIO_WAIT, receive_stdio(rd)).await {
        Ok(Ok(fds)) => fds,
        // A client that streams its input (`viasock client SOCKET`).
        Ok(Err(ProtocolError::Malformed(Kind::Fds))) => {
            let no = Failure {
                code: status::FAILURE,
                message: "this server serves a one-shot tool: call it with `viasock run --fork`, \
                          which hands the tool its stdin, stdout and stderr"
                    .to_owned(),
            };
            return finish(wr, pool.stats(), Err(no)).await;
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(ProtocolError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the caller sent no descriptors",
            )));
        }
    };
    if let Some(j) = tuning.instances {
        pool.raise_max(j);
    }
    let stats = pool.stats();
    let _active = Active::enter(shared, stats);
    let keepalive = protocol::header(Kind::Info, 0);

    // Kept across turns of the loops: a frame is never lost in part.
    let mut pending = Vec::new();
    let call = {
        let mut call = std::pin::pin!(forker.call(stdio));
        let mut told = false;
        loop {
            tokio::select! {
                c = &mut call => break c,
                f = next_frame(rd, &mut pending) => match f {
                    // Signalled before its child exists (while the tool
                    // loads, say): the call ends as the tool would have.
                    Ok(Some(f)) if f.kind == Kind::Signal => {
                        let sig = protocol::parse_status(&f).unwrap_or(libc::SIGTERM);
                        // Those whose default is to let a program be.
                        if sig != libc::SIGCONT && sig != libc::SIGWINCH {
                            return finish(wr, stats, Ok(128 + sig)).await;
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return Ok(()),
                },
                _ = tokio::time::sleep(KEEPALIVE) => {
                    let mut f = keepalive.to_vec();
                    if !told && forker.starting() {
                        told = true;
                        f.clear();
                        protocol::encode(Kind::Info, b"waiting for the tool to start", &mut f);
                    }
                    wr.write_all(&f).await?;
                }
            }
        }
    };
    let mut call = match call {
        Ok(c) => c,
        Err(f) => return finish(wr, stats, Err(f)).await,
    };
    if let Some(note) = call.threads_note() {
        let mut f = Vec::new();
        protocol::encode(Kind::Info, note.as_bytes(), &mut f);
        wr.write_all(&f).await?;
    }
    let begun = Instant::now();
    let limit = shared.cfg.spec.process_timeout;
    let mut deadline = None;
    let mut caller_gone = false;
    loop {
        let frame = async {
            if caller_gone {
                std::future::pending().await
            } else {
                next_frame(rd, &mut pending).await
            }
        };
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = call.next() => match e {
                Event::Started(_) => {
                    deadline = limit.map(|l| Instant::now() + l);
                }
                Event::Exited(wait_status) => {
                    let (code, _) = crate::core::fork::exit_code(wait_status);
                    stats.answered(1, begun.elapsed());
                    if caller_gone {
                        return Ok(());
                    }
                    return finish(wr, stats, Ok(code)).await;
                }
                Event::Failed(f) => {
                    return finish(wr, stats, Err(f)).await;
                }
            },
            f = frame => match f {
                Ok(Some(f)) => {
                    if f.kind == Kind::Signal
                        && let Ok(sig) = protocol::parse_status(&f)
                    {
                        call.signal(sig).await;
                    }
                }
                // The caller is gone (killed, say): so is its call.
                Ok(None) | Err(_) => {
                    tracing::info!("a --fork caller left before its child ended; stopping it");
                    caller_gone = true;
                    call.signal(libc::SIGTERM).await;
                    deadline = Some(Instant::now() + LEFT_GRACE);
                }
            },
            _ = until => {
                call.signal(libc::SIGKILL).await;
                if caller_gone {
                    deadline = None;
                    continue;
                }
                // The slot stays taken until the child is gone.
                let _ = tokio::time::timeout(LEFT_GRACE, async {
                    while !matches!(call.next().await, Event::Exited(_) | Event::Failed(_)) {}
                })
                .await;
                let secs = limit.map_or(0.0, |l| l.as_secs_f64());
                return finish(
                    wr,
                    stats,
                    Err(Failure {
                        code: status::TIMEOUT,
                        message: format!("the tool did not finish within {secs} s (-w); it was killed"),
                    }),
                )
                .await;
            }
            _ = tokio::time::sleep(KEEPALIVE), if !caller_gone => {
                wr.write_all(&keepalive).await?;
            }
        }
    }
}

/// The next frame from the caller, through `pending`: cancelled between
/// reads, nothing is lost.
async fn next_frame(
    rd: &mut BufReader<ReadHalf<'_>>,
    pending: &mut Vec<u8>,
) -> Result<Option<protocol::Frame>, ProtocolError> {
    loop {
        if let Some((f, used)) = protocol::decode(pending)? {
            pending.drain(..used);
            return Ok(Some(f));
        }
        let mut chunk = [0u8; 256];
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Sends the call's end: an Error with the failure's message, if any,
/// and the status.
async fn finish(
    wr: &mut WriteHalf<'_>,
    stats: &Stats,
    end: Result<i32, Failure>,
) -> Result<(), ProtocolError> {
    let mut f = Vec::new();
    let code = match end {
        Ok(code) => code,
        Err(failure) => {
            tracing::warn!("--fork call failed: {}", failure.message);
            protocol::encode(Kind::Error, failure.message.as_bytes(), &mut f);
            failure.code
        }
    };
    if code != 0 {
        stats.failed();
    }
    protocol::encode_status(code, &mut f);
    wr.write_all(&f).await?;
    Ok(())
}

/// Reads the caller's Fds frame and the three descriptors that came with
/// it. Nothing else may come first: the client waits for its Welcome.
async fn receive_stdio(rd: &mut BufReader<ReadHalf<'_>>) -> Result<[OwnedFd; 3], ProtocolError> {
    let malformed = || ProtocolError::Malformed(Kind::Fds);
    if !rd.buffer().is_empty() {
        return Err(malformed());
    }
    let stream: &UnixStream = rd.get_ref().as_ref();
    let mut header = [0u8; protocol::HEADER_LEN];
    let mut fds = Vec::with_capacity(3);
    let n = loop {
        stream.readable().await?;
        let got = stream.try_io(Interest::READABLE, || {
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
            let mut ancillary = rustix::net::RecvAncillaryBuffer::new(&mut space);
            let r = rustix::net::recvmsg(
                stream,
                &mut [std::io::IoSliceMut::new(&mut header)],
                &mut ancillary,
                rustix::net::RecvFlags::CMSG_CLOEXEC | rustix::net::RecvFlags::WAITALL,
            )?;
            for m in ancillary.drain() {
                if let rustix::net::RecvAncillaryMessage::ScmRights(received) = m {
                    fds.extend(received);
                }
            }
            Ok(r.bytes)
        });
        match got {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if n == 0 {
        return Err(ProtocolError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let (kind, len) = protocol::parse_header(&header)?;
    if n != header.len() || kind != Kind::Fds || len != 0 {
        return Err(malformed());
    }
    <[OwnedFd; 3]>::try_from(fds).map_err(|_| malformed())
}

/// Counts the call as active while it lasts, as record calls are: the
/// server does not stop idle under it.
struct Active<'a> {
    shared: &'a Shared,
    stats: &'a Stats,
}

impl<'a> Active<'a> {
    fn enter(shared: &'a Shared, stats: &'a Stats) -> Self {
        shared.active.fetch_add(1, Ordering::SeqCst);
        shared.touch();
        Stats::add(&stats.requests_total, 1);
        stats.last_request_at.set(Some(SystemTime::now()));
        stats.changed();
        Self { shared, stats }
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.shared.touch();
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
        self.shared.left.notify_one();
        self.stats.changed();
    }
}
