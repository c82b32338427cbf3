//! The worker pool: N worker processes, each driven by its own dispatcher
//! thread that takes jobs from one bounded crossbeam queue. A dispatcher
//! owns its worker outright: it sends a request, waits for the reply up to
//! the request's deadline, and past it kills (SIGKILL), reaps and respawns.
//!
//! A request whose evaluation killed its worker is answered with the reason
//! and never retried on another worker: a poison request must not take the
//! pool down one worker at a time. Policy ids that keep killing workers are
//! quarantined. Planned replacements (recycling after `max_requests`, CPU
//! use, or a configuration roll) start the new worker before retiring the
//! old one, so capacity never drops for them.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::restart::{classify, Ended, Intensity, Quarantine, RestartReason, Window};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use omni_worker::protocol::{
    encode_frame, ErrorCode, Failure, FrameError, FrameReader, Outcome, PolicySource, Reply,
    Request, RequestOptions, SandboxReport, EXIT_SANDBOX_FAILED, MAX_REPLY_FRAME,
};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// What an evaluation needs; built by the HTTP side, consumed by a dispatcher.
#[derive(Debug)]
pub struct Work {
    pub request_id: String,
    /// For logs only.
    pub tenant: Option<String>,
    /// `sha256:` of the policy text.
    pub policy_id: String,
    /// What quarantine counts kills by: the policy id, per tenant, so one
    /// tenant's quarantine tells nothing about another's policies.
    pub quarantine_key: String,
    /// The key the worker caches the compiled policy under: the policy id,
    /// plus a suffix when the tenant or compile options differ from the
    /// deployment default, so a cache hit never crosses tenants or options.
    pub cache_key: String,
    pub text: String,
    pub context: Option<Vec<u8>>,
    pub now_unix_nanos: i64,
    pub options: RequestOptions,
    pub deadline: Duration,
}

/// How a job ended.
#[derive(Debug)]
pub enum JobResult {
    /// The worker processed the policy.
    Done(Box<Outcome>),
    /// The worker answered with an error (a limit, a bad context).
    Failed(Failure),
    /// The evaluation killed its worker (or ran past its deadline and was killed).
    Killed(RestartReason),
    /// The policy was quarantined while the job waited.
    Quarantined(Duration),
    /// The job waited in the queue too long, or the pool is stopping.
    Expired,
    /// The job's slot lost its worker and is backing off.
    Unavailable,
}

/// A reply with where the time went before the worker saw it.
#[derive(Debug)]
pub struct JobReply {
    pub result: JobResult,
    pub queue_time: Duration,
}

pub struct Job {
    pub work: Work,
    pub enqueued: Instant,
    pub reply: tokio::sync::oneshot::Sender<JobReply>,
}

/// Why a job could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    Full,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    Starting = 0,
    Idle = 1,
    Busy = 2,
    Down = 3,
}

/// Why the pool could not start or keep going.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("worker sandbox could not be applied (worker exited with code {EXIT_SANDBOX_FAILED}); fix the environment or set sandbox = \"off\" explicitly")]
    SandboxFailed,
    #[error("worker failed to start: {0}")]
    StartFailed(String),
}

/// State shared between the HTTP side and the dispatcher threads.
pub struct PoolShared {
    exe: PathBuf,
    config: RwLock<Arc<Config>>,
    generation: AtomicU64,
    slots: Vec<AtomicU8>,
    /// Pid of each slot's current worker (0: none), for the last-resort
    /// kill when a shutdown times out.
    pids: Vec<AtomicU32>,
    stopping: AtomicBool,
    roll_lock: Mutex<()>,
    intensity: Mutex<Intensity>,
    failed_starts: Mutex<Window>,
    quarantine: Mutex<Quarantine>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    /// Set when more than `max_failed_starts` starts failed in the period.
    fatal: Mutex<Option<String>>,
    fatal_notify: tokio::sync::Notify,
    clk_tck: u64,
}

/// Handle kept by the HTTP side.
pub struct WorkerPool {
    shared: Arc<PoolShared>,
    tx: Mutex<Option<Sender<Job>>>,
    rx: Receiver<Job>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    reaper: Mutex<Option<Sender<Retired>>>,
    reaper_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub sandbox: SandboxReport,
}

