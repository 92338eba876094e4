"""When the client reconnects, and how long it waits first.

:func:`should_reconnect` reads the close code as docs/protocol.md section 6 says, the same way the JS
client does: no reconnect after 1000 (closed on purpose), 1008 (refused) and the registered and
application codes 3000-4999, except typed-ss's 4008 (slow consumer: come back later); 4010 (contract
mismatch) is one of those, and only a new client helps. Every other code (1001, 1006, 1009, 1011,
1012, 1013 ...) is a reason to come back.

:class:`Retry` spaces the attempts: the exponential backoff every retry loop of typed-ss uses
(:class:`typed_ss.supervision.Backoff`) gives the ceiling, and the wait is drawn uniformly below it
("full jitter"), so clients that lost the same server spread out instead of returning together. The
backoff starts over only after a connection that stayed open ``reset_after`` seconds: a server that
accepts and closes at once is retried ever more slowly, not at the base rate.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from typed_ss.errors import CloseCode
from typed_ss.supervision import Backoff

__all__ = ["NO_RECONNECT_CODES", "RECONNECT_APP_CODES", "ReconnectPolicy", "Retry", "should_reconnect"]

NO_RECONNECT_CODES: Final = frozenset({CloseCode.NORMAL, CloseCode.POLICY_VIOLATION})
"""Close codes below 3000 after which the client does not come back: closed on purpose, refused."""
RECONNECT_APP_CODES: Final = frozenset({CloseCode.SLOW_CONSUMER})
"""Codes from 3000 to 4999 after which it does: typed-ss's own "come back later"."""


@dataclass(frozen=True)
class ReconnectPolicy:
    """How the client reconnects (``connect(url, reconnect=ReconnectPolicy(...))``); the defaults are
    the JS client's."""

    base: float = 1.0
    """The first wait's ceiling, in seconds; it doubles with every failed attempt in a row."""
    cap: float = 30.0
    """The longest wait between attempts, in seconds."""
    reset_after: float = 5.0
    """Seconds a connection must stay open for the backoff to start over."""
    max_attempts: int | None = None
    """Failed attempts in a row after which the client gives up and closes; ``None``: never."""
    reconnect_codes: frozenset[int] = frozenset()
    """More close codes to reconnect after (an application's own 4xxx codes); they override the
    built-in rules, except 4010 (contract mismatch), after which no client reconnects."""
    random: Callable[[], float] = field(default=random.random, compare=False)
    """The jitter's random source, uniform in [0, 1) (tests pass a fixed one)."""

    def __post_init__(self) -> None:
        Backoff(self.base, self.cap)  # the same checks: 0 < base <= cap
        if self.reset_after < 0:
            raise ValueError(f"reset_after must not be negative, got {self.reset_after}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1 (or None), got {self.max_attempts}")


def should_reconnect(code: int, policy: ReconnectPolicy) -> bool:
    """Whether a connection closed with ``code`` is worth another attempt (see the module docstring)."""
    if code == CloseCode.CONTRACT_MISMATCH:
        return False  # the server will refuse this client every time: only a new client helps
    if code in policy.reconnect_codes:
        return True
    if code in NO_RECONNECT_CODES:
        return False
    if 3000 <= code <= 4999:
        # Registered and application codes: only their owner knows what they mean.
        return code in RECONNECT_APP_CODES
    return True


class Retry:
    """The waits between attempts of one client: jittered exponential backoff, and the count of failed
    attempts in a row that ``max_attempts`` bounds."""

    __slots__ = ("_backoff", "_opened_at", "failed_attempts", "policy")

    def __init__(self, policy: ReconnectPolicy) -> None:
        self.policy = policy
        self._backoff = Backoff(policy.base, policy.cap)
        self._opened_at: float | None = None
        self.failed_attempts = 0
        """Attempts that did not connect, since the last one that did."""

    def next_delay(self) -> float:
        """The wait before the next attempt, in seconds: uniform below the backoff's ceiling."""
        return self.policy.random() * self._backoff.failed()

    def attempt_failed(self) -> bool:
        """Count an attempt that did not connect; returns whether to try again."""
        self.failed_attempts += 1
        limit = self.policy.max_attempts
        return limit is None or self.failed_attempts < limit

    def opened(self, now: float) -> None:
        """A connection opened at ``now`` (a monotonic clock's seconds)."""
        self.failed_attempts = 0
        self._opened_at = now

    def closed(self, now: float) -> None:
        """The connection that :meth:`opened` closed at ``now``; the backoff starts over only if it
        stayed open ``reset_after`` seconds."""
        opened_at, self._opened_at = self._opened_at, None
        if opened_at is not None and now - opened_at >= self.policy.reset_after:
            self._backoff.succeeded()
