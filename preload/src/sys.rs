//! The few system calls the fork server makes, over raw descriptors.
//! None of them goes through a function this library hooks.

use core::ffi::{CStr, c_int, c_void};

use crate::wire;

/// An environment variable that holds a number.
pub unsafe fn env_int(name: &CStr) -> Option<c_int> {
    // SAFETY: a NUL-terminated name; getenv's answer is NUL-terminated.
    let v = unsafe { libc::getenv(name.as_ptr()) };
    if v.is_null() {
        return None;
    }
    // SAFETY: as above.
    number(unsafe { CStr::from_ptr(v) }.to_bytes())
}

/// A decimal number of at most nine digits, nothing else.
pub fn number(text: &[u8]) -> Option<c_int> {
    if text.is_empty() || text.len() > 9 {
        return None;
    }
    let mut n: c_int = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + c_int::from(b - b'0');
    }
    Some(n)
}

/// Reads up to `buf.len()` bytes of the file at `path` (of /proc: read
/// at once) and returns them; empty if it cannot be read.
pub unsafe fn read_file<'a>(path: &CStr, buf: &'a mut [u8]) -> &'a [u8] {
    // SAFETY: a NUL-terminated path; buf is valid for writing.
    let n = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return &[];
        }
        let n = libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
        libc::close(fd);
        n
    };
    &buf[..n.max(0) as usize]
}

/// Removes what the server put in the environment for the tool: its two
/// variables, and this library from the front of `LD_PRELOAD` (where the
/// server put it, before whatever the user preloads).
pub unsafe fn forget_environment() {
    // SAFETY: NUL-terminated names; called with no other thread running
    // (a constructor, or a child just forked).
    unsafe {
        libc::unsetenv(wire::FD_VAR.as_ptr());
        libc::unsetenv(wire::PID_VAR.as_ptr());
        let name = c"LD_PRELOAD".as_ptr();
        let v = libc::getenv(name);
        if v.is_null() {
            return;
        }
        let rest = libc::strchr(v, b':' as c_int);
        if rest.is_null() {
            libc::unsetenv(name);
        } else {
            // setenv copies the value before it replaces the old string.
            libc::setenv(name, rest.add(1), 1);
        }
    }
}

/// Keeps the server's socket out of what a program the tool started
/// runs in turn, if `fd` is that socket.
pub unsafe fn close_on_exec_if_ours(fd: c_int) {
    let mut kind: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: kind and len are valid for writing.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut kind).cast(),
            &mut len,
        )
    };
    if r == 0 && kind == libc::SOCK_SEQPACKET {
        // SAFETY: fcntl on a descriptor we checked is open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Sends one message, without descriptors. False if the server is gone.
pub unsafe fn send(fd: c_int, m: wire::Msg) -> bool {
    let b = m.encode();
    loop {
        // SAFETY: b is valid for reading its length.
        let n = unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL) };
        if n == b.len() as isize {
            return true;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        return false;
    }
}

/// Receives one message and up to three descriptors (close-on-exec;
/// missing ones are -1). `None` once the server is gone.
pub unsafe fn recv(fd: c_int) -> Option<(wire::Msg, [c_int; 3])> {
    let mut b = [0u8; wire::LEN];
    // Room for the header and three descriptors, aligned for cmsghdr.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: b.len(),
    };
    loop {
        // SAFETY: a zeroed msghdr is valid; it points at live buffers.
        let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: msg describes buffers valid for writing.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return None;
        }
        let mut fds = [-1; 3];
        let mut k = 0;
        // SAFETY: the kernel filled msg's control buffer with well-formed
        // headers, walked with the CMSG macros.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c).cast::<c_int>();
                    let count =
                        ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<c_int>();
                    for i in 0..count {
                        let d = data.add(i).read_unaligned();
                        if k < fds.len() {
                            fds[k] = d;
                            k += 1;
                        } else {
                            libc::close(d);
                        }
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        return wire::Msg::decode(&b[..n as usize]).map(|m| (m, fds));
    }
}

/// Writes all of `buf` to `fd`; false on an error.
pub unsafe fn write_all(fd: c_int, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: buf is valid for reading its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast::<c_void>(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Copies the whole file `from` (read at offsets, its position untouched)
/// to `to`.
pub unsafe fn copy(from: c_int, to: c_int) {
    let mut buf = [0u8; 4096];
    let mut at: libc::off_t = 0;
    loop {
        // SAFETY: buf is valid for writing its length.
        let n = unsafe { libc::pread(from, buf.as_mut_ptr().cast(), buf.len(), at) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        // SAFETY: as above.
        if n <= 0 || !unsafe { write_all(to, &buf[..n as usize]) } {
            return;
        }
        at += n as libc::off_t;
    }
}

/// The number of threads of this process (1 if it cannot be told).
pub unsafe fn threads() -> i32 {
    let mut buf = [0u8; 1024];
    // SAFETY: a NUL-terminated path.
    let stat = unsafe { read_file(c"/proc/self/stat", &mut buf) };
    // The fields after the command name (which may hold anything up to
    // its last ')'): state is the first, num_threads the 18th.
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return 1;
    };
    stat[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .nth(17)
        .and_then(number)
        .unwrap_or(1)
        .max(1)
}

pub fn errno() -> c_int {
    // SAFETY: errno's location is valid for the calling thread.
    unsafe { *libc::__errno_location() }
}
