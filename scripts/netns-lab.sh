#!/usr/bin/env bash
# A lab of hosts on one machine, for raftbench's multi-host mode:
#
#   scripts/netns-lab.sh up N [NODES]   N network namespaces ("hosts"), each with its own
#                                       address and an sshd; the first NODES (3) are node
#                                       hosts, the rest generator hosts
#   scripts/netns-lab.sh down           remove everything `up` made
#   scripts/netns-lab.sh status         what is up
#
# Layout (LAB_PREFIX=rblab, LAB_NET=10.213.0, LAB_DIR=/tmp/rblab):
#   - namespace rblab-hub holds a bridge, rblab-br, at 10.213.0.1/24: the control host.
#     The coordinator runs there (`ip netns exec rblab-hub raftbench run ...`), so that
#     nothing is added to the machine's own namespace, routes included.
#   - namespace rblab-hI (I = 1..N) is host hI at 10.213.0.(10+I), joined to the bridge by a
#     veth pair, and runs `sshd` (Debian's openssh-server) on port 22 with a throwaway host
#     key, admitting a throwaway client key as root.
#   - LAB_DIR holds the keys, known_hosts, each host's working directory (hI/), a cluster
#     secret, and hosts.toml: the cluster file of the lab for `raftbench run --cluster`.
#
# Every address is inside namespaces this script creates, and `down` removes them (the
# namespaces take their veths and bridge with them). Needs root and `ip netns`.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${LAB_PREFIX:-rblab}"
NET="${LAB_NET:-10.213.0}"
DIR="${LAB_DIR:-/tmp/$PREFIX}"
HUB="$PREFIX-hub"
BRIDGE="$PREFIX-br"

die() { echo "netns-lab: $*" >&2; exit 1; }

need() {
  [[ $(id -u) == 0 ]] || die "needs root (network namespaces and sshd)"
  command -v ip >/dev/null || die "needs iproute2's ip"
  ip netns list >/dev/null 2>&1 || die "this kernel or container cannot create network namespaces"
  if ! command -v sshd >/dev/null && [[ ! -x /usr/sbin/sshd ]]; then
    if command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >/dev/null \
        || die "could not install openssh-server: apt-get install -y openssh-server"
    else
      die "needs sshd: install openssh-server"
    fi
  fi
  command -v ssh-keygen >/dev/null || die "needs ssh-keygen (openssh-client)"
}

hosts() { ls "$DIR"/hosts 2>/dev/null | sort -n; }

down() {
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-(h[0-9]+|hub)$" || true); do
    # Processes left in a host (nodes, generators, sshd) go with it.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  # Only a directory this script made (it holds the marker) is removed.
  if [[ -f $DIR/.netns-lab ]]; then rm -rf "$DIR"; fi
  echo "netns-lab: down"
}

status() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-" || echo "netns-lab: nothing up"
  [[ -f $DIR/hosts.toml ]] && echo "cluster file: $DIR/hosts.toml"
  return 0
}

