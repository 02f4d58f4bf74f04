#!/usr/bin/env bash
# The benchmark-length power-loss test: CYCLES whole-cluster power cuts under write load per
# backend, on the fault file system, each followed by a restart and a verify phase that
# reads every key back (each verify judges the writes since the one before, so the counts
# are per cut). Prints a table per backend: cuts, acknowledged writes lost (in all, and the
# worst cut), the newest lost write's age at its cut, and the median replay time.
#
#   scripts/power-cycles.sh [CYCLES] [FSYNC] [BACKENDS]
#   scripts/power-cycles.sh 100 always memwal,rocksdb     # the target: 0 lost
#   scripts/power-cycles.sh 20 never                      # what "never" loses, measured
#
# Results go to $OUT (default results/power-cycles-<utc>-<fsync>/<backend>/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

cycles="${1:-100}"
fsync="${2:-always}"
backends="${3:-memwal,rocksdb}"
case "$fsync" in always|never) ;; *) echo "error: FSYNC must be always or never, got $fsync" >&2; exit 2 ;; esac
[[ "$cycles" =~ ^[1-9][0-9]*$ ]] || { echo "error: CYCLES must be a positive number, got $cycles" >&2; exit 2; }

ensure_build_deps
ensure_target_dir
step "cargo build --release"
cargo build --release
bin="$CARGO_TARGET_DIR/release/raftbench"

out="${OUT:-results/power-cycles-$(date -u +%Y%m%dT%H%M%SZ)-$fsync}"
mkdir -p "$out"
wl="$out/power-cycles.toml"
{
  cat <<EOF
name = "power-cycles"
description = "$cycles whole-cluster power cuts under write load, each restarted and verified"
seed = 21
[cluster]
nodes = 3
fsync = "$fsync"
snapshot_interval = 20000
compact_lag = 2000
[data]
keys = 5000
value_size = 256
[[phase]]
name = "load"
ops = 5000
concurrency = 32
mix = { put = 1.0 }
EOF
  for i in $(seq 1 "$cycles"); do
    cat <<EOF
[[phase]]
name = "cut-$i"
duration = "5s"
concurrency = 16
rate = 400
timeout = "2s"
mix = { put = 0.9, get = 0.1 }
  [[phase.event]]
  at = "2s"
  action = "power-loss"
  target = "all"
  [[phase.event]]
  at = "2500ms"
  action = "restart"
  target = "killed"
[[phase]]
name = "verify-$i"
verify = true
EOF
  done
} > "$wl"
"$bin" validate "$wl"

extra=()
[ "$fsync" = never ] && extra=(--expect-loss)
status=0
for b in ${backends//,/ }; do
  step "$cycles power cuts, $b, fsync = $fsync -> $out/$b"
  "$bin" run "$wl" --backend "$b" --out "$out/$b" --quiet "${extra[@]}" >"$out/$b.log" 2>&1 || status=$?
  tail -n 3 "$out/$b.log"
done

step "summary ($out)"
python3 - "$out" ${backends//,/ } <<'EOF'
import json, statistics, sys, csv, os
out, backends = sys.argv[1], sys.argv[2:]
print(f"{'backend':<10} {'cuts':>5} {'acked':>8} {'lost':>6} {'worst cut':>9} {'newest lost age ms (median)':>28} {'unreadable':>10} {'replay ms (median)':>18}")
for b in backends:
    path = os.path.join(out, b, "run.json")
    if not os.path.exists(path):
        print(f"{b:<10} run failed: see {out}/{b}.log"); continue
    m = json.load(open(path))
    phases = [p["report"] for p in m.get("verify_phases", []) if p["phase"].startswith("verify-")]
    lost = [p["lost"] + p["stale"] for p in phases]
    ages = [p["newest_lost_age_ms"] for p in phases if p.get("newest_lost_age_ms") is not None]
    replay = []
    rec = os.path.join(out, b, "recovery.csv")
    if os.path.exists(rec):
        replay = [float(r["ms"]) for r in csv.DictReader(open(rec)) if r["metric"] == "replay_ms"]
    print(f"{b:<10} {len(phases):>5} {sum(p['acknowledged'] for p in phases):>8} {sum(lost):>6} {max(lost or [0]):>9} "
          f"{(statistics.median(ages) if ages else '-'):>28} {sum(p['unreadable'] for p in phases):>10} "
          f"{(round(statistics.median(replay), 1) if replay else '-'):>18}")
EOF
exit "$status"
