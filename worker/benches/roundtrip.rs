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
use std::os::fd::AsFd;
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
    let ctx = omni::Context::from_json(&w.context, &opts.limits.context).expect("context");
    let eval = omni::EvalOptions {
        limits: opts.limits.eval,
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
    /// How long this client polls for a reply before its blocking read:
    /// adaptive as in the supervisor ([`ReplyPoll`]), or fixed.
    poll: ClientPoll,
}

enum ClientPoll {
    Adaptive(ReplyPoll),
    Fixed(Duration),
}

impl Client {
    /// Starts a sandboxed worker with `poll_before_block_us = worker_poll_us`;
    /// this client polls as `poll` says before its blocking read.
    fn start(w: &Workload, worker_poll_us: u64, poll: ClientPoll) -> Client {
        let cfg = WorkerConfig {
            poll_before_block_us: worker_poll_us,
            // The default RLIMIT_CPU (10 s over the worker's life) would end
            // a worker in the middle of the measurement; the service recycles
            // workers, the benchmark measures the steady state.
            sandbox: omni_worker::SandboxConfig {
                cpu_seconds: 3600,
                ..omni_worker::SandboxConfig::default()
            },
            ..WorkerConfig::default()
        };
        let mut worker = spawn_worker(Path::new(HARNESS), &[], &cfg).expect("spawn");
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
            poll,
        };
        // Warm the cache with the text once.
        let first = c.call(
            PolicySource::Text {
                policy_id: w.policy_id.clone(),
                text: w.text.as_str().into(),
            },
            Some(&w.context),
        );
        assert!(!first.cache_hit);
        // And a tiny policy for the round trip with (almost) nothing to do.
        c.call(
            PolicySource::Text {
                policy_id: TINY_ID.into(),
                text: TINY.into(),
            },
            None,
        );
        c
    }

    fn call(&mut self, policy: PolicySource, context: Option<&[u8]>) -> Evaluated {
        self.next_id += 1;
        let req = Request {
            id: self.next_id,
            policy,
            context: context.map(<[u8]>::to_vec),
            now_unix_nanos: NOW_NANOS,
            options: RequestOptions::default(),
        };
        encode_frame(&req, &mut self.out).expect("encode");
        let sent = Instant::now();
        self.worker.stream.write_all(&self.out).expect("send");
        let window = match &self.poll {
            ClientPoll::Adaptive(p) => p.window(),
            ClientPoll::Fixed(d) => *d,
        };
        self.reader.poll_for(self.worker.stream.as_fd(), window);
        let reply = self
            .reader
            .read::<Reply, _>(&mut self.worker.stream)
            .expect("reply");
        if let ClientPoll::Adaptive(p) = &mut self.poll {
            p.record(sent.elapsed());
        }
        match reply {
            Reply::Done(o) => *o,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    fn cached(&mut self, w: &Workload) -> Evaluated {
        let o = self.call(
            PolicySource::Cached {
                policy_id: w.policy_id.clone(),
            },
            Some(&w.context),
        );
        debug_assert!(o.cache_hit);
        o
    }
}

impl Client {
    /// A round trip with nearly nothing to do: a cached one-rule policy,
    /// check only. What remains is the cost of the process boundary.
    fn empty(&mut self) -> Evaluated {
        self.call(
            PolicySource::Cached {
                policy_id: TINY_ID.into(),
            },
            None,
        )
    }
}

const TINY_ID: &str = "tiny";
const TINY: &str = "INTENT: tiny\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Test\n\
RULE:\n- IF Battery < 20% THEN ReturnToHome\nCONSTRAINT:\n- Technical: none\n\
IMPACT:\n- Benefit: none\nTRACE:\n- Evidence: none\n";

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
                text: w.text.as_str().into(),
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
        self.state.recycle(reply);
        decode_payload::<Reply>(&self.frame[4..]).expect("decode")
    }
}

