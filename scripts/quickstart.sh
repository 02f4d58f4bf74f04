#!/usr/bin/env bash
# raftbench quickstart: install what the build needs, build, and run the main job —
# workloads/quickstart.toml (about a minute: load, mixed open-loop traffic, a snapshot,
# a leader kill and restart, lost-write verification) on a local 3-node cluster, once per
# storage backend, compared side by side (`raftbench compare`). Results go to
# results/<utc>-compare-quickstart/: comparison.md, comparison.csv, charts/, report.html,
# and each run's full results under runs/<backend>-1/.
#
# Environment: BACKENDS (default "memwal,rocksdb"; any storage modes, e.g.
# "raft-engine+rocksdb,wal+redb", and etcd for a real etcd cluster beside them), SCALE (default 1; e.g. 0.25 for a
# 15-second try per backend). Extra arguments are passed to `raftbench compare`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_deps
ensure_target_dir

step "building (the first build compiles RocksDB's C++: ~15 minutes on 2 cores)"
cargo build --release --bins
bin="$CARGO_TARGET_DIR/release/raftbench"

backends="${BACKENDS:-memwal,rocksdb}"
step "workloads/quickstart.toml on ${backends// /,}"
"$bin" compare workloads/quickstart.toml --backends "${backends// /,}" --scale "${SCALE:-1}" "$@"

step "done: open the report.html printed above (columns of every file: results/README.md)"
