//! Record splitting by terminator pattern.
//!
//! A record is a run of lines whose last line matches the terminator. The
//! server splits both directions with a [`Splitter`]: client input, to know
//! how many answers it is owed and to send the tool whole records only, and
//! tool output, to hand each answer to the client that asked for it. Data is
//! bytes; nothing here assumes UTF-8.

use std::collections::VecDeque;

use memchr::{memchr_iter, memrchr};
use regex::bytes::Regex;

/// What ends a record: every line, or a line whose text (without its line
/// end) matches a pattern at its start. Lines end with `\n`, or with NUL
/// under `-z`.
#[derive(Clone, Debug)]
pub struct Terminator {
    rule: Rule,
    line_end: u8,
}

#[derive(Clone, Debug)]
enum Rule {
    /// Every line is a record (the pattern `''`).
    Line,
    /// A line matching this anchored pattern ends a record.
    Pattern(Regex),
}

impl Terminator {
    /// Every line is a record; lines end with `\n`.
    pub fn line() -> Self {
        Self {
            rule: Rule::Line,
            line_end: b'\n',
        }
    }

    /// Compiles a user pattern. The empty pattern means line mode, which
    /// takes a fast path that never runs the regex engine.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        if pattern.is_empty() {
            return Ok(Self::line());
        }
        // Anchored at the line start, as the original viasock's `re.match`.
        Ok(Self {
            rule: Rule::Pattern(Regex::new(&format!("^(?:{pattern})"))?),
            line_end: b'\n',
        })
    }

    /// The same rule over lines that end with `end` (NUL for `-z`).
    pub fn with_line_end(self, end: u8) -> Self {
        Self {
            line_end: end,
            ..self
        }
    }

    /// The byte that ends a line.
    pub fn line_end(&self) -> u8 {
        self.line_end
    }

    /// Whether every line is a record.
    fn is_line(&self) -> bool {
        matches!(self.rule, Rule::Line)
    }

    /// Whether `line` (its text, without its line end) ends a record.
    pub fn ends_record(&self, line: &[u8]) -> bool {
        match &self.rule {
            Rule::Line => true,
            Rule::Pattern(re) => re.is_match(line),
        }
    }
}

/// A buffer that once held a big record keeps its capacity; one that has
/// room to spare beyond this is given back, so that a server's memory
/// returns near its idle size after a big call.
pub const SPARE_LIMIT: usize = 1 << 20;

/// Gives back the spare capacity of `buf` when it is large and mostly
/// unused, keeping room for ordinary records, and then the allocator's
/// free memory to the system: without that, glibc keeps the room of
/// buffers below its (raised) mmap threshold for ever.
pub fn release_spare(buf: &mut Vec<u8>) {
    if buf.capacity() > SPARE_LIMIT && buf.len() < SPARE_LIMIT / 4 {
        buf.shrink_to(buf.len().max(64 * 1024));
        trim_heap();
    }
}

