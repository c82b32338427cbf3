//! `floor`: the fixed-JSON `hyper` server (the HTTP floor of the machine).
//!
//! `floor [--listen 127.0.0.1:0] [--threads 2] [--body FILE]` prints
//! `listening on ADDR` on its first line, then serves until killed.

use bytes::Bytes;
use clap::Parser;
use std::io::Write;

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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .thread_name("floor-http")
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", args.listen));
        let addr = listener.local_addr().expect("local address");
        println!("listening on {addr}");
        let _ = std::io::stdout().flush();
        omni_bench::floor::serve(listener, Bytes::from(body)).await;
    });
}
