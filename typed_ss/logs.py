"""Logging what clients cause: rate-limited per kind, so no client can flood the log.

Every line about something a client did (a malformed frame, an invalid payload, a refused upgrade, a
handler that failed on its message) goes through a :class:`ClientLog`. Each kind of line may be
written ``burst`` times per ``period`` seconds; the lines over that are counted, and the next line of
that kind that is written says how many were left out. Values a client chose are passed as ``%r``
arguments, never formatted into the message, so a line break in them cannot forge a log line.

Records about a socket carry it as structured fields, ``record.socket_id`` and ``record.event`` (the
event name, where there is one), for formatters and log shippers (:func:`fields`).
:func:`uvicorn_log_config` is uvicorn's logging configuration with typed-ss's loggers added, so that
typed-ss's lines look like uvicorn's own.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, Final

__all__ = ["ClientLog", "fields", "uvicorn_log_config"]

DEFAULT_BURST: Final = 10
DEFAULT_PERIOD: Final = 10.0


def fields(socket_id: str | None = None, event: str | None = None) -> dict[str, str]:
    """The structured fields of a record about a socket (``logger.warning(..., extra=fields(...))``):
    ``socket_id`` and ``event``, ``"-"`` where there is none, so that a format string may always use
    ``%(socket_id)s`` and ``%(event)s`` on typed-ss's records."""
    return {"socket_id": socket_id or "-", "event": event or "-"}


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration, with the ``typed_ss`` loggers sent through uvicorn's
    ``default`` handler and formatter (``INFO:     socket ... sent a malformed frame ...``), at INFO.

    :func:`typed_ss.uvicorn_settings` passes it as ``log_config``. Like uvicorn's own loggers, they do
    not propagate to the root logger: pass a ``log_config`` of your own to send them elsewhere.
    """
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["typed_ss"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


class _Budget:
    __slots__ = ("left", "suppressed", "window_start")

    def __init__(self, burst: int, now: float) -> None:
        self.left = burst
        self.window_start = now
        self.suppressed = 0


class ClientLog:
    """A logger front for client-caused lines, rate-limited per kind (``"malformed"``, ...)."""

    __slots__ = ("_budgets", "_burst", "_logger", "_period")

    def __init__(
        self, logger: logging.Logger, *, burst: int = DEFAULT_BURST, period: float = DEFAULT_PERIOD
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._period = period
        self._budgets: dict[str, _Budget] = {}

    def debug(
        self, kind: str, message: str, *args: object, socket_id: str | None = None, event: str | None = None
    ) -> None:
        """Log at DEBUG, within the kind's budget; ``socket_id`` and ``event`` become record fields."""
        self._log(logging.DEBUG, kind, None, message, args, socket_id, event)

    def info(
        self, kind: str, message: str, *args: object, socket_id: str | None = None, event: str | None = None
    ) -> None:
        """Log at INFO, within the kind's budget; ``socket_id`` and ``event`` become record fields."""
        self._log(logging.INFO, kind, None, message, args, socket_id, event)

    def warning(
        self, kind: str, message: str, *args: object, socket_id: str | None = None, event: str | None = None
    ) -> None:
        """Log at WARNING, within the kind's budget; ``socket_id`` and ``event`` become record fields."""
        self._log(logging.WARNING, kind, None, message, args, socket_id, event)

    def exception(
        self,
        kind: str,
        exc: BaseException,
        message: str,
        *args: object,
        socket_id: str | None = None,
        event: str | None = None,
    ) -> None:
        """Log at ERROR with ``exc``'s traceback, within the kind's budget: for application bugs that a
        client's message set off (a handler that raised)."""
        self._log(logging.ERROR, kind, exc, message, args, socket_id, event)

    def suppressed(self, kind: str) -> int:
        """How many lines of ``kind`` were left out and not yet reported."""
        budget = self._budgets.get(kind)
        return 0 if budget is None else budget.suppressed

    def _log(
        self,
        level: int,
        kind: str,
        exc: BaseException | None,
        message: str,
        args: tuple[object, ...],
        socket_id: str | None,
        event: str | None,
    ) -> None:
        if not self._logger.isEnabledFor(level):
            return
        now = time.monotonic()
        budget = self._budgets.get(kind)
        if budget is None:
            budget = self._budgets[kind] = _Budget(self._burst, now)
        elif now - budget.window_start >= self._period:
            budget.left = self._burst
            budget.window_start = now
        if budget.left <= 0:
            budget.suppressed += 1
            return
        budget.left -= 1
        if budget.suppressed:
            message += " (%d similar lines left out before this one)"
            args = (*args, budget.suppressed)
            budget.suppressed = 0
        self._logger.log(level, message, *args, exc_info=exc, extra=fields(socket_id, event))
