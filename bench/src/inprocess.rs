//! The in-process ceiling: a `hyper` server that does what `omnid` does for
//! `POST /api/validate` — parse the request with the context kept raw, hash
//! the policy, take the compiled policy from a cache, parse the context,
//! evaluate, write the decision and the response envelope — but evaluates on
//! the HTTP thread, with no worker process, no protocol, no check of the
//! worker's JSON, no log line and no metrics. What it reaches is the most any
//! design that isolates evaluation in another process could reach with this
//! engine on this machine; `omnid`'s throughput against it is the cost of
//! the isolation. A benchmark baseline only: it has none of omnid's limits.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use omni_worker::protocol::{self, PolicySource, Reply, RequestOptions};
use omni_worker::worker::WorkerState;
use omni_worker::WorkerConfig;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::cell::RefCell;
use tokio::net::TcpListener;

#[derive(Deserialize)]
struct ValidateRequest<'a> {
    #[serde(borrow)]
    code: Cow<'a, str>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    now: Option<Cow<'a, str>>,
}

thread_local! {
    // One evaluator (with its compiled-policy cache) per runtime thread.
    static STATE: RefCell<WorkerState> = RefCell::new(WorkerState::new(&WorkerConfig::default()));
}

/// Serves `POST` bodies of `/api/validate` on `listener` until dropped.
pub async fn serve(listener: TcpListener) {
    crate::server::serve(listener, |req: Request<Incoming>| async move {
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let (status, out) = match answer(&body) {
            Some(out) => (StatusCode::OK, out),
            None => (StatusCode::BAD_REQUEST, br#"{"ok":false}"#.to_vec()),
        };
        let mut r = Response::new(Full::new(Bytes::from(out)));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    })
    .await;
}

/// The response body to one request, as omnid writes it (minus timings).
pub fn answer(body: &[u8]) -> Option<Vec<u8>> {
    let parsed: ValidateRequest = serde_json::from_slice(body).ok()?;
    let policy_id = omni::policy::policy_id(parsed.code.as_bytes());
    let req = protocol::Request {
        id: 1,
        policy: PolicySource::Text {
            policy_id: policy_id.clone(),
            text: parsed.code.into_owned().into(),
        },
        context: parsed.context.map(|c| c.get().as_bytes().to_vec()),
        now_unix_nanos: match &parsed.now {
            Some(t) => omni::timefmt::parse_rfc3339(t)?.0,
            None => 0,
        },
        options: RequestOptions::default(),
    };
    STATE.with(|s| {
        let mut state = s.borrow_mut();
        let Reply::Done(o) = state.handle_guarded(req) else {
            return None;
        };
        let decision = o.decision_json.as_deref().unwrap_or("null");
        let mut out = Vec::with_capacity(o.rules_json.len() + decision.len() + 512);
        out.extend_from_slice(b"{\"requestId\":\"0123456789abcdef0123\",\"ok\":");
        out.extend_from_slice(if o.has_errors { b"false" } else { b"true" });
        out.extend_from_slice(b",\"policyId\":");
        serde_json::to_writer(&mut out, &policy_id).ok()?;
        out.extend_from_slice(b",\"errors\":[],\"warnings\":[],\"rules\":");
        out.extend_from_slice(o.rules_json.as_bytes());
        out.extend_from_slice(b",\"actions\":");
        out.extend_from_slice(o.actions_json.as_bytes());
        out.extend_from_slice(b",\"decision\":");
        out.extend_from_slice(decision.as_bytes());
        out.extend_from_slice(b",\"engine\":\"omni-inprocess\"}");
        state.recycle(Reply::Done(o));
        Some(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload;

    /// The ceiling does the whole evaluation: the standard request fires
    /// the standard actions, as omnid's answer does.
    #[test]
    fn the_standard_request_fires_the_standard_actions() {
        if !crate::standard_workload_present("the_standard_request_fires_the_standard_actions") {
            return;
        }
        let out = answer(workload::standard_body().as_bytes()).expect("an answer");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["ok"], true);
        let fired: Vec<String> = v["decision"]["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .map(|a| {
                let name = a["name"].as_str().unwrap_or_default();
                match a["args"].as_array().filter(|x| !x.is_empty()) {
                    Some(args) => {
                        let args: Vec<&str> = args
                            .iter()
                            .map(|x| x.as_str().unwrap_or_default())
                            .collect();
                        format!("{name}({})", args.join(", "))
                    }
                    None => name.to_string(),
                }
            })
            .collect();
        assert_eq!(fired, workload::standard_expected_actions());
    }

    #[test]
    fn the_trivial_request_is_a_valid_policy_that_fires() {
        let out = answer(workload::trivial_body().as_bytes()).expect("an answer");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["actions"], serde_json::json!(["Act"]));
    }

    #[test]
    fn a_body_that_is_not_a_request_gets_no_answer() {
        assert!(answer(b"{\"code\": 1}").is_none());
        assert!(answer(b"not json").is_none());
    }
}
