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

cargo test --workspace

# Conformance vectors: the public files of the spec, run through the real binary.
# tests/vectors holds a copy of the public file; ../shared/spec/vectors (when present) may hold more.
files=(tests/vectors/*.jsonl)
if compgen -G "../shared/spec/vectors/*.jsonl" >/dev/null; then files+=(../shared/spec/vectors/*.jsonl); fi
cargo run --quiet --bin relay-miner -- conformance "${files[@]}"
