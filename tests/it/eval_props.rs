//! Property tests of evaluation: units, Kleene logic, the fail-safe, paths on
//! random JSON, determinism and termination within the fuel limit.

use crate::common::*;
use omni::units::{lookup, Dimension};
use omni::{compile, evaluate, CheckOptions, Context, ContextLimits, EvalOptions};
use proptest::prelude::*;

const UNITS_BY_DIM: &[&[&str]] = &[
    &["%", "pct", "ppm"],
    &["mm", "cm", "m", "km", "in", "ft", "mi"],
    &["ns", "us", "ms", "s", "min", "h", "d", "w"],
    &["C", "F", "K"],
    &["mps", "kmh", "kph", "mph", "kn"],
    &["mg", "g", "kg", "t", "lb"],
    &["Pa", "kPa", "MPa", "bar", "psi"],
    &["mV", "V", "kV"],
    &["mA", "A"],
    &["W", "kW", "MW"],
    &["J", "Wh", "kWh", "MWh"],
    &["Hz", "kHz", "MHz", "GHz"],
    &["B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"],
];

fn outcome_of(rules: &str, ctx: &str) -> String {
    outcome(&run(&policy(rules), ctx), "R1")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// `x == converted(x)` for any two units of one dimension, and the
    /// conversion round-trips.
    #[test]
    fn unit_conversion_round_trips(dim in 0..UNITS_BY_DIM.len(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>(), v in -1.0e6f64..1.0e6) {
        let units = UNITS_BY_DIM[dim];
        let (ua, ub) = (lookup(units[a.index(units.len())]).expect("unit"), lookup(units[b.index(units.len())]).expect("unit"));
        prop_assert_eq!(ua.dim(), ub.dim());
        let w = ub.unit().from_base(ua.unit().to_base(v));
        let back = ua.unit().from_base(ub.unit().to_base(w));
        prop_assert!(omni::units::approx_eq(back, v) || (back - v).abs() < 1e-6, "{} -> {} -> {}", v, w, back);
        let rule = format!("- IF {v:e}{} == {w:e}{} THEN Same", ua.suffix(), ub.suffix());
        let got = fired(&rule, "{}");
        prop_assert_eq!(got, vec!["Same".to_string()], "{}", rule);
        // Through a context quantity string too.
        let ctx = serde_json::json!({ "X": format!("{v:e}{}", ua.suffix()) }).to_string();
        let got = fired(&format!("- IF X == {w:e}{} THEN Same", ub.suffix()), &ctx);
        prop_assert_eq!(got, vec!["Same".to_string()]);
    }

    /// Different dimensions never compare equal and never fire.
    #[test]
    fn different_dimensions_are_unknown(d1 in 0..UNITS_BY_DIM.len(), d2 in 0..UNITS_BY_DIM.len(), v in 0.0f64..100.0) {
        prop_assume!(d1 != d2);
        let (a, b) = (UNITS_BY_DIM[d1][0], UNITS_BY_DIM[d2][0]);
        let ctx = serde_json::json!({ "X": format!("{v}{a}") }).to_string();
        prop_assert_eq!(outcome_of(&format!("- IF X > 1{b} THEN A ELSE B"), &ctx), "unknown");
    }
}

/// A random formula over three truth variables (each true, false or missing).
#[derive(Debug, Clone)]
enum F {
    Var(usize),
    Not(Box<F>),
    And(Box<F>, Box<F>),
    Or(Box<F>, Box<F>),
}

fn formula() -> impl Strategy<Value = F> {
    let leaf = (0usize..3).prop_map(F::Var);
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|f| F::Not(Box::new(f))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| F::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| F::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn text(f: &F) -> String {
    match f {
        F::Var(i) => format!("(v{i} > 0)"),
        F::Not(a) => format!("NOT {}", text(a)),
        F::And(a, b) => format!("({} AND {})", text(a), text(b)),
        F::Or(a, b) => format!("({} OR {})", text(a), text(b)),
    }
}

/// The reference: Kleene's strong three-valued logic.
fn kleene(f: &F, vals: &[Option<bool>; 3]) -> Option<bool> {
    match f {
        F::Var(i) => vals[*i],
        F::Not(a) => kleene(a, vals).map(|b| !b),
        F::And(a, b) => match (kleene(a, vals), kleene(b, vals)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        F::Or(a, b) => match (kleene(a, vals), kleene(b, vals)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
    }
}

fn ctx_for(vals: &[Option<bool>; 3]) -> String {
    let mut m = serde_json::Map::new();
    for (i, v) in vals.iter().enumerate() {
        if let Some(b) = v {
            m.insert(format!("v{i}"), serde_json::json!(if *b { 1 } else { 0 }));
        }
    }
    serde_json::Value::Object(m).to_string()
}

fn tri() -> impl Strategy<Value = Option<bool>> {
    prop_oneof![Just(Some(true)), Just(Some(false)), Just(None)]
}

fn expected_outcome(t: Option<bool>) -> &'static str {
    match t {
        Some(true) => "fired",
        Some(false) => "else_fired",
        None => "unknown",
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// The evaluator agrees with Kleene logic on random formulas.
    #[test]
    fn logic_is_kleene(f in formula(), a in tri(), b in tri(), c in tri()) {
        let vals = [a, b, c];
        let got = outcome_of(&format!("- IF {} THEN T ELSE F", text(&f)), &ctx_for(&vals));
        prop_assert_eq!(got, expected_outcome(kleene(&f, &vals)));
    }

    /// De Morgan, double negation, absorption and excluded middle's
    /// three-valued form hold with missing values.
    #[test]
    fn kleene_laws_hold(x in formula(), y in formula(), a in tri(), b in tri(), c in tri()) {
        let ctx = ctx_for(&[a, b, c]);
        let (x, y) = (text(&x), text(&y));
        let laws = [
            (format!("NOT ({x} AND {y})"), format!("(NOT {x}) OR (NOT {y})")),
            (format!("NOT ({x} OR {y})"), format!("(NOT {x}) AND (NOT {y})")),
            (format!("NOT NOT {x}"), x.clone()),
            (format!("{x} AND ({x} OR {y})"), x.clone()),
            (format!("{x} OR {y}"), format!("{y} OR {x}")),
        ];
        for (l, r) in laws {
            let lo = outcome_of(&format!("- IF {l} THEN T ELSE F"), &ctx);
            let ro = outcome_of(&format!("- IF {r} THEN T ELSE F"), &ctx);
            prop_assert_eq!(lo, ro, "{} vs {}", l, r);
        }
    }

    /// Missing data never fires an action, not even through NOT.
    #[test]
    fn not_never_fires_on_missing_data(f in formula()) {
        let d = run(&policy(&format!("- IF NOT {} THEN Danger\n- IF {} THEN Danger2", text(&f), text(&f))), "{}");
        prop_assert!(d.actions.is_empty(), "{:?}", d.action_strings());
        prop_assert!(!d.warnings.is_empty());
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        (-1000i64..1000).prop_map(|n| serde_json::json!(n)),
        "[a-z0-9]{0,6}".prop_map(serde_json::Value::String),
        prop::sample::select(vec!["250cm", "2024-01-01T00:00:00Z", "5%", "x"])
            .prop_map(|s| serde_json::json!(s)),
    ];
    leaf.prop_recursive(5, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["a", "b", "c", "value", "unit"]).prop_map(str::to_string),
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![prop::sample::select(vec![
        ".a", ".b", ".c", ".value", "[0]", "[1]", "[-1]", "[\"a\"]", "[x]"
    ])
    .prop_map(str::to_string),];
    (
        prop::sample::select(vec!["a", "b", "$", "c"]),
        prop::collection::vec(seg, 0..6),
    )
        .prop_map(|(root, segs)| {
            let mut s = root.to_string();
            for g in segs {
                s.push_str(&g);
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Dot-paths and indexing on random JSON never panic and always decide.
    #[test]
    fn paths_on_random_json_never_panic(v in json_value(), p in path(), q in path()) {
        let ctx = serde_json::json!({ "a": v.clone(), "b": [v], "x": 1 }).to_string();
        let rules = format!("- IF {p} == 1 OR {q} > 2m OR {p} IN {q} OR len({q}) > 0 THEN A\n- FOR e IN {p} {{\n    - IF e.a == {q} THEN B(e)\n}}");
        let src = policy(&rules);
        let c = compile(&src, &CheckOptions::default());
        prop_assume!(!c.has_errors());
        let ctx = Context::from_json(ctx.as_bytes(), &ContextLimits::default()).expect("ctx");
        let d = evaluate(&c.policy.expect("compiled"), &ctx, omni::Timestamp(0), &EvalOptions::default());
        prop_assert!(d.is_ok());
    }

    /// The same inputs give byte-identical decisions.
    #[test]
    fn evaluation_is_deterministic(v in json_value(), p in path()) {
        let ctx = serde_json::json!({ "a": v, "b": [1, 2], "c": {"z": 1, "y": 2} }).to_string();
        let rules = format!("- IF {p} != null THEN Seen({p})\n- FOR k IN c {{\n    - IF k > 0 THEN K(k)\n}}\n- IF Missing > 0 THEN Never");
        let src = policy(&rules);
        let c = compile(&src, &CheckOptions::default());
        prop_assume!(!c.has_errors());
        let p = c.policy.expect("compiled");
        let ctx1 = Context::from_json(ctx.as_bytes(), &ContextLimits::default()).expect("ctx");
        let ctx2 = Context::from_json(ctx.as_bytes(), &ContextLimits::default()).expect("ctx");
        let opts = EvalOptions { trace: true, ..EvalOptions::default() };
        let d1 = evaluate(&p, &ctx1, omni::Timestamp(0), &opts).map(|d| d.to_json_pretty());
        let d2 = evaluate(&p, &ctx2, omni::Timestamp(0), &opts).map(|d| d.to_json_pretty());
        prop_assert_eq!(d1, d2);
        // The fast paths charge the same steps as the general (traced) path.
        let fast = evaluate(&p, &ctx1, omni::Timestamp(0), &EvalOptions::default()).map(|d| d.stats.steps);
        let traced = evaluate(&p, &ctx1, omni::Timestamp(0), &opts).map(|d| d.stats.steps);
        prop_assert_eq!(fast, traced);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Random nested loops always end, within the fuel limit: either a
    /// decision whose steps are within the budget, or `budget_exceeded`.
    #[test]
    fn nested_loops_end_within_fuel(depth in 1usize..5, sizes in prop::collection::vec(0usize..60, 4), fuel in 1000u64..200_000, whiles in any::<bool>()) {
        let mut ctx = serde_json::Map::new();
        for (i, n) in sizes.iter().enumerate() {
            ctx.insert(format!("l{i}"), serde_json::json!((0..*n).collect::<Vec<_>>()));
        }
        let mut rules = String::new();
        for d in 0..depth {
            let indent = "    ".repeat(d);
            if whiles && d % 2 == 1 {
                rules.push_str(&format!("{indent}- WHILE x{} >= 0 {{\n", d - 1));
            } else {
                rules.push_str(&format!("{indent}- FOR x{d} IN l{d} {{\n"));
            }
        }
        rules.push_str(&format!("{}- IF any(l0, |y| y == x0) THEN Hit(x0)\n", "    ".repeat(depth)));
        for d in (0..depth).rev() {
            rules.push_str(&format!("{}}}\n", "    ".repeat(d)));
        }
        let src = policy(&rules);
        let c = compile(&src, &CheckOptions::default());
        prop_assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let ctx = Context::from_json(serde_json::Value::Object(ctx).to_string().as_bytes(), &ContextLimits::default()).expect("ctx");
        let opts = EvalOptions { limits: omni::EvalLimits { fuel, ..omni::EvalLimits::default() }, trace: false };
        match evaluate(&c.policy.expect("compiled"), &ctx, omni::Timestamp(0), &opts) {
            Ok(d) => prop_assert!(d.stats.steps <= fuel),
            Err(e) => prop_assert_eq!(e.code(), "budget_exceeded"),
        }
    }
}

#[test]
fn temperature_is_compare_only() {
    assert_eq!(lookup("F").map(|u| u.dim()), Some(Dimension::Temperature));
    let d = run(&policy("- IF T + 5 > 40C THEN A ELSE B"), r#"{"T": "30C"}"#);
    assert_eq!(outcome(&d, "R1"), "unknown");
}
