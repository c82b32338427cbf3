//! `inprocess`: the in-process ceiling (see `omni_bench::inprocess`): omnid's
//! work for `POST /api/validate` done on the HTTP thread, with no worker.
//!
//! `inprocess [--listen 127.0.0.1:0] [--threads 2]` prints
//! `listening on ADDR` on its first line, then serves until killed.

use clap::Parser;

#[derive(Parser)]
#[command(
    about = "omnid's validate path evaluated in-process: the ceiling of any isolating design"
)]
struct Args {
    /// Address to bind (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Runtime worker threads (omnid uses 2).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() {
    let args = Args::parse();
    omni_bench::server::run(&args.listen, args.threads, "inproc-http", |listener| {
        omni_bench::inprocess::serve(listener)
    });
}
