//! Request bodies of the load scenarios: the standard workload, generated
//! policies and contexts of a given size, a new policy per request, and the
//! hostile requests of the mix.

use crate::loadgen::{Body, Template};
use crate::SHARED_BENCH;
use bytes::Bytes;
use hyper::Method;
use std::fmt::Write as _;

/// The evaluation time of every benchmark request (decisions are repeatable).
pub const NOW: &str = "2026-01-01T00:00:00Z";
/// Replaced by the request counter in bodies with a new policy each time.
pub const MARKER: &str = "@@SEQ@@";
pub const VALIDATE: &str = "/api/validate";

/// The standard policy text.
pub fn standard_policy() -> String {
    std::fs::read_to_string(format!("{SHARED_BENCH}/drone_ops.omni"))
        .expect("../shared/bench/drone_ops.omni")
}

/// The standard context, compacted (about 3.7 KB; key order kept).
pub fn standard_context() -> String {
    let raw = std::fs::read(format!("{SHARED_BENCH}/drone_ops.context.json"))
        .expect("../shared/bench/drone_ops.context.json");
    let v: serde_json::Value = serde_json::from_slice(&raw).expect("context JSON");
    serde_json::to_string(&v).expect("compact context")
}

/// The actions the standard workload must fire, in order.
pub fn standard_expected_actions() -> Vec<String> {
    let raw = std::fs::read(format!("{SHARED_BENCH}/drone_ops.expected-actions.json"))
        .expect("../shared/bench/drone_ops.expected-actions.json");
    serde_json::from_slice(&raw).expect("expected actions JSON")
}

/// A `POST /api/validate` body: the policy, the context as raw JSON, a fixed `now`.
pub fn validate_body(code: &str, context_json: Option<&str>, options: Option<&str>) -> String {
    let mut s = String::with_capacity(code.len() + context_json.map_or(0, str::len) + 100);
    s.push_str("{\"code\":");
    s.push_str(&serde_json::to_string(code).expect("string"));
    if let Some(c) = context_json {
        s.push_str(",\"context\":");
        s.push_str(c);
    }
    let _ = write!(s, ",\"now\":\"{NOW}\"");
    if let Some(o) = options {
        s.push_str(",\"options\":");
        s.push_str(o);
    }
    s.push('}');
    s
}

/// The path of evaluate-by-name for the stored policy `name`.
pub fn evaluate_path(name: &str) -> String {
    format!("/api/v1/policies/{name}/evaluate")
}

/// A `POST /api/v1/policies/{name}/evaluate` body: the context as raw JSON
/// and the same fixed `now` as [`validate_body`] (no policy text).
pub fn evaluate_body(context_json: &str) -> String {
    format!("{{\"context\":{context_json},\"now\":\"{NOW}\"}}")
}

/// The standard request by name: the standard context, evaluated against
/// the policy stored as `name` (which must hold [`standard_policy`]).
pub fn standard_by_name(name: &str) -> Template {
    let mut t = Template::post_json(
        "standard_by_name",
        &evaluate_path(name),
        Body::Fixed(Bytes::from(evaluate_body(&standard_context()))),
    );
    t.expect_contains = Some(b"\"ok\":true".to_vec());
    t
}

/// The standard request (cache hit after the first).
pub fn standard_body() -> String {
    validate_body(&standard_policy(), Some(&standard_context()), None)
}

/// The standard request with a new policy text each time (a cache miss):
/// the `INTENT` line carries the request counter.
pub fn unique_standard_body() -> Body {
    let policy = standard_policy().replacen('\n', &format!(" {MARKER}\n"), 1);
    Body::unique(
        &validate_body(&policy, Some(&standard_context()), None),
        MARKER,
    )
}

/// A request with next to no evaluation: one rule over a one-key context
/// (a 1 KB answer). Against the floor, it shows what the isolation itself
/// costs, apart from the engine's work.
pub fn trivial_body() -> String {
    let code = format!("{HEADER}- IF x > 0 THEN Act\n{FOOTER}");
    validate_body(&code, Some("{\"x\":1}"), None)
}

/// A benign template for `body` that must answer 200 with a decision.
pub fn benign(name: &str, body: Body) -> Template {
    let mut t = Template::post_json(name, VALIDATE, body);
    t.expect_contains = Some(b"\"ok\":true".to_vec());
    t
}

