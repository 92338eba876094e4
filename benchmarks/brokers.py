"""The brokers the multihome scenarios run on, each a process started here and stopped by its PID.

- :func:`redis_server`: one redis-server (the redis, presence and scale scenarios).
- :func:`redis_cluster`: a Redis Cluster, 3 masters and a replica each by default, joined as
  ``redis-cli --cluster create`` joins one (the scale scenario's Redis Cluster).
- :func:`nats_cluster`: nats-server nodes routed to each other (a full mesh of routes), each with its
  monitoring port (``-m``: ``/varz``, ``/connz``, ``/routez``) (the scale scenario's NATS).

Every process listens on 127.0.0.1 only, on ports the OS picked (:func:`free_port`: a port is taken,
released and handed over, so another process may take it meanwhile: a broker that could not start is
started again on other ports), keeps nothing on disk, and is stopped when the block ends (SIGINT, then
SIGKILL), or by the kernel when this process dies first (:func:`die_with_parent`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Node", "die_with_parent", "free_port", "nats_cluster", "redis_cluster", "redis_server", "stop"]

START_TIMEOUT = 20.0
"""Seconds a broker (a cluster: all its nodes, joined) may take to start."""
ATTEMPTS = 3
"""Times a broker is started on fresh ports when a port was taken meanwhile."""
SLOTS = 16384
"""A Redis Cluster's hash slots."""
CLUSTER_NODE_TIMEOUT_MS = 5000
"""Redis Cluster's ``cluster-node-timeout``: long enough that a node busy on a loaded 2-core machine
is never taken for failed (nothing is failed over in a benchmark)."""


@dataclass(frozen=True)
class Node:
    """One broker process: its name in the reports, its role and where it listens."""

    name: str
    """``redis``; ``master-1``, ``replica-1`` (master-1's replica); ``nats-1``."""
    role: str
    """``single``, ``master``, ``replica`` or ``node`` (a NATS cluster node)."""
    port: int
    pid: int
    monitor_port: int = 0
    """A NATS node's monitoring port (0 for Redis)."""

    @property
    def url(self) -> str:
        scheme = "nats" if self.role == "node" else "redis"
        return f"{scheme}://127.0.0.1:{self.port}"


def die_with_parent() -> None:
    """Run in a child before it executes: Linux sends it SIGTERM if this process dies first, so a
    killed run (a stopped test, a Ctrl-C'd make) leaves no server behind."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def stop(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGINT (uvicorn shuts down gracefully, valgrind writes its output), then SIGKILL; by PID."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def free_port() -> int:
    """A port of 127.0.0.1 the OS picked, released for a process that cannot be given port 0."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(f"{name} is not installed: `make bench` installs it")
    return found


def _spawn(command: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )


