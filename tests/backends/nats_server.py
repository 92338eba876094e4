"""Real nats-server processes for the tests: one server, or a cluster of them, on free loopback ports,
each killed by its PID.

A server listens on 127.0.0.1 only (``-a``), on a client port and a monitoring port (``-m``) from
:func:`tests.support.free_ports` (never a fixed port), and on a cluster port too when it is a cluster
node. It can be killed (SIGKILL, as a crash) and started again on the same ports. Every start gives
the process a server name of its own (random), and the start waits until both the client port (the
``INFO`` line a client is sent first) and the monitoring port (``/varz``) answer with that name: a
process that could not bind a port (another test's took it meanwhile) exits, and whatever answers
there then is not taken for ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.support import eventually, free_ports

__all__ = ["MAX_PAYLOAD", "NatsCluster", "NatsServer"]

MAX_PAYLOAD = 4 * 1024 * 1024
"""The servers' ``max_payload``: NATS's default (1 MB) is below typed-ss's largest envelope (a
1 MiB message plus its envelope), and the conformance suite publishes a 2 MiB one."""


def _binary() -> str:
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    if binary is None:
        raise RuntimeError("nats-server is not installed: run `make test` (it installs it)")
    return binary


class NatsServer:
    """One nats-server on 127.0.0.1.

    ``options``: more ``nats-server`` arguments (``--user``, ``--tls``, ...); ``config``: more lines of
    its configuration file (an ``authorization`` block). ``cluster``: whether it
    is a cluster node (it then gets a cluster port, and :attr:`routes` lists the other nodes' route
    URLs); ``cluster_name`` names the cluster.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        options: Sequence[str] = (),
        cluster: bool = False,
        cluster_name: str = "",
        label: str = "nats",
        config: str = "",
    ) -> None:
        self.binary = _binary()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.options = list(options)
        self.config = config
        self.cluster = cluster
        self.cluster_name = cluster_name
        self.label = label
        self.port = 0
        self.monitor_port = 0
        self.cluster_port = 0
        self.routes: list[str] = []
        self.server_name = ""
        self.server_id = ""
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def route_url(self) -> str:
        return f"nats://127.0.0.1:{self.cluster_port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def pick_ports(self) -> None:
        """Take free ports for the client connections, the monitoring and (a cluster node) the routes."""
        ports = free_ports(3 if self.cluster else 2)
        self.port, self.monitor_port = ports[0], ports[1]
        self.cluster_port = ports[2] if self.cluster else 0

    async def start(self) -> None:
        """Start (or start again, on the same ports once it has them) and wait until it answers on
        both its client and its monitoring port as itself. A first start that fails (a port taken
        meanwhile) picks other ports and tries again; a restart on its ports fails loudly."""
        restart = bool(self.port)
        for _attempt in range(5):
            if not restart:
                self.pick_ports()
            try:
                if await self.launch() and await self.ready():
                    return
            except BaseException:
                await self.kill()  # nothing left running when the start fails
                raise
            await self.kill()
            if restart or self.cluster:
                break  # a cluster's nodes know each other's ports: the cluster picks again
        raise RuntimeError(f"nats-server {self.label} did not start on port {self.port}")

    async def launch(self) -> bool:
        """Start the process on the ports it has; whether it is running."""
        self.server_name = f"{self.label}-{secrets.token_hex(6)}"
        config = self.workdir / f"{self.label}.conf"
        config.write_text(f"max_payload: {MAX_PAYLOAD}\n{self.config}\n")
        arguments = [
            "-c",
            str(config),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
            "--server_name",
            self.server_name,
            "-l",
            str(self.workdir / f"{self.label}.log"),
        ]
        if self.cluster:
            arguments += ["--cluster", self.route_url, "--cluster_name", self.cluster_name]
            if self.routes:
                arguments += ["--routes", ",".join(self.routes)]
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            *arguments,
            *self.options,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self.process.returncode is None

    async def ready(self) -> bool:
        """Whether this process answers on its client and monitoring ports (checked by its name)."""
        process = self.process
        assert process is not None
        answered: list[bool] = []

        async def settled() -> bool:
            """It exited (it could not bind a port), or both ports answer."""
            if process.returncode is not None:
                return True
            try:
                info = await self.info()
                varz = await self.monitor("varz")
            except (OSError, httpx.HTTPError, ValueError, asyncio.IncompleteReadError):
                return False
            answered.append(info.get("server_name") == varz.get("server_name") == self.server_name)
            self.server_id = str(info.get("server_id"))
            return True

        try:
            await eventually(settled, within=10, interval=0.02)
        except AssertionError:
            return False
        return process.returncode is None and answered == [True]

    async def info(self) -> dict[str, Any]:
        """The ``INFO`` a client is sent when it connects to the client port (in plain text, even with
        TLS required)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            async with asyncio.timeout(5):
                line = await reader.readuntil(b"\r\n")
        finally:
            writer.close()
            await writer.wait_closed()
        op, _, body = line.partition(b" ")
        if op != b"INFO":
            raise ValueError(f"not a NATS server: {line!r}")
        info: dict[str, Any] = json.loads(body)
        return info

    async def monitor(self, path: str, **params: str | int) -> dict[str, Any]:
        """A monitoring endpoint's JSON (``varz``, ``connz``, ``subsz``, ``routez``)."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"http://127.0.0.1:{self.monitor_port}/{path}", params=params)
            response.raise_for_status()
            answer: dict[str, Any] = response.json()
            return answer

    async def interest(self, subject: str) -> int:
        """How many client connections of this server subscribe to ``subject`` exactly."""
        connz = await self.monitor("connz", subs=1, limit=100_000)
        return sum(subject in (conn.get("subscriptions_list") or []) for conn in connz["connections"])

    async def pause(self) -> None:
        """SIGSTOP the server (by its PID), and wait until every thread of it is stopped: the signal
        is delivered asynchronously, and a thread running on another core would answer meanwhile."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")

        def stopped() -> bool:
            states = []
            for stat in tasks.glob("*/stat"):
                with contextlib.suppress(OSError):
                    states.append(stat.read_text().rpartition(")")[2].split()[0])
            return bool(states) and all(state in ("T", "t") for state in states)

        await eventually(stopped, within=10, interval=0.005)

    def resume(self) -> None:
        """SIGCONT the server (by its PID)."""
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL the server (by its PID), as a crash would."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), 10)
        self.process = None


class NatsCluster:
    """``size`` nats-server nodes routed to each other (a full mesh of routes), on 127.0.0.1."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        name = f"typed-ss-{secrets.token_hex(4)}"
        self.nodes = [
            NatsServer(workdir / f"node{i}", cluster=True, cluster_name=name, label=f"node{i}")
            for i in range(size)
        ]

    def urls(self, first: int) -> list[str]:
        """Every node's client URL, node ``first``'s before the others (a client given them in this
        order without randomization connects to that node first)."""
        own = self.nodes[first]
        return [own.url, *(node.url for node in self.nodes if node is not own)]

    async def start(self) -> None:
        """Start every node and wait until each one has a route to every other."""
        for _attempt in range(5):
            for node in self.nodes:
                node.pick_ports()
            for node in self.nodes:
                node.routes = [other.route_url for other in self.nodes if other is not node]
            try:
                started = [await node.launch() and await node.ready() for node in self.nodes]
                if all(started) and await self.routed():
                    return
            except BaseException:
                await self.kill()  # nothing left running when the start fails
                raise
            await self.kill()
        raise RuntimeError("the nats-server cluster did not start")

    async def routed(self) -> bool:
        """Wait until every running node has a route to every other running node; whether they do
        (not: a node exited, such as one that could not bind its cluster port)."""
        running = [node for node in self.nodes if node.process is not None]

        def exited() -> bool:
            return any(node.process is None or node.process.returncode is not None for node in running)

        async def meshed() -> bool:
            if exited():
                return True
            for node in running:
                routez = await node.monitor("routez")
                peers = {route.get("remote_id") for route in routez.get("routes") or []}
                if peers != {other.server_id for other in running if other is not node}:
                    return False
            return True

        await eventually(meshed, within=20, interval=0.05)
        return not exited()

    async def kill(self) -> None:
        for node in self.nodes:
            await node.kill()