const HEADER: &str =
    "INTENT: Generated policy for the load test size matrix\nACTOR:\n- Primary: Bench\nCONTEXT:\n- Domain: Bench\nRULE:\n";
const FOOTER: &str =
    "CONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: speed\nTRACE:\n- Evidence: generated\n";

/// A policy of about `bytes` bytes over the names of [`generated_context`]:
/// one loop over `items` and as many top-level rules as fit.
pub fn generated_policy(bytes: usize) -> String {
    let mut s = String::from(HEADER);
    s.push_str(
        "- FOR item IN items {\n    - IF item.weight > 40 AND \"hot\" IN item.tags THEN Inspect(item.id)\n    - IF item.status == \"degraded\" THEN Repair(item.id)\n}\n",
    );
    let mut i = 0usize;
    loop {
        let j = i % 10;
        let rule = match i % 4 {
            0 => format!(
                "- IF Metric{j} > {} AND Mode == \"patrol\" THEN Act{i}\n",
                (i * 7) % 100
            ),
            1 => format!(
                "- IF Metric{j} < {} OR Level >= 90 THEN Act{i}\n",
                (i * 13) % 100
            ),
            2 => format!(
                "- IF Mode IN [\"patrol\", \"survey\"] AND NOT (Metric{j} == {}) THEN Act{i}\n",
                i % 50
            ),
            _ => format!("- IF avg(Readings) > {} THEN Act{i}\n", (i * 3) % 120),
        };
        if s.len() + rule.len() + FOOTER.len() > bytes {
            break;
        }
        s.push_str(&rule);
        i += 1;
    }
    s.push_str(FOOTER);
    s
}

/// A context of about `bytes` bytes (compact JSON): ten metrics, a list of
/// readings, and as many `items` as fit.
pub fn generated_context(bytes: usize) -> String {
    let mut s = String::from("{\"Mode\":\"patrol\",\"Level\":42");
    for j in 0..10 {
        let _ = write!(s, ",\"Metric{j}\":{}", (j * 11) % 100);
    }
    s.push_str(",\"Readings\":[10,20,30,40,50,60,70,80,90,100],\"items\":[");
    let mut i = 0usize;
    loop {
        let item = format!(
            "{}{{\"id\":\"item-{i}\",\"weight\":{},\"status\":\"{}\",\"tags\":[{}]}}",
            if i == 0 { "" } else { "," },
            (i * 17) % 100,
            if i.is_multiple_of(7) {
                "degraded"
            } else {
                "ok"
            },
            if i % 10 == 3 {
                "\"hot\",\"x\""
            } else {
                "\"x\""
            },
        );
        if s.len() + item.len() + 2 > bytes && i > 0 {
            break;
        }
        s.push_str(&item);
        i += 1;
    }
    s.push_str("]}");
    s
}

/// Three nested loops over `Xs` (n³ iterations): with the default fuel of
/// 1,000,000 and n = 100 it stops with `budget_exceeded`.
pub const SLOW_POLICY: &str = "INTENT: slow @@SEQ@@\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Test\n\
RULE:\n- FOR a IN Xs {\n  - FOR b IN Xs {\n    - FOR c IN Xs {\n      - IF a + b + c < 0 THEN Never\n    }\n  }\n}\n\
CONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: safety\nTRACE:\n- Evidence: example\n";

/// The noisy neighbour's request: the slow policy with `timeoutMs`
/// `deadline_ms`, killed at its deadline, and a comment line that changes
/// with every request (the counter replaces [`MARKER`]), so each request is
/// a new policy text, the same policy in substance.
pub fn reformatted_deadline_bomb(deadline_ms: u64) -> Body {
    let code = SLOW_POLICY.replacen(MARKER, "noisy", 1).replacen(
        "RULE:\n",
        &format!("RULE:\n# take {MARKER}\n"),
        1,
    );
    let body = validate_body(
        &code,
        Some(&xs(100)),
        Some(&format!("{{\"timeoutMs\":{deadline_ms}}}")),
    );
    Body::unique(&body, MARKER)
}

