//! The wire protocol against a real sandboxed worker: bad frames end it with
//! its protocol-error code, every evaluation error is a reply, and the worker
//! keeps serving after each.

use crate::common::*;
use omni_worker::protocol::*;
use omni_worker::{SandboxConfig, WorkerProcess};
use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

const POLICY: &str = "INTENT: protocol test\n\
ACTOR:\n- Primary: Ops\n\
CONTEXT:\n- Domain: Test\n\
RULE:\n- IF Battery < 20% THEN ReturnToHome\n\
CONSTRAINT:\n- Technical: none\n\
IMPACT:\n- Benefit: safety\n\
TRACE:\n- Evidence: test\n";

fn worker() -> WorkerProcess {
    let (w, report) = start_worker(&config(SandboxConfig::default()));
    assert!(report.seccomp, "{report:?}");
    w
}

fn request(id: u64, policy: PolicySource, context: Option<&[u8]>) -> Request {
    Request {
        id,
        policy,
        context: context.map(|c| c.to_vec()),
        now_unix_nanos: NOW_NANOS,
        options: RequestOptions::default(),
    }
}

fn text(id: &str, text: &str) -> PolicySource {
    PolicySource::Text {
        policy_id: id.into(),
        text: text.into(),
    }
}

/// Sends raw bytes, closes our sending side, and asserts the exit code.
fn assert_protocol_exit(bytes: &[u8], what: &str) {
    let mut w = worker();
    // The worker may exit before reading everything; a broken pipe is fine.
    let _ = w.stream.write_all(bytes);
    let _ = w.stream.shutdown(Shutdown::Write);
    let (st, took) = wait_for(&mut w, Duration::from_secs(5));
    println!("{what}: {} after {took:?}", describe(&st));
    assert_eq!(
        st.code(),
        Some(EXIT_PROTOCOL_ERROR),
        "{what}: {}",
        describe(&st)
    );
    assert_eq!(
        omni_worker::classify_exit(st),
        omni_worker::WorkerExit::ProtocolError
    );
}

#[test]
fn garbage_frame_exits_with_protocol_error() {
    let mut frame = 16u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0xff; 16]);
    assert_protocol_exit(&frame, "garbage payload");
    assert_protocol_exit(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "HTTP instead of frames",
    );
    assert_protocol_exit(&0u32.to_le_bytes(), "empty frame");
}

#[test]
fn valid_message_with_trailing_bytes_exits_with_protocol_error() {
    let mut buf = Vec::new();
    encode_frame(&request(1, text("p", POLICY), None), &mut buf).unwrap();
    buf.push(0);
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    assert_protocol_exit(&buf, "trailing byte");
}

#[test]
fn truncated_frames_exit_with_protocol_error() {
    let mut buf = Vec::new();
    encode_frame(&request(1, text("p", POLICY), Some(b"{}")), &mut buf).unwrap();
    assert_protocol_exit(&buf[..buf.len() - 5], "truncated payload");
    assert_protocol_exit(&buf[..2], "truncated length");
}

#[test]
fn oversized_frames_exit_with_protocol_error() {
    assert_protocol_exit(&u32::MAX.to_le_bytes(), "length u32::MAX");
    assert_protocol_exit(
        &((MAX_REQUEST_FRAME + 1) as u32).to_le_bytes(),
        "length one over the maximum",
    );
}

