//! Criterion benchmarks of the language on the standard workload
//! (`../shared/bench/drone_ops.*`) and on a generated 100 KB policy:
//! parse+check throughput, evaluation alone, context parsing, and
//! parse+check+eval from text. Figures are recorded in `bench/results/`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use omni::{compile, evaluate, CheckOptions, Context, ContextLimits, EvalOptions};
use std::hint::black_box;

const BENCH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/bench");

fn workload() -> (String, Vec<u8>) {
    let src = std::fs::read_to_string(format!("{BENCH}/drone_ops.omni")).expect("workload policy");
    let ctx = std::fs::read(format!("{BENCH}/drone_ops.context.json")).expect("workload context");
    (src, ctx)
}

/// A realistic policy of about 100 KB: many rules of the usual shapes.
pub fn generated_policy(target: usize) -> String {
    let mut s = String::from(
        "INTENT: Generated policy for throughput benchmarks\nACTOR:\n- Primary: Bench\nCONTEXT:\n- Domain: Bench\n- Threshold: 42\nRULE:\n",
    );
    let mut i = 0;
    let tail = "CONSTRAINT:\n- Technical: none\nIMPACT:\n- Benefit: speed\nTRACE:\n- Evidence: generated\n";
    while s.len() + tail.len() < target - 400 {
        match i % 4 {
            0 => s.push_str(&format!(
                "- IF Sensor{i}.temperature > {}C AND Zone{i} IN [\"north\", \"south\"] THEN Alert{i}(\"zone\", Sensor{i}.id) ELSE Log{i}\n",
                i % 90
            )),
            1 => s.push_str(&format!(
                "- IF Battery{i} < {}% OR (Speed{i} > 25kmh AND NOT Docked{i}) THEN ReturnToBase{i}\n",
                i % 50
            )),
            2 => s.push_str(&format!(
                "- FOR item IN Items{i} {{\n    - IF item.weight > {}kg AND len(item.tags) > 0 THEN Inspect{i}(item.id)\n    - IF any(item.tags, |t| t == \"fragile\") THEN Pad{i}\n}}\n",
                i % 30
            )),
            _ => s.push_str(&format!(
                "- IF avg(Readings{i}) >= Threshold AND Status{i} == \"active\" THEN Review{i}\n"
            )),
        }
        i += 1;
    }
    s.push_str(tail);
    s
}

fn front_end(c: &mut Criterion) {
    let (src, _) = workload();
    let big = generated_policy(100_000);
    assert!(!compile(&big, &CheckOptions::default()).has_errors());
    let mut g = c.benchmark_group("parse_check");
    for (name, text) in [("drone_ops", &src), ("generated_100kb", &big)] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), text, |b, t| {
            b.iter(|| compile(black_box(t), &CheckOptions::default()))
        });
    }
    g.finish();
}

fn evaluation(c: &mut Criterion) {
    let (src, ctx_bytes) = workload();
    let policy = compile(&src, &CheckOptions::default())
        .policy
        .expect("workload compiles");
    let ctx = Context::from_json(&ctx_bytes, &ContextLimits::default()).expect("context");
    let now = omni::timefmt::parse_rfc3339("2026-01-01T00:00:00Z").expect("now");
    let opts = EvalOptions::default();
    let mut g = c.benchmark_group("drone_ops");
    g.bench_function("eval_only", |b| {
        b.iter(|| evaluate(black_box(&policy), black_box(&ctx), now, &opts).expect("eval"))
    });
    g.bench_function("context_parse", |b| {
        b.iter(|| {
            Context::from_json(black_box(&ctx_bytes), &ContextLimits::default()).expect("ctx")
        })
    });
    g.bench_function("context_parse_plus_eval", |b| {
        b.iter(|| {
            let ctx =
                Context::from_json(black_box(&ctx_bytes), &ContextLimits::default()).expect("ctx");
            evaluate(&policy, &ctx, now, &opts).expect("eval")
        })
    });
    g.bench_function("cold_parse_check_eval", |b| {
        b.iter(|| {
            let p = compile(black_box(&src), &CheckOptions::default())
                .policy
                .expect("compiles");
            let ctx =
                Context::from_json(black_box(&ctx_bytes), &ContextLimits::default()).expect("ctx");
            evaluate(&p, &ctx, now, &opts).expect("eval")
        })
    });
    g.bench_function("decision_to_json", |b| {
        let d = evaluate(&policy, &ctx, now, &opts).expect("eval");
        b.iter(|| serde_json::to_string(black_box(&d)).expect("json"))
    });
    g.finish();
}

criterion_group!(benches, front_end, evaluation);
criterion_main!(benches);
