//! A worker: one tool instance run as a task, serving the requests attached
//! to it (SPEC 5).
//!
//! A connection handler turns its client's input into whole records and
//! queues them on its [`Request`]; the worker writes queued records to the
//! tool's stdin while it reads answers from the tool's stdout, and hands
//! each answer to the request whose record it answers (a FIFO route of
//! `(request, count)`). The tool is never written to while its output goes
//! unread, so it cannot deadlock on full pipes; and nobody blocks on a
//! client: answers wait in the request's buffer for its handler to send.
//!
//! By default a worker serves one request at a time. With `--interleave`
//! several requests share it: records are taken round-robin, one from each
//! request in turn, and only a few records' worth of work is kept waiting
//! in the tool's stdin, so that a short request is never stuck behind a
//! long one.
//!
//! Everything runs on the server's one thread: state is shared through
//! `Rc`, `Cell` and `RefCell`, and no borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::core::instance::{Failure, Instance};
use crate::core::pool::{Pool, PoolConfig};
use crate::core::protocol::{self, Kind};
use crate::core::state::Stats;

/// Bytes of input a request may queue before its reader waits.
const INPUT_QUEUE: usize = 1 << 20;
/// Bytes of answers waiting for a slow client beyond which its records are
/// held back (so a client that does not read cannot make us buffer without
/// end, nor stall anybody else).
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// Longest wait for one answer owed to a client that has gone, when no
/// `-w` is set; after it the instance is killed rather than kept busy.
const ORPHAN_ANSWER_WAIT: Duration = Duration::from_secs(30);
/// Once the tool has exited, how long its remaining output may take.
const AFTER_EXIT_WAIT: Duration = Duration::from_secs(1);
/// The work kept waiting in the tool's stdin, as time's worth of records
/// at the tool's recent pace: little under `--interleave`, so that a new
/// call's record comes soon; more for one call, to stream at full speed,
/// but bounded, so that a call that leaves does not keep the tool busy
/// long with records nobody wants.
const INTERLEAVE_AHEAD: (Duration, usize, usize) = (Duration::from_millis(5), 2, 4096);
const EXCLUSIVE_AHEAD: (Duration, usize, usize) = (Duration::from_millis(100), 16, 1 << 16);
/// Time a healthy tool gets to exit once its stdin is closed.
pub const TOOL_EXIT_GRACE: Duration = Duration::from_secs(2);

/// How a request's input ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Complete,
    /// Input ended inside a record; this many bytes were dropped.
    Unfinished(usize),
}

/// Whole records of one request, with the offset one past each.
struct Batch {
    data: Vec<u8>,
    ends: Vec<usize>,
    /// Records already taken.
    next: usize,
}

impl Batch {
    fn start(&self) -> usize {
        match self.next {
            0 => 0,
            n => self.ends[n - 1],
        }
    }
}

/// One client's call: the queues between its connection handler and the
/// worker serving it.
pub struct Request {
    pub arrived: Instant,
    queue: RefCell<VecDeque<Batch>>,
    queued_bytes: Cell<usize>,
    queued_records: Cell<usize>,
    end: Cell<Option<End>>,
    gone: Cell<bool>,
    /// The reader may queue more.
    room: Notify,
    /// For the handler: output, the end, or (while it waits for a worker)
    /// that its client went away.
    changed: Notify,
    out: RefCell<Vec<u8>>,
    finished: RefCell<Option<(i32, Option<String>)>>,
    in_flight: Cell<usize>,
    answered: Cell<u64>,
    worker: RefCell<Weak<Worker>>,
}

impl Request {
    pub fn new() -> Rc<Self> {
        Rc::new(Self {
            arrived: Instant::now(),
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            queued_records: Cell::new(0),
            end: Cell::new(None),
            gone: Cell::new(false),
            room: Notify::new(),
            changed: Notify::new(),
            out: RefCell::new(Vec::new()),
            finished: RefCell::new(None),
            in_flight: Cell::new(0),
            answered: Cell::new(0),
            worker: RefCell::new(Weak::new()),
        })
    }

