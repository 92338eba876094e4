"""typed-ss's own work per message, in isolation: no WebSocket library, no event-loop wake-up.

    python -m benchmarks.core MESSAGES [--kind echo|call]

serves one connection of the benchmark server (:func:`benchmarks.servers.typed_ss_server`) over an
in-memory transport whose ``receive`` returns the next of ``MESSAGES`` prepared messages at once and
whose ``send`` keeps nothing. What runs per message is typed-ss's path only: take the message, split
the frame, look the handler up, decode the payload, run the handler, its ``emit`` (or the call's
reply), encode the frame, push it to the socket's send path. The orchestrator
(:mod:`benchmarks.run`) runs this twice under callgrind with two counts and divides the difference
of the instruction counts by the difference of the counts: start-up and the connection's life cancel
out, and what remains is the cost of one message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import deque
from collections.abc import Sequence
from typing import Any

from starlette.requests import HTTPConnection

from benchmarks.servers import typed_ss_server
from typed_ss.protocol import Frame
from typed_ss.transport import Disconnected, PendingSend, serve_connection

__all__ = ["MemoryTransport", "messages", "run"]

PAYLOAD = "x" * 64
"""The payload of every message, as in the load generator's echo."""


class MemoryTransport:
    """A :class:`typed_ss.transport.Transport` over prepared messages; what is sent is counted."""

    def __init__(self, incoming: Sequence[str]) -> None:
        scope: dict[str, Any] = {
            "type": "websocket",
            "path": "/socket",
            "raw_path": b"/socket",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
            "scheme": "ws",
        }
        self._request = HTTPConnection(scope)
        self._incoming = deque(incoming)
        self.sent = 0

    @property
    def request(self) -> HTTPConnection:
        return self._request

    @property
    def subprotocols(self) -> Sequence[str]:
        return ("sac-sock",)

    async def accept(self, subprotocol: str | None) -> None:
        pass

    async def refuse(self, status: int) -> None:
        raise AssertionError(f"the benchmark's connection was refused with {status}")

    async def receive(self) -> str | bytes:
        if self._incoming:
            return self._incoming.popleft()
        raise Disconnected(1000)

    def send(self, frame: Frame) -> PendingSend | None:
        self.sent += 1
        return None

    def close(self, code: int, reason: str) -> PendingSend | None:
        raise Disconnected(1006)

    def abort(self) -> bool:
        return True


def messages(kind: str, count: int) -> list[str]:
    """``count`` client frames of ``kind``: echo messages, or calls of ``add`` with ids from 1."""
    if kind == "echo":
        return [f"echo\x02{PAYLOAD}"] * count
    return [f"add\x01c{i}\x02{PAYLOAD}" for i in range(1, count + 1)]


async def run(kind: str, count: int) -> int:
    """Serve one connection of ``count`` messages of ``kind``; returns how many frames were sent."""
    ss = typed_ss_server(None)
    transport = MemoryTransport(messages(kind, count))
    async with ss.lifespan(None):
        await serve_connection(ss, transport)
    return transport.sent


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.core", description=__doc__)
    parser.add_argument("messages", type=int)
    parser.add_argument("--kind", choices=("echo", "call"), default="echo")
    args = parser.parse_args(argv)
    sent = asyncio.run(run(args.kind, args.messages))
    if sent != args.messages + 1:  # every message answered, after __hello
        raise SystemExit(f"sent {sent} frames for {args.messages} messages: the path is broken")
    if os.environ.get("TYPED_SS_CORE_VERBOSE"):
        print(f"{args.kind}: {args.messages} messages, {sent} frames sent")


if __name__ == "__main__":
    main()
