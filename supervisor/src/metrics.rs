//! Counters and histograms of `docs/api.md#observability`, kept once and rendered twice:
//! Prometheus/OpenMetrics text (`/api/metrics-prom`, `/metrics`) from a
//! `prometheus-client` registry, and JSON (`/api/metrics`) from mirrors that
//! are updated by the same calls, so the two cannot disagree. Labels have
//! bounded values only (endpoint names, status codes, reasons, phases):
//! never a path, policy id or client address. The one exception is
//! `omnid_policy_served_revision{tenant,policy}`, one series per stored
//! policy a replica serves (bounded by the store's quotas, removed when the
//! policy is deleted): which revision each replica serves is the point.

use crate::lock::lock;
use crate::restart::RestartReason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    tenant: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Why a connection to a TLS listener ended before HTTP: plain HTTP sent
/// to it, a client certificate refused (unknown CA, revoked, expired,
/// missing where required), any other handshake failure, or no handshake
/// within `http.header_timeout_ms`.
pub const TLS_FAILURES: [&str; 4] = ["plain_http", "client_certificate", "protocol", "timeout"];

/// The phases of one evaluation, in order.
pub const PHASES: [&str; 4] = ["queue", "parse", "check", "eval"];

/// Gauges read at scrape time.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub workers_total: usize,
    pub workers_idle: usize,
    pub workers_busy: usize,
    pub workers_starting: usize,
    pub workers_down: usize,
    pub inflight: usize,
    pub queue_depth: usize,
    pub quarantined_policies: usize,
    pub uptime_sec: u64,
}

impl Snapshot {
    /// The `workers` object of the health and metrics answers.
    pub fn workers_json(&self) -> serde_json::Value {
        serde_json::json!({
            "total": self.workers_total,
            "idle": self.workers_idle,
            "busy": self.workers_busy,
            "starting": self.workers_starting,
            "down": self.workers_down,
        })
    }
}

