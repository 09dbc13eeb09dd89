//! Command lines and options shown to people, quoted as a POSIX shell
//! would need them, so that what a message shows can be pasted back.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// One word, quoted only if the shell would otherwise change it: `''` for
/// the empty word, single quotes for words with shell syntax in them, and
/// `$'...'` (bash, zsh, ksh, POSIX 2024) for words with control characters
/// or bytes that are not UTF-8, so that nothing invisible or unprintable
/// is shown raw and every byte survives a paste.
pub fn quote(word: &OsStr) -> String {
    let bytes = word.as_bytes();
    if bytes.is_empty() {
        return "''".to_owned();
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return dollar_quote(bytes);
    };
    if text.chars().any(char::is_control) {
        return dollar_quote(bytes);
    }
    let plain = |c: char| c.is_alphanumeric() || "_@%+=:,./-".contains(c);
    // A leading `=` or `~` means something to zsh or to every shell.
    if text.chars().all(plain) && !text.starts_with(['=', '~']) {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `$'...'` with escapes for control characters, quotes, backslashes and
/// bytes that are not UTF-8.
fn dollar_quote(bytes: &[u8]) -> String {
    let mut out = String::from("$'");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str(r"\n"),
                '\t' => out.push_str(r"\t"),
                '\r' => out.push_str(r"\r"),
                '\\' => out.push_str(r"\\"),
                '\'' => out.push_str(r"\'"),
                c if c.is_control() && (c as u32) < 0x80 => {
                    out.push_str(&format!(r"\x{:02x}", c as u32));
                }
                c if c.is_control() => out.push_str(&format!(r"\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!(r"\x{b:02x}"));
        }
    }
    out.push('\'');
    out
}

/// Words joined by spaces, each quoted.
pub fn join<'a>(words: impl IntoIterator<Item = &'a OsStr>) -> String {
    words.into_iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn quotes_what_the_shell_would_change() {
        assert_eq!(quote(OsStr::new("cat")), "cat");
        assert_eq!(quote(OsStr::new("")), "''");
        assert_eq!(quote(OsStr::new("^$")), "'^$'");
        assert_eq!(quote(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(
            quote(OsStr::new("PYTHONUNBUFFERED=1")),
            "PYTHONUNBUFFERED=1"
        );
        assert_eq!(quote(OsStr::new("=cmd")), "'=cmd'");
        assert_eq!(quote(OsStr::new("^\r$")), r"$'^\r$'");
        assert_eq!(quote(OsStr::from_bytes(b"s/\xff/X/")), r"$'s/\xff/X/'");
        assert_eq!(
            join(["sed", "-e", "s/a b/c/"].map(OsStr::new)),
            "sed -e 's/a b/c/'"
        );
    }

    /// Every word, quoted, comes back byte for byte through a real shell.
    #[test]
    fn bash_reads_back_every_byte() {
        let words: Vec<&[u8]> = vec![
            b"plain",
            b"",
            b"a b",
            b"it's",
            b"^\\$END\\$$",
            b"tab\there",
            b"new\nline",
            b"\xff\xfe latin-1",
            b"\x01\x7f",
            "ünï €".as_bytes(),
            b"'\\'",
            b"!bang",
        ];
        let line = join(words.iter().map(|w| OsStr::from_bytes(w)));
        let Ok(out) = Command::new("bash")
            .args(["-c", &format!("printf '%s\\0' {line}")])
            .output()
        else {
            panic!("bash is needed for this test");
        };
        let got: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
        assert_eq!(got[..got.len() - 1], words[..], "{line}");
    }
}