    /// Queues whole records, first waiting until the queue has room.
    pub async fn push(&self, data: Vec<u8>, ends: Vec<usize>) {
        while self.queued_bytes.get() >= INPUT_QUEUE && !self.is_finished() {
            self.room.notified().await;
        }
        self.queued_bytes.set(self.queued_bytes.get() + data.len());
        self.queued_records
            .set(self.queued_records.get() + ends.len());
        self.queue.borrow_mut().push_back(Batch {
            data,
            ends,
            next: 0,
        });
        self.wake_worker();
    }

    pub fn end_input(&self, end: End) {
        self.end.set(Some(end));
        self.wake_worker();
    }

    /// The client went away: its answers are dropped, its queue forgotten.
    pub fn set_gone(&self) {
        self.gone.set(true);
        self.forget_queue();
        self.changed.notify_one();
        self.wake_worker();
    }

    pub fn is_gone(&self) -> bool {
        self.gone.get()
    }

    /// Frames waiting to be sent to the client.
    pub fn take_output(&self) -> Vec<u8> {
        let out = std::mem::take(&mut *self.out.borrow_mut());
        if out.len() >= OUTPUT_HIGH_WATER {
            self.wake_worker();
        }
        out
    }

    /// The exit status and message, once the request is over.
    pub fn finished(&self) -> Option<(i32, Option<String>)> {
        self.finished.borrow().clone()
    }

    pub fn is_finished(&self) -> bool {
        self.finished.borrow().is_some()
    }

    /// Whether its worker's tool is still starting.
    pub fn tool_starting(&self) -> bool {
        self.worker
            .borrow()
            .upgrade()
            .is_some_and(|w| w.state() == WorkerState::Starting)
    }

    /// Waits for output, the end, or the client going away.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    pub fn answered(&self) -> u64 {
        self.answered.get()
    }

    /// Ends the request (for example when no worker could be had).
    pub fn finish(&self, status: i32, message: Option<String>) {
        if self.is_finished() {
            return;
        }
        *self.finished.borrow_mut() = Some((status, message));
        self.changed.notify_one();
        self.room.notify_one();
    }

    fn emit(&self, kind: Kind, bytes: &[u8]) {
        if self.gone.get() || bytes.is_empty() {
            return;
        }
        protocol::encode_stream(kind, bytes, &mut self.out.borrow_mut());
        self.changed.notify_one();
    }

    fn wake_worker(&self) {
        if let Some(w) = self.worker.borrow().upgrade() {
            w.wake.notify_one();
        }
    }

    /// Records it has queued that the worker may take now.
    fn ready_records(&self) -> usize {
        if self.gone.get() || self.out.borrow().len() >= OUTPUT_HIGH_WATER {
            0
        } else {
            self.queued_records.get()
        }
    }

    /// Takes up to `n` queued records into `buf`; returns how many.
    fn take_records(&self, n: usize, buf: &mut Vec<u8>) -> usize {
        let mut queue = self.queue.borrow_mut();
        let mut taken = 0;
        while taken < n {
            let Some(b) = queue.front_mut() else { break };
            let k = (n - taken).min(b.ends.len() - b.next);
            let (from, to) = (b.start(), b.ends[b.next + k - 1]);
            buf.extend_from_slice(&b.data[from..to]);
            b.next += k;
            taken += k;
            self.queued_bytes.set(self.queued_bytes.get() - (to - from));
            if b.next == b.ends.len() {
                queue.pop_front();
            }
        }
        drop(queue);
        self.queued_records.set(self.queued_records.get() - taken);
        if taken > 0 {
            self.room.notify_one();
        }
        taken
    }

    fn forget_queue(&self) {
        self.queue.borrow_mut().clear();
        self.queued_bytes.set(0);
        self.queued_records.set(0);
        self.room.notify_one();
    }

    /// Nothing more will come from it or go to it.
    fn is_done(&self) -> bool {
        self.in_flight.get() == 0
            && (self.gone.get() || (self.end.get().is_some() && self.queued_records.get() == 0))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    Starting,
    Ready,
    Dead,
}

