#!/usr/bin/env bash
# The load generator's own cost in open loop: CPU time per operation and peak RSS of
# `raftbench run` at several rates, against a local 3-node cluster, in one run (one phase
# per rate). The measurement behind issue 13's generator targets (<= 20 us CPU per
# operation at 1k, 10k and 40k ops/s; <= 64 MiB RSS); not a test.
#
#   scripts/bench-generator.sh                       # 1k, 10k and 40k ops/s, 10 s each
#   RATES="1 10 1000" DUR=5s scripts/bench-generator.sh
#   MIX='{ put = 0.5, get = 0.5 }' CONC=64 scripts/bench-generator.sh
#
# The load is local reads by default (MIX), the cheapest operation for the cluster, so that
# the cluster keeps up and what is measured is the generator; a rate the cluster cannot
# reach says so (BEHIND, with the operations never sent). CPU per operation is the
# generator process's user + system time over the phase, divided by the operations it
# completed: everything it does, HTTP client and resource sampling included.
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-"1000 10000 40000"}
DUR=${DUR:-10s}
CONC=${CONC:-32}
MIX=${MIX:-"{ get = 1.0 }"}
BACKEND=${BACKEND:-memwal}
BIN=${RAFTBENCH:-${CARGO_TARGET_DIR:-/var/tmp/raftbench-target}/release/raftbench}
[ -x "$BIN" ] || { echo "no raftbench binary at $BIN (run scripts/quickstart.sh or cargo build --release)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "missing python3" >&2; exit 1; }
work=$(mktemp -d /var/tmp/bench-generator.XXXXXX)
trap 'rm -rf "$work"' EXIT

{
  cat <<TOML
name = "generator-cost"
seed = 7
[cluster]
nodes = 3
[data]
keys = 10_000
value_size = 256
[[phase]]
name = "load"
ops = 10_000
concurrency = 32
mix = { put = 1.0 }
key_distribution = { dist = "sequential" }
TOML
  for r in $RATES; do
    cat <<TOML
[[phase]]
name = "rate-$r"
duration = "$DUR"
warmup = "1s"
concurrency = $CONC
rate = $r
mix = $MIX
read_consistency = "local"
TOML
  done
} > "$work/generator.toml"

"$BIN" run "$work/generator.toml" --backend "$BACKEND" --out "$work/results" --quiet >"$work/run.log" 2>&1 || {
  cat "$work/run.log" >&2
  exit 1
}
python3 - "$work/results/run.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"{'phase':<14} {'target/s':>9} {'achieved/s':>11} {'unsent':>7} {'us CPU/op':>10}")
for p in m["phases"]:
    t = p.get("target_rate")
    print(f"{p['name']:<14} {t if t is not None else '-':>9} {p['achieved_rate']:>11.0f} "
          f"{p.get('unsent', 0):>7} {p['generator_cpu_us_per_op']:>10.1f}")
rss = m.get("generator_peak_rss_bytes")
print(f"generator peak RSS: {rss / 2**20:.1f} MiB" if rss else "generator peak RSS: not recorded")
PY
