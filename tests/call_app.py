"""The handlers the suites of calls share: a reply of every payload kind and a failure of every kind.

tests/test_calls.py (the frames by hand), tests/test_client.py (the Python client) and tests/js_app.py
(the JS client's integration tests) register them on a server of their own with
:func:`add_call_handlers`, next to the handlers only they need.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pydantic

from typed_ss import HandlerError, Server, Socket


class AddQuery(msgspec.Struct):
    a: int
    b: int


class AddResult(msgspec.Struct):
    sum: int


class Profile(pydantic.BaseModel):
    name: str


class Question(msgspec.Struct):
    text: str


class Answer(msgspec.Struct):
    yes: bool


def add_call_handlers(ss: Server[Any], log: list[object] | None = None) -> None:
    """Register ``add`` (msgspec), ``upper`` (text), ``reverse`` (binary), ``profile`` (pydantic),
    ``count`` (a JSON number), ``refuse`` (a ``HandlerError``), ``crash`` (an exception), ``slow``
    (sleeps the seconds it is given) and ``lies`` (returns what its annotation does not allow) on
    ``ss``. ``log``, when given, records ``("add", a, b)`` and ``("slow", seconds)`` in order."""
    seen: list[object] = log if log is not None else []

    @ss.on("add")
    async def add(sock: Socket, q: AddQuery) -> AddResult:
        seen.append(("add", q.a, q.b))
        return AddResult(q.a + q.b)

    @ss.on("upper")
    async def upper(sock: Socket, text: str) -> str:
        return text.upper()

    @ss.on("reverse")
    async def reverse(sock: Socket, data: bytes) -> bytes:
        return data[::-1]

    @ss.on("profile")
    async def profile(sock: Socket, name: str) -> Profile:
        return Profile(name=name)

    @ss.on("count")
    async def count(sock: Socket, data: list[int]) -> int:
        return len(data)

    @ss.on("refuse")
    async def refuse(sock: Socket, room: str) -> None:
        raise HandlerError("not_found", f"no room {room}", data={"room": room})

    @ss.on("crash")
    async def crash(sock: Socket, data: bytes) -> None:
        raise RuntimeError("secret internals")

    @ss.on("slow")
    async def slow(sock: Socket, seconds: float) -> str:
        seen.append(("slow", seconds))
        await asyncio.sleep(seconds)
        return "done"

    @ss.on("lies")
    async def lies(sock: Socket, data: bytes) -> int:
        bad: Any = "not an int"
        return bad  # type: ignore[no-any-return]