/// Poll window (µs) of the both-sides polling configuration.
const POLL_US: u64 = 200;

fn bench(c: &mut Criterion) {
    let w = workload();
    let adaptive_us = WorkerConfig::default().poll_before_block_us;
    // The defaults of the service: the worker polls adaptively for the next
    // request, and this client for the reply, as the supervisor does when
    // it has nothing else to do.
    let adaptive = ClientPoll::Adaptive(ReplyPoll::new(Duration::from_micros(adaptive_us)));
    let mut client = Client::start(&w, adaptive_us, adaptive);
    // Both sides polling for a fixed window.
    let mut polling = Client::start(
        &w,
        POLL_US,
        ClientPoll::Fixed(Duration::from_micros(POLL_US)),
    );
    // No polling anywhere: every request wakes a sleeping worker and client.
    let mut blocking = Client::start(&w, 0, ClientPoll::Fixed(Duration::ZERO));
    // What omnid ships with: the worker sleeps at once, the client polls
    // adaptively for the reply.
    let service = ClientPoll::Adaptive(ReplyPoll::new(Duration::from_micros(adaptive_us)));
    let mut service = Client::start(&w, 0, service);
    // Same bytes everywhere, and a cache hit.
    for cl in [&mut client, &mut polling, &mut blocking, &mut service] {
        let o = cl.cached(&w);
        assert!(o.cache_hit);
        assert_eq!(o.decision_json.as_deref(), Some(in_process(&w).as_str()));
    }
    let mut path = CodePath::new(&w);

    let mut g = c.benchmark_group("worker_roundtrip");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("in_process", |b| b.iter(|| black_box(in_process(&w))));
    g.bench_function("worker_cache_hit", |b| {
        b.iter(|| black_box(client.cached(&w)))
    });
    g.bench_function("worker_cache_hit_polling", |b| {
        b.iter(|| black_box(polling.cached(&w)))
    });
    g.bench_function("worker_cache_hit_blocking", |b| {
        b.iter(|| black_box(blocking.cached(&w)))
    });
    // The worker's code path without the process boundary.
    g.bench_function("worker_code_path_no_ipc", |b| {
        b.iter(|| black_box(path.run(&w)))
    });
    g.bench_function("worker_empty_roundtrip", |b| {
        b.iter(|| black_box(client.empty()))
    });
    g.finish();

    summary(
        &w,
        [&mut client, &mut polling, &mut blocking, &mut service],
        &mut path,
    );
}

/// Iterations of one variant in a row: a stream of requests, as a loaded
/// service sends them. The variants take turns block by block, so that all
/// of them see the same machine load.
const BLOCK: usize = 50;

