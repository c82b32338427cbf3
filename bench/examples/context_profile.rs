//! A fixed number of context parses (and evaluations) of the standard
//! workload, for instruction counts under `valgrind --tool=callgrind`:
//! `OMNI_ITERS=2000 valgrind --tool=callgrind target/release/examples/context_profile [parse|eval|both|json] [compact|pretty]`
//! The figure per parse is (total − total at OMNI_ITERS=0) / OMNI_ITERS.
//! Without valgrind it prints wall and CPU time per iteration (CPU time
//! leaves out preemption, which matters on a shared machine).

use omni::{compile, evaluate, CheckOptions, Context, ContextLimits, EvalOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("parse", |s| s.as_str());
    let pretty = args.get(2).is_some_and(|s| s == "pretty");
    let dir = omni_bench::SHARED_BENCH;
    let raw = std::fs::read(format!("{dir}/drone_ops.context.json")).expect("context");
    let ctx = if pretty {
        raw
    } else {
        omni_bench::workload::standard_context().into_bytes()
    };
    let src = std::fs::read_to_string(format!("{dir}/drone_ops.omni")).expect("policy");
    let policy = compile(&src, &CheckOptions::default())
        .policy
        .expect("compiles");
    let n: u32 = std::env::var("OMNI_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let limits = ContextLimits::default();
    let opts = EvalOptions::default();
    let parsed = Context::from_json(&ctx, &limits).expect("context");
    let decision = evaluate(&policy, &parsed, omni::Timestamp(0), &opts).expect("eval");
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    let cpu0 = cpu_ns();
    let t = std::time::Instant::now();
    let mut sink = 0usize;
    for _ in 0..n {
        sink += match what {
            "json" => {
                out.clear();
                serde_json::to_writer(&mut out, &decision).expect("json");
                out.len()
            }
            "eval" => evaluate(&policy, &parsed, omni::Timestamp(0), &opts)
                .expect("eval")
                .actions
                .len(),
            "both" => {
                let c = Context::from_json(&ctx, &limits).expect("context");
                evaluate(&policy, &c, omni::Timestamp(0), &opts)
                    .expect("eval")
                    .actions
                    .len()
            }
            _ => Context::from_json(&ctx, &limits)
                .expect("context")
                .root
                .len(),
        };
    }
    let per = t.elapsed().as_nanos() as f64 / f64::from(n.max(1));
    let cpu = (cpu_ns() - cpu0) as f64 / f64::from(n.max(1));
    println!(
        "{what} ({} bytes): {n} iterations, {per:.0} ns each, {cpu:.0} ns CPU ({sink})",
        ctx.len()
    );
}

/// This thread's time on a CPU (`/proc/thread-self/schedstat`), in ns:
/// unlike wall time, it does not count time the thread was preempted.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
