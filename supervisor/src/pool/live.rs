//! One live worker as its driver sees it: the process, its socket
//! registered with the runtime's reactor, and the non-blocking I/O on that
//! socket (read a reply by a deadline, send a request, peek whether an
//! idle worker hung up), plus starting and retiring the process off the
//! runtime's threads. The process's own life (spawn, reap, CPU time, how it
//! ended) is `omni_worker::process`.

use crate::config::Config;
use omni_worker::process::{self, CpuClock, Ended, Reaped, WorkerExit};
use omni_worker::protocol::{
    FrameError, FrameReader, Reply, ReplyPoll, SandboxReport, EXIT_SANDBOX_FAILED, MAX_REPLY_FRAME,
};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};
use tokio::io::Interest;

/// Why a worker, and so the pool (at start-up or on reload), could not start.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("worker sandbox could not be applied (worker exited with code {EXIT_SANDBOX_FAILED}); fix the environment or set sandbox = \"off\" explicitly")]
    SandboxFailed,
    #[error("worker failed to start: {0}")]
    StartFailed(String),
}

/// A live worker owned by one driver.
pub struct Live {
    pub child: Child,
    pub stream: WorkerSocket,
    /// A send failed: the next read decides how the worker ended.
    pub broken: bool,
    pub pid: u32,
    pub generation: u64,
    pub served: u64,
    pub recycle_after: u64,
    /// The policies this worker said it kept in its cache.
    pub kept: KeptPolicies,

    /// Outgoing frames (reused).
    pub buf: Vec<u8>,
    /// Incoming frames: one `recv` usually brings a whole reply.
    pub reader: FrameReader,
    /// How long to poll for this worker's next reply before sleeping.
    pub reply_poll: ReplyPoll,
    /// The worker's CPU time, read after requests to recycle it in time.
    pub cpu: CpuClock,
}

/// Cache keys this worker said it kept (`Evaluated::kept`), most recent
/// last, bounded like its cache. Only the worker knows its cache rule; this
/// remembers its answers. It is wrong only when the worker has evicted a
/// policy since, and then the worker answers `PolicyNotCached` and gets the
/// text.
#[derive(Debug)]
pub struct KeptPolicies {
    keys: VecDeque<String>,
    cap: usize,
}