/// One tool instance and the requests it serves.
pub struct Worker {
    pool: Weak<Pool>,
    stats: Rc<Stats>,
    state: Cell<WorkerState>,
    pid: Cell<u32>,
    pub started_at: std::time::SystemTime,
    attached: RefCell<Vec<Rc<Request>>>,
    prelude: RefCell<Vec<u8>>,
    wake: Notify,
    stopping: Cell<bool>,
    /// Given to a request (default mode: one at a time).
    reserved: Cell<bool>,
    idle_since: Cell<Instant>,
    /// It wrote something: it did not fail to start.
    spoke: Cell<bool>,
    /// Bytes written to its stdin.
    fed: Cell<u64>,
    requests: Cell<u64>,
    records: Cell<u64>,
}

impl Worker {
    /// Starts a worker; its tool starts loading at once.
    pub fn spawn(pool: &Rc<Pool>) -> Rc<Self> {
        let w = Rc::new(Self {
            pool: Rc::downgrade(pool),
            stats: pool.stats().clone(),
            state: Cell::new(WorkerState::Starting),
            pid: Cell::new(0),
            started_at: std::time::SystemTime::now(),
            attached: RefCell::new(Vec::new()),
            prelude: RefCell::new(Vec::new()),
            wake: Notify::new(),
            stopping: Cell::new(false),
            reserved: Cell::new(false),
            idle_since: Cell::new(Instant::now()),
            spoke: Cell::new(false),
            fed: Cell::new(0),
            requests: Cell::new(0),
            records: Cell::new(0),
        });
        pool.worker_started();
        let (me, pool) = (w.clone(), Rc::downgrade(pool));
        tokio::task::spawn_local(async move {
            me.run().await;
            if let Some(pool) = pool.upgrade() {
                pool.worker_done();
            }
        });
        w
    }

    pub fn state(&self) -> WorkerState {
        self.state.get()
    }

    pub fn pid(&self) -> u32 {
        self.pid.get()
    }

    /// Requests attached now.
    pub fn load(&self) -> usize {
        self.attached.borrow().len()
    }

    pub fn is_reserved(&self) -> bool {
        self.reserved.get()
    }

    pub fn reserve(&self) {
        self.reserved.set(true);
    }

    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    pub fn records(&self) -> u64 {
        self.records.get()
    }

