//! The library `viasock run --fork` preloads into a one-shot tool.
//!
//! It lies dormant until the tool first tries to read its standard input,
//! through `read`, `readv` or one of the C library's stdio functions
//! (which read through the library's own internals, past an interposed
//! `read`). At that moment the tool has loaded whatever it loads, and the
//! process turns into a fork server ([`forkserver`]): for every call it
//! forks, and the child takes the caller's stdin, stdout and stderr as its
//! own and returns into the read it was about to make, now of the
//! caller's input.
//!
//! It acts only in the process the server started (its pid is given in
//! [`wire::PID_VAR`], and stays across the `exec`s of a wrapper such as
//! `env`), never in a process the tool starts: there it removes itself
//! from the environment and does nothing else.
//!
//! All the `unsafe` of viasock is here: the hooks are C functions called
//! by the tool with the C library's contracts, passed on unchanged.

#![no_std]
#![allow(clippy::missing_safety_doc)]

use core::ffi::c_int;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use libc::FILE;

#[macro_use]
mod hooks;
mod exec;
mod forkserver;
#[cfg(target_arch = "x86_64")]
mod scanf;
mod sys;
#[allow(dead_code)]
mod wire;

/// Set while this process is the tool and has not yet read its input.
static ARMED: AtomicBool = AtomicBool::new(false);
/// The tool's pid: a process it forks is not armed, even before it execs.
static TOOL_PID: AtomicI32 = AtomicI32::new(0);
/// The fork server's end of the socket pair to the viasock server.
static CONTROL: AtomicI32 = AtomicI32::new(-1);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Run by the dynamic loader before the tool's `main`.
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    // SAFETY: the environment is not changed by another thread while a
    // library's constructors run.
    unsafe {
        let fd = sys::env_int(wire::FD_VAR);
        let pid = sys::env_int(wire::PID_VAR);
        match (fd, pid) {
            (Some(fd), Some(pid)) if pid == libc::getpid() => {
                TOOL_PID.store(pid, Ordering::Relaxed);
                CONTROL.store(fd, Ordering::Relaxed);
                ARMED.store(true, Ordering::Release);
                // Out of the tool's sight, kept for its own exec.
                exec::keep();
                sys::forget_environment();
            }
            (fd, _) => {
                // A program the tool started: it inherited the
                // environment, and maybe the socket.
                if let Some(fd) = fd {
                    sys::close_on_exec_if_ours(fd);
                }
                sys::forget_environment();
            }
        }
    }
}

/// Called before every read of a descriptor: the first read of stdin by
/// the tool makes it a fork server; the call then returns in each child.
#[inline]
fn reading(fd: c_int) {
    if fd == 0 && ARMED.load(Ordering::Acquire) {
        // SAFETY: getpid has no preconditions.
        if unsafe { libc::getpid() } == TOOL_PID.load(Ordering::Relaxed)
            && ARMED.swap(false, Ordering::AcqRel)
        {
            // SAFETY: this thread is the only one to get here.
            unsafe { forkserver::serve(CONTROL.load(Ordering::Relaxed)) }
        }
    }
}

/// The same for a stdio stream.
#[inline]
fn reading_stream(stream: *mut FILE) {
    if ARMED.load(Ordering::Acquire) && !stream.is_null() {
        // SAFETY: the tool passes a stream it may read, which fileno takes.
        reading(unsafe { libc::fileno(stream) });
    }
}
