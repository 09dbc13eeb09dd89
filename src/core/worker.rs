//! A worker: one tool instance run as a task, serving the requests attached
//! to it.
//!
//! A connection handler turns its client's input into whole records and
//! queues them on its [`Request`]; the worker writes queued records to the
//! tool's stdin while it reads answers from the tool's stdout, and hands
//! each answer to the request whose record it answers (the
//! [`Feed`](crate::core::feed::Feed)). The tool is never written to while its output goes
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
use std::rc::{Rc, Weak};
use std::time::Duration;

use tokio::io::{AsyncReadExt, Interest};
use tokio::net::unix::pipe;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::core::config::ToolSpec;
use crate::core::feed::Feed;
use crate::core::instance::{Failure, Instance};
use crate::core::procinfo::PipeReader;
use crate::core::protocol::Kind;
use crate::core::records::Terminator;
use crate::core::request::{End, Request};
use crate::core::state::Stats;

/// Longest wait for one answer owed to a client that has gone, when no
/// `-w` is set; after it the instance is killed rather than kept busy.
const ORPHAN_ANSWER_WAIT: Duration = Duration::from_secs(30);
/// Without `-w`: how long a record may wait for its answer before the call
/// is told what the likely causes are (once; it waits on).
const SLOW_ANSWER_HINT: Duration = Duration::from_secs(10);
/// What usually keeps a tool from answering, and the fixes.
const NO_ANSWER_CAUSES: &str = "A tool that buffers its output (most do when stdout is a pipe) never \
     answers: run it under stdbuf -oL, or with its flush option (python -u, grep --line-buffered, \
     sed -u); one that writes fewer answers than it reads records needs other -t/-T options";
/// Once a call's answers are all in, how long the tool may go on running
/// before it is seen waiting for its next record (what it writes meanwhile
/// is more than was asked), and how it is looked at meanwhile: at each turn
/// of the runtime at first, then every millisecond.
const SETTLE_WAIT: Duration = Duration::from_millis(50);
const SETTLE_QUICK_LOOKS: u32 = 32;
/// A tool that is not seen waiting for input this many calls in a row
/// (it reads through another process, or polls) is not waited for again.
const SETTLE_MISSES: u32 = 3;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    Starting,
    Ready,
    Dead,
}

/// What every worker of a pool runs.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub spec: ToolSpec,
    pub input: Terminator,
    pub output: Terminator,
}

/// What a worker asks of the pool that runs it, and tells it. The pool
/// implements it, so that a worker knows nothing of the pool and the
/// imports go one way: the pool drives its workers, a worker reports.
pub trait Owner {
    fn config(&self) -> Rc<PoolConfig>;
    fn stats(&self) -> Rc<Stats>;
    /// A worker's task begins.
    fn worker_started(&self);
    /// A worker's task ended: its tool is stopped or dead.
    fn worker_done(&self);
    /// A tool failed to start: those waiting get this failure.
    fn start_failed(&self, f: Failure);
    /// A worker is going away; `resumed` go on with another instance.
    fn forget(self: Rc<Self>, w: &Rc<Worker>, resumed: Vec<Rc<Request>>);
    /// A default-mode worker's request is over: it is free again.
    fn release(self: Rc<Self>);
    /// Whether an idle worker may retire (it then leaves the pool).
    fn may_retire(&self, w: &Rc<Worker>) -> bool;
}

/// One tool instance and the requests it serves.
pub struct Worker {
    pool: Weak<dyn Owner>,
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
    requests: Cell<u64>,
    records: Cell<u64>,
    /// When the oldest record it was given and has not answered was
    /// taken to be written to it.
    oldest_in_flight: Cell<Option<Instant>>,
}

