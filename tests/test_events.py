"""Declared server events (ss.event), the contract, and the contract fingerprint check."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

import msgspec
import pydantic
import pytest
from websockets.exceptions import ConnectionClosed

from tests.apps import make_app
from tests.support import connect_client, running
from typed_ss import (
    CloseCode,
    ConfigurationError,
    EncodeError,
    HandlerSignatureError,
    InvalidName,
    Server,
    ServerEvent,
    Socket,
)


class ChatOut(msgspec.Struct):
    """A chat line as the server sends it."""

    room: str
    text: str
    tags: list[str] = []


class Profile(pydantic.BaseModel):
    name: str = pydantic.Field(alias="userName")


T = TypeVar("T")


def typed_server(**options: Any) -> tuple[Server, ServerEvent[ChatOut]]:
    ss = Server(**options)
    chat_out = ss.event("chat", ChatOut)
    status: ServerEvent[Literal["on", "off"]] = ss.event("status", Literal["on", "off"])
    blob = ss.event("blob", bytes)
    note = ss.event("note", str)

    @ss.on("go")
    async def go(sock: Socket, room: str) -> None:
        """Join ``room`` and trigger one of each declared event."""
        await sock.join(room)
        await chat_out.emit(sock, ChatOut(room, "to you"))
        await chat_out.roomcast(room, ChatOut(room, "to the room"))
        await chat_out.socketcast(sock.id, ChatOut(room, "to your id"))
        await chat_out.broadcast(ChatOut(room, "to all"))
        await status.emit(sock, "on")
        await blob.emit(sock, b"\x00\x01")
        await note.emit(sock, "plain")

    return ss, chat_out


async def test_declared_events_send_each_kind_in_its_declared_form() -> None:
    ss, _ = typed_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("go", "r")
        texts = [(await client.expect("chat")).json()["text"] for _ in range(4)]
        assert texts == ["to you", "to the room", "to your id", "to all"]
        status = await client.expect("status")
        assert (status.letter, status.payload) == ("J", '"on"')  # JSON even though the value is a str
        blob = await client.expect("blob")
        assert (blob.letter, blob.binary, blob.payload) == ("B", True, b"\x00\x01")
        note = await client.expect("note")
        assert (note.letter, note.payload) == ("S", "plain")


def test_a_declared_event_refuses_payloads_of_the_wrong_wire_form() -> None:
    ss = Server()
    blob = ss.event("blob", bytes)
    note = ss.event("note", str)
    with pytest.raises(EncodeError, match="binary"):
        blob.frame("text")  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match="text"):
        note.frame(b"bytes")  # type: ignore[arg-type]
    assert blob.frame(b"x") == b"blob\x01B\x02x"


def test_declaration_errors() -> None:
    ss = Server()
    ss.event("chat", ChatOut)
    with pytest.raises(ConfigurationError, match="already declared"):
        ss.event("chat", ChatOut)
    with pytest.raises(InvalidName):
        ss.event("__hello", ChatOut)

    class NoJson:
        pass

    with pytest.raises(HandlerSignatureError, match="cannot be decoded from JSON"):
        ss.event("odd", NoJson)


def test_the_contract_lists_both_directions_with_kinds_and_docs() -> None:
    ss, _ = typed_server()
    contract = ss.contract
    assert [(e.direction, e.name, e.kind) for e in contract.events] == [
        ("client_to_server", "go", "text"),
        ("server_to_client", "blob", "binary"),
        ("server_to_client", "chat", "json"),
        ("server_to_client", "note", "text"),
        ("server_to_client", "status", "json"),
    ]
    assert (
        contract.direction("client_to_server")[0].doc
        == "Join ``room`` and trigger one of each declared event."
    )
    schema = contract.json_schema()
    assert schema["client_to_server"]["go"]["kind"] == "text"
    assert schema["server_to_client"]["chat"] == {"kind": "json", "schema": {"$ref": "#/$defs/ChatOut"}}
    assert schema["server_to_client"]["status"]["schema"] == {"enum": ["off", "on"]}
    assert schema["$defs"]["ChatOut"]["required"] == ["room", "text"]
    assert "schema" not in schema["server_to_client"]["blob"]


def test_pydantic_payloads_are_described_by_alias() -> None:
    ss = Server()
    ss.event("profile", Profile)

    @ss.on("profile")
    async def profile(sock: Socket, p: Profile) -> None: ...

    schema = ss.contract.json_schema()
    assert schema["server_to_client"]["profile"]["schema"] == {"$ref": "#/$defs/Profile"}
    assert schema["client_to_server"]["profile"]["schema"] == {"$ref": "#/$defs/ProfileInput"}
    assert list(schema["$defs"]["Profile"]["properties"]) == ["userName"]
    assert list(schema["$defs"]["ProfileInput"]["properties"]) == ["userName"]


def test_the_fingerprint_ignores_docs_and_follows_validity() -> None:
    def build(doc: str, title_type: type) -> str:
        ss = Server()
        # A field called "title" is data, not documentation: changing its type must count.
        out = msgspec.defstruct("Out", [("title", title_type)])
        out.__doc__ = doc
        ss.event("out", out)
        return ss.contract.fingerprint

    base = build("one", str)
    assert len(base) == 32
    assert build("two", str) == base
    assert build("one", int) != base


def test_the_contract_is_rebuilt_when_events_are_added() -> None:
    ss = Server()
    before = ss.contract.fingerprint
    assert ss.contract.fingerprint == before  # cached
    ss.event("chat", ChatOut)
    assert ss.contract.fingerprint != before


@pytest.mark.parametrize(
    ("check", "stays_open"), [("warn", True), ("off", True), ("refuse", False)], ids=["warn", "off", "refuse"]
)
async def test_an_out_of_date_client_is_warned_about_or_refused(
    check: Literal["off", "warn", "refuse"], stays_open: bool, caplog: pytest.LogCaptureFixture
) -> None:
    ss, _ = typed_server(contract_check=check)
    async with running(make_app(ss), ss) as url:
        async with connect_client(url, path=f"/socket?ss_contract={ss.contract.fingerprint}") as current:
            assert current.hello["contract"] == ss.contract.fingerprint
            await current.send("go", "r")
            await current.expect("chat")
        async with connect_client(url, path="/socket?ss_contract=stale") as stale:
            if stays_open:
                await stale.send("go", "r")
                await stale.expect("chat")
            else:
                with pytest.raises(ConnectionClosed):
                    await stale.recv()
                assert stale.ws.close_code == CloseCode.CONTRACT_MISMATCH
        async with connect_client(url) as plain:  # the plain ss.js sends no fingerprint
            await plain.send("go", "r")
            await plain.expect("chat")
    warnings = [r for r in caplog.records if "generated from another contract" in r.getMessage()]
    assert len(warnings) == (0 if check == "off" else 1)


def test_a_payload_type_the_contract_cannot_describe_fails_at_registration() -> None:
    class Opaque:
        pass

    class WithOpaque(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        thing: Opaque

    ss = Server()
    with pytest.raises(ConfigurationError, match="has no JSON Schema"):
        ss.event("odd", WithOpaque)
    assert "odd" not in {e.name for e in ss.contract.events}
    assert len(ss.contract.fingerprint) == 32  # the server still describes its contract


# --- the declared payload type is checked at run time ------------------------------------------------


class Said(msgspec.Struct):
    room: str
    text: str


class LoudSaid(Said):
    volume: int = 11


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Options(TypedDict):
    verbose: bool
    level: NotRequired[int]


class Page(msgspec.Struct, Generic[T]):
    items: list[T]


@pytest.mark.parametrize(
    ("payload_type", "good", "bad"),
    [
        pytest.param(
            Said,
            [Said("r", "t"), LoudSaid("r", "t")],
            ["oops", {"room": "r", "text": "t"}, None],
            id="struct",
        ),
        pytest.param(Point, [Point(1, 2)], [{"x": 1, "y": 2}, (1, 2)], id="dataclass"),
        pytest.param(Profile, [Profile(userName="ann")], [{"userName": "ann"}, "ann"], id="pydantic-model"),
        pytest.param(str, ["x"], [b"x", 1], id="str"),
        pytest.param(bytes, [b"x", bytearray(b"x"), memoryview(b"x")], ["x"], id="bytes"),
        pytest.param(int, [0, -3], [True, 1.5, "1", None], id="int"),
        pytest.param(float, [1.5, 2], [False, "1.5"], id="float"),
        pytest.param(Literal["on", "off"], ["on", "off"], ["maybe", 1, None], id="literal"),
        pytest.param(list[int], [[], [1, 2]], [[1, "a"], [True], (1, "a"), "12"], id="list-int"),
        pytest.param(int | None, [None, 3], ["3", 3.5], id="optional-int"),
        pytest.param(
            Said | None, [None, Said("r", "t"), LoudSaid("r", "t")], [{"room": 1}, "x"], id="optional-struct"
        ),
        pytest.param(
            Options,
            [{"verbose": True}, {"verbose": False, "level": 2}],
            [{"verbose": "yes"}, {}],
            id="typeddict",
        ),
        pytest.param(Page[str], [Page(["a"])], [Page([1]), ["a"]], id="generic-struct"),
        pytest.param(
            list[Profile], [[Profile(userName="a")]], [[1], ["a"], Profile(userName="a")], id="pydantic-list"
        ),
        pytest.param(Any, [None, "x", {"a": [1]}], [], id="any"),
    ],
)
def test_a_declared_event_checks_the_payload_type_at_run_time(
    payload_type: object, good: list[object], bad: list[object]
) -> None:
    ss = Server()
    declared: ServerEvent[Any] = ss.event("ev", payload_type)
    for value in good:
        assert declared.frame(value)
    for value in bad:
        with pytest.raises(EncodeError, match="event 'ev' is declared with"):
            declared.frame(value)


def test_a_subclass_instance_is_sent_with_its_own_fields() -> None:
    ss = Server()
    said = ss.event("said", Said)
    assert said.frame(LoudSaid("r", "t")) == 'said\x01J\x02{"room":"r","text":"t","volume":11}'
    with pytest.raises(EncodeError, match="declared with payload type Said, got str"):
        said.frame("oops")  # type: ignore[arg-type]


async def test_every_way_to_send_a_declared_event_refuses_a_wrong_payload_and_sends_nothing() -> None:
    ss = Server()
    said = ss.event("said", Said)
    ss.event("status", Literal["on", "off"])
    refused: list[str] = []

    @ss.on("go")
    async def go(sock: Socket, room: str) -> None:
        await sock.join(room)
        loose: Any = said  # what mypy would refuse, as code that is not type-checked does it
        attempts: dict[str, Callable[[], Awaitable[None]]] = {
            "ServerEvent.emit": lambda: loose.emit(sock, "oops"),
            "ServerEvent.roomcast": lambda: loose.roomcast(room, "oops"),
            "ServerEvent.broadcast": lambda: loose.broadcast("oops"),
            "ServerEvent.socketcast": lambda: loose.socketcast(sock.id, "oops"),
            "Socket.emit": lambda: sock.emit("said", "oops"),
            "Socket.roomcast": lambda: sock.roomcast(room, "said", {"room": room}),
            "Socket.broadcast": lambda: sock.broadcast("said", 42),
            "Socket.socketcast": lambda: sock.socketcast(sock.id, "said", None),
            "Server.roomcast": lambda: ss.roomcast(room, "said", ["oops"]),
            "Server.broadcast": lambda: ss.broadcast("said", b"oops"),
            "Server.socketcast": lambda: ss.socketcast(sock.id, "said", "oops"),
            "Socket.emit (Literal)": lambda: sock.emit("status", "maybe"),
        }
        for name, attempt in attempts.items():
            try:
                await attempt()
            except EncodeError:
                refused.append(name)
        # A declared name sent through the untyped API goes in its declared form: JSON here.
        await sock.emit("status", "on")
        await sock.emit("said", LoudSaid(room, "fine"))
        # Undeclared names take any payload, as before.
        await sock.emit("free", "anything")
        await sock.roomcast(room, "free", {"any": "thing"})

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("go", "r")
        status_frame = await client.expect("status")  # nothing was sent before it
        assert (status_frame.letter, status_frame.payload) == ("J", '"on"')
        assert (await client.expect("said")).json() == {"room": "r", "text": "fine", "volume": 11}
        assert (await client.expect("free")).payload == "anything"
        assert (await client.expect("free")).json() == {"any": "thing"}
        await client.nothing_within(0.1)
    assert len(refused) == 12, refused


def test_a_name_emitted_before_it_is_declared_is_encoded_as_declared_from_then_on() -> None:
    ss = Server()
    assert ss.encoder("count")("7") == "count\x01S\x027"  # undeclared: a str goes as text
    ss.event("count", int)
    assert ss.encoder("count")(7) == "count\x01J\x027"
    with pytest.raises(EncodeError):
        ss.encoder("count")("7")


def test_the_server_remembers_a_bounded_number_of_event_names() -> None:
    from typed_ss.server import MAX_REMEMBERED_EVENTS

    ss = Server()
    for i in range(MAX_REMEMBERED_EVENTS + 10):
        assert ss.encoder(f"e{i}")("x") == f"e{i}\x01S\x02x"
    assert len(ss.encoders) == MAX_REMEMBERED_EVENTS
    # Past the bound a name is checked on every emit, so a bad one is still refused.
    with pytest.raises(InvalidName):
        ss.encoder("__reserved")
    with pytest.raises(InvalidName):
        ss.check_event("bad\x02name")
