//! Descriptors the runtime watches that it has no type for: a pidfd,
//! inotify, the socket pair of a fork server.

use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// `fd`, watched for `interest`.
pub fn register(fd: OwnedFd, interest: Interest) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid descriptor that stays open, and the
    // same, for as long as the AsyncFd owns it.
    #[allow(unsafe_code)]
    let registered = unsafe { AsyncFd::register_with_interest(fd, interest) };
    registered.ok()
}

/// `fd`, watched until it is readable.
pub fn readable(fd: OwnedFd) -> Option<AsyncFd<OwnedFd>> {
    register(fd, Interest::READABLE)
}
