//! A worker process's life, seen from its parent: starting it (a Unix
//! socket pair, the child re-executing a binary in worker mode with its end
//! of the socket on fd 3, and the configuration as one JSON argument after
//! `--worker-config`, nothing else inherited: see [`spawn_worker`]),
//! watching its CPU time and whether it is stopped, killing, retiring and
//! reaping it, and the one classification of how it ended ([`Ended::exit`]).
//!
//! The supervisor adds only what a wait status cannot tell: that its own
//! deadline killed the worker, or that it replaced it on purpose.

use crate::protocol::{
    read_frame, write_frame, FrameError, Reply, Request, SandboxReport, MAX_REPLY_FRAME,
};
use crate::worker::WorkerConfig;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

/// The environment a worker gets: nothing inherited from the supervisor
/// (its `OMNID_*` settings, secrets, proxies, locale), only what the
/// supervisor sets itself. The worker needs no variable at all; this one
/// keeps a panic from trying to open files for a backtrace (the seccomp
/// filter would refuse them). docs/security.md lists it.
pub const WORKER_ENV: &[(&str, &str)] = &[("RUST_BACKTRACE", "0")];

/// Starts `exe args… --worker-config <json>` with the socket on fd 3 and
/// nothing else shared with its parent: an empty environment but for
/// [`WORKER_ENV`], working directory `/`, stdin and stdout on /dev/null,
/// stderr a pipe (`child.stderr`; the caller reads it, or the worker's
/// writes there fail), and `SIGKILL` when the parent dies
/// (`PR_SET_PDEATHSIG`, checked against a parent that died during the fork).
///
/// The fork happens on one long-lived thread of this process: the kernel
/// sends the parent-death signal when the *thread* that forked the child
/// ends, and the caller's thread (a runtime's blocking pool) may end
/// long before the process does.
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
        .env_clear()
        .envs(WORKER_ENV.iter().copied())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let parent_pid = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec we only call prctl, getppid, fcntl and
    // dup2, which are async-signal-safe, on fds we own; nothing allocates
    // or locks.
    unsafe {
        cmd.pre_exec(move || {
            if !die_with_parent(parent_pid) {
                // The supervisor died during the fork: nobody to serve.
                libc::_exit(0);
            }
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
    let child = spawn_on_forker(cmd)?;
    drop(child_fd);
    Ok(WorkerProcess {
        child,
        stream: parent,
    })
}

/// Asks the kernel to `SIGKILL` this process when its parent ends, then
/// checks that the parent is still `parent` (it may have ended before the
/// request took effect, and then no signal comes). `false`: it is not.
/// Async-signal-safe (two system calls), so a child may call it between
/// fork and exec; the worker calls it again after changing its uid, which
/// clears the setting.
pub fn die_with_parent(parent: libc::pid_t) -> bool {
    // SAFETY: prctl with integer arguments; getppid has no preconditions.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        ) == 0
            && libc::getppid() == parent
    }
}

/// A spawn request for the forking thread: the command and where its
/// result goes.
type SpawnRequest = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);

/// Runs `cmd.spawn()` on the process's one forking thread (started on
/// first use, alive as long as the process), so the parent-death signal
/// follows the process rather than a thread that may end.
fn spawn_on_forker(cmd: Command) -> std::io::Result<Child> {
    use std::sync::{mpsc, Mutex, OnceLock};
    static FORKER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let forker = FORKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let started = std::thread::Builder::new()
            .name("worker-forker".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = started {
            // Without the thread every spawn below fails with this error.
            eprintln!("omni-worker: cannot start the forking thread: {e}");
        }
        Mutex::new(tx)
    });
    let (reply, result) = std::sync::mpsc::channel();
    let sent = match forker.lock() {
        Ok(tx) => tx.send((cmd, reply)).is_ok(),
        Err(_) => false,
    };
    if !sent {
        return Err(std::io::Error::other("the forking thread is gone"));
    }
    result
        .recv()
        .map_err(|_| std::io::Error::other("the forking thread is gone"))?
}

/// Whether `pid` is stopped (`SIGSTOP`, `SIGTSTP`, a debugger): state `T`
/// or `t` in `/proc/PID/stat`. Such a worker makes no progress on anything
/// it was sent, through no fault of the request. `false` when unreadable.
pub fn is_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may contain
    // spaces and parentheses.
    let state = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .and_then(|rest| rest.chars().next());
    matches!(state, Some('T') | Some('t'))
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

/// Why a worker process ended, from its wait status (`docs/api.md#workers`'s restart
/// reasons, as far as the status alone can tell; see [`Ended::exit`]).
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
    /// The restart reason of `docs/api.md#workers` (`Killed` is reported as `crash`
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
pub fn classify_exit(status: ExitStatus) -> WorkerExit {
    Ended::from_status(status).exit()
}

/// How a reaped worker ended: its exit code, or the signal that ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

