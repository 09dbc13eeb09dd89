//! Frames between `viasock run` (or `client`, `kill`) and a server.
//!
//! Every frame is one type byte, a big-endian `u32` payload length, and the
//! payload. A connection opens with [`Kind::Hello`] from the client, answered
//! at once by [`Kind::Welcome`] (before the tool is ready, so a client can
//! tell a live server from one that closed while shutting down):
//!
//! ```text
//! client                               server
//! Hello  "VIASOCK" version purpose [tuning]  ->
//!                                   <-  Welcome version server-pid
//! Data   input bytes (any split)    ->
//! End                               ->
//!                                   <-  Output  whole answer records
//!                                   <-  Info    progress: waiting for an instance
//!                                   <-  Stderr  the tool's stderr lines
//!                                   <-  Error   a message for the user
//!                                   <-  Status  exit status (i32), last frame
//! ```
//!
//! A call (purpose `R`) ends its Hello with the tuning options its command
//! line gave (see [`Tuning`](crate::core::config::Tuning)), so that a
//! running server can apply them or say why it does not.
//!
//! A call to a `--fork` server is welcomed at once, then sends one
//! [`Kind::Fds`] frame with its stdin, stdout and stderr attached
//! (`SCM_RIGHTS`); the tool's child reads and writes them directly. The
//! client then sends only [`Kind::Signal`] frames (a signal it received,
//! for the child) and gets `Info`, `Error` and `Status` back:
//!
//! ```text
//! Hello                             ->
//!                                   <-  Welcome
//! Fds    + descriptors 0 1 2        ->
//! Signal signal number (i32)        ->
//!                                   <-  Status  the child's exit status
//! ```
//!
//! A control connection (purpose `C`) sends one [`Kind::Control`] frame with
//! a command (`kill`, `kill --force`) and gets `Error`/`Status` back. The
//! version is part of every server id, so a client only meets a server of
//! another version through `viasock client SOCKET`; it then gets an Error.

use std::io::{self, Read};

/// Bumped whenever a frame changes meaning.
pub const VERSION: u16 = 3;
const MAGIC: &[u8; 7] = b"VIASOCK";
pub const HEADER_LEN: usize = 5;
/// Largest payload a peer accepts; streams are cut into frames below this.
pub const MAX_PAYLOAD: usize = 16 << 20;
/// Size of the frames that byte streams are cut into.
pub const CHUNK: usize = 1 << 20;

/// The type byte of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Hello,
    Welcome,
    Data,
    End,
    Output,
    Stderr,
    Error,
    Status,
    Control,
    Info,
    Fds,
    Signal,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Self::Hello => b'H',
            Self::Welcome => b'W',
            Self::Data => b'D',
            Self::End => b'E',
            Self::Output => b'O',
            Self::Stderr => b'S',
            Self::Error => b'X',
            Self::Status => b'Z',
            Self::Control => b'C',
            Self::Info => b'I',
            Self::Fds => b'F',
            Self::Signal => b'K',
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'H' => Self::Hello,
            b'W' => Self::Welcome,
            b'D' => Self::Data,
            b'E' => Self::End,
            b'O' => Self::Output,
            b'S' => Self::Stderr,
            b'X' => Self::Error,
            b'Z' => Self::Status,
            b'C' => Self::Control,
            b'I' => Self::Info,
            b'F' => Self::Fds,
            b'K' => Self::Signal,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("unknown frame type {0:#04x}")]
    UnknownKind(u8),
    #[error("frame of {0} bytes is over the limit of {MAX_PAYLOAD}")]
    TooLong(usize),
    #[error("not a viasock peer")]
    BadMagic,
    #[error("protocol version {0}, this viasock speaks {VERSION}")]
    Version(u16),
    #[error("malformed {0:?} frame")]
    Malformed(Kind),
    #[error("expected a {expected:?} frame, got {got:?}")]
    Unexpected { expected: Kind, got: Kind },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub payload: Vec<u8>,
}

