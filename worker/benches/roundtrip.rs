//! One evaluation round trip through a real sandboxed worker (cache hit,
//! standard workload) against in-process evaluation of the same input.
//!
//! `cargo bench -p omni-worker --bench roundtrip`
//!
//! Both sides produce the same bytes: the context is parsed, the policy
//! evaluated and the decision serialised to JSON. The worker side adds the
//! request encoding, the socket round trip (two context switches), the
//! decoding and the reply. Besides criterion's own report, the bench times
//! single iterations and prints median and p99 of each and of the added cost
//! (the figures of `bench/results/worker-roundtrip.md`).

use criterion::{criterion_group, criterion_main, Criterion};
use omni_worker::protocol::*;
use omni_worker::{spawn_worker, WorkerConfig, WorkerProcess};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const WORKLOAD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/bench/");
const HARNESS: &str = env!("CARGO_BIN_EXE_omni-worker-harness");
/// 2026-01-01T00:00:00Z.
const NOW_NANOS: i64 = 1_767_225_600_000_000_000;

struct Workload {
    text: String,
    context: Vec<u8>,
    policy: std::sync::Arc<omni::CompiledPolicy>,
    policy_id: String,
}

fn workload() -> Workload {
    let text =
        std::fs::read_to_string(format!("{WORKLOAD}drone_ops.omni")).expect("drone_ops.omni");
    let context = std::fs::read(format!("{WORKLOAD}drone_ops.context.json")).expect("context");
    let policy = omni::compile(&text, &omni::CheckOptions::default())
        .policy
        .expect("the workload compiles");
    let policy_id = omni::policy::policy_id(text.as_bytes());
    Workload {
        text,
        context,
        policy,
        policy_id,
    }
}

/// In-process: parse the context, evaluate, serialise the decision.
fn in_process(w: &Workload) -> String {
    let opts = RequestOptions::default();
    let limits = omni::ContextLimits {
        max_bytes: opts.max_context_bytes,
        max_depth: opts.max_context_depth,
        max_items: opts.max_context_items,
    };
    let ctx = omni::Context::from_json(&w.context, &limits).expect("context");
    let eval = omni::EvalOptions {
        limits: opts.limits,
        trace: false,
    };
    let d = omni::evaluate(&w.policy, &ctx, omni::Timestamp(NOW_NANOS), &eval).expect("evaluates");
    serde_json::to_string(&d).expect("json")
}

/// The supervisor's side of a worker: reused buffers, one write and
/// (usually) one read per round trip.
struct Client {
    worker: WorkerProcess,
    out: Vec<u8>,
    reader: FrameReader,
    next_id: u64,
}

impl Client {
    fn start(w: &Workload) -> Client {
        let mut worker =
            spawn_worker(Path::new(HARNESS), &[], &WorkerConfig::default()).expect("spawn");
        let report = worker.wait_ready().expect("ready");
        assert!(
            report.seccomp,
            "the bench runs a sandboxed worker: {report:?}"
        );
        let mut c = Client {
            worker,
            out: Vec::with_capacity(64 << 10),
            reader: FrameReader::new(MAX_REPLY_FRAME),
            next_id: 0,
        };
        // Warm the cache with the text once.
        let first = c.call(
            w,
            PolicySource::Text {
                policy_id: w.policy_id.clone(),
                text: w.text.clone(),
            },
        );
        assert!(!first.cache_hit);
        c
    }