up() {
  local n="${1:-5}" nodes="${2:-3}"
  [[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 50 ]] || die "N must be 1..50, got $n"
  [[ $nodes =~ ^[0-9]+$ && $nodes -ge 1 && $nodes -le $n ]] || die "NODES must be 1..N, got $nodes"
  need
  down >/dev/null
  if [[ -e $DIR ]]; then die "$DIR exists and was not made by this script; set LAB_DIR"; fi
  # A failure halfway leaves nothing behind.
  trap 'echo "netns-lab: up failed; removing what it made" >&2; down >/dev/null' ERR
  mkdir -p "$DIR" /run/sshd
  touch "$DIR/.netns-lab"
  chmod 700 "$DIR"
  local bin
  bin="${RAFTBENCH_BIN:-$(command -v raftbench || true)}"
  [[ -n $bin ]] || bin="${CARGO_TARGET_DIR:-/var/tmp/raftbench-target}/release/raftbench"

  ssh-keygen -q -t ed25519 -N "" -C "$PREFIX client" -f "$DIR/id_ed25519"
  ssh-keygen -q -t ed25519 -N "" -C "$PREFIX host" -f "$DIR/host_key"
  cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
  chmod 600 "$DIR/authorized_keys"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/cluster.secret"
  echo >>"$DIR/cluster.secret"
  chmod 600 "$DIR/cluster.secret"
  : >"$DIR/known_hosts"

  ip netns add "$HUB"
  ip -n "$HUB" link set lo up
  ip -n "$HUB" link add "$BRIDGE" type bridge
  ip -n "$HUB" addr add "$NET.1/24" dev "$BRIDGE"
  ip -n "$HUB" link set "$BRIDGE" up

  cat >"$DIR/sshd_config" <<EOF
Port 22
HostKey $DIR/host_key
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
PrintMotd no
AcceptEnv RAFTBENCH_*
Subsystem sftp internal-sftp
EOF

  local i ns addr
  for i in $(seq 1 "$n"); do
    ns="$PREFIX-h$i"
    addr="$NET.$((10 + i))"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # The veth's ends are created in the host and moved: the hub end to the hub.
    ip -n "$ns" link add eth0 type veth peer name "h$i" netns "$HUB"
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$HUB" link set "h$i" master "$BRIDGE" up
    mkdir -p "$DIR/h$i"
    ip netns exec "$ns" /usr/sbin/sshd -f "$DIR/sshd_config" \
      -o "ListenAddress=$addr" -o "PidFile=$DIR/h$i/sshd.pid" -E "$DIR/h$i/sshd.log"
    echo "$addr $(cut -d' ' -f1,2 "$DIR/host_key.pub")" >>"$DIR/known_hosts"
  done

  # Every sshd answers before the file is handed out (bounded: 10 s per host).
  for i in $(seq 1 "$n"); do
    addr="$NET.$((10 + i))"
    local ok=""
    for _ in $(seq 1 50); do
      if ip netns exec "$HUB" ssh -q -o BatchMode=yes -o ConnectTimeout=2 \
        -o UserKnownHostsFile="$DIR/known_hosts" -o StrictHostKeyChecking=yes \
        -i "$DIR/id_ed25519" "root@$addr" true 2>/dev/null; then
        ok=1
        break
      fi
      sleep 0.2
    done
    if [[ -z $ok ]]; then
      echo "netns-lab: sshd on h$i ($addr) does not answer: $(tail -3 "$DIR/h$i/sshd.log" 2>/dev/null)" >&2
      down >/dev/null
      exit 1
    fi
  done

  {
    echo "# The lab's cluster file (scripts/netns-lab.sh up $n $nodes): $nodes node hosts and"
    echo "# $((n - nodes)) generator hosts, reached over ssh from namespace $HUB:"
    echo "#   ip netns exec $HUB $bin run WORKLOAD --cluster $DIR/hosts.toml"
    echo "secret_file = \"cluster.secret\""
    echo
    echo "[backend]"
    echo "kind = \"${LAB_BACKEND:-memwal}\""
    for i in $(seq 1 "$n"); do
      addr="$NET.$((10 + i))"
      echo
      echo "[[host]]"
      echo "name = \"h$i\""
      echo "transport = \"ssh\""
      echo "address = \"$addr\""
      echo "user = \"root\""
      echo "identity = \"id_ed25519\""
      echo "known_hosts = \"known_hosts\""
      echo "workdir = \"$DIR/h$i\""
      echo "binary = \"$bin\""
    done
    for i in $(seq 1 "$nodes"); do
      addr="$NET.$((10 + i))"
      echo
      echo "[[node]]"
      echo "id = $i"
      echo "host = \"h$i\""
      echo "peer_addr = \"$addr:7001\""
      echo "client_addr = \"$addr:8001\""
    done
    for i in $(seq $((nodes + 1)) "$n"); do
      echo
      echo "[[generator]]"
      echo "host = \"h$i\""
    done
  } >"$DIR/hosts.toml"
  trap - ERR
  echo "netns-lab: $n hosts up ($nodes node hosts); cluster file $DIR/hosts.toml"
  echo "netns-lab: run the coordinator in the hub: ip netns exec $HUB $bin run WORKLOAD --cluster $DIR/hosts.toml"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) [[ $(id -u) == 0 ]] || die "needs root"; down ;;
  status) status ;;
  *) echo "usage: $0 up N [NODES] | down | status" >&2; exit 2 ;;
esac
