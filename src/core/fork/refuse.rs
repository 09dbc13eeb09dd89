//! What `--fork` cannot serve, told before the tool starts: a program the
//! preload library cannot get into, or one whose process does not survive
//! a fork.

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::core::identity::resolve_program;

/// Why `program` (as `execvp` finds it from `cwd`) cannot be served with
/// `--fork`, if it cannot. A script is judged by its interpreter (through
/// `env`, too). A program that cannot be found is left to fail as it
/// would without `--fork`.
pub fn reason(program: &OsStr, cwd: &Path) -> Option<String> {
    let path = resolve_program(program, cwd).ok()?;
    let shown = program.to_string_lossy();
    judge(&path, &shown, 0)
}

fn judge(path: &Path, shown: &str, depth: usize) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.permissions().mode() & 0o6000 != 0 {
        return Some(format!(
            "{shown} is setuid or setgid: the dynamic loader does not preload into it"
        ));
    }
    if let Some(why) = runtime(path, shown) {
        return Some(why);
    }
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 256];
    let n = read_some(&mut f, &mut head);
    let head = &head[..n];
    if let Some(line) = head.strip_prefix(b"#!") {
        if depth > 2 {
            return None;
        }
        let interpreter = interpreter(line)?;
        return judge(&interpreter, shown, depth + 1)
            .map(|why| format!("{why} (it runs the script {shown})"));
    }
    match has_interpreter(&mut f, head) {
        Some(false) => Some(format!(
            "{shown} is statically linked: there is no dynamic loader to preload the fork \
             server into"
        )),
        _ => None,
    }
}

/// Why the runtime at `path` cannot be forked, if it is one of those.
fn runtime(path: &Path, shown: &str) -> Option<String> {
    let name = path.file_name().unwrap_or_default();
    if name == "java" {
        return Some(format!(
            "{shown} is a Java virtual machine: its threads (the compiler, the garbage \
             collector) do not survive a fork"
        ));
    }
    if ["node", "nodejs", "deno", "bun"].iter().any(|n| name == *n) {
        return Some(format!(
            "{shown} is a JavaScript runtime: its threads (the compiler, the garbage \
             collector, the I/O pool) do not survive a fork"
        ));
    }
    None
}

/// Why the process `pid`, at its first read, cannot be forked: a wrapper
/// that `exec`s a runtime of those [`reason`] refuses by name becomes it.
pub fn runtime_at_read(pid: u32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    runtime(
        &exe,
        &format!("the program the tool became ({})", exe.display()),
    )
}

/// The program a `#!` line runs: its first word, or for `env` the first
/// word after it that is not an option or an assignment.
fn interpreter(line: &[u8]) -> Option<PathBuf> {
    let line = line.split(|&b| b == b'\n').next()?;
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let first = Path::new(OsStr::from_bytes(words.next()?)).to_owned();
    if first.file_name() != Some(OsStr::new("env")) {
        return Some(first);
    }
    let program = words.find(|w| !w.starts_with(b"-") && !w.contains(&b'='))?;
    resolve_program(OsStr::from_bytes(program), Path::new("/")).ok()
}

/// Whether an ELF file asks for a dynamic loader (`PT_INTERP`); `None`
/// if it is no ELF file this can read.
fn has_interpreter(f: &mut std::fs::File, head: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let little = head[5] == 1;
    let u16_at = |b: &[u8], at: usize| {
        let v = [b[at], b[at + 1]];
        if little {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        }
    };
    let u32_at = |b: &[u8], at: usize| {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if little {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    let (phoff, phentsize, phnum) = match head[4] {
        // 64-bit
        2 => {
            let lo = u64::from(u32_at(head, 0x20));
            let hi = u64::from(u32_at(head, 0x24));
            let off = if little { lo | hi << 32 } else { hi | lo << 32 };
            (off, u16_at(head, 0x36), u16_at(head, 0x38))
        }
        1 => (
            u64::from(u32_at(head, 0x1c)),
            u16_at(head, 0x2a),
            u16_at(head, 0x2c),
        ),
        _ => return None,
    };
    let size = usize::from(phentsize) * usize::from(phnum);
    if phentsize < 4 || size > 64 * 1024 {
        return None;
    }
    let mut table = vec![0u8; size];
    f.seek(SeekFrom::Start(phoff)).ok()?;
    f.read_exact(&mut table).ok()?;
    Some(
        table
            .chunks_exact(usize::from(phentsize))
            .any(|h| u32_at(h, 0) == PT_INTERP),
    )
}

/// What the process `pid` holds open (beyond its stdio and the socket
/// of inode `control`, its line to the server) that every call's child
/// would share with every other, so that one caller's data could reach
/// the next: a regular file open for writing (`tac`'s scratch file, a log
/// opened at start-up), a pipe (to or from a process it started) or a
/// socket (a connection). How each is named.
pub fn shared_descriptors(pid: u32, control: Option<u64>) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = Vec::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return found;
    };
    for entry in fds.flatten() {
        let name = entry.file_name();
        let Some(fd) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if fd <= 2 {
            continue;
        }
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        let target = target.to_string_lossy().into_owned();
        let kind = meta.file_type();
        if kind.is_fifo() {
            found.push(format!(
                "a pipe ({target}, to or from a process it started?)"
            ));
        } else if kind.is_socket() && Some(meta.ino()) != control {
            found.push(format!("a socket ({target}, a connection?)"));
        } else if kind.is_file() {
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .unwrap_or(0);
            if flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 {
                found.push(format!("{target} for writing"));
            }
        }
    }
    found
}

