"""The app of the JS clients' connection state recovery tests (clients/js/test/recovery.test.js).

.venv/bin/python -m tests.serve tests.js_recovery_app:app
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from typed_ss import Recovery, Server, Socket

ss = Server(recovery=Recovery(window=30.0))


@ss.on("join")
async def join(sock: Socket, room: str) -> None:
    await sock.join(room)
    await sock.emit("joined", room)


@ss.on("say")
async def say(sock: Socket, text: str) -> None:
    """Send ``text`` to room ``r``: the recovering client is in it."""
    await ss.roomcast("r", "said", text)
    await sock.emit("sent", text)


app = Starlette(routes=[WebSocketRoute("/socket", ss)], lifespan=ss.lifespan)
