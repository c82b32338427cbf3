//! The worker pool: N worker processes, each owned by a driver task on the
//! HTTP runtime that takes jobs from one bounded crossbeam queue. A driver
//! sends a request, waits for the reply up to the request's deadline, and
//! past it kills (SIGKILL), reaps and respawns. Under load it keeps the
//! next job waiting in the worker's socket (`pool.pipeline_depth`), so the
//! worker never sleeps between requests; a job that waited behind one that
//! killed the worker never started, and goes to the replacement.
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
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use omni_worker::protocol::{
    encode_frame, Failure, FrameError, FrameReader, Outcome, PolicySource, Reply, ReplyPoll,
    Request, RequestOptions, SandboxReport, EXIT_SANDBOX_FAILED, MAX_REPLY_FRAME,
};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::Interest;

/// What an evaluation needs; built by the HTTP side, consumed by a driver.
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

/// State shared between the HTTP side and the drivers.
pub struct PoolShared {
    exe: PathBuf,
    config: RwLock<Arc<Config>>,
    generation: AtomicU64,
    slots: Vec<AtomicU8>,
    /// Pid of each slot's current worker (0: none), for the last-resort
    /// kill when a shutdown times out.
    pids: Vec<AtomicU32>,
    stopping: AtomicBool,
    /// Set while one slot rolls its worker after a reload.
    rolling: AtomicBool,
    /// Wakes an idle driver when a job is queued.
    job_ready: tokio::sync::Notify,
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
    drivers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    reaper: Mutex<Option<Sender<Retired>>>,
    reaper_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub sandbox: SandboxReport,
}