impl KeptPolicies {
    pub fn new(cap: usize) -> KeptPolicies {
        KeptPolicies {
            keys: VecDeque::new(),
            cap,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    /// Records the worker's answer for `key`.
    pub fn record(&mut self, key: &str, kept: bool) {
        if kept && self.keys.back().is_some_and(|k| k == key) {
            // Already the most recent (the common case under steady load).
            return;
        }
        self.forget(key);
        if kept {
            if self.keys.len() >= self.cap.max(1) {
                self.keys.pop_front();
            }
            self.keys.push_back(key.to_string());
        }
    }

    /// The worker no longer holds `key`.
    pub fn forget(&mut self, key: &str) {
        self.keys.retain(|k| k != key);
    }
}

impl Live {
    /// Spawns one worker of `exe` and waits for its `Ready` frame.
    pub fn start(
        exe: &Path,
        cfg: &Config,
        generation: u64,
        recycle_after: u64,
    ) -> Result<(Live, SandboxReport), PoolError> {
        let wc = cfg.worker_config();
        let mut wp = process::spawn_worker(exe, &["__worker"], &wc).map_err(|e| {
            PoolError::StartFailed(format!("cannot start the process: {}", e.kind()))
        })?;
        let pid = wp.pid();
        // Its stderr goes to the log as data, with its pid, from the start
        // (a sandbox that cannot be applied says why there).
        if let Some(stderr) = wp.child.stderr.take() {
            crate::logging::forward_worker_stderr(stderr, pid);
        }
        let timeout = Duration::from_millis(cfg.worker.start_timeout_ms);
        if wp.stream.set_read_timeout(Some(timeout)).is_err() {
            process::reap(&mut wp.child, true);
            return Err(PoolError::StartFailed(
                "cannot set up the worker socket".into(),
            ));
        }
        let ready = wp.wait_ready();
        let report = match ready {
            Ok(r) => r,
            Err(e) => {
                let timed_out = matches!(&e, FrameError::Io(io) if is_timeout(io));
                let ended = process::reap(&mut wp.child, true).ended;
                if ended.exit() == WorkerExit::SandboxFailed {
                    return Err(PoolError::SandboxFailed);
                }
                let why = if timed_out {
                    "it did not report ready in time".to_string()
                } else {
                    format!("it ended before reporting ready ({ended})")
                };
                return Err(PoolError::StartFailed(why));
            }
        };
        let _ = wp.stream.set_read_timeout(None);
        // From here on the runtime's reactor waits on the socket.
        let stream = match wp
            .stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(wp.stream))
        {
            Ok(s) => s,
            Err(e) => {
                process::reap(&mut wp.child, true);
                return Err(PoolError::StartFailed(format!(
                    "cannot watch the worker socket: {}",
                    e.kind()
                )));
            }
        };
        let live = Live {
            child: wp.child,
            stream,
            broken: false,
            pid,
            generation,
            served: 0,
            recycle_after,
            kept: KeptPolicies::new(cfg.worker.cache_entries),
            buf: Vec::with_capacity(64 * 1024),
            reader: FrameReader::new(MAX_REPLY_FRAME),
            reply_poll: ReplyPoll::new(Duration::from_micros(cfg.pool.reply_poll_max_us)),
            cpu: CpuClock::of(pid),
        };
        Ok((live, report))
    }

    /// Closes the socket (the worker exits when it sees the end) and hands
    /// back the process, to retire.
    pub fn close(self) -> Child {
        let Live { child, stream, .. } = self;
        drop(stream);
        child
    }
}

/// The supervisor's end of a worker's socket pair, registered with the
/// runtime's reactor.
pub type WorkerSocket = tokio::net::UnixStream;

/// Reads through the runtime's reactor (`try_read`), without blocking:
/// `WouldBlock` when the socket is empty (which also tells the reactor to
/// wait for the next edge), or when the reactor has not yet seen it become
/// readable. What a driver uses before it awaits readiness.
struct ReadViaReactor<'a>(&'a WorkerSocket);

impl Read for ReadViaReactor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// Reads the socket itself (`recv` with `MSG_DONTWAIT`), whatever the
/// reactor last saw: what polling needs, as the reactor may not run while
/// this thread polls.
struct ReadBypassingReactor<'a>(&'a WorkerSocket);

impl Read for ReadBypassingReactor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: recv into the caller's buffer with its real length, on a
        // socket we own.
        let n = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// Reads the next reply, waiting at most until `until`. A reply already in
/// the reader's buffer (one `recv` can bring several) is decoded without a
/// system call.
pub async fn read_reply(w: &mut Live, until: Instant, poll: Duration) -> Exchange {
    // Polling holds this runtime thread (only done when the pool is lightly
    // loaded, so nothing else waits for it), giving the CPU to other
    // processes between polls: the worker may be on this CPU.
    let stop_polling = (Instant::now() + poll).min(until);
    loop {
        let polling = Instant::now() < stop_polling;
        let read = if polling {
            w.reader
                .read::<Reply, _>(&mut ReadBypassingReactor(&w.stream))
        } else {
            w.reader.read::<Reply, _>(&mut ReadViaReactor(&w.stream))
        };
        match read {
            Ok(reply) => return Exchange::Reply(reply),
            Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Exchange::Broken,
        }
        if polling {
            std::thread::yield_now();
            continue;
        }
        match tokio::time::timeout_at(until.into(), w.stream.readable()).await {
            Err(_) => return Exchange::Deadline,
            Ok(Err(_)) => return Exchange::Broken,
            Ok(Ok(())) => {}
        }
    }
}

/// How often a driver waiting for a reply looks whether its worker is
/// stopped: a stopped worker costs its request at most this long, rather
/// than its deadline and the blame for it.
pub const STALL_CHECK: Duration = Duration::from_millis(100);

