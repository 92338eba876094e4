"""A server whose contract uses every type the generator maps (docs/codegen.md, "Type mapping").

Its generated client is checked against golden files (``tests/codegen/golden``), compiled by tsc with
usage files that must and must not compile (``tests/codegen/ts``), and driven end to end under node
(``tests/codegen/e2e.mjs``). Handlers echo what they get, so the end-to-end test can check both
directions. Calls: handlers that return a value of every reply kind (``add``, ``upper``, ``reverse``,
``whois``, ``count``, an unannotated one), one that refuses, and events the server calls the client with
(``confirm``, ``greet``, ``sign``, ``rate``, ``poke``), each triggered by an ``ask_*`` call whose reply is
what the client answered. ``/refuse`` and ``/warn`` serve servers with another contract, one that refuses
out-of-date clients and one that only warns.

    python -m tests.serve tests.codegen.app:app
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import (
    Annotated,
    Any,
    Generic,
    Literal,
    NamedTuple,
    NewType,
    NotRequired,
    Optional,
    TypedDict,
    TypeVar,
)
from uuid import UUID

import msgspec
import pydantic
from msgspec import UNSET, Meta, UnsetType
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tests.codegen import other
from typed_ss import CallError, HandlerError, Server, ServerEvent, Socket

T = TypeVar("T")
UserId = NewType("UserId", int)


class Color(enum.Enum):
    """A color, sent by its value."""

    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.IntFlag):
    READ = 1
    WRITE = 2


class Attachment(msgspec.Struct):
    """No defaults: one shape for both directions."""

    name: str
    size: int


class ChatMessage(msgspec.Struct):
    """A chat line. Defaulted fields may be left out when sending, and are always there when received."""

    room: Annotated[str, Meta(min_length=1, description="The room's name.")]
    text: str
    author_id: int
    sent_at: datetime
    reply_to: int | None = None
    color: Color = Color.RED
    tags: list[str] = []
    attachments: list[Attachment] = []
    edited: bool | UnsetType = UNSET


class Everything(msgspec.Struct, rename="camel"):
    """Scalars and containers, with camelCase names on the wire."""

    an_int: int
    a_float: float
    num: float | int
    maybe: Optional[int]  # noqa: UP045 - the Optional spelling is part of what is tested
    lit: Literal["a", "b", 1, None]
    yes: Literal[True]
    color: Color
    priority: Priority
    perm: Perm
    items: list[int | None]
    unique: set[str]
    frozen: frozenset[int]
    var_tuple: tuple[int, ...]
    pair: tuple[int, str]
    empty: tuple[()]
    by_name: dict[str, float]
    by_id: dict[int, str]
    by_color: dict[Color, int]
    by_priority: dict[Priority, int]
    by_letter: dict[Literal["x", "y"], int]
    when: datetime
    aware: Annotated[datetime, Meta(tz=True)]
    day: date
    at: time
    took: timedelta
    uid: UUID
    amount: Decimal
    blob: bytes
    anything: Any
    raw: msgspec.Raw
    user_id: UserId
    content_type: str = msgspec.field(default="text/plain", name="content-type")


class Tree(msgspec.Struct):
    """A recursive type."""

    value: int
    children: list[Tree] = []


class Join(msgspec.Struct, tag=True):
    room: str


class Leave(msgspec.Struct, tag=True):
    room: str
    reason: str = ""


class Cat(msgspec.Struct, tag_field="kind", tag=1):
    name: str


class Dog(msgspec.Struct, tag_field="kind", tag=2):
    name: str
    good: bool = True


class Point(msgspec.Struct, array_like=True):
    x: int
    y: int = 0


class Sparse(msgspec.Struct, omit_defaults=True):
    """omit_defaults: defaulted fields may be missing in both directions."""

    a: int = 0
    b: str | None = None


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next: str | None = None


@dataclasses.dataclass
class Box:
    width: int
    height: int = 1


class Span(NamedTuple):
    start: int
    end: int = 0


class Options(TypedDict):
    verbose: bool
    level: NotRequired[int]


class Message(msgspec.Struct):
    """This module's message (tests.codegen.other has another)."""

    text: str


