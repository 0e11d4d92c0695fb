#!/usr/bin/env bash
# The test command (README): installs what the tests need when missing, then runs every test of the workspace
# and the public conformance vectors. Works on a fresh machine of this kind from a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (storage conformance tests need a real server)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi

cargo test --workspace --all-targets
cargo test --workspace --doc

# Conformance vectors: the public files of the spec, run through the real binary.
VECTORS_DIR="${VECTORS_DIR:-../shared/spec/vectors}"
if compgen -G "$VECTORS_DIR/*.jsonl" >/dev/null; then
  cargo run --quiet --bin relay-miner -- conformance "$VECTORS_DIR"/*.jsonl
else
  echo "no conformance vectors found under $VECTORS_DIR (set VECTORS_DIR)"
fi
