//! The tool's process keeps the library across its own `exec`s (a
//! wrapper script's `exec`, `env`), though the tool never sees it in its
//! environment: the armed constructor takes the library's variables out
//! of the environment and keeps them here, and an `exec` of that same
//! process (before its first read) puts them back into what it passes on.
//! Processes the tool starts get the environment as the tool has it.

use core::ffi::{c_char, c_int};
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::{ARMED, TOOL_PID};

unsafe extern "C" {
    static mut environ: *const *const c_char;
}

/// The three `NAME=value` strings of the library's environment, as the
/// process got them (their storage outlives any change to `environ`).
static KEPT: [AtomicPtr<c_char>; 3] = [
    AtomicPtr::new(core::ptr::null_mut()),
    AtomicPtr::new(core::ptr::null_mut()),
    AtomicPtr::new(core::ptr::null_mut()),
];

const NAMES: [&[u8]; 3] = [b"LD_PRELOAD=", b"VIASOCK_FORK_FD=", b"VIASOCK_FORK_PID="];

/// Keeps the library's variables for an `exec` of this process.
pub unsafe fn keep() {
    // SAFETY: environ is a NULL-terminated array of NUL-terminated
    // strings, not changed by another thread while constructors run.
    unsafe {
        let mut e = environ;
        while !e.is_null() && !(*e).is_null() {
            for (name, slot) in NAMES.iter().zip(&KEPT) {
                if starts_with(*e, name) {
                    slot.store((*e).cast_mut(), Ordering::Relaxed);
                }
            }
            e = e.add(1);
        }
    }
}

unsafe fn starts_with(s: *const c_char, prefix: &[u8]) -> bool {
    for (i, &b) in prefix.iter().enumerate() {
        // SAFETY: s is NUL-terminated, and the loop stops at a mismatch,
        // which its NUL is at the latest.
        if unsafe { *s.add(i) } as u8 != b {
            return false;
        }
    }
    true
}

/// Whether an `exec` now replaces the tool's own process.
fn is_the_tool() -> bool {
    // SAFETY: getpid has no preconditions.
    ARMED.load(Ordering::Acquire) && unsafe { libc::getpid() } == TOOL_PID.load(Ordering::Relaxed)
}

/// `envp` with the kept variables in place of any of the same names, in
/// memory from malloc (`None` if there is none).
unsafe fn with_kept(envp: *const *const c_char) -> Option<*mut *const c_char> {
    // SAFETY: envp is a NULL-terminated array of NUL-terminated strings.
    unsafe {
        let mut n = 0;
        while !envp.is_null() && !(*envp.add(n)).is_null() {
            n += 1;
        }
        let out = libc::malloc((n + NAMES.len() + 1) * size_of::<*const c_char>())
            .cast::<*const c_char>();
        if out.is_null() {
            return None;
        }
        let mut k = 0;
        for slot in &KEPT {
            let p = slot.load(Ordering::Relaxed);
            if !p.is_null() {
                *out.add(k) = p;
                k += 1;
            }
        }
        for i in 0..n {
            let e = *envp.add(i);
            if !NAMES.iter().any(|name| starts_with(e, name)) {
                *out.add(k) = e;
                k += 1;
            }
        }
        *out.add(k) = core::ptr::null();
        Some(out)
    }
}

/// Runs `exec` with `envp`, with the kept variables put back if this is
/// the tool replacing itself.
unsafe fn exec_with(
    envp: *const *const c_char,
    exec: impl FnOnce(*const *const c_char) -> c_int,
) -> c_int {
    if !is_the_tool() {
        return exec(envp);
    }
    // SAFETY: as the caller passed it.
    match unsafe { with_kept(envp) } {
        Some(e) => {
            let r = exec(e);
            // Only if the exec failed.
            // SAFETY: from malloc above.
            unsafe { libc::free(e.cast()) };
            r
        }
        None => exec(envp),
    }
}

type Argv = *const *const c_char;

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let next = next!(execve: fn(*const c_char, Argv, Argv) -> c_int);
    // SAFETY: passed on as the tool made the call.
    unsafe { exec_with(envp, |e| next(path, argv, e)) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let next = next!(execvpe: fn(*const c_char, Argv, Argv) -> c_int);
    // SAFETY: passed on as the tool made the call.
    unsafe { exec_with(envp, |e| next(file, argv, e)) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    let next = next!(execve: fn(*const c_char, Argv, Argv) -> c_int);
    // SAFETY: environ is the process's environment.
    unsafe { exec_with(environ, |e| next(path, argv, e)) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    let next = next!(execvpe: fn(*const c_char, Argv, Argv) -> c_int);
    // SAFETY: environ is the process's environment.
    unsafe { exec_with(environ, |e| next(file, argv, e)) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int {
    let next = next!(fexecve: fn(c_int, Argv, Argv) -> c_int);
    // SAFETY: passed on as the tool made the call.
    unsafe { exec_with(envp, |e| next(fd, argv, e)) }
}
