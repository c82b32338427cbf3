//! Signals (signal-hook): SIGTERM and SIGINT start a drain, SIGHUP a live
//! reload. A dedicated thread turns them into messages for the async side,
//! so no work happens in a signal handler.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Drain(&'static str),
    Reload,
}

/// Installs the handlers and starts the forwarding thread.
pub fn listen() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<Event>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("omnid-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let ev = match sig {
                    SIGHUP => Event::Reload,
                    SIGINT => Event::Drain("SIGINT"),
                    _ => Event::Drain("SIGTERM"),
                };
                if tx.send(ev).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// In a worker process, before it takes requests: a terminal's Ctrl-C and
/// systemd's control-group SIGTERM reach every process of the group, but a
/// worker's life is its supervisor's business (it exits when its socket
/// closes, or is killed). SIGKILL still works.
pub fn ignore_in_worker() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: installing SIG_IGN runs no code in signal context; this is
        // called before the worker starts any thread.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
}
