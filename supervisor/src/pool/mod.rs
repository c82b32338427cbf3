//! The worker pool: N worker processes, each owned by a driver task on the
//! HTTP runtime that takes jobs from one bounded crossbeam queue. A driver
//! sends a request, waits for the reply up to the request's deadline, and
//! past it kills (SIGKILL), reaps and respawns. Under load it keeps the
//! next job waiting in the worker's socket (`pool.pipeline_depth`), so the
//! worker never sleeps between requests; a job that waited behind one that
//! killed the worker never started, and goes to the replacement.
//!
//! A request whose evaluation killed its worker is answered with the reason
//! and never retried on another worker: a poison request must not take the
//! pool down one worker at a time. Such a death is charged to the request's
//! owner (its tenant, or an anonymous client's address): a policy that keeps
//! killing workers is quarantined for that owner (by its canonical form, so
//! reformatting does not evade it), and an owner whose requests kill too
//! many workers is refused for a while (`tenant_backoff`); neither counts
//! towards the pool-wide restart intensity, which only deaths no request
//! caused feed. Jobs wait in per-owner queues served in turn, so one
//! owner's flood does not queue ahead of another owner's work. Planned replacements (recycling after `max_requests`, CPU
//! use, or a configuration roll) start the new worker before retiring the
//! old one, so capacity never drops for them.
//!
//! - [`job`]: what a request hands the pool and how its job ended;
//! - [`shared`]: the state the HTTP side and the drivers share (slot
//!   states, restart intensity, quarantine) and the events the pool reports;
//! - [`fair`]: the per-owner queues, served round-robin;
//! - [`canon`]: the canonical form quarantine keys a policy on;
//! - [`driver`]: the task that supervises one slot;
//! - [`live`]: one live worker and the non-blocking I/O on its socket;
//! - [`tenancy`]: dedicated workers (one tenant per worker), their spares
//!   and uids.

mod canon;
mod driver;
mod fair;
mod job;
mod live;
mod shared;
mod tenancy;

pub use job::{JobReply, JobResult, SubmitError, Work};
pub use live::PoolError;
pub use shared::{EventSink, PoolEvent};

use crate::config::Config;
use crate::lock::lock;
use crate::metrics::Metrics;
use crossbeam_channel::Sender;
use driver::Driver;
use fair::{FairQueue, QueueRefusal};
use job::Job;
use live::retire;
use omni_worker::process;
use omni_worker::protocol::SandboxReport;
use shared::PoolShared;
use std::process::Child;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Handle kept by the HTTP side.
pub struct WorkerPool {
    shared: Arc<PoolShared>,
    queue: Arc<FairQueue>,
    drivers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    reaper: Mutex<Option<Sender<Child>>>,
    reaper_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub sandbox: SandboxReport,
}

impl WorkerPool {
    /// Starts `config.workers` workers and their drivers on `runtime`.
    /// Fails when any worker cannot start (a sandbox that cannot be applied
    /// is a start-up error). `on_event` hears of crash loops and of the pool
    /// giving up.
    pub fn start(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        runtime: &tokio::runtime::Handle,
        on_event: EventSink,
    ) -> Result<WorkerPool, PoolError> {
        // Worker sockets register with this runtime's reactor.
        let _entered = runtime.enter();
        // Workers re-execute the image this supervisor is running, not the
        // file at its path: a package upgrade that replaces the file must not
        // give an old supervisor new workers (the protocol is not versioned).
        let exe = std::path::PathBuf::from("/proc/self/exe");
        if !exe.exists() {
            return Err(PoolError::StartFailed(
                "cannot find own binary: /proc is not mounted".into(),
            ));
        }
        let n = config.workers;
        let shared = Arc::new(PoolShared::new(exe, config.clone(), metrics, on_event));
        let mut lives = Vec::with_capacity(n);
        let mut report = SandboxReport::default();
        for i in 0..n {
            match shared.spawn(&config) {
                Ok((live, r)) => {
                    if i == 0 {
                        report = r;
                    }
                    lives.push(live);
                }
                Err(e) => {
                    for mut l in lives {
                        process::reap(&mut l.child, true);
                    }
                    return Err(e);
                }
            }
        }
        let (rtx, rrx) = crossbeam_channel::unbounded::<Child>();
        let reaper_thread = std::thread::Builder::new()
            .name("omnid-reaper".into())
            .spawn(move || {
                for child in rrx {
                    retire(child);
                }
            })
            .map_err(|e| PoolError::StartFailed(format!("cannot start a thread: {}", e.kind())))?;
        let queue = Arc::new(FairQueue::new(config.pool.queue, config.pool.tenant_queue));
        let mut drivers = Vec::with_capacity(n);
        for (i, live) in lives.into_iter().enumerate() {
            let driver = Driver {
                slot: i,
                shared: shared.clone(),
                reaper: rtx.clone(),
            };
            drivers.push(runtime.spawn(driver.run(live, queue.clone())));
        }
        // Dedicated mode: spares ready before the first tenant switch.
        tenancy::refill_spares(&shared);
        Ok(WorkerPool {
            shared,
            queue,
            drivers: Mutex::new(drivers),
            reaper: Mutex::new(Some(rtx)),
            reaper_thread: Mutex::new(Some(reaper_thread)),
            sandbox: report,
        })
    }