/// Returns the allocator's free memory to the system (glibc only).
pub fn trim_heap() {
    // SAFETY: malloc_trim takes a plain integer and only walks glibc's own
    // free lists under its lock; it touches no memory of ours.
    #[cfg(target_env = "gnu")]
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
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
/// feeding a large record in many small chunks stays linear; taking records
/// only moves a cursor, so taking them one at a time stays linear too.
///
/// In line mode, where every line is a record, the ends are not listed
/// but counted: a search per line end costs more than a short line
/// itself, while counting them is a fast vector loop. Where a record
/// ends is then found again only when some but not all are taken.
#[derive(Debug)]
pub struct Splitter {
    term: Terminator,
    buf: Vec<u8>,
    /// Start of the bytes not yet taken; everything before it is dead and is
    /// dropped by [`compact`](Self::compact).
    head: usize,
    /// Start of the first line in `buf` that has not been scanned to its end.
    scan: usize,
    /// One past the last byte of each listed complete record still in
    /// `buf`: all of them under a pattern, the leading lines in line mode.
    ends: VecDeque<usize>,
    /// Complete lines after the listed records (line mode only), and one
    /// past the last of them.
    counted: usize,
    counted_end: usize,
    /// Lines still to come that are records of their own whatever the
    /// terminator says (a start-up banner counted in lines).
    lead: usize,
}

impl Splitter {
    pub fn new(term: Terminator) -> Self {
        Self {
            term,
            buf: Vec::new(),
            head: 0,
            scan: 0,
            ends: VecDeque::new(),
            counted: 0,
            counted_end: 0,
            lead: 0,
        }
    }

    /// A splitter whose first `lines` lines are each a record, before the
    /// terminator applies.
    pub fn with_leading_lines(term: Terminator, lines: usize) -> Self {
        Self {
            lead: lines,
            ..Self::new(term)
        }
    }

    /// Appends `data` and returns how many records it completed.
    pub fn push(&mut self, data: &[u8]) -> usize {
        self.compact();
        let before = self.complete();
        let from = self.buf.len();
        self.buf.extend_from_slice(data);
        let line_end = self.term.line_end();
        if self.term.is_line() && self.lead == 0 {
            let lines = memchr_iter(line_end, data).count();
            if let Some(last) = memrchr(line_end, data) {
                self.counted += lines;
                self.counted_end = from + last + 1;
                self.scan = self.counted_end;
            }
        } else {
            let mut scan = self.scan;
            for nl in memchr_iter(line_end, &self.buf[from..]) {
                let end = from + nl;
                if self.lead > 0 {
                    self.lead -= 1;
                    self.ends.push_back(end + 1);
                } else if self.term.ends_record(&self.buf[scan..end]) {
                    self.ends.push_back(end + 1);
                }
                scan = end + 1;
            }
            self.scan = scan;
        }
        self.complete() - before
    }

    /// Drops the taken prefix once it is at least as long as what is left,
    /// so each byte is moved a bounded number of times however records are
    /// taken. Only `push` calls it, before the buffer grows, so taking
    /// records never moves bytes.
    fn compact(&mut self) {
        let head = self.head;
        if head == 0 || head < self.buf.len() - head {
            return;
        }
        self.buf.drain(..head);
        self.head = 0;
        self.scan -= head;
        for e in &mut self.ends {
            *e -= head;
        }
        self.counted_end = self.counted_end.saturating_sub(head);
        release_spare(&mut self.buf);
    }

    /// Gives back spare room once everything pushed was taken (after a
    /// big record, between calls).
    pub fn release_spare(&mut self) {
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
            self.scan = 0;
            self.counted_end = 0;
            release_spare(&mut self.buf);
        }
    }

    /// The byte that ends a line.
    pub fn line_end(&self) -> u8 {
        self.term.line_end()
    }

    /// Complete records waiting to be taken.
    pub fn complete(&self) -> usize {
        self.ends.len() + self.counted
    }

    /// Marks the first `n` complete records (at most
    /// [`complete`](Self::complete)) as taken; returns where they lie in `buf`.
    fn advance(&mut self, n: usize) -> std::ops::Range<usize> {
        let from = self.head;
        let listed = n.min(self.ends.len());
        let mut end = match listed {
            0 => from,
            k => self.ends.drain(..k).next_back().expect("k > 0 ends"),
        };
        let lines = (n - listed).min(self.counted);
        if lines == self.counted {
            end = if lines > 0 { self.counted_end } else { end };
        } else if lines > 0 {
            let nth = memchr_iter(self.term.line_end(), &self.buf[end..]).nth(lines - 1);
            end += nth.expect("counted lines are in the buffer") + 1;
        }
        self.counted -= lines;
        self.head = end;
        from..end
    }

    /// Moves the first `n` complete records (at most [`complete`](Self::complete))
    /// to the end of `out`.
    pub fn take_into(&mut self, n: usize, out: &mut Vec<u8>) {
        let taken = self.advance(n);
        out.extend_from_slice(&self.buf[taken]);
    }

    /// Like [`take_into`](Self::take_into), also appending to `ends` the
    /// offset in `out` one past each record taken.
    pub fn take_records_into(&mut self, n: usize, out: &mut Vec<u8>, ends: &mut Vec<usize>) {
        let listed = n.min(self.ends.len());
        let (base, head) = (out.len(), self.head);
        ends.extend(self.ends.iter().take(listed).map(|e| base + (e - head)));
        let lines_from = listed.checked_sub(1).map_or(head, |i| self.ends[i]);
        let taken = self.advance(n);
        let lines = &self.buf[lines_from..taken.end];
        let at = base + (lines_from - head) + 1;
        ends.extend(memchr_iter(self.term.line_end(), lines).map(|i| at + i));
        out.extend_from_slice(&self.buf[taken]);
    }

    /// Drops the first `n` complete records; used for answers nobody is owed.
    pub fn discard(&mut self, n: usize) -> usize {
        let before = self.complete();
        self.advance(n);
        before - self.complete()
    }

    /// Everything pushed and not yet taken, complete records first.
    pub fn untaken(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// Bytes after the last complete record.
    pub fn pending(&self) -> usize {
        let last = match self.counted {
            0 => self.ends.back().copied().unwrap_or(self.head),
            _ => self.counted_end,
        };
        self.buf.len() - last
    }

    /// Ends the stream. A last line without its line end gets one (a tool
    /// that lives on can never be given EOF); if bytes then remain outside any complete
    /// record, the input ended inside a record. Returns the records completed.
    pub fn finish(&mut self) -> Result<usize, Unfinished> {
        let mut completed = 0;
        if self.buf.len() > self.scan {
            completed = self.push(&[self.term.line_end()]);
        }
        match self.pending() {
            0 => Ok(completed),
            bytes => Err(Unfinished { bytes }),
        }
    }

    /// Forgets everything buffered, complete or not.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
        self.scan = 0;
        self.ends.clear();
        self.counted = 0;
        self.counted_end = 0;
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
        let mut s = Splitter::new(Terminator::line());
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
        let mut s = Splitter::new(Terminator::line());
        s.push(b"ab\nc\nd");
        let mut out = b"x".to_vec();
        let mut ends = Vec::new();
        s.take_records_into(5, &mut out, &mut ends);
        assert_eq!(out, b"xab\nc\n");
        assert_eq!(ends, [4, 6]);
        // Offsets are in `out`, not in what was taken before.
        s.push(b"\nee\nf\n");
        s.take_into(1, &mut Vec::new());
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        s.take_records_into(5, &mut out, &mut ends);
        assert_eq!(out, b"ee\nf\n");
        assert_eq!(ends, [3, 5]);
    }

    /// Lines of varied lengths, so record boundaries fall anywhere.
    fn numbered_lines(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{i}:{}\n", "x".repeat(i % 37)).into_bytes())
            .collect()
    }

    #[test]
    fn take_one_at_a_time_from_a_large_buffer() {
        let lines = numbered_lines(50_000);
        let mut s = Splitter::new(Terminator::line());
        assert_eq!(s.push(&lines.concat()), lines.len());
        let mut r = Vec::new();
        for (i, want) in lines.iter().enumerate() {
            r.clear();
            s.take_into(1, &mut r);
            assert_eq!(&r, want, "record {i}");
            assert_eq!(s.complete(), lines.len() - i - 1);
        }
        assert_eq!(s.pending(), 0);
        assert_eq!(s.finish(), Ok(0));
    }

    #[test]
    fn take_one_at_a_time_while_pushing() {
        let lines = numbered_lines(20_000);
        let input = lines.concat();
        let mut s = Splitter::new(Terminator::new("^[0-9]*5:").unwrap());
        let (mut got, mut ends) = (Vec::new(), Vec::new());
        let mut taken = 0;
        for (i, chunk) in input.chunks(1000).enumerate() {
            s.push(chunk);
            // Leave some records behind at times, so compaction meets them.
            let keep = i % 3;
            while s.complete() > keep {
                let before = got.len();
                s.take_records_into(1, &mut got, &mut ends);
                assert_eq!(ends.last(), Some(&got.len()));
                assert!(got.len() > before);
                taken += 1;
            }
            // Taken bytes are dropped: the buffer does not grow with the stream.
            assert!(s.buf.len() < 8 * 1024, "buffer of {} bytes", s.buf.len());
        }
        let k = s.complete();
        s.take_records_into(k, &mut got, &mut ends);
        taken += k;
        assert_eq!(got, input[..got.len()]);
        assert_eq!(ends.len(), taken);
        assert_eq!(s.pending(), input.len() - got.len());
    }

    #[test]
    fn discard_after_a_partial_take() {
        let mut s = Splitter::new(Terminator::line());
        s.push(b"a\nb\nc\nd");
        let mut out = Vec::new();
        s.take_into(1, &mut out);
        assert_eq!(s.discard(1), 1);
        assert_eq!(s.discard(5), 1);
        assert_eq!(s.discard(5), 0);
        assert_eq!(s.pending(), 1);
        s.push(b"\ne\n");
        out.clear();
        s.take_into(5, &mut out);
        assert_eq!(out, b"d\ne\n");
    }

    #[test]
    fn empty_input_is_no_record() {
        let (r, fin) = split("^$", &[]);
        assert!(r.is_empty());
        assert_eq!(fin, Ok(0));
    }

    #[test]
    fn nul_ends_lines_under_null_data() {
        let mut s = Splitter::new(Terminator::new("^$").unwrap().with_line_end(0));
        assert_eq!(s.push(b"a\nb\0\0c\0"), 1);
        let mut out = Vec::new();
        s.take_into(1, &mut out);
        assert_eq!(out, b"a\nb\0\0");
        assert_eq!(s.finish(), Err(Unfinished { bytes: 2 }));
        let mut s = Splitter::new(Terminator::line().with_line_end(0));
        assert_eq!(s.push(b"x\ny"), 0);
        assert_eq!(s.finish(), Ok(1));
        let mut out = Vec::new();
        s.take_into(1, &mut out);
        assert_eq!(out, b"x\ny\0");
    }

    #[test]
    fn leading_lines_are_records_of_their_own() {
        let mut s = Splitter::with_leading_lines(Terminator::new("^$").unwrap(), 2);
        assert_eq!(s.push(b"banner\nmore\n"), 2);
        assert_eq!(s.push(b"answer\n"), 0);
        assert_eq!(s.push(b"\n"), 1);
        let mut out = Vec::new();
        s.take_into(3, &mut out);
        assert_eq!(out, b"banner\nmore\nanswer\n\n");
    }

    #[test]
    fn bad_pattern_is_an_error() {
        assert!(Terminator::new("(").is_err());
    }
}

