"""What a backend's ``messages()`` yields, collected as it arrives, for the backend-level tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.support import eventually
from typed_ss.backends import Backend

__all__ = ["Message", "Receiver", "receiving"]

Message = tuple[str, bytes]


class Receiver:
    """Collects what one backend's ``messages()`` yields, until its stream ends."""

    def __init__(self, backend: Backend) -> None:
        self.received: list[Message] = []
        self.ended = False
        self._task = asyncio.create_task(self._collect(backend))

    async def _collect(self, backend: Backend) -> None:
        async for message in backend.messages():
            self.received.append(message)
        self.ended = True

    async def until(self, message: Message) -> list[Message]:
        """Everything received up to and including ``message``, once it has arrived."""
        await eventually(lambda: message in self.received, interval=0.002)
        return self.received[: self.received.index(message) + 1]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        failure = None if self._task.cancelled() else self._task.exception()
        if failure is not None:
            raise failure


@contextlib.asynccontextmanager
async def receiving(backend: Backend) -> AsyncIterator[Receiver]:
    receiver = Receiver(backend)
    try:
        yield receiver
    finally:
        await receiver.close()
