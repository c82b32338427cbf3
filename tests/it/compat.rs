//! The earlier tooling's policies keep working (lenient profile), and the
//! standard benchmark workload fires exactly its expected actions.

//!
//! Both corpora live in `../shared`; without it these tests skip with a
//! note (`crate::common::shared`).

use crate::common::shared::shared_dir;
use omni::{compile, evaluate, CheckOptions, Context, ContextLimits, EvalOptions};
use std::path::{Path, PathBuf};

const COMPAT: &str = "compat/omnilang-v1";

fn files(dir: &Path, ext_filter: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("../shared/compat/omnilang-v1 is readable")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(&ext_filter)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_compat_policy_checks_and_evaluates_leniently() {
    let Some(dir) = shared_dir(COMPAT, "every_compat_policy_checks_and_evaluates_leniently") else {
        return;
    };
    let policies = files(&dir, |n| n.ends_with(".omni"));
    let contexts = files(&dir, |n| {
        n.starts_with("context") || n.ends_with("_context.json")
    });
    assert!(
        policies.len() >= 20,
        "compat corpus has {} policies",
        policies.len()
    );
    assert!(contexts.len() >= 3);
    let now = omni::timefmt::parse_rfc3339("2026-01-01T00:00:00Z").expect("now");
    for p in &policies {
        let src = std::fs::read_to_string(p).expect("read");
        let c = compile(&src, &CheckOptions::lenient());
        let errors: Vec<_> = c
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.message.clone())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", p.display());
        let policy = c.policy.expect("compiled");
        let mut ctxs = vec![Context::empty()];
        for cp in &contexts {
            let bytes = std::fs::read(cp).expect("read context");
            ctxs.push(
                Context::from_json(&bytes, &ContextLimits::default()).expect("context parses"),
            );
        }
        for ctx in &ctxs {
            let d = evaluate(&policy, ctx, now, &EvalOptions::default());
            assert!(d.is_ok(), "{}: {:?}", p.display(), d.err());
        }
    }
}

#[test]
fn compat_policies_behave_as_their_authors_meant() {
    let Some(dir) = shared_dir(COMPAT, "compat_policies_behave_as_their_authors_meant") else {
        return;
    };
    let dir = dir.display();
    let now = omni::timefmt::parse_rfc3339("2026-01-01T00:00:00Z").expect("now");
    let run = |file: &str, ctx: &str| {
        let src = std::fs::read_to_string(format!("{dir}/{file}")).expect("read");
        let p = compile(&src, &CheckOptions::lenient())
            .policy
            .expect("compiles");
        let ctx = Context::from_json(ctx.as_bytes(), &ContextLimits::default()).expect("ctx");
        evaluate(&p, &ctx, now, &EvalOptions::default())
            .expect("eval")
            .action_strings()
    };
    assert_eq!(
        run(
            "demo.omni",
            r#"{"BatteryLevel": 15, "ObstacleDetected": true}"#
        ),
        ["ReturnToHome", "EmergencyBrake"]
    );
    assert_eq!(
        run("hello.omni", r#"{"SystemStatus": "Ready"}"#),
        ["Display(Hello, OmniLang!)"]
    );
    assert_eq!(run("lambda_hof.omni", "{}"), ["Display(Lambda HOF OK)"]);
    assert_eq!(
        run("pattern_matching.omni", r#"{"Status": "Ready"}"#),
        ["Display(Status OK)"]
    );
    // Legacy braceless FOR with the two-line IF, and defaults from CONTEXT.
    let fleet = run(
        "drone_fleet.omni",
        r#"{"BatteryLevels": [50, 10, 12], "ActiveDrones": []}"#,
    );
    assert_eq!(
        fleet,
        [
            "ReplaceDrone",
            "MaintenanceAlert",
            "ReplaceDrone",
            "MaintenanceAlert"
        ]
    );
    let evf = std::fs::read(format!("{dir}/evaluator_features_context.json")).expect("ctx");
    let evf = String::from_utf8(evf).expect("utf8");
    assert_eq!(
        run("evaluator_features.omni", &evf),
        [
            "ActivateProfile",
            "RouteToClusterB",
            "MaintainTrajectory",
            "AddDevice",
            "Escalate"
        ]
    );
}

#[test]
fn standard_workload_fires_the_expected_actions_in_order() {
    let Some(dir) = shared_dir(
        "bench",
        "standard_workload_fires_the_expected_actions_in_order",
    ) else {
        return;
    };
    let dir = dir.display();
    let src = std::fs::read_to_string(format!("{dir}/drone_ops.omni")).expect("workload");
    let ctx = std::fs::read(format!("{dir}/drone_ops.context.json")).expect("context");
    let expected: Vec<String> = serde_json::from_slice(
        &std::fs::read(format!("{dir}/drone_ops.expected-actions.json")).expect("expected"),
    )
    .expect("json");
    let c = compile(&src, &CheckOptions::default());
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    let p = c.policy.expect("compiles");
    let ctx = Context::from_json(&ctx, &ContextLimits::default()).expect("ctx");
    let now = omni::timefmt::parse_rfc3339("2026-01-01T00:00:00Z").expect("now");
    let d = evaluate(&p, &ctx, now, &EvalOptions::default()).expect("eval");
    assert_eq!(d.action_strings(), expected);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}
