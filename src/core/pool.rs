//! The server's tool instances: up to `-j N` [`Worker`]s, and who
//! gets which.
//!
//! Default mode: a request gets a worker of its own. It takes a free one,
//! else starts a new one while fewer than N exist, else waits in arrival
//! order; a worker whose request is over goes straight to the first waiter,
//! so nobody is overtaken. With `--interleave` a request joins the
//! least-loaded worker, and a new worker is started while every existing
//! one is busy and fewer than N exist.
//!
//! With `--fork` the pool holds a [`Forker`] instead: one tool, forked for
//! each call, which bounds the calls at once itself.
//!
//! A worker whose tool dies leaves the pool and is replaced on the next
//! demand. One that died before it ever wrote anything failed to start:
//! requests that were waiting while that happened get its failure instead of
//! starting the tool once more each. Idle workers beyond the first retire
//! after the idle timeout.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::core::fork::Forker;
use crate::core::instance::Failure;
use crate::core::request::Request;
use crate::core::state::Stats;
use crate::core::worker::{Owner, PoolConfig, Worker, WorkerState};

type Grant = oneshot::Sender<Result<(), Failure>>;

pub struct Pool {
    cfg: Rc<PoolConfig>,
    stats: Rc<Stats>,
    workers: RefCell<Vec<Rc<Worker>>>,
    /// Workers a restart replaced, while they finish the calls they serve.
    retiring: RefCell<Vec<std::rc::Weak<Worker>>>,
    waiters: RefCell<VecDeque<(Rc<Request>, Grant)>>,
    /// The last failed start, and when it failed.
    failed: RefCell<Option<(Instant, Failure)>>,
    stopping: Cell<bool>,
    /// Most workers at once: `-j`, raised by calls that ask for more.
    max: Cell<usize>,
    /// Worker tasks not yet finished (retiring ones included).
    running: Cell<usize>,
    emptied: Notify,
    /// `--fork`: the one-shot tool, in place of workers.
    fork: Option<Rc<Forker>>,
}

impl Pool {
    /// `fork`: the one-shot tool of a `--fork` server.
    pub fn new(cfg: PoolConfig, stats: Rc<Stats>, fork: Option<Rc<Forker>>) -> Rc<Self> {
        Rc::new(Self {
            fork,
            max: Cell::new(cfg.spec.instances.max(1)),
            cfg: Rc::new(cfg),
            stats,
            workers: RefCell::new(Vec::new()),
            retiring: RefCell::new(Vec::new()),
            waiters: RefCell::new(VecDeque::new()),
            failed: RefCell::new(None),
            stopping: Cell::new(false),
            running: Cell::new(0),
            emptied: Notify::new(),
        })
    }

    pub fn config(&self) -> &Rc<PoolConfig> {
        &self.cfg
    }

    pub fn stats(&self) -> &Rc<Stats> {
        &self.stats
    }

    /// The one-shot tool of a `--fork` server.
    pub fn fork(&self) -> Option<&Rc<Forker>> {
        self.fork.as_ref()
    }

    /// Requests waiting for an instance.
    pub fn waiting(&self) -> usize {
        if let Some(f) = &self.fork {
            return f.waiting();
        }
        self.waiters
            .borrow()
            .iter()
            .filter(|(r, _)| !r.is_gone())
            .count()
    }

    /// Replaces every instance with a fresh one. Requests in flight finish
    /// on the old instance, which then stops; new requests go to new ones.
    pub fn restart(self: &Rc<Self>) {
        if let Some(f) = &self.fork {
            tracing::info!("restarting the tool");
            f.restart();
            return;
        }
        let old = std::mem::take(&mut *self.workers.borrow_mut());
        for w in &old {
            w.stop();
        }
        let mut retiring = self.retiring.borrow_mut();
        retiring.retain(|w| w.strong_count() > 0);
        retiring.extend(old.iter().map(Rc::downgrade));
        tracing::info!(instances = old.len(), "restarting the tool");
        self.prestart();
        self.serve_waiters();
    }

    /// Most instances it runs at once.
    pub fn max(&self) -> usize {
        self.fork.as_ref().map_or(self.max.get(), |f| f.max())
    }

    /// Lets it run up to `n` instances (never fewer than now); calls
    /// waiting get the new room at once.
    pub fn raise_max(self: &Rc<Self>, n: usize) {
        if let Some(f) = &self.fork {
            f.raise_max(n);
        } else if n > self.max.get() {
            self.max.set(n);
            self.serve_waiters();
        }
    }

