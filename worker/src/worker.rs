//! The worker loop: single thread, no async runtime. Applies the sandbox
//! (handing it the evaluator's warm-up), says `Ready`, then for each request
//! compiles the policy (or takes it from the cache), parses the context
//! inside the sandbox, evaluates, and replies with exactly one frame per
//! request, saying whether it kept the compiled policy. Also the
//! [`WorkerConfig`] a worker is started with.

use crate::cache::{CacheStats, CachedPolicy, PolicyCache};
use crate::protocol::*;
use crate::sandbox::{apply_sandbox, SandboxConfig};
use omni::options::EvalOptions;
use omni::{Context, Timestamp};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

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
    /// See [`FrameReader::poll_for`].
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
    let report = match apply_sandbox(&config.sandbox, &[fd], warm_up_evaluator) {
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

/// A policy that touches the evaluator's lazy paths (regex, time, loops,
/// lambdas, string building) so their first system calls happen now.
const WARM_UP_POLICY: &str = "INTENT: sandbox warm-up\n\
ACTOR:\n- Primary: Worker\n\
CONTEXT:\n- Domain: Warm-up\n\
RULE:\n\
- IF Battery < 20% AND matches(Name, \"^w[a-z]+$\") THEN ReturnToHome\n\
- IF since(time(\"2025-12-31T00:00:00Z\")) > 1h AND any(Items, |x| x.v > 2) THEN Report(upper(Name) + \"!\")\n\
- FOR d IN Items {\n\
    - IF d.v > 1 THEN Flag(d.v)\n\
}\n\
CONSTRAINT:\n- Technical: none\n\
IMPACT:\n- Benefit: none\n\
TRACE:\n- Evidence: none\n";

/// Runs the language once (compile, evaluate with a trace, serialise), so
/// the evaluator's lazy first system calls happen before the seccomp filter
/// is installed: the warm-up the worker hands to [`apply_sandbox`].
pub fn warm_up_evaluator() {
    let compiled = omni::compile(WARM_UP_POLICY, &omni::CheckOptions::default());
    let ctx = omni::Context::from_json(
        br#"{"Battery": 15, "Name": "warm", "Items": [{"v": 1}, {"v": 2.5}]}"#,
        &omni::ContextLimits::default(),
    );
    if let (Some(policy), Ok(ctx)) = (compiled.policy, ctx) {
        let _ = policy.rule_summaries();
        let opts = omni::EvalOptions {
            trace: true,
            ..omni::EvalOptions::default()
        };
        if let Ok(d) = omni::evaluate(
            &policy,
            &ctx,
            omni::Timestamp(1_767_225_600_000_000_000),
            &opts,
        ) {
            let _ = serde_json::to_string(&d);
        }
    }
}

/// A panic hook that says where, never what: the payload can quote policy
/// or context data, which is not logged (`docs/api.md#observability`). No backtrace (it
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
        // `kept`: the entry is in the cache after this request (the reply
        // says so, so the supervisor knows when it may send only the id).
        let (cached, cache_hit, kept, compiled_diags) = match (hit, text) {
            (Some(c), _) => (Some(c), true, true, None),
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
                        let kept = self.cache.insert(key, entry.clone(), bytes);
                        (Some(entry), false, kept, None)
                    }
                    // Errors: nothing to cache or evaluate.
                    None => (None, false, false, Some(diagnostics_json)),
                }
            }
        };
        let Some(cached) = cached else {
            return Reply::Done(Box::new(Evaluated {
                id,
                policy_id,
                cache_hit,
                kept,
                diagnostics_json: compiled_diags.unwrap_or_else(|| "[]".into()),
                has_errors: true,
                rules_json: "[]".into(),
                actions_json: "[]".into(),
                decision_json: None,
                timings,
            }));
        };
        let mut outcome = Evaluated {
            id,
            policy_id,
            cache_hit,
            kept,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_policy_compiles_and_fires() {
        let compiled = omni::compile(WARM_UP_POLICY, &omni::CheckOptions::default());
        assert!(
            compiled.policy.is_some(),
            "warm-up policy has errors: {:?}",
            compiled.diagnostics
        );
        let policy = compiled.policy.unwrap();
        let ctx = omni::Context::from_json(
            br#"{"Battery": 15, "Name": "warm", "Items": [{"v": 1}, {"v": 2.5}]}"#,
            &omni::ContextLimits::default(),
        )
        .unwrap();
        let d = omni::evaluate(
            &policy,
            &ctx,
            omni::Timestamp(1_767_225_600_000_000_000),
            &omni::EvalOptions::default(),
        )
        .unwrap();
        // Every rule fires, so every path it is meant to warm is taken.
        assert_eq!(
            d.action_strings(),
            ["ReturnToHome", "Report(WARM!)", "Flag(2.5)"]
        );
    }

    fn text(policy_id: &str, text: &str) -> Request {
        Request {
            id: 1,
            policy: PolicySource::Text {
                policy_id: policy_id.into(),
                text: text.into(),
            },
            context: None,
            now_unix_nanos: 0,
            options: Default::default(),
        }
    }

    fn done(reply: Reply) -> Box<Evaluated> {
        match reply {
            Reply::Done(e) => e,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    /// A check-only job (no context) parses and checks, evaluates nothing,
    /// returns the diagnostics, and keeps the compiled policy, so the first
    /// evaluation sent with the id alone is a cache hit.
    #[test]
    fn a_check_only_job_keeps_the_policy_for_the_first_evaluation() {
        let mut state = WorkerState::new(&WorkerConfig::default());
        let checked = done(state.handle(text("p", WARM_UP_POLICY)));
        assert!(!checked.has_errors);
        assert!(!checked.cache_hit && checked.kept);
        assert!(checked.decision_json.is_none(), "nothing evaluated");
        assert_eq!(checked.timings.eval_us, 0);
        assert_eq!(state.cache_stats().inserts, 1);
        let mut eval = text("p", "");
        eval.policy = PolicySource::Cached {
            policy_id: "p".into(),
        };
        eval.context = Some(br#"{"Battery": 15, "Name": "warm", "Items": []}"#.to_vec());
        let evaluated = done(state.handle(eval));
        assert!(evaluated.cache_hit, "the check compiled it");
        assert_eq!(evaluated.diagnostics_json, checked.diagnostics_json);
        assert!(evaluated
            .decision_json
            .as_deref()
            .is_some_and(|d| d.contains("ReturnToHome")));
        // Errors: their diagnostics come back, nothing is kept.
        let bad = done(state.handle(text("bad", "RULE:\n- IF THEN\n")));
        assert!(bad.has_errors && !bad.kept && bad.decision_json.is_none());
        assert!(bad.diagnostics_json.contains("\"severity\":\"error\""));
        assert_eq!(state.cache_len(), 1);
    }

    fn kept(reply: Reply) -> bool {
        match reply {
            Reply::Done(e) => e.kept,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    #[test]
    fn the_reply_says_whether_the_policy_was_kept() {
        let mut state = WorkerState::new(&WorkerConfig::default());
        assert!(kept(state.handle(text("p", WARM_UP_POLICY))));
        let mut cached = text("p", "");
        cached.policy = PolicySource::Cached {
            policy_id: "p".into(),
        };
        assert!(kept(state.handle(cached)));
        // A policy with errors is not cached.
        assert!(!kept(state.handle(text("bad", "RULE:\n- IF THEN\n"))));
        // Nor is anything when the cache is off.
        let mut off = WorkerState::new(&WorkerConfig {
            cache_entries: 0,
            ..WorkerConfig::default()
        });
        assert!(!kept(off.handle(text("p", WARM_UP_POLICY))));
    }
}
