//! Whether the other end of a socket or terminal has gone, asked without
//! waiting.

use std::os::fd::AsFd;

use rustix::event::{PollFd, PollFlags};

/// True once `fd`'s other end has hung up (or the descriptor is in error):
/// a caller that closed its socket, a terminal window that was closed.
pub fn hung_up(fd: impl AsFd) -> bool {
    // No events asked for: a hang-up or an error is reported anyway.
    let mut fds = [PollFd::new(&fd, PollFlags::empty())];
    let now = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(1))
        && fds[0]
            .revents()
            .intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL)
}
