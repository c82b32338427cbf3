//! The `omni` binary: see `omni::cli`.

use clap::Parser;

fn main() {
    let cli = omni::cli::Cli::parse();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = omni::cli::run(cli, &mut stdout.lock(), &mut stderr.lock());
    std::process::exit(code);
}