fn xs(n: usize) -> String {
    let v: Vec<usize> = (0..n).collect();
    format!("{{\"Xs\":{}}}", serde_json::to_string(&v).expect("list"))
}

fn hostile(name: &str, weight: u32, content_type: &str, body: Body) -> Template {
    Template {
        name: name.into(),
        benign: false,
        weight,
        method: Method::POST,
        path: VALIDATE.into(),
        content_type: content_type.into(),
        body,
        expect_status: None,
        expect_contains: None,
        headers: Vec::new(),
    }
}

/// The hostile requests of the mix, `weight` each (nesting is split into a
/// deep context and a deep policy expression). `deadline_ms` is the
/// `timeoutMs` the deadline bomb asks for; every deadline bomb is a new
/// policy, so quarantine (by policy id) does not stop them.
pub fn hostile_templates(weight: u32, deadline_ms: u64) -> Vec<Template> {
    let fixed = |s: String| Body::Fixed(Bytes::from(s));
    let fuel = validate_body(&SLOW_POLICY.replace(MARKER, "fuel"), Some(&xs(100)), None);
    let deadline = validate_body(
        SLOW_POLICY,
        Some(&xs(100)),
        Some(&format!("{{\"timeoutMs\":{deadline_ms}}}")),
    );
    let depth = 10_000;
    let deep_ctx = format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
    let deep_context = validate_body(&standard_policy(), Some(&deep_ctx), None);
    let deep_expr = format!(
        "{HEADER}- IF {}Battery{} < 20 THEN Deep\n{FOOTER}",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    let deep_policy = validate_body(&deep_expr, Some("{\"Battery\":15}"), None);
    // Over the default 256 KiB body limit (refused on Content-Length).
    let oversized = validate_body(&"x".repeat(300_000), None, None);
    let malformed = "{\"code\": \"INTENT: broken\", \"context\": {\"a\": [1, 2,".to_string();
    let half = (weight / 2).max(1);
    vec![
        hostile("fuel_bomb", weight, "application/json", fixed(fuel)),
        hostile(
            "deadline_bomb",
            weight,
            "application/json",
            Body::unique(&deadline, MARKER),
        ),
        hostile(
            "deep_context",
            half,
            "application/json",
            fixed(deep_context),
        ),
        hostile(
            "deep_policy",
            weight - half,
            "application/json",
            fixed(deep_policy),
        ),
        hostile(
            "oversized_body",
            weight,
            "application/json",
            fixed(oversized),
        ),
        hostile(
            "malformed_json",
            weight,
            "application/json",
            fixed(malformed),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sizes_are_close() {
        for n in [1_000, 10_000, 100_000] {
            let p = generated_policy(n);
            assert!(p.len() <= n && p.len() > n * 9 / 10, "{n}: {}", p.len());
            let c = generated_context(n);
            assert!(
                c.len() <= n + 100 && c.len() > n * 9 / 10,
                "{n}: {}",
                c.len()
            );
            let _: serde_json::Value = serde_json::from_str(&c).expect("valid JSON");
        }
    }

    #[test]
    fn generated_policies_compile_and_evaluate() {
        let opts = omni::CheckOptions::default();
        for n in [1_000, 10_000, 100_000] {
            let compiled = omni::compile(&generated_policy(n), &opts);
            assert!(
                compiled
                    .diagnostics
                    .iter()
                    .all(|d| d.severity != omni::Severity::Error),
                "{n}: {:?}",
                compiled.diagnostics.first()
            );
            let policy = compiled.policy.expect("compiles");
            for m in [1_000, 100_000] {
                let ctx = omni::Context::from_json(
                    generated_context(m).as_bytes(),
                    &omni::ContextLimits::default(),
                )
                .expect("context");
                let d = omni::evaluate(&policy, &ctx, omni::Timestamp(0), &Default::default())
                    .expect("evaluates");
                assert!(!d.actions.is_empty());
            }
        }
    }

    #[test]
    fn standard_body_is_json() {
        if !crate::standard_workload_present("standard_body_is_json") {
            return;
        }
        let v: serde_json::Value = serde_json::from_str(&standard_body()).expect("JSON");
        assert!(v["context"].is_object());
        assert!(standard_expected_actions().len() > 5);
    }
}
