//! The pool's state shared between the HTTP side and the drivers: the
//! configuration, each slot's state and worker pid, and the restart
//! bookkeeping (intensity and back-off, failed starts, quarantine, each
//! owner's failure budget, the fatal flag), with the events the pool
//! reports about them.

use super::canon::{canonical_hash, CanonMemo};
use super::job::{Refusal, Work};
use super::live::{Live, PoolError};
use crate::config::Config;
use crate::lock;
use crate::metrics::Metrics;
use crate::restart::{Canon, Intensity, Quarantine, TenantBudget, Window};
use omni_worker::protocol::SandboxReport;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    Starting = 0,
    Idle = 1,
    Busy = 2,
    Down = 3,
}

/// What the pool reports about its own health as it happens. The owner
/// decides where it goes (`omnid` puts it in systemd's status line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// More unplanned restarts than `pool.restart_intensity` in the period:
    /// respawns are delayed.
    CrashLoop(String),
    /// Too many failed starts in the period: the pool gives up, and
    /// [`WorkerPool::fatal`](super::WorkerPool::fatal) resolves.
    GivingUp(String),
}

impl PoolEvent {
    pub fn message(&self) -> &str {
        match self {
            PoolEvent::CrashLoop(m) | PoolEvent::GivingUp(m) => m,
        }
    }
}

/// Receives the pool's [`PoolEvent`]s, from any thread.
pub type EventSink = Box<dyn Fn(&PoolEvent) + Send + Sync>;

/// Canonical hashes remembered by policy id.
const CANON_MEMO: usize = 4096;

/// State shared between the HTTP side and the drivers.
pub struct PoolShared {
    pub exe: PathBuf,
    pub config: RwLock<Arc<Config>>,
    pub generation: AtomicU64,
    pub slots: Vec<AtomicU8>,
    /// Pid of each slot's current worker (0: none), for the last-resort
    /// kill when a shutdown times out.
    pub pids: Vec<AtomicU32>,
    pub stopping: AtomicBool,
    /// Set while one slot rolls its worker after a reload.
    pub rolling: AtomicBool,
    /// Wakes an idle driver when a job is queued.
    pub job_ready: tokio::sync::Notify,
    pub intensity: Mutex<Intensity>,
    pub failed_starts: Mutex<Window>,
    pub quarantine: Mutex<Quarantine>,
    /// Worker deaths charged to each owner, and owners backing off.
    pub budget: Mutex<TenantBudget>,
    /// Policy id → canonical hash, so admission computes it once per text.
    pub canon: Mutex<CanonMemo>,
    pub next_id: AtomicU64,
    pub metrics: Arc<Metrics>,
    /// Set when more than `max_failed_starts` starts failed in the period.
    pub fatal: Mutex<Option<String>>,
    pub fatal_notify: tokio::sync::Notify,
    /// Where the pool reports crash loops and giving up (the service
    /// manager's status line).
    pub on_event: EventSink,
    /// Dedicated workers: bindings, hand-offs, spares, uids.
    pub tenancy: super::tenancy::Tenancy,
}

impl PoolShared {
    /// `config.workers` slots, all starting.
    pub fn new(
        exe: PathBuf,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        on_event: EventSink,
    ) -> PoolShared {
        let n = config.workers;
        let tenancy = super::tenancy::Tenancy::new(&config);
        PoolShared {
            exe,
            config: RwLock::new(config),
            generation: AtomicU64::new(0),
            pids: (0..n).map(|_| AtomicU32::new(0)).collect(),
            slots: (0..n)
                .map(|_| AtomicU8::new(SlotState::Starting as u8))
                .collect(),
            stopping: AtomicBool::new(false),
            rolling: AtomicBool::new(false),
            job_ready: tokio::sync::Notify::new(),
            intensity: Mutex::new(Intensity::default()),
            failed_starts: Mutex::new(Window::default()),
            quarantine: Mutex::new(Quarantine::default()),
            budget: Mutex::new(TenantBudget::default()),
            canon: Mutex::new(CanonMemo::new(CANON_MEMO)),
            next_id: AtomicU64::new(1),
            metrics,
            fatal: Mutex::new(None),
            fatal_notify: tokio::sync::Notify::new(),
            on_event,
            tenancy,
        }
    }

    pub fn config(&self) -> Arc<Config> {
        lock::read(&self.config).clone()
    }

    pub fn set_state(&self, slot: usize, s: SlotState) {
        if let Some(a) = self.slots.get(slot) {
            a.store(s as u8, Ordering::Release);
        }
    }

