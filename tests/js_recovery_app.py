"""The app of the JS clients' connection state recovery tests (clients/js/test/recovery.test.js): the
tests' usual server (tests/apps.py) with recovery on, and ``say``.

.venv/bin/python -m tests.serve tests.js_recovery_app:app
"""

from __future__ import annotations

from tests.apps import echo_server, make_app
from typed_ss import Recovery, Socket

ss = echo_server(recovery=Recovery(window=30.0))


@ss.on("say")
async def say(sock: Socket, text: str) -> None:
    """Send ``text`` to room ``r``: the recovering client is in it."""
    await ss.roomcast("r", "said", text)
    await sock.emit("sent", text)


app = make_app(ss)
