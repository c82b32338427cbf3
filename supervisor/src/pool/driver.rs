//! The driver of one slot: a task on the HTTP runtime that owns the slot's
//! worker, takes jobs from the pool's queue, sends them (pipelining the
//! next one behind a fast policy), waits for each reply up to its deadline,
//! and replaces the worker when it dies, is killed, or is due for recycling.

use super::fair::FairQueue;
use super::job::{answer, unavailable, Job, JobReply, JobResult, Work};
use super::live::{
    idle_ended, is_would_block, peek, read_reply_watching, reap_off_runtime, retire, send_all,
    Exchange, Live, PoolError,
};
use super::shared::{PoolShared, SlotState};
use super::tenancy::{self, tenant_of, Route};
use crate::config::Config;
use crate::restart::RestartReason;
use crossbeam_channel::{Sender, TryRecvError};
use omni_worker::process::{Ended, Reaped};
use omni_worker::protocol::Reply;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::process::Child;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::Interest;

/// A job sent to the worker and not yet answered. The policy text and the
/// context stay here (moved back out of the encoded request), so a job the
/// worker never started can be sent again: to a replacement worker, or
/// with its text when the worker had evicted the policy.
struct InFlight {
    job: Job,
    /// The request id on the wire.
    id: u64,
    /// Sent as `PolicySource::Cached`.
    sent_cached: bool,
    /// When the worker started on it: when it was sent to an idle worker,
    /// or when the reply before it arrived. Its deadline runs from here.
    started: Option<Instant>,
}

/// What an idle driver got while waiting for work.
enum NextJob {
    Job(Box<Job>),
    /// Nothing came within the wait; time for the idle checks.
    Timeout,
    /// The queue is closed and empty: the pool is stopping.
    Closed,
    /// The idle worker hung up or sent something nobody asked for.
    WorkerEnded,
}

/// How many fast policies a worker's driver remembers.
const FAST_KEYS: usize = 64;

/// Cache keys whose last request in a slot took under
/// `pool.pipeline_behind_us` (most recent last). Only those have jobs queued behind them, so a slow
/// or hostile policy never holds up another request. Kept by the slot
/// across worker replacements: it describes policies, not a process.
#[derive(Default)]
struct FastPolicies(VecDeque<String>);

impl FastPolicies {
    fn contains(&self, key: &str) -> bool {
        self.0.iter().rev().any(|k| k == key)
    }

    /// Records how long a request for `key` took, from its start to its
    /// reply (`None`: it never answered).
    fn record(&mut self, key: &str, service: Option<Duration>, fast: Duration) {
        if service.is_some_and(|s| s < fast) {
            if self.0.back().is_some_and(|k| k == key) {
                return;
            }
            self.0.retain(|k| k != key);
            if self.0.len() >= FAST_KEYS {
                self.0.pop_front();
            }
            self.0.push_back(key.to_string());
        } else {
            self.0.retain(|k| k != key);
        }
    }
}

/// Largest frame sent behind another one: the worker only reads it when it
/// has finished the one before, so the frame must fit the socket buffer
/// without waiting (a larger job waits until the worker is idle).
const MAX_PIPELINED_FRAME: usize = 32 * 1024;

/// The task that owns one slot: its worker, the requests in flight on it,
/// and its replacement when it dies. Runs on the HTTP runtime, so a reply
/// goes to its request's task without a hop through another thread.
pub struct Driver {
    pub slot: usize,
    pub shared: Arc<PoolShared>,
    pub reaper: Sender<Child>,
}

