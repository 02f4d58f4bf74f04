#!/usr/bin/env bash
# raftbench's test command (the README's, and what CI runs):
#   fmt check, clippy (warnings denied), the test suite, and a build of the benchmarks.
# Every cargo command uses --release so RocksDB's C++ is compiled once, not once per profile.
# It installs what the build needs when it is missing (libclang for RocksDB's bindgen, …), and
# when root the multi-host lab's openssh-server and nftables (the lab tests skip without them).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_deps
ensure_lab_deps
ensure_target_dir

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --release --all-targets -- -D warnings"
cargo clippy --release --all-targets -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests; run them first so nextest's summary closes the output.
  cargo test --release --doc
  cargo nextest run --release --no-fail-fast
else
  cargo test --release --no-fail-fast
fi

step "cargo bench --no-run"
cargo bench --no-run

step "all checks passed"
