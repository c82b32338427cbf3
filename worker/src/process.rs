//! Starting a worker process: a Unix socket pair, the child re-executing a
//! binary in worker mode with its end of the socket on fd 3, and the
//! configuration as one JSON argument after `--worker-config`.

use crate::protocol::{
    read_frame, write_frame, FrameError, Reply, Request, SandboxReport, MAX_REPLY_FRAME,
};
use crate::WorkerConfig;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The fd number a worker finds its socket on.
pub const WORKER_FD: i32 = 3;

/// The argument that precedes the JSON configuration.
pub const CONFIG_ARG: &str = "--worker-config";

/// A started worker: the child process and the supervisor's end of the socket.
#[derive(Debug)]
pub struct WorkerProcess {
    pub child: Child,
    pub stream: UnixStream,
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the worker's `Ready` frame (its sandbox report).
    pub fn wait_ready(&mut self) -> Result<SandboxReport, FrameError> {
        let mut buf = Vec::new();
        match read_frame::<Reply, _>(&mut self.stream, MAX_REPLY_FRAME, &mut buf)? {
            Reply::Ready(r) => Ok(r),
            _ => Err(FrameError::Malformed),
        }
    }

    /// Sends one request and reads its reply (a convenience for tests and
    /// tools; `buf` is reused for both directions).
    pub fn call(&mut self, req: &Request, buf: &mut Vec<u8>) -> Result<Reply, FrameError> {
        write_frame(&mut self.stream, req, buf)?;
        read_frame(&mut self.stream, MAX_REPLY_FRAME, buf)
    }
}

/// Starts `exe args… --worker-config <json>` with the socket on fd 3, stdin
/// and stdout closed to /dev/null, and stderr inherited.
pub fn spawn_worker(
    exe: &Path,
    args: &[&str],
    config: &WorkerConfig,
) -> std::io::Result<WorkerProcess> {
    let (parent, child_end) = UnixStream::pair()?;
    let json = serde_json::to_string(config).map_err(std::io::Error::other)?;
    let child_fd: OwnedFd = child_end.into();
    let raw = child_fd.as_raw_fd();
    let mut cmd = Command::new(exe);
    // What `ps` shows: the binary may be started as /proc/self/exe.
    cmd.arg0("omnid-worker");
    cmd.args(args)
        .arg(CONFIG_ARG)
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .env("RUST_BACKTRACE", "0")
        .env_remove("RUST_LIB_BACKTRACE");
    // SAFETY: between fork and exec we only call dup2, which is
    // async-signal-safe, on fds we own; nothing allocates or locks.
    unsafe {
        cmd.pre_exec(move || {
            if raw == WORKER_FD {
                // Already on fd 3: clear close-on-exec so it survives exec.
                let flags = libc::fcntl(raw, libc::F_GETFD);
                if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, WORKER_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(child_fd);
    Ok(WorkerProcess {
        child,
        stream: parent,
    })
}

/// In a worker process: reads the configuration from the arguments after
/// `--worker-config`. `None` when the arguments are not worker arguments.
pub fn config_from_args(args: &[String]) -> Option<Result<WorkerConfig, String>> {
    let pos = args.iter().position(|a| a == CONFIG_ARG)?;
    let json = match args.get(pos + 1) {
        Some(j) => j,
        None => return Some(Err("missing worker configuration".into())),
    };
    Some(serde_json::from_str(json).map_err(|e| format!("bad worker configuration: {e}")))
}

/// Why a worker process ended, from its wait status (SERVICE.md §1's restart
/// reasons, as far as the status alone can tell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// Exit 0: the supervisor closed the socket.
    Clean,
    /// Exit [`EXIT_PROTOCOL_ERROR`](crate::protocol::EXIT_PROTOCOL_ERROR): a bad frame.
    ProtocolError,
    /// Exit [`EXIT_SANDBOX_FAILED`](crate::protocol::EXIT_SANDBOX_FAILED).
    SandboxFailed,
    /// Exit [`EXIT_USAGE`](crate::protocol::EXIT_USAGE).
    Usage,
    /// `SIGSYS`: the seccomp filter refused a system call.
    SeccompViolation,
    /// `SIGXCPU`: `RLIMIT_CPU` was reached.
    CpuLimit,
    /// `SIGABRT`: an allocation failed under `RLIMIT_AS` (or another abort,
    /// e.g. a stack overflow; the worker's stderr says which).
    MemoryLimit,
    /// `SIGKILL`: the supervisor's own kill (deadline), the OOM killer, or
    /// the `RLIMIT_CPU` hard limit; only the supervisor knows which.
    Killed,
    /// Any other exit code or signal (an uncaught panic exits 101).
    Crash,
}

impl WorkerExit {
    /// The restart reason of SERVICE.md §1 (`Killed` is reported as `crash`
    /// unless the supervisor knows better).
    pub fn reason(self) -> &'static str {
        match self {
            WorkerExit::Clean => "recycled",
            WorkerExit::SeccompViolation => "seccomp_violation",
            WorkerExit::CpuLimit => "cpu_limit",
            WorkerExit::MemoryLimit => "memory_limit",
            WorkerExit::ProtocolError
            | WorkerExit::SandboxFailed
            | WorkerExit::Usage
            | WorkerExit::Killed
            | WorkerExit::Crash => "crash",
        }
    }
}

/// Classifies a worker's wait status.
pub fn classify_exit(status: std::process::ExitStatus) -> WorkerExit {
    use crate::protocol::{EXIT_PROTOCOL_ERROR, EXIT_SANDBOX_FAILED, EXIT_USAGE};
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => WorkerExit::Clean,
        (Some(EXIT_PROTOCOL_ERROR), _) => WorkerExit::ProtocolError,
        (Some(EXIT_SANDBOX_FAILED), _) => WorkerExit::SandboxFailed,
        (Some(EXIT_USAGE), _) => WorkerExit::Usage,
        (_, Some(libc::SIGSYS)) => WorkerExit::SeccompViolation,
        (_, Some(libc::SIGXCPU)) => WorkerExit::CpuLimit,
        (_, Some(libc::SIGABRT)) => WorkerExit::MemoryLimit,
        (_, Some(libc::SIGKILL)) => WorkerExit::Killed,
        _ => WorkerExit::Crash,
    }
}