/// Times single iterations in rotating blocks and prints median and p99 of
/// each variant and the differences of the medians.
fn summary(
    w: &Workload,
    [client, polling, blocking, service]: [&mut Client; 4],
    path: &mut CodePath,
) {
    const N: usize = 20_000;
    const WARM: usize = 2_000;
    let mut t: Vec<Vec<Duration>> = (0..9).map(|_| Vec::with_capacity(N)).collect();
    let mut ctx_us = Vec::with_capacity(N);
    let mut eval_us = Vec::with_capacity(N);
    let time = |f: &mut dyn FnMut()| {
        let s = Instant::now();
        f();
        s.elapsed()
    };
    for round in 0..(N + WARM) / BLOCK {
        let keep = round * BLOCK >= WARM;
        let mut put = |i: usize, d: Duration| {
            if keep {
                t[i].push(d);
            }
        };
        for _ in 0..BLOCK {
            put(0, time(&mut || drop(black_box(in_process(w)))));
        }
        for _ in 0..BLOCK {
            put(1, time(&mut || drop(black_box(path.run(w)))));
        }
        for _ in 0..BLOCK {
            let s = Instant::now();
            let o = black_box(client.cached(w));
            put(2, s.elapsed());
            if keep {
                ctx_us.push(o.timings.context_us);
                eval_us.push(o.timings.eval_us);
            }
        }
        for _ in 0..BLOCK {
            put(3, time(&mut || drop(black_box(client.empty()))));
        }
        for _ in 0..BLOCK {
            put(4, time(&mut || drop(black_box(polling.cached(w)))));
        }
        for _ in 0..BLOCK {
            put(5, time(&mut || drop(black_box(polling.empty()))));
        }
        for _ in 0..BLOCK {
            put(6, time(&mut || drop(black_box(blocking.cached(w)))));
        }
        for _ in 0..BLOCK {
            put(7, time(&mut || drop(black_box(blocking.empty()))));
        }
        for _ in 0..BLOCK {
            put(8, time(&mut || drop(black_box(service.cached(w)))));
        }
    }
    // The default worker's CPU time over N back-to-back requests (utime + stime).
    let pid = client.worker.pid();
    let cpu0 = cpu_ticks(pid);
    let s = Instant::now();
    for _ in 0..N {
        black_box(client.cached(w));
    }
    let wall_per_req = s.elapsed().as_nanos() as f64 / 1000.0 / N as f64;
    let tick_us = 1e6 / clock_ticks_per_sec();
    let worker_cpu = (cpu_ticks(pid) - cpu0) as f64 * tick_us / N as f64;
    let [(lm, lp), (cm, cp), (rm, rp), (em, ep), (pm, pp), (qm, qp), (bm, bp), (fm, fp), (sm, sp)] =
        [0, 1, 2, 3, 4, 5, 6, 7, 8].map(|i| stats(&mut t[i]));
    ctx_us.sort_unstable();
    eval_us.sort_unstable();
    let n = t[0].len();
    let adaptive = WorkerConfig::default().poll_before_block_us;
    println!();
    println!("roundtrip summary ({n} iterations each, in rotating blocks of {BLOCK}; drone_ops workload, cache hit):");
    println!("  in-process (parse context + evaluate + decision JSON):   median {lm:6.1} µs, p99 {lp:6.1} µs");
    println!("  worker code path in this process (no IPC):               median {cm:6.1} µs, p99 {cp:6.1} µs");
    println!("  sandboxed worker round trip, default (both sides poll adaptively, at most {adaptive} µs):");
    println!("                                                           median {rm:6.1} µs, p99 {rp:6.1} µs");
    println!("  sandboxed worker round trip, polling {POLL_US} µs both sides:  median {pm:6.1} µs, p99 {pp:6.1} µs");
    println!("  sandboxed worker round trip, blocking both sides:        median {bm:6.1} µs, p99 {bp:6.1} µs");
    println!(
        "  sandboxed worker round trip, omnid's defaults (worker sleeps, client polls adaptively):"
    );
    println!("                                                           median {sm:6.1} µs, p99 {sp:6.1} µs");
    println!("  empty round trip (tiny cached policy), default:          median {em:6.1} µs, p99 {ep:6.1} µs");
    println!("  empty round trip (tiny cached policy), polling:          median {qm:6.1} µs, p99 {qp:6.1} µs");
    println!("  empty round trip (tiny cached policy), blocking:         median {fm:6.1} µs, p99 {fp:6.1} µs");
    for (name, m) in [
        ("default", rm),
        ("polling", pm),
        ("blocking", bm),
        ("omnid's defaults", sm),
    ] {
        println!(
            "  added cost at the median, {name}: {:.1} µs (protocol CPU {:.1} µs, process boundary {:.1} µs)",
            m - lm,
            cm - lm,
            m - cm
        );
    }
    println!(
        "  back to back, default: worker round trip {wall_per_req:.1} µs/request of which worker CPU {worker_cpu:.1} µs"
    );
    println!(
        "  worker-side phases (median of the default worker's replies): context {} µs, eval {} µs",
        ctx_us[ctx_us.len() / 2],
        eval_us[eval_us.len() / 2]
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
