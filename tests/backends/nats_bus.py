"""NATS as a conformance bus: backends on one real nats-server of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.backends.nats_server import NatsServer
from typed_ss.backends import Backend
from typed_ss.backends.nats import NatsBackend

__all__ = ["NatsBus", "nats_bus"]


class NatsBus:
    name = "nats"

    def __init__(self, server: NatsServer, group: str = "conformance") -> None:
        self.server = server
        self.group = group

    def backends(self, count: int) -> list[Backend]:
        return [NatsBackend(self.server.url, group=self.group) for _ in range(count)]

    async def subscribers(self, topic: str) -> int:
        """How many client connections the server routes ``topic``'s subject to (its monitoring's
        ``/connz?subs=1``)."""
        subject = NatsBackend(self.server.url, group=self.group).subject(topic)
        return await self.server.interest(subject)


@asynccontextmanager
async def nats_bus(tmp_path: Path) -> AsyncIterator[NatsBus]:
    """A nats-server on free ports for the test, killed (by its PID) afterwards."""
    server = NatsServer(tmp_path / "nats")
    await server.start()
    try:
        yield NatsBus(server)
    finally:
        await server.kill()
