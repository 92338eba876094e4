"""The mesh's tokens: HMAC-SHA256 with the shared key over a node's name and an expiry.

:func:`make_token` and :func:`verify_token` are the format (``v1.<node>.<expiry>.<signature>``, sent
as ``authorization: Bearer <token>``); :class:`Tokens` is one node's use of them: the token it sends,
made afresh once a third of its lifetime is left, and the check of the tokens its peers send.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from typing import Final

__all__ = ["TOKEN_VERSION", "TokenError", "Tokens", "make_token", "verify_token"]

TOKEN_VERSION: Final = "v1"
_TOKEN_CONTEXT: Final = b"typed-ss multihome token v1\x00"


class TokenError(Exception):
    """A peer's token is missing, malformed, badly signed or expired."""


def make_token(key: bytes, issuer: str, expires: int) -> str:
    """A token saying that ``issuer`` holds ``key``, valid until ``expires`` (Unix seconds)."""
    name = base64.urlsafe_b64encode(issuer.encode()).decode().rstrip("=")
    mac = hmac.new(key, _TOKEN_CONTEXT + f"{name}.{expires}".encode(), hashlib.sha256).digest()
    return f"{TOKEN_VERSION}.{name}.{expires}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def verify_token(key: bytes, token: str, *, now: float | None = None, skew: float = 30.0) -> tuple[str, int]:
    """Check a token made by :func:`make_token`; returns ``(issuer, expires)``.

    Raises:
        TokenError: malformed, signed with another key, or expired more than ``skew`` seconds ago.
    """
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION or not parts[2].isdigit():
        raise TokenError("malformed token")
    _, name, expires_text, signature = parts
    expected = hmac.new(key, _TOKEN_CONTEXT + f"{name}.{expires_text}".encode(), hashlib.sha256).digest()
    try:
        given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        issuer = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("malformed token") from exc
    if not hmac.compare_digest(given, expected):
        raise TokenError("bad token signature (another shared key?)")
    expires = int(expires_text)
    if expires + skew < (time.time() if now is None else now):
        raise TokenError("expired token")
    return issuer, expires


class Tokens:
    """One node's tokens, with the mesh's shared key: the one it sends, and the check of its peers'.

    Args:
        key: the shared key.
        name: this node's name, which its tokens carry.
        ttl: how long a token lives, in seconds.
        skew: the clock-skew allowance when checking a peer's expiry, in seconds.
    """

    __slots__ = ("_current", "_key", "name", "skew", "ttl")

    def __init__(self, key: bytes, name: str, *, ttl: float, skew: float) -> None:
        self._key = key
        self.name = name
        self.ttl = ttl
        self.skew = skew
        self._current: tuple[str, float] | None = None  # the token sent now, and when to replace it

    def current(self) -> str:
        """This node's token, made afresh once a third of its lifetime is left."""
        now = time.time()
        if self._current is None or now >= self._current[1]:
            expires = int(now + self.ttl)
            self._current = (make_token(self._key, self.name, expires), expires - self.ttl / 3)
        return self._current[0]

    def refresh_due(self) -> bool:
        """Whether the token sent so far must be replaced on the open streams now."""
        return self._current is not None and time.time() >= self._current[1]

    def until_refresh(self) -> float:
        """Seconds until the token sent so far must be replaced (infinite before the first one)."""
        return math.inf if self._current is None else self._current[1] - time.time()

    def check(self, token: str, node: str | None = None) -> tuple[str, float]:
        """Check a peer's token (and, given ``node``, that it was issued to that node); returns
        ``(issuer, until)``, ``until`` being when the stream must end without a fresh one.

        Raises:
            TokenError: see :func:`verify_token`; or the token names another node.
        """
        issuer, expires = verify_token(self._key, token, skew=self.skew)
        if node is not None and issuer != node:
            raise TokenError(f"the token was issued to {issuer!r}, not {node!r}")
        return issuer, expires + self.skew
