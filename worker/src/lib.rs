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
//! - [`process`]: a worker process's life seen from its parent: spawn,
//!   kill, reap, CPU time, retire, and how it ended.
//!
//! The `omni-worker-harness` binary runs [`run_worker`] (or a sandbox probe)
//! without the supervisor, for the integration tests and the benchmark.

pub mod cache;
pub mod process;
pub mod protocol;
pub mod sandbox;
pub mod worker;

pub use process::{
    classify_exit, config_from_args, spawn_worker, Ended, Reaped, WorkerExit, WorkerProcess,
    WORKER_FD,
};
pub use sandbox::{apply_sandbox, SandboxConfig, SandboxError};
pub use worker::{run_worker, WorkerConfig};
