//! The `relay-miner` binary: thin, parses the CLI and runs it (see `relay_miner::cli`).

use clap::Parser as _;

fn main() -> anyhow::Result<()> {
    relay_miner::telemetry::init_tracing("info", false);
    let cli = relay_miner::cli::Cli::parse();
    let code = relay_miner::cli::run(cli)?;
    std::process::exit(code);
}
