#!/usr/bin/env bash
# Side by side, in one session: raftbench's write latency (memwal and rocksdb, snapshots at
# the default interval and off) and etcd's, under the same closed-loop HTTP load, plus the
# disk's fdatasync latency. The measurement behind issue 13's targets; not a test.
#
#   scripts/bench-vs-etcd.sh                 # 15 s per run, 64 and 256 connections
#   DUR=5 CONNS="64" scripts/bench-vs-etcd.sh
#   BACKENDS=memwal INTERVALS=100000 ETCD=0 scripts/bench-vs-etcd.sh   # one row
#
# Load: wrk, 2 threads, PUT of 256-byte values under random keys out of 100k, against the
# leader (raftbench: PUT /kv/k<n>; etcd 3.x: POST /v3/kv/put through its JSON gateway).
# Needs etcd, wrk and fio (root: apt-get install -y etcd-server wrk fio). Everything runs
# on 127.0.0.1 ports picked free, in a temporary directory removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-15}
CONNS=${CONNS:-"64 256"}
BACKENDS=${BACKENDS:-"memwal rocksdb"}
INTERVALS=${INTERVALS:-"100000 0"}
ETCD=${ETCD:-1}
BIN=${RAFTBENCH:-${CARGO_TARGET_DIR:-/var/tmp/raftbench-target}/release/raftbench}
for tool in etcd wrk fio python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y etcd-server wrk fio" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "no raftbench binary at $BIN (run scripts/quickstart.sh or cargo build --release)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/bench-vs-etcd.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cat > "$work/report.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.2f %.2f %.2f %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
cat "$work/report.lua" > "$work/raftbench.lua"
cat >> "$work/raftbench.lua" <<'LUA'
wrk.method = "PUT"
wrk.body = string.rep("x", 256)
request = function() return wrk.format(nil, "/kv/k" .. math.random(100000)) end
LUA
cat "$work/report.lua" > "$work/etcd.lua"
cat >> "$work/etcd.lua" <<'LUA'
local b = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  return ((s:gsub(".", function(x)
    local r, v = "", x:byte()
    for i = 8, 1, -1 do r = r .. (v % 2 ^ i - v % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end
local value = b64(string.rep("x", 256))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, "/v3/kv/put", nil, '{"key":"' .. b64("k" .. math.random(100000)) .. '","value":"' .. value .. '"}')
end
LUA

cpu_busy() { # the machine's busy and total CPU ticks so far (/proc/stat)
  awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat
}

row() { # name conns url lua
  local out before after
  before=$(cpu_busy)
  out=$(wrk -t"$(( $2 < 2 ? $2 : 2 ))" -c"$2" -d"${DUR}s" --timeout 10s -s "$4" "$3" | grep '^RESULT' || true)
  after=$(cpu_busy)
  read -r _ rps p50 p99 max errors <<<"${out:-RESULT 0 0 0 0 -1}"
  cpu=$(awk -v b="$before" -v a="$after" 'BEGIN{split(b,x," ");split(a,y," ");printf "%.0f", 100*(y[1]-x[1])/(y[2]-x[2])}')
  printf '%-28s %6s %10s %9s %9s %9s %7s %5s%%\n' "$1" "$2" "$rps" "$p50" "$p99" "$max" "$errors" "$cpu"
}

raft_loop() { # url: the leader's raft-loop cost during the run, from its /status
  python3 - "$1" <<'PY' || true
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/status", timeout=5))
per_ready = s["busy_us"] / max(s["readies"], 1)
share = lambda k: 100 * s.get(k, 0) / max(s["busy_us"], 1)
print(f"  leader's raft loop: longest turn {s['longest_turn_us'] / 1e3:.1f} ms, {per_ready:.0f} us/Ready "
      f"(persist {share('persist_us'):.0f}%, apply {share('apply_us'):.0f}%), "
      f"{s.get('snapshots_built', 0)} snapshots built off the raft thread (last {s.get('last_snapshot_ms', 0):.0f} ms)")
PY
}

raftbench_leader() { # dir -> http://addr of the leader
  for _ in $(seq 300); do
    grep -q 'Ctrl-C' "$1/up.log" 2>/dev/null && break
    sleep 0.1
  done
  grep '(leader)' "$1/up.log" | grep -o 'http://[0-9.:]*' | head -1
}

printf '%-28s %6s %10s %9s %9s %9s %7s %6s\n' target conns writes/s p50_ms p99_ms max_ms errors cpu
for backend in $BACKENDS; do
  for interval in $INTERVALS; do
    for c in $CONNS; do
      d="$work/rb-$backend-$interval-$c"
      mkdir -p "$d"
      "$BIN" cluster up --nodes 3 --backend "$backend" --snapshot-interval "$interval" --dir "$d/cluster" > "$d/up.log" 2>&1 &
      pid=$!
      pids+=("$pid")
      url=$(raftbench_leader "$d")
      [ -n "$url" ] || { echo "raftbench cluster did not start: $(cat "$d/up.log")" >&2; exit 1; }
      label="raftbench $backend"
      [ "$interval" = 0 ] && label="$label, no snapshots" || label="$label, snap $interval"
      row "$label" "$c" "$url" "$work/raftbench.lua"
      raft_loop "$url"
      kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    done
  done
done

for c in $CONNS; do
  [ "$ETCD" = 1 ] || break
  d="$work/etcd-$c"
  mkdir -p "$d"
  declare -a cp=() pp=()
  for i in 1 2 3; do cp[$i]=$(free_port); pp[$i]=$(free_port); done
  initial="e1=http://127.0.0.1:${pp[1]},e2=http://127.0.0.1:${pp[2]},e3=http://127.0.0.1:${pp[3]}"
  epids=()
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$d/e$i" \
      --listen-client-urls "http://127.0.0.1:${cp[$i]}" --advertise-client-urls "http://127.0.0.1:${cp[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${pp[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${pp[$i]}" \
      --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token bench \
      > "$d/e$i.log" 2>&1 &
    epids+=($!)
    pids+=($!)
  done
  leader=""
  for _ in $(seq 300); do
    for i in 1 2 3; do
      if python3 - "${cp[$i]}" <<'PY' 2>/dev/null; then leader=${cp[$i]}; fi
import json, sys, urllib.request
r = json.load(urllib.request.urlopen(urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/v3/maintenance/status", data=b"{}", method="POST"), timeout=1))
sys.exit(0 if r.get("leader") and r["leader"] == r["header"]["member_id"] else 1)
PY
    done
    [ -n "$leader" ] && break
    sleep 0.1
  done
  [ -n "$leader" ] || { echo "etcd did not elect a leader; see $d" >&2; exit 1; }
  row "etcd $(etcd --version | head -1 | awk '{print $3}')" "$c" "http://127.0.0.1:$leader" "$work/etcd.lua"
  for p in "${epids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
done

fio --name=fdatasync --directory="$work" --rw=write --bs=2300 --size=22m --fdatasync=1 \
  --output-format=json > "$work/fio.json" 2>/dev/null
python3 - "$work/fio.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
s = j["sync"]["lat_ns"]
print(f"disk: fdatasync of 2300-byte appends (fio): p50 {s['percentile']['50.000000']/1e3:.0f} us, "
      f"p99 {s['percentile']['99.000000']/1e3:.0f} us")
PY
