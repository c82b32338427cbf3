//! Dedicated workers (`pool.tenant_isolation = "dedicated"`): which tenant
//! each slot's worker is bound to, the hand-off of a queued job to the slot
//! that should serve it, the pre-started spare workers bound to no tenant,
//! and the tenant → uid map of `worker.uid_range`.
//!
//! The rule the drivers keep: a worker serves jobs of one tenant only, the
//! tenant of the first job it serves (anonymous callers are the one tenant
//! `-`). A driver that takes a job of another tenant from the pool's queue
//! hands it to an idle slot bound to that tenant, else to an idle unbound
//! slot, else to the least recently used idle slot, which replaces its
//! worker (with a spare when one is ready) before serving it. A binding is
//! recorded with the worker's pid, so any new worker in a slot (a restart,
//! a recycle) starts unbound.

use super::job::{Job, Work};
use super::live::{retire, Live, PoolError};
use super::shared::{PoolShared, SlotState};
use crate::config::{Config, TenantIsolation};
use crate::lock::lock;
use omni_worker::protocol::SandboxReport;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The tenant a job counts for: its authenticated tenant, or `-` for every
/// anonymous caller (without auth nobody's identity is known, so they are
/// one tenant; run with auth on to separate them).
pub fn tenant_of(work: &Work) -> &str {
    work.tenant.as_deref().unwrap_or("-")
}

/// What a slot's current worker is bound to.
#[derive(Default)]
struct Binding {
    /// The worker the binding is about (0: none).
    pid: u32,
    tenant: Option<String>,
    /// When the worker last started a job (least recently used goes first).
    last_used: Option<Instant>,
}

/// Where a job taken from the queue goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This slot serves it (its worker is bound to the tenant, or unbound,
    /// or it is the slot to recycle).
    Here,
    /// Handed to that slot.
    Slot(usize),
}

/// Dedicated-mode bookkeeping, shared by the drivers. Inert in shared mode.
pub struct Tenancy {
    dedicated: bool,
    bindings: Mutex<Vec<Binding>>,
    /// Jobs handed to a slot by another driver; served before the queue.
    mail: Vec<Mutex<VecDeque<Job>>>,
    spares: Mutex<Vec<Live>>,
    /// Spares being started now (so refills do not overshoot).
    spares_starting: AtomicUsize,
    uids: Mutex<UidMap>,
}

impl Tenancy {
    pub fn new(cfg: &Config) -> Tenancy {
        let n = cfg.workers;
        Tenancy {
            dedicated: cfg.pool.tenant_isolation == TenantIsolation::Dedicated,
            bindings: Mutex::new((0..n).map(|_| Binding::default()).collect()),
            mail: (0..n).map(|_| Mutex::new(VecDeque::new())).collect(),
            spares: Mutex::new(Vec::new()),
            spares_starting: AtomicUsize::new(0),
            uids: Mutex::new(UidMap::new(cfg.worker.uid_range)),
        }
    }

    pub fn dedicated(&self) -> bool {
        self.dedicated
    }

    /// Whether the worker `pid` in `slot` may serve `tenant`: always in
    /// shared mode; in dedicated mode when it is bound to that tenant, or
    /// bound to none and (with `worker.uid_range`) not in need of a uid of
    /// its own (a worker started unbound runs as `worker.user`).
    pub fn may_serve(&self, slot: usize, pid: u32, tenant: &str) -> bool {
        if !self.dedicated {
            return true;
        }
        let b = lock(&self.bindings);
        match b.get(slot) {
            Some(b) if b.pid == pid => match &b.tenant {
                Some(t) => t == tenant,
                None => !self.uid_mode(),
            },
            _ => !self.uid_mode(),
        }
    }

    fn uid_mode(&self) -> bool {
        lock(&self.uids).range.is_some()
    }

    /// Records that worker `pid` of `slot` serves `tenant` (from now on, only it).
    pub fn bind(&self, slot: usize, pid: u32, tenant: &str) {
        if !self.dedicated {
            return;
        }
        if let Some(b) = lock(&self.bindings).get_mut(slot) {
            if b.pid != pid || b.tenant.as_deref() != Some(tenant) {
                tracing::debug!(slot, pid, tenant, "worker bound to tenant");
            }
            b.pid = pid;
            b.tenant = Some(tenant.to_string());
            b.last_used = Some(Instant::now());
        }
    }

