"""Declared server events (ss.event), the contract, and the contract fingerprint check."""

from __future__ import annotations

from typing import Any, Literal

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