impl Driver {
    pub async fn run(self, first: Live, rx: Arc<FairQueue>) {
        let mut live = Some(first);
        let mut respawn_at = Instant::now();
        // Jobs taken from the queue that never ran (their worker died before
        // starting them); they go first to the replacement.
        let mut pending: VecDeque<Job> = VecDeque::new();
        let mut fast = FastPolicies::default();
        loop {
            if live.is_none() {
                if self.shared.stopping()
                    && rx.is_empty()
                    && pending.is_empty()
                    && self.shared.tenancy.mail_empty(self.slot)
                {
                    break;
                }
                live = self.restart(&mut pending, &mut respawn_at).await;
            }
            let Some(w) = live.take() else { continue };
            self.shared.set_pid(self.slot, w.pid);
            let (w, wait) = self.roll_if_reloaded(w, pending.is_empty()).await;
            self.shared.set_state(self.slot, SlotState::Idle);
            let job = match pending.pop_front() {
                Some(job) => job,
                None => match self.next_job(&rx, &w, wait).await {
                    NextJob::Job(job) => *job,
                    NextJob::Timeout => {
                        if idle_ended(&w) {
                            respawn_at = Instant::now() + self.died_idle(w).await;
                        } else {
                            live = Some(self.retire_if_idle_bound(w).await);
                        }
                        continue;
                    }
                    NextJob::WorkerEnded => {
                        respawn_at = Instant::now() + self.died_idle(w).await;
                        continue;
                    }
                    NextJob::Closed => {
                        live = Some(w);
                        break;
                    }
                },
            };
            // A worker that died while idle (the OOM killer, an operator's
            // kill) is replaced without charging its death to this job.
            if idle_ended(&w) {
                respawn_at = Instant::now() + self.died_idle(w).await;
                pending.push_front(job);
                continue;
            }
            // Dedicated mode: only a worker of the job's tenant serves it.
            let w = match self.dedicate(w, &job).await {
                Ok(w) => w,
                Err(w) => {
                    unavailable(job);
                    live = Some(w);
                    continue;
                }
            };
            self.shared.set_state(self.slot, SlotState::Busy);
            match self.serve(w, job, &rx, &mut pending, &mut fast).await {
                Ok(w) => live = Some(self.maybe_recycle(w).await),
                Err(delay) => {
                    self.shared.set_pid(self.slot, 0);
                    respawn_at = Instant::now() + delay;
                }
            }
        }
        self.shared.set_state(self.slot, SlotState::Down);
        if let Some(w) = live {
            self.retire(w);
        }
        self.shared.set_pid(self.slot, 0);
    }

    /// A slot without a worker: waits out the back-off (answering the jobs
    /// it holds as unavailable), or starts a worker. `None`: none yet.
    async fn restart(&self, pending: &mut VecDeque<Job>, respawn_at: &mut Instant) -> Option<Live> {
        self.shared.set_state(self.slot, SlotState::Down);
        let now = Instant::now();
        if now < *respawn_at {
            // Backing off: do not hold a client while waiting.
            pending.drain(..).for_each(unavailable);
            tokio::time::sleep((*respawn_at - now).min(Duration::from_millis(50))).await;
            return None;
        }
        self.shared.set_state(self.slot, SlotState::Starting);
        let cfg = self.shared.config();
        match self.spawn(cfg.clone()).await {
            Ok(l) => {
                tracing::debug!(slot = self.slot, pid = l.pid, "worker started");
                Some(l)
            }
            Err(e) => {
                self.shared.failed_start(&cfg, &e);
                self.shared.set_state(self.slot, SlotState::Down);
                pending.drain(..).for_each(unavailable);
                *respawn_at = Instant::now() + Duration::from_millis(200);
                None
            }
        }
    }