/// What a connection is for, sent in the Hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Run,
    Control,
}

/// Parses a frame header.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(Kind, usize), ProtocolError> {
    let kind = Kind::from_byte(h[0]).ok_or(ProtocolError::UnknownKind(h[0]))?;
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(ProtocolError::TooLong(len));
    }
    Ok((kind, len))
}

/// Decodes the frame at the start of `buf`: `Ok(None)` while it is
/// incomplete, else the frame and the bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let (kind, len) = parse_header(h)?;
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    let frame = Frame {
        kind,
        payload: payload.to_vec(),
    };
    Ok(Some((frame, HEADER_LEN + len)))
}

/// The header of a frame whose payload is `len` bytes (at most [`MAX_PAYLOAD`]).
pub fn header(kind: Kind, len: usize) -> [u8; HEADER_LEN] {
    debug_assert!(len <= MAX_PAYLOAD);
    let [a, b, c, d] = (len as u32).to_be_bytes();
    [kind.byte(), a, b, c, d]
}

/// Appends one frame to `out`.
pub fn encode(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&header(kind, payload.len()));
    out.extend_from_slice(payload);
}

/// Appends a byte stream as frames of at most [`CHUNK`] bytes.
pub fn encode_stream(kind: Kind, data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(CHUNK) {
        encode(kind, chunk, out);
    }
}

pub fn hello(purpose: Purpose) -> Vec<u8> {
    hello_with(purpose, &[])
}

/// A Hello that carries `tuning` (an encoded [`Tuning`](crate::core::config::Tuning)).
pub fn hello_with(purpose: Purpose, tuning: &[u8]) -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.extend_from_slice(&VERSION.to_be_bytes());
    p.push(match purpose {
        Purpose::Run => b'R',
        Purpose::Control => b'C',
    });
    p.extend_from_slice(tuning);
    let mut out = Vec::with_capacity(HEADER_LEN + p.len());
    encode(Kind::Hello, &p, &mut out);
    out
}

pub fn parse_hello(f: &Frame) -> Result<Purpose, ProtocolError> {
    expect(f, Kind::Hello)?;
    let p = &f.payload;
    if p.len() < MAGIC.len() + 3 || &p[..MAGIC.len()] != MAGIC {
        return Err(ProtocolError::BadMagic);
    }
    let version = u16::from_be_bytes([p[7], p[8]]);
    if version != VERSION {
        return Err(ProtocolError::Version(version));
    }
    match p[9] {
        b'R' => Ok(Purpose::Run),
        b'C' => Ok(Purpose::Control),
        _ => Err(ProtocolError::Malformed(Kind::Hello)),
    }
}

/// The tuning bytes at the end of a Hello [`parse_hello`] accepted.
pub fn hello_tuning(f: &Frame) -> &[u8] {
    f.payload.get(MAGIC.len() + 3..).unwrap_or_default()
}

pub fn welcome(server_pid: u32) -> Vec<u8> {
    let mut p = VERSION.to_be_bytes().to_vec();
    p.extend_from_slice(&server_pid.to_be_bytes());
    let mut out = Vec::new();
    encode(Kind::Welcome, &p, &mut out);
    out
}

/// Returns the server's pid.
pub fn parse_welcome(f: &Frame) -> Result<u32, ProtocolError> {
    expect(f, Kind::Welcome)?;
    match f.payload[..] {
        [v0, v1, p0, p1, p2, p3] => {
            let version = u16::from_be_bytes([v0, v1]);
            if version != VERSION {
                return Err(ProtocolError::Version(version));
            }
            Ok(u32::from_be_bytes([p0, p1, p2, p3]))
        }
        _ => Err(ProtocolError::Malformed(Kind::Welcome)),
    }
}

pub fn encode_status(code: i32, out: &mut Vec<u8>) {
    encode(Kind::Status, &code.to_be_bytes(), out);
}

pub fn parse_status(f: &Frame) -> Result<i32, ProtocolError> {
    let b: [u8; 4] = f.payload[..]
        .try_into()
        .map_err(|_| ProtocolError::Malformed(Kind::Status))?;
    Ok(i32::from_be_bytes(b))
}

