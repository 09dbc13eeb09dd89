//! The client side of a connection: connect with the peer check, the
//! handshake, and pumping stdin to the server and its answers to stdout.
//!
//! This is the warm path of `viasock run`, so it is plain blocking I/O on
//! two threads: no async runtime, no logging set-up.

use std::io::{self, BufReader, IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::core::paths::SocketPath;
use crate::core::protocol::{self, Kind, ProtocolError, Purpose};
use crate::core::{Fatal, status};

/// Connects to a server socket, waiting at most `wait` for room in its
/// queue. `Ok(None)` means no server is there (no socket file, or nobody
/// listening on it).
///
/// A server that is stopped (SIGSTOP) or wedged accepts nothing, and once
/// its queue is full a plain connect would wait for good; this one gives
/// up after `wait` with `TimedOut`.
pub fn connect(path: &Path, wait: Duration) -> io::Result<Option<UnixStream>> {
    let not_there = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
        )
    };
    let addr = match SocketPath::new(path) {
        Ok(a) => a,
        Err(e) if not_there(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    match connect_within(addr.as_path(), wait) {
        Ok(s) => {
            let peer = rustix::net::sockopt::socket_peercred(&s)?;
            if peer.uid != rustix::process::geteuid() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("the server at {} runs as another user", path.display()),
                ));
            }
            Ok(Some(s))
        }
        Err(e) if not_there(&e) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(io::Error::new(
            e.kind(),
            format!(
                "the server at {} takes no connections (stopped or wedged?)",
                path.display()
            ),
        )),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot connect to {}: {e}", path.display()),
        )),
    }
}

/// A Unix stream connect that does not block on a full queue: it tries
/// again every few milliseconds until `wait` is over. A connect to a
/// listener with room completes at once, so the usual cost is the one
/// call and the switch back to blocking mode.
fn connect_within(path: &Path, wait: Duration) -> io::Result<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => break,
            Err(rustix::io::Errno::AGAIN) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(rustix::io::Errno::AGAIN) => return Err(io::ErrorKind::TimedOut.into()),
            Err(e) => return Err(e.into()),
        }
    }
    rustix::io::ioctl_fionbio(&fd, false)?;
    Ok(UnixStream::from(fd))
}

/// The outcome of a handshake.
pub enum Handshake {
    /// The server answered; its pid.
    Welcome(u32),
    /// The connection closed first: the server was shutting down, and the
    /// caller should find or start another.
    Closed,
}

/// Longest wait for a server's Welcome, which a live server sends as soon
/// as it reads the Hello: one that takes longer is stopped or wedged.
pub const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);

/// Greets the server with the call's encoded tuning options and the
/// `opening` (frames that follow the Hello), in one write, and waits for
/// its Welcome, at most `wait` ([`HANDSHAKE_WAIT`] for a call). A server
/// that reads the Hello of a caller that has already given up (it waited
/// out a stopped server) cannot welcome it on the closed socket, so
/// nothing of that call is run later.
pub fn handshake(
    stream: &mut UnixStream,
    purpose: Purpose,
    tuning: &[u8],
    opening: &[u8],
    wait: Duration,
) -> Result<Handshake, ProtocolError> {
    let mut hello = protocol::hello_with(purpose, tuning);
    hello.extend_from_slice(opening);
    greet(stream, &hello, wait)
}

fn greet(
    stream: &mut UnixStream,
    hello: &[u8],
    wait: Duration,
) -> Result<Handshake, ProtocolError> {
    // The Hello and at most one chunk of input: they fit the socket
    // buffer even of a stopped server.
    if let Err(e) = stream.write_all(hello) {
        return closed_or(e);
    }
    // One poll bounds the wait; no socket option is set and reset on the
    // warm path. The Welcome is small enough to arrive whole.
    if !readable_within(stream, wait) {
        return Err(io::Error::from(io::ErrorKind::TimedOut).into());
    }
    match protocol::read_frame(stream) {
        Ok(Some(f)) if f.kind == Kind::Error => Err(ProtocolError::Io(io::Error::other(
            String::from_utf8_lossy(&f.payload).into_owned(),
        ))),
        Ok(Some(f)) => protocol::parse_welcome(&f).map(Handshake::Welcome),
        Ok(None) => Ok(Handshake::Closed),
        Err(ProtocolError::Io(e)) => closed_or(e),
        Err(e) => Err(e),
    }
}

fn closed_or(e: io::Error) -> Result<Handshake, ProtocolError> {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => Ok(Handshake::Closed),
        _ => Err(e.into()),
    }
}

