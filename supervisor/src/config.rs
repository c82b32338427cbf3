//! The service configuration (`docs/operations.md#configure`): one TOML file with
//! `version = 1`, a default for every key, `OMNID_*` environment overrides
//! and strict validation. Unknown keys are errors, and every error names the
//! key (or the environment variable) it is about.
//!
//! Environment overrides: `OMNID_` + the upper-snake key path, e.g.
//! `OMNID_LISTEN`, `OMNID_WORKERS`, `OMNID_LIMITS_FUEL`,
//! `OMNID_WORKER_TIMEOUT_MS`, `OMNID_RATE_LIMIT_RATE`. Lists are
//! comma-separated (`OMNID_FEATURES_MODULES=math,str`). Tenants can only be
//! set in the file. The store: `OMNID_STORE_PATH`, `OMNID_STORE_URL` (keep
//! a password out of the file this way).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The only file format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// Why a configuration could not be used. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("configuration file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("`{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    On,
    Off,
}

/// Whether a worker process may serve more than one tenant
/// (`pool.tenant_isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantIsolation {
    /// Any worker serves any tenant, one request after another.
    Shared,
    /// A worker serves one tenant for its whole life (anonymous callers are
    /// the one tenant `-`); another tenant's request goes to a fresh worker.
    Dedicated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// File format version; must be 1.
    pub version: u32,
    /// Where the service listens: a TCP address (port 0 picks a free port,
    /// logged at start) or `unix:/absolute/path`. Ignored when systemd
    /// passes sockets (socket activation).
    pub listen: String,
    /// A unix socket's permission bits, as an octal string.
    pub listen_mode: String,
    /// A unix socket's owner and group (names or numbers; empty: omnid's own).
    pub listen_owner: String,
    pub listen_group: String,
    /// A second, plain-HTTP listener for probes and scrapes that serves only
    /// `/healthz`, `/readyz` and `/metrics` (empty: none). Meant for
    /// loopback or a port only the kubelet and Prometheus reach.
    pub probe_listen: String,
    /// Worker processes (default: the number of CPUs).
    pub workers: usize,
    /// `"on"` (default) or `"off"`; off logs a warning at every start.
    pub sandbox: SandboxMode,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout_ms: u64,
    /// Serve the browser playground at `GET /` (turn it off in production).
    pub playground: bool,
    pub worker: WorkerSection,
    pub pool: PoolSection,
    pub limits: LimitsSection,
    pub features: omni::Features,
    pub rate_limit: RateLimitSection,
    pub auth: AuthSection,
    pub tls: TlsSection,
    pub http: HttpSection,
    pub log: LogSection,
    pub store: StoreSection,
    /// Per-tenant settings, by tenant name (as in the tokens file).
    pub tenants: BTreeMap<String, TenantSection>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSection {
    /// Wall-clock deadline of one evaluation.
    pub timeout_ms: u64,
    /// `RLIMIT_AS` of a worker.
    pub memory_mib: u64,
    /// CPU seconds a worker may use before it is recycled (`RLIMIT_CPU` backstop).
    pub cpu_seconds: u64,
    /// Requests a worker serves before it is recycled (with jitter).
    pub max_requests: u64,
    /// Unprivileged user and group workers switch to when started as root.
    pub user: String,
    pub group: String,
    /// Compiled-policy cache of each worker.
    pub cache_entries: usize,
    pub cache_mib: usize,
    /// `RLIMIT_NOFILE` of a worker.
    pub max_open_files: u64,
    /// Try new network and IPC namespaces.
    pub namespaces: bool,
    /// How long a starting worker may take to report ready.
    pub start_timeout_ms: u64,
    /// After a reply, a busy worker polls up to this long for the next
    /// request before it sleeps (0: never polls). Off by default: on a
    /// machine where workers and the HTTP threads share few cores, the
    /// polling takes CPU time from them (see docs/performance.md).
    pub poll_before_block_us: u64,
    /// `[first, last]` (inclusive): in dedicated mode each tenant's workers
    /// run under their own uid (and gid of the same number) from this range
    /// instead of `user`/`group`. Needs omnid started as root. File only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid_range: Option<[u32; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSection {
    /// Bounded queue between the HTTP side and the workers.
    pub queue: usize,
    /// Requests admitted at once (queued + running); past it, 503.
    pub max_inflight: usize,
    /// More than `restart_intensity` restarts in `restart_period_s` → back off.
    pub restart_intensity: u32,
    pub restart_period_s: u64,
    /// First and longest back-off between restarts while over the intensity
    /// (it doubles from the first to the longest).
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// More than this many failed worker starts in `failed_start_period_s`
    /// stops the service (exit 1).
    pub max_failed_starts: u32,
    pub failed_start_period_s: u64,
    /// A policy that kills `quarantine_threshold` workers within
    /// `quarantine_window_s` is refused for `quarantine_cooldown_s`.
    pub quarantine_threshold: u32,
    pub quarantine_window_s: u64,
    pub quarantine_cooldown_s: u64,
    /// Worker deaths a tenant's (or an anonymous client's) requests may
    /// cause within `tenant_failure_window_s`; at the budget, its requests
    /// are refused (`tenant_backoff`) for `tenant_backoff_s`.
    pub tenant_failure_budget: u32,
    pub tenant_failure_window_s: u64,
    pub tenant_backoff_s: u64,
    /// Jobs one tenant (or anonymous client) may have waiting in the queue.
    pub tenant_queue: usize,
    /// Recycling happens after `max_requests` minus up to this percentage.
    pub recycle_jitter_percent: u64,
    /// Requests in flight on one worker when no worker is idle: the next
    /// one waits in the worker's socket, so a loaded worker does not sleep
    /// between requests. 1 turns this off.
    pub pipeline_depth: usize,
    /// Only a policy whose last request in the slot took less than this has
    /// requests queued behind it: a slow one would hold them up.
    pub pipeline_behind_us: u64,
    /// When a request is the only one in flight, poll for its reply for up
    /// to twice the worker's last service time, if that was at most this
    /// long, before sleeping (0: never).
    pub reply_poll_max_us: u64,
    /// `"shared"` or `"dedicated"` (see [`TenantIsolation`]).
    pub tenant_isolation: TenantIsolation,
    /// Dedicated mode: workers started ahead and bound to no tenant yet, so
    /// a tenant without a worker gets one without waiting for a start.
    pub spare_workers: usize,
    /// Dedicated mode: a worker bound to a tenant and idle this long is
    /// retired (a fresh, unbound one takes its slot).
    pub tenant_idle_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Request body (checked on Content-Length and while reading).
    pub max_body_bytes: usize,
    /// The policy text (`code`).
    pub max_code_bytes: usize,
    /// The context JSON.
    pub max_context_bytes: usize,
    pub max_context_depth: usize,
    pub max_context_items: usize,
    /// `docs/language.md#the-decision` evaluation limits.
    pub fuel: u64,
    pub max_loop_iterations: u64,
    pub max_string_bytes: usize,
    pub max_list_len: usize,
    pub max_expr_depth: usize,
    pub max_block_depth: usize,
    /// Patterns (`matches` calls) in one policy.
    pub max_regex_patterns: usize,
    /// Bytes of all the patterns of one policy.
    pub max_regex_bytes: usize,
    /// Compile work of one policy's distinct patterns (units of ~0.3 µs).
    pub regex_compile_budget: u64,
    /// Strict profile unless a request asks otherwise.
    pub strict: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    pub enabled: bool,
    /// Sustained requests per second per client (tenant, or address).
    pub rate: f64,
    /// Bucket size: requests allowed in a burst.
    pub burst: f64,
    /// Peers whose `X-Forwarded-For` is believed (exact IP addresses).
    pub trusted_proxies: Vec<String>,
    /// Most clients tracked at once (bounds memory).
    pub max_clients: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    pub enabled: bool,
    /// Which credentials identify a tenant (with `enabled = true`).
    pub mode: AuthMode,
    /// Lines `tenant sha256hex-of-token`; `#` comments.
    pub tokens_file: String,
}

