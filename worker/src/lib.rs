//! omni-worker: the sandboxed evaluation process and its wire protocol.
//!
//! `omnid` re-executes itself in worker mode ([`process::spawn_worker`]); the
//! child calls [`run_worker`], which applies the sandbox to itself and then
//! answers requests one at a time on fd 3 until the supervisor hangs up.
//!
//! - [`protocol`]: the frames and message types (postcard, length-prefixed,
//!   hard size limits) and the exit codes;
//! - [`sandbox`]: [`apply_sandbox`] and the seccomp allow-list
//!   (`docs/security.md` explains every layer);
//! - [`worker`]: the single-threaded loop and its LRU policy [`cache`];
//! - [`process`]: starting a worker and classifying how it ended.
//!
//! The `omni-worker-harness` binary runs [`run_worker`] (or a sandbox probe)
//! without the supervisor, for the integration tests and the benchmark.

pub mod cache;
pub mod process;
pub mod protocol;
pub mod sandbox;
pub mod worker;

pub use process::{
    classify_exit, config_from_args, spawn_worker, WorkerExit, WorkerProcess, WORKER_FD,
};
pub use sandbox::{apply_sandbox, SandboxError};
pub use worker::run_worker;

use serde::{Deserialize, Serialize};

/// How a worker confines itself (SERVICE.md §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// `false` only when the operator set `sandbox = "off"` explicitly.
    pub enabled: bool,
    /// User and group to switch to when started as root.
    pub user: String,
    pub group: String,
    /// `RLIMIT_AS` in bytes.
    pub memory_bytes: u64,
    /// `RLIMIT_CPU` in seconds (a backstop; deadlines are the supervisor's job).
    pub cpu_seconds: u64,
    /// `RLIMIT_NOFILE`.
    pub max_open_files: u64,
    /// Try new network and IPC namespaces (skipped where not permitted).
    pub namespaces: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: true,
            user: "nobody".into(),
            group: "nogroup".into(),
            memory_bytes: 256 << 20,
            cpu_seconds: 10,
            max_open_files: 16,
            namespaces: true,
        }
    }
}

/// Everything a worker process is started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    pub sandbox: SandboxConfig,
    /// Compiled-policy cache bounds.
    pub cache_entries: usize,
    pub cache_bytes: usize,
    /// After a reply, poll for the next request for up to this many
    /// microseconds before blocking, when the last request came within as
    /// long after the reply before it (0: always block at once). Keeps a
    /// busy worker's CPU from halting between close requests (on virtual
    /// machines a wake-up costs several microseconds); an idle worker does
    /// not poll. Costs at most this much CPU time at the end of a burst.
    /// See [`protocol::FrameReader::poll_for`].
    pub poll_before_block_us: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            sandbox: SandboxConfig::default(),
            cache_entries: 256,
            cache_bytes: 64 << 20,
            poll_before_block_us: 100,
        }
    }
}