#[cfg(test)]
mod counted_lines {
    //! Line mode counts its records instead of listing them; a pattern that
    //! matches every line lists them. Both must cut and hand out the same
    //! records whatever the chunks and the takes.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        Push(Vec<u8>),
        Take(usize),
        TakeRecords(usize),
        Discard(usize),
        Finish,
        Release,
    }

    fn step() -> impl Strategy<Value = Step> {
        let bytes =
            proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'x'), Just(0u8)], 0..40);
        prop_oneof![
            4 => bytes.prop_map(Step::Push),
            2 => (0usize..6).prop_map(Step::Take),
            2 => (0usize..6).prop_map(Step::TakeRecords),
            1 => prop_oneof![Just(usize::MAX), 0usize..4].prop_map(Step::Discard),
            1 => Just(Step::Finish),
            1 => Just(Step::Release),
        ]
    }

    /// Runs `steps` and returns everything observable, step by step.
    fn observe(mut s: Splitter, steps: &[Step]) -> Vec<String> {
        let mut seen = Vec::new();
        for st in steps {
            let (mut out, mut ends) = (b"pre".to_vec(), Vec::new());
            let what = match st {
                Step::Push(d) => format!("{}", s.push(d)),
                Step::Take(n) => {
                    s.take_into(*n, &mut out);
                    format!("{out:?}")
                }
                Step::TakeRecords(n) => {
                    s.take_records_into(*n, &mut out, &mut ends);
                    format!("{out:?} {ends:?}")
                }
                Step::Discard(n) => format!("{}", s.discard(*n)),
                Step::Finish => format!("{:?}", s.finish()),
                Step::Release => {
                    s.release_spare();
                    String::new()
                }
            };
            seen.push(format!(
                "{what} | {} {} {:?}",
                s.complete(),
                s.pending(),
                s.untaken()
            ));
        }
        seen
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn counted_lines_behave_as_listed_ones(
            steps in proptest::collection::vec(step(), 0..30),
            lead in 0usize..3,
            nul in any::<bool>(),
        ) {
            let end = if nul { 0 } else { b'\n' };
            let counted = Terminator::line().with_line_end(end);
            let listed = Terminator::new("(?:)").unwrap().with_line_end(end);
            prop_assert!(counted.is_line() && !listed.is_line());
            prop_assert_eq!(
                observe(Splitter::with_leading_lines(counted, lead), &steps),
                observe(Splitter::with_leading_lines(listed, lead), &steps)
            );
        }
    }
}
