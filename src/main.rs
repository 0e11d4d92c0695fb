//! The `relay-miner` binary: thin, parses the CLI and runs it (see `relay_miner::cli`, which sets up logging).

use clap::Parser as _;

/// mimalloc instead of glibc malloc: the relay hot path allocates and frees many short-lived buffers across
/// threads, and glibc's arena consolidation (`malloc_consolidate`, `unlink_chunk`) was ~15 % of the relayer's
/// CPU in profiles of the relayer bench (BENCHMARKS.md, Relayer).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // First, before any thread allocates: a huge-page fault can stall a relay for milliseconds.
    if let Err(e) = relay_miner::process::disable_transparent_huge_pages() {
        eprintln!("relay-miner: warning: cannot disable transparent huge pages for this process: {e}");
    }
    let cli = relay_miner::cli::Cli::parse();
    let code = relay_miner::cli::run(cli)?;
    std::process::exit(code);
}
