//! `omnid`: the Omni evaluation service (`docs/api.md`).
//!
//! One binary, two roles. Started with `--worker-config` it is a worker:
//! it confines itself and evaluates requests on fd 3, with no runtime and no
//! threads. Otherwise it is the supervisor: it reads the configuration,
//! starts the workers, then hands over to [`lifecycle`] (listen, reload,
//! drain) and retires the workers at the end.

#![recursion_limit = "256"]

mod api;
mod app;
mod auth;
mod body;
mod config;
mod http;
mod ids;
mod lifecycle;
mod limits;
mod listen;
mod lock;
mod logging;
mod metrics;
mod openapi;
mod playground;
mod pool;
mod registry;
mod restart;
mod signals;
mod store;
mod systemd;
mod tls;
mod validate;

use app::{App, Settings};
use auth::TokenTable;
use clap::Parser;
use config::{Config, LogFormat, SandboxMode};
use metrics::Metrics;
use pool::{PoolEvent, WorkerPool};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `omnid <version>`, with the git revision when the build provided one.
fn version() -> &'static str {
    match option_env!("OMNI_GIT_REV") {
        Some(rev) if !rev.is_empty() => {
            Box::leak(format!("{} ({rev})", env!("CARGO_PKG_VERSION")).into_boxed_str())
        }
        _ => env!("CARGO_PKG_VERSION"),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "omnid",
    version = version(),
    about = "The Omni policy evaluation service",
    after_help = "Every configuration key can be overridden with OMNID_<KEY PATH>, e.g. OMNID_LISTEN, OMNID_WORKERS, OMNID_LIMITS_FUEL."
)]
struct Cli {
    /// The TOML configuration file (default: built-in defaults; also OMNID_CONFIG).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate the configuration, print the effective one as TOML, and exit.
    #[arg(long)]
    check_config: bool,
    /// Override `listen` (e.g. 127.0.0.1:0 for any free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Read a token on standard input and print the SHA-256 line to put in
    /// the tokens file (`TENANT <hash>`).
    #[arg(long, value_name = "TENANT")]
    hash_token: Option<String>,
    /// Override `log.format`.
    #[arg(long, value_name = "FORMAT", value_parser = ["json", "pretty"])]
    log_format: Option<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Worker mode first: nothing else may run before the worker confines itself.
    if let Some(cfg) = omni_worker::config_from_args(&args) {
        match cfg {
            Ok(cfg) => {
                signals::ignore_in_worker();
                // Started through /proc/self/exe, the process would be named
                // "exe" in ps and top: name it for operators.
                let _ = nix::sys::prctl::set_name(c"omnid-worker");
                omni_worker::run_worker(omni_worker::WORKER_FD, cfg)
            }
            Err(e) => {
                eprintln!("omnid worker: {e}");
                std::process::exit(omni_worker::protocol::EXIT_USAGE)
            }
        }
    }
    let cli = Cli::parse();
    std::process::exit(run(cli));
}

/// Loads the configuration with the command line's overrides applied.
fn load_config(cli: &Cli) -> Result<Config, String> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut c = config::load(cli.config.as_deref(), &env).map_err(|e| e.to_string())?;
    if let Some(l) = &cli.listen {
        c.listen = l.clone();
    }
    if let Some(f) = &cli.log_format {
        c.log.format = if f == "pretty" {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        };
    }
    config::validate(&c).map_err(|e| e.to_string())?;
    Ok(c)
}

/// The configuration and the tokens file, as start-up and a reload read them.
fn load(cli: &Cli) -> Result<(Config, TokenTable), String> {
    let config = load_config(cli)?;
    let tokens = load_tokens(&config)?;
    Ok((config, tokens))
}

fn load_tokens(c: &Config) -> Result<TokenTable, String> {
    if !c.auth.enabled || !c.auth.mode.uses_tokens() {
        return Ok(TokenTable::default());
    }
    TokenTable::load(std::path::Path::new(&c.auth.tokens_file))
        .map_err(|e| format!("`auth.tokens_file`: {e}"))
}

