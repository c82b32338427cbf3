//! The worker loop: single thread, no async runtime. Applies the sandbox,
//! says `Ready`, then for each request compiles the policy (or takes it from
//! the cache), parses the context inside the sandbox, evaluates, and replies
//! with exactly one frame per request.

use crate::cache::{CacheStats, PolicyCache};
use crate::protocol::*;
use crate::sandbox::apply_sandbox;
use crate::WorkerConfig;
use omni::options::EvalOptions;
use omni::{CompiledPolicy, Context, Timestamp};
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

/// Runs the worker on the socket `fd` until the supervisor closes it.
///
/// Never returns. Exits 0 when the supervisor closes the socket,
/// [`EXIT_PROTOCOL_ERROR`] on a malformed, truncated or oversized frame (or
/// when a reply cannot be written), [`EXIT_SANDBOX_FAILED`] when the sandbox
/// of `config` cannot be applied, [`EXIT_USAGE`] when `fd` is not open.
pub fn run_worker(fd: i32, config: WorkerConfig) -> ! {
    install_panic_hook();
    // SAFETY: F_GETFD only queries the descriptor's flags.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        eprintln!("omni-worker: no socket on fd {fd}");
        std::process::exit(EXIT_USAGE);
    }
    let mut state = WorkerState::new(&config);
    let report = match apply_sandbox(&config.sandbox, &[fd]) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("omni-worker: cannot apply the sandbox: {e}");
            std::process::exit(EXIT_SANDBOX_FAILED);
        }
    };
    // SAFETY: the supervisor hands this process exactly one socket on `fd`
    // (checked open above); nothing else in the process owns it.
    let mut stream = unsafe { UnixStream::from_raw_fd(fd) };
    let mut out = Vec::with_capacity(64 * 1024);
    if write_frame(&mut stream, &Reply::Ready(report), &mut out).is_err() {
        std::process::exit(EXIT_PROTOCOL_ERROR);
    }
    let mut reader = FrameReader::new(MAX_REQUEST_FRAME);
    let window = std::time::Duration::from_micros(config.poll_before_block_us);
    // How long the last request took to come after the reply before it.
    let mut last_gap = std::time::Duration::MAX;
    loop {
        // Adaptive: poll only while requests follow each other closely, so
        // a busy worker skips the sleep and wake-up between them, and an
        // idle one spends nothing.
        let replied = std::time::Instant::now();
        if last_gap <= window {
            reader.poll_for(stream.as_fd(), window);
        }
        let req: Request = match reader.read(&mut stream) {
            Ok(r) => r,
            Err(FrameError::Closed) => std::process::exit(0),
            Err(_) => std::process::exit(EXIT_PROTOCOL_ERROR),
        };
        last_gap = replied.elapsed();
        let reply = state.handle_guarded(req);
        if encode_reply(&reply, &mut out).is_err() || stream.write_all(&out).is_err() {
            std::process::exit(EXIT_PROTOCOL_ERROR);
        }
        state.recycle(reply);
        if out.capacity() > 4 << 20 {
            // A huge traced decision: do not keep its buffer for good.
            out = Vec::with_capacity(64 * 1024);
        }
    }
}

/// Encodes a reply; one over [`MAX_REPLY_FRAME`] becomes a `value_too_large`
/// failure (the supervisor would refuse the frame and count a crash).
fn encode_reply(reply: &Reply, out: &mut Vec<u8>) -> Result<(), FrameError> {
    encode_frame(reply, out)?;
    if out.len() - 4 > MAX_REPLY_FRAME {
        let (id, timings) = match reply {
            Reply::Done(o) => (o.id, o.timings),
            Reply::Failed(f) => (f.id, f.timings),
            Reply::Ready(_) => (0, Timings::default()),
            Reply::NotCached { id } => (*id, Timings::default()),
        };
        let small = Reply::Failed(Failure {
            id,
            code: ErrorCode::ValueTooLarge,
            message: "the decision is larger than the reply limit".into(),
            timings,
        });
        encode_frame(&small, out)?;
    }
    Ok(())
}