    /// Starts the first tool before anybody asks, so the first call waits
    /// less.
    pub fn prestart(self: &Rc<Self>) {
        if let Some(f) = &self.fork {
            f.prestart();
        } else if self.workers.borrow().is_empty() {
            let w = Worker::spawn(&(self.clone() as Rc<dyn Owner>));
            self.workers.borrow_mut().push(w);
        }
    }

    /// What a request about to be assigned will wait for, if anything.
    pub fn wait_reason(&self) -> Option<String> {
        if self.cfg.spec.interleave {
            return None;
        }
        let workers = self.workers.borrow();
        let free = workers
            .iter()
            .any(|w| !w.is_reserved() && w.state() != WorkerState::Dead);
        (!free && workers.len() >= self.max()).then(|| {
            let ahead = self
                .waiters
                .borrow()
                .iter()
                .filter(|(r, _)| !r.is_gone())
                .count();
            match self.max() {
                1 => format!("the tool is busy with another call; waiting ({ahead} ahead)"),
                n => format!("all {n} instances are busy; waiting ({ahead} ahead)"),
            }
        })
    }

    /// Hands `req` to a worker, waiting for one if need be. Returns early
    /// if the client goes away while it waits.
    pub async fn assign(self: &Rc<Self>, req: &Rc<Request>) -> Result<(), Failure> {
        if self.stopping.get() {
            return Err(stopping());
        }
        if self.cfg.spec.interleave {
            let w = self.least_loaded();
            w.attach(req.clone());
            return Ok(());
        }
        // Waiters come first: a free worker, or room for a new one, is theirs.
        let nobody_waits = self.waiting() == 0;
        let free = if nobody_waits {
            self.free_worker()
        } else {
            None
        };
        let w = match free {
            Some(w) => w,
            None if nobody_waits && self.workers.borrow().len() < self.max() => self.start_worker(),
            None => {
                let (tx, rx) = oneshot::channel();
                let ahead = self.waiters.borrow().len();
                tracing::debug!(ahead, "all {} instances busy; waiting", self.max());
                self.waiters.borrow_mut().push_back((req.clone(), tx));
                return tokio::select! {
                    r = rx => r.unwrap_or_else(|_| Err(stopping())),
                    _ = until_gone(req) => {
                        self.waiters.borrow_mut().retain(|(r, _)| !Rc::ptr_eq(r, req));
                        Ok(())
                    }
                };
            }
        };
        w.reserve();
        w.attach(req.clone());
        Ok(())
    }

    fn start_worker(self: &Rc<Self>) -> Rc<Worker> {
        let w = Worker::spawn(&(self.clone() as Rc<dyn Owner>));
        self.workers.borrow_mut().push(w.clone());
        w
    }

    /// The live worker with the fewest requests; a new one if all are busy
    /// and there is room.
    fn least_loaded(self: &Rc<Self>) -> Rc<Worker> {
        let best = self
            .workers
            .borrow()
            .iter()
            .filter(|w| w.state() != WorkerState::Dead)
            .min_by_key(|w| w.load())
            .cloned();
        match best {
            Some(w) if w.load() == 0 || self.workers.borrow().len() >= self.max() => w,
            _ => self.start_worker(),
        }
    }

    fn remove(&self, w: &Rc<Worker>) {
        self.workers.borrow_mut().retain(|o| !Rc::ptr_eq(o, w));
    }

    /// Gives waiters, in arrival order, the free workers, then new ones
    /// while there is room. A waiter that was already waiting when a start
    /// failed gets that failure rather than another start.
    fn serve_waiters(self: &Rc<Self>) {
        while !self.stopping.get() {
            let front_gone = self.waiters.borrow().front().map(|(r, _)| r.is_gone());
            match front_gone {
                None => return,
                Some(true) => {
                    self.waiters.borrow_mut().pop_front();
                    continue;
                }
                Some(false) => {}
            }
            let free = self.free_worker();
            if free.is_none() && self.workers.borrow().len() >= self.max() {
                return;
            }
            let Some((req, grant)) = self.waiters.borrow_mut().pop_front() else {
                return;
            };
            let w = match free {
                Some(w) => w,
                None => {
                    let failed = self
                        .failed
                        .borrow()
                        .as_ref()
                        .filter(|(at, _)| *at >= req.arrived)
                        .map(|(_, f)| f.clone());
                    if let Some(f) = failed {
                        refuse(&req, grant, f);
                        continue;
                    }
                    self.start_worker()
                }
            };
            w.reserve();
            w.attach(req);
            let _ = grant.send(Ok(()));
        }
    }

