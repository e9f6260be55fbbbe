#!/usr/bin/env bash
# A Ray cluster of several nodes on this one machine -- a head and N worker nodes, each its own
# raylet -- to try what a real cluster does (tasks spread over nodes, the Jobs API with token auth)
# without one. Everything binds to 127.0.0.1.
#
#   cluster/local.sh start [--workers N] [--cpus-per-node C] [--port P] [--dashboard-port D]
#   cluster/local.sh stop  [--port P]
#
# start prints what to export to submit to it (RAY_ADDRESS, RAY_AUTH_MODE). Token auth is on: the
# token is RAY_AUTH_TOKEN when set, else Ray's ~/.ray/auth_token (made on first start).
# Jobs run with the python first on PATH here: start it from the environment recog is installed in.
# Nodes inherit this shell's environment, AWS credentials included: that is how this cluster gets
# its "secrets" (on Kubernetes a Secret does it, see k8s/; in the cloud an instance role).
# For a real deployment use k8s/ (KubeRay) or aws.yaml (the Ray cluster launcher) instead.
set -euo pipefail

action=${1:-}
shift || true
workers=1 cpus=1 port=6390 dashboard_port=8266
while [ $# -gt 0 ]; do
  case $1 in
    --workers) workers=$2; shift 2 ;;
    --cpus-per-node) cpus=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --dashboard-port) dashboard_port=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "local.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
# One temp dir per cluster: its processes carry it on their command lines, which is how stop finds
# them without touching other Ray instances on the machine (plain `ray stop` kills every one).
temp_dir=/tmp/recog-ray-$port
export RAY_AUTH_MODE=token

# Each node's agents listen on fixed default ports (52365, ...): two nodes on one machine would
# fight over them and one would lose its job agent. Give every node free ports of its own.
node_ports() {
  python - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
a, g, m, r = (s.getsockname()[1] for s in socks)
print(f"--dashboard-agent-listen-port {a} --dashboard-agent-grpc-port {g} --metrics-export-port {m} --runtime-env-agent-port {r}")
PY
}

# The processes of this cluster: those whose command line names its temp dir (gcs, raylets, the
# dashboard) and all their descendants -- the agents and workers retitle themselves `ray::...`, and
# an agent left behind by its raylet keeps running (one spun at 40 % of a core for good).
cluster_pids() {
  local found all="" p
  found=$(pgrep -f -- "$temp_dir" || true)
  while [ -n "$found" ]; do
    all="$all $found"
    found=$(for p in $found; do pgrep -P "$p" || true; done)
  done
  echo $all
}

# Any of these processes still running (a zombie, ended but not yet reaped, does not count).
alive() { ps -o stat= -p "$(echo "$@" | tr ' ' ,)" 2>/dev/null | grep -qv '^Z'; }

stop() {
  local pids
  pids=$(cluster_pids)
  [ -z "$pids" ] && { echo "no local cluster on port $port"; return 0; }
  kill $pids 2>/dev/null || true
  # GCS, raylets and agents take more than 10 s to act on SIGTERM; a throwaway cluster keeps nothing
  # worth waiting for, so what is left after 3 s is killed.
  for _ in $(seq 15); do alive $pids || break; sleep 0.2; done
  alive $pids && kill -9 $pids 2>/dev/null || true
  echo "stopped the local cluster on port $port"
}

case $action in
  start)
    command -v ray >/dev/null || { echo "local.sh: ray is not on PATH (activate recog's environment: make install; . .venv/bin/activate)" >&2; exit 2; }
    pgrep -f -- "$temp_dir" >/dev/null && { echo "local.sh: a cluster already runs on port $port (local.sh stop --port $port)" >&2; exit 2; }
    ray start --head --node-ip-address 127.0.0.1 --port "$port" --num-cpus "$cpus" --num-gpus 0 \
      --dashboard-host 127.0.0.1 --dashboard-port "$dashboard_port" --temp-dir "$temp_dir" \
      $(node_ports) --disable-usage-stats >"$temp_dir.log" 2>&1 || { cat "$temp_dir.log" >&2; exit 1; }
    for i in $(seq "$workers"); do
      ray start --address "127.0.0.1:$port" --node-ip-address 127.0.0.1 --num-cpus "$cpus" --num-gpus 0 \
        $(node_ports) >>"$temp_dir.log" 2>&1 || { cat "$temp_dir.log" >&2; stop; exit 1; }
    done
    echo "local Ray cluster: head + $workers worker node(s), $cpus CPU each; logs in $temp_dir"
    echo "to submit to it:"
    echo "  export RAY_ADDRESS=http://127.0.0.1:$dashboard_port RAY_AUTH_MODE=token"
    ;;
  stop) stop ;;
  *) echo "usage: cluster/local.sh start|stop [options] (see --help)" >&2; exit 2 ;;
esac
