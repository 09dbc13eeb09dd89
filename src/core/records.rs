//! Record splitting by terminator pattern (SPEC 3).
//!
//! A record is a run of lines whose last line matches the terminator. The
//! server splits both directions with a [`Splitter`]: client input, to know
//! how many answers it is owed and to send the tool whole records only, and
//! tool output, to hand each answer to the client that asked for it. Data is
//! bytes; nothing here assumes UTF-8.

use std::collections::VecDeque;

use memchr::memchr_iter;
use regex::bytes::Regex;

/// What ends a record: every line, or a line whose text (without its `\n`)
/// matches a pattern at its start.
#[derive(Clone, Debug)]
pub enum Terminator {
    /// Every line is a record (the pattern `''`).
    Line,
    /// A line matching this anchored pattern ends a record.
    Pattern(Regex),
}

impl Terminator {
    /// Compiles a user pattern. The empty pattern means line mode, which
    /// takes a fast path that never runs the regex engine.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        if pattern.is_empty() {
            return Ok(Self::Line);
        }
        // Anchored at the line start, as the original viasock's `re.match`.
        Regex::new(&format!("^(?:{pattern})")).map(Self::Pattern)
    }

    /// Whether `line` (its text, without the `\n`) ends a record.
    pub fn ends_record(&self, line: &[u8]) -> bool {
        match self {
            Self::Line => true,
            Self::Pattern(re) => re.is_match(line),
        }
    }

    pub fn is_line_mode(&self) -> bool {
        matches!(self, Self::Line)
    }
}

/// Input ended inside a record that its terminator never closed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("input ended inside an unfinished record ({bytes} bytes after the last complete record)")]
pub struct Unfinished {
    pub bytes: usize,
}

/// Incremental splitter: bytes go in with [`push`](Self::push), whole records
/// come out with [`take_into`](Self::take_into). Lines are scanned once, so
/// feeding a large record in many small chunks stays linear.
#[derive(Debug)]
pub struct Splitter {
    term: Terminator,
    buf: Vec<u8>,
    /// Start of the first line in `buf` that has not been scanned to its end.
    scan: usize,
    /// One past the last byte of each complete record still in `buf`.
    ends: VecDeque<usize>,
}

impl Splitter {
    pub fn new(term: Terminator) -> Self {
        Self {
            term,
            buf: Vec::new(),
            scan: 0,
            ends: VecDeque::new(),
        }
    }

