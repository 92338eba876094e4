"""Running a typed-ss app under uvicorn with the recommended settings.

The settings, and why:

- ``ws`` and ``http``: typed-ss's own subclasses of uvicorn's ``websockets-sansio`` and ``httptools``
  protocols (:mod:`typed_ss.uvicorn_protocols`): the fastest of uvicorn's implementations, with the
  bounds uvicorn leaves out (a ping flood, an upgrade request that never completes, a slow consumer
  that keeps its connection).
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

import logging
from typing import Any, Final

import uvicorn

from typed_ss.logs import uvicorn_log_config
from typed_ss.server import Server
from typed_ss.uvicorn_protocols import configured

__all__ = ["ensure_file_limit", "run", "uvicorn_settings"]

logger = logging.getLogger("typed_ss")


def uvicorn_settings(server: Server) -> dict[str, Any]:
    """The recommended ``uvicorn.Config`` / ``uvicorn.run`` keyword arguments for ``server``."""
    http, ws = configured(
        max_message_size=server.limits.max_message_size, handshake_timeout=server.limits.handshake_timeout
    )
    return {
        "http": http,
        "ws": ws,
        "ws_max_size": server.limits.max_message_size,
        "ws_per_message_deflate": False,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
        "log_config": uvicorn_log_config(),
    }


def run(app: Any, server: Server, *, host: str = "127.0.0.1", port: int = 8080, **overrides: Any) -> None:
    """Serve ``app`` (the Starlette app, or the ``Server`` itself) with the recommended settings.

    ``overrides`` are passed to ``uvicorn.run`` over the recommended values. First the process's
    file-descriptor limit is raised, if it must and may be, to what ``max_connections`` needs
    (:func:`ensure_file_limit`).
    """
    ensure_file_limit(server.limits.max_connections)
    uvicorn.run(app, host=host, port=port, **{**uvicorn_settings(server), **overrides})


FILES_BESIDES_CONNECTIONS: Final = 256
"""File descriptors a server process needs besides one per connection: the listening socket, the
event loop's own, backend connections, log files, imported modules being read."""


def ensure_file_limit(max_connections: int) -> int:
    """Make sure this process may open a file descriptor per connection, plus
    :data:`FILES_BESIDES_CONNECTIONS`: raise the soft ``RLIMIT_NOFILE`` up to the hard one if needed
    (as the Go runtime does at start), and warn if even the hard limit is too low. Returns the soft
    limit in force afterwards (``-1`` where the platform has none)."""
    try:
        import resource
    except ImportError:  # not on Unix
        return -1
    needed = max_connections + FILES_BESIDES_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the open-files limit from %d to %d: %s", soft, target, exc)
    if soft < needed:
        logger.warning(
            "this process may open %d files, but max_connections=%d needs about %d: connections past "
            "the limit fail at accept(); raise `ulimit -n` (the hard limit) or lower max_connections",
            soft,
            max_connections,
            needed,
        )
    return soft