    fn call(&mut self, w: &Workload, policy: PolicySource) -> Outcome {
        self.next_id += 1;
        let req = Request {
            id: self.next_id,
            policy,
            context: Some(w.context.clone()),
            now_unix_nanos: NOW_NANOS,
            options: RequestOptions::default(),
        };
        encode_frame(&req, &mut self.out).expect("encode");
        self.worker.stream.write_all(&self.out).expect("send");
        match self
            .reader
            .read::<Reply, _>(&mut self.worker.stream)
            .expect("reply")
        {
            Reply::Done(o) => *o,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    fn cached(&mut self, w: &Workload) -> Outcome {
        let o = self.call(
            w,
            PolicySource::Cached {
                policy_id: w.policy_id.clone(),
            },
        );
        debug_assert!(o.cache_hit);
        o
    }
}

/// The worker's code path in this process: encode and decode the request,
/// handle it (cache hit), encode and decode the reply. The difference to
/// [`in_process`] is the protocol's CPU cost; the difference to a round trip
/// is the process boundary (system calls and wake-ups).
struct CodePath {
    state: omni_worker::worker::WorkerState,
    frame: Vec<u8>,
}

impl CodePath {
    fn new(w: &Workload) -> CodePath {
        let mut state = omni_worker::worker::WorkerState::new(&WorkerConfig::default());
        state.handle(Request {
            id: 0,
            policy: PolicySource::Text {
                policy_id: w.policy_id.clone(),
                text: w.text.clone(),
            },
            context: None,
            now_unix_nanos: NOW_NANOS,
            options: RequestOptions::default(),
        });
        CodePath {
            state,
            frame: Vec::with_capacity(64 << 10),
        }
    }

    fn run(&mut self, w: &Workload) -> Reply {
        let req = Request {
            id: 1,
            policy: PolicySource::Cached {
                policy_id: w.policy_id.clone(),
            },
            context: Some(w.context.clone()),
            now_unix_nanos: NOW_NANOS,
            options: RequestOptions::default(),
        };
        encode_frame(&req, &mut self.frame).expect("encode");
        let req: Request = decode_payload(&self.frame[4..]).expect("decode");
        let reply = self.state.handle(req);
        encode_frame(&reply, &mut self.frame).expect("encode");
        decode_payload::<Reply>(&self.frame[4..]).expect("decode")
    }
}

fn bench(c: &mut Criterion) {
    let w = workload();
    let mut client = Client::start(&w);
    // Same bytes on both sides, and a cache hit.
    let o = client.cached(&w);
    assert!(o.cache_hit);
    assert_eq!(o.decision_json.as_deref(), Some(in_process(&w).as_str()));

    let mut g = c.benchmark_group("worker_roundtrip");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("in_process", |b| b.iter(|| black_box(in_process(&w))));
    g.bench_function("worker_cache_hit", |b| {
        b.iter(|| black_box(client.cached(&w)))
    });
    // The worker's code path without the process boundary.
    let mut path = CodePath::new(&w);
    g.bench_function("worker_code_path_no_ipc", |b| {
        b.iter(|| black_box(path.run(&w)))
    });
    g.finish();

    summary(&w, &mut client, &mut path);
}

/// Times single iterations, interleaved so that all three see the same
/// machine load, and prints median and p99 of each and the differences of
/// the medians.
fn summary(w: &Workload, client: &mut Client, path: &mut CodePath) {
    const N: usize = 20_000;
    let mut local = Vec::with_capacity(N);
    let mut code = Vec::with_capacity(N);
    let mut remote = Vec::with_capacity(N);
    for _ in 0..2_000 {
        black_box(in_process(w));
        black_box(path.run(w));
        black_box(client.cached(w));
    }
    for _ in 0..N {
        let t = Instant::now();
        black_box(in_process(w));
        local.push(t.elapsed());
        let t = Instant::now();
        black_box(path.run(w));
        code.push(t.elapsed());
        let t = Instant::now();
        black_box(client.cached(w));
        remote.push(t.elapsed());
    }
    // Back to back, and the worker's CPU time over N requests (utime + stime).
    let pid = client.worker.pid();
    let cpu0 = cpu_ticks(pid);
    let t = Instant::now();
    for _ in 0..N {
        black_box(client.cached(w));
    }
    let wall_per_req = t.elapsed().as_nanos() as f64 / 1000.0 / N as f64;
    let tick_us = 1e6 / clock_ticks_per_sec();
    let worker_cpu = (cpu_ticks(pid) - cpu0) as f64 * tick_us / N as f64;
    let t = Instant::now();
    for _ in 0..N {
        black_box(in_process(w));
    }
    let local_per_req = t.elapsed().as_nanos() as f64 / 1000.0 / N as f64;
    let (lm, lp) = stats(&mut local);
    let (cm, cp) = stats(&mut code);
    let (rm, rp) = stats(&mut remote);
    let timings = client.cached(w).timings;
    println!();
    println!("roundtrip summary ({N} interleaved iterations each, drone_ops workload, cache hit):");
    println!("  in-process (parse context + evaluate + decision JSON): median {lm:.1} µs, p99 {lp:.1} µs");
    println!("  worker code path in this process (no IPC):             median {cm:.1} µs, p99 {cp:.1} µs");
    println!("  through a sandboxed worker (round trip):               median {rm:.1} µs, p99 {rp:.1} µs");
    println!(
        "  added cost at the median: {:.1} µs (protocol CPU {:.1} µs, process boundary {:.1} µs)",
        rm - lm,
        cm - lm,
        rm - cm
    );
    println!(
        "  back to back: worker round trip {wall_per_req:.1} µs/request of which worker CPU {worker_cpu:.1} µs; in-process {local_per_req:.1} µs/request"
    );
    println!(
        "  worker-side phases of one request: context {} µs, eval {} µs",
        timings.context_us, timings.eval_us
    );
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the comm.
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn stats(v: &mut [Duration]) -> (f64, f64) {
    v.sort();
    let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
    (us(v[v.len() / 2]), us(v[v.len() * 99 / 100]))
}

criterion_group!(benches, bench);
criterion_main!(benches);