    /// The slot's worker `pid` is bound and has started no job for at least
    /// `idle`.
    pub fn idle_bound(&self, slot: usize, pid: u32, idle: std::time::Duration) -> bool {
        if !self.dedicated {
            return false;
        }
        let b = lock(&self.bindings);
        b.get(slot).is_some_and(|b| {
            b.pid == pid && b.tenant.is_some() && b.last_used.is_some_and(|t| t.elapsed() >= idle)
        })
    }

    /// Where a job of `tenant` that the driver of `me` took from the queue
    /// goes. `me_idle`: the driver has nothing in flight (else it is
    /// pipelining, and the job should rather go to another slot).
    pub fn route(
        &self,
        shared: &PoolShared,
        me: usize,
        me_pid: u32,
        tenant: &str,
        me_idle: bool,
    ) -> Route {
        if !self.dedicated {
            return Route::Here;
        }
        if me_idle && self.may_serve(me, me_pid, tenant) {
            return Route::Here;
        }
        let idle = |i: usize| {
            shared
                .slots
                .get(i)
                .is_some_and(|s| s.load(Ordering::Acquire) == SlotState::Idle as u8)
        };
        let b = lock(&self.bindings);
        let bound_to = |i: usize| b.get(i).and_then(|b| b.tenant.as_deref());
        let pid_of = |i: usize| shared.pids.get(i).map_or(0, |p| p.load(Ordering::Acquire));
        // A binding of an earlier worker of the slot does not count.
        let current = |i: usize| b.get(i).is_some_and(|b| b.pid == pid_of(i));
        let others = (0..b.len()).filter(|&i| i != me);
        // 1. An idle worker of this tenant.
        if let Some(i) = others
            .clone()
            .find(|&i| idle(i) && current(i) && bound_to(i) == Some(tenant))
        {
            return Route::Slot(i);
        }
        // 2. An idle worker bound to nobody (a fresh one); with uid_range it
        //    would have to be replaced anyway, so any idle slot is as good.
        if !self.uid_mode() {
            if let Some(i) = others
                .clone()
                .find(|&i| idle(i) && !(current(i) && bound_to(i).is_some()))
            {
                return Route::Slot(i);
            }
        }
        if !me_idle {
            // Pipelining: a busy worker of this tenant takes it next, else
            // this slot serves it once its flight is done.
            if let Some(i) = others
                .clone()
                .find(|&i| current(i) && bound_to(i) == Some(tenant))
            {
                return Route::Slot(i);
            }
            return Route::Here;
        }
        // 3. The least recently used idle slot, this one included, gets a
        //    fresh worker for it.
        // A slot whose worker is bound to nobody counts as never used.
        let last = |i: usize| b.get(i).filter(|_| current(i)).and_then(|b| b.last_used);
        let lru = (0..b.len())
            .filter(|&i| i == me || idle(i))
            .min_by_key(|&i| last(i))
            .unwrap_or(me);
        if lru == me {
            Route::Here
        } else {
            Route::Slot(lru)
        }
    }

    /// Hands `job` to `slot`'s driver (it serves it before the queue);
    /// gives it back when there is no such slot.
    pub fn hand(&self, slot: usize, job: Job) -> Option<Job> {
        match self.mail.get(slot) {
            Some(m) => {
                lock(m).push_back(job);
                None
            }
            None => Some(job),
        }
    }

    /// A job handed to `slot`, if any.
    pub fn take_mail(&self, slot: usize) -> Option<Job> {
        self.mail.get(slot).and_then(|m| lock(m).pop_front())
    }

    pub fn mail_empty(&self, slot: usize) -> bool {
        self.mail.get(slot).is_none_or(|m| lock(m).is_empty())
    }

    /// Every handed job not yet taken (at shutdown).
    pub fn drain_mail(&self) -> Vec<Job> {
        self.mail
            .iter()
            .flat_map(|m| lock(m).drain(..).collect::<Vec<_>>())
            .collect()
    }

    /// Every spare (at shutdown).
    pub fn drain_spares(&self) -> Vec<Live> {
        std::mem::take(&mut *lock(&self.spares))
    }

    /// How many spares to keep: none in shared mode, nor with uid_range (a
    /// spare's uid would have to be chosen before its tenant is known).
    fn spares_wanted(&self, cfg: &Config) -> usize {
        if self.dedicated && !self.uid_mode() {
            cfg.pool.spare_workers
        } else {
            0
        }
    }

