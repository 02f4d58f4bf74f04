#!/usr/bin/env bash
# What a large snapshot costs the writes around it: a local 3-node cluster loaded with KEYS
# keys (default 1M), then the same open-loop write load twice in one run — a phase without
# snapshots, and a phase during which every node builds a snapshot of the whole state —
# compared side by side. The measurement behind issue 13's target (a 1M-key snapshot under
# load delays no write by more than 10 ms beyond the p99 without snapshots); not a test.
#
#   scripts/bench-snapshot.sh                         # memwal, 1M keys, 5000 writes/s
#   BACKEND=rocksdb KEYS=200000 RATE=2000 scripts/bench-snapshot.sh
#   SNAP_RATE=0 scripts/bench-snapshot.sh             # snapshot files written at full speed
#
# Snapshots are only taken when the workload asks (snapshot_interval = 0), so the first
# phase has none. Results stay in OUT (default: a temporary directory, removed).
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
RATE=${RATE:-5000}
DUR=${DUR:-20s}
BACKEND=${BACKEND:-memwal}
SNAP_RATE=${SNAP_RATE:-32MiB}   # the nodes' snapshot_write_rate (0: no limit)
BIN=${RAFTBENCH:-${CARGO_TARGET_DIR:-/var/tmp/raftbench-target}/release/raftbench}
[ -x "$BIN" ] || { echo "no raftbench binary at $BIN (run scripts/quickstart.sh or cargo build --release)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "missing python3" >&2; exit 1; }
work=$(mktemp -d /var/tmp/bench-snapshot.XXXXXX)
if [ -n "${OUT:-}" ]; then trap 'rm -rf "$work/cluster"' EXIT; else trap 'rm -rf "$work"' EXIT; fi
out=${OUT:-$work/results}

cat > "$work/snapshot.toml" <<TOML
name = "snapshot-cost"
seed = 11
[cluster]
nodes = 3
snapshot_interval = 0
snapshot_write_rate = "$SNAP_RATE"
[data]
keys = $KEYS
key_size = 16
value_size = 256
[[phase]]
name = "load"
ops = $KEYS
concurrency = 64
mix = { put = 1.0 }
key_distribution = { dist = "sequential" }
[[phase]]
name = "no-snapshot"
duration = "$DUR"
warmup = "2s"
concurrency = 64
rate = $RATE
mix = { put = 1.0 }
[[phase]]
name = "snapshot"
duration = "$DUR"
warmup = "2s"
concurrency = 64
rate = $RATE
mix = { put = 1.0 }
  [[phase.event]]
  at = "4s"
  action = "snapshot"
  target = "all"
TOML

echo "loading $KEYS keys on $BACKEND (snapshot_write_rate $SNAP_RATE), then $RATE writes/s for $DUR without and with a snapshot..."
"$BIN" run "$work/snapshot.toml" --backend "$BACKEND" --out "$out" --quiet >"$work/run.log" 2>&1 || {
  cat "$work/run.log" >&2
  exit 1
}
python3 - "$out" <<'PY'
import csv, sys
out = sys.argv[1]
rows = {(r["phase"], r["latency_kind"]): r for r in csv.DictReader(open(f"{out}/summary.csv"))
        if r["op"] == "put" and r["outcome"] == "ok"}
print(f"{'phase':<12} {'writes':>7} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7}  (corrected latency)")
for ph in ("no-snapshot", "snapshot"):
    r = rows[(ph, "corrected")]
    ms = lambda k: int(r[k]) / 1e3
    print(f"{ph:<12} {r['count']:>7} {ms('p50_us'):>7.2f} {ms('p99_us'):>7.2f} {ms('p999_us'):>8.2f} {ms('max_us'):>7.2f}")
base = int(rows[("no-snapshot", "corrected")]["p99_us"]) / 1e3
worst = int(rows[("snapshot", "corrected")]["max_us"]) / 1e3
print(f"slowest write during the snapshot phase: {worst:.2f} ms = p99 without snapshots {base:.2f} ms + {worst - base:.2f} ms")
for r in csv.DictReader(open(f"{out}/recovery.csv")):
    if r["action"] == "snapshot":
        print(f"  snapshot on node {r['node']}: {r['metric']} = {r['ms']}")
PY