/// The names of fired actions as a JSON array of strings.
fn action_names_json(actions: &[omni::decision::FiredAction]) -> String {
    struct Names<'a>(&'a [omni::decision::FiredAction]);
    impl serde::Serialize for Names<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(|a| &*a.name))
        }
    }
    // Strings into a String: cannot fail.
    serde_json::to_string(&Names(actions)).unwrap_or_else(|_| "[]".into())
}

/// A panic hook that says where, never what: the payload can quote policy
/// or context data, which is not logged (SERVICE.md §5). No backtrace (it
/// would open files, which the filter refuses).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let (file, line) = info
            .location()
            .map(|l| (l.file(), l.line()))
            .unwrap_or(("?", 0));
        let _ = writeln!(
            std::io::stderr(),
            "omni-worker: internal error (panic at {file}:{line})"
        );
    }));
}

/// A compiled policy as cached: with the options it was checked under and
/// the parts of a reply that depend only on the policy.
#[derive(Debug)]
pub struct CachedPolicy {
    pub policy: Arc<CompiledPolicy>,
    /// [`CheckOptions::fingerprint`] of the options it was checked under.
    pub checked_under: u64,
    /// Warnings and notes (a cached policy has no errors).
    pub diagnostics_json: String,
    pub rules_json: String,
}

impl CachedPolicy {
    fn approx_bytes(&self, key: &str) -> usize {
        self.policy.approx_bytes()
            + self.diagnostics_json.len()
            + self.rules_json.len()
            + key.len()
            + std::mem::size_of::<Self>()
    }

    /// Whether this entry was checked under options of this fingerprint.
    fn checked_as(&self, fingerprint: u64) -> bool {
        self.checked_under == fingerprint
    }
}

/// Per-worker state: the compiled-policy cache.
pub struct WorkerState {
    cache: PolicyCache,
    panics: u64,
    /// The buffer the next decision is written into: the last reply's,
    /// handed back after it was sent, so a decision of a few kilobytes does
    /// not grow a fresh string from scratch each time.
    decision_buf: Vec<u8>,
}

impl WorkerState {
    pub fn new(config: &WorkerConfig) -> WorkerState {
        WorkerState {
            cache: PolicyCache::new(config.cache_entries, config.cache_bytes),
            panics: 0,
            decision_buf: Vec::new(),
        }
    }

