//! The engine: everything but the command line and the terminal.

pub mod asyncfd;
pub mod autostart;
pub mod client;
pub mod config;
pub mod control;
pub mod detect;
pub mod feed;
pub mod fork;
pub mod framing;
pub mod hangup;
pub mod identity;
pub mod instance;
pub mod logfile;
pub mod logrotate;
pub mod logsink;
pub mod paths;
pub mod pool;
pub mod procinfo;
pub mod protocol;
pub mod records;
pub mod request;
pub mod server;
pub mod shell;
pub mod state;
pub mod watch;
pub mod worker;

/// An error that ends a command with a given exit status. Its
/// message is printed once, as `viasock: MESSAGE`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Fatal {
    pub code: i32,
    pub message: String,
}

impl Fatal {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Exit statuses that viasock itself gives (the README lists them all).
pub mod status {
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const DATA: i32 = 65;
    pub const UNAVAILABLE: i32 = 69;
    pub const TIMEOUT: i32 = 124;
    pub const NOT_EXECUTABLE: i32 = 126;
    pub const NOT_FOUND: i32 = 127;
}