fn run(cli: Cli) -> i32 {
    if let Some(tenant) = &cli.hash_token {
        if !config::valid_tenant_name(tenant) {
            eprintln!("omnid: tenant names are 1-64 characters of [A-Za-z0-9._-]");
            return 1;
        }
        let mut token = String::new();
        if std::io::stdin().read_line(&mut token).is_err() || token.trim().is_empty() {
            eprintln!("omnid: expected a token on standard input");
            return 1;
        }
        println!("{tenant} {}", auth::token_hash_hex(token.trim()));
        return 0;
    }
    // Before any thread or worker exists: the sockets systemd passed are
    // taken (close-on-exec, so no worker inherits one) and LISTEN_* cleared.
    let inherited = match listen::take_systemd_sockets() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("omnid: {e}");
            return 1;
        }
    };
    let loaded = load(&cli).and_then(|(config, tokens)| {
        let tls = tls::load(&config).map_err(|e| e.to_string())?;
        Ok((config, tokens, tls))
    });
    let (config, tokens, tls) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("omnid: configuration error: {e}");
            return 1;
        }
    };
    if cli.check_config {
        print!("{}", config.to_toml());
        eprintln!("omnid: configuration is valid");
        return 0;
    }
    let log = logging::init(config.log.format, &config.log.level);
    if config.sandbox == SandboxMode::Off {
        tracing::warn!("sandbox = \"off\": workers run WITHOUT seccomp, rlimits or privilege drop; never use this in production");
    }
    if config.auth.enabled {
        let mode = config.auth.mode.as_str();
        match config.auth.mode {
            config::AuthMode::Token => {
                tracing::info!(
                    tokens = tokens.len(),
                    mode,
                    "auth on: bearer tokens required"
                )
            }
            config::AuthMode::Mtls => tracing::info!(mode, "auth on: client certificates required"),
            config::AuthMode::Both => tracing::info!(
                tokens = tokens.len(),
                mode,
                "auth on: a bearer token or a client certificate required"
            ),
        }
    }
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let started = Instant::now();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // The blocking pool only starts and reaps workers: at most one job
        // per slot at a time.
        .max_blocking_threads(config.workers.clamp(4, 64))
        .thread_name("omnid-http")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("omnid: cannot start the runtime: {}", e.kind());
            return 1;
        }
    };
    // The pool's crash loops and giving up show in systemd's status line.
    let on_event = Box::new(|e: &PoolEvent| systemd::status(e.message()));
    let pool = match WorkerPool::start(config.clone(), metrics.clone(), runtime.handle(), on_event)
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            eprintln!("omnid: start-up failed: {e}");
            return 1;
        }
    };
    // The stored policies, all loaded before the first request.
    let registry = match runtime.block_on(registry::Registry::open(&config.store, metrics.clone()))
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed: cannot open the policy store");
            eprintln!("omnid: start-up failed: cannot open the policy store: {e}");
            pool.shutdown(Duration::from_secs(2));
            return 1;
        }
    };
    tracing::info!(
        backend = registry.backend(),
        policies = registry.served_count(),
        "policy store open"
    );
    let sandbox_line = sandbox_summary(&config, &pool.sandbox);
    let workers_ready = format!(
        "workers ready: {n}/{n} in {} ms",
        started.elapsed().as_millis(),
        n = pool.size()
    );
    let app = Arc::new(App::new(
        Settings::new(config.clone(), tokens, tls),
        pool,
        registry,
        metrics,
    ));
    let load = move || load(&cli);
    let code = runtime.block_on(lifecycle::serve(
        &load,
        inherited,
        app.clone(),
        log,
        workers_ready,
        sandbox_line,
    ));
    let drain = Duration::from_millis(app.settings().config.drain_timeout_ms);
    let pool_app = app.clone();
    // Retire the workers outside the runtime: it blocks on their exits.
    pool_app.pool.shutdown(drain.min(Duration::from_secs(10)));
    runtime.shutdown_timeout(Duration::from_secs(1));
    tracing::info!(exit_code = code, "stopped");
    code
}

fn sandbox_summary(c: &Config, r: &omni_worker::protocol::SandboxReport) -> (bool, String) {
    if c.sandbox == SandboxMode::Off {
        return (
            false,
            "sandbox: OFF (sandbox = \"off\" in the configuration)".into(),
        );
    }
    if !r.enabled {
        return (
            false,
            "sandbox: requested, but this worker build reports it as not applied".into(),
        );
    }
    let rl: Vec<String> = r.rlimits.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let mut s = format!(
        "sandbox: seccomp {}, no_new_privs {}, uid {} gid {}, rlimits [{}]",
        if r.seccomp { "on" } else { "off" },
        if r.no_new_privs { "on" } else { "off" },
        r.uid,
        r.gid,
        rl.join(" ")
    );
    if !r.namespaces.is_empty() {
        s.push_str(&format!(", namespaces [{}]", r.namespaces.join(" ")));
    }
    if !r.skipped.is_empty() {
        s.push_str(&format!(", skipped [{}]", r.skipped.join("; ")));
    }
    (r.seccomp, s)
}