/// How a caller proves its tenant (`auth.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A bearer token from the tokens file.
    #[default]
    Token,
    /// A client certificate, verified in the TLS handshake (required there).
    Mtls,
    /// Either: the token when an `Authorization` header is sent, else the
    /// client certificate (optional in the handshake).
    Both,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Token => "token",
            AuthMode::Mtls => "mtls",
            AuthMode::Both => "both",
        }
    }

    pub fn uses_tokens(self) -> bool {
        matches!(self, AuthMode::Token | AuthMode::Both)
    }

    pub fn uses_certificates(self) -> bool {
        matches!(self, AuthMode::Mtls | AuthMode::Both)
    }
}

/// TLS on the service listener(s): on when `cert_file` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM: the server certificate, then its intermediates.
    pub cert_file: String,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM: the CAs that issue client certificates (auth.mode mtls/both).
    pub client_ca_file: String,
    /// PEM: certificate revocation lists of those CAs (optional).
    pub crl_file: String,
    /// Which part of a client certificate names its tenant.
    pub client_identity: ClientIdentity,
}

impl TlsSection {
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }
}

/// The part of a client certificate that identifies it (`tls.client_identity`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientIdentity {
    /// A URI subject alternative name (e.g. a SPIFFE id).
    #[default]
    SanUri,
    /// A DNS subject alternative name.
    SanDns,
    /// The subject's common name.
    Cn,
}

impl ClientIdentity {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientIdentity::SanUri => "san_uri",
            ClientIdentity::SanDns => "san_dns",
            ClientIdentity::Cn => "cn",
        }
    }
}

/// Where the service listens (`listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// The prefix of a unix socket path in `listen`.
pub const UNIX_PREFIX: &str = "unix:";

impl ListenAddr {
    pub fn parse(s: &str) -> Result<ListenAddr, String> {
        if let Some(path) = s.strip_prefix(UNIX_PREFIX) {
            if !path.starts_with('/') {
                return Err(
                    "a unix socket needs an absolute path, like unix:/run/omnid/omnid.sock".into(),
                );
            }
            // sun_path holds 108 bytes including the terminating NUL.
            if path.len() > 107 {
                return Err("a unix socket path is at most 107 bytes long".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>().map(ListenAddr::Tcp).map_err(|_| {
            "expected an address like 127.0.0.1:8080 or unix:/run/omnid/omnid.sock".into()
        })
    }
}

/// `listen_mode`: octal permission bits (at most 0777).
pub fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Time to receive a request's headers.
    pub header_timeout_ms: u64,
    /// Time to receive a request's body.
    pub body_timeout_ms: u64,
    /// Open connections at once; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// Open connections at once from one client address (trusted proxies
    /// excepted); more are closed at accept, before auth.
    pub max_connections_per_client: usize,
    /// Time a response may wait for the client to read it (no byte of it
    /// taken by the socket); then the connection is closed.
    pub write_timeout_ms: u64,
}

/// `[store]`: where named policies are kept (`docs/operations.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// The SQLite file (relative paths: to the working directory). Used
    /// when `url` is empty.
    pub path: String,
    /// A `postgres://` URL; when set, PostgreSQL is used instead of `path`.
    pub url: String,
    /// Database connections kept open (PostgreSQL), or idle reading
    /// connections (SQLite).
    pub pool_size: usize,
    /// How often a replica asks the store for changes when it has no
    /// wake-up (SQLite, or PostgreSQL while LISTEN is down); also the pause
    /// before reconnecting the LISTEN connection.
    pub poll_interval_ms: u64,
    /// Bound on establishing a database connection: with the database
    /// down, a call fails with `store_unavailable` within about this long.
    pub connect_timeout_ms: u64,
    /// Default quotas; `[tenants.NAME]` can lower them.
    pub max_policies_per_tenant: u64,
    pub max_revisions_per_policy: u64,
    /// Bytes of all the stored revision texts of a tenant.
    pub max_bytes_per_tenant: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `error`, `warn`, `info`, `debug`, `trace` (or an EnvFilter directive).
    pub level: String,
    pub format: LogFormat,
}

/// A tenant's settings; each limit can only lower the global one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSection {
    /// A disabled tenant's tokens are answered 403.
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_inflight: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_code_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_context_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_loop_iterations: Option<u64>,
    /// Store quotas (each can only lower `store.max_*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_policies: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_revisions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_stored_bytes: Option<u64>,
    /// Client-certificate identities (`tls.client_identity`) that
    /// authenticate as this tenant; a certificate whose identity equals the
    /// tenant's name does too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_identities: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CONFIG_VERSION,
            listen: "127.0.0.1:8080".into(),
            listen_mode: "0660".into(),
            listen_owner: String::new(),
            listen_group: String::new(),
            probe_listen: String::new(),
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            sandbox: SandboxMode::On,
            drain_timeout_ms: 30_000,
            playground: true,
            worker: WorkerSection::default(),
            pool: PoolSection::default(),
            limits: LimitsSection::default(),
            features: omni::Features::default(),
            rate_limit: RateLimitSection::default(),
            auth: AuthSection::default(),
            tls: TlsSection::default(),
            http: HttpSection::default(),
            log: LogSection::default(),
            store: StoreSection::default(),
            tenants: BTreeMap::new(),
        }
    }
}

impl Default for WorkerSection {
    fn default() -> Self {
        let sb = omni_worker::SandboxConfig::default();
        let wc = omni_worker::WorkerConfig::default();
        WorkerSection {
            timeout_ms: 250,
            memory_mib: 256,
            cpu_seconds: 10,
            max_requests: 10_000,
            user: sb.user,
            group: sb.group,
            cache_entries: wc.cache_entries,
            cache_mib: wc.cache_bytes >> 20,
            max_open_files: sb.max_open_files,
            namespaces: sb.namespaces,
            start_timeout_ms: 5_000,
            poll_before_block_us: 0,
            uid_range: None,
        }
    }
}