    /// Takes back the decision buffer of a reply that has been sent.
    pub fn recycle(&mut self, reply: Reply) {
        if let Reply::Done(o) = reply {
            if let Some(d) = o.decision_json {
                let mut buf = d.into_bytes();
                // A huge traced decision: do not keep its buffer for good.
                if buf.capacity() <= 1 << 20 {
                    buf.clear();
                    self.decision_buf = buf;
                }
            }
        }
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Panics caught so far.
    pub fn panics(&self) -> u64 {
        self.panics
    }

    /// [`handle`](Self::handle), with a panic turned into an `internal`
    /// failure for that request only. The cache is emptied after a panic
    /// (nothing suggests it is damaged, but it costs only recompiles).
    pub fn handle_guarded(&mut self, req: Request) -> Reply {
        let id = req.id;
        match catch_unwind(AssertUnwindSafe(|| self.handle(req))) {
            Ok(reply) => reply,
            Err(_) => {
                self.panics += 1;
                self.cache.clear();
                Reply::Failed(Failure {
                    id,
                    code: ErrorCode::Internal,
                    message: "internal error".into(),
                    timings: Timings::default(),
                })
            }
        }
    }

    /// Answers one request.
    pub fn handle(&mut self, req: Request) -> Reply {
        let id = req.id;
        let fail = |code: ErrorCode, message: String, timings: Timings| {
            Reply::Failed(Failure {
                id,
                code,
                message,
                timings,
            })
        };
        let mut timings = Timings::default();
        let Request {
            policy: source,
            context,
            now_unix_nanos,
            options,
            ..
        } = req;
        let (policy_id, text) = match source {
            PolicySource::Text { policy_id, text } => (policy_id, Some(text)),
            PolicySource::Cached { policy_id } => (policy_id, None),
        };

        // A cache hit skips parse and check. An entry checked under other
        // options does not count (a lenient compile must not serve strict).
        let fingerprint = options.check.fingerprint();
        let hit = self
            .cache
            .get(policy_id.as_str())
            .filter(|c| c.checked_as(fingerprint));
        let (cached, cache_hit, compiled_diags) = match (hit, text) {
            (Some(c), _) => (Some(c), true, None),
            (None, None) => return Reply::NotCached { id },
            (None, Some(text)) => {
                let max = options.limits.policy_bytes;
                if text.len() > max {
                    return fail(
                        ErrorCode::PolicyTooLarge,
                        format!("the policy is larger than the limit of {max} bytes"),
                        timings,
                    );
                }
                let compiled = omni::compile(&text, &options.check);
                timings.parse_us = micros(compiled.parse_time);
                timings.check_us = micros(compiled.check_time);
                let diags: Vec<_> = compiled
                    .diagnostics
                    .iter()
                    .map(|d| d.to_json(&text, &compiled.line_index))
                    .collect();
                let diagnostics_json =
                    serde_json::to_string(&diags).unwrap_or_else(|_| "[]".into());
                match compiled.policy {
                    Some(policy) => {
                        let rules_json = serde_json::to_string(&policy.rule_summaries())
                            .unwrap_or_else(|_| "[]".into());
                        let entry = Arc::new(CachedPolicy {
                            policy,
                            checked_under: fingerprint,
                            diagnostics_json,
                            rules_json,
                        });
                        let key: Arc<str> = Arc::from(policy_id.as_str());
                        let bytes = entry.approx_bytes(&key);
                        self.cache.insert(key, entry.clone(), bytes);
                        (Some(entry), false, None)
                    }
                    // Errors: nothing to cache or evaluate.
                    None => (None, false, Some(diagnostics_json)),
                }
            }
        };
        let Some(cached) = cached else {
            return Reply::Done(Box::new(Outcome {
                id,
                policy_id,
                cache_hit,
                diagnostics_json: compiled_diags.unwrap_or_else(|| "[]".into()),
                has_errors: true,
                rules_json: "[]".into(),
                actions_json: "[]".into(),
                decision_json: None,
                timings,
            }));
        };
        let mut outcome = Outcome {
            id,
            policy_id,
            cache_hit,
            diagnostics_json: cached.diagnostics_json.clone(),
            has_errors: false,
            rules_json: cached.rules_json.clone(),
            actions_json: "[]".into(),
            decision_json: None,
            timings,
        };
        let Some(ctx_bytes) = context else {
            return Reply::Done(Box::new(outcome));
        };

        let t = Instant::now();
        let ctx = match Context::from_json(&ctx_bytes, &options.limits.context) {
            Ok(c) => c,
            Err(e) => {
                outcome.timings.context_us = micros(t.elapsed());
                return fail(e.code(), e.to_string(), outcome.timings);
            }
        };
        outcome.timings.context_us = micros(t.elapsed());

        let t = Instant::now();
        let eval_opts = EvalOptions {
            limits: options.limits.eval,
            trace: options.trace,
        };
        let result = omni::evaluate(&cached.policy, &ctx, Timestamp(now_unix_nanos), &eval_opts);
        outcome.timings.eval_us = micros(t.elapsed());
        match result {
            Ok(d) => {
                outcome.actions_json = action_names_json(&d.actions);
                let mut buf = std::mem::take(&mut self.decision_buf);
                buf.clear();
                let written = serde_json::to_writer(&mut buf, &d)
                    .ok()
                    .and_then(|()| String::from_utf8(buf).ok());
                match written {
                    Some(json) => outcome.decision_json = Some(json),
                    None => {
                        return fail(
                            ErrorCode::Internal,
                            "the decision could not be encoded".into(),
                            outcome.timings,
                        )
                    }
                }
                Reply::Done(Box::new(outcome))
            }
            Err(e) => fail(e.code(), e.to_string(), outcome.timings),
        }
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
