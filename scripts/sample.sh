#!/usr/bin/env bash
# Regenerate the committed sample shown in the README: `raftbench compare --repeat 3` of the
# quickstart workload on memwal, rocksdb and etcd (a real etcd cluster as a peer), into results/sample-compare-quickstart/ (the node
# data directories are dropped; everything else is kept, so `raftbench plot` works on the
# runs). Run it after changes that move the numbers, and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_deps
ensure_target_dir
cargo build --release --bins
bin="$CARGO_TARGET_DIR/release/raftbench"

out=results/sample-compare-quickstart
rm -rf "$out"
"$bin" compare workloads/quickstart.toml --backends memwal,rocksdb,etcd --repeat 3 --out "$out" --quiet "$@"
rm -rf "$out"/runs/*/cluster
step "sample written to $out ($(du -sh "$out" | cut -f1))"