    /// Gives the worker a request to serve. A ready worker sends it the
    /// prelude at once; a starting one, once the tool has written it.
    pub fn attach(self: &Rc<Self>, req: Rc<Request>) {
        *req.worker.borrow_mut() = Rc::downgrade(self);
        if self.state.get() == WorkerState::Ready {
            req.emit(Kind::Output, &self.prelude.borrow());
        }
        self.requests.set(self.requests.get() + 1);
        self.attached.borrow_mut().push(req);
        self.wake.notify_one();
        self.stats.changed();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Ends every request it serves with this status and message, ahead
    /// of the tool's death (the server stops without waiting for them).
    pub fn cut(&self, code: i32, message: &str) {
        for r in self.attached.borrow().iter() {
            r.finish(code, Some(message.to_owned()));
        }
    }

    /// Asks the worker to stop once it has no requests.
    pub fn stop(&self) {
        self.stopping.set(true);
        self.wake.notify_one();
    }

    async fn run(self: Rc<Self>) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let cfg = pool.config().clone();
        drop(pool);
        let notice = |m: &str| {
            for r in self.attached.borrow().iter() {
                r.emit(Kind::Info, m.as_bytes());
            }
        };
        let mut inst = match Instance::start(&cfg.spec, &cfg.output, notice).await {
            Ok(i) => i,
            Err(f) => {
                // Recorded before it leaves the pool, so that those who
                // waited for this start get its failure, not another try.
                if let Some(pool) = self.pool.upgrade() {
                    pool.start_failed(f.clone());
                }
                self.leave_pool();
                return self.die(f);
            }
        };
        self.pid.set(inst.pid);
        *self.prelude.borrow_mut() = inst.prelude.clone();
        self.spoke.set(!inst.prelude.is_empty());
        self.state.set(WorkerState::Ready);
        self.stats.changed();
        for r in self.attached.borrow().iter() {
            r.emit(Kind::Output, &inst.prelude);
        }
        let exit = self.serve(&mut inst, &cfg).await;
        // Dead before anything else is awaited: nobody new may be given an
        // instance that is going away. It leaves the pool (and its place
        // goes to the waiters) once its failure is known.
        self.state.set(WorkerState::Dead);
        let failure = match exit {
            Exit::Stop => {
                self.leave_pool();
                inst.stop(TOOL_EXIT_GRACE).await;
                return;
            }
            Exit::ToolEnded => {
                tracing::info!(pid = inst.pid, "tool output ended");
                let when = if self.spoke.get() {
                    "while serving this call"
                } else {
                    "before answering anything"
                };
                let mut f = inst.ended(when).await;
                if f.code == 0 {
                    // Exiting with answers owed is a failure all the same.
                    f.code = crate::core::status::FAILURE;
                }
                if self.never_started(&inst)
                    && let Some(pool) = self.pool.upgrade()
                {
                    // It never got going (SPEC 4): those waiting for it get
                    // this, not one more start each.
                    pool.start_failed(f.clone());
                }
                f
            }
            Exit::Timeout(secs) => {
                tracing::warn!(
                    pid = inst.pid,
                    "no answer within {secs} s; killing the tool"
                );
                inst.kill().await;
                Failure {
                    code: crate::core::status::TIMEOUT,
                    message: format!(
                        "the tool did not answer a record within {secs} s (--process-timeout); it \
                         was killed. A tool that needs longer needs a larger -w; one that writes \
                         fewer answers than it reads records (several records per answer) needs \
                         other -t/-T options"
                    ),
                }
            }
            Exit::Framing(f) => {
                tracing::warn!(pid = inst.pid, "{}", f.message);
                inst.kill().await;
                f
            }
            Exit::Orphaned => {
                tracing::warn!(
                    pid = inst.pid,
                    "answers owed to calls that left did not come within {ORPHAN_ANSWER_WAIT:?}; killing the tool"
                );
                inst.kill().await;
                Failure {
                    code: crate::core::status::FAILURE,
                    message: "the tool was restarted".to_owned(),
                }
            }
        };
        self.leave_pool();
        // Its last stderr lines explain its end to those it served.
        while let Ok(line) = inst.stderr.try_recv() {
            for r in self.attached.borrow().iter() {
                r.emit(Kind::Stderr, &line);
            }
        }
        self.die(failure);
    }

    /// Whether an ended tool failed to start rather than on a record: it
    /// answered nothing and read nothing (all that was written to it is
    /// still in the pipe). One that died on its first record must not fail
    /// the calls waiting behind that record.
    fn never_started(&self, inst: &Instance) -> bool {
        if self.spoke.get() {
            return false;
        }
        match &inst.stdin {
            Some(stdin) => {
                rustix::io::ioctl_fionread(stdin).is_ok_and(|unread| unread == self.fed.get())
            }
            None => self.fed.get() == 0,
        }
    }

    /// Marks the worker dead and takes it out of the pool's hands.
    fn leave_pool(self: &Rc<Self>) {
        self.state.set(WorkerState::Dead);
        self.stats.changed();
        if let Some(pool) = self.pool.upgrade() {
            pool.forget(self);
        }
    }

    /// The tool is gone: every request it had fails with `f`.
    fn die(&self, f: Failure) {
        let attached = std::mem::take(&mut *self.attached.borrow_mut());
        for r in attached {
            r.finish(f.code, Some(f.message.clone()));
        }
    }

