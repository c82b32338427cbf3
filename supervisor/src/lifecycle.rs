//! The running service's life after start-up: listening (the service
//! listener or systemd's sockets, and the probe listener), telling systemd
//! it is ready and alive, reloading on SIGHUP (re-read, apply what can
//! change live including the TLS material, roll the workers), and draining
//! on SIGTERM/SIGINT or when the pool gives up.

use crate::app::{App, Settings};
use crate::auth::TokenTable;
use crate::config::Config;
use crate::http::{self, Role};
use crate::listen::{Inherited, Listener};
use crate::logging::LogHandle;
use crate::signals;
use crate::systemd;
use crate::tls;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Reads the configuration and the tokens file again (the command line's
/// overrides applied), for a reload.
pub type Loader = dyn Fn() -> Result<(Config, TokenTable), String> + Send + Sync;

/// Runs the service until a drain signal or a fatal pool error: listens,
/// says it is ready, answers requests and reloads on SIGHUP (`load` reads
/// the configuration and the tokens again), then drains. Returns the exit code.
pub async fn serve(
    load: &Loader,
    inherited: Vec<Inherited>,
    app: Arc<App>,
    log: LogHandle,
    workers_ready: String,
    sandbox: (bool, String),
) -> i32 {
    let settings = app.settings();
    let config = settings.config.clone();
    let (listeners, probe) = match open_listeners(&config, inherited) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen");
            eprintln!("omnid: {e}");
            return 1;
        }
    };
    let addrs: Vec<String> = listeners.iter().map(Listener::describe).collect();
    let mut signals = match signals::listen() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("omnid: cannot install signal handlers: {}", e.kind());
            return 1;
        }
    };
    // The three-line start-up summary (one `listening on` per socket).
    let tls_on = settings.tls.is_some();
    for addr in &addrs {
        tracing::info!(addr = %addr, tls = tls_on, "listening on {addr}");
    }
    if let Some(m) = &settings.tls {
        tracing::info!(auth_mode = config.auth.mode.as_str(), "{}", m.summary);
    }
    if let Some(p) = &probe {
        let addr = p.describe();
        tracing::info!(addr = %addr, "probe listener on {addr} (/healthz, /readyz, /metrics; plain HTTP)");
    }
    drop(settings);
    tracing::info!(workers = app.pool.size(), "{workers_ready}");
    if sandbox.0 {
        tracing::info!("{}", sandbox.1);
    } else {
        tracing::warn!("{}", sandbox.1);
    }
    systemd::ready(&format!("listening on {}", addrs.join(", ")));
    if let Some(every) = systemd::watchdog_interval() {
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            loop {
                t.tick().await;
                systemd::watchdog();
            }
        });
    }

    // Stored policies: follow the store's changes (other replicas' too).
    tokio::spawn(crate::registry::sync::run(app.clone()));
    let conns = Arc::new(http::Connections::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(http::serve(
        listeners,
        Role::Service,
        app.clone(),
        conns.clone(),
        stop_rx.clone(),
        close_rx.clone(),
    ));
    let probe = probe.map(|p| {
        tokio::spawn(http::serve(
            vec![p],
            Role::Probe,
            app.clone(),
            conns.clone(),
            stop_rx,
            close_rx,
        ))
    });
    let servers: Vec<_> = std::iter::once(service).chain(probe).collect();
    let exit_code = loop {
        tokio::select! {
            ev = signals.recv() => match ev {
                Some(signals::Event::Reload) => reload(load, &app, &log),
                Some(signals::Event::Drain(sig)) => {
                    tracing::info!(signal = sig, "draining");
                    break 0;
                }
                None => break 0,
            },
            why = app.pool.fatal() => {
                tracing::error!(reason = %why, "stopping: the worker pool cannot recover");
                break 1;
            }
        }
    };
    drain(&app, stop_tx, servers, close_tx, &conns).await;
    exit_code
}

/// Refuses new work, stops accepting, lets in-flight requests finish (up
/// to `drain_timeout_ms`), then closes the connections once their answers
/// are out.
async fn drain(
    app: &App,
    stop_tx: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    close_tx: watch::Sender<bool>,
    conns: &http::Connections,
) {
    app.start_draining();
    systemd::stopping();
    let _ = stop_tx.send(true);
    for s in servers {
        let _ = s.await;
    }
    let drain = Duration::from_millis(app.settings().config.drain_timeout_ms);
    let until = Instant::now() + drain;
    while app.inflight.current() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if app.inflight.current() > 0 {
        tracing::warn!(
            inflight = app.inflight.current(),
            "drain timeout: requests still in flight"
        );
    }
    // Let answered requests' responses reach their clients, then close.
    let _ = close_tx.send(true);
    let until = Instant::now() + Duration::from_secs(2);
    while conns.open() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The service's sockets (systemd's when it passed any, else `listen`) and
/// the probe listener (`probe_listen`).
fn open_listeners(
    config: &crate::config::Config,
    inherited: Vec<Inherited>,
) -> Result<(Vec<Listener>, Option<Listener>), crate::listen::ListenError> {
    let listeners = if inherited.is_empty() {
        vec![Listener::bind_service(config)?]
    } else {
        tracing::info!(
            sockets = inherited.len(),
            "socket activation: serving the sockets systemd passed; `listen` is not used"
        );
        inherited
            .into_iter()
            .map(Listener::inherited)
            .collect::<Result<_, _>>()?
    };
    let probe = match config.probe_listen.as_str() {
        "" => None,
        addr => {
            let addr = addr.parse().map_err(|_| crate::listen::ListenError::Bind {
                addr: addr.to_string(),
                reason: "not an address".into(),
            })?;
            Some(Listener::bind_tcp(addr)?)
        }
    };
    Ok((listeners, probe))
}

/// SIGHUP: re-reads the configuration, the tokens file and the TLS files,
/// applies what can change live, and rolls the workers one at a time. Any
/// failure keeps everything running as it was (a bad new certificate or
/// key, a CRL that does not parse: the old material stays).
fn reload(load: &Loader, app: &App, log: &LogHandle) {
    let old = app.settings();
    let (new, tokens) = match load() {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(error = %e, "reload failed; keeping the running configuration");
            return;
        }
    };
    if old.config.tls.enabled() != new.tls.enabled() {
        tracing::error!(
            "reload failed: TLS cannot be switched on or off by a reload (tls.cert_file); restart omnid; keeping the running configuration"
        );
        return;
    }
    let ignored = old.config.restart_only_changes(&new);
    if !ignored.is_empty() {
        tracing::warn!(
            keys = %ignored.join(", "),
            "these keys only change on restart; keeping their running values"
        );
    }
    let merged = Arc::new(old.config.merge_live(&new));
    let tls = match tls::load(&merged) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "reload failed; keeping the running configuration and TLS certificate");
            return;
        }
    };
    if let Err(e) = app.pool.reload(merged.clone()) {
        tracing::error!(error = %e, "reload failed: a worker cannot start with the new configuration; keeping the running one");
        return;
    }
    log.set_level(&merged.log.level);
    let tls_summary = tls.as_ref().map(|m| m.summary.clone());
    app.set_settings(Settings::new(merged, tokens, tls));
    // After the swap: a connection accepted from here on gets the new material.
    if let Some(summary) = tls_summary {
        tracing::info!("TLS material reloaded: {summary}");
    }
    tracing::info!("configuration reloaded; rolling workers one at a time");
}
