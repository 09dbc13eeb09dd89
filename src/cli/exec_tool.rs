//! `viasock __exec-tool`: what a server starts in its tool's place. It
//! asks the kernel to kill it when the server dies (even by SIGKILL, which
//! runs no clean-up), then becomes the tool, keeping that request: a tool
//! that ignores end of input (a JVM with a thread that never ends) cannot
//! outlive its server.

use std::os::unix::process::CommandExt;

use crate::cli::ExecToolArgs;
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
    let e = if is_unknown_format(program) {
        std::io::Error::from_raw_os_error(libc::ENOEXEC)
    } else {
        std::process::Command::new(program).args(rest).exec()
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