    /// The uid a worker for `tenant` runs under (`None`: `worker.user`).
    pub fn uid_for(&self, tenant: &str) -> Option<u32> {
        if !self.dedicated {
            return None;
        }
        let bound: Vec<String> = lock(&self.bindings)
            .iter()
            .filter_map(|b| b.tenant.clone())
            .collect();
        lock(&self.uids).uid_for(tenant, &bound)
    }
}

/// A fresh worker for `tenant` (`None`: for no tenant yet): a ready spare
/// of the current configuration when there is one (and another is started
/// to replace it), else a new one, under the tenant's uid with
/// `worker.uid_range`. Stale or dead spares are retired on the way.
pub async fn fresh_worker(
    shared: &Arc<PoolShared>,
    tenant: Option<&str>,
) -> Result<Live, PoolError> {
    let t = &shared.tenancy;
    let generation = shared.generation.load(Ordering::Acquire);
    let uid = match tenant {
        Some(tenant) if t.uid_mode() => match t.uid_for(tenant) {
            Some(u) => Some(u),
            // Cannot happen with the range checked at start (workers + 1
            // ids); never fall back to the shared user.
            None => {
                return Err(PoolError::StartFailed(
                    "no free uid in worker.uid_range".into(),
                ))
            }
        },
        _ => None,
    };
    if uid.is_none() {
        loop {
            let spare = lock(&t.spares).pop();
            let Some(s) = spare else { break };
            if s.generation == generation && !super::live::idle_ended(&s) {
                refill_spares(shared);
                return Ok(s);
            }
            tokio::task::spawn_blocking(move || retire(s.close()));
        }
    }
    refill_spares(shared);
    let sh = shared.clone();
    let cfg = shared.config();
    match tokio::task::spawn_blocking(move || spawn_as(&sh, &cfg, uid)).await {
        Ok(r) => r.map(|(live, _)| live),
        Err(_) => Err(PoolError::StartFailed("the start was interrupted".into())),
    }
}

/// Starts one worker with `cfg`, under `uid` (and the gid of the same
/// number) when given: the sandbox's user switch takes numbers as they are.
pub fn spawn_as(
    shared: &PoolShared,
    cfg: &Config,
    uid: Option<u32>,
) -> Result<(Live, SandboxReport), PoolError> {
    match uid {
        None => shared.spawn(cfg),
        Some(uid) => {
            let mut c = cfg.clone();
            c.worker.user = uid.to_string();
            c.worker.group = uid.to_string();
            shared.spawn(&c)
        }
    }
}

/// Starts spares in the background until `pool.spare_workers` are ready or
/// starting. Must run inside the pool's runtime.
pub fn refill_spares(shared: &Arc<PoolShared>) {
    let t = &shared.tenancy;
    let cfg = shared.config();
    let want = t.spares_wanted(&cfg);
    loop {
        if shared.stopping() {
            return;
        }
        let have = lock(&t.spares).len() + t.spares_starting.load(Ordering::Acquire);
        if have >= want {
            return;
        }
        t.spares_starting.fetch_add(1, Ordering::AcqRel);
        let sh = shared.clone();
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            let started = sh.spawn(&cfg);
            sh.tenancy.spares_starting.fetch_sub(1, Ordering::AcqRel);
            match started {
                Ok((live, _)) => {
                    let mut spares = lock(&sh.tenancy.spares);
                    if sh.stopping() || spares.len() >= sh.tenancy.spares_wanted(&cfg) {
                        drop(spares);
                        retire(live.close());
                    } else {
                        spares.push(live);
                    }
                }
                // Not counted as a failed start of the pool: a slot that
                // needs a worker starts one itself, and counts that.
                Err(e) => tracing::warn!(error = %e, "spare worker start failed"),
            }
        });
    }
}

/// `worker.uid_range`: a stable uid per tenant for the life of the
/// process. A tenant's first uid is its hash into the range, or the next
/// free one after it; a uid is taken back from a tenant only when none of
/// its workers is bound to a slot (the range holds at least workers + 1).
struct UidMap {
    range: Option<(u32, u32)>,
    by_tenant: HashMap<String, u32>,
}

impl UidMap {
    fn new(range: Option<[u32; 2]>) -> UidMap {
        UidMap {
            range: range.map(|[a, b]| (a, b)),
            by_tenant: HashMap::new(),
        }
    }

