//! What a worker has written to its tool and not yet had answered: the
//! bytes on their way into the tool's stdin, the route that hands each
//! answer to the request whose record it answers, and where each record
//! ends in the stream of all bytes written.
//!
//! Offsets count every byte ever written to this tool's stdin. Set against
//! how much of it the tool has taken out of its pipe (`FIONREAD` on the
//! write end), they tell two things no correct tool can hide: an answer to
//! a record the tool has not read (its output is framed wrongly), and, once
//! the tool has ended, which records it never read at all, so that their
//! requests can go on with a fresh instance. The bytes the tool may not
//! have read yet are kept for that; the pipe holds little, so they are few.

use std::collections::VecDeque;
use std::rc::Rc;

use tokio::time::Instant;

use crate::core::records::release_spare;
use crate::core::request::Request;

/// Kept bytes beyond which those the tool has read are dropped at once
/// rather than when their records are answered (a huge record).
const KEEP_LIMIT: usize = 1 << 20;

/// Records of one request written together, not yet all answered.
struct Routed {
    req: Rc<Request>,
    count: usize,
    written: Instant,
}

/// Records of a request that the tool never read, to go to another
/// instance.
pub struct Untaken {
    pub req: Rc<Request>,
    pub data: Vec<u8>,
    /// One past each record in `data`.
    pub ends: Vec<usize>,
}

#[derive(Default)]
pub struct Feed {
    /// Bytes for the tool's stdin; those before `pos` are written.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes written in all.
    fed: u64,
    route: VecDeque<Routed>,
    /// Length of the route when the current load was begun.
    fill_from: usize,
    /// One past each record written or being written and not yet answered.
    ends: VecDeque<u64>,
    /// One past the last answered record.
    answered_end: u64,
    /// Written bytes from offset `kept_from` on.
    kept: Vec<u8>,
    kept_from: u64,
}