    /// Ends requests that are done; a request whose client went away is
    /// dropped once it is owed nothing. Gives a default-mode worker back to
    /// the pool when its request is over.
    fn settle(self: &Rc<Self>) {
        let mut finished = Vec::new();
        self.attached.borrow_mut().retain(|r| {
            if r.is_gone() {
                r.forget_queue();
            }
            if r.is_done() {
                finished.push(r.clone());
                false
            } else {
                true
            }
        });
        if finished.is_empty() {
            return;
        }
        self.stats.changed();
        for r in &finished {
            match r.end.get() {
                _ if r.is_gone() => {}
                Some(End::Unfinished(bytes)) => r.finish(
                    crate::core::status::DATA,
                    Some(format!(
                        "input ended inside an unfinished record ({bytes} bytes after the last \
                         terminator line); that record was not sent"
                    )),
                ),
                _ => r.finish(0, None),
            }
        }
        if self.attached.borrow().is_empty() {
            self.idle_since.set(Instant::now());
            if self.reserved.replace(false)
                && let Some(pool) = self.pool.upgrade()
            {
                pool.release();
            }
        }
    }

    /// Moves queued records into `buf` for the tool, at most `budget`, and
    /// notes who they belong to. Default mode: everything the one request
    /// has. Interleaved: one record from each request in turn.
    fn fill(
        &self,
        buf: &mut Vec<u8>,
        route: &mut VecDeque<Routed>,
        rr: &mut usize,
        budget: usize,
    ) -> usize {
        let ready: Vec<Rc<Request>> = self
            .attached
            .borrow()
            .iter()
            .filter(|r| r.ready_records() > 0)
            .cloned()
            .collect();
        if ready.is_empty() || budget == 0 {
            return 0;
        }
        let now = Instant::now();
        let first_new = route.len();
        // `buf` is filled only once all before it was written.
        let base = self.fed.get();
        let mut note = |r: &Rc<Request>, k: usize, buf: &[u8]| {
            r.in_flight.set(r.in_flight.get() + k);
            let end = base + buf.len() as u64;
            let len = route.len();
            match route.back_mut() {
                // Runs of one request written together share an entry.
                Some(last) if len > first_new && Rc::ptr_eq(&last.req, r) => {
                    last.count += k;
                    last.end = end;
                }
                _ => route.push_back(Routed {
                    req: r.clone(),
                    count: k,
                    written: now,
                    end,
                }),
            }
        };
        let mut total = 0;
        if ready.len() == 1 {
            let r = &ready[0];
            let k = r.take_records(budget, buf);
            note(r, k, buf);
            return k;
        }
        let len = ready.len();
        let mut misses = 0;
        while total < budget && misses < len {
            let r = &ready[*rr % len];
            *rr = rr.wrapping_add(1);
            if r.ready_records() > 0 && r.take_records(1, buf) == 1 {
                note(r, 1, buf);
                total += 1;
                misses = 0;
            } else {
                misses += 1;
            }
        }
        total
    }