    pub fn set_pid(&self, slot: usize, pid: u32) {
        if let Some(a) = self.pids.get(slot) {
            a.store(pid, Ordering::Release);
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Counts of slots by state: (idle, busy, starting, down).
    pub fn states(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for s in &self.slots {
            match s.load(Ordering::Acquire) {
                0 => c.2 += 1,
                1 => c.0 += 1,
                2 => c.1 += 1,
                _ => c.3 += 1,
            }
        }
        c
    }

    fn random_below(&self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            crate::ids::random_u64() % n
        }
    }

    fn recycle_after(&self, cfg: &Config) -> u64 {
        let max = cfg.worker.max_requests;
        let jitter = max.saturating_mul(cfg.pool.recycle_jitter_percent) / 100;
        max - self.random_below(jitter + 1).min(max.saturating_sub(1))
    }

    fn set_fatal(&self, why: String) {
        let mut f = lock::lock(&self.fatal);
        if f.is_none() {
            *f = Some(why);
            self.fatal_notify.notify_one();
        }
    }

    /// Spawns one worker with `cfg` and waits for its `Ready` frame.
    pub fn spawn(&self, cfg: &Config) -> Result<(Live, SandboxReport), PoolError> {
        let generation = self.generation.load(Ordering::Acquire);
        Live::start(&self.exe, cfg, generation, self.recycle_after(cfg))
    }

    /// Records a failed start; past the limit the service gives up.
    pub fn failed_start(&self, cfg: &Config, err: &PoolError) {
        let n = lock::lock(&self.failed_starts).record(
            Instant::now(),
            Duration::from_secs(cfg.pool.failed_start_period_s),
        );
        tracing::error!(error = %err, failed_starts = n, "worker start failed");
        if n > cfg.pool.max_failed_starts as usize {
            let why = format!(
                "{n} failed worker starts within {} s; giving up",
                cfg.pool.failed_start_period_s
            );
            (self.on_event)(&PoolEvent::GivingUp(why.clone()));
            self.set_fatal(why);
        }
    }

    /// Records an unplanned restart no request caused (a start failure, a
    /// worker that died while idle); returns the back-off before
    /// respawning. Deaths a request caused are charged to its owner
    /// instead ([`PoolShared::record_kill`]), so one tenant cannot put the
    /// whole pool into back-off.
    pub fn unplanned_restart(&self, cfg: &Config) -> Duration {
        let delay = lock::lock(&self.intensity).record(
            Instant::now(),
            cfg.pool.restart_intensity,
            Duration::from_secs(cfg.pool.restart_period_s),
            Duration::from_millis(cfg.pool.backoff_initial_ms),
            Duration::from_millis(cfg.pool.backoff_max_ms),
        );
        if !delay.is_zero() {
            let msg = format!(
                "crash loop: more than {} worker restarts in {} s, backing off",
                cfg.pool.restart_intensity, cfg.pool.restart_period_s
            );
            tracing::warn!(backoff_ms = delay.as_millis() as u64, "{msg}");
            (self.on_event)(&PoolEvent::CrashLoop(msg));
        }
        delay
    }

    /// Over the restart intensity right now.
    pub fn in_backoff(&self) -> bool {
        let cfg = self.config();
        lock::lock(&self.intensity).in_backoff(
            Instant::now(),
            cfg.pool.restart_intensity,
            Duration::from_secs(cfg.pool.restart_period_s),
        )
    }

    /// Why `work` must not run now: its owner is over its failure budget,
    /// or its policy (by canonical form) is quarantined for its owner.
    /// Cheap for an owner without quarantine records: two map lookups; the
    /// canonical form is computed (once per policy text) only for an owner
    /// whose policies killed workers recently.
    pub fn refusal(&self, work: &Work) -> Option<Refusal> {
        let now = Instant::now();
        if let Some(left) = lock::lock(&self.budget).check(&work.owner, now) {
            return Some(Refusal::TenantBackoff(left));
        }
        let window = Duration::from_secs(self.config().pool.quarantine_window_s);
        if !lock::lock(&self.quarantine).has_records(&work.owner, now, window) {
            return None;
        }
        let canon = self.canon_of(work);
        lock::lock(&self.quarantine)
            .check(&work.owner, &canon, now)
            .map(Refusal::Quarantined)
    }

    /// The canonical hash of `work`'s policy, from the memo or computed
    /// (outside every lock: it is linear in the text).
    fn canon_of(&self, work: &Work) -> Canon {
        if let Some(c) = lock::lock(&self.canon).get(&work.policy_id) {
            return c;
        }
        let c = canonical_hash(&work.text);
        lock::lock(&self.canon).insert(&work.policy_id, c);
        c
    }

    pub fn quarantined_count(&self) -> usize {
        lock::lock(&self.quarantine).active(Instant::now())
    }

    /// A worker died on `work` (its deadline, a limit, a crash during the
    /// job): counts the kill against the policy's canonical form for its
    /// owner (quarantine) and against the owner's failure budget.
    pub fn record_kill(&self, cfg: &Config, work: &Work) {
        let now = Instant::now();
        let canon = self.canon_of(work);
        let q = lock::lock(&self.quarantine).record_kill(
            &work.owner,
            canon,
            now,
            cfg.pool.quarantine_threshold,
            Duration::from_secs(cfg.pool.quarantine_window_s),
            Duration::from_secs(cfg.pool.quarantine_cooldown_s),
        );
        if q {
            tracing::warn!(
                policyId = %work.policy_id,
                owner = %work.owner,
                cooldown_s = cfg.pool.quarantine_cooldown_s,
                "policy quarantined: it (or a reformatted copy) killed {} workers within {} s",
                cfg.pool.quarantine_threshold,
                cfg.pool.quarantine_window_s
            );
        }
        let b = lock::lock(&self.budget).charge(
            &work.owner,
            now,
            cfg.pool.tenant_failure_budget,
            Duration::from_secs(cfg.pool.tenant_failure_window_s),
            Duration::from_secs(cfg.pool.tenant_backoff_s),
        );
        if b {
            tracing::warn!(
                owner = %work.owner,
                backoff_s = cfg.pool.tenant_backoff_s,
                "tenant backing off: its requests killed {} workers within {} s",
                cfg.pool.tenant_failure_budget,
                cfg.pool.tenant_failure_window_s
            );
        }
    }
}
