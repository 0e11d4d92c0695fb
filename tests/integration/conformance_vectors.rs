//! The public conformance vectors run through the real binary, as CI and operators run them.

use std::path::PathBuf;
use std::process::Command;

/// The in-repo copy of the public vectors plus every file next to the project in `../shared/spec/vectors`.
fn vector_files() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [root.join("tests/vectors"), root.join("../shared/spec/vectors")] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        found.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
        found.sort();
        files.extend(found);
    }
    files
}

#[test]
fn public_vectors_pass_through_the_binary() {
    let files = vector_files();
    assert!(
        !files.is_empty(),
        "tests/vectors/public.jsonl is part of the repository"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_relay-miner"))
        .arg("conformance")
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().to_string();
    assert!(last.ends_with(" 0 failed"), "conformance failures:\n{stdout}");
    assert!(out.status.success());
}

#[test]
fn unknown_kind_fails_with_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v.jsonl");
    std::fs::write(&file, "# c\n{\"kind\":\"no_such_kind\"}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relay-miner"))
        .arg("conformance")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("v.jsonl:2 no_such_kind: unknown kind"), "{stdout}");
    assert!(stdout.trim_end().ends_with("0 passed, 1 failed"), "{stdout}");
    assert_eq!(out.status.code(), Some(1));
}