    fn uid_for(&mut self, tenant: &str, bound: &[String]) -> Option<u32> {
        let (first, last) = self.range?;
        if let Some(&u) = self.by_tenant.get(tenant) {
            return Some(u);
        }
        let size = u64::from(last - first) + 1;
        let start = fnv1a(tenant.as_bytes()) % size;
        let in_use: HashMap<u32, &str> = self
            .by_tenant
            .iter()
            .map(|(t, &u)| (u, t.as_str()))
            .collect();
        let mut reclaim = None;
        for k in 0..size {
            let u = first + ((start + k) % size) as u32;
            match in_use.get(&u) {
                None => {
                    self.by_tenant.insert(tenant.to_string(), u);
                    return Some(u);
                }
                Some(other) if reclaim.is_none() && !bound.iter().any(|b| b == other) => {
                    reclaim = Some((u, other.to_string()));
                }
                Some(_) => {}
            }
        }
        // Full: take the uid of a tenant with no bound worker.
        let (u, other) = reclaim?;
        self.by_tenant.remove(&other);
        self.by_tenant.insert(tenant.to_string(), u);
        Some(u)
    }
}

/// FNV-1a: a stable hash (the same tenant gets the same first choice in
/// every run; `DefaultHasher` is seeded per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::{Route, UidMap};
    use crate::config::{Config, TenantIsolation};
    use crate::pool::shared::{PoolShared, SlotState};
    use std::sync::Arc;

    fn pool(workers: usize) -> PoolShared {
        let mut cfg = Config {
            workers,
            ..Config::default()
        };
        cfg.pool.tenant_isolation = TenantIsolation::Dedicated;
        let sh = PoolShared::new(
            "/nonexistent".into(),
            Arc::new(cfg),
            Arc::new(crate::metrics::Metrics::new()),
            Box::new(|_| {}),
        );
        for i in 0..workers {
            sh.set_state(i, SlotState::Idle);
            sh.set_pid(i, 100 + i as u32);
        }
        sh
    }

    #[test]
    fn a_job_goes_to_its_tenants_worker_then_a_free_one_then_the_least_recently_used() {
        let sh = pool(3);
        let t = &sh.tenancy;
        // Fresh workers serve anyone; the first job binds.
        assert!(t.may_serve(0, 100, "a"));
        t.bind(0, 100, "a");
        assert!(t.may_serve(0, 100, "a"));
        assert!(!t.may_serve(0, 100, "b"));
        // Slot 0 took b's job: an idle unbound slot gets it.
        assert!(matches!(
            t.route(&sh, 0, 100, "b", true),
            Route::Slot(1 | 2)
        ));
        t.bind(1, 101, "b");
        t.bind(2, 102, "c");
        // Slot 2 took a's job: slot 0 is a's.
        assert_eq!(t.route(&sh, 2, 102, "a", true), Route::Slot(0));
        // Busy: not handed there; the least recently used idle slot is
        // recycled for it (slot 1 here, then the taker itself).
        sh.set_state(0, SlotState::Busy);
        assert_eq!(t.route(&sh, 2, 102, "a", true), Route::Slot(1));
        sh.set_state(1, SlotState::Busy);
        assert_eq!(t.route(&sh, 2, 102, "a", true), Route::Here);
        // Pipelining on slot 1 (busy): a's job goes behind a's busy worker.
        assert_eq!(t.route(&sh, 1, 101, "a", false), Route::Slot(0));
        // A new worker in a slot is bound to nobody.
        sh.set_pid(0, 200);
        assert!(t.may_serve(0, 200, "z"));
        sh.set_state(0, SlotState::Idle);
        assert_eq!(t.route(&sh, 2, 102, "z", true), Route::Slot(0));
    }

    #[test]
    fn uids_are_stable_distinct_and_reclaimed_only_from_unbound_tenants() {
        let mut m = UidMap::new(Some([1000, 1002]));
        let a = m.uid_for("a", &[]).unwrap();
        let b = m.uid_for("b", &[]).unwrap();
        let c = m.uid_for("c", &[]).unwrap();
        assert_eq!(m.uid_for("a", &[]), Some(a));
        let mut all = vec![a, b, c];
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 3, "{a} {b} {c}");
        assert!(all.iter().all(|u| (1000..=1002).contains(u)));
        // Full: "d" takes the uid of a tenant that has no bound worker.
        let bound = vec!["a".to_string(), "b".to_string()];
        assert_eq!(m.uid_for("d", &bound), Some(c));
        let bound = vec!["a".into(), "b".into(), "d".into()];
        assert_eq!(m.uid_for("e", &bound), None);
        assert_eq!(UidMap::new(None).uid_for("a", &[]), None);
    }
}