fn expect(f: &Frame, kind: Kind) -> Result<(), ProtocolError> {
    if f.kind == kind {
        Ok(())
    } else {
        Err(ProtocolError::Unexpected {
            expected: kind,
            got: f.kind,
        })
    }
}

/// Reads one frame from a blocking reader; `Ok(None)` at a clean EOF
/// between frames.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, ProtocolError> {
    let mut h = [0u8; HEADER_LEN];
    if let Err(e) = r.read_exact(&mut h[..1]) {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => Ok(None),
            _ => Err(e.into()),
        };
    }
    r.read_exact(&mut h[1..])?;
    let (kind, len) = parse_header(&h)?;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame { kind, payload }))
}

/// The async counterpart of [`read_frame`], for the server.
pub async fn read_frame_async(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<Option<Frame>, ProtocolError> {
    use tokio::io::AsyncReadExt;
    let mut h = [0u8; HEADER_LEN];
    if r.read(&mut h[..1]).await? == 0 {
        return Ok(None);
    }
    r.read_exact(&mut h[1..]).await?;
    let (kind, len) = parse_header(&h)?;
    // Read into the spare capacity: a payload is not zeroed first.
    let mut payload = Vec::with_capacity(len);
    while payload.len() < len {
        let rest = (len - payload.len()) as u64;
        if (&mut *r).take(rest).read_buf(&mut payload).await? == 0 {
            return Err(ProtocolError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(Some(Frame { kind, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        encode(Kind::Data, b"abc\n", &mut buf);
        encode(Kind::End, b"", &mut buf);
        encode_status(-3, &mut buf);
        let (f1, n1) = decode(&buf).unwrap().unwrap();
        assert_eq!(f1.kind, Kind::Data);
        assert_eq!(f1.payload, b"abc\n");
        let (f2, n2) = decode(&buf[n1..]).unwrap().unwrap();
        assert_eq!(f2.kind, Kind::End);
        let (f3, _) = decode(&buf[n1 + n2..]).unwrap().unwrap();
        assert_eq!(parse_status(&f3).unwrap(), -3);
    }

    #[test]
    fn incomplete_frame_is_not_an_error() {
        let mut buf = Vec::new();
        encode(Kind::Output, b"hello", &mut buf);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).unwrap().is_none());
        }
    }

    #[test]
    fn garbage_is_a_clean_error() {
        assert!(matches!(
            decode(b"?\0\0\0\0"),
            Err(ProtocolError::UnknownKind(b'?'))
        ));
        assert!(matches!(
            decode(b"D\xff\xff\xff\xff"),
            Err(ProtocolError::TooLong(_))
        ));
    }

    #[test]
    fn handshake_round_trips() {
        let h = hello(Purpose::Control);
        let (f, _) = decode(&h).unwrap().unwrap();
        assert_eq!(parse_hello(&f).unwrap(), Purpose::Control);
        let w = welcome(4242);
        let (f, _) = decode(&w).unwrap().unwrap();
        assert_eq!(parse_welcome(&f).unwrap(), 4242);
    }

    #[test]
    fn a_call_hello_carries_its_tuning() {
        let h = hello_with(Purpose::Run, b"j=4\0");
        let (f, _) = decode(&h).unwrap().unwrap();
        assert_eq!(parse_hello(&f).unwrap(), Purpose::Run);
        assert_eq!(hello_tuning(&f), b"j=4\0");
    }

    #[test]
    fn streams_are_cut_into_chunks() {
        let data = vec![7u8; CHUNK * 2 + 1];
        let mut buf = Vec::new();
        encode_stream(Kind::Output, &data, &mut buf);
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((f, n)) = decode(&buf[at..]).unwrap() {
            assert!(f.payload.len() <= CHUNK);
            got.extend(f.payload);
            at += n;
        }
        assert_eq!(got, data);
    }
}