class Profile(pydantic.BaseModel):
    """A user's profile (pydantic)."""

    model_config = pydantic.ConfigDict(populate_by_name=True)

    name: str = pydantic.Field(alias="userName", description="Shown to others.")
    age: int = 0
    color: Color = Color.RED
    friends: list[Profile] = []

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def initial(self) -> str:
        return self.name[:1]


class PJoin(pydantic.BaseModel):
    type: Literal["join"] = "join"
    room: str


class PLeave(pydantic.BaseModel):
    type: Literal["leave"] = "leave"


PAction = Annotated[PJoin | PLeave, pydantic.Field(discriminator="type")]


class AddQuery(msgspec.Struct):
    a: int
    b: int = 0


class AddResult(msgspec.Struct):
    """A reply: what the client receives, every field present."""

    sum: int
    note: str = ""


class Question(msgspec.Struct):
    text: str


class Answer(msgspec.Struct):
    """The client's reply to confirm: sent by the client, so the reason may be left out."""

    yes: bool
    reason: str = ""


class Rating(pydantic.BaseModel):
    """The client's reply to rate (pydantic, by alias)."""

    model_config = pydantic.ConfigDict(populate_by_name=True)

    stars: int = pydantic.Field(alias="starCount")
    comment: str = ""


ss = Server()

chat_out = ss.event("chat", ChatMessage)
everything_out = ss.event("everything", Everything)
tree_out = ss.event("tree", Tree)
presence: ServerEvent[Join | Leave] = ss.event("presence", Join | Leave)
pet_out: ServerEvent[Cat | Dog] = ss.event("pet", Cat | Dog)
moved = ss.event("moved", Point)
page_out = ss.event("page", Page[str])
sparse_out = ss.event("sparse", Sparse)
profile_out = ss.event("profile", Profile)
profiles_out: ServerEvent[list[Profile]] = ss.event("profiles", list[Profile])
paction_out: ServerEvent[PJoin | PLeave] = ss.event("paction", PAction)
blob = ss.event("blob", bytes)
note = ss.event("note", str)
status: ServerEvent[Literal["on", "off"]] = ss.event("status", Literal["on", "off"])
box_out = ss.event("box", Box)
span_out = ss.event("span", Span)
options_out = ss.event("options", Options)
message_out = ss.event("message", Message)
other_message_out = ss.event("other-message", other.Message)
# Events the server calls the client with, and the reply each expects.
confirm = ss.event("confirm", Question, reply=Answer)
greet = ss.event("greet", str, reply=str)
sign = ss.event("sign", bytes, reply=bytes)
rate = ss.event("rate", Question, reply=Rating)
poke = ss.event("poke", int, reply=None)


@ss.on("chat")
async def chat(sock: Socket, msg: ChatMessage) -> None:
    """Echo a chat line back, defaults filled in."""
    await chat_out.emit(sock, msg)


@ss.on("everything")
async def everything(sock: Socket, value: Everything) -> None:
    await everything_out.emit(sock, value)


@ss.on("tree")
async def tree(sock: Socket, value: Tree) -> None:
    await tree_out.emit(sock, value)


@ss.on("ping")
async def ping(sock: Socket, _: None) -> None:
    """A payload-less event: answered with a small tree."""
    await tree_out.emit(sock, Tree(1, [Tree(2)]))


@ss.on("action")
async def action(sock: Socket, value: Join | Leave) -> None:
    await presence.emit(sock, value)


@ss.on("pet")
async def pet(sock: Socket, value: Cat | Dog) -> None:
    await pet_out.emit(sock, value)


@ss.on("move")
async def move(sock: Socket, value: Point) -> None:
    await moved.emit(sock, value)


@ss.on("page")
async def page(sock: Socket, value: Page[int]) -> None:
    await page_out.emit(sock, Page([str(item) for item in value.items], value.next))


@ss.on("sparse")
async def sparse(sock: Socket, value: Sparse) -> None:
    await sparse_out.emit(sock, value)


@ss.on("profile")
async def profile(sock: Socket, value: Profile) -> None:
    await profile_out.emit(sock, value)


@ss.on("profiles")
async def profiles(sock: Socket, value: list[Profile]) -> None:
    await profiles_out.emit(sock, value)