    /// Appends `data` and returns how many records it completed.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let before = self.ends.len();
        let from = self.buf.len();
        self.buf.extend_from_slice(data);
        let mut scan = self.scan;
        for nl in memchr_iter(b'\n', &self.buf[from..]) {
            let end = from + nl;
            if self.term.ends_record(&self.buf[scan..end]) {
                self.ends.push_back(end + 1);
            }
            scan = end + 1;
        }
        self.scan = scan;
        self.ends.len() - before
    }

    /// Complete records waiting to be taken.
    pub fn complete(&self) -> usize {
        self.ends.len()
    }

    /// Moves the first `n` complete records (at most [`complete`](Self::complete))
    /// to the end of `out`.
    pub fn take_into(&mut self, n: usize, out: &mut Vec<u8>) {
        let n = n.min(self.ends.len());
        if n == 0 {
            return;
        }
        let end = self.ends[n - 1];
        self.ends.drain(..n);
        out.extend_from_slice(&self.buf[..end]);
        self.buf.drain(..end);
        self.scan -= end;
        for e in &mut self.ends {
            *e -= end;
        }
    }

    /// Like [`take_into`](Self::take_into), also appending to `ends` the
    /// offset in `out` one past each record taken.
    pub fn take_records_into(&mut self, n: usize, out: &mut Vec<u8>, ends: &mut Vec<usize>) {
        let n = n.min(self.ends.len());
        let base = out.len();
        ends.extend(self.ends.iter().take(n).map(|e| base + e));
        self.take_into(n, out);
    }

    /// Drops the first `n` complete records; used for answers nobody is owed.
    pub fn discard(&mut self, n: usize) -> usize {
        let mut sink = Vec::new();
        let n = n.min(self.ends.len());
        self.take_into(n, &mut sink);
        n
    }

    /// Bytes after the last complete record.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.ends.back().copied().unwrap_or(0)
    }

    /// Ends the stream. A last line without `\n` gets one (a tool that lives
    /// on can never be given EOF); if bytes then remain outside any complete
    /// record, the input ended inside a record. Returns the records completed.
    pub fn finish(&mut self) -> Result<usize, Unfinished> {
        let mut completed = 0;
        if self.buf.len() > self.scan {
            completed = self.push(b"\n");
        }
        match self.pending() {
            0 => Ok(completed),
            bytes => Err(Unfinished { bytes }),
        }
    }

    /// Forgets everything buffered, complete or not.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.scan = 0;
        self.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pattern: &str, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Result<usize, Unfinished>) {
        let mut s = Splitter::new(Terminator::new(pattern).unwrap());
        let mut records = Vec::new();
        let mut take = |s: &mut Splitter| {
            while s.complete() > 0 {
                let mut r = Vec::new();
                s.take_into(1, &mut r);
                records.push(r);
            }
        };
        for c in chunks {
            s.push(c);
            take(&mut s);
        }
        let fin = s.finish();
        take(&mut s);
        (records, fin)
    }

    #[test]
    fn line_mode_splits_every_line() {
        let (r, fin) = split("", &[b"a\nbb\n", b"c"]);
        assert_eq!(r, vec![b"a\n".to_vec(), b"bb\n".to_vec(), b"c\n".to_vec()]);
        assert_eq!(fin, Ok(1));
    }

    #[test]
    fn blank_line_records() {
        let (r, fin) = split("^$", &[b"a\nb\n\nc\n", b"\n"]);
        assert_eq!(r, vec![b"a\nb\n\n".to_vec(), b"c\n\n".to_vec()]);
        assert_eq!(fin, Ok(0));
    }

    #[test]
    fn pattern_is_anchored_at_line_start() {
        let (r, _) = split("EOS", &[b"x EOS\nEOS\n"]);
        assert_eq!(r, vec![b"x EOS\nEOS\n".to_vec()]);
    }

    #[test]
    fn pattern_sees_carriage_return() {
        let (r, fin) = split("^$", &[b"a\r\n\r\n"]);
        assert!(r.is_empty());
        assert_eq!(fin, Err(Unfinished { bytes: 5 }));
        let (r, _) = split("^\r?$", &[b"a\r\n\r\n"]);
        assert_eq!(r, vec![b"a\r\n\r\n".to_vec()]);
    }

    #[test]
    fn unfinished_record_with_custom_terminator() {
        let (r, fin) = split("^EOS$", &[b"a\nEOS\nb\n"]);
        assert_eq!(r, vec![b"a\nEOS\n".to_vec()]);
        assert_eq!(fin, Err(Unfinished { bytes: 2 }));
    }

    #[test]
    fn missing_final_newline_closes_a_custom_record() {
        let (r, fin) = split("^EOS$", &[b"a\nEO", b"S"]);
        assert_eq!(r, vec![b"a\nEOS\n".to_vec()]);
        assert_eq!(fin, Ok(1));
    }

    #[test]
    fn byte_at_a_time_matches_whole() {
        let input: &[u8] = b"x\xff\x00\n\nyy\n\n\n";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(split("^$", &chunks).0, split("^$", &[input]).0);
    }

    #[test]
    fn take_several_at_once_keeps_the_rest() {
        let mut s = Splitter::new(Terminator::Line);
        assert_eq!(s.push(b"1\n2\n3\n4"), 3);
        let mut out = Vec::new();
        s.take_into(2, &mut out);
        assert_eq!(out, b"1\n2\n");
        assert_eq!(s.complete(), 1);
        assert_eq!(s.push(b"\n"), 1);
        out.clear();
        s.take_into(5, &mut out);
        assert_eq!(out, b"3\n4\n");
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn take_records_reports_their_ends() {
        let mut s = Splitter::new(Terminator::Line);
        s.push(b"ab\nc\nd");
        let mut out = b"x".to_vec();
        let mut ends = Vec::new();
        s.take_records_into(5, &mut out, &mut ends);
        assert_eq!(out, b"xab\nc\n");
        assert_eq!(ends, [4, 6]);
    }

    #[test]
    fn empty_input_is_no_record() {
        let (r, fin) = split("^$", &[]);
        assert!(r.is_empty());
        assert_eq!(fin, Ok(0));
    }

    #[test]
    fn bad_pattern_is_an_error() {
        assert!(Terminator::new("(").is_err());
    }
}
