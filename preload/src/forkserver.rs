//! The loaded tool as a fork server: it tells the viasock server it is
//! ready, then forks once for every call the server passes it and
//! reports how each child ended. A child returns from [`serve`] with the
//! caller's descriptors as its 0, 1 and 2; the fork server itself never
//! returns.

use core::ffi::c_int;

use crate::sys;
use crate::wire::{self, Msg};

#[derive(Clone, Copy)]
struct Child {
    id: u32,
    pid: libc::pid_t,
    /// -1 where pidfd_open is not there: the child is then polled for.
    pidfd: c_int,
}

const NONE: Child = Child {
    id: 0,
    pid: 0,
    pidfd: -1,
};

/// Becomes the fork server on `control`. Returns only in a child, or if
/// the server cannot be told (the tool then carries on as if not served,
/// and reads an empty stdin).
pub unsafe fn serve(control: c_int) {
    // SAFETY: the calls below take valid descriptors and buffers; this is
    // the one thread of the fork server.
    unsafe {
        // Whatever the tool wrote to stdout so far is its banner: the
        // server reads it to the end of the pipe and gives it back for the
        // children to write first. What stdio still buffers, each child
        // writes itself.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
        if !sys::send(control, Msg::new(wire::READY, 0, sys::threads() - 1)) {
            return;
        }
        let banner = match sys::recv(control) {
            Some((m, fds)) if m.kind == wire::BANNER => fds[0],
            _ => return,
        };
        // The fork server reaps its children itself: a SIGCHLD handler of
        // the tool's (a shell's), or SIGCHLD ignored, would take their
        // statuses. Each child gets the tool's own disposition back.
        let mut tools_sigchld: libc::sigaction = core::mem::zeroed();
        let mut default: libc::sigaction = core::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGCHLD, &default, &mut tools_sigchld);
        let mut children = [NONE; wire::MAX_CHILDREN];
        let mut count = 0usize;
        let mut polled = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; wire::MAX_CHILDREN + 1];
        loop {
            polled[0] = libc::pollfd {
                fd: control,
                events: libc::POLLIN,
                revents: 0,
            };
            let mut blind = false;
            for (p, c) in polled[1..].iter_mut().zip(&children[..count]) {
                *p = libc::pollfd {
                    fd: c.pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                blind |= c.pidfd < 0;
            }
            let timeout = if blind { 50 } else { -1 };
            if libc::poll(polled.as_mut_ptr(), (count + 1) as libc::nfds_t, timeout) < 0
                && sys::errno() != libc::EINTR
            {
                stop(&children[..count]);
            }
            // Processes the tool started before its first read are children
            // of the fork server too: reaped as they end, not left zombies.
            reap_others(&children[..count]);
            // Children first: their slots are reused below.
            let mut i = 0;
            while i < count {
                let c = children[i];
                if (c.pidfd < 0 || polled[i + 1].revents != 0) && reaped(control, c) {
                    if c.pidfd >= 0 {
                        libc::close(c.pidfd);
                    }
                    count -= 1;
                    children[i] = children[count];
                    polled[i + 1] = polled[count + 1];
                    continue;
                }
                i += 1;
            }
            if polled[0].revents == 0 {
                continue;
            }
            let Some((m, fds)) = sys::recv(control) else {
                stop(&children[..count]);
            };
            match m.kind {
                wire::CALL => {
                    if count == wire::MAX_CHILDREN || fds.contains(&-1) {
                        close_all(&fds);
                        sys::send(control, Msg::new(wire::FAILED, m.id, libc::EAGAIN));
                        continue;
                    }
                    let me = libc::getpid();
                    let pid = libc::fork();
                    if pid == 0 {
                        libc::sigaction(libc::SIGCHLD, &tools_sigchld, core::ptr::null_mut());
                        become_call(me, control, banner, &children[..count], fds);
                        return;
                    }
                    // Also here, so that a signal for its group finds it
                    // whichever of the two runs first.
                    if pid > 0 {
                        libc::setpgid(pid, pid);
                    }
                    close_all(&fds);
                    if pid < 0 {
                        sys::send(control, Msg::new(wire::FAILED, m.id, sys::errno()));
                        continue;
                    }
                    let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as c_int;
                    children[count] = Child {
                        id: m.id,
                        pid,
                        pidfd: pidfd.max(-1),
                    };
                    count += 1;
                    sys::send(control, Msg::new(wire::STARTED, m.id, pid));
                }
                wire::SIGNAL => {
                    close_all(&fds);
                    // Only a child not yet reaped: its pid is still its own,
                    // and its group's. The group: what it started too, as a
                    // terminal's Ctrl-C or `timeout` reaches a whole job.
                    if let Some(c) = children[..count].iter().find(|c| c.id == m.id) {
                        libc::kill(-c.pid, m.a);
                    }
                }
                _ => close_all(&fds),
            }
        }
    }
}

