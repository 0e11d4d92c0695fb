//! The `relay-miner` binary: thin, parses the CLI and runs it (see `relay_miner::cli`, which sets up logging).

use clap::Parser as _;

fn main() -> anyhow::Result<()> {
    let cli = relay_miner::cli::Cli::parse();
    let code = relay_miner::cli::run(cli)?;
    std::process::exit(code);
}