impl Default for PoolSection {
    fn default() -> Self {
        PoolSection {
            queue: 1024,
            max_inflight: 2048,
            restart_intensity: 20,
            restart_period_s: 10,
            backoff_initial_ms: 100,
            backoff_max_ms: 5_000,
            max_failed_starts: 5,
            failed_start_period_s: 10,
            quarantine_threshold: 3,
            quarantine_window_s: 60,
            quarantine_cooldown_s: 300,
            tenant_failure_budget: 5,
            tenant_failure_window_s: 60,
            tenant_backoff_s: 60,
            tenant_queue: 256,
            recycle_jitter_percent: 10,
            pipeline_depth: 2,
            pipeline_behind_us: 2_000,
            reply_poll_max_us: 100,
            tenant_isolation: TenantIsolation::Shared,
            spare_workers: 1,
            tenant_idle_s: 60,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        let omni::Limits {
            policy_bytes,
            context,
            nesting,
            regex,
            eval,
        } = omni::Limits::standard();
        LimitsSection {
            max_body_bytes: 256 * 1024,
            max_code_bytes: policy_bytes,
            max_context_bytes: context.max_bytes,
            max_context_depth: context.max_depth,
            max_context_items: context.max_items,
            fuel: eval.fuel,
            max_loop_iterations: eval.max_loop_iterations,
            max_string_bytes: eval.max_string_bytes,
            max_list_len: eval.max_list_len,
            max_expr_depth: nesting.expr_depth,
            max_block_depth: nesting.block_depth,
            max_regex_patterns: regex.max_patterns,
            max_regex_bytes: regex.max_pattern_bytes,
            regex_compile_budget: regex.compile_budget,
            strict: true,
        }
    }
}

impl LimitsSection {
    /// The language's limits as configured (the section's keys lowered
    /// once into the value the worker enforces).
    pub fn limits(&self) -> omni::Limits {
        omni::Limits {
            policy_bytes: self.max_code_bytes,
            context: omni::ContextLimits {
                max_bytes: self.max_context_bytes,
                max_depth: self.max_context_depth,
                max_items: self.max_context_items,
            },
            nesting: omni::NestingLimits {
                expr_depth: self.max_expr_depth,
                block_depth: self.max_block_depth,
            },
            regex: omni::RegexLimits {
                max_patterns: self.max_regex_patterns,
                max_pattern_bytes: self.max_regex_bytes,
                compile_budget: self.regex_compile_budget,
            },
            eval: omni::EvalLimits {
                fuel: self.fuel,
                max_loop_iterations: self.max_loop_iterations,
                max_string_bytes: self.max_string_bytes,
                max_list_len: self.max_list_len,
            },
        }
    }
}

impl TenantSection {
    /// The tenant's own language limits (each can only lower the global one).
    pub fn limit_overrides(&self) -> omni::LimitOverrides {
        omni::LimitOverrides {
            policy_bytes: self.max_code_bytes,
            context_bytes: self.max_context_bytes,
            fuel: self.fuel,
            max_loop_iterations: self.max_loop_iterations,
        }
    }
}

impl Default for RateLimitSection {
    fn default() -> Self {
        RateLimitSection {
            enabled: true,
            // High enough that one client (a person's benchmark, or one
            // application server per tenant) is not throttled on a replica
            // that tops out near 22,000 req/s on 2 cores; still a backstop
            // against one address taking all of a larger replica.
            rate: 10_000.0,
            burst: 20_000.0,
            trusted_proxies: Vec::new(),
            max_clients: 100_000,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            max_connections: 1024,
            max_connections_per_client: 128,
            write_timeout_ms: 10_000,
        }
    }
}

/// The built-in SQLite file: relative, so `cargo run` works anywhere; the
/// packaged configuration puts it under `/var/lib/omnid`.
pub const DEFAULT_STORE_PATH: &str = "omnid-store.db";

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            path: DEFAULT_STORE_PATH.into(),
            url: String::new(),
            pool_size: 8,
            poll_interval_ms: 500,
            connect_timeout_ms: 5_000,
            max_policies_per_tenant: 1_000,
            max_revisions_per_policy: 10_000,
            max_bytes_per_tenant: 100 * 1024 * 1024,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

impl Default for TenantSection {
    fn default() -> Self {
        TenantSection {
            enabled: true,
            rate: None,
            burst: None,
            max_inflight: None,
            timeout_ms: None,
            max_body_bytes: None,
            max_code_bytes: None,
            max_context_bytes: None,
            fuel: None,
            max_loop_iterations: None,
            max_policies: None,
            max_revisions: None,
            max_stored_bytes: None,
            client_identities: Vec::new(),
        }
    }
}

/// Environment variables that are not configuration keys but are ours.
const ENV_CONFIG_PATH: &str = "OMNID_CONFIG";

/// Loads the configuration: the file (if any), then `OMNID_*` overrides, then
/// validation. `env` is passed in so tests and reloads see the same rules.
pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let path = path.map(Path::to_path_buf).or_else(|| {
        env.iter()
            .find(|(k, _)| k == ENV_CONFIG_PATH)
            .map(|(_, v)| PathBuf::from(v))
    });
    let (mut table, name) = match &path {
        Some(p) => {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
                path: name.clone(),
                reason: e.kind().to_string(),
            })?;
            // Deserialize the file alone first: its errors carry a line, and
            // the path names the key.
            let de = toml::Deserializer::parse(&text).map_err(|e| ConfigError::Parse {
                path: name.clone(),
                message: e.message().to_string() + &location(&text, e.span()),
            })?;
            serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner();
                ConfigError::Parse {
                    path: name.clone(),
                    message: format!(
                        "`{key}`: {}{}",
                        inner.message(),
                        location(&text, inner.span())
                    ),
                }
            })?;
            let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: name.clone(),
                message: e.message().to_string(),
            })?;
            (table, name)
        }
        None => (toml::Table::new(), "(defaults)".to_string()),
    };
    apply_env(&mut table, env)?;
    let config: Config =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Parse {
                path: name.clone(),
                message: format!("`{key}`: {}", e.inner().message()),
            }
        })?;
    validate(&config)?;
    Ok(config)
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let upto = &text[..span.start.min(text.len())];
    let line = upto.matches('\n').count() + 1;
    format!(" (line {line})")
}

/// Every leaf key of the default configuration, as `(path, default value)`.
fn leaf_keys() -> Vec<(Vec<String>, toml::Value)> {
    let mut out = Vec::new();
    let Ok(toml::Value::Table(t)) = toml::Value::try_from(Config::default()) else {
        return out;
    };
    fn walk(prefix: &mut Vec<String>, t: &toml::Table, out: &mut Vec<(Vec<String>, toml::Value)>) {
        for (k, v) in t {
            // Tenants are file-only; the format version is not an override.
            if prefix.is_empty() && (k == "tenants" || k == "version") {
                continue;
            }
            prefix.push(k.clone());
            match v {
                toml::Value::Table(sub) => walk(prefix, sub, out),
                other => out.push((prefix.clone(), other.clone())),
            }
            prefix.pop();
        }
    }
    walk(&mut Vec::new(), &t, &mut out);
    out
}

/// The environment variable that overrides a key path.
pub fn env_name(path: &[String]) -> String {
    format!("OMNID_{}", path.join("_").to_uppercase())
}

/// All `(environment variable, key path)` pairs (the docs list them all).
#[cfg(test)]
pub fn env_overrides() -> Vec<(String, String)> {
    leaf_keys()
        .into_iter()
        .map(|(p, _)| (env_name(&p), p.join(".")))
        .collect()
}

fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    let keys = leaf_keys();
    for (var, raw) in env {
        if !var.starts_with("OMNID_") || var == ENV_CONFIG_PATH {
            continue;
        }
        let Some((path, default)) = keys.iter().find(|(p, _)| env_name(p) == *var) else {
            return Err(ConfigError::Env {
                var: var.clone(),
                message: "not a configuration key".into(),
            });
        };
        let env_err = |m: &str| ConfigError::Env {
            var: var.clone(),
            message: m.to_string(),
        };
        let value = match default {
            toml::Value::String(_) => toml::Value::String(raw.clone()),
            toml::Value::Integer(_) => toml::Value::Integer(
                raw.trim()
                    .parse()
                    .map_err(|_| env_err("expected an integer"))?,
            ),
            toml::Value::Float(_) => toml::Value::Float(
                raw.trim()
                    .parse()
                    .map_err(|_| env_err("expected a number"))?,
            ),
            toml::Value::Boolean(_) => {
                toml::Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => return Err(env_err("expected true or false")),
                })
            }
            toml::Value::Array(_) => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_string()))
                    .collect(),
            ),
            _ => return Err(env_err("cannot be set from the environment")),
        };
        let mut t = &mut *table;
        for part in &path[..path.len() - 1] {
            let entry = t
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = match entry {
                toml::Value::Table(sub) => sub,
                _ => return Err(env_err("conflicts with a non-table key in the file")),
            };
        }
        t.insert(path[path.len() - 1].clone(), value);
    }
    Ok(())
}

/// Checks what types alone cannot.
pub fn validate(c: &Config) -> Result<(), ConfigError> {
    if c.version != CONFIG_VERSION {
        return Err(invalid(
            "version",
            format!(
                "unsupported version {} (this build reads version 1)",
                c.version
            ),
        ));
    }
    ListenAddr::parse(&c.listen).map_err(|m| invalid("listen", m))?;
    if parse_mode(&c.listen_mode).is_none() {
        return Err(invalid(
            "listen_mode",
            "expected octal permission bits like \"0660\"",
        ));
    }
    if !c.probe_listen.is_empty() {
        let probe = c.probe_listen.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "probe_listen",
                "expected an address like 127.0.0.1:8081 (or empty for none)",
            )
        })?;
        if ListenAddr::parse(&c.listen) == Ok(ListenAddr::Tcp(probe)) && probe.port() != 0 {
            return Err(invalid("probe_listen", "must differ from listen"));
        }
    }
    let positive = |key: &str, v: u64| {
        if v == 0 {
            Err(invalid(key, "must be greater than 0"))
        } else {
            Ok(())
        }
    };
    positive("workers", c.workers as u64)?;
    if c.workers > 256 {
        return Err(invalid("workers", "must be at most 256"));
    }
    positive("drain_timeout_ms", c.drain_timeout_ms)?;
    positive("worker.timeout_ms", c.worker.timeout_ms)?;
    positive("worker.memory_mib", c.worker.memory_mib)?;
    positive("worker.cpu_seconds", c.worker.cpu_seconds)?;
    positive("worker.max_requests", c.worker.max_requests)?;
    positive("worker.cache_entries", c.worker.cache_entries as u64)?;
    positive("worker.max_open_files", c.worker.max_open_files)?;
    positive("worker.start_timeout_ms", c.worker.start_timeout_ms)?;
    if c.worker.poll_before_block_us > 1000 {
        return Err(invalid(
            "worker.poll_before_block_us",
            "must be at most 1000",
        ));
    }
    if c.pool.pipeline_behind_us > 1_000_000 {
        return Err(invalid(
            "pool.pipeline_behind_us",
            "must be at most 1000000",
        ));
    }
    if c.pool.reply_poll_max_us > 1000 {
        return Err(invalid("pool.reply_poll_max_us", "must be at most 1000"));
    }
    if c.worker.user.is_empty() {
        return Err(invalid("worker.user", "must not be empty"));
    }
    if c.worker.group.is_empty() {
        return Err(invalid("worker.group", "must not be empty"));
    }
    positive("pool.queue", c.pool.queue as u64)?;
    positive("pool.max_inflight", c.pool.max_inflight as u64)?;
    positive("pool.restart_intensity", c.pool.restart_intensity as u64)?;
    positive("pool.restart_period_s", c.pool.restart_period_s)?;
    positive("pool.backoff_initial_ms", c.pool.backoff_initial_ms)?;
    positive("pool.backoff_max_ms", c.pool.backoff_max_ms)?;
    positive("pool.max_failed_starts", c.pool.max_failed_starts as u64)?;
    positive("pool.failed_start_period_s", c.pool.failed_start_period_s)?;
    positive(
        "pool.quarantine_threshold",
        c.pool.quarantine_threshold as u64,
    )?;
    positive("pool.quarantine_window_s", c.pool.quarantine_window_s)?;
    positive(
        "pool.tenant_failure_budget",
        c.pool.tenant_failure_budget as u64,
    )?;
    positive(
        "pool.tenant_failure_window_s",
        c.pool.tenant_failure_window_s,
    )?;
    positive("pool.tenant_backoff_s", c.pool.tenant_backoff_s)?;
    positive("pool.tenant_queue", c.pool.tenant_queue as u64)?;
    if c.pool.recycle_jitter_percent > 50 {
        return Err(invalid("pool.recycle_jitter_percent", "must be at most 50"));
    }
    if !(1..=8).contains(&c.pool.pipeline_depth) {
        return Err(invalid("pool.pipeline_depth", "must be between 1 and 8"));
    }
    if c.pool.spare_workers > 64 {
        return Err(invalid("pool.spare_workers", "must be at most 64"));
    }
    positive("pool.tenant_idle_s", c.pool.tenant_idle_s)?;
    validate_uid_range(c, effective_uid_is_root())?;
    let l = &c.limits;
    positive("limits.max_body_bytes", l.max_body_bytes as u64)?;
    positive("limits.max_code_bytes", l.max_code_bytes as u64)?;
    positive("limits.max_context_bytes", l.max_context_bytes as u64)?;
    positive("limits.max_context_depth", l.max_context_depth as u64)?;
    positive("limits.max_context_items", l.max_context_items as u64)?;
    positive("limits.fuel", l.fuel)?;
    positive("limits.max_loop_iterations", l.max_loop_iterations)?;
    positive("limits.max_string_bytes", l.max_string_bytes as u64)?;
    positive("limits.max_list_len", l.max_list_len as u64)?;
    positive("limits.max_expr_depth", l.max_expr_depth as u64)?;
    positive("limits.max_block_depth", l.max_block_depth as u64)?;
    positive("limits.max_regex_patterns", l.max_regex_patterns as u64)?;
    positive("limits.max_regex_bytes", l.max_regex_bytes as u64)?;
    positive("limits.regex_compile_budget", l.regex_compile_budget)?;
    // A request frame holds the policy and the context; keep both under the
    // protocol's hard frame limit with room for the envelope.
    let frame_room = omni_worker::protocol::MAX_REQUEST_FRAME - 64 * 1024;
    if l.max_code_bytes + l.max_context_bytes > frame_room {
        return Err(invalid(
            "limits.max_code_bytes",
            format!("max_code_bytes + max_context_bytes must be at most {frame_room}"),
        ));
    }
    for m in &c.features.modules {
        if !omni::options::MODULES.contains(&m.as_str()) {
            return Err(invalid(
                "features.modules",
                format!(
                    "unknown module `{m}` (known: {})",
                    omni::options::MODULES.join(", ")
                ),
            ));
        }
    }
    let rate_ok = |key: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(invalid(key, "must be a positive number"))
        }
    };
    rate_ok("rate_limit.rate", c.rate_limit.rate)?;
    rate_ok("rate_limit.burst", c.rate_limit.burst)?;
    if c.rate_limit.burst < 1.0 {
        return Err(invalid("rate_limit.burst", "must be at least 1"));
    }
    positive("rate_limit.max_clients", c.rate_limit.max_clients as u64)?;
    for p in &c.rate_limit.trusted_proxies {
        p.parse::<std::net::IpAddr>().map_err(|_| {
            invalid(
                "rate_limit.trusted_proxies",
                format!("`{p}` is not an IP address"),
            )
        })?;
    }
    validate_auth_and_tls(c)?;
    positive("http.header_timeout_ms", c.http.header_timeout_ms)?;
    positive("http.body_timeout_ms", c.http.body_timeout_ms)?;
    positive("http.max_connections", c.http.max_connections as u64)?;
    positive(
        "http.max_connections_per_client",
        c.http.max_connections_per_client as u64,
    )?;
    positive("http.write_timeout_ms", c.http.write_timeout_ms)?;
    validate_store(&c.store)?;
    tracing_subscriber::EnvFilter::try_new(&c.log.level)
        .map_err(|_| invalid("log.level", "expected error, warn, info, debug or trace"))?;
    for (name, t) in &c.tenants {
        let key = |k: &str| format!("tenants.{name}.{k}");
        if !valid_tenant_name(name) {
            return Err(invalid(
                &format!("tenants.{name}"),
                "tenant names are 1-64 characters of [A-Za-z0-9._-]",
            ));
        }
        if let Some(r) = t.rate {
            rate_ok(&key("rate"), r)?;
        }
        if let Some(b) = t.burst {
            rate_ok(&key("burst"), b)?;
            if b < 1.0 {
                return Err(invalid(&key("burst"), "must be at least 1"));
            }
        }
        for (k, v) in [
            ("max_inflight", t.max_inflight.map(|v| v as u64)),
            ("timeout_ms", t.timeout_ms),
            ("max_body_bytes", t.max_body_bytes.map(|v| v as u64)),
            ("max_code_bytes", t.max_code_bytes.map(|v| v as u64)),
            ("max_context_bytes", t.max_context_bytes.map(|v| v as u64)),
            ("fuel", t.fuel),
            ("max_loop_iterations", t.max_loop_iterations),
            ("max_policies", t.max_policies),
            ("max_revisions", t.max_revisions),
            ("max_stored_bytes", t.max_stored_bytes),
        ] {
            if v == Some(0) {
                return Err(invalid(&key(k), "must be greater than 0"));
            }
        }
    }
    Ok(())
}

