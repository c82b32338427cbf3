//! Every example of `examples/`, evaluated through a real sandboxed worker,
//! gives byte-identical results to in-process evaluation; a second request
//! for the same policy id is served from the worker's cache.

use crate::common::*;
use omni_worker::protocol::*;
use omni_worker::SandboxConfig;
use std::path::PathBuf;

fn examples_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
}

struct InProcess {
    diagnostics_json: String,
    has_errors: bool,
    rules_json: String,
    actions_json: String,
    decision_json: Option<String>,
}

/// What the worker computes, computed here with the library directly.
fn in_process(text: &str, ctx: Option<&[u8]>, opts: &RequestOptions) -> InProcess {
    let compiled = omni::compile(text, &opts.check);
    let diags: Vec<_> = compiled
        .diagnostics
        .iter()
        .map(|d| d.to_json(text, &compiled.line_index))
        .collect();
    let mut out = InProcess {
        diagnostics_json: serde_json::to_string(&diags).unwrap(),
        has_errors: compiled.has_errors(),
        rules_json: "[]".into(),
        actions_json: "[]".into(),
        decision_json: None,
    };
    let Some(policy) = compiled.policy else {
        return out;
    };
    out.rules_json = serde_json::to_string(&policy.rule_summaries()).unwrap();
    if let Some(ctx) = ctx {
        let ctx =
            omni::Context::from_json(ctx, &opts.limits.context).expect("example context parses");
        let eval = omni::EvalOptions {
            limits: opts.limits.eval,
            trace: opts.trace,
        };
        let d = omni::evaluate(&policy, &ctx, omni::Timestamp(NOW_NANOS), &eval)
            .expect("example evaluates");
        let names: Vec<&str> = d.actions.iter().map(|a| &*a.name).collect();
        out.actions_json = serde_json::to_string(&names).unwrap();
        out.decision_json = Some(serde_json::to_string(&d).unwrap());
    }
    out
}

fn assert_same(name: &str, o: &Evaluated, local: &InProcess) {
    assert_eq!(
        o.diagnostics_json, local.diagnostics_json,
        "{name}: diagnostics"
    );
    assert_eq!(o.has_errors, local.has_errors, "{name}: has_errors");
    assert_eq!(o.rules_json, local.rules_json, "{name}: rules");
    assert_eq!(o.actions_json, local.actions_json, "{name}: actions");
    assert_eq!(
        o.decision_json.as_deref().map(str::as_bytes),
        local.decision_json.as_deref().map(str::as_bytes),
        "{name}: decision bytes"
    );
}

#[test]
fn examples_through_a_sandboxed_worker_match_in_process_evaluation() {
    let mut policies: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "omni"))
        .collect();
    policies.sort();
    assert!(!policies.is_empty(), "no examples/*.omni to check");

    let (mut w, report) = start_worker(&config(SandboxConfig::default()));
    assert!(report.seccomp && report.no_new_privs, "{report:?}");
    let mut buf = Vec::new();
    let mut id = 0u64;
    let mut evaluated = 0;
    for path in &policies {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let ctx = std::fs::read(path.with_extension("context.json")).ok();
        let policy_id = omni::policy::policy_id(text.as_bytes());
        // The strict profile (the service's default), with and without a
        // trace; an example that is only valid leniently (legacy forms) is
        // compared under the lenient profile too.
        let strict_errors = in_process(&text, None, &RequestOptions::default()).has_errors;
        let mut runs = vec![
            (omni::Profile::Strict, false),
            (omni::Profile::Strict, true),
        ];
        if strict_errors {
            runs.push((omni::Profile::Lenient, false));
            runs.push((omni::Profile::Lenient, true));
        }
        for (profile, trace) in runs {
            let opts = RequestOptions::new(
                profile,
                omni::Features::default(),
                omni::Limits::standard(),
                trace,
            );
            let local = in_process(&text, ctx.as_deref(), &opts);

            // First request: the text. Compiled in the worker, unless the
            // previous request (same profile, no trace) already cached it.
            id += 1;
            let req = Request {
                id,
                policy: PolicySource::Text {
                    policy_id: policy_id.clone(),
                    text: text.as_str().into(),
                },
                context: ctx.clone(),
                now_unix_nanos: NOW_NANOS,
                options: opts.clone(),
            };
            let o = match w.call(&req, &mut buf).expect("reply") {
                Reply::Done(o) => *o,
                other => panic!("{name}: {other:?}"),
            };
            assert_eq!(o.id, id);
            assert_eq!(o.policy_id, policy_id);
            assert_same(&name, &o, &local);
            if local.has_errors {
                println!("{name} ({profile:?}): has errors; diagnostics identical");
                assert!(!o.cache_hit);
                continue;
            }
            assert_eq!(o.cache_hit, trace, "{name}: first sight compiles");

            // Second request: only the id. Served from the cache.
            id += 1;
            let req = Request {
                id,
                policy: PolicySource::Cached {
                    policy_id: policy_id.clone(),
                },
                ..req
            };
            let o = match w.call(&req, &mut buf).expect("reply") {
                Reply::Done(o) => *o,
                other => panic!("{name}: {other:?}"),
            };
            assert!(o.cache_hit, "{name}: second request not from the cache");
            assert_eq!((o.timings.parse_us, o.timings.check_us), (0, 0));
            assert_same(&name, &o, &local);
            if local.decision_json.is_some() {
                evaluated += 1;
            }
            println!(
                "{name} ({profile:?}, trace {trace}): identical, actions {}, cache hit on the second request",
                local.actions_json
            );
        }
    }
    println!(
        "{} examples, {evaluated} evaluations compared byte for byte",
        policies.len()
    );
    assert!(evaluated > 0, "no example produced a decision to compare");
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "worker survived every example"
    );
}