    /// A worker nobody has, whose tool is not dead.
    fn free_worker(&self) -> Option<Rc<Worker>> {
        self.workers
            .borrow()
            .iter()
            .find(|w| !w.is_reserved() && w.state() != WorkerState::Dead)
            .cloned()
    }

    /// No new instances from now on; waiters are told the server stops.
    pub fn begin_stop(&self) {
        self.stopping.set(true);
        for (req, grant) in self.waiters.borrow_mut().drain(..) {
            refuse(&req, grant, stopping());
        }
    }

    /// Stops every worker once its requests are over, and waits (at most
    /// `limit`) until all have stopped.
    pub async fn stop_all(&self, limit: std::time::Duration) {
        self.begin_stop();
        if let Some(f) = &self.fork {
            let _ = tokio::time::timeout(limit, f.stop_all()).await;
            return;
        }
        if self.running.get() == 0 {
            return;
        }
        let emptied = self.emptied.notified();
        for w in self.workers.borrow().iter() {
            w.stop();
        }
        let _ = tokio::time::timeout(limit, emptied).await;
    }

    pub fn workers(&self) -> Vec<Rc<Worker>> {
        self.workers.borrow().clone()
    }

    /// Workers a restart replaced that still run (finishing their calls).
    pub fn retiring(&self) -> Vec<Rc<Worker>> {
        self.retiring
            .borrow()
            .iter()
            .filter_map(std::rc::Weak::upgrade)
            .filter(|w| w.state() != WorkerState::Dead)
            .collect()
    }
}

/// Tells a waiter it gets no instance: through its grant, or, for a request
/// resumed after its tool ended (nobody awaits its grant), directly.
fn refuse(req: &Request, grant: Grant, f: Failure) {
    if let Err(Err(f)) = grant.send(Err(f)) {
        req.finish(f.code, Some(f.message));
    }
}

fn stopping() -> Failure {
    Failure {
        code: crate::core::status::UNAVAILABLE,
        message: "the server is shutting down".to_owned(),
    }
}

async fn until_gone(req: &Request) {
    while !req.is_gone() {
        req.changed().await;
    }
}

/// What the workers of a pool ask of it and tell it.
impl Owner for Pool {
    fn config(&self) -> Rc<PoolConfig> {
        self.cfg.clone()
    }

    fn stats(&self) -> Rc<Stats> {
        self.stats.clone()
    }

    /// A default-mode worker's request is over: the worker goes to the
    /// first waiter still there (unless a restart retired it).
    fn release(self: Rc<Self>) {
        self.serve_waiters();
    }

    /// A worker is going away (its tool died, or it stops): nobody is
    /// given it any more, and its place goes to the waiters. `resumed`
    /// were being served by it and go on with another instance, first.
    fn forget(self: Rc<Self>, w: &Rc<Worker>, resumed: Vec<Rc<Request>>) {
        self.remove(w);
        if self.cfg.spec.interleave {
            for r in resumed {
                if self.stopping.get() {
                    let f = stopping();
                    r.finish(f.code, Some(f.message));
                } else {
                    self.least_loaded().attach(r);
                }
            }
        } else {
            let mut waiters = self.waiters.borrow_mut();
            for r in resumed.into_iter().rev() {
                // Nobody waits on this grant: a failure is told to the
                // request itself (see `refuse`).
                let (grant, _) = oneshot::channel();
                waiters.push_front((r, grant));
            }
        }
        self.serve_waiters();
    }

    /// A tool failed to start: requests that were waiting meanwhile get
    /// this failure rather than another try.
    fn start_failed(&self, f: Failure) {
        tracing::warn!("tool failed to start: {}", f.message);
        *self.failed.borrow_mut() = Some((Instant::now(), f));
    }

    /// Whether an idle worker may retire: it may if another one stays. It
    /// then leaves the pool at once, so nobody is given it.
    fn may_retire(&self, w: &Rc<Worker>) -> bool {
        let others = self
            .workers
            .borrow()
            .iter()
            .filter(|o| !Rc::ptr_eq(o, w) && o.state() != WorkerState::Dead)
            .count();
        if others == 0 || self.stopping.get() {
            return false;
        }
        self.remove(w);
        true
    }

    /// A worker task begins.
    fn worker_started(&self) {
        self.running.set(self.running.get() + 1);
    }

    /// A worker task ended: its tool is stopped or dead.
    fn worker_done(&self) {
        self.running.set(self.running.get().saturating_sub(1));
        if self.running.get() == 0 {
            self.emptied.notify_waiters();
        }
    }
}
