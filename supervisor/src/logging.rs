//! Logs: `tracing`, one JSON object per line on stdout (or a human format
//! with `--log-format pretty`). The level can change on SIGHUP through a
//! reload handle. Callers log ids, tenants, statuses, timings and restart
//! reasons — never policy text or context values.

use crate::config::LogFormat;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Changes the log level of the running process.
pub struct LogHandle {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogHandle {
    pub fn set_level(&self, level: &str) {
        if let Ok(f) = EnvFilter::try_new(level) {
            let _ = self.handle.reload(f);
        }
    }
}

pub fn init(format: LogFormat, level: &str) -> LogHandle {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_target(false)
                    .with_writer(std::io::stdout),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_writer(std::io::stdout),
            )
            .try_init(),
    };
    if result.is_err() {
        eprintln!("omnid: logging was already initialised");
    }
    LogHandle { handle }
}