impl Ended {
    pub fn from_status(status: ExitStatus) -> Ended {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Ended::Exited(code),
            (None, Some(sig)) => Ended::Signaled(sig),
            (None, None) => Ended::Exited(-1),
        }
    }

    /// Why the worker ended, as far as the status alone can tell: the one
    /// table from exit codes and signals to causes.
    pub fn exit(self) -> WorkerExit {
        use crate::protocol::{EXIT_PROTOCOL_ERROR, EXIT_SANDBOX_FAILED, EXIT_USAGE};
        match self {
            Ended::Exited(0) => WorkerExit::Clean,
            Ended::Exited(EXIT_PROTOCOL_ERROR) => WorkerExit::ProtocolError,
            Ended::Exited(EXIT_SANDBOX_FAILED) => WorkerExit::SandboxFailed,
            Ended::Exited(EXIT_USAGE) => WorkerExit::Usage,
            Ended::Signaled(libc::SIGSYS) => WorkerExit::SeccompViolation,
            Ended::Signaled(libc::SIGXCPU) => WorkerExit::CpuLimit,
            // Rust's allocation-failure handler aborts.
            Ended::Signaled(libc::SIGABRT) => WorkerExit::MemoryLimit,
            Ended::Signaled(libc::SIGKILL) => WorkerExit::Killed,
            _ => WorkerExit::Crash,
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(c) => write!(f, "exit code {c}"),
            Ended::Signaled(s) => write!(f, "signal {}", signal_name(*s)),
        }
    }
}

/// `SIGKILL` for 9, the number for a signal nix does not know.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("{sig}"))
}

/// A reaped worker: how it ended and the CPU time it used in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub ended: Ended,
    pub cpu: Duration,
}

impl Reaped {
    /// Why the worker ended, given its `RLIMIT_CPU`: a `SIGKILL` once its
    /// CPU time reached the limit is the hard limit's, not someone's kill.
    pub fn exit(&self, cpu_limit: Duration) -> WorkerExit {
        match self.ended.exit() {
            WorkerExit::Killed if self.cpu >= cpu_limit => WorkerExit::CpuLimit,
            exit => exit,
        }
    }
}

/// Kills `child` first when `kill`, then reaps it (`wait4`, which also
/// gives its CPU time). Blocks until it has ended.
pub fn reap(child: &mut Child, kill: bool) -> Reaped {
    let pid = child.id() as libc::pid_t;
    if kill {
        // The child is not reaped yet, so the pid cannot have been reused.
        let _ = child.kill();
    }
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 writes it and the status only.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own unreaped child; the pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        // ECHILD: already reaped elsewhere; nothing more to learn.
        return Reaped {
            ended: Ended::Exited(-1),
            cpu: Duration::ZERO,
        };
    }
    let cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
    let ended = if libc::WIFSIGNALED(status) {
        Ended::Signaled(libc::WTERMSIG(status))
    } else {
        Ended::Exited(libc::WEXITSTATUS(status))
    };
    Reaped { ended, cpu }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// Retires a worker whose socket the caller has already closed: it exits by
/// itself, and one that lingers past `grace` is killed. Returns whether it
/// had to be killed. Blocks.
pub fn retire(child: &mut Child, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return false,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                reap(child, true);
                return true;
            }
        }
    }
}

/// `SIGKILL` by pid: the last resort for a worker whose owner is gone (a
/// shutdown that timed out). Prefer [`reap`] with `kill`, which cannot hit
/// a reused pid.
pub fn kill_pid(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A live worker's CPU time (user + system): one `clock_gettime` on its
/// CPU-time clock when the kernel gives one, else `/proc/PID/stat`.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    pid: u32,
    clock: Option<libc::clockid_t>,
    clk_tck: u64,
}

impl CpuClock {
    /// The clock of `pid`, our own live child.
    pub fn of(pid: u32) -> CpuClock {
        let mut clk: libc::clockid_t = 0;
        // SAFETY: the out-pointer is valid; pid is our own live child.
        let r = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clk) };
        let clock = (r == 0 && clock_time(clk).is_some()).then_some(clk);
        // SAFETY: sysconf has no preconditions; it reads a constant.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        CpuClock {
            pid,
            clock,
            clk_tck: if tck > 0 { tck as u64 } else { 100 },
        }
    }

    /// The CPU time used so far.
    pub fn used(&self) -> Option<Duration> {
        self.clock
            .and_then(clock_time)
            .or_else(|| proc_cpu_time(self.pid, self.clk_tck))
    }
}

/// The time of a clock (here: a process's CPU time, user + system).
fn clock_time(clk: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the out-pointer is valid for the call.
    if unsafe { libc::clock_gettime(clk, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

/// CPU time a live process has used (utime + stime from /proc).
fn proc_cpu_time(pid: u32, clk_tck: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / clk_tck.max(1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let lim = Duration::from_secs(10);
        let low = Duration::from_secs(1);
        let exit = |ended, cpu| Reaped { ended, cpu }.exit(lim);
        assert_eq!(
            exit(Ended::Signaled(libc::SIGSYS), low),
            WorkerExit::SeccompViolation
        );
        assert_eq!(
            exit(Ended::Signaled(libc::SIGXCPU), low),
            WorkerExit::CpuLimit
        );
        assert_eq!(
            exit(Ended::Signaled(libc::SIGKILL), lim),
            WorkerExit::CpuLimit
        );
        assert_eq!(
            exit(Ended::Signaled(libc::SIGKILL), low),
            WorkerExit::Killed
        );
        assert_eq!(
            exit(Ended::Signaled(libc::SIGABRT), low),
            WorkerExit::MemoryLimit
        );
        assert_eq!(exit(Ended::Exited(101), low), WorkerExit::Crash);
        assert_eq!(exit(Ended::Exited(0), low), WorkerExit::Clean);
        assert_eq!(Ended::Signaled(libc::SIGSYS).to_string(), "signal SIGSYS");
        assert_eq!(Ended::Exited(66).to_string(), "exit code 66");
    }
}
