//! The `relay-miner` binary: thin, parses the CLI and runs it (see `relay_miner::cli`).

use clap::Parser as _;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = relay_miner::cli::Cli::parse();
    let code = relay_miner::cli::run(cli)?;
    std::process::exit(code);
}
