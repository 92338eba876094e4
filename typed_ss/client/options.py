"""The options of :func:`typed_ss.client.connect`: their names and types (:class:`ConnectOptions`, which
a generated client's ``connect`` passes on unchanged) and their defaults (:class:`Settings`)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypedDict

from typed_ss.client.reconnect import ReconnectPolicy
from typed_ss.limits import MiB

__all__ = ["DEFAULT_MAX_CALLS", "ConnectOptions", "Settings"]

DEFAULT_MAX_CALLS: Final = 64
"""The bound on waiting calls when the server's ``__hello`` names none (typed-ss's own default)."""


class ConnectOptions(TypedDict, total=False):
    """Keyword options of :func:`~typed_ss.client.connect`; every one has a default (:class:`Settings`)."""

    headers: Mapping[str, str]
    """Extra HTTP headers for the upgrade request (a token, a cookie)."""
    subprotocols: Sequence[str]
    """Subprotocols to offer after ``sac-sock``, which is always offered first."""
    reconnect: bool | ReconnectPolicy
    """``True`` (the default policy), ``False`` (never), or a :class:`ReconnectPolicy`."""
    open_timeout: float
    """Seconds an attempt may take, from the TCP connection to the server's ``__hello``."""
    max_message_size: int | None
    """The largest message accepted from the server, in bytes (a larger one closes the connection
    with 1009, and the client reconnects); ``None``: no limit."""
    max_queue: int
    """The most emits held while not connected; when full, the oldest is dropped (and logged)."""
    read_ahead: int
    """The most received messages held while a handler is busy; past it the client stops reading
    until the handler is done (replies to calls wait behind them too)."""
    ssl: ssl.SSLContext | None
    """The TLS context for ``wss://`` URLs (a private CA's, say); ``None``: the system's defaults."""


@dataclass(frozen=True)
class Settings:
    """:class:`ConnectOptions` with every default filled in."""

    headers: Mapping[str, str]
    subprotocols: Sequence[str]
    reconnect: ReconnectPolicy | None
    open_timeout: float = 10.0
    max_message_size: int | None = 1 * MiB
    max_queue: int = 1000
    read_ahead: int = 256
    ssl: ssl.SSLContext | None = None

    @classmethod
    def of(cls, options: ConnectOptions) -> Settings:
        """The settings for ``options``.

        Raises:
            TypeError: an unknown option.
            ValueError: a value out of range.
        """
        unknown = set(options) - set(ConnectOptions.__annotations__)
        if unknown:
            raise TypeError(f"unknown option(s) of connect(): {', '.join(sorted(unknown))}")
        reconnect = options.get("reconnect", True)
        policy: ReconnectPolicy | None
        if isinstance(reconnect, ReconnectPolicy):
            policy = reconnect
        else:
            policy = ReconnectPolicy() if reconnect else None
        settings = cls(
            headers=dict(options.get("headers", {})),
            subprotocols=tuple(options.get("subprotocols", ())),
            reconnect=policy,
            open_timeout=options.get("open_timeout", cls.open_timeout),
            max_message_size=options.get("max_message_size", cls.max_message_size),
            max_queue=options.get("max_queue", cls.max_queue),
            read_ahead=options.get("read_ahead", cls.read_ahead),
            ssl=options.get("ssl"),
        )
        if not settings.open_timeout > 0:
            raise ValueError(f"open_timeout must be positive, got {settings.open_timeout}")
        if settings.max_message_size is not None and settings.max_message_size < 1:
            raise ValueError(f"max_message_size must be positive or None, got {settings.max_message_size}")
        if settings.max_queue < 0:
            raise ValueError(f"max_queue must not be negative, got {settings.max_queue}")
        if settings.read_ahead < 1:
            raise ValueError(f"read_ahead must be at least 1, got {settings.read_ahead}")
        return settings
