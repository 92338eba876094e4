"""The server the resource tests start in a process of their own (``tests.serve tests.resource_app:ss``).

Small limits, so that the bounds are reached quickly: a 1 s handshake timeout, a 256 KiB send queue
and a 2 s send deadline.
"""

from __future__ import annotations

from typed_ss import Server, Socket

KiB = 1024

ss = Server(handshake_timeout=1.0, send_queue_bytes=256 * KiB, send_timeout=2.0, max_connections=1_000)


@ss.on("echo_text")
async def echo_text(sock: Socket, text: str) -> None:
    await sock.emit("echo_text", text)


@ss.on("flood")
async def flood(sock: Socket, count: str) -> None:
    """Broadcast ``count`` 64 KiB frames: every client that does not read passes its send queue."""
    chunk = b"x" * (64 * KiB)
    for _ in range(int(count)):
        await ss.broadcast("chunk", chunk)
    await sock.emit("flooded", count)
