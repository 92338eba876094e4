"""Every limit a server enforces, in one frozen dataclass: ``ss.limits``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from typed_ss.errors import ConfigurationError

__all__ = ["KiB", "Limits", "MiB"]

KiB: Final = 1024
MiB: Final = 1024 * KiB


@dataclass(frozen=True)
class Limits:
    """Every limit the server enforces, with its default. ``docs/running.md`` (Limits) explains what
    each bounds, and what a deployment can rely on."""

    max_message_size: int = 1 * MiB
    """Largest client message in bytes; larger ones close the socket with 1009. Advertised in
    ``__hello``; give uvicorn the same value as ``ws_max_size`` (``typed_ss.uvicorn_settings`` does)."""
    send_queue_bytes: int = 4 * MiB
    """Most a congested socket may have waiting to be sent before it is cut off with 4008."""
    send_timeout: float = 10.0
    """Seconds one send may take before the socket is cut off with 4008."""
    max_event_name_length: int = 128
    """Longest event name in UTF-8 bytes, both directions."""
    max_room_name_length: int = 255
    """Longest room name in UTF-8 bytes."""
    max_rooms_per_socket: int = 100
    """Most rooms one socket may be in (its internal ``__socket_id:`` room does not count)."""
    shutdown_timeout: float = 10.0
    """Seconds :meth:`Server.shutdown` waits for connections to end before cancelling them."""
    max_connections: int = 10_000
    """Most connections this server keeps open at once; more are refused with HTTP 503 before the
    upgrade (or closed with 1013 where the ASGI server cannot answer with a status), and logged."""
    handshake_timeout: float = 10.0
    """Seconds a new TCP connection may take to send its complete upgrade request. Enforced by the
    uvicorn protocols of :func:`typed_ss.uvicorn_settings`, which close slower connections."""
    read_ahead_messages: int = 16
    """Most messages read ahead, and held, while the socket's handler is busy (at most
    ``max_message_size`` bytes of them); then the server stops reading from that client."""
    max_calls: int = 64
    """Most calls that may wait for a reply on one connection, in each direction; announced in
    ``__hello``. A server call past it fails at once (``too_many_calls``); a client call past it (the
    one being handled and those read ahead) gets a ``too_many_calls`` error reply, and clients fail
    theirs the same way before sending."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise ConfigurationError(f"{field.name} must be positive, got {value!r}")
