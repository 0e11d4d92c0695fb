//! `relay-miner import-go-config`: the IO around [`crate::config::import_go`] — read the Go relayer (and miner)
//! file, write our config to `--out` (never over an existing file without `--force`) or stdout, print the report
//! to stderr, and turn the result into the exit code.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::config::StorageMode;
use crate::config::import_go::{self, Options};

// Exit codes apart from clap's usage error (2) and an error out of `main` (1), so a script tells them apart.
/// Exit code: the output does not validate (with or without attention items).
pub const EXIT_INVALID: i32 = 10;
/// Exit code: the output validates, but some Go keys need the operator's decision.
pub const EXIT_ATTENTION: i32 = 11;
/// Exit code: nothing was imported (a file unreadable or not YAML, `--out` exists).
pub const EXIT_NOT_RUN: i32 = 12;

/// Storage mode of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageArg {
    /// One local redb file; this process is the leader.
    Embedded,
    /// Redis, as the Go fleet runs (its `redis.url`).
    Redis,
}

/// `import-go-config` flags.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 = the output validates and every Go key was mapped or dropped; \
    10 = the output does not validate (the report names each problem and the Go key it came from); \
    11 = it validates but some Go keys need your decision (`attention` lines in the report); \
    12 = nothing imported (a file unreadable or not YAML, or --out exists without --force); \
    2 = a usage error (clap), 1 = another error. The output is written in cases 0, 10 and 11 (mode 0600: it \
    holds the Go files' credentials). Values printed in the report have URL credentials and every \
    password, token and header value left out."
)]
pub struct ImportGoArgs {
    /// The Go relayer's config file.
    #[arg(long)]
    pub relayer: PathBuf,
    /// The Go miner's config file.
    #[arg(long)]
    pub miner: Option<PathBuf>,
    /// Write our config here instead of stdout (refused if the file exists, unless --force).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite an existing --out file.
    #[arg(long)]
    pub force: bool,
    /// Storage mode of the output. Default: redis when a Go file has a redis.url (how the Go fleet runs today),
    /// else embedded.
    #[arg(long, value_enum)]
    pub storage: Option<StorageArg>,
}

/// Runs the import; returns the exit code.
pub fn run(args: &ImportGoArgs) -> anyhow::Result<i32> {
    let relayer = match read_yaml(&args.relayer) {
        Ok(v) => v,
        Err(e) => return not_run(&e),
    };
    let miner = match args.miner.as_deref().map(read_yaml).transpose() {
        Ok(v) => v,
        Err(e) => return not_run(&e),
    };
    let options = Options {
        storage: args.storage.map(|s| match s {
            StorageArg::Embedded => StorageMode::Embedded,
            StorageArg::Redis => StorageMode::Redis,
        }),
    };
    let import = import_go::import(&relayer, miner.as_ref(), &options);
    match &args.out {
        Some(out) => {
            if let Err(e) = write_out(out, &import.yaml, args.force) {
                return not_run(&e);
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(import.yaml.as_bytes())?;
            stdout.flush()?;
        }
    }
    let mut files = format!("relayer = {}", args.relayer.display());
    if let Some(miner) = &args.miner {
        files.push_str(&format!(", miner = {}", miner.display()));
    }
    let written = args
        .out
        .as_ref()
        .map_or_else(|| "stdout".to_string(), |o| o.display().to_string());
    eprintln!("import-go-config: {files}; output written to {written}");
    eprint!("{}", import.report());
    let attention = import.attention().count();
    Ok(if !import.issues.is_empty() {
        EXIT_INVALID
    } else if attention > 0 {
        eprintln!("{attention} Go keys need your decision (attention above): exit code {EXIT_ATTENTION}");
        EXIT_ATTENTION
    } else {
        0
    })
}

fn not_run(e: &str) -> anyhow::Result<i32> {
    eprintln!("import-go-config: {e}");
    Ok(EXIT_NOT_RUN)
}

fn read_yaml(path: &Path) -> Result<serde_norway::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_norway::from_str(&text).map_err(|e| format!("{} is not YAML: {e}", path.display()))
}

/// Writes `text` to `path`; without `force` an existing file is left alone (created exclusively, so a file
/// appearing meanwhile is not overwritten either).
fn write_out(path: &Path, text: &str, force: bool) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    // 0600: the config carries the Go files' backend credentials. The open mode applies to a new file only; an
    // existing one replaced with --force keeps its mode, so it is set before anything is written.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{} exists; not overwritten (use --force to replace it)", path.display())
        } else {
            format!("cannot write {}: {e}", path.display())
        }
    })?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("cannot make {} owner-only (0600): {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
