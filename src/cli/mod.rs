//! The command line: clap commands and their dispatch. `main.rs` only parses and calls [`run`].

mod import_go;
mod loadgen;
mod localnet;
mod raft;
mod run;
mod sim;

use std::path::PathBuf;

pub use import_go::{ImportGoArgs, StorageArg};
pub use loadgen::LoadgenArgs;
pub use localnet::{
    LocalnetArgs, LocalnetSummary, demo_genesis, run as run_localnet, run_with_summary as run_localnet_with_summary,
};
pub use raft::{RaftArgs, RaftCommand};
pub use run::RunArgs;
pub use sim::{DEMO_GENESIS, SimArgs, run as run_sim};

use clap::{Parser, Subcommand};

/// relay-miner: a relay miner for Pocket Network (Shannon).
#[derive(Debug, Parser)]
#[command(name = "relay-miner", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check conformance vector files (JSON Lines, `../shared/spec/vectors-format.md`).
    Conformance {
        /// Vector files to run.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Convert the Go relay miner's relayer (and miner) config files into one relay-miner config, reporting what
    /// became of every Go key (mapped, dropped with the reason, or needing your decision) and whether the output
    /// validates. Exit codes: 0 valid and nothing to decide, 1 the output does not validate, 2 valid but some keys
    /// need your decision, 3 nothing imported.
    ImportGoConfig(ImportGoArgs),
    /// Run a local network: simulator chain, demo backend, relay miner on embedded storage and a load generator;
    /// prints a summary and exits 0 when every claim and proof was accepted and nothing was lost.
    Localnet(LocalnetArgs),
    /// Send ring-signed relays from the simulator genesis' applications to a running relay miner.
    Loadgen(LoadgenArgs),
    /// Raft cluster administration against a running node's raft port: status, init, add-learner, promote,
    /// remove.
    Raft(RaftArgs),
    /// Run the relay miner (relayer + miner + metrics) from a config file until SIGTERM/Ctrl-C.
    Run(RunArgs),
    /// Run the relayer alone (serves and records relays, never mines), for a deployment on Redis storage whose
    /// miners run as `relay-miner miner`. Same flags as `run`.
    Relayer(RunArgs),
    /// Run the miner alone (mines what the relayers recorded, serves no relays; the lease holder submits), for a
    /// deployment on Redis storage whose relayers run as `relay-miner relayer`. Same flags as `run`.
    Miner(RunArgs),
    /// Run the local chain simulator: pocket/cosmos gRPC, CometBFT RPC + websocket, a block timer and the demo
    /// backend on 127.0.0.1, from a genesis YAML; until Ctrl-C/SIGTERM.
    Sim(SimArgs),
    /// Check a config file (syntax, unknown keys, values, and what `run` checks before starting: keys file,
    /// backend headers, raft cluster token file, and whether storage.data_dir holds another store's live data
    /// that a start on a new store would abandon) without starting anything.
    Validate {
        /// The YAML config file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    if !matches!(cli.command, Command::Run(_) | Command::Relayer(_) | Command::Miner(_)) {
        crate::telemetry::init_tracing("info", false);
    }
    match cli.command {
        Command::Run(args) => run::run(args, crate::node::Role::All),
        Command::Relayer(args) => run::run(args, crate::node::Role::Relayer),
        Command::Miner(args) => run::run(args, crate::node::Role::Miner),
        Command::Loadgen(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(loadgen::run(args))
        }
        Command::Conformance { files } => conformance(&files),
        Command::Validate { config } => validate(&config),
        Command::ImportGoConfig(args) => import_go::run(&args),
        Command::Raft(args) => raft::run(args),
        Command::Localnet(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(localnet::run(args))
        }
        Command::Sim(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(sim::run(args))
        }
    }
}

fn conformance(files: &[PathBuf]) -> anyhow::Result<i32> {
    let mut report = crate::conformance::Report::default();
    for file in files {
        let name = file.display().to_string();
        match std::fs::read_to_string(file) {
            Ok(text) => crate::conformance::run_text(&name, &text, &mut report),
            Err(e) => report.failures.push(format!("{name}:0 ?: cannot read file: {e}")),
        }
    }
    for failure in &report.failures {
        println!("{failure}");
    }
    println!("{}", report.summary());
    Ok(if report.failures.is_empty() { 0 } else { 1 })
}

/// `validate`: the config's own checks ([`crate::config::Config::load`]), then what `run` checks before it opens
/// anything ([`crate::node::preflight`]: keys file, backend headers, raft token file, …, and
/// [`crate::node::validate_data_dir`]: a new store next to another store's live data in `storage.data_dir`),
/// every problem named by its key. Opens no store for writing and creates nothing.
fn validate(path: &std::path::Path) -> anyhow::Result<i32> {
    let config = match crate::config::Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            println!("{}: {e}", path.display());
            return Ok(1);
        }
    };
    for warning in config.warnings() {
        println!("{}: warning: {warning}", path.display());
    }
    let overrides = crate::node::RaftOverrides::default();
    let mut issues = crate::node::preflight(&config, &overrides);
    // Whether `run` would start on a new store and abandon another one's live data (read-only).
    match crate::node::validate_data_dir(&config, &overrides) {
        Ok(warnings) => {
            for warning in warnings {
                println!("{}: warning: {warning}", path.display());
            }
        }
        Err(crate::node::NodeError::Config { key, problem }) => issues.push(crate::config::ConfigIssue {
            key: key.to_string(),
            problem,
        }),
        Err(e) => issues.push(crate::config::ConfigIssue {
            key: "storage.data_dir".to_string(),
            problem: e.to_string(),
        }),
    }
    if !issues.is_empty() {
        println!("{}: {}", path.display(), crate::config::ConfigError::Invalid(issues));
        return Ok(1);
    }
    println!(
        "{}: valid ({} services, storage {:?})",
        path.display(),
        config.services.len(),
        config.storage.mode
    );
    Ok(0)
}