@ss.on("paction")
async def paction(sock: Socket, value: PAction) -> None:
    await paction_out.emit(sock, value)


@ss.on("upload")
async def upload(sock: Socket, data: bytes) -> None:
    """Binary: answered with the bytes reversed."""
    await blob.emit(sock, data[::-1])


@ss.on("say")
async def say(sock: Socket, text: str) -> None:
    """Raw text: answered with a note."""
    await note.emit(sock, f"you said {text}")


@ss.on("toggle")
async def toggle(sock: Socket, value: Literal["on", "off"]) -> None:
    """A JSON string payload: the client must send it quoted."""
    await status.emit(sock, value)


@ss.on("box")
async def box(sock: Socket, value: Box) -> None:
    await box_out.emit(sock, value)


@ss.on("span")
async def span(sock: Socket, value: Span) -> None:
    await span_out.emit(sock, value)


@ss.on("options")
async def options(sock: Socket, value: Options) -> None:
    await options_out.emit(sock, value)


@ss.on("message")
async def message(sock: Socket, value: Message) -> None:
    await message_out.emit(sock, value)


@ss.on("other-message")
async def other_message(sock: Socket, value: other.Message) -> None:
    await other_message_out.emit(sock, value)


@ss.on("fail")
async def fail(sock: Socket, value: int) -> None:
    """Always raises: the client gets a handler_error."""
    raise RuntimeError(f"failing on purpose with {value}")


@ss.on("add")
async def add(sock: Socket, q: AddQuery) -> AddResult:
    """A call: the handler's return value is the reply."""
    return AddResult(q.a + q.b)


@ss.on("upper")
async def upper(sock: Socket, text: str) -> str:
    """A text reply."""
    return text.upper()


@ss.on("reverse")
async def reverse(sock: Socket, data: bytes) -> bytes:
    """A binary reply."""
    return data[::-1]


@ss.on("whois")
async def whois(sock: Socket, name: str) -> Profile:
    """A pydantic reply, by alias, with its computed field."""
    return Profile(userName=name)


@ss.on("count")
async def count(sock: Socket, items: list[int]) -> int:
    return len(items)


@ss.on("anything")
async def anything(sock: Socket, data: bytes):  # type: ignore[no-untyped-def]
    """No return annotation: the reply is not typed."""
    return {"size": len(data)}


@ss.on("refuse")
async def refuse(sock: Socket, room: str) -> None:
    """The application's own error reply."""
    raise HandlerError("not_found", f"no room {room}", data={"room": room})


@ss.on("slow")
async def slow(sock: Socket, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@ss.on("ask_confirm")
async def ask_confirm(sock: Socket, text: str) -> Answer:
    """The server calls the client back (confirm) and replies with its answer."""
    return await confirm.call(sock, Question(text), timeout=5.0)


@ss.on("ask_greet")
async def ask_greet(sock: Socket, who: str) -> str:
    return await greet.call(sock, who, timeout=5.0)


@ss.on("ask_sign")
async def ask_sign(sock: Socket, data: bytes) -> bytes:
    return await sign.call(sock, data, timeout=5.0)


@ss.on("ask_rate")
async def ask_rate(sock: Socket, text: str) -> Rating:
    return await rate.call(sock, Question(text), timeout=5.0)


@ss.on("ask_poke")
async def ask_poke(sock: Socket, n: int) -> None:
    await poke.call(sock, n, timeout=5.0)


@ss.on("ask_failing")
async def ask_failing(sock: Socket, event: str) -> str:
    """Calls the client with a call it fails, and says how it failed."""
    try:
        if event == "greet":
            await greet.call(sock, "fail", timeout=5.0)
        else:
            await sock.call(event, "x", returns=str, timeout=5.0)
    except CallError as exc:
        return f"{exc.code}: {exc.message} {json.dumps(exc.data)}"
    return "answered"


# Servers with another contract, for the fingerprint check.
refusing = Server(contract_check="refuse")
warning = Server(contract_check="warn")
for other_server in (refusing, warning):
    other_server.event("chat", Message)

app = Starlette(
    routes=[
        WebSocketRoute("/socket", ss),
        WebSocketRoute("/refuse", refusing),
        WebSocketRoute("/warn", warning),
    ],
    lifespan=ss.lifespan,
)
