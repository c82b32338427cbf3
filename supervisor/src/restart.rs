//! Why workers restart, and what the pool does about repeated restarts:
//! the [`RestartReason`] a metric and a log line name (the worker's own exit
//! classification, `omni_worker::process`, plus what only the supervisor
//! knows: its deadline killed the worker, or it recycled it), the OTP-style
//! restart intensity with exponential back-off (for deaths no request
//! caused), the failed-start limit, the quarantine of policies that keep
//! killing workers (per owner, by canonical form), and each owner's budget
//! of worker deaths its requests may cause.

use omni_worker::process::{Reaped, WorkerExit};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Why a worker was replaced (`docs/api.md#workers`); the label of the restart metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestartReason {
    /// The supervisor killed it at the request's deadline.
    Timeout,
    /// `RLIMIT_CPU` (SIGXCPU, or SIGKILL at the hard limit).
    CpuLimit,
    /// Allocation failure under `RLIMIT_AS` (Rust aborts on OOM).
    MemoryLimit,
    /// The seccomp filter killed it (SIGSYS).
    SeccompViolation,
    /// Any other signal or exit, or a protocol error.
    Crash,
    /// The worker was stopped (`SIGSTOP`, a debugger) with a request
    /// unanswered: replaced, and the request is not blamed.
    Stalled,
    /// Planned: after `max_requests`, CPU use, or a configuration roll.
    Recycled,
}

impl RestartReason {
    pub const ALL: [RestartReason; 7] = [
        RestartReason::Timeout,
        RestartReason::CpuLimit,
        RestartReason::MemoryLimit,
        RestartReason::SeccompViolation,
        RestartReason::Crash,
        RestartReason::Stalled,
        RestartReason::Recycled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Timeout => "timeout",
            RestartReason::CpuLimit => "cpu_limit",
            RestartReason::MemoryLimit => "memory_limit",
            RestartReason::SeccompViolation => "seccomp_violation",
            RestartReason::Crash => "crash",
            RestartReason::Stalled => "stalled",
            RestartReason::Recycled => "recycled",
        }
    }

    /// The reason for an end nobody asked for, from the worker's exit
    /// classification. `cpu_limit` (its `RLIMIT_CPU`) tells a `SIGKILL` at
    /// the hard limit from one sent by someone else. A worker that exited by
    /// itself, cleanly or not, crashed: only the supervisor ends one on purpose.
    pub fn unplanned(reaped: &Reaped, cpu_limit: Duration) -> RestartReason {
        match reaped.exit(cpu_limit) {
            WorkerExit::SeccompViolation => RestartReason::SeccompViolation,
            WorkerExit::CpuLimit => RestartReason::CpuLimit,
            WorkerExit::MemoryLimit => RestartReason::MemoryLimit,
            WorkerExit::Clean
            | WorkerExit::ProtocolError
            | WorkerExit::SandboxFailed
            | WorkerExit::Usage
            | WorkerExit::Killed
            | WorkerExit::Crash => RestartReason::Crash,
        }
    }
}

/// Timestamps of events in a sliding window.
#[derive(Debug, Default)]
pub struct Window {
    events: VecDeque<Instant>,
}

impl Window {
    /// Records an event at `now`; returns how many fall within `period`.
    pub fn record(&mut self, now: Instant, period: Duration) -> usize {
        self.events.push_back(now);
        self.count(now, period)
    }

    pub fn count(&mut self, now: Instant, period: Duration) -> usize {
        while let Some(&t) = self.events.front() {
            if now.saturating_duration_since(t) > period {
                self.events.pop_front();
            } else {
                break;
            }
        }
        self.events.len()
    }
}

/// OTP-style restart intensity: more than `max` unplanned restarts within
/// `period` puts the pool in back-off (restarts are delayed, doubling up to
/// `backoff_max`) until the window clears.
#[derive(Debug, Default)]
pub struct Intensity {
    window: Window,
    backoff: Option<Duration>,
}

impl Intensity {
    /// Records a restart; returns the delay to wait before respawning.
    pub fn record(
        &mut self,
        now: Instant,
        max: u32,
        period: Duration,
        initial: Duration,
        backoff_max: Duration,
    ) -> Duration {
        let n = self.window.record(now, period);
        if n > max as usize {
            let next = match self.backoff {
                None => initial.min(backoff_max),
                Some(d) => (d * 2).min(backoff_max),
            };
            self.backoff = Some(next);
            next
        } else {
            self.backoff = None;
            Duration::ZERO
        }
    }

    /// Over the intensity right now (the pool reports not-ready).
    pub fn in_backoff(&mut self, now: Instant, max: u32, period: Duration) -> bool {
        if self.window.count(now, period) <= max as usize {
            self.backoff = None;
        }
        self.backoff.is_some()
    }
}