    /// Serves until the tool ends or times out, or the worker may stop.
    async fn serve(self: &Rc<Self>, inst: &mut Instance, cfg: &PoolConfig) -> Exit {
        let mut route: VecDeque<Routed> = VecDeque::new();
        let mut in_flight = 0usize;
        let mut wbuf: Vec<u8> = Vec::new();
        let mut wpos = 0usize;
        let mut rbuf = vec![0u8; 64 * 1024];
        let mut answers = Vec::new();
        let mut since = Instant::now();
        let mut per_record: Option<f64> = None;
        let mut rr = 0usize;
        let mut exited_at: Option<Instant> = None;
        // When the tool stopped taking input: records not written to it
        // will never be answered.
        let mut stdin_broken: Option<Instant> = None;
        let mut unsolicited = false;
        let Instance {
            pid,
            child,
            stdin,
            stdout,
            out,
            stderr,
            ..
        } = inst;
        let pid = *pid;

        loop {
            let finishing: Vec<Rc<Request>> = self
                .attached
                .borrow()
                .iter()
                .filter(|r| r.is_done() && !r.is_gone())
                .cloned()
                .collect();
            // A call whose answers are all in is not ended while more
            // output waits in the pipe: if that is more than was asked for,
            // the call must hear of it before its status.
            let output_waits = !finishing.is_empty()
                && rustix::io::ioctl_fionread(&*stdout).is_ok_and(|unread| unread > 0);
            if let Some(last) = finishing.first().filter(|_| !output_waits) {
                // Stderr travels apart from stdout: a line the tool wrote
                // just before its last answer may not have reached us yet.
                // Letting the runtime poll its pipes once more brings it in.
                for _ in 0..2 {
                    tokio::task::yield_now().await;
                }
                while let Ok(line) = stderr.try_recv() {
                    last.emit(Kind::Stderr, &line);
                }
            }
            if !output_waits {
                self.settle();
            }
            let idle = self.attached.borrow().is_empty() && !self.reserved.get();
            if unsolicited && idle {
                tracing::warn!(
                    pid,
                    "retiring the tool: it wrote answers nobody asked for (a prelude? see -P)"
                );
                return Exit::Stop;
            }
            if self.stopping.get() && idle {
                return Exit::Stop;
            }
            if wpos == wbuf.len() && stdin_broken.is_none() {
                wbuf.clear();
                wpos = 0;
                let (time, least, most) = if cfg.spec.interleave {
                    INTERLEAVE_AHEAD
                } else {
                    EXCLUSIVE_AHEAD
                };
                let ahead = match per_record {
                    Some(per) => ((time.as_secs_f64() / per.max(1e-9)) as usize).clamp(least, most),
                    None => least,
                };
                let was_empty = route.is_empty();
                let n = self.fill(
                    &mut wbuf,
                    &mut route,
                    &mut rr,
                    ahead.saturating_sub(in_flight),
                );
                in_flight += n;
                if was_empty && n > 0 {
                    since = Instant::now();
                }
            }

            // Answers owed only to calls that left are waited for a while,
            // then the tool is restarted; but not while a live call shares
            // it (under --interleave): a slow record is slow for it too.
            let orphans_only = self.attached.borrow().iter().all(|r| r.is_gone());
            let answer_due = match cfg.spec.process_timeout {
                _ if route.is_empty() => None,
                Some(t) => Some((since + t, Exit::Timeout(t.as_secs_f64()))),
                None if orphans_only => Some((since + ORPHAN_ANSWER_WAIT, Exit::Orphaned)),
                None => None,
            };
            let output_due = exited_at.or(stdin_broken).map(|t| t + AFTER_EXIT_WAIT);
            let idle_due = match cfg.spec.server_timeout {
                Some(t) if idle => Some(self.idle_since.get() + t),
                _ => None,
            };

            tokio::select! {
                biased;
                r = stdout.read(&mut rbuf) => {
                    let n = match r {
                        Ok(0) | Err(_) => return Exit::ToolEnded,
                        Ok(n) => n,
                    };
                    out.push(&rbuf[..n]);
                    let mut given = 0usize;
                    while out.complete() > 0 {
                        let Some(Routed { req, count, written, end }) = route.front_mut() else {
                            let extra = out.discard(usize::MAX);
                            if self.attached.borrow().iter().any(|r| !r.is_finished() && !r.is_gone()) {
                                return Exit::Framing(framing_failure(
                                    &cfg.spec,
                                    &format!(
                                        "the tool wrote {extra} more answer record{} than this call \
                                         sent records",
                                        if extra == 1 { "" } else { "s" }
                                    ),
                                ));
                            }
                            tracing::warn!(pid, records = extra, "tool wrote answers nobody asked for; dropped");
                            unsolicited = true;
                            break;
                        };
                        let k = (*count).min(out.complete());
                        // A tool cannot answer a record before it has read
                        // it. (The last byte is spared: a tool may know a
                        // record's end before it reads the final newline.)
                        if k == *count
                            && let Some(stdin) = stdin.as_ref()
                            && let Ok(unread) = rustix::io::ioctl_fionread(stdin)
                            && self.fed.get().saturating_sub(unread) + 1 < *end
                        {
                            return Exit::Framing(framing_failure(
                                &cfg.spec,
                                "the tool answered records it had not read yet",
                            ));
                        }
                        answers.clear();
                        out.take_into(k, &mut answers);
                        req.emit(Kind::Output, &answers);
                        req.in_flight.set(req.in_flight.get() - k);
                        req.answered.set(req.answered.get() + k as u64);
                        self.stats.answered(k as u64, written.elapsed());
                        Stats::add(&self.stats.bytes_out, answers.len() as u64);
                        *count -= k;
                        given += k;
                        if *count == 0 {
                            route.pop_front();
                        }
                    }
                    if given > 0 {
                        in_flight -= given;
                        self.spoke.set(true);
                        self.records.set(self.records.get() + given as u64);
                        let now = Instant::now();
                        let per = now.duration_since(since).as_secs_f64() / given as f64;
                        per_record = Some(per_record.map_or(per, |p| 0.8 * p + 0.2 * per));
                        since = now;
                    }
                }
                w = write_some(stdin, &wbuf[wpos..]), if wpos < wbuf.len() => match w {
                    Ok(n) => {
                        wpos += n;
                        self.fed.set(self.fed.get() + n as u64);
                    }
                    Err(_) => {
                        // The tool stopped reading; the answers it still
                        // writes come within a moment, or never.
                        stdin_broken = Some(Instant::now());
                        wbuf.clear();
                        wpos = 0;
                    }
                },
                Some(line) = stderr.recv() => {
                    let to = route.front().map(|e| e.req.clone()).or_else(|| {
                        let a = self.attached.borrow();
                        (a.len() == 1).then(|| a[0].clone())
                    });
                    if let Some(r) = to {
                        r.emit(Kind::Stderr, &line);
                    }
                }
                _ = self.wake.notified() => {}
                _ = child.wait(), if exited_at.is_none() => {
                    // Its output ends once whatever it started is gone too.
                    exited_at = Some(Instant::now());
                    crate::core::instance::kill_group(pid);
                }
                _ = sleep_until(output_due) => return Exit::ToolEnded,
                _ = sleep_until(answer_due.as_ref().map(|(t, _)| *t)) => {
                    return answer_due.map_or(Exit::Orphaned, |(_, why)| why);
                }
                _ = sleep_until(idle_due) => {
                    match self.pool.upgrade() {
                        Some(pool) if pool.may_retire(self) => {
                            tracing::info!(pid, "retiring an idle extra instance");
                            return Exit::Stop;
                        }
                        _ => self.idle_since.set(Instant::now()),
                    }
                }
            }
        }
    }
}

