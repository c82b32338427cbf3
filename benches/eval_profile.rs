//! A fixed number of evaluations of the standard workload, for
//! instruction counts under `perf stat` or `valgrind --tool=callgrind`
//! (repeatable where wall-clock figures are noisy).

use omni::{compile, evaluate, CheckOptions, Context, ContextLimits, EvalOptions};

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/bench");
    let src = std::fs::read_to_string(format!("{dir}/drone_ops.omni")).expect("policy");
    let ctx = std::fs::read(format!("{dir}/drone_ops.context.json")).expect("context");
    let n: u32 = std::env::var("OMNI_PROFILE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mode = std::env::var("OMNI_PROFILE_MODE").unwrap_or_else(|_| "eval".into());
    let policy = compile(&src, &CheckOptions::default())
        .policy
        .expect("compiles");
    let context = Context::from_json(&ctx, &ContextLimits::default()).expect("ctx");
    let now = omni::timefmt::parse_rfc3339("2026-01-01T00:00:00Z").expect("now");
    let start = std::time::Instant::now();
    let mut actions = 0usize;
    for _ in 0..n {
        actions += match mode.as_str() {
            "context" => Context::from_json(&ctx, &ContextLimits::default())
                .expect("ctx")
                .root
                .len(),
            "cold" => {
                let p = compile(&src, &CheckOptions::default())
                    .policy
                    .expect("compiles");
                let c = Context::from_json(&ctx, &ContextLimits::default()).expect("ctx");
                evaluate(&p, &c, now, &EvalOptions::default())
                    .expect("eval")
                    .actions
                    .len()
            }
            _ => evaluate(&policy, &context, now, &EvalOptions::default())
                .expect("eval")
                .actions
                .len(),
        };
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{mode}: {n} iterations, {per:.0} ns each ({actions} actions)");
}
