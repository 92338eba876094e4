#!/usr/bin/env bash
# Start a 3-node gRPC multihome mesh on 127.0.0.1 with TLS and a shared key, all generated afresh:
# a throwaway CA and node certificates (examples/grpc_multihome/make_certs.py) and a random key, in
# a temporary directory removed on exit. Ctrl-C (or SIGTERM, or any node dying) stops every process
# this script started, by its PID.
#
#   examples/grpc_multihome/start.sh [HTTP_PORT ...]     # default: 8081 8082 8083
#
# Environment:
#   PYTHON         the interpreter (default: the project's .venv/bin/python, else python3)
#   GRPC_PORTS     the nodes' gRPC ports, space-separated (default: free ports the script picks)
#   MUTUAL=1       mutual TLS: every node must also present a certificate from the CA
#   PID_FILE       if set, "node<i> <pid>" of each started process is written there (removed on exit)
#   READY_TIMEOUT  seconds to wait for each node's /health (default 30)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

ports=("$@")
if ((${#ports[@]} == 0)); then ports=(8081 8082 8083); fi
for port in "${ports[@]}"; do
  if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    echo "start.sh: not a port: $port" >&2
    exit 2
  fi
done
python=${PYTHON:-}
if [[ -z $python ]]; then
  if [[ -x $root/.venv/bin/python ]]; then python=$root/.venv/bin/python; else python=python3; fi
fi
ready_timeout=${READY_TIMEOUT:-30}

pids=()
workdir=""

cleanup() {
  local status=$? pid deadline
  set +e
  trap '' INT TERM
  if ((${#pids[@]} > 0)); then
    echo "stopping: ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null
    deadline=$((SECONDS + 15))
    for pid in "${pids[@]}"; do
      while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    done
  fi
  [[ -n $workdir ]] && rm -rf -- "$workdir"
  [[ -n ${PID_FILE:-} ]] && rm -f -- "$PID_FILE"
  echo "stopped"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

healthy() { # port: /health answers 200 once the node serves and every peer link is up
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" >&3
    IFS= read -r -t 2 status <&3
    [[ $status == "HTTP/1."[01]" 200"* ]]
  ) 2>/dev/null
}

workdir=$(mktemp -d "${TMPDIR:-/tmp}/typed-ss-grpc.XXXXXX")
nodes=()
for i in "${!ports[@]}"; do nodes+=("node$((i + 1))"); done
"$python" -m examples.grpc_multihome.make_certs "$workdir" "${nodes[@]}"
TYPED_SS_MESH_KEY=$("$python" -c 'import secrets; print(secrets.token_hex(32))')
export TYPED_SS_MESH_KEY

if [[ -n ${GRPC_PORTS:-} ]]; then
  read -r -a grpc_ports <<<"$GRPC_PORTS"
else
  # Ports the OS picks; held open together so that they differ, then released for the nodes.
  read -r -a grpc_ports <<<"$("$python" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "${#ports[@]}")"
fi
if ((${#grpc_ports[@]} != ${#ports[@]})); then
  echo "start.sh: GRPC_PORTS needs one port per node" >&2
  exit 2
fi

mutual=()
if [[ ${MUTUAL:-} == 1 ]]; then mutual=(--mutual); fi
: >"${PID_FILE:-/dev/null}"
for i in "${!ports[@]}"; do
  peers=()
  for j in "${!grpc_ports[@]}"; do
    ((i == j)) || peers+=(--peer "localhost@127.0.0.1:${grpc_ports[j]}")
  done
  "$python" -m examples.grpc_multihome.app --port "${ports[i]}" --grpc "127.0.0.1:${grpc_ports[i]}" \
    --name "${nodes[i]}" "${peers[@]}" "${mutual[@]}" \
    --ca "$workdir/ca.pem" --cert "$workdir/${nodes[i]}.pem" --key "$workdir/${nodes[i]}.key" &
  pids+=("$!")
  echo "started ${nodes[i]} (pid $!) on http://127.0.0.1:${ports[i]}, mesh on 127.0.0.1:${grpc_ports[i]}"
  if [[ -n ${PID_FILE:-} ]]; then echo "${nodes[i]} $!" >>"$PID_FILE"; fi
done

for i in "${!ports[@]}"; do
  deadline=$((SECONDS + ready_timeout))
  until healthy "${ports[i]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null || ((SECONDS >= deadline)); then
      echo "start.sh: ${nodes[i]} did not come up on port ${ports[i]}" >&2
      exit 1
    fi
    sleep 0.1
  done
done

echo
echo "gRPC multihome demo: ${#ports[@]} nodes in a full mesh, TLS and a shared key (certificates in $workdir)"
for port in "${ports[@]}"; do
  echo "  http://127.0.0.1:$port/"
done
echo "all nodes are up; press Ctrl-C to stop them"

set +e
wait -n
status=$?
set -e
echo "start.sh: a process this script started has exited (status $status); stopping the others" >&2
exit 1