/// The canonical form of a policy (`super::pool` computes it): a hash
/// that ignores whitespace, comments and letter case outside strings.
pub type Canon = [u8; 16];

/// One owner's quarantine records: kills per canonical form, and the forms
/// refused for a cool-down.
#[derive(Debug, Default)]
struct OwnerRecords {
    kills: HashMap<Canon, Window>,
    until: HashMap<Canon, Instant>,
}

impl OwnerRecords {
    fn prune(&mut self, now: Instant, window: Duration) {
        self.kills.retain(|_, w| w.count(now, window) > 0);
        self.until.retain(|_, t| *t > now);
    }

    fn is_empty(&self) -> bool {
        self.kills.is_empty() && self.until.is_empty()
    }
}

/// Policies that killed workers, by owner (tenant or client address) and
/// canonical form, and those refused for a cool-down. Keyed per owner so one
/// tenant's kills never refuse another tenant's policy; keyed on the
/// canonical form so a reformatted copy of a policy is the same policy.
#[derive(Debug, Default)]
pub struct Quarantine {
    owners: HashMap<String, OwnerRecords>,
    /// Records held, over all owners (bounds memory).
    records: usize,
}

impl Quarantine {
    /// Records that `owner`'s policy `canon` killed a worker. Returns true
    /// when this puts it in quarantine.
    pub fn record_kill(
        &mut self,
        owner: &str,
        canon: Canon,
        now: Instant,
        threshold: u32,
        window: Duration,
        cooldown: Duration,
    ) -> bool {
        // Bound memory: forget old entries when many policies have killed
        // workers.
        if self.records > 10_000 {
            self.prune(now, window);
        }
        let o = self.owners.entry(owner.to_string()).or_default();
        let w = o.kills.entry(canon).or_insert_with(|| {
            self.records += 1;
            Window::default()
        });
        let n = w.record(now, window);
        if n >= threshold as usize {
            o.kills.remove(&canon);
            if o.until.insert(canon, now + cooldown).is_some() {
                self.records = self.records.saturating_sub(1);
            }
            true
        } else {
            false
        }
    }

    fn prune(&mut self, now: Instant, window: Duration) {
        for o in self.owners.values_mut() {
            o.prune(now, window);
        }
        self.owners.retain(|_, o| !o.is_empty());
        self.records = self
            .owners
            .values()
            .map(|o| o.kills.len() + o.until.len())
            .sum();
    }

    /// Whether `owner` has any live record (a kill within `window`, or a
    /// policy in its cool-down): only then is the canonical form of its
    /// policies worth computing. Forgets the owner's stale records.
    pub fn has_records(&mut self, owner: &str, now: Instant, window: Duration) -> bool {
        let Some(o) = self.owners.get_mut(owner) else {
            return false;
        };
        let before = o.kills.len() + o.until.len();
        o.prune(now, window);
        let after = o.kills.len() + o.until.len();
        self.records = self.records.saturating_sub(before - after);
        if after == 0 {
            self.owners.remove(owner);
        }
        after > 0
    }

    /// Whether `owner`'s policy `canon` is refused now; how long it stays
    /// refused.
    pub fn check(&mut self, owner: &str, canon: &Canon, now: Instant) -> Option<Duration> {
        let o = self.owners.get_mut(owner)?;
        match o.until.get(canon) {
            Some(&t) if t > now => Some(t - now),
            Some(_) => {
                o.until.remove(canon);
                self.records = self.records.saturating_sub(1);
                None
            }
            None => None,
        }
    }

    pub fn active(&self, now: Instant) -> usize {
        self.owners
            .values()
            .map(|o| o.until.values().filter(|t| **t > now).count())
            .sum()
    }
}

/// Worker deaths charged to each owner (a tenant, or an anonymous client's
/// address): an owner whose requests killed `budget` workers within the
/// window is refused (`tenant_backoff`) for the back-off, for its own
/// requests only.
#[derive(Debug, Default)]
pub struct TenantBudget {
    owners: HashMap<String, Charges>,
}

#[derive(Debug, Default)]
struct Charges {
    deaths: Window,
    until: Option<Instant>,
}

impl TenantBudget {
    /// Charges `owner` with a worker death. Returns true when this puts it
    /// in back-off.
    pub fn charge(
        &mut self,
        owner: &str,
        now: Instant,
        budget: u32,
        window: Duration,
        backoff: Duration,
    ) -> bool {
        if self.owners.len() > 10_000 {
            self.owners
                .retain(|_, c| c.deaths.count(now, window) > 0 || c.until.is_some_and(|t| t > now));
        }
        let c = self.owners.entry(owner.to_string()).or_default();
        let n = c.deaths.record(now, window);
        if n >= budget as usize {
            // A fresh budget after the back-off.
            c.deaths = Window::default();
            c.until = Some(now + backoff);
            true
        } else {
            false
        }
    }

