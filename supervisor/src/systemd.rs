//! systemd integration through `sd_notify`: `READY=1` once the workers are
//! up and the listener is open, `WATCHDOG=1` while the service is alive,
//! `STOPPING=1` on drain and `STATUS=` for crash loops. Every call is a
//! no-op when `NOTIFY_SOCKET` is not set.

use sd_notify::NotifyState;
use std::time::Duration;

fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

pub fn ready(status: &str) {
    if under_systemd() {
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }
}

pub fn stopping() {
    if under_systemd() {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    }
}

pub fn status(msg: &str) {
    if under_systemd() {
        let _ = sd_notify::notify(&[NotifyState::Status(msg)]);
    }
}

/// The interval to feed the watchdog at, when systemd asked for one.
pub fn watchdog_interval() -> Option<Duration> {
    if !under_systemd() {
        return None;
    }
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

pub fn watchdog() {
    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
}
