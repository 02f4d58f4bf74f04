#!/usr/bin/env bash
# raftbench quickstart: install what the build needs, build, and run the main job —
# workloads/quickstart.toml (about a minute: load, mixed open-loop traffic, a snapshot,
# a leader kill and restart, lost-write verification) on a local 3-node cluster, once per
# storage backend. Results go to results/<utc>-quickstart-<backend>/.
#
# Environment: BACKENDS (default "memwal rocksdb"), SCALE (default 1; e.g. 0.25 for a
# 15-second try). Extra arguments are passed to `raftbench run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_deps
ensure_target_dir

step "building (the first build compiles RocksDB's C++: ~15 minutes on 2 cores)"
cargo build --release --bins
bin="$CARGO_TARGET_DIR/release/raftbench"

for backend in ${BACKENDS:-memwal rocksdb}; do
  step "workloads/quickstart.toml on $backend"
  "$bin" run workloads/quickstart.toml --backend "$backend" --scale "${SCALE:-1}" "$@"
done

step "done: results are in results/ (columns: results/README.md)"
