//! Helpers shared by the integration tests: start the harness as a real
//! process, wait for it with a deadline, read its /proc files.
#![allow(dead_code)]

use omni_worker::protocol::SandboxReport;
use omni_worker::{spawn_worker, SandboxConfig, WorkerConfig, WorkerProcess};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub const HARNESS: &str = env!("CARGO_BIN_EXE_omni-worker-harness");

/// 2026-01-01T00:00:00Z in nanoseconds since the epoch.
pub const NOW_NANOS: i64 = 1_767_225_600_000_000_000;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn config(sandbox: SandboxConfig) -> WorkerConfig {
    WorkerConfig {
        sandbox,
        ..WorkerConfig::default()
    }
}

/// Starts the worker loop (no probe) and waits for `Ready`.
pub fn start_worker(cfg: &WorkerConfig) -> (WorkerProcess, SandboxReport) {
    let mut w = spawn_worker(Path::new(HARNESS), &[], cfg).expect("spawn worker");
    let report = w.wait_ready().expect("worker ready");
    (w, report)
}

/// Starts a probe and waits for `Ready`.
pub fn start_probe(probe: &str, cfg: &WorkerConfig) -> (WorkerProcess, SandboxReport) {
    let mut w = spawn_worker(Path::new(HARNESS), &["--probe", probe], cfg).expect("spawn probe");
    let report = w
        .wait_ready()
        .unwrap_or_else(|e| panic!("probe {probe} did not get ready: {e}"));
    (w, report)
}

/// Waits up to `limit` for the child to end; kills it (and fails) past that.
pub fn wait_for(w: &mut WorkerProcess, limit: Duration) -> (ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(st) = w.child.try_wait().expect("try_wait") {
            return (st, start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = w.child.kill();
            let _ = w.child.wait();
            panic!("process {} still running after {limit:?}", w.pid());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn describe(st: &ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(s)) => format!("signal {s} ({})", signal_name(s)),
        _ => format!("{st:?}"),
    }
}

pub fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGSYS => "SIGSYS",
        libc::SIGKILL => "SIGKILL",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        _ => "other",
    }
}

pub fn proc_file(pid: u32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{name}"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/{name}: {e}"))
}

/// The value of `Key:` in /proc/<pid>/status.
pub fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in status:\n{status}"))
}

/// `(soft, hard)` of a /proc/<pid>/limits line, e.g. "Max address space".
pub fn limit(limits: &str, name: &str) -> (String, String) {
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in limits:\n{limits}"));
    let rest: Vec<&str> = line[name.len()..].split_whitespace().collect();
    (rest[0].to_string(), rest[1].to_string())
}
