"""A real redis-server process for the tests: started on a free loopback port, killed by its PID."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import redis.asyncio as aioredis

__all__ = ["RedisServer"]


def _free_port() -> int:
    # redis-server cannot be given port 0, so ask the OS for a free port and hand it over; start()
    # retries with another port if something took it in between.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server, without persistence, on 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test` (it installs it)")
        self.binary = binary
        self.workdir = workdir
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start (or restart, on the same port once it has one) and wait until it answers PING."""
        for _attempt in range(5):
            if not self.port:
                self.port = _free_port()
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
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if await self._ready():
                return
            await self.kill()
        raise RuntimeError("redis-server did not start")

    async def _ready(self) -> bool:
        client = aioredis.Redis.from_url(self.url)
        try:
            for _ in range(200):
                if self.process is None or self.process.returncode is not None:
                    return False
                try:
                    if await client.ping():
                        return True
                except (OSError, aioredis.ConnectionError):
                    await asyncio.sleep(0.02)
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