    /// A reload bumped the generation: rolls this worker, one slot at a
    /// time, once nothing is pending. Returns the worker and how long to
    /// wait for a job before looking again (briefly while another slot rolls).
    async fn roll_if_reloaded(&self, mut w: Live, nothing_pending: bool) -> (Live, Duration) {
        let gen = self.shared.generation.load(Ordering::Acquire);
        let mut wait = Duration::from_millis(250);
        if w.generation != gen && !self.shared.stopping() && nothing_pending {
            if self
                .shared
                .rolling
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                w = self.replace(w, "configuration reload").await;
                self.shared.rolling.store(false, Ordering::Release);
                self.shared.set_pid(self.slot, w.pid);
            } else {
                wait = Duration::from_millis(20);
            }
        }
        (w, wait)
    }

    /// Starts a worker off the runtime's threads (fork, exec and the wait
    /// for its `Ready` frame block).
    async fn spawn(&self, cfg: Arc<Config>) -> Result<Live, PoolError> {
        let sh = self.shared.clone();
        match tokio::task::spawn_blocking(move || sh.spawn(&cfg)).await {
            Ok(r) => r.map(|(live, _)| live),
            Err(_) => Err(PoolError::StartFailed("the start was interrupted".into())),
        }
    }

    /// Waits for a job while the worker is idle, watching the worker too.
    async fn next_job(&self, rx: &FairQueue, w: &Live, wait: Duration) -> NextJob {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.shared.job_ready.notified();
            tokio::pin!(notified);
            // Registered before looking, so a job queued after the look
            // wakes this driver.
            notified.as_mut().enable();
            // Jobs another driver handed to this slot come first.
            if let Some(job) = self.shared.tenancy.take_mail(self.slot) {
                return NextJob::Job(Box::new(job));
            }
            match rx.try_recv() {
                Ok(job) => match self.route(job, w, true) {
                    Some(job) => return NextJob::Job(Box::new(job)),
                    None => continue,
                },
                Err(TryRecvError::Disconnected) => return NextJob::Closed,
                Err(TryRecvError::Empty) => {}
            }
            if self.shared.stopping() {
                // Drained: the queue is closed once the pool stops.
                return NextJob::Closed;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => return NextJob::Timeout,
                ready = w.stream.readable() => {
                    // Readiness may be left over from the last reply; a peek
                    // tells (and through `try_io` clears it when the socket
                    // is really empty).
                    let empty = is_would_block(&w.stream.try_io(Interest::READABLE, || peek(&w.stream)));
                    if ready.is_err() || w.reader.buffered() > 0 || !empty {
                        return NextJob::WorkerEnded;
                    }
                }
            }
        }
    }

    /// Where a job this driver took from the queue goes (dedicated mode):
    /// `Some`: this slot serves it; `None`: handed to another slot.
    fn route(&self, job: Job, w: &Live, idle: bool) -> Option<Job> {
        let t = &self.shared.tenancy;
        if !t.dedicated() || t.may_serve(self.slot, w.pid, tenant_of(&job.work)) {
            return Some(job);
        }
        match t.route(&self.shared, self.slot, w.pid, tenant_of(&job.work), idle) {
            Route::Here => Some(job),
            Route::Slot(i) => {
                let back = t.hand(i, job);
                if back.is_none() {
                    self.shared.job_ready.notify_waiters();
                }
                back
            }
        }
    }

    /// Dedicated mode: binds the worker to `job`'s tenant, or, when it
    /// serves another tenant (or needs the tenant's uid), replaces it with
    /// a fresh one first. `Err(w)`: no fresh worker could be had; the job
    /// must not run on `w`.
    async fn dedicate(&self, w: Live, job: &Job) -> Result<Live, Live> {
        let t = &self.shared.tenancy;
        if !t.dedicated() {
            return Ok(w);
        }
        let tenant = tenant_of(&job.work);
        if t.may_serve(self.slot, w.pid, tenant) {
            t.bind(self.slot, w.pid, tenant);
            return Ok(w);
        }
        self.shared.set_state(self.slot, SlotState::Starting);
        match tenancy::fresh_worker(&self.shared, Some(tenant)).await {
            Ok(new) => {
                tracing::debug!(
                    slot = self.slot,
                    old = w.pid,
                    new = new.pid,
                    served = w.served,
                    "worker replaced for another tenant"
                );
                self.shared.metrics.restart(RestartReason::Recycled);
                self.retire(w);
                self.shared.set_pid(self.slot, new.pid);
                t.bind(self.slot, new.pid, tenant);
                Ok(new)
            }
            Err(e) => {
                self.shared.failed_start(&self.shared.config(), &e);
                self.shared.set_state(self.slot, SlotState::Idle);
                Err(w)
            }
        }
    }

    /// Dedicated mode: a worker bound to a tenant and idle for
    /// `pool.tenant_idle_s` is retired, so it holds nothing of its tenant
    /// longer than needed and the slot is free for any tenant.
    async fn retire_if_idle_bound(&self, w: Live) -> Live {
        let idle = Duration::from_secs(self.shared.config().pool.tenant_idle_s);
        if !self.shared.tenancy.idle_bound(self.slot, w.pid, idle) {
            return w;
        }
        self.shared.set_state(self.slot, SlotState::Starting);
        match tenancy::fresh_worker(&self.shared, None).await {
            Ok(new) => {
                tracing::debug!(slot = self.slot, old = w.pid, "idle tenant worker retired");
                self.retire(w);
                self.shared.set_pid(self.slot, new.pid);
                new
            }
            Err(e) => {
                self.shared.failed_start(&self.shared.config(), &e);
                w
            }
        }
    }

    /// Reaps a worker found dead between requests; returns the back-off.
    async fn died_idle(&self, w: Live) -> Duration {
        let cfg = self.shared.config();
        self.shared.set_state(self.slot, SlotState::Down);
        let served = w.served;
        let reaped = reap_off_runtime(w.child, true).await;
        self.shared.set_pid(self.slot, 0);
        let reason = RestartReason::unplanned(&reaped, Duration::from_secs(cfg.worker.cpu_seconds));
        self.shared.metrics.restart(reason);
        tracing::warn!(
            slot = self.slot,
            reason = reason.as_str(),
            ended = %reaped.ended,
            served,
            "worker died between requests; restarting it"
        );
        self.shared.unplanned_restart(&cfg)
    }

    fn retire(&self, w: Live) {
        if let Err(e) = self.reaper.send(w.close()) {
            retire(e.into_inner());
        }
    }

    /// Starts a replacement, then retires `old`. Keeps `old` if the start fails.
    async fn replace(&self, old: Live, why: &str) -> Live {
        let cfg = self.shared.config();
        self.shared.set_state(self.slot, SlotState::Starting);
        match self.spawn(cfg.clone()).await {
            Ok(new) => {
                tracing::info!(
                    slot = self.slot,
                    reason = RestartReason::Recycled.as_str(),
                    served = old.served,
                    "worker recycled ({why})"
                );
                self.shared.metrics.restart(RestartReason::Recycled);
                self.retire(old);
                new
            }
            Err(e) => {
                self.shared.failed_start(&cfg, &e);
                old
            }
        }
    }

    async fn maybe_recycle(&self, w: Live) -> Live {
        let cfg = self.shared.config();
        if w.served >= w.recycle_after {
            return self.replace(w, "max_requests").await;
        }
        // RLIMIT_CPU counts the worker's whole life: recycle well before it.
        let limit = Duration::from_secs(cfg.worker.cpu_seconds);
        if let Some(used) = w.cpu.used() {
            if used * 5 >= limit * 4 {
                return self.replace(w, "cpu time").await;
            }
        }
        w
    }

    /// Serves `first`, and while the worker is busy keeps the next queued
    /// job waiting in its socket (up to `pool.pipeline_depth` in flight), so
    /// a loaded worker goes from one request to the next without sleeping.
    /// Jobs are only pipelined when no other worker is idle, and only behind
    /// policies that were fast on this worker last time (a job behind a
    /// slow one would wait for it). Returns the
    /// worker once nothing is in flight; `Err(delay)`: the worker is gone
    /// (respawn after `delay`), and the jobs it never started are in
    /// `pending`.
    async fn serve(
        &self,
        mut w: Live,
        first: Job,
        rx: &FairQueue,
        pending: &mut VecDeque<Job>,
        fast: &mut FastPolicies,
    ) -> Result<Live, Duration> {
        let cfg = self.shared.config();
        let depth = cfg.pool.pipeline_depth.max(1);
        let fast_below = Duration::from_micros(cfg.pool.pipeline_behind_us);
        let mut flight: VecDeque<InFlight> = VecDeque::with_capacity(depth);
        self.start(&mut w, first, &mut flight, &cfg).await;
        // Set when a queued job was too large to wait behind another.
        let mut held: Option<Job> = None;
        loop {
            while held.is_none()
                && flight.len() < depth
                && !flight.is_empty()
                && w.served + (flight.len() as u64) < w.recycle_after
                // An idle worker should take the job rather than it wait here.
                && self.shared.states().0 == 0
                && flight.iter().all(|f| fast.contains(&f.job.work.cache_key))
            {
                let Ok(job) = rx.try_recv() else { break };
                // Dedicated mode: another tenant's job goes to another slot,
                // or waits here for this worker's replacement.
                let Some(job) = self.route(job, &w, false) else {
                    continue;
                };
                if !self
                    .shared
                    .tenancy
                    .may_serve(self.slot, w.pid, tenant_of(&job.work))
                {
                    held = Some(job);
                    break;
                }
                if frame_estimate(&w, &job) > MAX_PIPELINED_FRAME {
                    held = Some(job);
                    break;
                }
                self.start(&mut w, job, &mut flight, &cfg).await;
            }
            let Some(front) = flight.front_mut() else {
                if let Some(job) = held.take() {
                    pending.push_front(job);
                }
                return Ok(w);
            };
            let started = *front.started.get_or_insert_with(Instant::now);
            let until = started + front.job.work.deadline;
            let id = front.id;
            // Poll for the reply only when nothing else is going on: one
            // request in flight in the whole pool.
            let poll = if flight.len() == 1 && rx.is_empty() && self.shared.states().1 == 1 {
                w.reply_poll.window()
            } else {
                Duration::ZERO
            };
            let exchange = read_reply_watching(&mut w, until, poll).await;
            let service = started.elapsed();
            w.reply_poll.record(service);
            let sent_cached = flight.front().is_some_and(|f| f.sent_cached);
            let reply = match exchange {
                Exchange::Reply(Reply::Done(o)) if o.id == id => Ok(Ok(o)),
                Exchange::Reply(Reply::Failed(f)) if f.id == id => Ok(Err(Some(f))),
                // Only an answer to a request sent without its text.
                Exchange::Reply(Reply::NotCached { id: r }) if r == id && sent_cached => {
                    Ok(Err(None))
                }
                other => Err(other),
            };
            let Some(done) = flight.pop_front() else {
                continue;
            };
            let queue_time = started.saturating_duration_since(done.job.enqueued);
            match reply {
                Ok(Ok(o)) => {
                    w.served += 1;
                    fast.record(&done.job.work.cache_key, Some(service), fast_below);
                    w.kept.record(&done.job.work.cache_key, o.kept);
                    self.shared.metrics.cache(o.cache_hit);
                    answer(done.job, JobResult::Done(o), queue_time);
                }
                Ok(Err(None)) => {
                    // The worker evicted it: send the text, once.
                    w.kept.forget(&done.job.work.cache_key);
                    self.start(&mut w, done.job, &mut flight, &cfg).await;
                    continue;
                }
                Ok(Err(Some(f))) => {
                    w.served += 1;
                    fast.record(&done.job.work.cache_key, Some(service), fast_below);
                    answer(done.job, JobResult::Failed(f), queue_time);
                }
                Err(Exchange::Stalled) => {
                    // The worker was stopped with the job unanswered: not
                    // the policy's doing, so nothing is charged to it, and
                    // the job goes first to the replacement (again only
                    // while its queue expiry allows), those behind it next.
                    self.stalled(w, &done.job.work).await;
                    flight.push_front(done);
                    self.requeue_unstarted(flight, held, pending);
                    return Err(self.shared.unplanned_restart(&cfg));
                }
                Err(failed) => {
                    // The worker died on (or ran past the deadline of) the
                    // job at the front; the ones behind it never started.
                    let reason = self.kill_for(w, &failed, &done.job.work, &cfg).await;
                    fast.record(&done.job.work.cache_key, None, fast_below);
                    answer(done.job, JobResult::Killed(reason), queue_time);
                    self.requeue_unstarted(flight, held, pending);
                    // Charged to the job's owner (`killed`), not to the
                    // pool's restart intensity: respawn at once.
                    return Err(Duration::ZERO);
                }
            }
        }
    }

    /// Kills the worker that failed `work`, records it, and says why it
    /// ended: the deadline, or what its exit tells.
    async fn kill_for(
        &self,
        w: Live,
        failed: &Exchange,
        work: &Work,
        cfg: &Config,
    ) -> RestartReason {
        let served = w.served;
        let reaped = self.kill(w).await;
        let reason = match failed {
            // Whatever the wait status says, the deadline killed it.
            Exchange::Deadline => RestartReason::Timeout,
            _ => RestartReason::unplanned(&reaped, Duration::from_secs(cfg.worker.cpu_seconds)),
        };
        self.killed(work, reason, cfg, reaped.ended, served);
        reason
    }

    /// Kills and records a worker found stopped with `work` unanswered.
    async fn stalled(&self, w: Live, work: &Work) {
        let (served, pid) = (w.served, w.pid);
        let reaped = self.kill(w).await;
        let reason = RestartReason::Stalled;
        self.shared.metrics.restart(reason);
        tracing::warn!(
            requestId = %work.request_id,
            slot = self.slot,
            pid,
            reason = reason.as_str(),
            ended = %reaped.ended,
            served,
            "worker stopped with a request unanswered; replaced, the request goes to its replacement"
        );
    }

    /// Hands the jobs a lost worker never started to its replacement: those
    /// sent behind the failed one first, in order, and a held one last.
    fn requeue_unstarted(
        &self,
        flight: VecDeque<InFlight>,
        held: Option<Job>,
        pending: &mut VecDeque<Job>,
    ) {
        if !flight.is_empty() {
            tracing::info!(
                slot = self.slot,
                moved = flight.len(),
                "requests queued behind it on the worker never started; they go to its replacement"
            );
        }
        for f in flight.into_iter().rev() {
            pending.push_front(f.job);
        }
        if let Some(job) = held {
            pending.push_back(job);
        }
    }

    /// Kills and reaps a worker that failed a request.
    async fn kill(&self, w: Live) -> Reaped {
        let r = reap_off_runtime(w.child, true).await;
        self.shared.set_state(self.slot, SlotState::Down);
        self.shared.set_pid(self.slot, 0);
        r
    }

    /// Admits a job and sends it to the worker, or answers it at once (it
    /// waited too long, its client left, its policy is quarantined).
    async fn start(&self, w: &mut Live, job: Job, flight: &mut VecDeque<InFlight>, cfg: &Config) {
        let Job {
            mut work,
            enqueued,
            reply,
        } = job;
        let queue_time = enqueued.elapsed();
        if reply.is_closed() {
            // The client has gone; do not spend a worker on it.
            return;
        }
        if let Some(result) = self.refused(&work, queue_time, cfg) {
            let _ = reply.send(JobReply { result, queue_time });
            return;
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        // Only the id, for a policy the worker said it kept.
        let cached = w.kept.contains(&work.cache_key);
        let encoded = work.encode(id, cached, &mut w.buf);
        let now = Instant::now();
        let idle = flight.is_empty();
        flight.push_back(InFlight {
            job: Job {
                work,
                enqueued,
                reply,
            },
            id,
            sent_cached: cached,
            started: idle.then_some(now),
        });
        if !encoded {
            // Cannot happen for well-formed values; the read then fails and
            // the worker is replaced rather than left with half a stream.
            w.broken = true;
            return;
        }
        let until = match flight.front() {
            Some(f) => f.started.unwrap_or(now) + f.job.work.deadline,
            None => now,
        };
        if w.broken || send_all(&w.stream, &w.buf, until).await.is_err() {
            // A worker that cannot take a request is gone or stuck; the read
            // of the front job's reply finds out which.
            w.broken = true;
            // SAFETY: shutdown on a socket we own; it stays open until dropped.
            unsafe { libc::shutdown(w.stream.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }

    /// Why a job that waited `queue_time` is answered without running: it
    /// waited too long, or its policy was quarantined meanwhile.
    fn refused(&self, work: &Work, queue_time: Duration, cfg: &Config) -> Option<JobResult> {
        if queue_time > work.queue_expiry(Duration::from_millis(cfg.worker.timeout_ms))
            || self.shared.stopping() && queue_time > Duration::from_millis(cfg.drain_timeout_ms)
        {
            return Some(JobResult::Expired);
        }
        self.shared.refusal(work).map(JobResult::from)
    }

    fn killed(&self, work: &Work, reason: RestartReason, cfg: &Config, ended: Ended, served: u64) {
        self.shared.metrics.restart(reason);
        tracing::warn!(
            requestId = %work.request_id,
            tenant = work.tenant.as_deref().unwrap_or("-"),
            policyId = %work.policy_id,
            slot = self.slot,
            reason = reason.as_str(),
            ended = %ended,
            served,
            "worker restarted"
        );
        self.shared.record_kill(cfg, work);
    }
}

/// About how large the job's request frame will be on this worker.
fn frame_estimate(w: &Live, job: &Job) -> usize {
    let cached = w.kept.contains(&job.work.cache_key);
    let text = if cached { 0 } else { job.work.text.len() };
    text + job.work.context.as_ref().map_or(0, |c| c.len()) + job.work.cache_key.len() + 256
}
