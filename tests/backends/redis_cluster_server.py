"""A real Redis Cluster for the tests: 3 masters and 3 replicas, each a redis-server process on free
loopback ports, joined by ``redis-cli --cluster create``; killed by their PIDs.

Every node gets its client port and its cluster bus port from :func:`tests.support.free_ports`
(``--cluster-port``: the default, port + 10000, could land anywhere). ``cluster-node-timeout`` is
short (1 s), so that a killed master's replica takes over within a few seconds.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from tests.backends.redis_server import RedisServer
from tests.support import eventually, free_ports

__all__ = ["ClusterNode", "RedisClusterServer"]

NODE_TIMEOUT_MS = 1000


@dataclass
class ClusterNode:
    """One node as the cluster sees it: its id, its port and, for a replica, its master's id."""

    id: str
    port: int
    master: str | None
    slots: list[tuple[int, int]]


class RedisClusterServer:
    """``masters`` masters, each with ``replicas_per_master`` replicas, on 127.0.0.1; ``password``:
    every node requires it (``requirepass``, and ``masterauth`` for the replicas)."""

    def __init__(
        self, workdir: Path, *, masters: int = 3, replicas_per_master: int = 1, password: str | None = None
    ) -> None:
        if shutil.which("redis-cli") is None:
            raise RuntimeError("redis-cli is not installed: run `make test` (it installs redis-server)")
        self.workdir = workdir
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.password = password
        self.servers: list[RedisServer] = []

    @property
    def urls(self) -> list[str]:
        """Every node's URL (a client needs one to find the others)."""
        return [server.url for server in self.servers]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def server(self, port: int) -> RedisServer:
        """The process serving on ``port``."""
        return next(server for server in self.servers if server.port == port)

    async def start(self) -> None:
        """Start every node, join them into a cluster and wait until every node reports it ``ok``
        with every slot assigned. Tries new ports when a port was taken meanwhile."""
        for _attempt in range(3):
            if await self._start_nodes():
                break
            await self.kill()
        else:
            raise RuntimeError("the Redis Cluster's nodes did not start")
        addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
        await self._redis_cli(
            "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas_per_master),
            "--cluster-yes",
        )  # fmt: skip
        await eventually(self._converged, within=30, interval=0.1)

    async def _start_nodes(self) -> bool:
        count = self.masters * (1 + self.replicas_per_master)
        ports = free_ports(2 * count)
        self.servers = []
        for port, bus_port in zip(ports[:count], ports[count:], strict=True):
            directory = self.workdir / f"redis-cluster-{port}"
            directory.mkdir(parents=True, exist_ok=True)
            server = RedisServer(
                directory,
                port=port,
                options=[
                    "--cluster-enabled", "yes",
                    "--cluster-port", str(bus_port),
                    "--cluster-config-file", str(directory / "nodes.conf"),
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    # A replica takes over however long it was cut off from its master.
                    "--cluster-replica-validity-factor", "0",
                    *(["--masterauth", self.password] if self.password else []),
                ],
                password=self.password,
            )  # fmt: skip
            self.servers.append(server)
            try:
                await server.start()
            except RuntimeError:
                return False
        return True

    async def _converged(self) -> bool:
        """Every live node says the cluster is ``ok`` and knows every other live node."""
        live = [server for server in self.servers if server.process is not None]
        for server in live:
            client = server.client()
            try:
                info = await client.cluster("info")
                known = await client.cluster("nodes")
            except (OSError, aioredis.RedisError):
                return False
            finally:
                await client.aclose()
            if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_assigned", 0)) != 16384:
                return False
            connected = [
                node for node in known.values() if node.get("connected") and "fail" not in node["flags"]
            ]
            if len(connected) < len(live):
                return False
        return True

    async def nodes(self) -> list[ClusterNode]:
        """The cluster as a live node sees it (failed nodes left out)."""
        for server in self.servers:
            if server.process is None:
                continue
            client = server.client()
            try:
                known = await client.cluster("nodes")
            finally:
                await client.aclose()
            nodes = []
            for address, node in known.items():
                if "fail" in node["flags"] or not node.get("connected"):
                    continue
                master = node["master_id"] if node["master_id"] != "-" else None
                slots = [(int(first), int(last)) for first, last in node["slots"]]
                nodes.append(
                    ClusterNode(node["node_id"], int(address.split(":")[1].split("@")[0]), master, slots)
                )
            return nodes
        raise RuntimeError("no node of the cluster is running")

    async def masters_now(self) -> list[ClusterNode]:
        return [node for node in await self.nodes() if node.master is None and node.slots]

    async def master_of(self, key: str) -> ClusterNode:
        """The master serving ``key``'s slot now."""
        client = RedisCluster.from_url(self.url)
        try:
            slot = client.keyslot(key)
        finally:
            await client.aclose()
        for node in await self.masters_now():
            if any(first <= slot <= last for first, last in node.slots):
                return node
        raise RuntimeError(f"no master serves slot {slot}")

    async def kill_master(self, port: int) -> None:
        """SIGKILL the master on ``port`` and wait until its replica took over its slots."""
        await self.server(port).kill()
        await eventually(self._converged, within=30, interval=0.1)

    async def move_all_slots(self, source: ClusterNode, target: ClusterNode) -> None:
        """Reshard: every slot of ``source`` moves to ``target`` (``redis-cli --cluster reshard``)."""
        count = sum(last - first + 1 for first, last in source.slots)
        await self._redis_cli(
            "--cluster", "reshard", f"127.0.0.1:{target.port}",
            "--cluster-from", source.id, "--cluster-to", target.id,
            "--cluster-slots", str(count), "--cluster-yes",
        )  # fmt: skip
        await eventually(self._converged, within=30, interval=0.1)

    async def _redis_cli(self, *args: str) -> None:
        secret = ["-a", self.password, "--no-auth-warning"] if self.password else []
        process = await asyncio.create_subprocess_exec(
            "redis-cli", *secret, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(process.communicate(), 120)
        if process.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)} failed: {output.decode(errors='replace')}")

    async def kill(self) -> None:
        """SIGKILL every node (by its PID)."""
        for server in self.servers:
            await server.kill()
