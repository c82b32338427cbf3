//! A job's life on the HTTP side of the pool: the [`Work`] a request hands
//! to the pool, the [`Job`] it travels in through the queue, how it ended
//! ([`JobResult`]), and why the pool would not take it ([`SubmitError`]).

use crate::restart::RestartReason;
use omni_worker::protocol::{
    encode_frame, Evaluated, Failure, PolicySource, Request, RequestOptions,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an evaluation needs; built by the HTTP side, consumed by a driver.
#[derive(Debug)]
pub struct Work {
    pub request_id: String,
    /// For logs only.
    pub tenant: Option<String>,
    /// Who the work is charged to: `t:NAME` for a tenant, `a:ADDRESS` for
    /// an anonymous client. Its queue in the fair share, its failure
    /// budget, and the scope of its quarantine records (so one owner's
    /// quarantine tells nothing about another's policies).
    pub owner: String,
    /// `sha256:` of the policy text.
    pub policy_id: String,
    /// The key the worker caches the compiled policy under: the policy id,
    /// plus a suffix when the tenant or compile options differ from the
    /// deployment default, so a cache hit never crosses tenants or options.
    pub cache_key: String,
    /// The policy text, shared with whoever holds it (a stored policy's
    /// registry entry): sent, never copied, and only on a cache miss.
    pub text: Arc<str>,
    pub context: Option<Vec<u8>>,
    pub now_unix_nanos: i64,
    pub options: RequestOptions,
    pub deadline: Duration,
}

impl Work {
    /// How long the job may wait in the queue before it is answered
    /// `Expired` instead of run: its deadline plus eight worker timeouts
    /// (room for the jobs ahead of it), so a client is not answered after
    /// it has long given up.
    pub fn queue_expiry(&self, worker_timeout: Duration) -> Duration {
        self.deadline + worker_timeout * 8
    }

    /// Encodes the request frame for this work into `buf` (`cached`: send
    /// only the policy id), then takes the parts back: the job may have to
    /// be sent again, to a replacement worker or with its text. `false`:
    /// it could not be encoded.
    pub fn encode(&mut self, id: u64, cached: bool, buf: &mut Vec<u8>) -> bool {
        let mut req = Request {
            id,
            policy: if cached {
                PolicySource::Cached {
                    policy_id: std::mem::take(&mut self.cache_key),
                }
            } else {
                PolicySource::Text {
                    policy_id: std::mem::take(&mut self.cache_key),
                    text: self.text.clone(),
                }
            },
            context: self.context.take(),
            now_unix_nanos: self.now_unix_nanos,
            options: std::mem::take(&mut self.options),
        };
        let encoded = encode_frame(&req, buf).is_ok();
        match std::mem::replace(
            &mut req.policy,
            PolicySource::Cached {
                policy_id: String::new(),
            },
        ) {
            PolicySource::Cached { policy_id } | PolicySource::Text { policy_id, .. } => {
                self.cache_key = policy_id
            }
        }
        self.context = req.context.take();
        self.options = std::mem::take(&mut req.options);
        encoded
    }
}

/// How a job ended.
#[derive(Debug)]
pub enum JobResult {
    /// The worker processed the policy.
    Done(Box<Evaluated>),
    /// The worker answered with an error (a limit, a bad context).
    Failed(Failure),
    /// The evaluation killed its worker (or ran past its deadline and was killed).
    Killed(RestartReason),
    /// The policy was quarantined while the job waited.
    Quarantined(Duration),
    /// Its owner went over its failure budget while the job waited.
    TenantBackoff(Duration),
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

/// A queued job: the work, when it was queued, and where its answer goes.
pub struct Job {
    pub work: Work,
    pub enqueued: Instant,
    pub reply: tokio::sync::oneshot::Sender<JobReply>,
}

/// Why the pool did not take a job, or gave no answer for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The policy killed workers recently; refused for this long.
    Quarantined(Duration),
    /// The owner's requests killed too many workers recently; its requests
    /// are refused for this long.
    TenantBackoff(Duration),
    /// No worker can take work now or in a moment.
    NotReady,
    /// The queue is full.
    Full,
    /// The pool is stopping.
    Stopped,
    /// The pool dropped the job without an answer.
    Lost,
    /// No answer within the queue expiry and then some: no driver is alive.
    TimedOut,
}

/// Why an owner's job is refused before it reaches a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The owner is over its failure budget; for this long.
    TenantBackoff(Duration),
    /// The owner's policy (by canonical form) is quarantined; for this long.
    Quarantined(Duration),
}

impl From<Refusal> for SubmitError {
    fn from(r: Refusal) -> SubmitError {
        match r {
            Refusal::TenantBackoff(d) => SubmitError::TenantBackoff(d),
            Refusal::Quarantined(d) => SubmitError::Quarantined(d),
        }
    }
}

impl From<Refusal> for JobResult {
    fn from(r: Refusal) -> JobResult {
        match r {
            Refusal::TenantBackoff(d) => JobResult::TenantBackoff(d),
            Refusal::Quarantined(d) => JobResult::Quarantined(d),
        }
    }
}

/// Answers a job with `result`.
pub(super) fn answer(job: Job, result: JobResult, queue_time: Duration) {
    let _ = job.reply.send(JobReply { result, queue_time });
}

/// Answers a job that cannot be served now (its slot is backing off).
pub(super) fn unavailable(job: Job) {
    let queue_time = job.enqueued.elapsed();
    let _ = job.reply.send(JobReply {
        result: JobResult::Unavailable,
        queue_time,
    });
}
