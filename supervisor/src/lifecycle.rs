//! The running service's life after start-up: listening, telling systemd
//! it is ready and alive, reloading on SIGHUP (re-read, apply what can
//! change live, roll the workers), and draining on SIGTERM/SIGINT or when
//! the pool gives up.

use crate::app::{App, Settings};
use crate::auth::TokenTable;
use crate::config::Config;
use crate::http;
use crate::logging::LogHandle;
use crate::signals;
use crate::systemd;
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
    app: Arc<App>,
    log: LogHandle,
    workers_ready: String,
    sandbox: (bool, String),
) -> i32 {
    let config = app.settings().config.clone();
    let listener = match tokio::net::TcpListener::bind(config.listen_addr()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %config.listen, error = %e.kind(), "cannot listen");
            eprintln!("omnid: cannot listen on {}: {}", config.listen, e.kind());
            return 1;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a.to_string(),
        Err(_) => config.listen.clone(),
    };
    let mut signals = match signals::listen() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("omnid: cannot install signal handlers: {}", e.kind());
            return 1;
        }
    };
    // The three-line start-up summary.
    tracing::info!(addr = %addr, "listening on {addr}");
    tracing::info!(workers = app.pool.size(), "{workers_ready}");
    if sandbox.0 {
        tracing::info!("{}", sandbox.1);
    } else {
        tracing::warn!("{}", sandbox.1);
    }
    systemd::ready(&format!("listening on {addr}"));
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
    let server = tokio::spawn(http::serve(
        listener,
        app.clone(),
        conns.clone(),
        stop_rx,
        close_rx,
    ));
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
    drain(&app, stop_tx, server, close_tx, &conns).await;
    exit_code
}

/// Refuses new work, stops accepting, lets in-flight requests finish (up
/// to `drain_timeout_ms`), then closes the connections once their answers
/// are out.
async fn drain(
    app: &App,
    stop_tx: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    close_tx: watch::Sender<bool>,
    conns: &http::Connections,
) {
    app.start_draining();
    systemd::stopping();
    let _ = stop_tx.send(true);
    let _ = server.await;
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

/// SIGHUP: re-reads the configuration and the tokens file, applies what can
/// change live, and rolls the workers one at a time.
fn reload(load: &Loader, app: &App, log: &LogHandle) {
    let old = app.settings();
    let (new, tokens) = match load() {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(error = %e, "reload failed; keeping the running configuration");
            return;
        }
    };
    let ignored = old.config.restart_only_changes(&new);
    if !ignored.is_empty() {
        tracing::warn!(
            keys = %ignored.join(", "),
            "these keys only change on restart; keeping their running values"
        );
    }
    let merged = Arc::new(old.config.merge_live(&new));
    if let Err(e) = app.pool.reload(merged.clone()) {
        tracing::error!(error = %e, "reload failed: a worker cannot start with the new configuration; keeping the running one");
        return;
    }
    log.set_level(&merged.log.level);
    app.set_settings(Settings::new(merged, tokens));
    tracing::info!("configuration reloaded; rolling workers one at a time");
}