fn read_some(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(program: &str) -> Option<String> {
        reason(OsStr::new(program), Path::new("/"))
    }

    #[test]
    fn a_dynamic_program_and_a_script_are_served() {
        assert_eq!(why("sh"), None);
        let t = tempfile::tempdir().unwrap();
        let script = t.path().join("tool");
        std::fs::write(&script, "#!/usr/bin/env sh\nexec cat\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(why(script.to_str().unwrap()), None);
    }

    #[test]
    fn a_setuid_program_and_a_jvm_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let java = t.path().join("java");
        std::fs::copy("/bin/sh", &java).unwrap();
        assert!(why(java.to_str().unwrap()).unwrap().contains("Java"));
        let node = t.path().join("node");
        std::fs::copy("/bin/sh", &node).unwrap();
        assert!(why(node.to_str().unwrap()).unwrap().contains("JavaScript"));
        let suid = t.path().join("suid");
        std::fs::copy("/bin/sh", &suid).unwrap();
        std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
        assert!(why(suid.to_str().unwrap()).unwrap().contains("setuid"));
        let script = t.path().join("wrapped");
        std::fs::write(&script, format!("#!{}\n", java.display())).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let w = why(script.to_str().unwrap()).unwrap();
        assert!(w.contains("Java") && w.contains("the script"), "{w}");
    }

    #[test]
    fn a_file_open_for_writing_a_pipe_and_a_socket_are_found() {
        let t = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let _read = std::fs::File::open("/proc/self/exe").unwrap();
        // Other tests of this process may hold descriptors open: only
        // those this test opens are looked for.
        let path = t.path().join("scratch");
        let f = std::fs::File::create(&path).unwrap();
        let ours = format!("{} for writing", path.display());
        assert!(shared_descriptors(me, None).contains(&ours));
        drop(f);
        assert!(!shared_descriptors(me, None).contains(&ours));
        let named = |fd: &dyn std::os::fd::AsFd| {
            let link = std::fs::read_link(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd())
            ))
            .unwrap();
            let link = link.to_string_lossy().into_owned();
            shared_descriptors(me, None)
                .iter()
                .any(|d| d.contains(&link))
        };
        let (r, w) = rustix::pipe::pipe().unwrap();
        assert!(named(&r) && named(&w));
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(named(&a));
        // The line to the server is not the tool's.
        let ino = std::fs::metadata(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&b)
        ))
        .unwrap()
        .ino();
        let link = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&b)
        ))
        .unwrap();
        let link = link.to_string_lossy().into_owned();
        assert!(
            !shared_descriptors(me, Some(ino))
                .iter()
                .any(|d| d.contains(&link))
        );
    }

    #[test]
    fn a_static_program_is_refused() {
        // This very test binary is static in the default build; a copy of
        // a dynamic one is not.
        let me = std::env::current_exe().unwrap();
        let mut f = std::fs::File::open(&me).unwrap();
        let mut head = [0u8; 256];
        let n = read_some(&mut f, &mut head);
        let dynamic = has_interpreter(&mut f, &head[..n]).unwrap();
        let w = why(me.to_str().unwrap());
        assert_eq!(w.is_some(), !dynamic, "{w:?}");
        assert_eq!(why("/bin/sh"), None);
    }
}
