//! The caller's side of a `--fork` call: hand stdin, stdout and stderr
//! to the server, pass on the signals this process gets, and wait for the
//! child's status. The caller reads and writes none of the data.

use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::core::client::SILENCE_WAIT;
use crate::core::protocol::{self, Kind, ProtocolError};
use crate::core::{Fatal, status};

/// The signals a caller passes on to its child: those a terminal, a
/// supervisor or `timeout` sends to end, wake or resize a program.
struct Forwarded {
    int: Signal,
    term: Signal,
    hup: Signal,
    quit: Signal,
    usr1: Signal,
    usr2: Signal,
    /// A stopped child waits for it (`timeout` sends it after TERM).
    cont: Signal,
    winch: Signal,
}

impl Forwarded {
    fn catch() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
            cont: signal(SignalKind::from_raw(libc::SIGCONT))?,
            winch: signal(SignalKind::window_change())?,
        })
    }

    /// The number of the next signal this process gets.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
            _ = self.quit.recv() => libc::SIGQUIT,
            _ = self.usr1.recv() => libc::SIGUSR1,
            _ = self.usr2.recv() => libc::SIGUSR2,
            _ = self.cont.recv() => libc::SIGCONT,
            _ = self.winch.recv() => libc::SIGWINCH,
        }
    }
}

/// Runs a call on a welcomed connection to a `--fork` server, with this
/// process's stdin, stdout and stderr; returns the child's exit status
/// and the server's message, if any.
pub fn call(stream: UnixStream) -> Result<crate::core::client::Ending, Fatal> {
    call_with(
        stream,
        [
            rustix::stdio::stdin(),
            rustix::stdio::stdout(),
            rustix::stdio::stderr(),
        ],
    )
}

/// [`call`] with other descriptors for the child's 0, 1 and 2.
pub fn call_with(
    stream: UnixStream,
    stdio: [BorrowedFd<'_>; 3],
) -> Result<crate::core::client::Ending, Fatal> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| Fatal::new(status::FAILURE, format!("{what}: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| failed("cannot start the call", &e))?;
    runtime.block_on(async move {
        // Before the descriptors go: a signal from now on reaches the child.
        let mut signals = Forwarded::catch().map_err(|e| failed("cannot catch signals", &e))?;
        send_stdio(&stream, &stdio).map_err(|e| {
            Fatal::new(
                status::UNAVAILABLE,
                format!("cannot hand stdin, stdout and stderr to the server: {e}"),
            )
        })?;
        stream
            .set_nonblocking(true)
            .map_err(|e| failed("cannot use the socket", &e))?;
        let mut stream = tokio::net::UnixStream::from_std(stream)
            .map_err(|e| failed("cannot use the socket", &e))?;
        wait(&mut stream, &mut signals).await
    })
}

/// Sends the Fds frame with the descriptors for the child's 0, 1 and 2.
fn send_stdio(stream: &UnixStream, fds: &[BorrowedFd<'_>; 3]) -> std::io::Result<()> {
    let header = protocol::header(Kind::Fds, 0);
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut ancillary = rustix::net::SendAncillaryBuffer::new(&mut space);
    ancillary.push(rustix::net::SendAncillaryMessage::ScmRights(fds));
    let sent = rustix::net::sendmsg(
        stream.as_fd(),
        &[std::io::IoSlice::new(&header)],
        &mut ancillary,
        rustix::net::SendFlags::NOSIGNAL,
    )?;
    if sent != header.len() {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    Ok(())
}

/// The signals that end a caller whose child they killed: those a
/// terminal or a supervisor sends to stop a job.
const ENDS_THE_CALLER: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Waits for the call's Status, passing on signals meanwhile. The server
/// is heard from at least every two seconds: silence for longer than
/// [`SILENCE_WAIT`] is a stopped or wedged server.
async fn wait(
    stream: &mut tokio::net::UnixStream,
    signals: &mut Forwarded,
) -> Result<crate::core::client::Ending, Fatal> {
    let bad =
        |e: ProtocolError| Fatal::new(status::FAILURE, format!("bad answer from the server: {e}"));
    let mut pending = Vec::new();
    let mut message = None;
    let mut heard = tokio::time::Instant::now();
    let mut passed_on = Vec::new();
    loop {
        while let Some((frame, used)) = protocol::decode(&pending).map_err(bad)? {
            pending.drain(..used);
            heard = tokio::time::Instant::now();
            match frame.kind {
                Kind::Error => {
                    message = Some(String::from_utf8_lossy(&frame.payload).into_owned());
                }
                // Progress is for people watching, not for logs.
                Kind::Info if !frame.payload.is_empty() && std::io::stderr().is_terminal() => {
                    eprintln!("viasock: {}", String::from_utf8_lossy(&frame.payload));
                }
                Kind::Status => {
                    let status = protocol::parse_status(&frame).map_err(bad)?;
                    let died_of = Some(status - 128)
                        .filter(|s| passed_on.contains(s) && ENDS_THE_CALLER.contains(s));
                    return Ok(crate::core::client::Ending {
                        status,
                        message,
                        died_of,
                        ..Default::default()
                    });
                }
                _ => {}
            }
        }
        let mut chunk = [0u8; 4096];
        tokio::select! {
            r = stream.read(&mut chunk) => match r {
                Ok(0) => {
                    return Err(Fatal::new(
                        status::FAILURE,
                        message.unwrap_or_else(|| {
                            "the server closed the call before the tool ended".to_owned()
                        }),
                    ));
                }
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(Fatal::new(status::FAILURE, format!("lost the server: {e}"))),
            },
            n = signals.next() => {
                passed_on.push(n);
                let mut f = Vec::new();
                protocol::encode(Kind::Signal, &n.to_be_bytes(), &mut f);
                // A server that is gone is found out by the read.
                let _ = stream.write_all(&f).await;
            }
            _ = tokio::time::sleep_until(heard + SILENCE_WAIT) => {
                return Err(Fatal::new(
                    status::UNAVAILABLE,
                    format!(
                        "the server said nothing for {} s: it is stopped or wedged (`viasock ls` \
                         shows it)",
                        SILENCE_WAIT.as_secs()
                    ),
                ));
            }
        }
    }
}

/// Ends this process by `signal`, as a process that does not catch it
/// ends: its parent (a shell) sees it killed by that signal, not exiting.
pub fn end_by(signal: i32) -> ! {
    // SAFETY: SIG_DFL for a signal the runtime caught is a plain
    // disposition change; nothing runs in this process after the raise.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
    let _ = rustix::process::kill_process(
        rustix::process::getpid(),
        rustix::process::Signal::from_named_raw(signal).unwrap_or(rustix::process::Signal::TERM),
    );
    // Blocked or ignored after all: the status says it.
    std::process::exit(128 + signal)
}
