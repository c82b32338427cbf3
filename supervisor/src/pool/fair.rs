//! The pool's job queue, fair between owners (tenants, or anonymous
//! clients' addresses): one FIFO per owner, served round-robin, with a cap
//! on the whole queue (`pool.queue`) and on each owner's share of it
//! (`pool.tenant_queue`). A flood from one owner fills its own FIFO and is
//! refused there; another owner's job waits behind at most one job of each
//! other owner, not behind the flood.

use super::job::Job;
use crate::lock::lock;
use crossbeam_channel::TryRecvError;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRefusal {
    /// The whole queue, or the owner's share of it, is full.
    Full,
    /// The queue is closed: the pool is stopping.
    Closed,
}

#[derive(Default)]
struct Inner {
    fifos: HashMap<String, VecDeque<Job>>,
    /// Owners with queued jobs, in the order they are served next.
    turn: VecDeque<String>,
    closed: bool,
}

/// Per-owner FIFOs served round-robin.
pub struct FairQueue {
    inner: Mutex<Inner>,
    /// Jobs queued, readable without the lock.
    len: AtomicUsize,
    cap: AtomicUsize,
    per_owner: AtomicUsize,
}

impl FairQueue {
    pub fn new(cap: usize, per_owner: usize) -> FairQueue {
        FairQueue {
            inner: Mutex::new(Inner::default()),
            len: AtomicUsize::new(0),
            cap: AtomicUsize::new(cap.max(1)),
            per_owner: AtomicUsize::new(per_owner.max(1)),
        }
    }

    /// A reload may change the owner's share (the whole queue's size needs
    /// a restart, as documented).
    pub fn set_per_owner(&self, per_owner: usize) {
        self.per_owner.store(per_owner.max(1), Ordering::Relaxed);
    }

    /// Queues `job` at the back of its owner's FIFO; refused at once when
    /// full. The job comes back with the refusal.
    pub fn push(&self, job: Job) -> Result<(), (QueueRefusal, Box<Job>)> {
        let mut g = lock(&self.inner);
        if g.closed {
            return Err((QueueRefusal::Closed, Box::new(job)));
        }
        if self.len.load(Ordering::Acquire) >= self.cap.load(Ordering::Relaxed) {
            return Err((QueueRefusal::Full, Box::new(job)));
        }
        let per_owner = self.per_owner.load(Ordering::Relaxed);
        let inner = &mut *g;
        let owner = job.work.owner.as_str();
        match inner.fifos.get_mut(owner) {
            Some(fifo) => {
                if fifo.len() >= per_owner {
                    return Err((QueueRefusal::Full, Box::new(job)));
                }
                fifo.push_back(job);
            }
            None => {
                let owner = owner.to_string();
                inner.turn.push_back(owner.clone());
                inner.fifos.insert(owner, VecDeque::from([job]));
            }
        }
        self.len.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The next job: the front of the FIFO of the owner whose turn it is.
    /// `Disconnected` once the queue is closed and empty.
    pub fn try_recv(&self) -> Result<Job, TryRecvError> {
        let mut g = lock(&self.inner);
        let inner = &mut *g;
        while let Some(owner) = inner.turn.pop_front() {
            let Some(fifo) = inner.fifos.get_mut(&owner) else {
                continue;
            };
            let Some(job) = fifo.pop_front() else {
                inner.fifos.remove(&owner);
                continue;
            };
            if fifo.is_empty() {
                inner.fifos.remove(&owner);
            } else {
                inner.turn.push_back(owner);
            }
            self.len.fetch_sub(1, Ordering::AcqRel);
            return Ok(job);
        }
        if inner.closed {
            Err(TryRecvError::Disconnected)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes no more jobs; those queued are still served.
    pub fn close(&self) {
        lock(&self.inner).closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::job::Work;
    use omni_worker::protocol::RequestOptions;
    use std::time::{Duration, Instant};

    fn job(owner: &str, n: usize) -> Job {
        let (tx, _rx) = tokio::sync::oneshot::channel();
        Job {
            work: Work {
                request_id: format!("{owner}{n}"),
                tenant: None,
                owner: owner.to_string(),
                policy_id: String::new(),
                cache_key: String::new(),
                text: "".into(),
                context: None,
                now_unix_nanos: 0,
                options: RequestOptions::default(),
                deadline: Duration::from_secs(1),
            },
            enqueued: Instant::now(),
            reply: tx,
        }
    }

    fn next(q: &FairQueue) -> String {
        match q.try_recv() {
            Ok(j) => j.work.request_id,
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn owners_take_turns_and_a_flood_stays_in_its_share() {
        let q = FairQueue::new(10, 4);
        for i in 0..6 {
            let r = q.push(job("m", i));
            assert_eq!(r.is_ok(), i < 4, "m{i}");
        }
        q.push(job("a", 0)).ok().unwrap();
        q.push(job("a", 1)).ok().unwrap();
        assert_eq!(q.len(), 6);
        let order: Vec<String> = (0..6).map(|_| next(&q)).collect();
        assert_eq!(order, ["m0", "a0", "m1", "a1", "m2", "m3"]);
        assert!(q.is_empty());
        assert_eq!(next(&q), "Empty");
        q.push(job("a", 2)).ok().unwrap();
        q.close();
        assert!(matches!(
            q.push(job("a", 3)),
            Err((QueueRefusal::Closed, _))
        ));
        assert_eq!(next(&q), "a2");
        assert_eq!(next(&q), "Disconnected");
    }

    #[test]
    fn the_whole_queue_has_a_cap() {
        let q = FairQueue::new(3, 2);
        assert!(q.push(job("a", 0)).is_ok());
        assert!(q.push(job("b", 0)).is_ok());
        assert!(q.push(job("c", 0)).is_ok());
        assert!(matches!(q.push(job("d", 0)), Err((QueueRefusal::Full, _))));
    }
}
