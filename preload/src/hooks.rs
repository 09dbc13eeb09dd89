//! The C library's entry points that read: each calls [`crate::reading`]
//! first, then the C library's own definition.

use core::ffi::{c_char, c_int, c_void};

use libc::{FILE, size_t, ssize_t};

#[allow(non_camel_case_types)]
type wint_t = u32;

/// The next definition of a C library function, past this library.
macro_rules! next {
    ($name:ident: fn($($t:ty),*) -> $r:ty) => {{
        static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
        let mut p = NEXT.load(core::sync::atomic::Ordering::Relaxed);
        if p == 0 {
            // SAFETY: a NUL-terminated name.
            p = unsafe {
                libc::dlsym(libc::RTLD_NEXT, concat!(stringify!($name), "\0").as_ptr().cast())
            } as usize;
            if p == 0 {
                // SAFETY: abort has no preconditions.
                unsafe { libc::abort() }
            }
            NEXT.store(p, core::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: the C library's function of that name has this type.
        unsafe { core::mem::transmute::<usize, unsafe extern "C" fn($($t),*) -> $r>(p) }
    }};
}

/// Hooks that read what their argument `$of` names: `$check` (a
/// descriptor's or a stream's) looks at it first.
macro_rules! reading {
    ($check:path; $(fn $name:ident($($a:ident: $t:ty),*) -> $r:ty; [$of:ident])*) => {$(
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($a: $t),*) -> $r {
            $check($of);
            let next = next!($name: fn($($t),*) -> $r);
            // SAFETY: passed on as the tool made the call.
            unsafe { next($($a),*) }
        }
    )*};
}

/// Hooks that read stdin without naming it.
macro_rules! on_stdin {
    ($(fn $name:ident() -> $r:ty;)*) => {$(
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name() -> $r {
            crate::reading(0);
            let next = next!($name: fn() -> $r);
            // SAFETY: passed on as the tool made the call.
            unsafe { next() }
        }
    )*};
}

reading! {
    crate::reading;
    fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t; [fd]
    fn __read_chk(fd: c_int, buf: *mut c_void, n: size_t, buflen: size_t) -> ssize_t; [fd]
    fn readv(fd: c_int, iov: *const libc::iovec, n: c_int) -> ssize_t; [fd]
}

reading! {
    crate::reading_stream;
    fn fgets(s: *mut c_char, n: c_int, stream: *mut FILE) -> *mut c_char; [stream]
    fn fgets_unlocked(s: *mut c_char, n: c_int, stream: *mut FILE) -> *mut c_char; [stream]
    fn __fgets_chk(s: *mut c_char, size: size_t, n: c_int, stream: *mut FILE) -> *mut c_char; [stream]
    fn __fgets_unlocked_chk(s: *mut c_char, size: size_t, n: c_int, stream: *mut FILE) -> *mut c_char; [stream]
    fn fread(p: *mut c_void, size: size_t, n: size_t, stream: *mut FILE) -> size_t; [stream]
    fn fread_unlocked(p: *mut c_void, size: size_t, n: size_t, stream: *mut FILE) -> size_t; [stream]
    fn __fread_chk(p: *mut c_void, plen: size_t, size: size_t, n: size_t, stream: *mut FILE) -> size_t; [stream]
    fn __fread_unlocked_chk(p: *mut c_void, plen: size_t, size: size_t, n: size_t, stream: *mut FILE) -> size_t; [stream]
    fn getline(line: *mut *mut c_char, n: *mut size_t, stream: *mut FILE) -> ssize_t; [stream]
    fn getdelim(line: *mut *mut c_char, n: *mut size_t, delim: c_int, stream: *mut FILE) -> ssize_t; [stream]
    fn __getdelim(line: *mut *mut c_char, n: *mut size_t, delim: c_int, stream: *mut FILE) -> ssize_t; [stream]
    fn getc(stream: *mut FILE) -> c_int; [stream]
    fn fgetc(stream: *mut FILE) -> c_int; [stream]
    fn _IO_getc(stream: *mut FILE) -> c_int; [stream]
    fn getc_unlocked(stream: *mut FILE) -> c_int; [stream]
    fn fgetc_unlocked(stream: *mut FILE) -> c_int; [stream]
    fn __uflow(stream: *mut FILE) -> c_int; [stream]
    fn __underflow(stream: *mut FILE) -> c_int; [stream]
    fn fgetwc(stream: *mut FILE) -> wint_t; [stream]
    fn getwc(stream: *mut FILE) -> wint_t; [stream]
    fn fgetws(s: *mut libc::wchar_t, n: c_int, stream: *mut FILE) -> *mut libc::wchar_t; [stream]
}

on_stdin! {
    fn getchar() -> c_int;
    fn getchar_unlocked() -> c_int;
    fn getwchar() -> wint_t;
}
