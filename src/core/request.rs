//! One client's call as the server holds it: the records its connection
//! handler has queued for the tool, the answers waiting to go back, and how
//! it ended. The handler fills it; the [worker](crate::core::worker) that
//! serves it takes records and gives answers. Nothing here awaits anything
//! but room in the queue.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::core::protocol::{self, Kind};
use crate::core::worker::{Worker, WorkerState};

/// Bytes of input a request may queue before its reader waits.
const INPUT_QUEUE: usize = 1 << 20;
/// Bytes of answers waiting for a slow client beyond which its records are
/// held back (so a client that does not read cannot make us buffer without
/// end, nor stall anybody else).
const OUTPUT_HIGH_WATER: usize = 1 << 20;

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
    prelude_given: Cell<bool>,
    /// `answered` when its present worker took it.
    answered_before: Cell<u64>,
    /// Its present worker has written a record of it to the tool.
    fed_here: Cell<bool>,
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
            prelude_given: Cell::new(false),
            answered_before: Cell::new(0),
            fed_here: Cell::new(false),
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

    pub(crate) fn emit(&self, kind: Kind, bytes: &[u8]) {
        if self.gone.get() || bytes.is_empty() {
            return;
        }
        protocol::encode_stream(kind, bytes, &mut self.out.borrow_mut());
        self.changed.notify_one();
    }

    /// Sends the tool's prelude, once: a call resumed on a fresh instance
    /// has had it already.
    pub(crate) fn give_prelude(&self, prelude: &[u8]) {
        if !self.prelude_given.replace(true) {
            self.emit(Kind::Output, prelude);
        }
    }

    /// The worker serving it from now on.
    pub(crate) fn served_by(&self, w: &Rc<Worker>) {
        *self.worker.borrow_mut() = Rc::downgrade(w);
        self.answered_before.set(self.answered.get());
        self.fed_here.set(false);
    }

    /// Whether its present worker has given the tool a record of it: what
    /// the tool writes on stderr from then on may be about it.
    pub(crate) fn fed_here(&self) -> bool {
        self.fed_here.get()
    }

    /// Whether its present worker has answered any of its records.
    pub(crate) fn answered_here(&self) -> bool {
        self.answered.get() > self.answered_before.get()
    }

    /// `k` of its records went to the tool.
    pub(crate) fn sent(&self, k: usize) {
        self.fed_here.set(true);
        self.in_flight.set(self.in_flight.get() + k);
    }

    /// `k` of its records were answered.
    pub(crate) fn got_answers(&self, k: usize) {
        self.in_flight.set(self.in_flight.get() - k);
        self.answered.set(self.answered.get() + k as u64);
    }

    /// Records sent to a tool that ended without reading them come back to
    /// the front of the queue, for the next instance.
    pub(crate) fn give_back(&self, data: Vec<u8>, ends: Vec<usize>) {
        let k = ends.len();
        self.in_flight.set(self.in_flight.get() - k);
        self.queued_bytes.set(self.queued_bytes.get() + data.len());
        self.queued_records.set(self.queued_records.get() + k);
        self.queue.borrow_mut().push_front(Batch {
            data,
            ends,
            next: 0,
        });
    }

    pub(crate) fn input_end(&self) -> Option<End> {
        self.end.get()
    }

    fn wake_worker(&self) {
        if let Some(w) = self.worker.borrow().upgrade() {
            w.wake();
        }
    }

    /// Records it has queued that the worker may take now.
    pub(crate) fn ready_records(&self) -> usize {
        if self.gone.get() || self.out.borrow().len() >= OUTPUT_HIGH_WATER {
            0
        } else {
            self.queued_records.get()
        }
    }

    /// Takes up to `n` queued records into `buf`; returns how many. The
    /// end of each, counted from `base` for the start of `buf`, goes to
    /// `ends`.
    pub(crate) fn take_records(
        &self,
        n: usize,
        buf: &mut Vec<u8>,
        ends: &mut VecDeque<u64>,
        base: u64,
    ) -> usize {
        let mut queue = self.queue.borrow_mut();
        let mut taken = 0;
        while taken < n {
            let Some(b) = queue.front_mut() else { break };
            let k = (n - taken).min(b.ends.len() - b.next);
            let (from, to) = (b.start(), b.ends[b.next + k - 1]);
            let at = base + buf.len() as u64;
            ends.extend(
                b.ends[b.next..b.next + k]
                    .iter()
                    .map(|&e| at + (e - from) as u64),
            );
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

    pub(crate) fn forget_queue(&self) {
        self.queue.borrow_mut().clear();
        self.queued_bytes.set(0);
        self.queued_records.set(0);
        self.room.notify_one();
    }

    /// Nothing more will come from it or go to it.
    pub(crate) fn is_done(&self) -> bool {
        self.in_flight.get() == 0
            && (self.gone.get() || (self.end.get().is_some() && self.queued_records.get() == 0))
    }
}
