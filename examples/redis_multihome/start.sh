#!/usr/bin/env bash
# Start a throwaway redis-server and three instances of the Redis multihome demo, all on 127.0.0.1;
# Ctrl-C (or SIGTERM, or any instance dying) stops every process this script started, by its PID.
#
#   examples/redis_multihome/start.sh [PORT ...]       # default: 8081 8082 8083
#
# Environment:
#   PYTHON       the interpreter (default: the project's .venv/bin/python, else python3)
#   REDIS_PORT   Redis's port (default: a free port the script picks)
#   PID_FILE     if set, "<name> <pid>" of each started process is written there (removed on exit)
#   READY_TIMEOUT  seconds to wait for Redis and for each instance (default 30)
#
# Redis runs without persistence (--save '' --appendonly no) in a temporary directory, removed on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

ports=("$@")
if ((${#ports[@]} == 0)); then
  ports=(8081 8082 8083)
fi
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
if ! command -v redis-server >/dev/null; then
  echo "start.sh: redis-server is not installed (Debian: apt-get install redis-server)" >&2
  exit 1
fi
ready_timeout=${READY_TIMEOUT:-30}

pids=()  # every process this script started, in start order
names=()
workdir=""

# --- stopping ----------------------------------------------------------------------------------

# Waits until none of the given PIDs is alive, for at most $1 seconds; returns 1 on timeout.
wait_gone() {
  local deadline=$((SECONDS + $1)) pid alive
  shift
  while :; do
    alive=0
    for pid in "$@"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    ((alive)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# Stops the given PIDs: SIGTERM, up to $1 seconds' grace, then SIGKILL; reaps them.
stop_pids() {
  local grace=$1 pid
  shift
  (($# > 0)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  if ! wait_gone "$grace" "$@"; then
    echo "start.sh: still running after ${grace} s, killing: $*" >&2
    kill -KILL "$@" 2>/dev/null || true
  fi
  for pid in "$@"; do
    wait "$pid" 2>/dev/null || true
  done
}

cleanup() {
  local status=$? i
  set +e
  trap '' INT TERM  # a second Ctrl-C must not cut the clean-up short; it is bounded anyway
  if ((${#pids[@]} > 0)); then
    echo "stopping: ${pids[*]}"
    # The instances first (uvicorn closes their sockets; up to 10 s), then Redis.
    local instances=()
    for i in "${!pids[@]}"; do
      [[ ${names[i]} == redis-server ]] || instances+=("${pids[i]}")
    done
    stop_pids 15 "${instances[@]}"
    for i in "${!pids[@]}"; do
      [[ ${names[i]} == redis-server ]] && stop_pids 5 "${pids[i]}"
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

# --- starting ----------------------------------------------------------------------------------

started() { # name pid what
  pids+=("$2")
  names+=("$1")
  echo "started $1 (pid $2) $3"
  if [[ -n ${PID_FILE:-} ]]; then echo "$1 $2" >>"$PID_FILE"; fi
}

# A free loopback port: redis-server cannot be given port 0.
free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

redis_answers() { # port
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3
    [[ $reply == +PONG* ]]
  ) 2>/dev/null
}

instance_healthy() { # port: /health answers 200 once the instance's Redis subscriber is connected
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" >&3
    IFS= read -r -t 2 status <&3
    [[ $status == "HTTP/1."[01]" 200"* ]]
  ) 2>/dev/null
}

# Polls "$2 $3" until it succeeds; fails if pid $1 dies or after $ready_timeout seconds.
wait_until() {
  local pid=$1 deadline=$((SECONDS + ready_timeout))
  shift
  until "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "start.sh: not ready within ${ready_timeout} s: $*" >&2
      return 1
    fi
    sleep 0.1
  done
}

: >"${PID_FILE:-/dev/null}"
workdir=$(mktemp -d "${TMPDIR:-/tmp}/typed-ss-redis.XXXXXX")

redis_port=${REDIS_PORT:-$(free_port)}
# In a session of its own, so that the terminal's Ctrl-C does not reach Redis before the instances have
# stopped (they get it too, and shut down on their own). setsid execs in place here: this shell's
# background children lead no process group, so $! is redis-server's PID.
detach=()
if command -v setsid >/dev/null; then detach=(setsid); fi
"${detach[@]}" redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$workdir" --logfile "$workdir/redis.log" --daemonize no &
started redis-server $! "on 127.0.0.1:$redis_port"
if ! wait_until "${pids[0]}" redis_answers "$redis_port"; then
  echo "start.sh: redis-server did not start on port $redis_port; its log:" >&2
  tail -n 20 "$workdir/redis.log" >&2 || true
  exit 1
fi
redis_url="redis://127.0.0.1:$redis_port/0"

for port in "${ports[@]}"; do
  "$python" -m examples.redis_multihome.app --port "$port" --redis "$redis_url" &
  started instance $! "on http://127.0.0.1:$port"
done
for i in "${!ports[@]}"; do
  if ! wait_until "${pids[i + 1]}" instance_healthy "${ports[i]}"; then
    echo "start.sh: the instance on port ${ports[i]} did not come up" >&2
    exit 1
  fi
done

echo
echo "Redis multihome demo: ${#ports[@]} instances sharing redis://127.0.0.1:$redis_port"
for port in "${ports[@]}"; do
  echo "  http://127.0.0.1:$port/"
done
echo "all instances are up; press Ctrl-C to stop them"

# Until a signal arrives (the traps exit) or one of the processes ends (then stop the others).
set +e
wait -n
status=$?
set -e
echo "start.sh: a process this script started has exited (status $status); stopping the others" >&2
exit 1