/// `[store]`: a usable URL (checked without echoing it: it may hold a
/// password), a path when there is no URL, and bounded numbers.
fn validate_store(s: &StoreSection) -> Result<(), ConfigError> {
    if s.url.is_empty() {
        if s.path.trim().is_empty() {
            return Err(invalid(
                "store.path",
                "must not be empty (or set store.url)",
            ));
        }
    } else {
        if !(s.url.starts_with("postgres://") || s.url.starts_with("postgresql://")) {
            return Err(invalid(
                "store.url",
                "expected a postgres:// or postgresql:// URL",
            ));
        }
        crate::store::postgres::parse_url(&s.url).map_err(|m| invalid("store.url", m))?;
    }
    if !(1..=256).contains(&s.pool_size) {
        return Err(invalid("store.pool_size", "must be between 1 and 256"));
    }
    if !(10..=60_000).contains(&s.poll_interval_ms) {
        return Err(invalid(
            "store.poll_interval_ms",
            "must be between 10 and 60000",
        ));
    }
    if !(100..=600_000).contains(&s.connect_timeout_ms) {
        return Err(invalid(
            "store.connect_timeout_ms",
            "must be between 100 and 600000",
        ));
    }
    for (key, v) in [
        ("store.max_policies_per_tenant", s.max_policies_per_tenant),
        ("store.max_revisions_per_policy", s.max_revisions_per_policy),
        ("store.max_bytes_per_tenant", s.max_bytes_per_tenant),
    ] {
        if v == 0 {
            return Err(invalid(key, "must be greater than 0"));
        }
    }
    Ok(())
}

/// `auth` and `tls` together: which credentials the mode needs, and the
/// files that go with them; each client identity names one tenant.
fn validate_auth_and_tls(c: &Config) -> Result<(), ConfigError> {
    let (auth, tls) = (&c.auth, &c.tls);
    if auth.enabled && auth.mode.uses_tokens() && auth.tokens_file.is_empty() {
        return Err(invalid(
            "auth.tokens_file",
            format!(
                "must be set when auth.enabled = true and auth.mode = \"{}\"",
                auth.mode.as_str()
            ),
        ));
    }
    if auth.mode != AuthMode::Token && !auth.enabled {
        return Err(invalid(
            "auth.mode",
            format!("\"{}\" needs auth.enabled = true", auth.mode.as_str()),
        ));
    }
    if tls.cert_file.is_empty() != tls.key_file.is_empty() {
        let missing = if tls.cert_file.is_empty() {
            "tls.cert_file"
        } else {
            "tls.key_file"
        };
        return Err(invalid(
            missing,
            "tls.cert_file and tls.key_file are set together",
        ));
    }
    let certs = auth.enabled && auth.mode.uses_certificates();
    if certs && !tls.enabled() {
        return Err(invalid(
            "tls.cert_file",
            format!(
                "auth.mode = \"{}\" needs TLS: set tls.cert_file and tls.key_file",
                auth.mode.as_str()
            ),
        ));
    }
    if certs && tls.client_ca_file.is_empty() {
        return Err(invalid(
            "tls.client_ca_file",
            format!(
                "auth.mode = \"{}\" needs the CA bundle that issues client certificates",
                auth.mode.as_str()
            ),
        ));
    }
    if !certs && !tls.client_ca_file.is_empty() {
        return Err(invalid(
            "tls.client_ca_file",
            "only used with auth.enabled = true and auth.mode = \"mtls\" or \"both\"",
        ));
    }
    if !tls.crl_file.is_empty() && tls.client_ca_file.is_empty() {
        return Err(invalid(
            "tls.crl_file",
            "revocation lists apply to client certificates: set tls.client_ca_file too",
        ));
    }
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, t) in &c.tenants {
        for id in &t.client_identities {
            let key = format!("tenants.{name}.client_identities");
            if id.trim().is_empty() || id.len() > 1024 {
                return Err(invalid(&key, "identities are 1-1024 characters"));
            }
            if let Some(other) = owner.insert(id, name) {
                if other != name {
                    return Err(invalid(
                        &key,
                        format!("`{id}` is also listed for tenant {other}"),
                    ));
                }
            }
            if id != name && c.tenants.contains_key(id.as_str()) {
                return Err(invalid(
                    &key,
                    format!("`{id}` is the name of another tenant, which it already identifies"),
                ));
            }
        }
    }
    Ok(())
}