/// In a new child: the caller's descriptors become 0, 1 and 2, the
/// banner goes out first, and nothing of the fork server stays open.
/// The child leads a process group of its own, as a command a shell runs
/// does (what it signals with `kill(0, ...)` is its own; `top` counts its
/// memory apart), and dies with the fork server.
unsafe fn become_call(
    parent: libc::pid_t,
    control: c_int,
    banner: c_int,
    siblings: &[Child],
    fds: [c_int; 3],
) {
    // SAFETY: valid descriptors; the child has one thread.
    unsafe {
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // The fork server died before the request was made.
        if libc::getppid() != parent {
            libc::_exit(128 + libc::SIGKILL);
        }
        libc::close(control);
        for c in siblings {
            if c.pidfd >= 0 {
                libc::close(c.pidfd);
            }
        }
        for (to, from) in fds.into_iter().enumerate() {
            libc::dup2(from, to as c_int);
        }
        close_all(&fds);
        if banner >= 0 {
            sys::copy(banner, 1);
            libc::close(banner);
        }
    }
}

/// Tells the server how the child ended, once it has. True once reaped.
unsafe fn reaped(control: c_int, c: Child) -> bool {
    let mut status = 0;
    // SAFETY: status is valid for writing.
    let r = unsafe { libc::waitpid(c.pid, &mut status, libc::WNOHANG) };
    if r == c.pid {
        // SAFETY: a valid descriptor.
        unsafe { sys::send(control, Msg::new(wire::EXITED, c.id, status)) };
        return true;
    }
    // Not ours any more (reaped by a handler of the tool's): say so.
    if r < 0 && sys::errno() == libc::ECHILD {
        // SAFETY: a valid descriptor.
        unsafe { sys::send(control, Msg::new(wire::FAILED, c.id, libc::ECHILD)) };
        return true;
    }
    false
}

/// Reaps the ended children of the fork server that are no calls' (the
/// tool's own, started before its first read).
unsafe fn reap_others(calls: &[Child]) {
    let mut buf = [0u8; 4096];
    // SAFETY: a NUL-terminated path.
    let children = unsafe { sys::read_file(c"/proc/thread-self/children", &mut buf) };
    for pid in children
        .split(|&b| b == b' ' || b == b'\n')
        .filter_map(sys::number)
    {
        if pid > 0 && !calls.iter().any(|c| c.pid == pid) {
            // SAFETY: a child of this process; no status is kept.
            unsafe { libc::waitpid(pid, core::ptr::null_mut(), libc::WNOHANG) };
        }
    }
}

/// The server is gone: so are the calls it was serving.
fn stop(children: &[Child]) -> ! {
    // SAFETY: signals, waits and an exit; no memory is touched.
    unsafe {
        for c in children {
            libc::kill(c.pid, libc::SIGKILL);
        }
        for c in children {
            libc::waitpid(c.pid, core::ptr::null_mut(), 0);
        }
        libc::_exit(0)
    }
}

fn close_all(fds: &[c_int]) {
    for &fd in fds {
        if fd >= 0 {
            // SAFETY: a descriptor received for this call and not used
            // since.
            unsafe { libc::close(fd) };
        }
    }
}
