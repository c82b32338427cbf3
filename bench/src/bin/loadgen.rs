//! `loadgen`: bounded HTTP/1.1 load against one address, JSON report on stdout.
//!
//! ```sh
//! loadgen --addr 127.0.0.1:8080 --standard -c 8 -d 5              # closed loop, standard workload
//! loadgen --addr 127.0.0.1:8080 --standard -c 64 -d 10 --rate 2000 # open loop at 2000 requests/s
//! loadgen --addr 127.0.0.1:8080 --body req.json --path /api/validate -n 100
//! loadgen --addr 127.0.0.1:8443 --standard -c 8 -d 5 --tls-ca ca.pem   # over TLS
//! ```

use bytes::Bytes;
use clap::Parser;
use omni_bench::loadgen::{self, Body, Config, Mode, Template};
use omni_bench::workload;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Bounded HTTP/1.1 load generator (hyper client); prints a JSON report")]
struct Args {
    /// Target address.
    #[arg(long)]
    addr: std::net::SocketAddr,
    /// Send the standard workload (drone_ops) to /api/validate.
    #[arg(long, conflicts_with = "body")]
    standard: bool,
    /// Send the standard workload with a new policy on every request (cache miss).
    #[arg(long, conflicts_with_all = ["body", "standard"])]
    standard_unique: bool,
    /// File with the request body.
    #[arg(long)]
    body: Option<std::path::PathBuf>,
    /// Request path.
    #[arg(long, default_value = "/api/validate")]
    path: String,
    /// Content type of the body.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Mix in the hostile requests (10 % of the total).
    #[arg(long)]
    hostile: bool,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 8)]
    connections: usize,
    /// Measured seconds (after the warm-up).
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Warm-up seconds (sent, not recorded).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many requests.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Client runtime threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// HTTPS, trusting the CA certificates of this PEM file.
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<std::path::PathBuf>,
}

fn main() {
    let a = Args::parse();
    let benign = if a.standard {
        workload::benign(
            "standard",
            Body::Fixed(Bytes::from(workload::standard_body())),
        )
    } else if a.standard_unique {
        workload::benign("standard_unique", workload::unique_standard_body())
    } else {
        let path = a
            .body
            .as_ref()
            .expect("--body, --standard or --standard-unique");
        let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut t = Template::post_json("body", &a.path, Body::Fixed(Bytes::from(b)));
        t.content_type = a.content_type.clone();
        t
    };
    let mut templates = vec![benign];
    if a.hostile {
        templates[0].weight = 90;
        templates.extend(workload::hostile_templates(2, 20));
    }
    let cfg = Config {
        addr: a.addr,
        connections: a.connections,
        mode: match a.rate {
            Some(rate) => Mode::Open { rate },
            None => Mode::Closed,
        },
        warmup: Duration::from_secs_f64(if a.requests.is_some() { 0.0 } else { a.warmup }),
        duration: Duration::from_secs_f64(a.duration),
        max_requests: a.requests,
        timeout: Duration::from_secs_f64(a.timeout),
        templates,
        threads: a.threads,
        tls: a.tls_ca.as_ref().map(|p| {
            let pem = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            loadgen::tls_client(&pem).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        }),
    };
    let report = loadgen::run(cfg);
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("report JSON")
    );
}