/// `worker.uid_range`: a range of non-root ids with room for every slot's
/// tenant plus one being bound, in dedicated mode, with the sandbox on, in
/// an omnid started as root (only root can start a worker under another
/// uid; refusing beats silently running every tenant under one uid).
fn validate_uid_range(c: &Config, root: bool) -> Result<(), ConfigError> {
    let Some([first, last]) = c.worker.uid_range else {
        return Ok(());
    };
    let key = "worker.uid_range";
    if first == 0 || first > last {
        return Err(invalid(
            key,
            "expected [first, last] with 0 < first <= last (never root)",
        ));
    }
    if last >= u32::MAX - 1 {
        return Err(invalid(key, "must stay below 4294967294"));
    }
    let size = u64::from(last - first) + 1;
    if size < c.workers as u64 + 1 {
        return Err(invalid(
            key,
            format!(
                "needs at least workers + 1 = {} ids (each bound worker's tenant has its own)",
                c.workers + 1
            ),
        ));
    }
    if c.pool.tenant_isolation != TenantIsolation::Dedicated {
        return Err(invalid(
            key,
            "only applies with pool.tenant_isolation = \"dedicated\"",
        ));
    }
    if c.sandbox != SandboxMode::On {
        return Err(invalid(
            key,
            "needs sandbox = \"on\" (the sandbox switches the worker's uid)",
        ));
    }
    if !root {
        return Err(invalid(
            key,
            "needs omnid started as root (only root can start workers under other uids); \
             remove it, or start omnid as root",
        ));
    }
    Ok(())
}

/// The effective uid of this process is 0 (from `/proc/self/status`, so no
/// `unsafe` call; no /proc: not root as far as we can tell).
fn effective_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

