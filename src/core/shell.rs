//! Command lines and options shown to people, quoted as a POSIX shell
//! would need them, so that what a message shows can be pasted back.

use std::ffi::OsStr;

/// One word, quoted if the shell would otherwise change it (`''` for the
/// empty word). Bytes that are not UTF-8 are shown as U+FFFD.
pub fn quote(word: &OsStr) -> String {
    let text = word.to_string_lossy();
    match shlex::try_quote(&text) {
        Ok(q) => q.into_owned(),
        // Only a NUL byte is refused, and no argument can hold one.
        Err(_) => format!("'{}'", text.replace('\0', "").replace('\'', r"'\''")),
    }
}

/// Words joined by spaces, each quoted.
pub fn join<'a>(words: impl IntoIterator<Item = &'a OsStr>) -> String {
    words.into_iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_the_shell_would_change() {
        assert_eq!(quote(OsStr::new("cat")), "cat");
        assert_eq!(quote(OsStr::new("")), "''");
        assert_eq!(quote(OsStr::new("^$")), "'^$'");
        assert_eq!(quote(OsStr::new("it's")), r#""it's""#);
        assert_eq!(
            join(["sed", "-e", "s/a b/c/"].map(OsStr::new)),
            "sed -e 's/a b/c/'"
        );
    }
}
