//! The messages between a viasock server and the fork server its tool
//! turns into: one 16-byte datagram each on a `SOCK_SEQPACKET` pair,
//! descriptors riding along as `SCM_RIGHTS`. Shared as source by the
//! server and the preload library (which is `no_std`), so both read the
//! same layout.
//!
//! ```text
//! fork server                          server
//! Ready    a = threads besides the reader ->
//!                                   <-  Banner  [memfd], what the tool wrote before
//! (per call)
//!                                   <-  Call    id, fds 0 1 2 of the caller
//! Started  id, a = child pid        ->
//!                                   <-  Signal  id, a = signal number
//! Exited   id, a = wait status      ->
//! Failed   id, a = errno            ->   (the fork did not happen)
//! ```

/// The environment variable naming the fork server's end of the pair.
pub const FD_VAR: &core::ffi::CStr = c"VIASOCK_FORK_FD";
/// The environment variable naming the pid of the process to serve: the
/// tool itself, across the `exec`s of a wrapper (`env`, `exec` in a
/// script), never a process it starts.
pub const PID_VAR: &core::ffi::CStr = c"VIASOCK_FORK_PID";

pub const READY: u8 = b'R';
pub const BANNER: u8 = b'B';
pub const CALL: u8 = b'C';
pub const STARTED: u8 = b'S';
pub const SIGNAL: u8 = b'K';
pub const EXITED: u8 = b'E';
pub const FAILED: u8 = b'F';

/// Size of every message.
pub const LEN: usize = 16;

/// Most children a fork server runs at once.
pub const MAX_CHILDREN: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    pub kind: u8,
    pub id: u32,
    pub a: i32,
}

impl Msg {
    pub const fn new(kind: u8, id: u32, a: i32) -> Self {
        Self { kind, id, a }
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.kind;
        b[4..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..12].copy_from_slice(&self.a.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != LEN {
            return None;
        }
        Some(Self {
            kind: b[0],
            id: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            a: i32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}
