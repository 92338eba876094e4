"""Connection state recovery: a client that drops for a moment reconnects to the same socket, its
rooms, and everything sent to them meanwhile (docs/recovery.md).

``Server(recovery=Recovery(window=120.0, history=1000))`` turns it on. The pieces:
:mod:`~typed_ss.recovery.history` keeps what each stream was sent, :mod:`~typed_ss.recovery.sessions`
what each socket needs to be taken up again, :mod:`~typed_ss.recovery.recoverer` decides, at each
reconnect, between a complete replay and a fresh start.
"""

from __future__ import annotations

from dataclasses import dataclass

from typed_ss.errors import ConfigurationError

__all__ = ["Recovery"]


@dataclass(frozen=True)
class Recovery:
    """Connection state recovery's settings (off unless given to the :class:`~typed_ss.Server`).

    A socket whose connection ends without a clean close keeps its id, rooms and identity for
    ``window`` seconds (it ends if the client closed with 1000, 1001 or 1009, or the server closed
    with a code other than 1001, 1012 or 4008, ``sock.close()``'s default 1000 among them); a
    client that reconnects with its session token within them gets every frame it missed, in order,
    then goes live, or is told it starts afresh when that is not possible.
    """

    window: float = 120.0
    """Seconds a session outlives its connection."""
    history: int = 1000
    """Most frames kept per stream (a room, a socket's own stream, the broadcasts); nothing older
    than ``window`` is kept either. A client that missed more than this in one stream starts afresh."""
    max_sessions: int = 100_000
    """Most sessions kept at once (connected sockets' and those within their window); past it the
    session that expires first is dropped."""

    def __post_init__(self) -> None:
        for name in ("window", "history", "max_sessions"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"Recovery.{name} must be positive, got {getattr(self, name)!r}")
