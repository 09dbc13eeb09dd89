//! The `scanf` family, which reads stdin through the C library's
//! internals. Its functions are variadic, which Rust cannot define, so
//! each is a naked trampoline: it saves the argument registers, asks
//! [`next`] to note the read (and for the real function), restores them
//! and jumps there, the caller's arguments untouched. The `v` forms go the
//! same way, for one code path.
//!
//! x86-64 only: the trampolines are written for its calling convention
//! (six integer registers, eight vector registers, `al` counting those
//! used by a variadic call).

use core::ffi::{CStr, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Each trampoline's function: its name, and whether its first argument
/// is the stream it reads (else it reads stdin).
const FUNCTIONS: [(&CStr, bool); 18] = [
    (c"scanf", false),
    (c"__isoc99_scanf", false),
    (c"__isoc23_scanf", false),
    (c"vscanf", false),
    (c"__isoc99_vscanf", false),
    (c"__isoc23_vscanf", false),
    (c"fscanf", true),
    (c"__isoc99_fscanf", true),
    (c"__isoc23_fscanf", true),
    (c"vfscanf", true),
    (c"__isoc99_vfscanf", true),
    (c"__isoc23_vfscanf", true),
    (c"fwscanf", true),
    (c"__isoc99_fwscanf", true),
    (c"__isoc23_fwscanf", true),
    (c"wscanf", false),
    (c"__isoc99_wscanf", false),
    (c"__isoc23_wscanf", false),
];

static NEXT: [AtomicUsize; FUNCTIONS.len()] = [const { AtomicUsize::new(0) }; FUNCTIONS.len()];

/// Notes the read of function `which` (`first`: its first argument) and
/// returns the C library's definition of it.
extern "C" fn next(which: usize, first: *mut c_void) -> usize {
    let (name, streamed) = FUNCTIONS[which];
    if streamed {
        crate::reading_stream(first.cast());
    } else {
        crate::reading(0);
    }
    let mut p = NEXT[which].load(Ordering::Relaxed);
    if p == 0 {
        // SAFETY: a NUL-terminated name.
        p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        if p == 0 {
            // A name this C library does not have was called: it cannot
            // have been linked against, so this is never reached.
            // SAFETY: abort has no preconditions.
            unsafe { libc::abort() }
        }
        NEXT[which].store(p, Ordering::Relaxed);
    }
    p
}

macro_rules! trampolines {
    ($($name:ident = $which:literal;)*) => {$(
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name() {
            core::arch::naked_asm!(
                // On entry the stack is 8 off a 16-byte boundary; seven
                // pushes and 128 bytes for xmm0-7 align it for the call.
                "push rdi",
                "push rsi",
                "push rdx",
                "push rcx",
                "push r8",
                "push r9",
                "push rax",
                "sub rsp, 128",
                "movdqu [rsp], xmm0",
                "movdqu [rsp + 16], xmm1",
                "movdqu [rsp + 32], xmm2",
                "movdqu [rsp + 48], xmm3",
                "movdqu [rsp + 64], xmm4",
                "movdqu [rsp + 80], xmm5",
                "movdqu [rsp + 96], xmm6",
                "movdqu [rsp + 112], xmm7",
                "mov rsi, rdi",
                "mov edi, {which}",
                "call {next}",
                "mov r11, rax",
                "movdqu xmm0, [rsp]",
                "movdqu xmm1, [rsp + 16]",
                "movdqu xmm2, [rsp + 32]",
                "movdqu xmm3, [rsp + 48]",
                "movdqu xmm4, [rsp + 64]",
                "movdqu xmm5, [rsp + 80]",
                "movdqu xmm6, [rsp + 96]",
                "movdqu xmm7, [rsp + 112]",
                "add rsp, 128",
                "pop rax",
                "pop r9",
                "pop r8",
                "pop rcx",
                "pop rdx",
                "pop rsi",
                "pop rdi",
                "jmp r11",
                which = const $which,
                next = sym next,
            )
        }
    )*};
}

trampolines! {
    scanf = 0;
    __isoc99_scanf = 1;
    __isoc23_scanf = 2;
    vscanf = 3;
    __isoc99_vscanf = 4;
    __isoc23_vscanf = 5;
    fscanf = 6;
    __isoc99_fscanf = 7;
    __isoc23_fscanf = 8;
    vfscanf = 9;
    __isoc99_vfscanf = 10;
    __isoc23_vfscanf = 11;
    fwscanf = 12;
    __isoc99_fwscanf = 13;
    __isoc23_fwscanf = 14;
    wscanf = 15;
    __isoc99_wscanf = 16;
    __isoc23_wscanf = 17;
}