def _until(
    check: Callable[[], bool], processes: list[subprocess.Popen[bytes]], timeout: float = START_TIMEOUT
) -> bool:
    """Poll ``check()`` until it holds (``True``) or a process exits or ``timeout`` passes (``False``)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            if check():
                return True
        if any(process.poll() is not None for process in processes) or time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# --- Redis ----------------------------------------------------------------------------------------


def _redis(port: int, *command: str) -> bytes:
    """One command, written inline, and the raw answer (a few KiB at most: PING, CLUSTER INFO/NODES)."""
    with socket.create_connection(("127.0.0.1", port), 2) as conn:
        conn.sendall(" ".join(command).encode() + b"\r\n")
        answer = b""
        conn.settimeout(2)
        while True:
            chunk = conn.recv(65536)
            answer += chunk
            if not chunk or _complete(answer):
                return answer


def _complete(answer: bytes) -> bool:
    """Whether a simple or bulk string reply is whole."""
    if answer[:1] != b"$":
        return answer.endswith(b"\r\n")
    header, _, body = answer.partition(b"\r\n")
    return int(header[1:]) < 0 or len(body) >= int(header[1:]) + 2


def _bulk(answer: bytes) -> str:
    return answer.partition(b"\r\n")[2].decode().removesuffix("\r\n")


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, int]]:
    """A redis-server without persistence on a free loopback port; yields its URL and PID."""
    binary = _binary("redis-server")
    for _attempt in range(ATTEMPTS):
        port = free_port()
        process = _spawn(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], workdir
        )
        if _until(functools.partial(_pong, port), [process], 10):
            break
        stop(process)
    else:
        raise RuntimeError("redis-server did not start")
    try:
        yield f"redis://127.0.0.1:{port}/0", process.pid
    finally:
        stop(process)


@contextlib.contextmanager
def _attempts(
    what: str, start: Callable[[int, list[subprocess.Popen[bytes]]], list[Node] | None]
) -> Iterator[list[Node]]:
    """Up to :data:`ATTEMPTS` times ``start(attempt, processes)``, which adds every process it starts
    to ``processes`` and returns the nodes, or ``None`` (a port was taken meanwhile: its processes
    are stopped and it is tried again); yields the nodes, and stops their processes on exit."""
    for attempt in range(ATTEMPTS):
        processes: list[subprocess.Popen[bytes]] = []
        try:
            nodes = start(attempt, processes)
            if nodes is not None:
                break
        except BaseException:
            for process in processes:
                stop(process)
            raise
        for process in processes:
            stop(process)
    else:
        raise RuntimeError(f"{what} did not start")
    try:
        yield nodes
    finally:
        for process in processes:
            stop(process)


@contextlib.contextmanager
def redis_cluster(workdir: Path, masters: int = 3, replicas: int = 1) -> Iterator[list[Node]]:
    """A Redis Cluster of ``masters`` masters with ``replicas`` replicas each, every node a
    redis-server without persistence on free loopback ports (its client port and its cluster bus
    port), joined as ``redis-cli --cluster create`` joins one; yields the nodes once every node sees every
    slot served and every replica attached: masters first, by their first slot (``master-1`` serves
    slot 0), then the replicas (``replica-1`` is ``master-1``'s)."""
    with _attempts(
        "the Redis Cluster",
        lambda attempt, processes: _start_redis_cluster(
            workdir / f"redis-cluster-{attempt}", masters, replicas, processes
        ),
    ) as nodes:
        yield nodes


def _start_redis_cluster(
    workdir: Path, masters: int, replicas: int, processes: list[subprocess.Popen[bytes]]
) -> list[Node] | None:
    """One attempt at :func:`redis_cluster`: its nodes, or ``None`` (a port was taken meanwhile, or
    the cluster did not form); every process started is added to ``processes``."""
    count = masters * (1 + replicas)
    ports = [free_port() for _ in range(2 * count)]
    for port, bus in zip(ports[:count], ports[count:], strict=True):
        directory = workdir / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        command = [_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(directory), "--cluster-enabled", "yes"]
        command += ["--cluster-port", str(bus), "--cluster-config-file", str(directory / "nodes.conf")]
        command += ["--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS)]
        processes.append(_spawn(command, workdir))
    clients, buses = ports[:count], ports[count:]
    if not all(_until(functools.partial(_pong, port), processes, 10) for port in clients):
        return None
    # What `redis-cli --cluster create` does, without its pauses of a second: the slots split evenly
    # over the masters, every node meets the first, then each replica follows its master.
    ids = [_bulk(_redis(port, "CLUSTER", "MYID")) for port in clients]
    for index, port in enumerate(clients[:masters]):
        first, last = index * SLOTS // masters, (index + 1) * SLOTS // masters - 1
        if not _redis(port, "CLUSTER", "ADDSLOTSRANGE", str(first), str(last)).startswith(b"+OK"):
            return None
        _redis(port, "CLUSTER", "SET-CONFIG-EPOCH", str(index + 1))
    for port in clients[1:]:
        _redis(port, "CLUSTER", "MEET", "127.0.0.1", str(clients[0]), str(buses[0]))

    def met() -> bool:
        """Every node knows every other, by a working link."""
        for port in clients:
            lines = _bulk(_redis(port, "CLUSTER", "NODES")).splitlines()
            if len(lines) != count or any("handshake" in line or "disconnected" in line for line in lines):
                return False
        return True

    if not _until(met, processes):
        return None
    for index, port in enumerate(clients[masters:]):
        if not _redis(port, "CLUSTER", "REPLICATE", ids[index % masters]).startswith(b"+OK"):
            return None
    nodes: list[Node] = []

    def joined() -> bool:
        """Every node sees the same cluster, every node settled in its role, and says it is ``ok``."""
        views = [_cluster_nodes(port, processes) for port in clients]
        if any(len(view) != count for view in views) or any(view != views[0] for view in views):
            return False
        nodes[:] = views[0]
        return all("cluster_state:ok" in _bulk(_redis(port, "CLUSTER", "INFO")) for port in clients)

    return nodes if _until(joined, processes) else None


def _pong(port: int) -> bool:
    return _redis(port, "PING").startswith(b"+PONG")


def _cluster_nodes(port: int, processes: list[subprocess.Popen[bytes]]) -> list[Node]:
    """The cluster as the node on ``port`` sees it, named (see :func:`redis_cluster`); only nodes
    whose role is settled (a master with slots, a replica with its master)."""
    pids = {_port_of(process): process.pid for process in processes}
    masters: list[tuple[int, str, int]] = []  # first slot, id, port
    replicas: dict[str, int] = {}  # master id -> replica port
    for line in _bulk(_redis(port, "CLUSTER", "NODES")).splitlines():
        fields = line.split()
        if len(fields) < 8 or "fail" in fields[2] or fields[7] != "connected":
            continue
        node_id, node_port = fields[0], int(fields[1].split("@")[0].rsplit(":", 1)[1])
        if "master" in fields[2] and len(fields) > 8:
            masters.append((int(fields[8].split("-")[0]), node_id, node_port))
        elif "slave" in fields[2] and fields[3] != "-":
            replicas[fields[3]] = node_port
    masters.sort()
    nodes = [Node(f"master-{i}", "master", p, pids.get(p, 0)) for i, (_, _, p) in enumerate(masters, 1)]
    for i, (_, node_id, _) in enumerate(masters, 1):
        if node_id in replicas:
            nodes.append(Node(f"replica-{i}", "replica", replicas[node_id], pids.get(replicas[node_id], 0)))
    return nodes


def _port_of(process: subprocess.Popen[bytes]) -> int:
    args = list(process.args) if isinstance(process.args, list | tuple) else []
    return int(args[args.index("--port") + 1])


# --- NATS -----------------------------------------------------------------------------------------


def monitor(port: int, path: str) -> dict[str, Any]:
    """A NATS monitoring endpoint's JSON (``varz``, ``connz?subs=1``, ``routez``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


@contextlib.contextmanager
def nats_cluster(workdir: Path, size: int = 3) -> Iterator[list[Node]]:
    """``size`` nats-server nodes (``nats-1``...) routed to each other, each with a client, a cluster
    and a monitoring port; yields them once every node has a route to every other."""
    with _attempts(
        "the nats-server cluster",
        lambda attempt, processes: _start_nats_cluster(workdir, f"{attempt}", size, processes),
    ) as nodes:
        yield nodes


def _start_nats_cluster(
    workdir: Path, attempt: str, size: int, processes: list[subprocess.Popen[bytes]]
) -> list[Node] | None:
    """One attempt at :func:`nats_cluster`: its nodes, or ``None`` (a port was taken meanwhile);
    every process started is added to ``processes``."""
    cluster = f"bench-{secrets.token_hex(4)}"
    ports = [[free_port() for _ in range(3)] for _ in range(size)]  # client, cluster, monitoring
    names = [f"nats-{i}-{secrets.token_hex(4)}" for i in range(1, size + 1)]
    for i, (port, route, monitoring) in enumerate(ports):
        routes = ",".join(f"nats://127.0.0.1:{other[1]}" for other in ports if other is not ports[i])
        command = [_binary("nats-server"), "-a", "127.0.0.1", "-p", str(port), "-m", str(monitoring)]
        command += ["--server_name", names[i], "--cluster", f"nats://127.0.0.1:{route}"]
        command += ["--cluster_name", cluster, "--routes", routes]
        command += ["-l", str(workdir / f"nats-{attempt}-{i + 1}.log")]
        processes.append(_spawn(command, workdir))

    def routed() -> bool:
        for (_, _, monitoring), name in zip(ports, names, strict=True):
            if monitor(monitoring, "varz").get("server_name") != name:
                return False  # not ours: it could not bind its port, and another process has it
            routes = monitor(monitoring, "routez").get("routes") or []
            if len({route.get("remote_id") for route in routes}) != size - 1:
                return False
        return True

    if not _until(routed, processes):
        return None
    return [
        Node(f"nats-{i}", "node", port, process.pid, monitoring)
        for i, ((port, _, monitoring), process) in enumerate(zip(ports, processes, strict=True), 1)
    ]
