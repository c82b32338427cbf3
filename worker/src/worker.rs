//! The worker loop: single thread, no async runtime. Reads a request,
//! compiles (or takes the cached policy), parses the context inside the
//! sandbox, evaluates, and replies with exactly one frame per request.

use crate::protocol::*;
use crate::WorkerConfig;
use omni::options::{CheckOptions, EvalOptions};
use omni::{Context, ContextLimits, Timestamp};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

/// Runs the worker on the socket `fd` until the supervisor closes it.
/// Never returns: exits 0 on a clean close, `EXIT_PROTOCOL_ERROR` on a bad frame.
pub fn run_worker(fd: i32, config: WorkerConfig) -> ! {
    // SAFETY: the supervisor hands this process exactly one socket on `fd`;
    // nothing else owns it.
    let mut stream = unsafe { UnixStream::from_raw_fd(fd) };
    let report = SandboxReport {
        enabled: false,
        ..SandboxReport::default()
    };
    let mut out = Vec::with_capacity(64 * 1024);
    if write_frame(&mut stream, &Reply::Ready(report), &mut out).is_err() {
        std::process::exit(EXIT_PROTOCOL_ERROR);
    }
    let mut state = WorkerState::new(&config);
    let mut inbuf = Vec::with_capacity(64 * 1024);
    loop {
        let req: Request = match read_frame(&mut stream, MAX_REQUEST_FRAME, &mut inbuf) {
            Ok(r) => r,
            Err(FrameError::Closed) => std::process::exit(0),
            Err(_) => std::process::exit(EXIT_PROTOCOL_ERROR),
        };
        let reply = state.handle(req);
        if write_frame(&mut stream, &reply, &mut out).is_err() {
            std::process::exit(EXIT_PROTOCOL_ERROR);
        }
    }
}

/// Per-worker state: the compiled-policy cache.
pub struct WorkerState {
    cache: Vec<(String, Arc<omni::CompiledPolicy>)>,
    max_entries: usize,
}

impl WorkerState {
    pub fn new(config: &WorkerConfig) -> WorkerState {
        WorkerState {
            cache: Vec::new(),
            max_entries: config.cache_entries.max(1),
        }
    }

    /// Answers one request.
    pub fn handle(&mut self, req: Request) -> Reply {
        let mut timings = Timings::default();
        let id = req.id;
        let fail = |code: ErrorCode, message: String, timings: Timings| {
            Reply::Failed(Failure {
                id,
                code,
                message,
                timings,
            })
        };
        let opts = CheckOptions {
            profile: req.options.profile,
            features: req.options.features.clone(),
            max_expr_depth: Some(req.options.max_expr_depth),
            max_block_depth: Some(req.options.max_block_depth),
        };
        let policy_id = req.policy.policy_id().to_string();
        let cached = self.cache.iter().position(|(k, _)| *k == policy_id);
        let (policy, cache_hit, diagnostics_json, has_errors) = match (&req.policy, cached) {
            (_, Some(i)) => {
                let entry = self.cache.remove(i);
                let p = entry.1.clone();
                self.cache.push(entry);
                (Some(p), true, "[]".to_string(), false)
            }
            (PolicySource::Cached { .. }, None) => {
                return fail(
                    ErrorCode::PolicyNotCached,
                    "the policy is not cached".into(),
                    timings,
                )
            }
            (PolicySource::Text { text, .. }, None) => {
                if text.len() > omni::DEFAULT_MAX_POLICY_BYTES {
                    return fail(
                        ErrorCode::PolicyTooLarge,
                        "the policy is over the size limit".into(),
                        timings,
                    );
                }
                let compiled = omni::compile(text, &opts);
                timings.parse_us = compiled.parse_time.as_micros() as u64;
                timings.check_us = compiled.check_time.as_micros() as u64;
                let diags: Vec<_> = compiled
                    .diagnostics
                    .iter()
                    .map(|d| d.to_json(text, &compiled.line_index))
                    .collect();
                let dj = serde_json::to_string(&diags).unwrap_or_else(|_| "[]".into());
                let has_errors = compiled.has_errors();
                // Only policies without diagnostics are cached, so a cache
                // hit never hides a warning.
                if let Some(p) = &compiled.policy {
                    if compiled.diagnostics.is_empty() {
                        if self.cache.len() >= self.max_entries {
                            self.cache.remove(0);
                        }
                        self.cache.push((policy_id.clone(), p.clone()));
                    }
                }
                (compiled.policy, false, dj, has_errors)
            }
        };
        let rules_json = policy
            .as_ref()
            .map(|p| serde_json::to_string(&p.rule_summaries()).unwrap_or_else(|_| "[]".into()))
            .unwrap_or_else(|| "[]".into());
        let mut outcome = Outcome {
            id,
            policy_id,
            cache_hit,
            diagnostics_json,
            has_errors,
            rules_json,
            actions: Vec::new(),
            decision_json: None,
            timings,
        };
        let (Some(policy), Some(ctx_bytes)) = (policy, req.context.as_ref()) else {
            return Reply::Done(Box::new(outcome));
        };
        let t = Instant::now();
        let limits = ContextLimits {
            max_bytes: req.options.max_context_bytes,
            max_depth: req.options.max_context_depth,
            max_items: req.options.max_context_items,
        };
        let ctx = match Context::from_json(ctx_bytes, &limits) {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    ErrorCode::from_code(e.code()),
                    e.to_string(),
                    outcome.timings,
                )
            }
        };
        outcome.timings.context_us = t.elapsed().as_micros() as u64;
        let t = Instant::now();
        let eval_opts = EvalOptions {
            limits: req.options.limits,
            trace: req.options.trace,
        };
        match omni::evaluate(&policy, &ctx, Timestamp(req.now_unix_nanos), &eval_opts) {
            Ok(d) => {
                outcome.timings.eval_us = t.elapsed().as_micros() as u64;
                outcome.actions = d.actions.iter().map(|a| a.name.to_string()).collect();
                outcome.decision_json = serde_json::to_string(&d).ok();
                Reply::Done(Box::new(outcome))
            }
            Err(e) => {
                outcome.timings.eval_us = t.elapsed().as_micros() as u64;
                fail(
                    ErrorCode::from_code(e.code()),
                    e.to_string(),
                    outcome.timings,
                )
            }
        }
    }
}