    /// Whether `owner` is backing off now; for how long.
    pub fn check(&mut self, owner: &str, now: Instant) -> Option<Duration> {
        let c = self.owners.get_mut(owner)?;
        match c.until {
            Some(t) if t > now => Some(t - now),
            Some(_) => {
                c.until = None;
                None
            }
            None => None,
        }
    }

    /// Owners backing off now.
    #[cfg(test)]
    pub fn active(&self, now: Instant) -> usize {
        self.owners
            .values()
            .filter(|c| c.until.is_some_and(|t| t > now))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use omni_worker::process::Ended;

    /// An unplanned end, as the pool classifies one.
    fn classify(ended: Ended, cpu: Duration, cpu_limit: Duration) -> RestartReason {
        RestartReason::unplanned(&Reaped { ended, cpu }, cpu_limit)
    }

    #[test]
    fn classification() {
        let lim = Duration::from_secs(10);
        let low = Duration::from_secs(1);
        assert_eq!(
            classify(Ended::Signaled(libc::SIGSYS), low, lim),
            RestartReason::SeccompViolation
        );
        assert_eq!(
            classify(Ended::Signaled(libc::SIGXCPU), low, lim),
            RestartReason::CpuLimit
        );
        assert_eq!(
            classify(Ended::Signaled(libc::SIGKILL), lim, lim),
            RestartReason::CpuLimit
        );
        assert_eq!(
            classify(Ended::Signaled(libc::SIGKILL), low, lim),
            RestartReason::Crash
        );
        assert_eq!(
            classify(Ended::Signaled(libc::SIGABRT), low, lim),
            RestartReason::MemoryLimit
        );
        assert_eq!(classify(Ended::Exited(101), low, lim), RestartReason::Crash);
        assert_eq!(classify(Ended::Exited(0), low, lim), RestartReason::Crash);
        assert_eq!(Ended::Signaled(libc::SIGSYS).to_string(), "signal SIGSYS");
    }

    #[test]
    fn intensity_backs_off_and_recovers() {
        let mut i = Intensity::default();
        let t0 = Instant::now();
        let p = Duration::from_secs(10);
        let max = Duration::from_secs(5);
        let first = Duration::from_millis(100);
        assert_eq!(i.record(t0, 2, p, first, max), Duration::ZERO);
        assert_eq!(i.record(t0, 2, p, first, max), Duration::ZERO);
        assert_eq!(i.record(t0, 2, p, first, max), Duration::from_millis(100));
        assert_eq!(i.record(t0, 2, p, first, max), Duration::from_millis(200));
        assert!(i.in_backoff(t0, 2, p));
        assert!(!i.in_backoff(t0 + Duration::from_secs(11), 2, p));
    }

    #[test]
    fn quarantine_after_threshold_until_cooldown() {
        let mut q = Quarantine::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        let c = Duration::from_secs(30);
        let p = [1u8; 16];
        assert!(!q.has_records("t", t0, w));
        assert!(!q.record_kill("t", p, t0, 2, w, c));
        assert!(q.has_records("t", t0, w));
        assert!(!q.has_records("t", t0 + Duration::from_secs(61), w));
        assert!(!q.record_kill("t", p, t0, 2, w, c));
        assert!(q.check("t", &p, t0).is_none());
        assert!(q.record_kill("t", p, t0, 2, w, c));
        assert!(q.check("t", &p, t0).is_some());
        // Another owner's same policy is not refused.
        assert!(q.check("u", &p, t0).is_none());
        assert!(!q.has_records("u", t0, w));
        assert_eq!(q.active(t0), 1);
        assert!(q.check("t", &p, t0 + Duration::from_secs(31)).is_none());
    }

    #[test]
    fn tenant_budget_backs_off_its_owner_only() {
        let mut b = TenantBudget::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        let back = Duration::from_secs(30);
        assert!(!b.charge("m", t0, 3, w, back));
        assert!(!b.charge("m", t0, 3, w, back));
        assert!(b.check("m", t0).is_none());
        assert!(b.charge("m", t0, 3, w, back));
        assert_eq!(b.check("m", t0), Some(back));
        assert!(b.check("a", t0).is_none());
        assert_eq!(b.active(t0), 1);
        let later = t0 + Duration::from_secs(31);
        assert!(b.check("m", later).is_none());
        // A fresh budget after the back-off.
        assert!(!b.charge("m", later, 3, w, back));
    }
}
