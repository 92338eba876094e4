"""Running a coroutine's first step by hand, and the rest in whichever task awaits it.

typed-ss starts sends and handlers synchronously: most complete without ever suspending (a send to a
client that keeps up, a handler that awaits nothing slow), and those cost no task switch and no
event-loop round trip. One that does suspend hands back a :class:`Resume`, which the caller awaits to
run the rest exactly as ``await coro`` would have (results, exceptions and cancellation forwarded).
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["Resume"]


class Resume:
    """The rest of a coroutine that was stepped by hand until it first suspended.

    Awaited in the task that stepped it, the coroutine keeps running in that task, so
    ``asyncio.current_task()``, ``asyncio.timeout`` and context variables inside it behave exactly as
    under a plain ``await``.
    """

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self.coro, self.yielded
        try:
            while True:
                try:
                    sent = yield yielded
                except BaseException as exc:  # thrown in by the awaiting task, e.g. CancelledError
                    yielded = coro.throw(exc)
                else:
                    yielded = coro.send(sent)
        except StopIteration as done:
            return done.value
