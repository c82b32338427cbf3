//! Why workers restart, and what the pool does about repeated restarts:
//! the [`RestartReason`] a metric and a log line name (the worker's own exit
//! classification, `omni_worker::process`, plus what only the supervisor
//! knows: its deadline killed the worker, or it recycled it), the OTP-style
//! restart intensity with exponential back-off, the failed-start limit, and
//! the quarantine of policy ids that keep killing workers.

use omni_worker::process::{Reaped, WorkerExit};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Why a worker was replaced (SERVICE.md §1); the label of the restart metric.
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

/// Policy ids that killed workers, and those refused for a cool-down.
#[derive(Debug, Default)]
pub struct Quarantine {
    kills: HashMap<String, Window>,
    until: HashMap<String, Instant>,
}

impl Quarantine {
    /// Records that `policy_id` killed a worker. Returns true when this puts
    /// it in quarantine.
    pub fn record_kill(
        &mut self,
        policy_id: &str,
        now: Instant,
        threshold: u32,
        window: Duration,
        cooldown: Duration,
    ) -> bool {
        // Bound memory: forget old entries when many ids have killed workers.
        if self.kills.len() > 10_000 {
            self.kills.retain(|_, w| w.count(now, window) > 0);
            self.until.retain(|_, t| *t > now);
        }
        let n = self
            .kills
            .entry(policy_id.to_string())
            .or_default()
            .record(now, window);
        if n >= threshold as usize {
            self.kills.remove(policy_id);
            self.until.insert(policy_id.to_string(), now + cooldown);
            true
        } else {
            false
        }
    }

    /// Whether `policy_id` is refused now; how long it stays refused.
    pub fn check(&mut self, policy_id: &str, now: Instant) -> Option<Duration> {
        match self.until.get(policy_id) {
            Some(&t) if t > now => Some(t - now),
            Some(_) => {
                self.until.remove(policy_id);
                None
            }
            None => None,
        }
    }

    pub fn active(&self, now: Instant) -> usize {
        self.until.values().filter(|t| **t > now).count()
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
        assert!(!q.record_kill("p", t0, 2, w, c));
        assert!(q.check("p", t0).is_none());
        assert!(q.record_kill("p", t0, 2, w, c));
        assert!(q.check("p", t0).is_some());
        assert_eq!(q.active(t0), 1);
        assert!(q.check("p", t0 + Duration::from_secs(31)).is_none());
    }
}