/// Whether an error is a timeout of a blocking socket.
pub fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What the server said at the end of a call.
#[derive(Default)]
pub struct Ending {
    pub status: i32,
    pub message: Option<String>,
    /// What the server answered before its status (a `state` request's
    /// JSON).
    pub output: Vec<u8>,
    /// A signal this caller passed on to its `--fork` child, which died of
    /// it: the caller should end by it too, as the tool would have ended
    /// a direct run (a shell loop stops at a Ctrl-C only then).
    pub died_of: Option<i32>,
}

/// Input that is there at once, sent with the Hello: a call whose whole
/// input is ready (`echo x | viasock run ...`) needs no second write and no
/// second thread.
#[derive(Default)]
pub struct Opening {
    /// Data (and maybe End) frames.
    pub frames: Vec<u8>,
    /// The End frame is among them: stdin is done.
    pub input_done: bool,
}

/// Most input a call's opening carries.
const OPENING_CHUNK: usize = 64 * 1024;

/// Reads what stdin has ready without waiting (at most one chunk).
pub fn ready_input() -> Opening {
    let mut opening = Opening::default();
    // Read straight into the frame, after room for its header: nothing is
    // zeroed, so only the pages the input fills are touched (a zeroed
    // chunk was 16 page faults, a tenth of a warm call).
    let mut data = Vec::with_capacity(protocol::HEADER_LEN + OPENING_CHUNK);
    data.extend_from_slice(&[0; protocol::HEADER_LEN]);
    let stdin = rustix::stdio::stdin();
    // Twice at most: a short input is usually followed by its end of file.
    for _ in 0..2 {
        if data.len() == data.capacity() || !readable_now(&stdin) {
            break;
        }
        match rustix::io::read(stdin, rustix::buffer::spare_capacity(&mut data)) {
            Ok(0) => {
                opening.input_done = true;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let have = data.len() - protocol::HEADER_LEN;
    if have > 0 {
        data[..protocol::HEADER_LEN].copy_from_slice(&protocol::header(Kind::Data, have));
        opening.frames = data;
    }
    if opening.input_done {
        protocol::encode(Kind::End, &[], &mut opening.frames);
    }
    opening
}

fn readable_now(fd: &impl std::os::fd::AsFd) -> bool {
    readable_within(fd, Duration::ZERO)
}

/// Whether `fd` has something to read (or its end was closed) within
/// `wait`.
fn readable_within(fd: &impl std::os::fd::AsFd, wait: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let ts = rustix::time::Timespec {
        tv_sec: wait.as_secs() as i64,
        tv_nsec: wait.subsec_nanos() as i64,
    };
    loop {
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(1) => {
                return fds[0].revents().intersects(
                    rustix::event::PollFlags::IN
                        | rustix::event::PollFlags::HUP
                        | rustix::event::PollFlags::ERR,
                );
            }
            _ => return false,
        }
    }
}

/// How long a call with `-w` waits for any word from its server, which
/// sends one at least every two seconds while the call is open, before
/// taking it for stopped or wedged: `-w`, and never less than this.
pub const SILENCE_WAIT: Duration = Duration::from_secs(10);

/// Streams stdin through the server to stdout and returns the server's
/// final word. A closed stdout (`| head`) ends the call quietly with 141,
/// as it would end `cat`. `input_done`: the whole input went with the
/// opening. `patience`: `-w`, which bounds the wait for the server too.
pub fn stream_stdio(
    stream: UnixStream,
    input_done: bool,
    patience: Option<Duration>,
) -> Result<Ending, Fatal> {
    bound_silence(&stream, patience)?;
    if !input_done {
        let mut to_server = stream
            .try_clone()
            .map_err(|e| Fatal::new(status::FAILURE, format!("cannot use the socket: {e}")))?;
        std::thread::spawn(move || pump_stdin(&mut to_server));
    }
    let mut stdout = io::stdout().lock();
    let ending = answers(stream, |out| match stdout.write_all(out) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Fatal::new(
            status::FAILURE,
            format!("cannot write standard output: {e}"),
        )),
    })?;
    let _ = stdout.flush();
    Ok(ending.unwrap_or(Ending {
        status: 141,
        ..Ending::default()
    }))
}

/// Sends `input` as one call and returns the server's final word; the
/// answers are dropped (used by `start`).
pub fn call(
    mut stream: UnixStream,
    input: &[u8],
    patience: Option<Duration>,
) -> Result<Ending, Fatal> {
    bound_silence(&stream, patience)?;
    let mut req = Vec::new();
    protocol::encode_stream(Kind::Data, input, &mut req);
    protocol::encode(Kind::End, &[], &mut req);
    // A server that failed the call (its tool died) may close before it
    // read all of it; its reason is still there to read.
    let sent = stream.write_all(&req);
    match (answers(stream, |_| Ok(true)), sent) {
        (Ok(ending), _) => Ok(ending.unwrap_or_default()),
        (Err(_), Err(e)) => Err(Fatal::new(
            status::FAILURE,
            format!("cannot send to the server: {e}"),
        )),
        (Err(f), Ok(())) => Err(f),
    }
}