/// A live worker owned by one dispatcher.
struct Live {
    child: Child,
    stream: UnixStream,
    pid: u32,
    generation: u64,
    served: u64,
    recycle_after: u64,
    /// Cache keys this worker has compiled and keeps (most recent last).
    cached: VecDeque<String>,
    cache_cap: usize,
    /// Outgoing frames (reused).
    buf: Vec<u8>,
    /// Incoming frames: one `recv` usually brings a whole reply.
    reader: FrameReader,
    /// The worker's CPU-time clock (one `clock_gettime` instead of reading
    /// `/proc/PID/stat` after every request), when the kernel gives one.
    cpu_clock: Option<libc::clockid_t>,
}

/// A worker being retired in the background: closing its socket makes it exit.
struct Retired {
    child: Child,
    pid: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl PoolShared {
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_state(&self, slot: usize, s: SlotState) {
        if let Some(a) = self.slots.get(slot) {
            a.store(s as u8, Ordering::Release);
        }
    }

    fn set_pid(&self, slot: usize, pid: u32) {
        if let Some(a) = self.pids.get(slot) {
            a.store(pid, Ordering::Release);
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Counts of slots by state: (idle, busy, starting, down).
    pub fn states(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for s in &self.slots {
            match s.load(Ordering::Acquire) {
                0 => c.2 += 1,
                1 => c.0 += 1,
                2 => c.1 += 1,
                _ => c.3 += 1,
            }
        }
        c
    }

    fn random_below(&self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            crate::ids::random_u64() % n
        }
    }

    fn recycle_after(&self, cfg: &Config) -> u64 {
        let max = cfg.worker.max_requests;
        let jitter = max.saturating_mul(cfg.pool.recycle_jitter_percent) / 100;
        max - self.random_below(jitter + 1).min(max.saturating_sub(1))
    }

    fn set_fatal(&self, why: String) {
        let mut f = lock(&self.fatal);
        if f.is_none() {
            *f = Some(why);
            self.fatal_notify.notify_one();
        }
    }

    /// Spawns one worker and waits for its `Ready` frame.
    fn spawn(&self, cfg: &Config) -> Result<(Live, SandboxReport), PoolError> {
        let wc = cfg.worker_config();
        let mut wp = omni_worker::spawn_worker(&self.exe, &["__worker"], &wc).map_err(|e| {
            PoolError::StartFailed(format!("cannot start the process: {}", e.kind()))
        })?;
        let pid = wp.pid();
        let timeout = Duration::from_millis(cfg.worker.start_timeout_ms);
        if wp.stream.set_read_timeout(Some(timeout)).is_err() {
            let _ = reap(&mut wp.child, true);
            return Err(PoolError::StartFailed(
                "cannot set up the worker socket".into(),
            ));
        }
        let ready = wp.wait_ready();
        let report = match ready {
            Ok(r) => r,
            Err(e) => {
                let timed_out = matches!(&e, FrameError::Io(io) if is_timeout(io));
                let (ended, _) = reap(&mut wp.child, true);
                if ended == Ended::Exited(EXIT_SANDBOX_FAILED) {
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
        let live = Live {
            child: wp.child,
            stream: wp.stream,
            pid,
            generation: self.generation.load(Ordering::Acquire),
            served: 0,
            recycle_after: self.recycle_after(cfg),
            cached: VecDeque::new(),
            cache_cap: cfg.worker.cache_entries,
            buf: Vec::with_capacity(64 * 1024),
            reader: FrameReader::new(MAX_REPLY_FRAME),
            cpu_clock: cpu_clock(pid),
        };
        Ok((live, report))
    }

    /// Records a failed start; past the limit the service gives up.
    fn failed_start(&self, cfg: &Config, err: &PoolError) {
        let n = lock(&self.failed_starts).record(
            Instant::now(),
            Duration::from_secs(cfg.pool.failed_start_period_s),
        );
        tracing::error!(error = %err, failed_starts = n, "worker start failed");
        if n > cfg.pool.max_failed_starts as usize {
            let why = format!(
                "{n} failed worker starts within {} s; giving up",
                cfg.pool.failed_start_period_s
            );
            crate::systemd::status(&why);
            self.set_fatal(why);
        }
    }

    /// Records an unplanned restart; returns the back-off before respawning.
    fn unplanned_restart(&self, cfg: &Config) -> Duration {
        let delay = lock(&self.intensity).record(
            Instant::now(),
            cfg.pool.restart_intensity,
            Duration::from_secs(cfg.pool.restart_period_s),
            Duration::from_millis(cfg.pool.backoff_initial_ms),
            Duration::from_millis(cfg.pool.backoff_max_ms),
        );
        if !delay.is_zero() {
            let msg = format!(
                "crash loop: more than {} worker restarts in {} s, backing off",
                cfg.pool.restart_intensity, cfg.pool.restart_period_s
            );
            tracing::warn!(backoff_ms = delay.as_millis() as u64, "{msg}");
            crate::systemd::status(&msg);
        }
        delay
    }

    /// Over the restart intensity right now.
    pub fn in_backoff(&self) -> bool {
        let cfg = self.config();
        lock(&self.intensity).in_backoff(
            Instant::now(),
            cfg.pool.restart_intensity,
            Duration::from_secs(cfg.pool.restart_period_s),
        )
    }

    /// `Some(remaining cool-down)` when the policy id is quarantined.
    pub fn quarantined(&self, policy_id: &str) -> Option<Duration> {
        lock(&self.quarantine).check(policy_id, Instant::now())
    }

    pub fn quarantined_count(&self) -> usize {
        lock(&self.quarantine).active(Instant::now())
    }

    fn record_kill(&self, cfg: &Config, key: &str, policy_id: &str) {
        let q = lock(&self.quarantine).record_kill(
            key,
            Instant::now(),
            cfg.pool.quarantine_threshold,
            Duration::from_secs(cfg.pool.quarantine_window_s),
            Duration::from_secs(cfg.pool.quarantine_cooldown_s),
        );
        if q {
            tracing::warn!(
                policyId = policy_id,
                cooldown_s = cfg.pool.quarantine_cooldown_s,
                "policy quarantined: it killed {} workers within {} s",
                cfg.pool.quarantine_threshold,
                cfg.pool.quarantine_window_s
            );
        }
    }
}

impl WorkerPool {
    /// Starts `config.workers` workers and their dispatchers. Fails when any
    /// worker cannot start (a sandbox that cannot be applied is a start-up error).
    pub fn start(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<WorkerPool, PoolError> {
        // Workers re-execute the image this supervisor is running, not the
        // file at its path: a package upgrade that replaces the file must not
        // give an old supervisor new workers (the protocol is not versioned).
        let exe = std::path::PathBuf::from("/proc/self/exe");
        if !exe.exists() {
            return Err(PoolError::StartFailed(
                "cannot find own binary: /proc is not mounted".into(),
            ));
        }
        let n = config.workers;
        // SAFETY: sysconf has no preconditions; it reads a constant.
        let clk = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let shared = Arc::new(PoolShared {
            exe,
            config: RwLock::new(config.clone()),
            generation: AtomicU64::new(0),
            pids: (0..n).map(|_| AtomicU32::new(0)).collect(),
            slots: (0..n)
                .map(|_| AtomicU8::new(SlotState::Starting as u8))
                .collect(),
            stopping: AtomicBool::new(false),
            roll_lock: Mutex::new(()),
            intensity: Mutex::new(Intensity::default()),
            failed_starts: Mutex::new(Window::default()),
            quarantine: Mutex::new(Quarantine::default()),
            next_id: AtomicU64::new(1),
            metrics,
            fatal: Mutex::new(None),
            fatal_notify: tokio::sync::Notify::new(),
            clk_tck: if clk > 0 { clk as u64 } else { 100 },
        });
        let mut lives = Vec::with_capacity(n);
        let mut report = SandboxReport::default();
        for i in 0..n {
            match shared.spawn(&config) {
                Ok((live, r)) => {
                    if i == 0 {
                        report = r;
                    }
                    lives.push(live);
                }
                Err(e) => {
                    for mut l in lives {
                        let _ = reap(&mut l.child, true);
                    }
                    return Err(e);
                }
            }
        }
        let (rtx, rrx) = crossbeam_channel::unbounded::<Retired>();
        let reaper_thread = std::thread::Builder::new()
            .name("omnid-reaper".into())
            .spawn(move || {
                for r in rrx {
                    retire(r);
                }
            })
            .map_err(|e| PoolError::StartFailed(format!("cannot start a thread: {}", e.kind())))?;
        let (tx, rx) = crossbeam_channel::bounded::<Job>(config.pool.queue);
        let mut threads = Vec::with_capacity(n);
        for (i, live) in lives.into_iter().enumerate() {
            let sh = shared.clone();
            let rx = rx.clone();
            let rtx = rtx.clone();
            let t = std::thread::Builder::new()
                .name(format!("omnid-dispatch-{i}"))
                .spawn(move || {
                    Dispatcher {
                        slot: i,
                        shared: sh,
                        reaper: rtx,
                    }
                    .run(live, rx)
                })
                .map_err(|e| {
                    PoolError::StartFailed(format!("cannot start a thread: {}", e.kind()))
                })?;
            threads.push(t);
        }
        Ok(WorkerPool {
            shared,
            tx: Mutex::new(Some(tx)),
            rx,
            threads: Mutex::new(threads),
            reaper: Mutex::new(Some(rtx)),
            reaper_thread: Mutex::new(Some(reaper_thread)),
            sandbox: report,
        })
    }

    pub fn shared(&self) -> &Arc<PoolShared> {
        &self.shared
    }

    pub fn size(&self) -> usize {
        self.shared.slots.len()
    }

    pub fn queue_depth(&self) -> usize {
        self.rx.len()
    }

    /// Queues a job without waiting: a full queue is refused at once.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        let tx = lock(&self.tx);
        let Some(tx) = tx.as_ref() else {
            return Err(SubmitError::Stopped);
        };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }

    /// At least one worker can take work now or in a moment: a slot that is
    /// starting (a respawn, or a planned replacement while the old worker
    /// still exists) counts; only slots that are down (back-off, failed
    /// starts) do not.
    pub fn has_capacity(&self) -> bool {
        let (idle, busy, starting, _) = self.shared.states();
        idle + busy + starting > 0
    }

    /// Applies a reloaded configuration and rolls every worker, one at a
    /// time. A probe worker is started with the new configuration first: if
    /// it cannot start, the reload is refused and nothing changes.
    pub fn reload(&self, config: Arc<Config>) -> Result<(), PoolError> {
        let (probe, _) = self.shared.spawn(&config)?;
        let Live {
            child, stream, pid, ..
        } = probe;
        drop(stream);
        retire(Retired { child, pid });
        match self.shared.config.write() {
            Ok(mut c) => *c = config,
            Err(p) => *p.into_inner() = config,
        }
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Resolves when the pool has given up (too many failed starts).
    pub async fn fatal(&self) -> String {
        loop {
            if let Some(why) = lock(&self.shared.fatal).clone() {
                return why;
            }
            self.shared.fatal_notify.notified().await;
        }
    }

    /// Stops taking jobs, lets the dispatchers finish the queued ones, then
    /// retires every worker and waits for them.
    pub fn shutdown(&self, timeout: Duration) {
        lock(&self.tx).take();
        self.shared.stopping.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            // Dispatchers exit once the queue is drained and closed.
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        // Dispatchers still busy past the timeout: their workers go now.
        for p in &self.shared.pids {
            let pid = p.swap(0, Ordering::AcqRel);
            if pid != 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        lock(&self.reaper).take();
        if let Some(t) = lock(&self.reaper_thread).take() {
            while !t.is_finished() && Instant::now() < deadline + Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Reads through a deadline: each read waits (in `ppoll`) at most until `until`.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        wait_for(self.stream, libc::POLLIN, self.until)?;
        let mut s = self.stream;
        s.read(buf)
    }
}

/// Waits until the socket is ready for `events` or `until` passes (`TimedOut`).
fn wait_for(stream: &UnixStream, events: libc::c_short, until: Instant) -> io::Result<()> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut pfd = libc::pollfd {
            fd: stream.as_raw_fd(),
            events,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: left.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd for a socket we own; a valid timespec;
        // no signal mask.
        let n = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        if n > 0 {
            // Readable, writable, or hung up/errored: the next call says which.
            return Ok(());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Writes all of `data` without blocking past `until`.
fn send_all(stream: &UnixStream, mut data: &[u8], until: Instant) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: a valid buffer of `data.len()` bytes on a socket we own.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        let e = if n == 0 {
            io::Error::from(io::ErrorKind::WriteZero)
        } else {
            io::Error::last_os_error()
        };
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => wait_for(stream, libc::POLLOUT, until)?,
            _ => return Err(e),
        }
    }
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// How one exchange with the worker went.
enum Exchange {
    Reply(Reply),
    /// The deadline passed before a reply.
    Deadline,
    /// The worker is gone or spoke nonsense.
    Broken,
}

/// Answers a job that cannot be served now (its slot is backing off).
fn unavailable(job: Job) {
    let queue_time = job.enqueued.elapsed();
    let _ = job.reply.send(JobReply {
        result: JobResult::Unavailable,
        queue_time,
    });
}

/// Whether an idle worker has ended or sent bytes nobody asked for
/// (already read into its buffer, or still in the socket).
fn idle_ended(w: &Live) -> bool {
    w.reader.buffered() > 0 || peer_gone(&w.stream)
}

/// Whether an idle worker's socket shows its end: hang-up, error, or data
/// nobody asked for (which is a protocol error, so the worker goes too).
fn peer_gone(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a socket we own; zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// Kills (when `kill`) and reaps a worker; returns how it ended and its CPU time.
fn reap(child: &mut Child, kill: bool) -> (Ended, Duration) {
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
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // ECHILD: already reaped elsewhere; nothing more to learn.
        return (Ended::Exited(-1), Duration::ZERO);
    }
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    let ended = if libc::WIFSIGNALED(status) {
        Ended::Signaled(libc::WTERMSIG(status))
    } else {
        Ended::Exited(libc::WEXITSTATUS(status))
    };
    (ended, cpu)
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// Retires a worker: its socket is already closed, so it exits by itself;
/// one that lingers is killed.
fn retire(mut r: Retired) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match r.child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                tracing::debug!(pid = r.pid, "retired worker did not exit; killing it");
                let _ = reap(&mut r.child, true);
                return;
            }
        }
    }
}

/// The CPU-time clock of process `pid`, if the kernel gives one.
fn cpu_clock(pid: u32) -> Option<libc::clockid_t> {
    let mut clk: libc::clockid_t = 0;
    // SAFETY: the out-pointer is valid; pid is our own live child.
    let r = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clk) };
    (r == 0 && clock_time(clk).is_some()).then_some(clk)
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
fn cpu_time(pid: u32, clk_tck: u64) -> Option<Duration> {
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

struct Dispatcher {
    slot: usize,
    shared: Arc<PoolShared>,
    reaper: Sender<Retired>,
}

impl Dispatcher {
    fn run(self, first: Live, rx: Receiver<Job>) {
        let mut live = Some(first);
        let mut respawn_at = Instant::now();
        // A job taken from the queue just as its worker turned out dead; it
        // never ran, so it goes to the replacement.
        let mut pending: Option<Job> = None;
        loop {
            if live.is_none() {
                if self.shared.stopping() && rx.is_empty() && pending.is_none() {
                    break;
                }
                self.shared.set_state(self.slot, SlotState::Down);
                let now = Instant::now();
                if now < respawn_at {
                    // Backing off: do not hold a client while waiting.
                    if let Some(job) = pending.take() {
                        unavailable(job);
                    }
                    std::thread::sleep((respawn_at - now).min(Duration::from_millis(50)));
                    continue;
                }
                self.shared.set_state(self.slot, SlotState::Starting);
                let cfg = self.shared.config();
                match self.shared.spawn(&cfg) {
                    Ok((l, _)) => {
                        tracing::debug!(slot = self.slot, pid = l.pid, "worker started");
                        live = Some(l);
                    }
                    Err(e) => {
                        self.shared.failed_start(&cfg, &e);
                        self.shared.set_state(self.slot, SlotState::Down);
                        if let Some(job) = pending.take() {
                            unavailable(job);
                        }
                        respawn_at = Instant::now() + Duration::from_millis(200);
                        continue;
                    }
                }
            }
            let Some(mut w) = live.take() else { continue };
            self.shared.set_pid(self.slot, w.pid);
            // A reload bumped the generation: roll this worker, one slot at a time.
            let gen = self.shared.generation.load(Ordering::Acquire);
            let mut wait = Duration::from_millis(250);
            if w.generation != gen && !self.shared.stopping() && pending.is_none() {
                match self.shared.roll_lock.try_lock() {
                    Ok(_guard) => {
                        w = self.replace(w, "configuration reload");
                        self.shared.set_pid(self.slot, w.pid);
                    }
                    Err(_) => wait = Duration::from_millis(20),
                }
            }
            self.shared.set_state(self.slot, SlotState::Idle);
            let job = match pending.take() {
                Some(job) => job,
                None => match rx.recv_timeout(wait) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => {
                        if idle_ended(&w) {
                            respawn_at = Instant::now() + self.died_idle(w);
                        } else {
                            live = Some(w);
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        live = Some(w);
                        break;
                    }
                },
            };
            // A worker that died while idle (the OOM killer, an operator's
            // kill) is replaced without charging its death to this job.
            if idle_ended(&w) {
                respawn_at = Instant::now() + self.died_idle(w);
                pending = Some(job);
                continue;
            }
            self.shared.set_state(self.slot, SlotState::Busy);
            match self.serve(&mut w, job) {
                Ok(()) => {
                    live = Some(self.maybe_recycle(w));
                }
                Err(delay) => {
                    self.shared.set_pid(self.slot, 0);
                    respawn_at = Instant::now() + delay;
                }
            }
        }
        self.shared.set_state(self.slot, SlotState::Down);
        if let Some(w) = live {
            self.retire(w);
        }
        self.shared.set_pid(self.slot, 0);
    }

    /// Reaps a worker found dead between requests; returns the back-off.
    fn died_idle(&self, mut w: Live) -> Duration {
        let cfg = self.shared.config();
        self.shared.set_state(self.slot, SlotState::Down);
        let (ended, cpu) = reap(&mut w.child, true);
        self.shared.set_pid(self.slot, 0);
        let reason = classify(ended, cpu, Duration::from_secs(cfg.worker.cpu_seconds));
        self.shared.metrics.restart(reason);
        tracing::warn!(
            slot = self.slot,
            reason = reason.as_str(),
            ended = %ended,
            served = w.served,
            "worker died between requests; restarting it"
        );
        self.shared.unplanned_restart(&cfg)
    }

    fn retire(&self, w: Live) {
        let Live {
            child, stream, pid, ..
        } = w;
        drop(stream);
        let r = Retired { child, pid };
        if let Err(e) = self.reaper.send(r) {
            retire(e.into_inner());
        }
    }

    /// Starts a replacement, then retires `old`. Keeps `old` if the start fails.
    fn replace(&self, old: Live, why: &str) -> Live {
        let cfg = self.shared.config();
        self.shared.set_state(self.slot, SlotState::Starting);
        match self.shared.spawn(&cfg) {
            Ok((new, _)) => {
                tracing::info!(
                    slot = self.slot,
                    reason = RestartReason::Recycled.as_str(),
                    served = old.served,
                    "worker recycled ({why})"
                );
                self.shared.metrics.restart(RestartReason::Recycled);
                self.retire(old);
                new
            }
            Err(e) => {
                self.shared.failed_start(&cfg, &e);
                old
            }
        }
    }

    fn maybe_recycle(&self, w: Live) -> Live {
        let cfg = self.shared.config();
        if w.served >= w.recycle_after {
            return self.replace(w, "max_requests");
        }
        // RLIMIT_CPU counts the worker's whole life: recycle well before it.
        let limit = Duration::from_secs(cfg.worker.cpu_seconds);
        let used = match w.cpu_clock {
            Some(clk) => clock_time(clk),
            None => None,
        };
        if let Some(used) = used.or_else(|| cpu_time(w.pid, self.shared.clk_tck)) {
            if used * 5 >= limit * 4 {
                return self.replace(w, "cpu time");
            }
        }
        w
    }

    /// Serves one job. `Err(delay)`: the worker is gone; respawn after `delay`.
    fn serve(&self, w: &mut Live, job: Job) -> Result<(), Duration> {
        let Job {
            mut work,
            enqueued,
            reply,
        } = job;
        let queue_time = enqueued.elapsed();
        if reply.is_closed() {
            // The client has gone; do not spend a worker on it.
            return Ok(());
        }
        let answer = move |result: JobResult| {
            let _ = reply.send(JobReply { result, queue_time });
        };
        let cfg = self.shared.config();
        if queue_time > work.deadline + Duration::from_millis(cfg.worker.timeout_ms) * 8
            || self.shared.stopping() && queue_time > Duration::from_millis(cfg.drain_timeout_ms)
        {
            answer(JobResult::Expired);
            return Ok(());
        }
        if let Some(left) = self.shared.quarantined(&work.quarantine_key) {
            answer(JobResult::Quarantined(left));
            return Ok(());
        }
        let until = Instant::now() + work.deadline;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let cached = w.cached.iter().any(|k| *k == work.cache_key);
        let mut text = Some(std::mem::take(&mut work.text));
        let mut req = Request {
            id,
            policy: if cached {
                PolicySource::Cached {
                    policy_id: work.cache_key.clone(),
                }
            } else {
                PolicySource::Text {
                    policy_id: work.cache_key.clone(),
                    text: text.take().unwrap_or_default(),
                }
            },
            context: work.context.take(),
            now_unix_nanos: work.now_unix_nanos,
            options: std::mem::take(&mut work.options),
        };
        loop {
            match self.exchange(w, &req, until) {
                Exchange::Reply(Reply::Done(o)) if o.id == id => {
                    w.served += 1;
                    self.note_cache(w, &work.cache_key, &o);
                    self.shared.metrics.cache(o.cache_hit);
                    answer(JobResult::Done(o));
                    return Ok(());
                }
                Exchange::Reply(Reply::Failed(f)) if f.id == id => {
                    if f.code == ErrorCode::PolicyNotCached {
                        if let Some(t) = text.take() {
                            // The worker evicted it: resend the text, once.
                            w.cached.retain(|k| *k != work.cache_key);
                            req.policy = PolicySource::Text {
                                policy_id: work.cache_key.clone(),
                                text: t,
                            };
                            continue;
                        }
                    }
                    w.served += 1;
                    answer(JobResult::Failed(f));
                    return Ok(());
                }
                Exchange::Deadline => {
                    // Whatever the wait status says, the deadline killed it.
                    let reason = RestartReason::Timeout;
                    let (ended, _) = reap(&mut w.child, true);
                    self.shared.set_state(self.slot, SlotState::Down);
                    self.shared.set_pid(self.slot, 0);
                    self.killed(w, &work, reason, &cfg, ended);
                    answer(JobResult::Killed(reason));
                    return Err(self.shared.unplanned_restart(&cfg));
                }
                Exchange::Reply(_) | Exchange::Broken => {
                    let (ended, cpu) = reap(&mut w.child, true);
                    self.shared.set_state(self.slot, SlotState::Down);
                    self.shared.set_pid(self.slot, 0);
                    let reason = classify(ended, cpu, Duration::from_secs(cfg.worker.cpu_seconds));
                    self.killed(w, &work, reason, &cfg, ended);
                    answer(JobResult::Killed(reason));
                    return Err(self.shared.unplanned_restart(&cfg));
                }
            }
        }
    }

    fn killed(&self, w: &Live, work: &Work, reason: RestartReason, cfg: &Config, ended: Ended) {
        self.shared.metrics.restart(reason);
        tracing::warn!(
            requestId = %work.request_id,
            tenant = work.tenant.as_deref().unwrap_or("-"),
            policyId = %work.policy_id,
            slot = self.slot,
            reason = reason.as_str(),
            ended = %ended,
            served = w.served,
            "worker restarted"
        );
        self.shared
            .record_kill(cfg, &work.quarantine_key, &work.policy_id);
    }

    fn note_cache(&self, w: &mut Live, key: &str, o: &Outcome) {
        // The worker caches policies that compiled without any diagnostic.
        let kept = o.cache_hit || (!o.has_errors && o.diagnostics_json.trim() == "[]");
        if kept && w.cached.back().is_some_and(|k| k == key) {
            // Already the most recent (the common case under steady load).
            return;
        }
        w.cached.retain(|k| k != key);
        if kept {
            if w.cached.len() >= w.cache_cap.max(1) {
                w.cached.pop_front();
            }
            w.cached.push_back(key.to_string());
        }
    }

    /// Sends one request and reads the reply, both within `until`: a
    /// non-blocking `send` (waiting in `ppoll` only if the socket buffer is
    /// full), then `ppoll` and `recv` into the buffered frame reader. Two
    /// or three system calls per request where per-call socket timeouts
    /// took six.
    fn exchange(&self, w: &mut Live, req: &Request, until: Instant) -> Exchange {
        if until <= Instant::now() {
            return Exchange::Deadline;
        }
        if encode_frame(req, &mut w.buf).is_err() {
            return Exchange::Broken;
        }
        match send_all(&w.stream, &w.buf, until) {
            Ok(()) => {}
            Err(e) if is_timeout(&e) => return Exchange::Deadline,
            Err(_) => return Exchange::Broken,
        }
        let mut r = DeadlineReader {
            stream: &w.stream,
            until,
        };
        match w.reader.read::<Reply, _>(&mut r) {
            Ok(reply) => Exchange::Reply(reply),
            Err(FrameError::Io(io)) if is_timeout(&io) => Exchange::Deadline,
            Err(_) => Exchange::Broken,
        }
    }
}