/// [`read_reply`], looking every [`STALL_CHECK`] (and at the deadline)
/// whether the worker is stopped: `Stalled` then, whatever the deadline.
/// A request cannot stop its own worker (no system call of the language
/// does, and the seccomp filter refuses `kill`), so a stopped worker is
/// never the request's fault. One `/proc` read per check, only for a reply
/// that is late.
pub async fn read_reply_watching(w: &mut Live, until: Instant, poll: Duration) -> Exchange {
    let mut poll = poll;
    loop {
        let check_at = (Instant::now() + STALL_CHECK).min(until);
        match read_reply(w, check_at, poll).await {
            Exchange::Deadline => {
                if process::is_stopped(w.pid) {
                    return Exchange::Stalled;
                }
                if Instant::now() >= until {
                    return Exchange::Deadline;
                }
            }
            other => return other,
        }
        poll = Duration::ZERO;
    }
}

/// Writes all of `data` without blocking past `until`.
pub async fn send_all(stream: &WorkerSocket, mut data: &[u8], until: Instant) -> io::Result<()> {
    while !data.is_empty() {
        match stream.try_io(Interest::WRITABLE, || send_now(stream, data)) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout_at(until.into(), stream.writable()).await {
                    Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(())) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One non-blocking `send` (no SIGPIPE when the worker is gone).
fn send_now(stream: &WorkerSocket, data: &[u8]) -> io::Result<usize> {
    // SAFETY: a valid buffer of `data.len()` bytes on a socket we own.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    match n {
        n if n > 0 => Ok(n as usize),
        0 => Err(io::ErrorKind::WriteZero.into()),
        _ => Err(io::Error::last_os_error()),
    }
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// How one exchange with the worker went.
pub enum Exchange {
    Reply(Reply),
    /// The deadline passed before a reply.
    Deadline,
    /// No reply, and the worker is stopped (`SIGSTOP`, a debugger): it is
    /// not working on the request, so the request is not to blame.
    Stalled,
    /// The worker is gone or spoke nonsense.
    Broken,
}

/// Whether an idle worker has ended or sent bytes nobody asked for
/// (already read into its buffer, or still in the socket).
pub fn idle_ended(w: &Live) -> bool {
    w.reader.buffered() > 0 || !is_would_block(&peek(&w.stream))
}

/// A one-byte `MSG_PEEK` on the socket itself, whatever the reactor last
/// saw: `Ok(0)` at its end, `WouldBlock` when empty and open.
pub fn peek(stream: &WorkerSocket) -> io::Result<usize> {
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer we own, on a socket we own.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub fn is_would_block<T>(r: &io::Result<T>) -> bool {
    matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Kills (when `kill`) and reaps a worker off the runtime's threads: a
/// worker that held a lot of memory can take a while to go.
pub async fn reap_off_runtime(mut child: Child, kill: bool) -> Reaped {
    match tokio::task::spawn_blocking(move || process::reap(&mut child, kill)).await {
        Ok(r) => r,
        Err(_) => Reaped {
            ended: Ended::Exited(-1),
            cpu: Duration::ZERO,
        },
    }
}

/// Retires a worker whose socket is closed: it exits by itself, and one
/// that lingers is killed. Blocks (the pool's reaper thread calls it).
pub fn retire(mut child: Child) {
    let pid = child.id();
    if process::retire(&mut child, Duration::from_secs(2)) {
        tracing::debug!(pid, "retired worker did not exit; killed it");
    }
}

#[cfg(test)]
mod tests {
    use super::KeptPolicies;

    #[test]
    fn kept_policies_follow_the_workers_answers() {
        let mut k = KeptPolicies::new(2);
        k.record("a", true);
        k.record("b", true);
        k.record("c", false);
        assert!(k.contains("a") && k.contains("b") && !k.contains("c"));
        k.record("c", true); // over the bound: the oldest goes
        assert!(!k.contains("a") && k.contains("b") && k.contains("c"));
        k.record("b", false); // the worker no longer has it
        assert!(!k.contains("b"));
        k.forget("c");
        assert!(!k.contains("c"));
    }
}