#[test]
fn clean_close_exits_zero() {
    let mut w = worker();
    w.stream.shutdown(Shutdown::Write).unwrap();
    let (st, _) = wait_for(&mut w, Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{}", describe(&st));
}

fn failed(reply: Reply) -> Failure {
    match reply {
        Reply::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn done(reply: Reply) -> Evaluated {
    match reply {
        Reply::Done(o) => *o,
        other => panic!("expected an outcome, got {other:?}"),
    }
}

#[test]
fn every_error_is_a_reply_and_the_worker_keeps_serving() {
    let mut w = worker();
    let mut buf = Vec::new();
    let mut id = 0;
    let mut call = |w: &mut WorkerProcess,
                    policy: PolicySource,
                    ctx: Option<&[u8]>,
                    opts: Option<RequestOptions>| {
        id += 1;
        let mut req = request(id, policy, ctx);
        if let Some(o) = opts {
            req.options = o;
        }
        let reply = w.call(&req, &mut buf).expect("reply");
        let rid = match &reply {
            Reply::Done(o) => o.id,
            Reply::Failed(f) => f.id,
            Reply::NotCached { id } => *id,
            Reply::Ready(_) => 0,
        };
        assert_eq!(rid, id, "reply id");
        reply
    };

    // Not cached yet.
    let r = call(
        &mut w,
        PolicySource::Cached {
            policy_id: "nope".into(),
        },
        None,
        None,
    );
    assert!(matches!(r, Reply::NotCached { .. }), "{r:?}");

    // A policy with errors: a reply with diagnostics, no decision.
    let o = done(call(
        &mut w,
        text("bad", "INTENT: x\nRULE:\n- IF THEN\n"),
        Some(b"{}"),
        None,
    ));
    assert!(o.has_errors && o.decision_json.is_none() && o.diagnostics_json.contains("E0"));

    // Bad contexts.
    let f = failed(call(&mut w, text("p", POLICY), Some(b"{not json"), None));
    assert_eq!(f.code, ErrorCode::InvalidContext);
    let f = failed(call(&mut w, text("p", POLICY), Some(b"[1, 2]"), None));
    assert_eq!(f.code, ErrorCode::InvalidContext);
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let f = failed(call(
        &mut w,
        text("p", POLICY),
        Some(format!("{{\"a\": {deep}}}").as_bytes()),
        None,
    ));
    assert_eq!(f.code, ErrorCode::ContextTooDeep);
    // 300 KB of context in one frame (the reader grows its buffer), over the 100 KB limit.
    let big = format!("{{\"a\": \"{}\"}}", "x".repeat(300 << 10));
    let f = failed(call(&mut w, text("p", POLICY), Some(big.as_bytes()), None));
    assert_eq!(f.code, ErrorCode::ContextTooLarge);

    // Out of fuel.
    let mut opts = RequestOptions::default();
    opts.limits.eval.fuel = 1;
    let f = failed(call(
        &mut w,
        text("p", POLICY),
        Some(b"{\"Battery\": 5}"),
        Some(opts),
    ));
    assert_eq!(f.code, ErrorCode::BudgetExceeded);

    // Too large a policy.
    let huge = format!("{POLICY}{}", "#".repeat(omni::DEFAULT_MAX_POLICY_BYTES));
    let f = failed(call(&mut w, text("huge", &huge), None, None));
    assert_eq!(f.code, ErrorCode::PolicyTooLarge);

    // And the worker still evaluates.
    let o = done(call(
        &mut w,
        text("p", POLICY),
        Some(b"{\"Battery\": 5}"),
        None,
    ));
    assert_eq!(o.actions_json, r#"["ReturnToHome"]"#);
    assert!(o.cache_hit, "compiled by the earlier requests");
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "worker still running"
    );
}

#[test]
fn strict_and_lenient_compiles_are_not_mixed_up() {
    // A conformance problem (no TRACE section) is an error under the strict
    // profile and a warning under the lenient one: the lenient compile in the
    // cache must not answer a strict request.
    let lenient_only = "INTENT: x\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Test\n\
                        RULE:\n- IF Battery < 20% THEN ReturnToHome\n";
    let mut w = worker();
    let mut buf = Vec::new();
    let mut lenient = RequestOptions::default();
    lenient.check.profile = omni::Profile::Lenient;
    let mut req = request(1, text("l", lenient_only), Some(b"{\"Battery\": 5}"));
    req.options = lenient.clone();
    let o = done(w.call(&req, &mut buf).unwrap());
    assert!(
        !o.has_errors && o.diagnostics_json.contains("warning"),
        "{o:?}"
    );
    req.id = 2;
    req.policy = PolicySource::Cached {
        policy_id: "l".into(),
    };
    let o = done(w.call(&req, &mut buf).unwrap());
    assert!(
        o.cache_hit && o.diagnostics_json.contains("warning"),
        "warnings kept on a hit"
    );
    let strict = request(3, text("l", lenient_only), Some(b"{\"Battery\": 5}"));
    let o = done(w.call(&strict, &mut buf).unwrap());
    assert!(!o.cache_hit && o.has_errors, "{o:?}");
}

#[test]
fn pipelined_requests_get_replies_in_order() {
    let mut w = worker();
    let mut all = Vec::new();
    let mut buf = Vec::new();
    for id in 1..=5 {
        encode_frame(
            &request(id, text("p", POLICY), Some(b"{\"Battery\": 5}")),
            &mut buf,
        )
        .unwrap();
        all.extend_from_slice(&buf);
    }
    w.stream.write_all(&all).unwrap();
    for id in 1..=5 {
        let o = done(read_frame(&mut w.stream, MAX_REPLY_FRAME, &mut buf).unwrap());
        assert_eq!(o.id, id);
        assert_eq!(o.cache_hit, id > 1);
    }
}

#[test]
fn a_polling_worker_serves_and_exits_cleanly() {
    let cfg = omni_worker::WorkerConfig {
        poll_before_block_us: 200,
        ..config(SandboxConfig::default())
    };
    let (mut w, report) = start_worker(&cfg);
    assert!(report.seccomp);
    let mut buf = Vec::new();
    for id in 1..=20 {
        let o = done(
            w.call(
                &request(id, text("p", POLICY), Some(b"{\"Battery\": 5}")),
                &mut buf,
            )
            .unwrap(),
        );
        assert_eq!((o.id, o.cache_hit), (id, id > 1));
        if id % 5 == 0 {
            std::thread::sleep(Duration::from_millis(1)); // past the poll window
        }
    }
    w.stream.shutdown(Shutdown::Write).unwrap();
    let (st, _) = wait_for(&mut w, Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{}", describe(&st));
}

#[test]
fn the_policy_limit_is_the_one_sent_with_the_request() {
    let mut w = worker();
    let mut buf = Vec::new();
    // Under a lowered limit: refused, and the message names that limit.
    let mut req = request(1, text("p", POLICY), Some(b"{\"Battery\": 5}"));
    req.options.limits.policy_bytes = 50;
    let f = failed(w.call(&req, &mut buf).unwrap());
    assert_eq!(f.code, ErrorCode::PolicyTooLarge);
    assert!(f.message.contains("limit of 50 bytes"), "{}", f.message);
    // Above the language's default, when the request allows it.
    let big = format!("{POLICY}{}", "#".repeat(omni::DEFAULT_MAX_POLICY_BYTES));
    let mut req = request(2, text("big", &big), Some(b"{\"Battery\": 5}"));
    req.options.limits.policy_bytes = 400_000;
    let o = done(w.call(&req, &mut buf).unwrap());
    assert_eq!(o.actions_json, r#"["ReturnToHome"]"#);
}