    pub fn size(&self) -> usize {
        self.shared.slots.len()
    }

    pub fn queue_depth(&self) -> usize {
        self.queue.len()
    }

    /// Counts of slots by state: (idle, busy, starting, down).
    pub fn states(&self) -> (usize, usize, usize, usize) {
        self.shared.states()
    }

    /// Policy ids refused right now for killing workers.
    pub fn quarantined_count(&self) -> usize {
        self.shared.quarantined_count()
    }

    /// Over the restart intensity right now: respawns are being delayed
    /// (readiness says `crash_loop`).
    pub fn in_backoff(&self) -> bool {
        self.shared.in_backoff()
    }

    /// Runs `work` on a worker and waits for the answer. Refused at once
    /// when its owner is over its failure budget, when its policy is
    /// quarantined for its owner, when no worker can take it, or when the
    /// queue or the owner's share of it is full (never waits for room).
    pub async fn submit(&self, work: Work) -> Result<JobReply, SubmitError> {
        if let Some(r) = self.shared.refusal(&work) {
            return Err(r.into());
        }
        if !self.has_capacity() {
            return Err(SubmitError::NotReady);
        }
        let cfg = self.shared.config();
        // The pool answers every job it takes; this bound only matters if
        // no driver is alive to take it.
        let wait = work.queue_expiry(Duration::from_millis(cfg.worker.timeout_ms))
            + Duration::from_secs(5);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueue(Job {
            work,
            enqueued: Instant::now(),
            reply: tx,
        })?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(SubmitError::Lost),
            Err(_) => Err(SubmitError::TimedOut),
        }
    }

    /// Queues a job without waiting: a full queue is refused at once.
    fn enqueue(&self, job: Job) -> Result<(), SubmitError> {
        match self.queue.push(job) {
            Ok(()) => {
                self.shared.job_ready.notify_one();
                Ok(())
            }
            Err((QueueRefusal::Full, _)) => Err(SubmitError::Full),
            Err((QueueRefusal::Closed, _)) => Err(SubmitError::Stopped),
        }
    }

    /// At least one worker can take work now or in a moment: a slot that is
    /// starting (a respawn, or a planned replacement while the old worker
    /// still exists) counts; only slots that are down (back-off, failed
    /// starts) do not.
    pub fn has_capacity(&self) -> bool {
        let (idle, busy, starting, _) = self.shared.states();
        idle + busy + starting > 0
    }

    /// Applies a reloaded configuration and rolls every worker, one at a
    /// time. A probe worker is started with the new configuration first: if
    /// it cannot start, the reload is refused and nothing changes.
    pub fn reload(&self, config: Arc<Config>) -> Result<(), PoolError> {
        let (probe, _) = self.shared.spawn(&config)?;
        let child = probe.close();
        match lock(&self.reaper).as_ref() {
            Some(reaper) => {
                if let Err(e) = reaper.send(child) {
                    retire(e.into_inner());
                }
            }
            None => retire(child),
        }
        self.queue.set_per_owner(config.pool.tenant_queue);
        *crate::lock::write(&self.shared.config) = config;
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Resolves when the pool has given up (too many failed starts).
    pub async fn fatal(&self) -> String {
        loop {
            if let Some(why) = lock(&self.shared.fatal).clone() {
                return why;
            }
            self.shared.fatal_notify.notified().await;
        }
    }

    /// Stops taking jobs, lets the drivers finish the queued ones, then
    /// retires every worker and waits for them. Called outside the runtime
    /// (it blocks), while the runtime still runs the drivers.
    pub fn shutdown(&self, timeout: Duration) {
        self.queue.close();
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.job_ready.notify_waiters();
        let deadline = Instant::now() + timeout;
        let drivers = std::mem::take(&mut *lock(&self.drivers));
        for d in &drivers {
            // Drivers end once the queue is drained and closed.
            while !d.is_finished() && Instant::now() < deadline {
                self.shared.job_ready.notify_waiters();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for d in &drivers {
            d.abort();
        }
        // Dedicated mode: jobs handed to a driver that has ended get no
        // answer (their callers see the pool stop), and spares go.
        drop(self.shared.tenancy.drain_mail());
        for spare in self.shared.tenancy.drain_spares() {
            match lock(&self.reaper).as_ref() {
                Some(reaper) => {
                    if let Err(e) = reaper.send(spare.close()) {
                        retire(e.into_inner());
                    }
                }
                None => retire(spare.close()),
            }
        }
        // Drivers still busy past the timeout: their workers go now.
        for p in &self.shared.pids {
            let pid = p.swap(0, Ordering::AcqRel);
            if pid != 0 {
                process::kill_pid(pid);
            }
        }
        lock(&self.reaper).take();
        if let Some(t) = lock(&self.reaper_thread).take() {
            while !t.is_finished() && Instant::now() < deadline + Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