#[derive(Default)]
struct Mirror {
    requests: BTreeMap<(&'static str, u16), u64>,
    rejected: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
struct SumCount {
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl SumCount {
    fn add(&self, d: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count.load(Ordering::Relaxed),
            "sumUs": self.sum_us.load(Ordering::Relaxed),
        })
    }
}

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Histogram,
    phases: Family<PhaseLabels, Histogram>,
    restarts: Family<ReasonLabels, Counter>,
    workers: Family<StateLabels, Gauge>,
    inflight: Gauge,
    queue_depth: Gauge,
    quarantined: Gauge,
    rate_limited: Counter,
    rejected: Family<CodeLabels, Counter>,
    cache_hits: Counter,
    cache_misses: Counter,
    served: Family<PolicyLabels, Gauge>,
    uptime: Gauge,
    tls_failures: Family<ReasonLabels, Counter>,
    // JSON mirrors.
    mirror: Mutex<Mirror>,
    latency_sc: SumCount,
    phase_sc: [SumCount; 4],
    restarts_by_reason: [AtomicU64; RestartReason::ALL.len()],
    rate_limited_n: AtomicU64,
    cache_hits_n: AtomicU64,
    cache_misses_n: AtomicU64,
    tls_failures_n: [AtomicU64; TLS_FAILURES.len()],
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 50 µs … ~26 s.
    exponential_buckets(0.000_05, 2.5, 15)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("omnid");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "http_requests",
            "HTTP requests by endpoint and status code",
            requests.clone(),
        );
        let latency = Histogram::new(seconds_buckets());
        r.register_with_unit(
            "validate_duration",
            "Time from receipt to response of /api/validate",
            Unit::Seconds,
            latency.clone(),
        );
        let phases = Family::<PhaseLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(seconds_buckets())
        });
        r.register_with_unit(
            "phase_duration",
            "Time per evaluation phase (queue, parse, check, eval)",
            Unit::Seconds,
            phases.clone(),
        );
        let restarts = Family::<ReasonLabels, Counter>::default();
        r.register(
            "worker_restarts",
            "Worker restarts by reason",
            restarts.clone(),
        );
        let workers = Family::<StateLabels, Gauge>::default();
        r.register("workers", "Worker processes by state", workers.clone());
        let inflight = Gauge::default();
        r.register(
            "inflight_requests",
            "Validate requests admitted and not yet answered",
            inflight.clone(),
        );
        let queue_depth = Gauge::default();
        r.register(
            "queue_depth",
            "Requests waiting for a worker",
            queue_depth.clone(),
        );
        let quarantined = Gauge::default();
        r.register(
            "quarantined_policies",
            "Policy ids refused for a cool-down after killing workers",
            quarantined.clone(),
        );
        let rate_limited = Counter::default();
        r.register(
            "rate_limited",
            "Requests refused with 429 rate_limited",
            rate_limited.clone(),
        );
        let rejected = Family::<CodeLabels, Counter>::default();
        r.register(
            "rejected",
            "Requests refused before evaluation, by error code",
            rejected.clone(),
        );
        let cache_hits = Counter::default();
        r.register(
            "policy_cache_hits",
            "Evaluations that used a worker's compiled-policy cache",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        r.register(
            "policy_cache_misses",
            "Evaluations that parsed and checked the policy",
            cache_misses.clone(),
        );
        let served = Family::<PolicyLabels, Gauge>::default();
        r.register(
            "policy_served_revision",
            "The revision of each stored policy this replica evaluates now",
            served.clone(),
        );
        let uptime = Gauge::default();
        r.register_with_unit(
            "uptime",
            "Time since the service started",
            Unit::Seconds,
            uptime.clone(),
        );
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "Build version of omnid", build);
        let tls_failures = Family::<ReasonLabels, Counter>::default();
        r.register(
            "tls_handshake_failures",
            "Connections to a TLS listener that ended before HTTP, by reason",
            tls_failures.clone(),
        );
        for reason in TLS_FAILURES {
            let _ = tls_failures.get_or_create(&ReasonLabels { reason });
        }
        // Make every reason and state visible from the first scrape.
        for reason in RestartReason::ALL {
            let _ = restarts.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        for phase in PHASES {
            let _ = phases.get_or_create(&PhaseLabels { phase });
        }
        Metrics {
            registry: Mutex::new(r),
            requests,
            latency,
            phases,
            restarts,
            workers,
            inflight,
            queue_depth,
            quarantined,
            rate_limited,
            rejected,
            cache_hits,
            cache_misses,
            served,
            uptime,
            tls_failures,
            mirror: Mutex::new(Mirror::default()),
            latency_sc: SumCount::default(),
            phase_sc: Default::default(),
            restarts_by_reason: Default::default(),
            rate_limited_n: AtomicU64::new(0),
            cache_hits_n: AtomicU64::new(0),
            cache_misses_n: AtomicU64::new(0),
            tls_failures_n: Default::default(),
        }
    }

    fn mirror(&self) -> std::sync::MutexGuard<'_, Mirror> {
        lock(&self.mirror)
    }

    pub fn request(&self, endpoint: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, status })
            .inc();
        *self
            .mirror()
            .requests
            .entry((endpoint, status))
            .or_default() += 1;
    }

    pub fn validate_latency(&self, d: Duration) {
        self.latency.observe(d.as_secs_f64());
        self.latency_sc.add(d);
    }

    /// `phase` is one of [`PHASES`].
    pub fn phase(&self, phase: &'static str, d: Duration) {
        self.phases
            .get_or_create(&PhaseLabels { phase })
            .observe(d.as_secs_f64());
        if let Some(i) = PHASES.iter().position(|p| *p == phase) {
            self.phase_sc[i].add(d);
        }
    }

    pub fn restart(&self, reason: RestartReason) {
        self.restarts
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
        if let Some(i) = RestartReason::ALL.iter().position(|r| *r == reason) {
            self.restarts_by_reason[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rate_limited(&self) {
        self.rate_limited.inc();
        self.rate_limited_n.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, code: &'static str) {
        self.rejected.get_or_create(&CodeLabels { code }).inc();
        *self.mirror().rejected.entry(code).or_default() += 1;
    }

    /// `reason` is one of [`TLS_FAILURES`].
    pub fn tls_failure(&self, reason: &'static str) {
        self.tls_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
        if let Some(i) = TLS_FAILURES.iter().position(|r| *r == reason) {
            self.tls_failures_n[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn cache(&self, hit: bool) {
        if hit {
            self.cache_hits.inc();
            self.cache_hits_n.fetch_add(1, Ordering::Relaxed);
        } else {
            self.cache_misses.inc();
            self.cache_misses_n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The revision of `policy` of `tenant` this replica serves (`None`:
    /// none any more; its series goes).
    pub fn served_revision(&self, tenant: &str, policy: &str, revision: Option<u64>) {
        let labels = PolicyLabels {
            tenant: tenant.to_string(),
            policy: policy.to_string(),
        };
        match revision {
            Some(n) => {
                self.served
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            None => {
                self.served.remove(&labels);
            }
        }
    }

    fn set_gauges(&self, s: &Snapshot) {
        for (state, n) in [
            ("idle", s.workers_idle),
            ("busy", s.workers_busy),
            ("starting", s.workers_starting),
            ("down", s.workers_down),
        ] {
            self.workers
                .get_or_create(&StateLabels { state })
                .set(n as i64);
        }
        self.inflight.set(s.inflight as i64);
        self.queue_depth.set(s.queue_depth as i64);
        self.quarantined.set(s.quarantined_policies as i64);
        self.uptime.set(s.uptime_sec as i64);
    }

    /// The Prometheus text exposition (format 0.0.4), which every scraper
    /// and `promtool check metrics` read. prometheus-client writes
    /// OpenMetrics, whose counter families are named without `_total` and
    /// which adds `# UNIT` and `# EOF` lines; [`openmetrics_to_prometheus`]
    /// turns it into the classic format.
    pub fn render_prometheus(&self, s: &Snapshot) -> String {
        let reg = lock(&self.registry);
        self.set_gauges(s);
        let mut out = String::with_capacity(8 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
            return String::new();
        }
        openmetrics_to_prometheus(&out)
    }

    /// The same counters as JSON.
    pub fn render_json(&self, s: &Snapshot) -> serde_json::Value {
        let m = self.mirror();
        let mut by_endpoint: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        for ((ep, status), n) in &m.requests {
            by_endpoint
                .entry(ep)
                .or_default()
                .insert(status.to_string(), *n);
        }
        let restarts: serde_json::Map<String, serde_json::Value> = RestartReason::ALL
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r.as_str().to_string(),
                    self.restarts_by_reason[i].load(Ordering::Relaxed).into(),
                )
            })
            .collect();
        let phases: serde_json::Map<String, serde_json::Value> = PHASES
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), self.phase_sc[i].json()))
            .collect();
        serde_json::json!({
            "uptimeSec": s.uptime_sec,
            "buildVersion": env!("CARGO_PKG_VERSION"),
            "requests": by_endpoint,
            "validateLatency": self.latency_sc.json(),
            "phases": phases,
            "workerRestarts": restarts,
            "workers": s.workers_json(),
            "inflight": s.inflight,
            "queueDepth": s.queue_depth,
            "quarantinedPolicies": s.quarantined_policies,
            "rateLimited": self.rate_limited_n.load(Ordering::Relaxed),
            "rejected": m.rejected,
            "cache": {
                "hits": self.cache_hits_n.load(Ordering::Relaxed),
                "misses": self.cache_misses_n.load(Ordering::Relaxed),
            },
            "tlsHandshakeFailures": TLS_FAILURES
                .iter()
                .enumerate()
                .map(|(i, r)| (r.to_string(), self.tls_failures_n[i].load(Ordering::Relaxed).into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
        })
    }
}

/// Rewrites OpenMetrics text as Prometheus 0.0.4 text: counter families
/// get their `_total` name in `# HELP`/`# TYPE`, and `# UNIT`/`# EOF` go.
pub fn openmetrics_to_prometheus(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        if let Some((kind, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                out.push_str(kind);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_formats() {
        let m = Metrics::new();
        m.request("validate", 200);
        m.phase("eval", Duration::from_micros(30));
        m.restart(RestartReason::Timeout);
        m.cache(true);
        m.tls_failure("plain_http");
        let s = Snapshot {
            workers_total: 2,
            workers_idle: 2,
            ..Snapshot::default()
        };
        let text = m.render_prometheus(&s);
        assert!(text.contains("omnid_http_requests_total{endpoint=\"validate\",status=\"200\"} 1"));
        assert!(text.contains("omnid_worker_restarts_total{reason=\"timeout\"} 1"));
        assert!(text.contains("omnid_phase_duration_seconds_bucket"));
        assert!(text.contains("# TYPE omnid_http_requests_total counter"));
        assert!(!text.contains("# EOF"));
        assert!(!text.contains("# UNIT"));
        let j = m.render_json(&s);
        assert_eq!(j["requests"]["validate"]["200"], 1);
        assert_eq!(j["workerRestarts"]["timeout"], 1);
        assert_eq!(j["cache"]["hits"], 1);
        assert_eq!(j["tlsHandshakeFailures"]["plain_http"], 1);
        assert_eq!(j["tlsHandshakeFailures"]["timeout"], 0);
        assert!(text.contains("omnid_tls_handshake_failures_total{reason=\"plain_http\"} 1"));
    }

    #[test]
    fn served_revisions_are_labelled_by_tenant_and_policy_and_go_on_delete() {
        let m = Metrics::new();
        m.served_revision("acme", "door.main", Some(3));
        m.served_revision("beta", "x", Some(1));
        m.served_revision("beta", "x", Some(2));
        let text = m.render_prometheus(&Snapshot::default());
        assert!(text.contains("# TYPE omnid_policy_served_revision gauge"));
        assert!(
            text.contains("omnid_policy_served_revision{tenant=\"acme\",policy=\"door.main\"} 3")
        );
        assert!(text.contains("omnid_policy_served_revision{tenant=\"beta\",policy=\"x\"} 2"));
        m.served_revision("acme", "door.main", None);
        let text = m.render_prometheus(&Snapshot::default());
        assert!(!text.contains("door.main"), "{text}");
    }
}
