//! `floor`: the fixed-JSON `hyper` server (the HTTP floor of the machine).
//!
//! `floor [--listen 127.0.0.1:0] [--threads 2] [--body FILE]` prints
//! `listening on ADDR` on its first line, then serves until killed.

use bytes::Bytes;
use clap::Parser;

#[derive(Parser)]
#[command(about = "A minimal hyper server answering every request with a fixed JSON body")]
struct Args {
    /// Address to bind (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Runtime worker threads (omnid uses 2).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// File with the response body (default: a small JSON object).
    #[arg(long)]
    body: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    let body = match &args.body {
        Some(p) => std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        None => br#"{"ok":true}"#.to_vec(),
    };
    omni_bench::server::run(&args.listen, args.threads, "floor-http", |listener| {
        omni_bench::floor::serve(listener, Bytes::from(body))
    });
}
