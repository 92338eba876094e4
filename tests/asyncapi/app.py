"""A server whose AsyncAPI document holds every case ``typed-ss asyncapi`` maps: each payload kind both
ways, calls both ways (replies of every kind, ``None``, no annotation), pydantic models, unions,
``Literal``s, a tagged union, a tuple, a recursive struct, a ``$ref`` with a default beside it, and
event names that are not identifiers (including two that clean up to the same name).

    typed-ss asyncapi tests.asyncapi.app:ss
"""

from __future__ import annotations

import enum
from typing import Literal

import msgspec
import pydantic

from typed_ss import HandlerError, Server, Socket

ss = Server()


class Mood(enum.Enum):
    CALM = "calm"
    BUSY = "busy"


class Query(msgspec.Struct):
    """A question for the server."""

    text: str
    mood: Mood = Mood.CALM  # a $ref with a default beside it


class Answer(msgspec.Struct):
    text: str
    score: float


class Tree(msgspec.Struct):
    """Recursive: refers to itself."""

    label: str
    children: list[Tree] = []


class Join(msgspec.Struct, tag=True):
    room: str


class Leave(msgspec.Struct, tag=True):
    room: str


class Hello(msgspec.Struct):
    """Named like the protocol's own __hello payload, which must not take its name."""

    greeting: str


class Profile(pydantic.BaseModel):
    """A pydantic model, both ways: its sent and received shapes differ (a default)."""

    model_config = pydantic.ConfigDict(populate_by_name=True)

    user_name: str = pydantic.Field(alias="userName")
    age: int = 0


class PJoin(pydantic.BaseModel):
    type: Literal["join"] = "join"
    room: str


class PLeave(pydantic.BaseModel):
    type: Literal["leave"] = "leave"
    room: str


class Confirm(msgspec.Struct):
    question: str


class Confirmed(msgspec.Struct):
    yes: bool


# What the server sends: every kind, and calls to the client with every kind of reply.
blob = ss.event("blob", bytes)
note = ss.event("note", str)
answer = ss.event("answer", Answer)
light = ss.event("light", Literal["red", "green"])
profile_out = ss.event("profile", Profile)
hello_out = ss.event("hello", Hello)
confirm = ss.event("confirm", Confirm, reply=Confirmed)  # the client answers a Confirmed
name_please = ss.event("name-please", Confirm, reply=str)
file_please = ss.event("file-please", Confirm, reply=bytes)
ping = ss.event("ping", int, reply=None)  # the client acknowledges


@ss.on("echo")
async def echo(sock: Socket, data: bytes) -> bytes:
    """Raw bytes, answered with the same bytes."""
    return data


@ss.on("upper")
async def upper(sock: Socket, text: str) -> str:
    return text.upper()


@ss.on("ask")
async def ask(sock: Socket, query: Query) -> Answer:
    """Ask a question.

    The answer is scored."""
    if not query.text:
        raise HandlerError("empty", "ask something", data={"field": "text"})
    return Answer(query.text, 1.0)


@ss.on("forget")
async def forget(sock: Socket, anything: int | str | None) -> None:
    """Returns nothing: a call gets an acknowledgement."""


@ss.on("untyped")
async def untyped(sock: Socket, light: Literal["red", "green", 3]):  # type: ignore[no-untyped-def]
    """No return annotation: the reply is any JSON."""
    return light


@ss.on("plant")
async def plant(sock: Socket, tree: Tree) -> list[Tree]:
    return [tree]


@ss.on("move")
async def move(sock: Socket, step: Join | Leave) -> tuple[int, str]:
    return (1, step.room)


@ss.on("profile")
async def profile(sock: Socket, p: Profile) -> Profile:
    return p


@ss.on("paction")
async def paction(sock: Socket, action: PJoin | PLeave) -> PJoin | PLeave:
    return action


# Names that are not identifiers, two of which clean up to the same one ("a.b" and "a_b": dots join
# the parts of the document's names), and one that is not ASCII.
@ss.on("chat:message")
async def chat_message(sock: Socket, text: str) -> None:
    pass


@ss.on("a.b")
async def a_dot_b(sock: Socket, data: bytes) -> None:
    pass


@ss.on("a_b")
async def a_underscore_b(sock: Socket, data: bytes) -> None:
    pass


@ss.on("café")
async def cafe(sock: Socket, order: dict[str, int]) -> None:
    pass
