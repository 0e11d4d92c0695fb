//! `relay-miner import-go-config` run as a binary on Go relayer + miner files in a temp dir: its exit codes (apart
//! from clap's usage error), an output `relay-miner validate` accepts, and `--out` never replacing a file without
//! `--force` and always owner-only.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The full Go pair of the unit tests (every key set), with the keys file in `dir` and the node at a closed port
/// (so `validate`'s checks against the node fail fast and are only logged).
fn write_go_files(dir: &Path) -> (PathBuf, PathBuf) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/import_go/testdata");
    let keys = dir.join("supplier-keys.yaml");
    crate::support::node::write_keys(&keys, &[hex::encode([7u8; 32])]);
    let port = crate::support::free_port();
    let fix = |name: &str| {
        let text = std::fs::read_to_string(data.join(name)).unwrap();
        let text = text
            .replace("/etc/relay-miner/supplier-keys.yaml", &keys.display().to_string())
            .replace("node.internal:26657", &format!("127.0.0.1:{port}"))
            .replace("node.internal:9090", &format!("127.0.0.1:{port}"));
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    (fix("go-relayer.yaml"), fix("go-miner.yaml"))
}

fn relay_miner(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relay-miner"))
        .args(args)
        .output()
        .unwrap()
}

fn import(relayer: &Path, miner: Option<&Path>, out: Option<&Path>, force: bool) -> (Option<i32>, String, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["import-go-config".as_ref(), "--relayer".as_ref(), relayer.as_ref()];
    if let Some(miner) = miner {
        args.extend(["--miner".as_ref(), miner.as_os_str()]);
    }
    if let Some(out) = out {
        args.extend(["--out".as_ref(), out.as_os_str()]);
    }
    if force {
        args.push("--force".as_ref());
    }
    let output = relay_miner(&args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

fn validate(config: &Path) -> (Option<i32>, String) {
    let output = relay_miner(&["validate".as_ref(), "--config".as_ref(), config.as_os_str()]);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn import_go_config_writes_a_config_validate_accepts_and_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let (relayer, miner) = write_go_files(dir.path());
    let out = dir.path().join("relay-miner.yaml");

    // The pair: valid output, nothing to decide (the miner's own metrics port is reported as dropped) → exit 0.
    let (code, stdout, stderr) = import(&relayer, Some(&miner), Some(&out), false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.is_empty(), "the config goes to --out: {stdout}");
    assert!(stderr.contains("attention (0):"), "{stderr}");
    assert!(stderr.contains("miner: metrics.addr: dropped:"), "{stderr}");
    assert!(
        stderr.contains("validation: the output is a valid relay-miner config"),
        "{stderr}"
    );
    let (code, stdout) = validate(&out);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("valid (3 services, storage Redis)"), "{stdout}");
    // It carries the backends' credentials: owner-only, like the keys file.
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);

    // An existing --out is left alone without --force, replaced with it, and made owner-only (it was 0644).
    std::fs::write(&out, "operator's own file\n").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, stderr) = import(&relayer, Some(&miner), Some(&out), false);
    assert_eq!(code, Some(12), "{stderr}");
    assert!(stderr.contains("exists; not overwritten (use --force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "operator's own file\n");
    let (code, _, stderr) = import(&relayer, Some(&miner), Some(&out), true);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(validate(&out).0, Some(0));
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);

    // A Go setting that needs the operator's decision (claims one per tx, which this miner does not do): the
    // output is still written and valid, exit 11.
    let text = std::fs::read_to_string(&miner).unwrap();
    std::fs::write(
        &miner,
        text.replace("disable_claim_batching: false", "disable_claim_batching: true"),
    )
    .unwrap();
    let (code, _, stderr) = import(&relayer, Some(&miner), Some(&out), true);
    assert_eq!(code, Some(11), "{stderr}");
    assert!(
        stderr.contains("attention (1):\n  miner: transaction.disable_claim_batching: attention:"),
        "{stderr}"
    );
    assert_eq!(validate(&out).0, Some(0));

    // The relayer alone: nothing to decide → exit 0, the config on stdout.
    let (code, stdout, stderr) = import(&relayer, None, None, false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("attention (0):"), "{stderr}");
    let config = relay_miner::config::Config::from_yaml(&stdout).unwrap();
    assert!(config.validate().is_empty());
    assert_eq!(config.services.len(), 3);
}

#[test]
fn import_go_config_exits_10_when_the_output_does_not_validate_and_still_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (relayer, miner) = write_go_files(dir.path());
    // A Go floor for tx timeouts (590) beyond what we send (540).
    let text = std::fs::read_to_string(&miner).unwrap();
    let text = text.replace("tx_timeout_min_seconds: 120", "tx_timeout_min_seconds: 590");
    std::fs::write(&miner, text).unwrap();
    let out = dir.path().join("relay-miner.yaml");
    let (code, _, stderr) = import(&relayer, Some(&miner), Some(&out), false);
    assert_eq!(code, Some(10), "{stderr}");
    assert!(
        stderr.contains("transaction.tx_timeout_default_seconds: must be between 1 and 540")
            && stderr.contains("[from the miner file's `transaction.tx_timeout_min_seconds`]"),
        "{stderr}"
    );
    let (code, stdout) = validate(&out);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("transaction.tx_timeout_default_seconds"), "{stdout}");

    // Nothing imported from a file that is not there.
    let (code, _, stderr) = import(&dir.path().join("missing.yaml"), None, None, false);
    assert_eq!(code, Some(12), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");

    // A usage error is clap's 2, apart from every outcome of ours.
    let output = relay_miner(&["import-go-config".as_ref(), "--no-such-flag".as_ref()]);
    assert_eq!(output.status.code(), Some(2));
}