impl Worker {
    /// Starts a worker; its tool starts loading at once.
    pub fn spawn(pool: &Rc<dyn Owner>) -> Rc<Self> {
        let w = Rc::new(Self {
            pool: Rc::downgrade(pool),
            stats: pool.stats(),
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
            requests: Cell::new(0),
            records: Cell::new(0),
            oldest_in_flight: Cell::new(None),
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

    /// When its oldest unanswered record was sent (`None` when it owes
    /// none): a stuck call shows here.
    pub fn oldest_in_flight(&self) -> Option<Instant> {
        self.oldest_in_flight.get()
    }

    /// Gives the worker a request to serve. A ready worker sends it the
    /// prelude at once; a starting one, once the tool has written it.
    pub fn attach(self: &Rc<Self>, req: Rc<Request>) {
        req.served_by(self);
        if self.state.get() == WorkerState::Ready {
            req.give_prelude(&self.prelude.borrow());
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

    pub(crate) fn wake(&self) {
        self.wake.notify_one();
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
        let cfg = pool.config();
        drop(pool);
        let notice = |m: &str| {
            for r in self.attached.borrow().iter() {
                r.emit(Kind::Info, m.as_bytes());
            }
        };
        let spawned = |pid| self.pid.set(pid);
        let mut inst = match Instance::start(&cfg.spec, &cfg.output, notice, spawned).await {
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
            r.give_prelude(&inst.prelude);
        }
        let mut feed = Feed::default();
        let exit = self.serve(&mut inst, &mut feed, &cfg).await;
        self.oldest_in_flight.set(None);
        let mut resumed = Vec::new();
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
                // Calls it had answered in full, while it was still looked
                // at for more output, are served: nothing more came.
                self.settle();
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
                if self.never_started(&inst, feed.fed()) {
                    if let Some(pool) = self.pool.upgrade() {
                        // It never got going: those waiting for it
                        // get this, not one more start each.
                        pool.start_failed(f.clone());
                    }
                } else {
                    resumed = self.take_back_untaken(&inst, &mut feed);
                    if !resumed.is_empty() {
                        tracing::info!(
                            pid = inst.pid,
                            calls = resumed.len(),
                            "the tool ended between records ({}); its calls go on with a fresh instance",
                            f.message
                        );
                    }
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
                         was killed. A tool that needs longer needs a larger -w. \
                         {NO_ANSWER_CAUSES}"
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
        self.leave_pool_resuming(resumed);
        // Its last stderr lines explain its end to those it served.
        while let Some(line) = inst.stderr.try_recv() {
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
    fn never_started(&self, inst: &Instance, fed: u64) -> bool {
        if self.spoke.get() {
            return false;
        }
        match &inst.stdin {
            Some(stdin) => rustix::io::ioctl_fionread(stdin).is_ok_and(|unread| unread == fed),
            None => fed == 0,
        }
    }

    /// The tool ended having answered records before. A request it never
    /// answered nor read a record of (a tool that exits after its Nth
    /// record, while the next call was already handed to it), or whose
    /// unanswered records it never read (a call longer than the tool's
    /// request limit), is taken off it, with those records given back, to
    /// go on with a fresh instance. The others stay, to fail: one whose
    /// record it read, and one it was serving with nothing owed (killed
    /// while the call waited for more input: the call hears of it).
    ///
    /// Only a tool that exited by itself having answered something counts:
    /// one that stopped reading but lived on would stop the next instance
    /// the same way, and one that never answered failed to start.
    fn take_back_untaken(&self, inst: &Instance, feed: &mut Feed) -> Vec<Rc<Request>> {
        if self.records.get() == 0 || !inst.exited {
            return Vec::new();
        }
        let Some(unread) = inst
            .stdin
            .as_ref()
            .and_then(|s| rustix::io::ioctl_fionread(s).ok())
        else {
            return Vec::new();
        };
        let (untaken, failed) = feed.untaken(unread);
        let mut given_back = Vec::new();
        for u in untaken {
            u.req.give_back(u.data, u.ends);
            given_back.push(u.req);
        }
        let mut resumed = Vec::new();
        self.attached.borrow_mut().retain(|r| {
            let stays = r.is_gone()
                || failed.iter().any(|f| Rc::ptr_eq(f, r))
                || (r.answered_here() && !given_back.iter().any(|g| Rc::ptr_eq(g, r)));
            if !stays {
                resumed.push(r.clone());
            }
            stays
        });
        resumed
    }

    /// Marks the worker dead and takes it out of the pool's hands.
    fn leave_pool(self: &Rc<Self>) {
        self.leave_pool_resuming(Vec::new());
    }

    /// [`leave_pool`](Self::leave_pool), handing the pool requests to go on
    /// with another instance before anybody else is served.
    fn leave_pool_resuming(self: &Rc<Self>, resumed: Vec<Rc<Request>>) {
        self.state.set(WorkerState::Dead);
        self.stats.changed();
        match self.pool.upgrade() {
            Some(pool) => pool.forget(self, resumed),
            None => {
                for r in resumed {
                    r.finish(
                        crate::core::status::UNAVAILABLE,
                        Some("the server is shutting down".into()),
                    );
                }
            }
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
            match r.input_end() {
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

    /// Takes queued records for the tool, at most `budget`. Default mode:
    /// everything the one request has. Interleaved: one record from each
    /// request in turn.
    fn fill(&self, feed: &mut Feed, rr: &mut usize, budget: usize) -> usize {
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
        feed.begin_fill();
        if let [r] = ready.as_slice() {
            return feed.take(r, budget);
        }
        let len = ready.len();
        let mut total = 0;
        let mut misses = 0;
        while total < budget && misses < len {
            let r = &ready[*rr % len];
            *rr = rr.wrapping_add(1);
            if r.ready_records() > 0 && feed.take(r, 1) == 1 {
                total += 1;
                misses = 0;
            } else {
                misses += 1;
            }
        }
        total
    }

    /// Serves until the tool ends or times out, or the worker may stop.
    async fn serve(
        self: &Rc<Self>,
        inst: &mut Instance,
        feed: &mut Feed,
        cfg: &PoolConfig,
    ) -> Exit {
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
        // The call waiting longest was told why its answer may not come.
        let mut hinted = false;
        let Instance {
            pid,
            child,
            stdin,
            stdin_pipe,
            stdout,
            out,
            stderr,
            ..
        } = inst;
        let pid = *pid;
        let mut settling = Settling::new(pid, *stdin_pipe);
        let unread = |stdin: &Option<pipe::Sender>| {
            stdin
                .as_ref()
                .and_then(|s| rustix::io::ioctl_fionread(s).ok())
        };

        loop {
            let finishing: Vec<Rc<Request>> = self
                .attached
                .borrow()
                .iter()
                .filter(|r| r.is_done() && !r.is_gone())
                .cloned()
                .collect();
            // A call whose answers are all in is ended only once the tool
            // waits for its next record, since a correct tool writes
            // nothing more before that; and not while more output waits in
            // the pipe: if that is more than was asked for, the call must
            // hear of it before its status.
            let tool_busy = !finishing.is_empty() && feed.in_flight() == 0 && settling.tool_busy();
            let output_waits = !finishing.is_empty()
                && (tool_busy
                    || rustix::io::ioctl_fionread(&*stdout).is_ok_and(|unread| unread > 0));
            if let Some(last) = finishing.first().filter(|_| !output_waits) {
                // Stderr travels apart from stdout: a line the tool wrote
                // before its last answer may still be in its pipe.
                for line in stderr.so_far().await {
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
            if feed.is_written() && stdin_broken.is_none() {
                // What the tool wrote on stderr before a call's first
                // record reaches it is not about that call: take it in
                // first, for the call being served, or the log alone.
                let newcomer = self
                    .attached
                    .borrow()
                    .iter()
                    .any(|r| !r.fed_here() && r.ready_records() > 0);
                if newcomer {
                    let earlier = stderr.so_far().await;
                    if let Some(r) = feed.front() {
                        for line in &earlier {
                            r.emit(Kind::Stderr, line);
                        }
                    }
                }
                let (time, least, most) = if cfg.spec.interleave {
                    INTERLEAVE_AHEAD
                } else {
                    EXCLUSIVE_AHEAD
                };
                let ahead = match per_record {
                    Some(per) => ((time.as_secs_f64() / per.max(1e-9)) as usize).clamp(least, most),
                    None => least,
                };
                let was_empty = feed.route_is_empty();
                let n = self.fill(feed, &mut rr, ahead.saturating_sub(feed.in_flight()));
                if was_empty && n > 0 {
                    since = Instant::now();
                }
            }

            // Answers owed only to calls that left are waited for a while,
            // then the tool is restarted; but not while a live call shares
            // it (under --interleave): a slow record is slow for it too.
            let orphans_only = self.attached.borrow().iter().all(|r| r.is_gone());
            let answer_due = match cfg.spec.process_timeout {
                _ if feed.route_is_empty() => None,
                Some(t) => Some((since + t, Exit::Timeout(t.as_secs_f64()))),
                None if orphans_only => Some((since + ORPHAN_ANSWER_WAIT, Exit::Orphaned)),
                None => None,
            };
            let hint_due =
                (answer_due.is_none() && !orphans_only && !hinted && !feed.route_is_empty())
                    .then(|| since + SLOW_ANSWER_HINT);
            let output_due = exited_at.or(stdin_broken).map(|t| t + AFTER_EXIT_WAIT);
            let idle_due = match cfg.spec.server_timeout {
                Some(t) if idle => Some(self.idle_since.get() + t),
                _ => None,
            };

            self.oldest_in_flight
                .set(feed.owed().map(|(_, _, written)| written));
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
                        let Some((req, count, written)) = feed.owed() else {
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
                        let req = req.clone();
                        let k = count.min(out.complete());
                        // A tool cannot answer a record before it has read it.
                        if unread(stdin).is_some_and(|u| feed.answers_ahead_of_input(k, u)) {
                            return Exit::Framing(framing_failure(
                                &cfg.spec,
                                "the tool answered records it had not read yet",
                            ));
                        }
                        answers.clear();
                        out.take_into(k, &mut answers);
                        req.emit(Kind::Output, &answers);
                        req.got_answers(k);
                        self.stats.answered(k as u64, written.elapsed());
                        Stats::add(&self.stats.bytes_out, answers.len() as u64);
                        feed.answered(k);
                        given += k;
                    }
                    // A big answer must not keep its room for ever.
                    out.release_spare();
                    answers.clear();
                    crate::core::records::release_spare(&mut answers);
                    if given > 0 {
                        hinted = false;
                        self.spoke.set(true);
                        self.records.set(self.records.get() + given as u64);
                        let now = Instant::now();
                        let per = now.duration_since(since).as_secs_f64() / given as f64;
                        per_record = Some(per_record.map_or(per, |p| 0.8 * p + 0.2 * per));
                        since = now;
                    }
                }
                w = write_some(stdin, feed.unwritten()), if !feed.is_written() => match w {
                    Ok(n) => feed.written(n, || unread(stdin)),
                    Err(_) => {
                        // The tool stopped reading; the answers it still
                        // writes come within a moment, or never.
                        stdin_broken = Some(Instant::now());
                        feed.drop_unwritten();
                    }
                },
                _ = input_closed(stdin), if stdin_broken.is_none() => {
                    stdin_broken = Some(Instant::now());
                    feed.drop_unwritten();
                }
                Some(line) = stderr.recv() => {
                    // The oldest record unanswered is the likeliest cause;
                    // between records, the one call the tool has been
                    // given records of, if it serves one.
                    let to = feed.front().cloned().or_else(|| {
                        let a = self.attached.borrow();
                        (a.len() == 1 && a[0].fed_here()).then(|| a[0].clone())
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
                _ = settling.look_again(), if tool_busy => {}
                _ = sleep_until(hint_due) => {
                    hinted = true;
                    let m = format!(
                        "no answer for {} s to a record the tool was given; still waiting. {NO_ANSWER_CAUSES}; -w bounds the wait",
                        SLOW_ANSWER_HINT.as_secs()
                    );
                    tracing::warn!(pid, "{m}");
                    if let Some(r) = feed.front() {
                        r.emit(Kind::Info, m.as_bytes());
                    }
                }
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
    Failure {
        code: crate::core::status::FAILURE,
        message: format!(
            "{what}, so its answers cannot be matched to this call's records ({}); the tool \
             was stopped. Likely causes: answers of several lines (give -T the pattern of an \
             answer's last line, such as '^$' for a blank line), a banner at start-up (give \
             --prelude-lines the number of its lines), or more than one answer per record (an \
             n-best or trailer option of the tool); `viasock detect` with the same command \
             finds the framing",
            spec.framing
        ),
    }
}

/// Writes what the tool's stdin pipe takes of `buf` (a broken pipe once
/// the tool closed its end).
async fn write_some(stdin: &Option<pipe::Sender>, buf: &[u8]) -> std::io::Result<usize> {
    let Some(s) = stdin else {
        return Err(std::io::ErrorKind::BrokenPipe.into());
    };
    loop {
        s.writable().await?;
        match s.try_write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            done => return done,
        }
    }
}

/// Resolves once nothing reads the tool's stdin any more: the tool closed
/// it (or exited), and records in its pipe will never be read. Seen by
/// the runtime, so that a tool holding all the records it was sent is
/// caught as surely as one a write finds gone.
async fn input_closed(stdin: &Option<pipe::Sender>) {
    if let Some(s) = stdin
        && s.ready(Interest::ERROR).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// A call whose answers are all in waits for its tool to be seen waiting
/// for input again (at most [`SETTLE_WAIT`]); a tool never seen so is
/// soon not waited for.
struct Settling {
    pid: u32,
    reader: Option<PipeReader>,
    /// Since the present wait began: until when, and how often the tool
    /// was looked at.
    by: Option<Instant>,
    looks: u32,
    /// Waits in a row that ran out.
    misses: u32,
}

impl Settling {
    fn new(pid: u32, stdin_pipe: Option<u64>) -> Self {
        Self {
            pid,
            reader: stdin_pipe.map(|ino| PipeReader::new(pid, ino)),
            by: None,
            looks: 0,
            misses: 0,
        }
    }

    /// Whether the tool is still busy after a call's answers: not seen
    /// waiting for input, and the wait has not run out.
    fn tool_busy(&mut self) -> bool {
        if self.misses >= SETTLE_MISSES {
            return false;
        }
        let busy = match self.reader.as_mut().and_then(PipeReader::waits) {
            Some(false) => {
                let by = *self.by.get_or_insert_with(|| Instant::now() + SETTLE_WAIT);
                let busy = Instant::now() < by;
                if !busy {
                    self.misses += 1;
                    if self.misses == SETTLE_MISSES {
                        tracing::info!(
                            pid = self.pid,
                            "the tool is not seen waiting for input after its answers; calls no \
                             longer wait for it to be"
                        );
                    }
                }
                busy
            }
            // Seen waiting (or it cannot be told).
            _ => {
                self.misses = 0;
                false
            }
        };
        if !busy {
            self.by = None;
            self.looks = 0;
        }
        busy
    }

    /// Waits a little before the tool is looked at again: a turn of the
    /// runtime for the first looks, then a millisecond.
    async fn look_again(&mut self) {
        self.looks += 1;
        if self.looks <= SETTLE_QUICK_LOOKS {
            // The tool usually is a few microseconds from its next read:
            // let it have this core, should it be waiting for it.
            std::thread::yield_now();
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
