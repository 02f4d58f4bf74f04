#!/usr/bin/env bash
# raftbench quickstart: install what the build needs, build, and run the main job.
#
# Until the raft cluster and the workload runner land, the main job is the storage
# micro-benchmark suite in criterion's quick mode: every backend's persist / read / apply /
# snapshot / compact / reopen costs next to the disk's own fdatasync baseline.
# Full (slower, tighter) run:  cargo bench --bench storage
# Any criterion arguments given here are passed through, e.g. a filter:
#   scripts/quickstart.sh persist/memwal
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_deps
ensure_target_dir

step "building (the first build compiles RocksDB's C++: ~15 minutes on 2 cores)"
cargo build --release --benches --bins

step "storage micro-benchmarks (criterion --quick)"
cargo bench --bench storage -- --quick "$@"

step "done"
echo "HTML reports: $CARGO_TARGET_DIR/criterion/report/index.html"
echo "Raw estimates: $CARGO_TARGET_DIR/criterion/<group>/<backend>/<case>/new/estimates.json"