impl Feed {
    /// Bytes written to the tool in all.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// What is still to be written.
    pub fn unwritten(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Everything taken was written: the next records may be taken.
    pub fn is_written(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Records written or being written and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.ends.len()
    }

    pub fn route_is_empty(&self) -> bool {
        self.route.is_empty()
    }

    /// The request the oldest unanswered record belongs to.
    pub fn front(&self) -> Option<&Rc<Request>> {
        self.route.front().map(|r| &r.req)
    }

    /// Of the request owed the next answer: its answers still owed in this
    /// run of records, and when the run was written.
    pub fn owed(&self) -> Option<(&Rc<Request>, usize, Instant)> {
        self.route.front().map(|r| (&r.req, r.count, r.written))
    }

    /// Forgets what was written but never will be (the tool stopped
    /// reading).
    pub fn drop_unwritten(&mut self) {
        // Kept all the same, after what was written: their records may go
        // to another instance.
        self.kept.extend_from_slice(&self.buf[self.pos..]);
        self.buf.clear();
        self.pos = 0;
    }

    /// Starts taking a new load of records, once all taken before is
    /// written ([`is_written`](Self::is_written)).
    pub fn begin_fill(&mut self) {
        debug_assert!(self.is_written());
        self.buf.clear();
        release_spare(&mut self.buf);
        self.pos = 0;
        self.fill_from = self.route.len();
    }

    /// Takes up to `n` records of `req` for the tool; returns how many.
    pub fn take(&mut self, req: &Rc<Request>, n: usize) -> usize {
        let k = req.take_records(n, &mut self.buf, &mut self.ends, self.fed);
        if k == 0 {
            return 0;
        }
        req.sent(k);
        let in_this_fill = self.route.len() > self.fill_from;
        match self.route.back_mut() {
            // Runs of one request written together share an entry.
            Some(last) if in_this_fill && Rc::ptr_eq(&last.req, req) => last.count += k,
            _ => self.route.push_back(Routed {
                req: req.clone(),
                count: k,
                written: Instant::now(),
            }),
        }
        k
    }

    /// `n` more bytes reached the tool's stdin. `unread` tells, if asked,
    /// how many written bytes still wait in the pipe.
    pub fn written(&mut self, n: usize, unread: impl FnOnce() -> Option<u64>) {
        self.kept
            .extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.fed += n as u64;
        if self.pos == self.buf.len() {
            // All written (and kept): a big record's room is given back.
            self.buf.clear();
            self.pos = 0;
            release_spare(&mut self.buf);
        }
        if self.kept.len() > KEEP_LIMIT
            && let Some(unread) = unread()
        {
            self.forget_before(self.fed.saturating_sub(unread));
        }
    }

    /// The next `k` answers (at most what the front run is owed) went to
    /// the front request.
    pub fn answered(&mut self, k: usize) {
        let Some(front) = self.route.front_mut() else {
            return;
        };
        front.count -= k;
        if front.count == 0 {
            self.route.pop_front();
        }
        if let Some(&end) = self.ends.get(k.wrapping_sub(1)) {
            self.answered_end = end;
        }
        self.ends.drain(..k.min(self.ends.len()));
        self.forget_before(self.answered_end);
    }

    /// Whether answering `k` more records would answer a record the tool
    /// has not read, given `unread` bytes still in its pipe. The last byte
    /// of a record is spared: a tool may know a record has ended before it
    /// reads the final newline.
    pub fn answers_ahead_of_input(&self, k: usize, unread: u64) -> bool {
        let Some(&end) = self.ends.get(k.wrapping_sub(1)) else {
            return false;
        };
        self.fed.saturating_sub(unread) + 1 < end
    }

    fn forget_before(&mut self, offset: u64) {
        if offset <= self.kept_from {
            return;
        }
        let n = ((offset - self.kept_from) as usize).min(self.kept.len());
        self.kept.drain(..n);
        release_spare(&mut self.kept);
        self.kept_from += n as u64;
    }

    /// Once the tool has ended with `unread` written bytes left in its
    /// pipe: the requests whose records it never read, with those records,
    /// and the requests it read some unanswered record of (they fail).
    /// Empties the feed.
    pub fn untaken(&mut self, unread: u64) -> (Vec<Untaken>, Vec<Rc<Request>>) {
        let consumed = self.fed.saturating_sub(unread);
        let mut stream = std::mem::take(&mut self.kept);
        stream.extend_from_slice(&self.buf[self.pos..]);
        let stream_from = self.kept_from;
        let mut resumed: Vec<Untaken> = Vec::new();
        let mut failed: Vec<Rc<Request>> = Vec::new();
        let mut start = self.answered_end;
        // A tool that answered what it had not read leaves nothing to trust.
        let trusted = consumed >= self.answered_end;
        let mut ends = std::mem::take(&mut self.ends).into_iter();
        for r in std::mem::take(&mut self.route) {
            let mut data = Vec::new();
            let mut rel = Vec::new();
            let mut whole = trusted;
            for _ in 0..r.count {
                let Some(end) = ends.next() else { break };
                if start < consumed || start < stream_from {
                    whole = false;
                }
                if whole {
                    let (a, b) = ((start - stream_from) as usize, (end - stream_from) as usize);
                    match stream.get(a..b) {
                        Some(bytes) => {
                            data.extend_from_slice(bytes);
                            rel.push(data.len());
                        }
                        // Not kept: it cannot go anywhere else.
                        None => whole = false,
                    }
                }
                start = end;
            }
            let doomed = failed.iter().any(|f| Rc::ptr_eq(f, &r.req));
            match resumed.iter().position(|u| Rc::ptr_eq(&u.req, &r.req)) {
                _ if doomed => {}
                Some(i) if !whole => {
                    failed.push(resumed.remove(i).req);
                }
                Some(i) => {
                    let u = &mut resumed[i];
                    let base = u.data.len();
                    u.data.extend_from_slice(&data);
                    u.ends.extend(rel.iter().map(|e| base + e));
                }
                None if whole => resumed.push(Untaken {
                    req: r.req,
                    data,
                    ends: rel,
                }),
                None => failed.push(r.req),
            }
        }
        *self = Self {
            fed: self.fed,
            kept_from: self.fed,
            answered_end: self.fed,
            ..Self::default()
        };
        (resumed, failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::request::End;

    /// A request with `records` queued, fed in one load and all written.
    fn fed(feed: &mut Feed, records: &[&str]) -> Rc<Request> {
        let req = Request::new();
        let mut data = Vec::new();
        let mut ends = Vec::new();
        for r in records {
            data.extend_from_slice(r.as_bytes());
            ends.push(data.len());
        }
        block_on(req.push(data, ends));
        req.end_input(End::Complete);
        feed.begin_fill();
        assert_eq!(feed.take(&req, usize::MAX), records.len());
        let n = feed.unwritten().len();
        feed.written(n, || None);
        req
    }

    /// Request::push only awaits when its queue is full, which these small
    /// tests never fill.
    fn block_on(f: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f);
    }

    #[test]
    fn records_the_tool_never_read_go_back_whole() {
        let mut feed = Feed::default();
        let a = fed(&mut feed, &["a\n", "b\n"]);
        feed.answered(2);
        let b = fed(&mut feed, &["c\n", "d\n"]);
        // The tool read a and b and answered them; c and d wait in its pipe.
        let (untaken, failed) = feed.untaken(4);
        assert!(failed.is_empty());
        assert_eq!(untaken.len(), 1);
        assert!(Rc::ptr_eq(&untaken[0].req, &b));
        assert_eq!(untaken[0].data, b"c\nd\n");
        assert_eq!(untaken[0].ends, [2, 4]);
        drop(a);
    }

    #[test]
    fn the_rest_of_a_call_goes_back_after_its_answered_records() {
        let mut feed = Feed::default();
        let a = fed(&mut feed, &["1\n", "2\n", "3\n", "4\n"]);
        feed.answered(3);
        let (untaken, failed) = feed.untaken(2);
        assert!(failed.is_empty());
        assert!(Rc::ptr_eq(&untaken[0].req, &a));
        assert_eq!(untaken[0].data, b"4\n");
    }

    #[test]
    fn a_record_the_tool_read_and_did_not_answer_fails_its_request() {
        let mut feed = Feed::default();
        let a = fed(&mut feed, &["1\n", "2\n"]);
        feed.answered(1);
        // It read one byte of "2\n" and died.
        let (untaken, failed) = feed.untaken(1);
        assert!(untaken.is_empty());
        assert!(Rc::ptr_eq(&failed[0], &a));
    }

    #[test]
    fn answers_ahead_of_input_are_seen() {
        let mut feed = Feed::default();
        let _a = fed(&mut feed, &["one\n", "two\n"]);
        // Nothing read yet: no answer can be right.
        assert!(feed.answers_ahead_of_input(1, 8));
        // "one\n" read: its answer is right, one for "two\n" is not.
        assert!(!feed.answers_ahead_of_input(1, 4));
        assert!(feed.answers_ahead_of_input(2, 4));
        // All but the final newline read: spared.
        assert!(!feed.answers_ahead_of_input(2, 1));
    }
}
