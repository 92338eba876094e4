"""A TCP proxy on 127.0.0.1 that can silently starve or cut its connections, for fault tests.

``starve()`` stops forwarding bytes from the server to the clients on every connection open at that
moment, while keeping those connections open: the client sees a healthy socket on which nothing
arrives. ``cut()`` drops every connection open at that moment, both sides at once and without a
WebSocket close (a network that failed): what was in flight is lost. Connections made afterwards work
normally, unless ``refuse()`` was called: from then until ``admit()``, each new connection is dropped
as soon as it is made (``cut()`` and ``refuse()`` together: a network that stays down).
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["FaultProxy"]


class _Link:
    def __init__(self) -> None:
        self.starved = False
        self.tasks: list[asyncio.Task[None]] = []
        self.writers: list[asyncio.StreamWriter] = []


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: list[_Link] = []
        self.refusing = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def starve(self) -> None:
        for link in self._links:
            link.starved = True

    def cut(self) -> int:
        """Drop every open connection, both sides (TCP reset, nothing more forwarded); returns how
        many were dropped."""
        links, self._links = self._links, []
        for link in links:
            for task in link.tasks:
                task.cancel()
            for writer in link.writers:
                writer.transport.abort()
        return len(links)

    def refuse(self) -> None:
        """Drop each new connection as soon as it is made, until :meth:`admit`."""
        self.refusing = True

    def admit(self) -> None:
        """Forward new connections again."""
        self.refusing = False

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for link in self._links:
            for task in link.tasks:
                task.cancel()
            for writer in link.writers:
                writer.close()
            await asyncio.gather(*link.tasks, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            client_writer.transport.abort()
            return
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        link = _Link()
        link.writers = [client_writer, server_writer]
        link.tasks = [
            asyncio.create_task(self._pump(client_reader, server_writer, link, upstream=True)),
            asyncio.create_task(self._pump(server_reader, client_writer, link, upstream=False)),
        ]
        self._links.append(link)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link, *, upstream: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if upstream or not link.starved:
                    writer.write(data)
                    await writer.drain()
        writer.close()
