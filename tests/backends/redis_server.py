"""A real redis-server process for the tests: started on a free loopback port, killed by its PID."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis

from tests.support import eventually, free_port

__all__ = ["RedisServer"]


class RedisServer:
    """One redis-server, without persistence, on 127.0.0.1.

    ``port``: the port to use (0: pick a free one at the first start); ``options``: more
    ``redis-server`` arguments (a cluster node's); ``password``: required of clients (``url`` has it).
    """

    def __init__(
        self, workdir: Path, *, port: int = 0, options: Sequence[str] = (), password: str | None = None
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test` (it installs it)")
        self.binary = binary
        self.workdir = workdir
        self.port = port
        self.options = list(options)
        self.password = password
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        secret = f":{self.password}@" if self.password else ""
        return f"redis://{secret}127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start (or restart, on the same port once it has one) and wait until it answers PING.

        redis-server cannot be given port 0: a first start picks a free port
        (:func:`tests.support.free_port`) and, should another process take it meanwhile, another one.
        """
        restart = bool(self.port)
        for _attempt in range(5):
            if not restart:
                self.port = free_port()
            self.process = await asyncio.create_subprocess_exec(
                *[
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                    *(["--requirepass", self.password] if self.password else []),
                    *self.options,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if await self._ready():
                return
            await self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    async def _ready(self) -> bool:
        """Whether this process answers on the port: the redis-server there must report this
        process's PID (on a port another process took meanwhile, it is another test's server)."""
        process = self.process
        assert process is not None
        client = aioredis.Redis.from_url(self.url)

        async def settled() -> bool:
            """It exited (it could not bind the port), or something answers on the port."""
            if process.returncode is not None:
                return True
            try:
                return bool(await client.ping())
            except (OSError, aioredis.ConnectionError):
                return False

        try:
            await eventually(settled, within=10, interval=0.02)
            if process.returncode is not None:
                return False
            info = await client.info("server")
            return bool(info.get("process_id") == process.pid)
        except (AssertionError, OSError, aioredis.RedisError):
            return False
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL the server (by its PID), as a crash would."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), 10)
        self.process = None

    def client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.url)