pub fn valid_tenant_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Config {
    /// The effective configuration as TOML (for `--check-config`), with
    /// the password of `store.url` replaced.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.store.url = crate::store::postgres::redact_url(&shown.store.url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// `listen`, parsed (validation has accepted it).
    pub fn listen_addr(&self) -> ListenAddr {
        ListenAddr::parse(&self.listen)
            .unwrap_or_else(|_| ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080))))
    }

    /// What each worker process is started with.
    pub fn worker_config(&self) -> omni_worker::WorkerConfig {
        omni_worker::WorkerConfig {
            sandbox: omni_worker::SandboxConfig {
                enabled: self.sandbox == SandboxMode::On,
                user: self.worker.user.clone(),
                group: self.worker.group.clone(),
                memory_bytes: self.worker.memory_mib.saturating_mul(1 << 20),
                cpu_seconds: self.worker.cpu_seconds,
                max_open_files: self.worker.max_open_files,
                namespaces: self.worker.namespaces,
            },
            cache_entries: self.worker.cache_entries,
            cache_bytes: self.worker.cache_mib.saturating_mul(1 << 20),
            poll_before_block_us: self.worker.poll_before_block_us,
        }
    }

    /// A tenant's store quotas: `[store]`'s, lowered by `[tenants.NAME]`.
    // Called by the registry's handlers (issue 16); until then, by tests.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn store_quotas(&self, tenant: &str) -> crate::store::Quotas {
        let s = &self.store;
        let t = self.tenants.get(tenant);
        let lower = |global: u64, own: Option<u64>| own.map_or(global, |v| v.min(global));
        crate::store::Quotas {
            max_policies: lower(s.max_policies_per_tenant, t.and_then(|t| t.max_policies)),
            max_revisions: lower(s.max_revisions_per_policy, t.and_then(|t| t.max_revisions)),
            max_bytes: lower(s.max_bytes_per_tenant, t.and_then(|t| t.max_stored_bytes)),
        }
    }

    /// Keys that only take effect at start; a reload keeps the running values.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.listen != new.listen {
            out.push("listen");
        }
        if self.listen_mode != new.listen_mode {
            out.push("listen_mode");
        }
        if self.listen_owner != new.listen_owner {
            out.push("listen_owner");
        }
        if self.listen_group != new.listen_group {
            out.push("listen_group");
        }
        if self.probe_listen != new.probe_listen {
            out.push("probe_listen");
        }

        if self.workers != new.workers {
            out.push("workers");
        }
        if self.sandbox != new.sandbox {
            out.push("sandbox");
        }
        if self.log.format != new.log.format {
            out.push("log.format");
        }
        if self.http.max_connections != new.http.max_connections {
            out.push("http.max_connections");
        }
        if self.pool.queue != new.pool.queue {
            out.push("pool.queue");
        }
        // A worker's binding and uid are fixed at its start; switching them
        // live would leave workers that served several tenants bound to one.
        if self.pool.tenant_isolation != new.pool.tenant_isolation {
            out.push("pool.tenant_isolation");
        }
        if self.worker.uid_range != new.worker.uid_range {
            out.push("worker.uid_range");
        }
        // The store is opened once, at start.
        if self.store.path != new.store.path {
            out.push("store.path");
        }
        if self.store.url != new.store.url {
            out.push("store.url");
        }
        if self.store.pool_size != new.store.pool_size {
            out.push("store.pool_size");
        }
        if self.store.connect_timeout_ms != new.store.connect_timeout_ms {
            out.push("store.connect_timeout_ms");
        }
        out
    }

    /// `new` with the restart-only keys of `self`.
    pub fn merge_live(&self, new: &Config) -> Config {
        let mut c = new.clone();
        c.listen = self.listen.clone();
        c.listen_mode = self.listen_mode.clone();
        c.listen_owner = self.listen_owner.clone();
        c.listen_group = self.listen_group.clone();
        c.probe_listen = self.probe_listen.clone();
        c.workers = self.workers;
        c.sandbox = self.sandbox;
        c.log.format = self.log.format;
        c.http.max_connections = self.http.max_connections;
        c.pool.queue = self.pool.queue;
        c.pool.tenant_isolation = self.pool.tenant_isolation;
        c.worker.uid_range = self.worker.uid_range;
        c.store.path = self.store.path.clone();
        c.store.url = self.store.url.clone();
        c.store.pool_size = self.store.pool_size;
        c.store.connect_timeout_ms = self.store.connect_timeout_ms;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        // A directory per call: tests run in parallel, and two texts of the
        // same length must not share (and remove) one file.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "omnid-config-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| ConfigError::Read {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let p = dir.join(format!("c{}.toml", env.len()));
        std::fs::write(&p, text).map_err(|e| ConfigError::Read {
            path: p.display().to_string(),
            reason: e.to_string(),
        })?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let r = load(Some(&p), &env);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn defaults_need_no_file() {
        let c = load(None, &[]).map_err(|e| e.to_string()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.worker.timeout_ms, 250);
        assert_eq!(c.worker.memory_mib, 256);
        assert_eq!(c.worker.cpu_seconds, 10);
        assert_eq!(c.worker.max_requests, 10_000);
        assert_eq!(c.pool.queue, 1024);
        assert_eq!(c.limits.fuel, 1_000_000);
        assert!(c.limits.strict);
        assert!(c.workers >= 1);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load_str("version = 1\n[limits]\nfule = 3\n", &[]).unwrap_err();
        assert!(e.to_string().contains("fule"), "{e}");
        let e = load_str("version = 1\nbogus = true\n", &[]).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn version_must_be_one() {
        let e = load_str("version = 2\n", &[]).unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
    }

    #[test]
    fn env_overrides_keys() {
        let c = load_str(
            "version = 1\nworkers = 3\n[limits]\nfuel = 5\n",
            &[
                ("OMNID_WORKERS", "2"),
                ("OMNID_LIMITS_FUEL", "77"),
                ("OMNID_RATE_LIMIT_RATE", "2.5"),
                ("OMNID_FEATURES_MODULES", "math,str"),
                ("OMNID_SANDBOX", "off"),
            ],
        )
        .map_err(|e| e.to_string())
        .unwrap();
        assert_eq!(c.workers, 2);
        assert_eq!(c.limits.fuel, 77);
        assert_eq!(c.rate_limit.rate, 2.5);
        assert_eq!(c.features.modules, ["math", "str"]);
        assert_eq!(c.sandbox, SandboxMode::Off);
        let e = load_str("version = 1\n", &[("OMNID_LIMITS_FULE", "1")]).unwrap_err();
        assert!(e.to_string().contains("OMNID_LIMITS_FULE"), "{e}");
        let e = load_str("version = 1\n", &[("OMNID_WORKERS", "many")]).unwrap_err();
        assert!(e.to_string().contains("OMNID_WORKERS"), "{e}");
    }

    #[test]
    fn store_section_defaults_env_and_checks() {
        let c = load(None, &[]).map_err(|e| e.to_string()).unwrap();
        assert_eq!(c.store.path, DEFAULT_STORE_PATH);
        assert_eq!(c.store.url, "");
        assert_eq!(c.store.poll_interval_ms, 500);
        let url = "postgres://omnid:s3cret@db.internal:5432/omni";
        let c = load_str(
            "version = 1\n[store]\npath = \"/var/lib/omnid/store.db\"\n",
            &[
                ("OMNID_STORE_URL", url),
                ("OMNID_STORE_POOL_SIZE", "4"),
                ("OMNID_STORE_MAX_POLICIES_PER_TENANT", "7"),
            ],
        )
        .map_err(|e| e.to_string())
        .unwrap();
        assert_eq!((c.store.url.as_str(), c.store.pool_size), (url, 4));
        assert_eq!(c.store.path, "/var/lib/omnid/store.db");
        assert_eq!(c.store_quotas("anyone").max_policies, 7);
        // The printed configuration does not show the password.
        let shown = c.to_toml();
        assert!(
            !shown.contains("s3cret") && shown.contains("omnid:REDACTED@db.internal"),
            "{shown}"
        );
        let c = load_str("version = 1\n", &[("OMNID_STORE_PATH", "/tmp/x.db")])
            .map_err(|e| e.to_string())
            .unwrap();
        assert_eq!(c.store.path, "/tmp/x.db");
        for (bad, key) in [
            ("url = \"mysql://u:pw@h/db\"", "store.url"),
            (
                "url = \"postgres://u:pw@h/db?sslmode=require\"",
                "store.url",
            ),
            ("url = \"postgres://u:pw@h:notaport/db\"", "store.url"),
            ("path = \"\"", "store.path"),
            ("pool_size = 0", "store.pool_size"),
            ("poll_interval_ms = 0", "store.poll_interval_ms"),
            ("connect_timeout_ms = 5", "store.connect_timeout_ms"),
            ("max_bytes_per_tenant = 0", "store.max_bytes_per_tenant"),
        ] {
            let e = load_str(&format!("version = 1\n[store]\n{bad}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{bad}: {e}");
            assert!(!e.contains("pw"), "the password is echoed: {e}");
        }
        let old = Config::default();
        let mut new = old.clone();
        new.store.url = url.into();
        new.store.max_policies_per_tenant = 3;
        assert_eq!(old.restart_only_changes(&new), ["store.url"]);
        let merged = old.merge_live(&new);
        assert_eq!(
            (
                merged.store.url.as_str(),
                merged.store.max_policies_per_tenant
            ),
            ("", 3)
        );
    }

    #[test]
    fn tenant_store_quotas_only_lower() {
        let c = load_str(
            "version = 1\n[store]\nmax_policies_per_tenant = 10\nmax_revisions_per_policy = 20\n\
             max_bytes_per_tenant = 3000\n[tenants.small]\nmax_policies = 5\nmax_stored_bytes = 100\n\
             [tenants.greedy]\nmax_policies = 50\nmax_revisions = 100\n",
            &[],
        )
        .map_err(|e| e.to_string())
        .unwrap();
        let q = |t: &str| {
            let q = c.store_quotas(t);
            (q.max_policies, q.max_revisions, q.max_bytes)
        };
        assert_eq!(q("small"), (5, 20, 100));
        assert_eq!(q("greedy"), (10, 20, 3000));
        assert_eq!(q("unlisted"), (10, 20, 3000));
        let e = load_str("version = 1\n[tenants.t]\nmax_revisions = 0\n", &[]).unwrap_err();
        assert!(e.to_string().contains("tenants.t.max_revisions"), "{e}");
    }

    #[test]
    fn integer_rates_and_semantic_errors() {
        let c = load_str("version = 1\n[rate_limit]\nrate = 5\nburst = 10\n", &[])
            .map_err(|e| e.to_string())
            .unwrap();
        assert_eq!(c.rate_limit.rate, 5.0);
        let e = load_str("version = 1\n[pool]\nqueue = 0\n", &[]).unwrap_err();
        assert!(e.to_string().contains("pool.queue"), "{e}");
        let e = load_str("version = 1\nlisten = \"nowhere\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let e = load_str("version = 1\n[auth]\nenabled = true\n", &[]).unwrap_err();
        assert!(e.to_string().contains("auth.tokens_file"), "{e}");
    }

    #[test]
    fn tenant_isolation_and_uid_range_are_checked() {
        let c = load_str(
            "version = 1\n[pool]\ntenant_isolation = \"dedicated\"\n",
            &[("OMNID_POOL_SPARE_WORKERS", "3")],
        )
        .map_err(|e| e.to_string())
        .unwrap();
        assert_eq!(c.pool.tenant_isolation, TenantIsolation::Dedicated);
        assert_eq!(c.pool.spare_workers, 3);
        let e = load_str("version = 1\n[pool]\ntenant_isolation = \"mixed\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("pool.tenant_isolation"), "{e}");
        let mut c = Config {
            workers: 2,
            ..Config::default()
        };
        c.pool.tenant_isolation = TenantIsolation::Dedicated;
        c.worker.uid_range = Some([70000, 70002]);
        assert!(validate_uid_range(&c, true).is_ok());
        // Not root: refused, naming the key and the reason.
        let e = validate_uid_range(&c, false).unwrap_err().to_string();
        assert!(e.contains("worker.uid_range") && e.contains("root"), "{e}");
        for bad in [[0, 10], [70010, 70000], [70000, 70001]] {
            c.worker.uid_range = Some(bad);
            assert!(validate_uid_range(&c, true).is_err(), "{bad:?}");
        }
        c.worker.uid_range = Some([70000, 70002]);
        c.pool.tenant_isolation = TenantIsolation::Shared;
        assert!(validate_uid_range(&c, true).is_err());
        c.pool.tenant_isolation = TenantIsolation::Dedicated;
        c.sandbox = SandboxMode::Off;
        assert!(validate_uid_range(&c, true).is_err());
        // A set range survives the printed configuration.
        c.sandbox = SandboxMode::On;
        let back: Config = toml::from_str(&c.to_toml())
            .map_err(|e| e.to_string())
            .unwrap();
        assert_eq!(back.worker.uid_range, Some([70000, 70002]));
    }

    #[test]
    fn listeners_are_checked() {
        let c = load_str(
            "version = 1\nlisten = \"unix:/run/omnid/omnid.sock\"\nlisten_mode = \"0600\"\nprobe_listen = \"127.0.0.1:8081\"\n",
            &[],
        )
        .map_err(|e| e.to_string())
        .unwrap();
        assert_eq!(
            c.listen_addr(),
            ListenAddr::Unix(PathBuf::from("/run/omnid/omnid.sock"))
        );
        assert_eq!(parse_mode(&c.listen_mode), Some(0o600));
        for (text, key) in [
            ("listen = \"unix:relative.sock\"", "listen"),
            ("listen = \"unix:\"", "listen"),
            ("listen_mode = \"0999\"", "listen_mode"),
            ("listen_mode = \"01777\"", "listen_mode"),
            ("probe_listen = \"localhost\"", "probe_listen"),
            (
                "listen = \"127.0.0.1:9000\"\nprobe_listen = \"127.0.0.1:9000\"",
                "probe_listen",
            ),
        ] {
            let e = load_str(&format!("version = 1\n{text}\n"), &[]).unwrap_err();
            assert!(e.to_string().contains(&format!("`{key}`")), "{text}: {e}");
        }
        let long = format!("unix:/{}", "x".repeat(200));
        assert!(ListenAddr::parse(&long).is_err());
        // Restart only.
        let mut new = c.clone();
        new.listen_mode = "0666".into();
        new.probe_listen = String::new();
        assert_eq!(
            c.restart_only_changes(&new),
            vec!["listen_mode", "probe_listen"]
        );
        assert_eq!(c.merge_live(&new), c);
    }

    #[test]
    fn auth_modes_need_their_credentials_and_files() {
        let tls = "[tls]\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n";
        let ok = |text: &str, env: &[(&str, &str)]| {
            load_str(&format!("version = 1\n{text}"), env)
                .map_err(|e| e.to_string())
                .unwrap()
        };
        let err = |text: &str| {
            load_str(&format!("version = 1\n{text}"), &[])
                .unwrap_err()
                .to_string()
        };
        // mtls needs no tokens file, but TLS and the clients' CA bundle.
        let c = ok(
            &format!(
                "[auth]\nenabled = true\nmode = \"mtls\"\n{tls}client_ca_file = \"/ca.pem\"\n"
            ),
            &[],
        );
        assert_eq!(c.auth.mode, AuthMode::Mtls);
        assert_eq!(c.tls.client_identity, ClientIdentity::SanUri);
        let e = err("[auth]\nenabled = true\nmode = \"mtls\"\n");
        assert!(
            e.contains("`tls.cert_file`") && e.contains("needs TLS"),
            "{e}"
        );
        let e = err(&format!(
            "[auth]\nenabled = true\nmode = \"both\"\ntokens_file = \"/t\"\n{tls}"
        ));
        assert!(e.contains("`tls.client_ca_file`"), "{e}");
        // both also needs the tokens file; mtls with auth off is a mistake.
        let e = err(&format!(
            "[auth]\nenabled = true\nmode = \"both\"\n{tls}client_ca_file = \"/ca\"\n"
        ));
        assert!(e.contains("`auth.tokens_file`"), "{e}");
        let e = err("[auth]\nmode = \"mtls\"\n");
        assert!(
            e.contains("`auth.mode`") && e.contains("auth.enabled"),
            "{e}"
        );
        let e = err("[auth]\nmode = \"cert\"\n");
        assert!(e.contains("auth.mode"), "{e}");
        // The files go together.
        let e = err("[tls]\ncert_file = \"/c.pem\"\n");
        assert!(e.contains("`tls.key_file`"), "{e}");
        let e = err(&format!("{tls}client_ca_file = \"/ca.pem\"\n"));
        assert!(
            e.contains("`tls.client_ca_file`") && e.contains("mtls"),
            "{e}"
        );
        let e = err("[tls]\ncrl_file = \"/x.crl\"\n");
        assert!(e.contains("`tls.crl_file`"), "{e}");
        // TLS alone (token auth or none) is fine; environment overrides work.
        let c = ok(
            tls,
            &[
                ("OMNID_TLS_CLIENT_IDENTITY", "cn"),
                ("OMNID_AUTH_MODE", "token"),
            ],
        );
        assert!(c.tls.enabled());
        assert_eq!(c.tls.client_identity, ClientIdentity::Cn);
        let e = load_str("version = 1\n", &[("OMNID_TLS_CLIENT_IDENTITY", "email")]).unwrap_err();
        assert!(e.to_string().contains("tls.client_identity"), "{e}");
    }

    #[test]
    fn each_client_identity_names_one_tenant() {
        let base = "version = 1\n";
        let c = load_str(
            &format!(
                "{base}[tenants.a]\nclient_identities = [\"spiffe://x/a\", \"a\"]\n[tenants.b]\n"
            ),
            &[],
        )
        .map_err(|e| e.to_string())
        .unwrap();
        assert_eq!(c.tenants["a"].client_identities.len(), 2);
        // Printed and read back.
        let back: Config = toml::from_str(&c.to_toml())
            .map_err(|e| e.to_string())
            .unwrap();
        assert_eq!(back, c);
        for bad in [
            "[tenants.a]\nclient_identities = [\"x\"]\n[tenants.b]\nclient_identities = [\"x\"]\n",
            "[tenants.a]\nclient_identities = [\"b\"]\n[tenants.b]\n",
            "[tenants.a]\nclient_identities = [\" \"]\n",
        ] {
            let e = load_str(&format!("{base}{bad}"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("client_identities"), "{bad}: {e}");
        }
    }

    #[test]
    fn docs_list_every_key_and_environment_variable() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md");
        let docs = std::fs::read_to_string(path).unwrap();
        for (var, key) in env_overrides() {
            assert!(docs.contains(&var), "docs/api.md does not mention {var}");
            assert!(
                docs.contains(&format!("`{key}`")),
                "docs/api.md does not list `{key}`"
            );
        }
    }

    #[test]
    fn effective_config_round_trips() {
        let mut c = Config::default();
        c.tenants.insert(
            "acme".into(),
            TenantSection {
                rate: Some(1.0),
                ..TenantSection::default()
            },
        );
        let text = c.to_toml();
        let back: Config = toml::from_str(&text).map_err(|e| e.to_string()).unwrap();
        assert_eq!(back, c);
    }
}