/// With `-w`, a server that says nothing for longer than `-w` (at least
/// [`SILENCE_WAIT`]) fails the read instead of keeping the call waiting.
fn bound_silence(stream: &UnixStream, patience: Option<Duration>) -> Result<(), Fatal> {
    let Some(w) = patience else {
        return Ok(());
    };
    stream
        .set_read_timeout(Some(w.max(SILENCE_WAIT)))
        .map_err(|e| Fatal::new(status::FAILURE, format!("cannot use the socket: {e}")))
}

/// Reads the server's frames to the end of the call: answers go to
/// `output` (which returns false to stop: nobody reads any more, and
/// `Ok(None)` is returned), the tool's stderr to ours.
fn answers(
    stream: UnixStream,
    mut output: impl FnMut(&[u8]) -> Result<bool, Fatal>,
) -> Result<Option<Ending>, Fatal> {
    let mut from_server = BufReader::with_capacity(64 * 1024, stream);
    let mut message = None;
    let bad =
        |e: ProtocolError| Fatal::new(status::FAILURE, format!("bad answer from the server: {e}"));
    loop {
        let frame = match protocol::read_frame(&mut from_server) {
            Ok(Some(f)) => f,
            Err(ProtocolError::Io(e)) if timed_out(&e) => {
                let silent = from_server.get_ref().read_timeout().ok().flatten();
                return Err(Fatal::new(
                    status::TIMEOUT,
                    format!(
                        "the server said nothing for {} s (-w): it is stopped or wedged \
                         (`viasock ls` shows it as unresponsive; `viasock kill --force` stops it)",
                        silent.unwrap_or_default().as_secs()
                    ),
                ));
            }
            Ok(None) | Err(ProtocolError::Io(_)) => {
                return Err(Fatal::new(
                    status::FAILURE,
                    "the server closed the connection before the call finished",
                ));
            }
            Err(e) => return Err(bad(e)),
        };
        match frame.kind {
            Kind::Output => {
                if !output(&frame.payload)? {
                    return Ok(None);
                }
            }
            Kind::Stderr => {
                let _ = io::stderr().write_all(&frame.payload);
            }
            Kind::Error => message = Some(String::from_utf8_lossy(&frame.payload).into_owned()),
            // An empty one only says that the server is there.
            Kind::Info if frame.payload.is_empty() => {}
            Kind::Info => {
                // Progress is for people watching, not for logs.
                if io::stderr().is_terminal() {
                    eprintln!("viasock: {}", String::from_utf8_lossy(&frame.payload));
                }
            }
            Kind::Status => {
                let status = protocol::parse_status(&frame).map_err(bad)?;
                return Ok(Some(Ending {
                    status,
                    message,
                    ..Ending::default()
                }));
            }
            other => {
                return Err(Fatal::new(
                    status::FAILURE,
                    format!("unexpected {other:?} frame from the server"),
                ));
            }
        }
    }
}

/// Sends stdin as Data frames, then End. Stops quietly if the server goes
/// away: the reading side reports that.
fn pump_stdin(to_server: &mut UnixStream) {
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; protocol::HEADER_LEN + 64 * 1024];
    loop {
        let n = match stdin.read(&mut buf[protocol::HEADER_LEN..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("viasock: cannot read standard input: {e}");
                std::process::exit(status::FAILURE);
            }
        };
        buf[..protocol::HEADER_LEN].copy_from_slice(&protocol::header(Kind::Data, n));
        if to_server
            .write_all(&buf[..protocol::HEADER_LEN + n])
            .is_err()
        {
            return;
        }
    }
    let _ = to_server.write_all(&protocol::header(Kind::End, 0));
}

/// Sends a control command and returns the server's status and message.
pub fn control(mut stream: UnixStream, command: &str) -> Result<Ending, ProtocolError> {
    let mut req = Vec::new();
    protocol::encode(Kind::Control, command.as_bytes(), &mut req);
    stream.write_all(&req)?;
    let mut message = None;
    let mut output = Vec::new();
    loop {
        match protocol::read_frame(&mut stream)? {
            Some(f) if f.kind == Kind::Error => {
                message = Some(String::from_utf8_lossy(&f.payload).into_owned());
            }
            Some(f) if f.kind == Kind::Output => output.extend_from_slice(&f.payload),
            Some(f) if f.kind == Kind::Status => {
                return Ok(Ending {
                    status: protocol::parse_status(&f)?,
                    message,
                    output,
                    died_of: None,
                });
            }
            Some(_) => continue,
            None => return Err(ProtocolError::Io(io::ErrorKind::UnexpectedEof.into())),
        }
    }
}
