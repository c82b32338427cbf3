//! One test per language construct, against `docs/language.md`.

use crate::common::*;
use omni::{EvalLimits, EvalOptions};

#[test]
fn if_then_else_and_unknown() {
    let rules = "- IF Battery < 20% THEN ReturnToHome ELSE Continue";
    assert_eq!(fired(rules, r#"{"Battery": 15}"#), ["ReturnToHome"]);
    assert_eq!(fired(rules, r#"{"Battery": 50}"#), ["Continue"]);
    let d = run(&policy(rules), "{}");
    assert!(d.actions.is_empty(), "missing data fires nothing");
    assert_eq!(outcome(&d, "R1"), "unknown");
    assert_eq!(d.warnings.len(), 1);
    assert!(
        d.warnings[0].message.contains("Battery"),
        "{}",
        d.warnings[0].message
    );
    let d = run(&policy(rules), r#"{"Battery": 50}"#);
    assert_eq!(outcome(&d, "R1"), "else_fired");
}

#[test]
fn actions_with_arguments_and_strings() {
    let rules = "- IF x > 1 THEN Display \"Hello\", Recharge(drone.id, 20%), Stop";
    let d = run(&policy(rules), r#"{"x": 2, "drone": {"id": "d7"}}"#);
    assert_eq!(
        d.action_strings(),
        ["Display(Hello)", "Recharge(d7, 20%)", "Stop"]
    );
    let json = serde_json::to_value(&d.actions[1]).expect("json");
    assert_eq!(
        json["args"],
        serde_json::json!(["d7", {"value": 20, "unit": "%"}])
    );
    // An unknown argument stops the whole THEN list.
    let d = run(&policy(rules), r#"{"x": 2}"#);
    assert!(d.actions.is_empty());
    assert_eq!(outcome(&d, "R1"), "unknown");
    assert!(
        d.warnings.iter().any(|w| w.message.contains("drone")),
        "{:?}",
        d.warnings
    );
}

#[test]
fn kleene_logic_with_missing_values() {
    // false AND unknown = false; true OR unknown = true; NOT unknown = unknown.
    assert_eq!(
        fired("- IF NOT (Missing > 1 AND 1 > 2) THEN A", "{}"),
        ["A"]
    );
    assert_eq!(fired("- IF Missing > 1 OR 2 > 1 THEN A", "{}"), ["A"]);
    assert!(fired("- IF NOT (Missing > 1) THEN A", "{}").is_empty());
    assert!(fired("- IF NOT Flag THEN A", "{}").is_empty());
    assert!(fired("- IF Missing != 3 THEN A", "{}").is_empty());
    assert!(fired("- IF Missing NOT IN [1, 2] THEN A", "{}").is_empty());
}

#[test]
fn bare_conditions_and_bool_numbers() {
    assert_eq!(fired("- IF Flag THEN A", r#"{"Flag": true}"#), ["A"]);
    assert_eq!(fired("- IF Flag THEN A", r#"{"Flag": 2}"#), ["A"]);
    assert!(fired("- IF Flag THEN A", r#"{"Flag": 0}"#).is_empty());
    assert!(fired("- IF Flag THEN A", r#"{"Flag": "yes"}"#).is_empty());
    assert_eq!(
        fired("- IF Sensor == true THEN A", r#"{"Sensor": 1}"#),
        ["A"]
    );
    assert_eq!(
        fired("- IF Sensor == false THEN A", r#"{"Sensor": 0}"#),
        ["A"]
    );
    assert!(fired("- IF Sensor == true THEN A", r#"{"Sensor": 2}"#).is_empty());
}

#[test]
fn null_strings_and_ordering() {
    assert_eq!(fired("- IF X == null THEN A", r#"{"X": null}"#), ["A"]);
    assert!(fired("- IF X == null THEN A", r#"{"X": 1}"#).is_empty());
    let d = run(&policy("- IF X < 3 THEN A"), r#"{"X": null}"#);
    assert_eq!(outcome(&d, "R1"), "unknown");
    assert_eq!(
        fired("- IF Name < \"b\" THEN A", r#"{"Name": "abc"}"#),
        ["A"]
    );
    assert_eq!(
        fired("- IF \"B\" < \"a\" THEN A", "{}"),
        ["A"],
        "byte order"
    );
    // Legacy `=`: an error under strict, `==` with a warning under lenient.
    let legacy = policy("- IF Mode = \"x\" THEN A");
    assert!(omni::compile(&legacy, &omni::CheckOptions::default()).has_errors());
    let c = omni::compile(&legacy, &omni::CheckOptions::lenient());
    assert!(!c.has_errors());
    let ctx = omni::Context::from_json(br#"{"Mode": "x"}"#, &omni::ContextLimits::default())
        .expect("ctx");
    let d = omni::evaluate(
        &c.policy.expect("compiles"),
        &ctx,
        omni::Timestamp(0),
        &EvalOptions::default(),
    )
    .expect("eval");
    assert_eq!(d.action_strings(), ["A"]);
}

#[test]
fn in_on_lists_strings_and_objects() {
    assert_eq!(fired("- IF x IN [1, 2, 3] THEN A", r#"{"x": 2}"#), ["A"]);
    assert_eq!(
        fired("- IF x NOT IN [1, 2, 3] THEN A", r#"{"x": 5}"#),
        ["A"]
    );
    assert_eq!(
        fired("- IF \"ell\" IN s THEN A", r#"{"s": "hello"}"#),
        ["A"]
    );
    assert_eq!(fired("- IF \"k\" IN o THEN A", r#"{"o": {"k": 1}}"#), ["A"]);
    assert!(fired("- IF \"z\" IN o THEN A", r#"{"o": {"k": 1}}"#).is_empty());
    // Mixed types: a match wins, otherwise unknown.
    assert_eq!(
        fired("- IF \"x\" IN xs THEN A", r#"{"xs": [1, "x"]}"#),
        ["A"]
    );
    let d = run(
        &policy("- IF 5 IN xs THEN A ELSE B"),
        r#"{"xs": ["a", "b"]}"#,
    );
    assert_eq!(outcome(&d, "R1"), "unknown");
    assert_eq!(
        fired("- IF 250cm IN xs THEN A", r#"{"xs": ["2.5m"]}"#),
        ["A"]
    );
}

#[test]
fn units_bare_numbers_and_conversion() {
    assert_eq!(
        fired("- IF Battery < 20% THEN A", r#"{"Battery": 15}"#),
        ["A"]
    );
    assert_eq!(
        fired("- IF Distance < 1m THEN A", r#"{"Distance": 0.8}"#),
        ["A"]
    );
    assert_eq!(fired("- IF 250cm == 2.5m THEN A", "{}"), ["A"]);
    assert_eq!(
        fired("- IF Length > 2m THEN A", r#"{"Length": "250cm"}"#),
        ["A"]
    );
    assert_eq!(
        fired(
            "- IF P > 2bar THEN A",
            r#"{"P": {"value": 2.5, "unit": "bar"}}"#
        ),
        ["A"]
    );
    assert_eq!(fired("- IF T > 45C THEN A", r#"{"T": "114F"}"#), ["A"]);
    assert_eq!(fired("- IF T > 300K THEN A", r#"{"T": "30C"}"#), ["A"]);
    assert_eq!(
        fired("- IF Wait + 30min > 1h THEN A", r#"{"Wait": "45min"}"#),
        ["A"]
    );
    assert_eq!(
        fired("- IF Speed * 2 > 100kmh THEN A", r#"{"Speed": "60kmh"}"#),
        ["A"]
    );
    assert_eq!(
        fired(
            "- IF Used / Total > 0.5 THEN A",
            r#"{"Used": "3GB", "Total": "4GB"}"#
        ),
        ["A"]
    );
    assert_eq!(fired("- IF 1KiB == 1024B THEN A", "{}"), ["A"]);
    assert_eq!(
        fired("- IF Amount > 10000USD THEN A", r#"{"Amount": 15000}"#),
        ["A"]
    );
    // Different dimensions at run time: unknown with a warning.
    let d = run(&policy("- IF D > 1m THEN A"), r#"{"D": "5s"}"#);
    assert_eq!(outcome(&d, "R1"), "unknown");
    assert_eq!(d.warnings[0].code, "dimension_mismatch");
    // Currencies never convert.
    let d = run(
        &policy("- IF Amount > 10USD THEN A"),
        r#"{"Amount": "20EUR"}"#,
    );
    assert_eq!(outcome(&d, "R1"), "unknown");
}

#[test]
fn arithmetic_and_division_by_zero() {
    assert_eq!(
        fired(
            "- IF (a + b) * 2 - c / 4 == 9 THEN A",
            r#"{"a": 2, "b": 3, "c": 4}"#
        ),
        ["A"]
    );
    assert_eq!(fired("- IF -a < 0 THEN A", r#"{"a": 2}"#), ["A"]);
    assert_eq!(
        fired(
            "- IF first + last == \"ab\" THEN A",
            r#"{"first": "a", "last": "b"}"#
        ),
        ["A"]
    );
    let d = run(&policy("- IF a / b > 1 THEN A"), r#"{"a": 1, "b": 0}"#);
    assert_eq!(outcome(&d, "R1"), "unknown");
    assert_eq!(d.warnings[0].code, "division_by_zero");
}

#[test]
fn names_defaults_root_and_paths() {
    let src = policy_with_context(
        "- IF Threshold < 10 AND $[\"x-id\"] == \"a\" AND $.y.z[1] == 2 THEN A",
        "- Domain: T\n- Threshold: 5",
    );
    let d = run(&src, r#"{"x-id": "a", "y": {"z": [1, 2]}}"#);
    assert_eq!(d.action_strings(), ["A"]);
    assert_eq!(
        d.defaults.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ["Threshold"]
    );
    // The request context wins over the default.
    let d = run(
        &src,
        r#"{"Threshold": 50, "x-id": "a", "y": {"z": [1, 2]}}"#,
    );
    assert!(d.actions.is_empty());
    assert!(d.defaults.is_empty());
    // Out of range, negative index, member of a non-object: missing.
    for ctx in [r#"{"xs": [1]}"#, r#"{"xs": "s"}"#] {
        let d = run(
            &policy("- IF xs[5] > 0 OR xs[-1] > 0 OR xs.a > 0 THEN A"),
            ctx,
        );
        assert_eq!(outcome(&d, "R1"), "unknown");
    }
}

#[test]
fn for_loops_over_lists_and_objects_with_bindings() {
    let rules = "- FOR d IN drones {\n    - IF d.battery < 20% THEN Recharge(d.id)\n}";
    let d = run(
        &policy(rules),
        r#"{"drones": [{"id": "a", "battery": 10}, {"id": "b", "battery": 90}, {"id": "c", "battery": 5}]}"#,
    );
    assert_eq!(d.action_strings(), ["Recharge(a)", "Recharge(c)"]);
    assert_eq!(
        serde_json::to_value(&d.actions[1].bindings).expect("json"),
        serde_json::json!({"d": "drones[2]"})
    );
    let r = d.rules.iter().find(|r| &*r.id == "R1").expect("R1");
    assert_eq!(r.iterations, Some(3));
    let inner = d.rules.iter().find(|r| &*r.id == "R1.1").expect("R1.1");
    assert_eq!((inner.evaluations, inner.fired), (3, 2));
    // Objects: values in key order as written.
    let d = run(
        &policy("- FOR z IN zones {\n    - IF z > 30C THEN Cool(z)\n}"),
        r#"{"zones": {"b": 40, "a": 35, "c": 10}}"#,
    );
    assert_eq!(d.action_strings(), ["Cool(40)", "Cool(35)"]);
    assert_eq!(
        serde_json::to_value(&d.actions[0].bindings).expect("json"),
        serde_json::json!({"z": "zones.b"})
    );
    // Shadowing: the loop variable hides a context name.
    assert_eq!(
        fired(
            "- FOR x IN xs {\n    - IF x == 7 THEN A\n}",
            r#"{"x": 1, "xs": [7]}"#
        ),
        ["A"]
    );
    // Missing or non-list: zero iterations and a warning.
    let d = run(&policy(rules), r#"{"drones": 5}"#);
    assert!(d.actions.is_empty());
    assert_eq!(d.warnings[0].code, "not_a_list");
    let d = run(&policy(rules), "{}");
    assert_eq!(d.warnings[0].code, "not_a_list");
    assert!(d.warnings[0].message.contains("drones"));
}

#[test]
fn nested_loops_record_all_bindings() {
    let rules = "- FOR s IN sites {\n    - FOR r IN s.racks {\n        - IF r.temp > 30C THEN Cool(r.id)\n    }\n}";
    let d = run(
        &policy(rules),
        r#"{"sites": [{"racks": [{"id": "r1", "temp": 35}]}, {"racks": [{"id": "r2", "temp": 20}, {"id": "r3", "temp": 31}]}]}"#,
    );
    assert_eq!(d.action_strings(), ["Cool(r1)", "Cool(r3)"]);
    assert_eq!(
        serde_json::to_value(&d.actions[1].bindings).expect("json"),
        serde_json::json!({"s": "sites[1]", "r": "s.racks[1]"})
    );
}

#[test]
fn while_is_evaluated_once_and_marked_active() {
    let rules = "- WHILE Temp > 45C {\n    - IF Fan == 0 THEN TurnOnFan\n}";
    let d = run(&policy(rules), r#"{"Temp": 50, "Fan": 0}"#);
    assert_eq!(d.action_strings(), ["TurnOnFan"]);
    assert_eq!(d.actions[0].count, 1);
    let r = d.rules.iter().find(|r| &*r.id == "R1").expect("R1");
    assert_eq!(r.active, Some(true));
    let d = run(&policy(rules), r#"{"Temp": 20, "Fan": 0}"#);
    assert!(d.actions.is_empty());
    assert_eq!(d.rules[0].active, Some(false));
}

#[test]
fn duplicate_actions_are_counted() {
    let d = run(&policy("- IF a > 1 THEN Alert(\"x\")\n- IF b > 1 THEN Alert(\"x\")\n- IF b > 1 THEN Alert(\"y\")"), r#"{"a": 2, "b": 2}"#);
    assert_eq!(d.action_strings(), ["Alert(x)", "Alert(y)"]);
    assert_eq!(d.actions[0].count, 2);
    assert_eq!(&*d.actions[0].rule, "R1");
}

#[test]
fn match_expressions() {
    let rules = "- IF match Status { \"Ready\" => true, \"Busy\" | \"Degraded\" => false, _ => false } THEN Go";
    assert_eq!(fired(rules, r#"{"Status": "Ready"}"#), ["Go"]);
    assert!(fired(rules, r#"{"Status": "Busy"}"#).is_empty());
    let d = run(
        &policy("- IF match S { 1 => true, 2 => false } THEN Go ELSE No"),
        r#"{"S": 3}"#,
    );
    assert_eq!(outcome(&d, "R1"), "unknown");
    assert_eq!(d.warnings[0].code, "no_match");
}

#[test]
fn lambdas_and_higher_order_functions() {
    assert_eq!(
        fired(
            "- IF reduce(map([1, 2, 3], |x| x * 2), |acc, x| acc + x, 0) == 12 THEN A",
            "{}"
        ),
        ["A"]
    );
    assert_eq!(
        fired(
            "- IF any(xs, |x| x > 5) AND all(xs, |x| x > 0) THEN A",
            r#"{"xs": [1, 6]}"#
        ),
        ["A"]
    );
    assert_eq!(
        fired(
            "- IF count(xs, |x| x > 1) == 2 AND len(filter(xs, |x| x > 1)) == 2 THEN A",
            r#"{"xs": [1, 2, 3]}"#
        ),
        ["A"]
    );
    // Capture: an outer loop variable inside the lambda.
    assert_eq!(
        fired(
            "- FOR d IN ds {\n    - IF any(d.flags, |f| f == d.want) THEN Hit(d.id)\n}",
            r#"{"ds": [{"id": "a", "want": "x", "flags": ["y", "x"]}, {"id": "b", "want": "z", "flags": []}]}"#
        ),
        ["Hit(a)"]
    );
    // any over unknowns with no true: unknown.
    let d = run(
        &policy("- IF any(xs, |x| x > 1) THEN A ELSE B"),
        r#"{"xs": ["a", 0]}"#,
    );
    assert_eq!(outcome(&d, "R1"), "unknown");
}

#[test]
fn stdlib_functions() {
    let ctx = r#"{"xs": [3, 1, 2, 3], "s": "  Hello World ", "t": "2025-12-31T22:00:00Z", "o": {"a": {"b": [5]}}, "temps": ["20C", "30C"]}"#;
    let checks = [
        "abs(-3) == 3",
        "min(xs) == 1",
        "max(4, 9, 2) == 9",
        "sum(xs) == 9",
        "avg([2, 4]) == 3",
        "round(2.567, 2) == 2.57",
        "floor(2.5) == 2",
        "ceil(2.1) == 3",
        "sqrt(16) == 4",
        "pow(2, 10) == 1024",
        "clamp(15, 0, 10) == 10",
        "len(s) == 14",
        "lower(\"AB\") == \"ab\"",
        "upper(\"ab\") == \"AB\"",
        "trim(s) == \"Hello World\"",
        "contains(s, \"World\")",
        "starts_with(trim(s), \"He\")",
        "ends_with(trim(s), \"ld\")",
        "len(split(\"a,b,c\", \",\")) == 3",
        "matches(trim(s), \"^H[a-z]+ W\")",
        "count(xs) == 4",
        "first(xs) == 3",
        "last(xs) == 3",
        "len(distinct(xs)) == 3",
        "first(sort(xs)) == 1",
        "contains(xs, 2)",
        "since(t) == 2h",
        "between(t, now()) == 120min",
        "date_part(t, \"hour\") == 22",
        "date_part(now(), \"weekday\") == 4",
        "now() > time(\"2025-01-01T00:00:00Z\")",
        "time(t) + 2h == now()",
        "now() - 30min < now()",
        "has(o, \"a\")",
        "len(keys(o)) == 1",
        "get(o, \"a.b[0]\") == 5",
        "std::math::avg(temps) == 25C",
        "max(temps) == 30C",
        "std::time::now_unix_millis() == 1767225600000",
        "std::time::duration_between_ms(t, now()) == 7200000",
        "std::list::len(xs) == 4",
        "std::str::len(\"abc\") == 3",
    ];
    for c in checks {
        assert_eq!(fired(&format!("- IF {c} THEN Ok"), ctx), ["Ok"], "{c}");
    }
}

#[test]
fn limits_stop_the_evaluation_without_a_partial_decision() {
    let big: Vec<u32> = (0..2000).collect();
    let ctx = serde_json::json!({ "xs": big }).to_string();
    let bomb =
        policy("- FOR a IN xs {\n    - FOR b IN xs {\n        - IF a == b THEN Same\n    }\n}");
    let err = run_with(&bomb, &ctx, &EvalOptions::default()).expect_err("fuel");
    assert_eq!(err.code(), "budget_exceeded");
    // The loop iteration cap.
    let opts = EvalOptions {
        limits: EvalLimits {
            max_loop_iterations: 100,
            ..EvalLimits::default()
        },
        trace: false,
    };
    let err = run_with(
        &policy("- FOR a IN xs {\n    - IF a > 0 THEN A\n}"),
        &ctx,
        &opts,
    )
    .expect_err("iterations");
    assert_eq!(err.code(), "budget_exceeded");
    // Value size: doubling a string.
    let opts = EvalOptions {
        limits: EvalLimits {
            max_string_bytes: 1000,
            ..EvalLimits::default()
        },
        trace: false,
    };
    let s = "x".repeat(600);
    let err = run_with(
        &policy("- IF s + s == \"\" THEN A"),
        &serde_json::json!({ "s": s }).to_string(),
        &opts,
    )
    .expect_err("size");
    assert_eq!(err.code(), "value_too_large");
    // A list that would be too long fails on the charge.
    let opts = EvalOptions {
        limits: EvalLimits {
            max_list_len: 10,
            ..EvalLimits::default()
        },
        trace: false,
    };
    let err =
        run_with(&policy("- IF len(map(xs, |x| x)) > 0 THEN A"), &ctx, &opts).expect_err("list");
    assert_eq!(err.code(), "value_too_large");
}

#[test]
fn trace_shows_sub_expressions() {
    let opts = EvalOptions {
        trace: true,
        ..EvalOptions::default()
    };
    let d = run_with(
        &policy("- IF Battery < 20% AND Mode == \"patrol\" THEN A"),
        r#"{"Battery": 15}"#,
        &opts,
    )
    .expect("eval");
    let trace = serde_json::to_value(&d.trace).expect("json");
    let cond = &trace[0]["condition"];
    assert_eq!(cond["expr"], "Battery < 20% AND Mode == \"patrol\"");
    assert_eq!(cond["unknown"], true);
    assert_eq!(cond["children"][0]["expr"], "Battery < 20%");
    assert_eq!(cond["children"][0]["value"], true);
    assert_eq!(cond["children"][0]["children"][0]["value"], 15);
    assert_eq!(cond["children"][1]["children"][0]["expr"], "Mode");
    assert_eq!(cond["children"][1]["children"][0]["unknown"], true);
}

#[test]
fn decision_carries_metadata_and_now() {
    let d = run(&policy("- IF x > 1 THEN A"), r#"{"x": 2}"#);
    let v = serde_json::to_value(&d).expect("json");
    assert_eq!(v["now"], "2026-01-01T00:00:00Z");
    assert!(v["policyId"].as_str().unwrap_or("").starts_with("sha256:"));
    assert_eq!(v["metadata"]["intent"], "test");
    assert_eq!(v["metadata"]["actors"]["primary"], "Ops");
    assert_eq!(v["metadata"]["scope"]["domain"], "Test");
    assert_eq!(v["metadata"]["constraints"][0]["kind"], "Technical");
    assert!(v["stats"]["steps"].as_u64().unwrap_or(0) > 0);
    assert_eq!(v["stats"]["rulesEvaluated"], 1);
}

/// The fast paths (by-reference lookups, conditions evaluated to truth
/// directly) charge exactly the steps of the general evaluation, which the
/// trace mode always uses.
#[test]
fn fast_paths_cost_the_same_steps_as_the_general_path() {
    let rules = "- IF d.battery < 20% AND d.status == \"ok\" AND \"hot\" IN d.flags THEN A(d.id)\n- IF NOT (x > 1) OR y == 2 THEN B\n- FOR e IN ds {\n    - IF e.battery >= 10 THEN C(e.id)\n}";
    let ctx = r#"{"d": {"id": "a", "battery": 5, "status": "ok", "flags": ["cold", "hot"]}, "x": 3, "y": 2, "ds": [{"id": "p", "battery": 50}, {"id": "q"}]}"#;
    let fast = run(&policy(rules), ctx);
    let traced = run_with(
        &policy(rules),
        ctx,
        &EvalOptions {
            trace: true,
            ..EvalOptions::default()
        },
    )
    .expect("eval");
    assert_eq!(fast.stats.steps, traced.stats.steps);
    assert_eq!(fast.action_strings(), traced.action_strings());
    assert_eq!(fast.warnings, traced.warnings);
}

#[test]
fn reported_bugs_stay_fixed() {
    // Unknown values inside an argument stop the action (the fail-safe).
    let d = run(
        &policy("- IF true THEN Send(map(Xs, |x| x.id))"),
        r#"{"Xs": [{"id": 1}, {}]}"#,
    );
    assert!(d.actions.is_empty());
    assert_eq!(outcome(&d, "R1"), "unknown");
    // Causes from a condition that did not decide are not reported.
    let d = run(&policy("- IF A OR B THEN Notify(C)"), r#"{"B": true}"#);
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].message.contains('C'));
    // A keyword after a dot keeps its spelling.
    assert_eq!(
        fired("- IF Obj.In == 1 THEN A", r#"{"Obj": {"In": 1}}"#),
        ["A"]
    );
    // An RFC 3339 string next to a duration is a timestamp.
    assert_eq!(
        fired(
            "- IF Deadline + 3h > now() THEN A",
            r#"{"Deadline": "2025-12-31T23:00:00Z"}"#
        ),
        ["A"]
    );
    // Conditions may span lines inside parentheses and brackets.
    assert_eq!(
        fired(
            "- IF (A AND\n    B) OR x IN [1,\n 2] THEN Ok",
            r#"{"A": true, "B": true}"#
        ),
        ["Ok"]
    );
    // Average of temperatures is allowed; a sum is not.
    assert_eq!(
        fired("- IF avg(Ts) == 25C THEN A", r#"{"Ts": ["20C", "30C"]}"#),
        ["A"]
    );
    let d = run(
        &policy("- IF sum(Ts) > 0C THEN A ELSE B"),
        r#"{"Ts": ["20C", "30C"]}"#,
    );
    assert_eq!(outcome(&d, "R1"), "unknown");
}

#[test]
fn inline_rule_on_the_header_line_is_parsed() {
    let src = "INTENT: t\nACTOR:\n- Primary: a\nCONTEXT:\n- Domain: d\nRULE: IF true THEN A\nCONSTRAINT:\n- Legal: l\nIMPACT:\n- Benefit: b\nTRACE:\n- Evidence: e\n";
    let c = omni::compile(src, &omni::CheckOptions::lenient());
    assert!(
        c.diagnostics
            .iter()
            .all(|d| d.code != omni::Code::EmptySection),
        "{:?}",
        c.diagnostics
    );
    let p = c.policy.expect("compiles");
    let d = omni::evaluate(
        &p,
        &omni::Context::empty(),
        omni::Timestamp(0),
        &EvalOptions::default(),
    )
    .expect("eval");
    assert_eq!(d.action_strings(), ["A"]);
}

#[test]
fn example_authors_findings_stay_fixed() {
    // Negative CONTEXT defaults are literals.
    let src = policy_with_context("- IF Temp < Cold THEN Alarm", "- Domain: T\n- Cold: -60C");
    assert_eq!(run(&src, r#"{"Temp": "-65C"}"#).action_strings(), ["Alarm"]);
    // Two quantity strings compare as quantities.
    assert!(fired(
        "- IF Box > Limit THEN Heavy",
        r#"{"Box": "88000lb", "Limit": "40t"}"#
    )
    .is_empty());
    assert_eq!(
        fired(
            "- IF Box < Limit THEN Ok",
            r#"{"Box": "88000lb", "Limit": "40t"}"#
        ),
        ["Ok"]
    );
    assert_eq!(
        fired("- IF A == B THEN Same", r#"{"A": "250cm", "B": "2.5m"}"#),
        ["Same"]
    );
    // Plain strings still compare as text.
    assert_eq!(
        fired("- IF A < B THEN Before", r#"{"A": "apple", "B": "banana"}"#),
        ["Before"]
    );
    // Duration strings work with timestamps; negation works on quantity strings.
    assert_eq!(
        fired(
            "- IF time(T) + D > now() THEN Later",
            r#"{"T": "2025-12-31T00:00:00Z", "D": "72h"}"#
        ),
        ["Later"]
    );
    assert_eq!(
        fired("- IF -P > 3MW THEN Export", r#"{"P": "-3.5MW"}"#),
        ["Export"]
    );
    // A ratio scales a quantity.
    assert_eq!(
        fired(
            "- IF Draught * 110% > 10m THEN Deep",
            r#"{"Draught": "9.5m"}"#
        ),
        ["Deep"]
    );
    // Currencies never convert: a dimension mismatch, not a type mismatch.
    let d = run(
        &policy("- IF Fee >= 10000USD THEN A ELSE B"),
        r#"{"Fee": "950CHF"}"#,
    );
    assert_eq!(outcome(&d, "R1"), "unknown");
    assert_eq!(d.warnings[0].code, "dimension_mismatch");
}

#[test]
fn same_action_from_two_loops_with_equal_bindings_is_counted_once() {
    let rules = "- FOR d IN ds {\n    - IF d > 1 THEN Check(d)\n}\n- FOR d IN ds {\n    - IF d > 2 THEN Check(d)\n}";
    let dec = run(&policy(rules), r#"{"ds": [3]}"#);
    assert_eq!(dec.action_strings(), ["Check(3)"]);
    assert_eq!(dec.actions[0].count, 2);
}

#[test]
fn inline_context_and_actor_items_are_read() {
    let src = "INTENT: t\nACTOR: Primary: Ops\nCONTEXT: Domain: Hidden\n- Limit: 5\nRULE:\n- IF x > Limit THEN A\nCONSTRAINT:\n- Legal: l\nIMPACT:\n- Benefit: b\nTRACE:\n- Evidence: e\n";
    let c = omni::compile(src, &omni::CheckOptions::default());
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let p = c.policy.expect("compiles");
    assert_eq!(p.metadata.scope.domain.as_deref(), Some("Hidden"));
    assert_eq!(p.metadata.actors.primary.as_deref(), Some("Ops"));
    let ctx =
        omni::Context::from_json(br#"{"x": 9}"#, &omni::ContextLimits::default()).expect("ctx");
    let d = omni::evaluate(&p, &ctx, omni::Timestamp(0), &EvalOptions::default()).expect("eval");
    assert_eq!(d.action_strings(), ["A"]);
}
