//! `viasock __exec-tool`: what a server starts in its tool's place. It
//! asks the kernel to kill it when the server dies (even by SIGKILL, which
//! runs no clean-up), then becomes the tool, keeping that request: a tool
//! that ignores end of input (a JVM with a thread that never ends) cannot
//! outlive its server.
//!
//! With `--fork-library`, its stdin is the server's end of the fork
//! server's socket: that moves to a descriptor of its own, stdin becomes
//! an empty pipe (a read the library cannot see finds an empty input, not
//! the socket), and the tool is started with the library preloaded and
//! told its pid, which stays the same across the `exec`.

use std::os::unix::process::CommandExt;

use crate::cli::ExecToolArgs;
use crate::core::fork::wire as fork_wire;
use crate::core::status;

pub fn exec_tool(args: &ExecToolArgs) -> anyhow::Result<i32> {
    let Some((program, rest)) = args.command.split_first() else {
        return Ok(status::USAGE);
    };
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    // The server may have died before the request was made.
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    if parent != args.parent {
        return Ok(status::FAILURE);
    }
    // exec goes through execvp, which runs a file of no known format with
    // /bin/sh: a data file would be run as shell commands. Refused here,
    // as the kernel refuses it (126).
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    if let Some(library) = &args.fork_library
        && let Err(e) = prepare_fork(&mut cmd, library)
    {
        eprintln!("viasock: cannot prepare the tool for --fork: {e}");
        return Ok(status::FAILURE);
    }
    let e = if is_unknown_format(program) {
        std::io::Error::from_raw_os_error(libc::ENOEXEC)
    } else {
        cmd.exec()
    };
    let (code, what) = match e.kind() {
        std::io::ErrorKind::NotFound => (status::NOT_FOUND, "command not found".to_owned()),
        std::io::ErrorKind::PermissionDenied => {
            (status::NOT_EXECUTABLE, "permission denied".to_owned())
        }
        _ if e.raw_os_error() == Some(libc::ENOEXEC) => (
            status::NOT_EXECUTABLE,
            "not an executable format (a script without a #! line?)".to_owned(),
        ),
        _ => (status::FAILURE, e.to_string()),
    };
    eprintln!(
        "viasock: cannot start the tool: {}: {what}",
        program.to_string_lossy()
    );
    Ok(code)
}

/// Hands the socket on stdin to the tool under its own number, with the
/// environment the preload library reads.
fn prepare_fork(cmd: &mut std::process::Command, library: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    use std::os::unix::ffi::OsStrExt;
    // Out of the way of the descriptors a wrapper script uses (3, 4...),
    // and inherited by the tool.
    let control = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), CONTROL_FD)?;
    rustix::io::fcntl_setfd(&control, rustix::io::FdFlags::empty())?;
    let control = control.into_raw_fd();
    default_signals();
    // An empty pipe: a read finds end of input, and what the tool asks
    // of its stdin before its first read (fstat, lseek, isatty) is
    // answered as for a caller that pipes its input, the common case.
    let (empty, writer) = rustix::pipe::pipe()?;
    drop(writer);
    rustix::stdio::dup2_stdin(&empty)?;
    let mut preload = library.as_os_str().to_owned();
    if let Some(theirs) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(theirs);
    }
    // The library finds its own entry first and removes it from what the
    // tool's own programs inherit.
    debug_assert!(!library.as_os_str().as_bytes().contains(&b':'));
    cmd.env("LD_PRELOAD", preload)
        .env(
            fork_wire::FD_VAR.to_str().unwrap_or_default(),
            control.to_string(),
        )
        .env(
            fork_wire::PID_VAR.to_str().unwrap_or_default(),
            std::process::id().to_string(),
        );
    Ok(())
}

/// The lowest descriptor the fork server's socket may take in the tool.
const CONTROL_FD: i32 = 100;

/// Every call's child inherits the fork server's signal dispositions and
/// mask, which would be those of whatever started the server (a
/// background job ignores SIGINT, `nohup` SIGHUP): the tool starts with
/// the defaults a program started from a terminal has, so that a
/// caller's Ctrl-C works.
fn default_signals() {
    for sig in [
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGPIPE,
        libc::SIGCHLD,
        libc::SIGALRM,
        libc::SIGCONT,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGWINCH,
    ] {
        // SAFETY: SIG_DFL installs no handler; this process runs no other
        // thread, and execs right after.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    // SAFETY: an empty set, valid for reading, and no old set asked for.
    #[allow(unsafe_code)]
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Whether PROGRAM, found as execvp finds it, is neither a script with a
/// `#!` line nor an ELF binary (formats registered through binfmt_misc
/// aside, which are then refused too).
fn is_unknown_format(program: &std::ffi::OsStr) -> bool {
    let cwd = std::env::current_dir().unwrap_or_default();
    let Ok(path) = crate::core::identity::resolve_program(program, &cwd) else {
        return false;
    };
    let mut head = [0u8; 4];
    match std::fs::File::open(&path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)) {
        Ok(n) => !(head[..n].starts_with(b"#!") || head[..n].starts_with(b"\x7fELF")),
        Err(_) => false,
    }
}
