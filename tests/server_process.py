"""A typed-ss server in a process of its own (``python -m tests.serve``), measured from outside: its
resident memory and open file descriptors, read from /proc."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ServerProcess", "server_process"]


@dataclass
class ServerProcess:
    """A running server process and how to measure it."""

    process: asyncio.subprocess.Process
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def rss(self) -> int:
        """Resident memory, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def fds(self) -> int:
        """Open file descriptors."""
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def sockets(self) -> int:
        """Open sockets (listening, connected, or anything else the process holds)."""
        count = 0
        for fd in os.listdir(f"/proc/{self.process.pid}/fd"):
            try:
                if os.readlink(f"/proc/{self.process.pid}/fd/{fd}").startswith("socket:"):
                    count += 1
            except FileNotFoundError:
                pass  # closed while listing
        return count


@asynccontextmanager
async def server_process(app: str, *settings: str) -> AsyncIterator[ServerProcess]:
    """Start ``python -m tests.serve app --set ...`` and stop it by its PID on exit."""
    args = [arg for setting in settings for arg in ("--set", setting)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.serve",
        app,
        *args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("PORT "), line
        yield ServerProcess(process, int(line.split()[1]))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()
