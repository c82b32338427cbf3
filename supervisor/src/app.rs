//! The running service's shared state: the live settings (swapped whole on
//! SIGHUP), the pool, the registry of stored policies, the admission state
//! and the metrics, plus the per-tenant view of the limits.

use crate::auth::{CertIdentities, TokenTable};
use crate::config::{Config, TenantSection};
use crate::limits::{Inflight, RateLimiter};
use crate::lock;
use crate::metrics::{Metrics, Snapshot};
use crate::pool::WorkerPool;
use crate::registry::Registry;
use crate::tls::TlsMaterial;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Everything that can change on reload, swapped as one value.
pub struct Settings {
    pub config: Arc<Config>,
    pub tokens: TokenTable,
    /// Client-certificate identities → tenants (auth.mode mtls/both).
    pub cert_ids: CertIdentities,
    /// The TLS material new connections are accepted with (TLS on).
    pub tls: Option<Arc<TlsMaterial>>,
    pub trusted_proxies: Vec<IpAddr>,
}

impl Settings {
    pub fn new(config: Arc<Config>, tokens: TokenTable, tls: Option<Arc<TlsMaterial>>) -> Settings {
        let trusted_proxies = config
            .rate_limit
            .trusted_proxies
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        Settings {
            cert_ids: CertIdentities::new(&config),
            config,
            tokens,
            tls,
            trusted_proxies,
        }
    }

    /// The limits that apply to a request of `tenant` (tenant values can
    /// only lower the global ones, except the rate, which a tenant may have
    /// set either way).
    pub fn effective(&self, tenant: Option<&str>) -> Effective {
        let c = &self.config;
        let default_tenant = TenantSection::default();
        let t = tenant
            .and_then(|n| c.tenants.get(n))
            .unwrap_or(&default_tenant);
        let low = |global: u64, t: Option<u64>| t.map_or(global, |v| v.min(global));
        let lowu = |global: usize, t: Option<usize>| t.map_or(global, |v| v.min(global));
        Effective {
            timeout: Duration::from_millis(low(c.worker.timeout_ms, t.timeout_ms)),
            max_body: lowu(c.limits.max_body_bytes, t.max_body_bytes),
            language: c.limits.limits().lowered_by(&t.limit_overrides()),
            rate: t.rate.unwrap_or(c.rate_limit.rate),
            burst: t.burst.unwrap_or(c.rate_limit.burst),
            max_inflight: lowu(c.pool.max_inflight, t.max_inflight),
        }
    }
}

/// Limits for one request: the service's own, and the language's, which
/// travel whole to the worker.
#[derive(Debug, Clone, Copy)]
pub struct Effective {
    pub timeout: Duration,
    pub max_body: usize,
    pub language: omni::Limits,
    pub rate: f64,
    pub burst: f64,
    pub max_inflight: usize,
}

pub struct App {
    settings: RwLock<Arc<Settings>>,
    pub pool: WorkerPool,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub limiter: RateLimiter,
    pub inflight: Inflight,
    draining: AtomicBool,
    pub started: Instant,
    pub engine: String,
}

impl App {
    pub fn new(
        settings: Settings,
        pool: WorkerPool,
        registry: Registry,
        metrics: Arc<Metrics>,
    ) -> App {
        App {
            settings: RwLock::new(Arc::new(settings)),
            pool,
            registry,
            metrics,
            limiter: RateLimiter::new(),
            inflight: Inflight::default(),
            draining: AtomicBool::new(false),
            started: Instant::now(),
            engine: omni::engine(),
        }
    }

    pub fn settings(&self) -> Arc<Settings> {
        lock::read(&self.settings).clone()
    }

    pub fn set_settings(&self, s: Settings) {
        *lock::write(&self.settings) = Arc::new(s);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn snapshot(&self) -> Snapshot {
        let (idle, busy, starting, down) = self.pool.states();
        Snapshot {
            workers_total: self.pool.size(),
            workers_idle: idle,
            workers_busy: busy,
            workers_starting: starting,
            workers_down: down,
            inflight: self.inflight.current(),
            queue_depth: self.pool.queue_depth(),
            quarantined_policies: self.pool.quarantined_count(),
            uptime_sec: self.started.elapsed().as_secs(),
        }
    }
}