/// Records written to the tool and not yet answered: `count` of `req`'s,
/// written at `written`, ending at byte `end` of all that was written to
/// the tool's stdin.
struct Routed {
    req: Rc<Request>,
    count: usize,
    written: Instant,
    end: u64,
}

/// Why a worker's serving ended.
enum Exit {
    /// Asked to stop, or retiring: stop the tool gracefully.
    Stop,
    /// The tool closed its output or exited.
    ToolEnded,
    /// A record was not answered within this many seconds (`-w`).
    Timeout(f64),
    /// Answers owed only to calls that left did not come in time.
    Orphaned,
    /// The tool wrote more answers than it was sent records: its answers
    /// can no longer be matched to records.
    Framing(Failure),
}

/// The failure of a call whose answers outnumber its records, with the
/// likely causes and the options that fix them.
fn framing_failure(spec: &crate::core::config::ToolSpec, what: &str) -> Failure {
    let quote = |p: &str| crate::core::shell::quote(p.as_ref());
    Failure {
        code: crate::core::status::FAILURE,
        message: format!(
            "{what}, so its answers cannot be matched to this call's records (-t {}, -T {}, -P \
             {}); the tool was stopped. Likely causes: answers of several lines (give -T the \
             pattern of an answer's last line, such as '^$' for a blank line), a banner at \
             start-up (give -P the number of its records), or more than one answer per record \
             (an n-best or trailer option of the tool)",
            quote(&spec.input_terminator),
            quote(&spec.output_terminator),
            spec.prelude
        ),
    }
}

async fn write_some(
    stdin: &mut Option<tokio::process::ChildStdin>,
    buf: &[u8],
) -> std::io::Result<usize> {
    match stdin {
        Some(s) => s.write(buf).await,
        None => Err(std::io::ErrorKind::BrokenPipe.into()),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
