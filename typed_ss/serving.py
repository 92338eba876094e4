"""Running a typed-ss app under uvicorn with the recommended settings.

The settings, and why:

- ``ws="websockets-sansio"``: the fastest of uvicorn's WebSocket implementations, and the one whose
  memory stays lowest under compressed-message attacks.
- ``ws_max_size`` equal to the server's ``max_message_size``, so uvicorn and typed-ss agree on the
  limit (both close with 1009).
- ``ws_per_message_deflate=False``: compression multiplies per-connection memory and opens the door to
  decompression bombs; typed-ss messages are small.
- ``ws_ping_interval=20``, ``ws_ping_timeout=20``: a client that vanished without closing is found
  and removed within 40 s.
- ``timeout_graceful_shutdown=10``: on SIGTERM uvicorn closes every socket with 1012, then gives
  handlers this long to finish before the lifespan shutdown runs.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from typed_ss.server import Server

__all__ = ["run", "uvicorn_settings"]


def uvicorn_settings(server: Server) -> dict[str, Any]:
    """The recommended ``uvicorn.Config`` / ``uvicorn.run`` keyword arguments for ``server``."""
    return {
        "ws": "websockets-sansio",
        "ws_max_size": server.limits.max_message_size,
        "ws_per_message_deflate": False,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }


def run(app: Any, server: Server, *, host: str = "127.0.0.1", port: int = 8080, **overrides: Any) -> None:
    """Serve ``app`` (the Starlette app, or the ``Server`` itself) with the recommended settings.

    ``overrides`` are passed to ``uvicorn.run`` over the recommended values.
    """
    uvicorn.run(app, host=host, port=port, **{**uvicorn_settings(server), **overrides})
