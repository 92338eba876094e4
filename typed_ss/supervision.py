"""Background tasks that never end silently, and the one backoff policy every retry loop uses.

A long-lived loop of typed-ss (the multihome publisher and reader, a backend's subscriber or reader,
a gRPC link) runs as a :class:`Supervised` task. If the loop raises, or returns although it was meant
to run until stopped, the supervisor logs it at ERROR with the traceback, counts it, and starts the
loop again after a :class:`Backoff` delay; :meth:`Supervised.health` reports it, and
``ss.health()["tasks"]`` lists every supervised task of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final, Literal, TypeAlias

import msgspec

__all__ = ["Backoff", "Supervised", "TaskHealth", "TaskState", "raise_if_cancelled"]

logger = logging.getLogger("typed_ss")

_MAX_EXPONENT: Final = 30
"""2**30 times any sane base is far past any cap; clamping the exponent keeps the float finite."""
STOP_GRACE: Final = 2.0
"""Seconds a stopped task has to end once cancelled before it is cancelled again (and it is logged)."""
STOP_ATTEMPTS: Final = 5
"""Cancellations a stopped task gets before it is left to itself (and that is logged as an error)."""


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop.

    A loop that catches a connection error and tries again calls it first: a client library whose
    own timeout fires as the task is cancelled may turn the cancellation into its timeout error
    (Python 3.11's ``asyncio.timeout`` does, in that race), and the loop would go on for ever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Backoff:
    """Exponential backoff with a cap: ``base * 2**(n-1)`` after the n-th failure in a row, at most
    ``cap`` seconds, starting over after a success.

    ``should_log()`` throttles logging of a long outage to the first failure and every
    ``log_every``-th one after it.
    """

    __slots__ = ("base", "cap", "failures", "log_every")

    def __init__(self, base: float = 0.05, cap: float = 1.0, *, log_every: int = 20) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base}, cap={cap}")
        self.base = base
        self.cap = cap
        self.log_every = log_every
        self.failures = 0
        """Failures since the last success."""

    def failed(self) -> float:
        """Count a failure; returns the delay before the next attempt, in seconds."""
        self.failures += 1
        return self.delay()

    def delay(self) -> float:
        """The delay the current run of failures calls for (0 after a success)."""
        if self.failures == 0:
            return 0.0
        exponent: int = min(self.failures - 1, _MAX_EXPONENT)
        return min(self.cap, self.base * float(2**exponent))

    def succeeded(self) -> int:
        """Start over; returns how many failures in a row there had been."""
        failures, self.failures = self.failures, 0
        return failures

    def should_log(self) -> bool:
        """Whether the current failure is worth a log line (the first, then every ``log_every``-th)."""
        return self.failures <= 1 or self.failures % self.log_every == 0

    async def sleep(self) -> None:
        """Count a failure and wait the delay it calls for."""
        await asyncio.sleep(self.failed())


TaskState: TypeAlias = Literal["stopped", "running", "restarting"]


class TaskHealth(msgspec.Struct, kw_only=True):
    """One supervised background task, as ``ss.health()`` reports it."""

    name: str
    state: TaskState
    restarts: int = 0
    """How many times the task failed (or ended when it should not have) and was started again."""
    last_error: str = ""
    """What ended it the last time, ``""`` if it never failed."""


class Supervised:
    """Runs ``loop()`` in a task until :meth:`stop`; restarts it whenever it raises or returns.

    ``loop`` is a coroutine function meant to run until cancelled. A run that lasted longer than the
    backoff's cap resets the backoff, so a task that fails once a day restarts at once.
    """

    def __init__(
        self,
        name: str,
        loop: Callable[[], Coroutine[Any, Any, None]],
        *,
        backoff: Backoff | None = None,
        log: logging.Logger = logger,
    ) -> None:
        self.name = name
        self._loop = loop
        self._backoff = backoff or Backoff()
        self._log = log
        self._task: asyncio.Task[None] | None = None
        self._state: TaskState = "stopped"
        self.restarts = 0
        self.last_error = ""

    @property
    def running(self) -> bool:
        """Whether the task has been started and not stopped."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the task (once; starting a running task does nothing)."""
        if self.running:
            return
        self._state = "running"
        self._task = asyncio.create_task(self._supervise(), name=f"typed-ss {self.name}")

    async def stop(self) -> None:
        """Cancel the task and wait for it to end."""
        task, self._task = self._task, None
        self._state = "stopped"
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            # A library that swallows a cancellation would leave the task running, and this waiting
            # for ever: cancelled again until it ends, and said so.
            for _attempt in range(STOP_ATTEMPTS):
                if (await asyncio.wait([task], timeout=STOP_GRACE))[0]:
                    with contextlib.suppress(BaseException):
                        task.result()
                    return
                self._log.warning("the %s task did not end when cancelled; cancelling it again", self.name)
                task.cancel()
            self._log.error("the %s task does not end when cancelled; left running", self.name)

    def health(self) -> TaskHealth:
        """The task's state, restarts and last error."""
        return TaskHealth(
            name=self.name, state=self._state, restarts=self.restarts, last_error=self.last_error
        )

    async def _supervise(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = repr(exc)
                failure: BaseException | None = exc
            else:
                self.last_error = "returned although it should run until stopped"
                failure = None
            self.restarts += 1
            self._state = "restarting"
            if time.monotonic() - started > self._backoff.cap:
                self._backoff.succeeded()
            delay = self._backoff.failed()
            # Every restart is logged: the backoff spaces them at least its cap apart.
            self._log.error(
                "typed-ss background task %r %s; restarting it in %.2f s (%d restarts so far)",
                self.name,
                "failed" if failure is not None else "ended unexpectedly",
                delay,
                self.restarts,
                exc_info=failure,
            )
            await asyncio.sleep(delay)
            self._state = "running"
