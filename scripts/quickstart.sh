#!/usr/bin/env bash
# raftbench quickstart: install what the build needs, build, and run the main job:
# a 3-node local cluster per storage backend, driven by a closed-loop write load with
# 1, 16 and 64 clients (256-byte values), next to the disk's own fdatasync latency.
#
# Options (environment): SECONDS_PER_RUN (default 5), BACKENDS (default "memwal rocksdb"),
# QUICKSTART_DIR (default: a fresh temporary directory, kept for inspection).
# Storage micro-benchmarks: cargo bench --bench storage (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_deps
ensure_target_dir

step "building (the first build compiles RocksDB's C++: ~15 minutes on 2 cores)"
cargo build --release --bins
bin="$CARGO_TARGET_DIR/release/raftbench"

secs="${SECONDS_PER_RUN:-5}"
root="${QUICKSTART_DIR:-$(mktemp -d -t raftbench-quickstart.XXXXXX)}"
mkdir -p "$root"
pid=""
cleanup() { if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

for backend in ${BACKENDS:-memwal rocksdb}; do
  step "3-node $backend cluster (fsync always) in $root/$backend"
  "$bin" cluster up --nodes 3 --backend "$backend" --fsync always --dir "$root/$backend" \
    > "$root/$backend.out" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    grep -q "Ctrl-C" "$root/$backend.out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$root/$backend.out"; exit 1; }
    sleep 0.1
  done
  cat "$root/$backend.out"
  step "closed-loop writes, ${secs}s per client count"
  "$bin" loadtest --cluster-file "$root/$backend/cluster.toml" --clients 1,16,64 \
    --seconds "$secs" --value-size 256 --disk-baseline "$root"
  cleanup
  pid=""
done

step "done"
echo "Node logs and data: $root"