/// A live worker owned by one driver.
struct Live {
    child: Child,
    stream: WorkerSocket,
    /// A send failed: the next read decides how the worker ended.
    broken: bool,
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
    /// How long to poll for this worker's next reply before sleeping.
    reply_poll: ReplyPoll,
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
        // From here on the runtime's reactor waits on the socket.
        let stream = match wp
            .stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(wp.stream))
        {
            Ok(s) => s,
            Err(e) => {
                let _ = reap(&mut wp.child, true);
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
            generation: self.generation.load(Ordering::Acquire),
            served: 0,
            recycle_after: self.recycle_after(cfg),
            cached: VecDeque::new(),
            cache_cap: cfg.worker.cache_entries,
            buf: Vec::with_capacity(64 * 1024),
            reader: FrameReader::new(MAX_REPLY_FRAME),
            reply_poll: ReplyPoll::new(Duration::from_micros(cfg.pool.reply_poll_max_us)),
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
    /// Starts `config.workers` workers and their drivers on `runtime`.
    /// Fails when any worker cannot start (a sandbox that cannot be applied
    /// is a start-up error).
    pub fn start(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<WorkerPool, PoolError> {
        // Worker sockets register with this runtime's reactor.
        let _entered = runtime.enter();
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
            rolling: AtomicBool::new(false),
            job_ready: tokio::sync::Notify::new(),
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
        let mut drivers = Vec::with_capacity(n);
        for (i, live) in lives.into_iter().enumerate() {
            let driver = Driver {
                slot: i,
                shared: shared.clone(),
                reaper: rtx.clone(),
            };
            drivers.push(runtime.spawn(driver.run(live, rx.clone())));
        }
        Ok(WorkerPool {
            shared,
            tx: Mutex::new(Some(tx)),
            rx,
            drivers: Mutex::new(drivers),
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
            Ok(()) => {
                self.shared.job_ready.notify_one();
                Ok(())
            }
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
        let r = Retired { child, pid };
        match lock(&self.reaper).as_ref() {
            Some(reaper) => {
                if let Err(e) = reaper.send(r) {
                    retire(e.into_inner());
                }
            }
            None => retire(r),
        }
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

    /// Stops taking jobs, lets the drivers finish the queued ones, then
    /// retires every worker and waits for them. Called outside the runtime
    /// (it blocks), while the runtime still runs the drivers.
    pub fn shutdown(&self, timeout: Duration) {
        lock(&self.tx).take();
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.job_ready.notify_waiters();
        let deadline = Instant::now() + timeout;
        let drivers = std::mem::take(&mut *lock(&self.drivers));
        for d in &drivers {
            // Drivers end once the queue is drained and closed.
            while !d.is_finished() && Instant::now() < deadline {
                self.shared.job_ready.notify_waiters();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for d in &drivers {
            d.abort();
        }
        // Drivers still busy past the timeout: their workers go now.
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

/// The supervisor's end of a worker's socket pair, registered with the
/// runtime's reactor.
type WorkerSocket = tokio::net::UnixStream;

/// Reads what the socket has without blocking: `WouldBlock` when it is
/// empty (which also tells the reactor to wait for the next edge), or when
/// the reactor has not yet seen it become readable.
struct NonBlocking<'a>(&'a WorkerSocket);

impl Read for NonBlocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// Reads the socket itself, whatever the reactor last saw: what polling
/// needs, as the reactor may not run while this thread polls.
struct Recv<'a>(&'a WorkerSocket);

impl Read for Recv<'_> {
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
async fn read_reply(w: &mut Live, until: Instant, poll: Duration) -> Exchange {
    // Polling holds this runtime thread (only done when the pool is lightly
    // loaded, so nothing else waits for it), giving the CPU to other
    // processes between polls: the worker may be on this CPU.
    let stop_polling = (Instant::now() + poll).min(until);
    loop {
        let polling = Instant::now() < stop_polling;
        let read = if polling {
            w.reader.read::<Reply, _>(&mut Recv(&w.stream))
        } else {
            w.reader.read::<Reply, _>(&mut NonBlocking(&w.stream))
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

/// Writes all of `data` without blocking past `until`.
async fn send_all(stream: &WorkerSocket, mut data: &[u8], until: Instant) -> io::Result<()> {
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
    w.reader.buffered() > 0 || !is_would_block(&peek(&w.stream))
}

/// A one-byte `MSG_PEEK` on the socket itself, whatever the reactor last
/// saw: `Ok(0)` at its end, `WouldBlock` when empty and open.
fn peek(stream: &WorkerSocket) -> io::Result<usize> {
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

fn is_would_block<T>(r: &io::Result<T>) -> bool {
    matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
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

/// Kills (when `kill`) and reaps a worker off the runtime's threads: a
/// worker that held a lot of memory can take a while to go.
async fn reap_off_runtime(w: Live, kill: bool) -> (Ended, Duration) {
    let Live { mut child, .. } = w;
    match tokio::task::spawn_blocking(move || reap(&mut child, kill)).await {
        Ok(r) => r,
        Err(_) => (Ended::Exited(-1), Duration::ZERO),
    }
}

/// A job sent to the worker and not yet answered. The policy text and the
/// context stay here (moved back out of the encoded request), so a job the
/// worker never started can be sent again: to a replacement worker, or
/// with its text when the worker had evicted the policy.
struct InFlight {
    job: Job,
    /// The request id on the wire.
    id: u64,
    /// Sent as `PolicySource::Cached`.
    sent_cached: bool,
    /// When the worker started on it: when it was sent to an idle worker,
    /// or when the reply before it arrived. Its deadline runs from here.
    started: Option<Instant>,
}

/// What an idle driver got while waiting for work.
enum NextJob {
    Job(Box<Job>),
    /// Nothing came within the wait; time for the idle checks.
    Timeout,
    /// The queue is closed and empty: the pool is stopping.
    Closed,
    /// The idle worker hung up or sent something nobody asked for.
    WorkerEnded,
}

/// How many fast policies a worker's driver remembers.
const FAST_KEYS: usize = 64;

/// Cache keys whose last request in a slot took under
/// `pool.pipeline_behind_us` (most recent last). Only those have jobs queued behind them, so a slow
/// or hostile policy never holds up another request. Kept by the slot
/// across worker replacements: it describes policies, not a process.
#[derive(Default)]
struct FastPolicies(VecDeque<String>);

impl FastPolicies {
    fn contains(&self, key: &str) -> bool {
        self.0.iter().rev().any(|k| k == key)
    }

    /// Records how long a request for `key` took, from its start to its
    /// reply (`None`: it never answered).
    fn record(&mut self, key: &str, service: Option<Duration>, fast: Duration) {
        if service.is_some_and(|s| s < fast) {
            if self.0.back().is_some_and(|k| k == key) {
                return;
            }
            self.0.retain(|k| k != key);
            if self.0.len() >= FAST_KEYS {
                self.0.pop_front();
            }
            self.0.push_back(key.to_string());
        } else {
            self.0.retain(|k| k != key);
        }
    }
}

/// Largest frame sent behind another one: the worker only reads it when it
/// has finished the one before, so the frame must fit the socket buffer
/// without waiting (a larger job waits until the worker is idle).
const MAX_PIPELINED_FRAME: usize = 32 * 1024;

/// The task that owns one slot: its worker, the requests in flight on it,
/// and its replacement when it dies. Runs on the HTTP runtime, so a reply
/// goes to its request's task without a hop through another thread.
struct Driver {
    slot: usize,
    shared: Arc<PoolShared>,
    reaper: Sender<Retired>,
}

impl Driver {
    async fn run(self, first: Live, rx: Receiver<Job>) {
        let mut live = Some(first);
        let mut respawn_at = Instant::now();
        // Jobs taken from the queue that never ran (their worker died before
        // starting them); they go first to the replacement.
        let mut pending: VecDeque<Job> = VecDeque::new();
        let mut fast = FastPolicies::default();
        loop {
            if live.is_none() {
                if self.shared.stopping() && rx.is_empty() && pending.is_empty() {
                    break;
                }
                self.shared.set_state(self.slot, SlotState::Down);
                let now = Instant::now();
                if now < respawn_at {
                    // Backing off: do not hold a client while waiting.
                    pending.drain(..).for_each(unavailable);
                    tokio::time::sleep((respawn_at - now).min(Duration::from_millis(50))).await;
                    continue;
                }
                self.shared.set_state(self.slot, SlotState::Starting);
                let cfg = self.shared.config();
                match self.spawn(cfg.clone()).await {
                    Ok(l) => {
                        tracing::debug!(slot = self.slot, pid = l.pid, "worker started");
                        live = Some(l);
                    }
                    Err(e) => {
                        self.shared.failed_start(&cfg, &e);
                        self.shared.set_state(self.slot, SlotState::Down);
                        pending.drain(..).for_each(unavailable);
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
            if w.generation != gen && !self.shared.stopping() && pending.is_empty() {
                if self
                    .shared
                    .rolling
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    w = self.replace(w, "configuration reload").await;
                    self.shared.rolling.store(false, Ordering::Release);
                    self.shared.set_pid(self.slot, w.pid);
                } else {
                    wait = Duration::from_millis(20);
                }
            }
            self.shared.set_state(self.slot, SlotState::Idle);
            let job = match pending.pop_front() {
                Some(job) => job,
                None => match self.next_job(&rx, &w, wait).await {
                    NextJob::Job(job) => *job,
                    NextJob::Timeout => {
                        if idle_ended(&w) {
                            respawn_at = Instant::now() + self.died_idle(w).await;
                        } else {
                            live = Some(w);
                        }
                        continue;
                    }
                    NextJob::WorkerEnded => {
                        respawn_at = Instant::now() + self.died_idle(w).await;
                        continue;
                    }
                    NextJob::Closed => {
                        live = Some(w);
                        break;
                    }
                },
            };
            // A worker that died while idle (the OOM killer, an operator's
            // kill) is replaced without charging its death to this job.
            if idle_ended(&w) {
                respawn_at = Instant::now() + self.died_idle(w).await;
                pending.push_front(job);
                continue;
            }
            self.shared.set_state(self.slot, SlotState::Busy);
            match self.serve(w, job, &rx, &mut pending, &mut fast).await {
                Ok(w) => live = Some(self.maybe_recycle(w).await),
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

    /// Starts a worker off the runtime's threads (fork, exec and the wait
    /// for its `Ready` frame block).
    async fn spawn(&self, cfg: Arc<Config>) -> Result<Live, PoolError> {
        let sh = self.shared.clone();
        match tokio::task::spawn_blocking(move || sh.spawn(&cfg)).await {
            Ok(r) => r.map(|(live, _)| live),
            Err(_) => Err(PoolError::StartFailed("the start was interrupted".into())),
        }
    }

    /// Waits for a job while the worker is idle, watching the worker too.
    async fn next_job(&self, rx: &Receiver<Job>, w: &Live, wait: Duration) -> NextJob {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.shared.job_ready.notified();
            tokio::pin!(notified);
            // Registered before looking, so a job queued after the look
            // wakes this driver.
            notified.as_mut().enable();
            match rx.try_recv() {
                Ok(job) => return NextJob::Job(Box::new(job)),
                Err(TryRecvError::Disconnected) => return NextJob::Closed,
                Err(TryRecvError::Empty) => {}
            }
            if self.shared.stopping() {
                // Drained: the queue is closed once the pool stops.
                return NextJob::Closed;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => return NextJob::Timeout,
                ready = w.stream.readable() => {
                    // Readiness may be left over from the last reply; a peek
                    // tells (and through `try_io` clears it when the socket
                    // is really empty).
                    let empty = is_would_block(&w.stream.try_io(Interest::READABLE, || peek(&w.stream)));
                    if ready.is_err() || w.reader.buffered() > 0 || !empty {
                        return NextJob::WorkerEnded;
                    }
                }
            }
        }
    }

    /// Reaps a worker found dead between requests; returns the back-off.
    async fn died_idle(&self, w: Live) -> Duration {
        let cfg = self.shared.config();
        self.shared.set_state(self.slot, SlotState::Down);
        let served = w.served;
        let (ended, cpu) = reap_off_runtime(w, true).await;
        self.shared.set_pid(self.slot, 0);
        let reason = classify(ended, cpu, Duration::from_secs(cfg.worker.cpu_seconds));
        self.shared.metrics.restart(reason);
        tracing::warn!(
            slot = self.slot,
            reason = reason.as_str(),
            ended = %ended,
            served,
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
    async fn replace(&self, old: Live, why: &str) -> Live {
        let cfg = self.shared.config();
        self.shared.set_state(self.slot, SlotState::Starting);
        match self.spawn(cfg.clone()).await {
            Ok(new) => {
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

    async fn maybe_recycle(&self, w: Live) -> Live {
        let cfg = self.shared.config();
        if w.served >= w.recycle_after {
            return self.replace(w, "max_requests").await;
        }
        // RLIMIT_CPU counts the worker's whole life: recycle well before it.
        let limit = Duration::from_secs(cfg.worker.cpu_seconds);
        let used = match w.cpu_clock {
            Some(clk) => clock_time(clk),
            None => None,
        };
        if let Some(used) = used.or_else(|| cpu_time(w.pid, self.shared.clk_tck)) {
            if used * 5 >= limit * 4 {
                return self.replace(w, "cpu time").await;
            }
        }
        w
    }

    /// Serves `first`, and while the worker is busy keeps the next queued
    /// job waiting in its socket (up to `pool.pipeline_depth` in flight), so
    /// a loaded worker goes from one request to the next without sleeping.
    /// Jobs are only pipelined when no other worker is idle, and only behind
    /// policies that were fast on this worker last time (a job behind a
    /// slow one would wait for it). Returns the
    /// worker once nothing is in flight; `Err(delay)`: the worker is gone
    /// (respawn after `delay`), and the jobs it never started are in
    /// `pending`.
    async fn serve(
        &self,
        mut w: Live,
        first: Job,
        rx: &Receiver<Job>,
        pending: &mut VecDeque<Job>,
        fast: &mut FastPolicies,
    ) -> Result<Live, Duration> {
        let cfg = self.shared.config();
        let depth = cfg.pool.pipeline_depth.max(1);
        let fast_below = Duration::from_micros(cfg.pool.pipeline_behind_us);
        let mut flight: VecDeque<InFlight> = VecDeque::with_capacity(depth);
        self.start(&mut w, first, &mut flight, &cfg).await;
        // Set when a queued job was too large to wait behind another.
        let mut held: Option<Job> = None;
        loop {
            while held.is_none()
                && flight.len() < depth
                && !flight.is_empty()
                && w.served + (flight.len() as u64) < w.recycle_after
                // An idle worker should take the job rather than it wait here.
                && self.shared.states().0 == 0
                && flight.iter().all(|f| fast.contains(&f.job.work.cache_key))
            {
                let Ok(job) = rx.try_recv() else { break };
                if frame_estimate(&w, &job) > MAX_PIPELINED_FRAME {
                    held = Some(job);
                    break;
                }
                self.start(&mut w, job, &mut flight, &cfg).await;
            }
            let Some(front) = flight.front_mut() else {
                if let Some(job) = held.take() {
                    pending.push_front(job);
                }
                return Ok(w);
            };
            let started = *front.started.get_or_insert_with(Instant::now);
            let until = started + front.job.work.deadline;
            let id = front.id;
            // Poll for the reply only when nothing else is going on: one
            // request in flight in the whole pool.
            let poll = if flight.len() == 1 && rx.is_empty() && self.shared.states().1 == 1 {
                w.reply_poll.window()
            } else {
                Duration::ZERO
            };
            let exchange = read_reply(&mut w, until, poll).await;
            let service = started.elapsed();
            w.reply_poll.record(service);
            let sent_cached = flight.front().is_some_and(|f| f.sent_cached);
            let reply = match exchange {
                Exchange::Reply(Reply::Done(o)) if o.id == id => Ok(Ok(o)),
                Exchange::Reply(Reply::Failed(f)) if f.id == id => Ok(Err(Some(f))),
                // Only an answer to a request sent without its text.
                Exchange::Reply(Reply::NotCached { id: r }) if r == id && sent_cached => {
                    Ok(Err(None))
                }
                other => Err(other),
            };
            let Some(done) = flight.pop_front() else {
                continue;
            };
            let queue_time = started.saturating_duration_since(done.job.enqueued);
            match reply {
                Ok(Ok(o)) => {
                    w.served += 1;
                    fast.record(&done.job.work.cache_key, Some(service), fast_below);
                    self.note_cache(&mut w, &done.job.work.cache_key, &o);
                    self.shared.metrics.cache(o.cache_hit);
                    answer(done.job, JobResult::Done(o), queue_time);
                }
                Ok(Err(None)) => {
                    // The worker evicted it: send the text, once.
                    let key = done.job.work.cache_key.clone();
                    w.cached.retain(|k| *k != key);
                    self.start(&mut w, done.job, &mut flight, &cfg).await;
                    continue;
                }
                Ok(Err(Some(f))) => {
                    w.served += 1;
                    fast.record(&done.job.work.cache_key, Some(service), fast_below);
                    answer(done.job, JobResult::Failed(f), queue_time);
                }
                Err(failed) => {
                    // The worker died on (or ran past the deadline of) the
                    // job at the front; the ones behind it never started.
                    let (reason, ended) = match failed {
                        Exchange::Deadline => {
                            let served = w.served;
                            let (ended, _) = self.kill(w).await;
                            // Whatever the wait status says, the deadline killed it.
                            (RestartReason::Timeout, (ended, served))
                        }
                        _ => {
                            let served = w.served;
                            let (ended, cpu) = self.kill(w).await;
                            let limit = Duration::from_secs(cfg.worker.cpu_seconds);
                            (classify(ended, cpu, limit), (ended, served))
                        }
                    };
                    fast.record(&done.job.work.cache_key, None, fast_below);
                    self.killed(&done.job.work, reason, &cfg, ended.0, ended.1);
                    answer(done.job, JobResult::Killed(reason), queue_time);
                    if !flight.is_empty() {
                        tracing::info!(
                            slot = self.slot,
                            moved = flight.len(),
                            "requests queued behind it on the worker never started; they go to its replacement"
                        );
                    }
                    for f in flight.into_iter().rev() {
                        pending.push_front(f.job);
                    }
                    if let Some(job) = held {
                        pending.push_back(job);
                    }
                    return Err(self.shared.unplanned_restart(&cfg));
                }
            }
        }
    }

    /// Kills and reaps a worker that failed a request.
    async fn kill(&self, w: Live) -> (Ended, Duration) {
        let r = reap_off_runtime(w, true).await;
        self.shared.set_state(self.slot, SlotState::Down);
        self.shared.set_pid(self.slot, 0);
        r
    }

    /// Admits a job and sends it to the worker, or answers it at once (it
    /// waited too long, its client left, its policy is quarantined).
    async fn start(&self, w: &mut Live, job: Job, flight: &mut VecDeque<InFlight>, cfg: &Config) {
        let Job {
            mut work,
            enqueued,
            reply,
        } = job;
        let queue_time = enqueued.elapsed();
        if reply.is_closed() {
            // The client has gone; do not spend a worker on it.
            return;
        }
        if queue_time > work.deadline + Duration::from_millis(cfg.worker.timeout_ms) * 8
            || self.shared.stopping() && queue_time > Duration::from_millis(cfg.drain_timeout_ms)
        {
            let _ = reply.send(JobReply {
                result: JobResult::Expired,
                queue_time,
            });
            return;
        }
        if let Some(left) = self.shared.quarantined(&work.quarantine_key) {
            let _ = reply.send(JobReply {
                result: JobResult::Quarantined(left),
                queue_time,
            });
            return;
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let cached = w.cached.iter().any(|k| *k == work.cache_key);
        let mut req = Request {
            id,
            policy: if cached {
                PolicySource::Cached {
                    policy_id: std::mem::take(&mut work.cache_key),
                }
            } else {
                PolicySource::Text {
                    policy_id: std::mem::take(&mut work.cache_key),
                    text: std::mem::take(&mut work.text),
                }
            },
            context: work.context.take(),
            now_unix_nanos: work.now_unix_nanos,
            options: std::mem::take(&mut work.options),
        };
        let encoded = encode_frame(&req, &mut w.buf).is_ok();
        // Take the parts back: the job may have to be sent again.
        match std::mem::replace(
            &mut req.policy,
            PolicySource::Cached {
                policy_id: String::new(),
            },
        ) {
            PolicySource::Cached { policy_id } => work.cache_key = policy_id,
            PolicySource::Text { policy_id, text } => {
                work.cache_key = policy_id;
                work.text = text;
            }
        }
        work.context = req.context.take();
        work.options = std::mem::take(&mut req.options);
        let now = Instant::now();
        let idle = flight.is_empty();
        flight.push_back(InFlight {
            job: Job {
                work,
                enqueued,
                reply,
            },
            id,
            sent_cached: cached,
            started: idle.then_some(now),
        });
        if !encoded {
            // Cannot happen for well-formed values; the read then fails and
            // the worker is replaced rather than left with half a stream.
            w.broken = true;
            return;
        }
        let until = match flight.front() {
            Some(f) => f.started.unwrap_or(now) + f.job.work.deadline,
            None => now,
        };
        if w.broken || send_all(&w.stream, &w.buf, until).await.is_err() {
            // A worker that cannot take a request is gone or stuck; the read
            // of the front job's reply finds out which.
            w.broken = true;
            // SAFETY: shutdown on a socket we own; it stays open until dropped.
            unsafe { libc::shutdown(w.stream.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }

    fn killed(&self, work: &Work, reason: RestartReason, cfg: &Config, ended: Ended, served: u64) {
        self.shared.metrics.restart(reason);
        tracing::warn!(
            requestId = %work.request_id,
            tenant = work.tenant.as_deref().unwrap_or("-"),
            policyId = %work.policy_id,
            slot = self.slot,
            reason = reason.as_str(),
            ended = %ended,
            served,
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
}

/// Answers a job with `result`.
fn answer(job: Job, result: JobResult, queue_time: Duration) {
    let _ = job.reply.send(JobReply { result, queue_time });
}

/// About how large the job's request frame will be on this worker.
fn frame_estimate(w: &Live, job: &Job) -> usize {
    let cached = w.cached.iter().any(|k| *k == job.work.cache_key);
    let text = if cached { 0 } else { job.work.text.len() };
    text + job.work.context.as_ref().map_or(0, |c| c.len()) + job.work.cache_key.len() + 256
}
