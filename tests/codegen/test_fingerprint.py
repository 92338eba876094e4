"""The contract fingerprint tells every stale generated client apart, and ignores documentation.

A generated client carries the fingerprint of the contract it was generated from, and
``Server(contract_check="refuse")`` closes (4010) the clients whose fingerprint is not the server's. So
whenever a regenerated client would differ by more than documentation, the fingerprint must differ too,
or an out-of-date page passes the check. Each case below is a pair of contracts; the test asserts that
the generated clients differ (so the pair is meaningful) and then what the fingerprints must do.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import pydantic
import pytest
from websockets.exceptions import ConnectionClosed

from tests.apps import make_app
from tests.support import connect_client, running
from typed_ss import CloseCode, Contract, EventContract, Server
from typed_ss.calls import NO_REPLY
from typed_ss.codegen import CodegenError, build, generate
from typed_ss.codegen.model import canonical_types

Events = list[EventContract]


def client_text(contract: Contract) -> str:
    """The generated TypeScript module, its fingerprint masked so that only the rest is compared."""
    (module,) = [f.text for f in generate(contract, "ts") if f.name == "ss.client.ts"]
    assert contract.fingerprint in module
    return module.replace(contract.fingerprint, "<fingerprint>")


def struct(name: str = "Item", fields: list[Any] | None = None, **options: Any) -> type[msgspec.Struct]:
    """A msgspec struct made on the spot, so both sides of a pair can have a class of the same name."""
    namespace = {"__doc__": options.pop("doc")} if "doc" in options else None
    return msgspec.defstruct(
        name,
        fields if fields is not None else [("x", int, 0)],
        module=__name__,
        namespace=namespace,
        **options,
    )


def received(payload: object, name: str = "e") -> Events:
    return [EventContract(name, "server_to_client", payload)]


def sent(payload: object, name: str = "e", doc: str | None = None) -> Events:
    return [EventContract(name, "client_to_server", payload, doc)]


def returned(reply: object, payload: object = str, name: str = "e") -> Events:
    """An event the client calls, its handler returning ``reply``."""
    return [EventContract(name, "client_to_server", payload, reply=reply)]


def answered(reply: object, payload: object = str, name: str = "e") -> Events:
    """An event the server calls, the client answering ``reply``."""
    return [EventContract(name, "server_to_client", payload, reply=reply)]


def pydantic_model(name: str = "Model", doc: str | None = None, **fields: Any) -> type[pydantic.BaseModel]:
    model: type[pydantic.BaseModel] = pydantic.create_model(name, __doc__=doc, __module__=__name__, **fields)
    return model


def with_computed_field(computed: bool) -> type[pydantic.BaseModel]:
    class Model(pydantic.BaseModel):
        x: int

    if not computed:
        return Model

    class Model(pydantic.BaseModel):  # type: ignore[no-redef]
        x: int

        @pydantic.computed_field  # type: ignore[prop-decorator]
        @property
        def double(self) -> int:
            return 2 * self.x

    return Model


def dataclass_with(default: bool) -> type:
    if default:

        @dataclasses.dataclass
        class Point:
            x: int = 0

        return Point

    @dataclasses.dataclass
    class Point:  # type: ignore[no-redef]
        x: int

    return Point


def color(*values: str) -> type[enum.Enum]:
    return enum.Enum("Color", {value.upper(): value for value in values}, module=__name__)  # type: ignore[return-value]


def tagged_union(tag_field: str, tags: tuple[str, str]) -> object:
    join = struct("Join", [("room", str)], tag=tags[0], tag_field=tag_field)
    leave = struct("Leave", [("room", str)], tag=tags[1], tag_field=tag_field)
    return join | leave


Pair = tuple[Callable[[], Events], Callable[[], Events]]

DIFFERENT_CLIENTS: dict[str, Pair] = {
    # msgspec structs the server sends: the received shape follows how msgspec encodes them.
    "omit_defaults": (
        lambda: received(struct(omit_defaults=False)),
        lambda: received(struct(omit_defaults=True)),
    ),
    "omit_defaults on a nested struct": (
        lambda: received(struct("Outer", [("items", list[struct(omit_defaults=False)])])),  # type: ignore[misc]
        lambda: received(struct("Outer", [("items", list[struct(omit_defaults=True)])])),  # type: ignore[misc]
    ),
    "a default added in an omit_defaults struct": (
        lambda: received(struct(fields=[("x", int)], omit_defaults=True)),
        lambda: received(struct(fields=[("x", int, 0)], omit_defaults=True)),
    ),
    "rename": (
        lambda: received(struct(fields=[("user_id", int)])),
        lambda: received(struct(fields=[("user_id", int)], rename="camel")),
    ),
    "a field's encoded name": (
        lambda: received(struct(fields=[("ct", str)])),
        lambda: received(struct(fields=[("ct", str, msgspec.field(name="content-type"))])),
    ),
    "tag=True": (
        lambda: received(struct()),
        lambda: received(struct(tag=True)),
    ),
    "the tag field": (
        lambda: received(tagged_union("type", ("join", "leave"))),
        lambda: received(tagged_union("kind", ("join", "leave"))),
    ),
    "a tag value": (
        lambda: received(tagged_union("type", ("join", "leave"))),
        lambda: received(tagged_union("type", ("join", "part"))),
    ),
    "array_like": (
        lambda: received(struct()),
        lambda: received(struct(array_like=True)),
    ),
    "required and nullable, or optional": (
        lambda: received(struct(fields=[("x", int | None)])),
        lambda: received(struct(fields=[("x", int | msgspec.UnsetType, msgspec.UNSET)])),
    ),
    "a default added (sent by the client)": (
        lambda: sent(struct(fields=[("x", int)])),
        lambda: sent(struct(fields=[("x", int, 0)])),
    ),
    "a dataclass default (sent by the client)": (
        lambda: sent(dataclass_with(default=False)),
        lambda: sent(dataclass_with(default=True)),
    ),
    "the direction of the same type": (
        lambda: received(struct()),
        lambda: sent(struct()),
    ),
    "Literal values": (
        lambda: received(Literal["a", "b"]),
        lambda: received(Literal["a", "c"]),
    ),
    "enum values": (
        lambda: received(struct(fields=[("c", color("red", "green"))])),
        lambda: received(struct(fields=[("c", color("red", "blue"))])),
    ),
    "dict keys": (
        lambda: received(dict[str, int]),
        lambda: received(dict[Literal["a", "b"], int]),
    ),
    "the event name": (
        lambda: received(struct(), name="a"),
        lambda: received(struct(), name="b"),
    ),
    "the wire kind": (
        lambda: sent(str),
        lambda: sent(bytes),
    ),
    "the type's name": (
        lambda: received(struct("Item")),
        lambda: received(struct("Thing")),
    ),
    # Only the JSDoc that the generator derives from the type differs here, not the TypeScript
    # type, and msgspec's schema is the same for both; the decoder still rejects different values.
    "a datetime's time zone": (
        lambda: sent(struct(fields=[("at", datetime.datetime)])),
        lambda: sent(struct(fields=[("at", Annotated[datetime.datetime, msgspec.Meta(tz=False)])])),
    ),
    "a constraint": (
        lambda: sent(struct(fields=[("n", int)])),
        lambda: sent(struct(fields=[("n", Annotated[int, msgspec.Meta(ge=0)])])),
    ),
    # pydantic models: received from the serialization schema, sent from the validation schema.
    "a pydantic default (sent by the client)": (
        lambda: sent(pydantic_model(x=(int, ...))),
        lambda: sent(pydantic_model(x=(int, 0))),
    ),
    "a pydantic alias": (
        lambda: received(pydantic_model(user_name=(str, ...))),
        lambda: received(pydantic_model(user_name=(str, pydantic.Field(alias="userName")))),
    ),
    "a pydantic computed field": (
        lambda: received(with_computed_field(computed=False)),
        lambda: received(with_computed_field(computed=True)),
    ),
    "the direction of the same pydantic model": (
        lambda: received(pydantic_model(x=(int, 0))),
        lambda: sent(pydantic_model(x=(int, 0))),
    ),
    # Calls: the reply types, as the generated client's reply maps declare them.
    "a handler's return type": (
        lambda: returned(int),
        lambda: returned(struct()),
    ),
    "the reply's wire kind": (
        lambda: returned(str),
        lambda: returned(bytes),
    ),
    "omit_defaults on a returned struct (the client receives it)": (
        lambda: returned(struct(omit_defaults=False)),
        lambda: returned(struct(omit_defaults=True)),
    ),
    "a default added to the client's answer (the client sends it)": (
        lambda: answered(struct(fields=[("x", int)])),
        lambda: answered(struct(fields=[("x", int, 0)])),
    ),
    "a server event declared with a reply, or without": (
        lambda: answered(NO_REPLY),
        lambda: answered(None),
    ),
    "a pydantic alias in a reply": (
        lambda: returned(pydantic_model(user_name=(str, ...))),
        lambda: returned(pydantic_model(user_name=(str, pydantic.Field(alias="userName")))),
    ),
}


@pytest.mark.parametrize(("first", "second"), DIFFERENT_CLIENTS.values(), ids=DIFFERENT_CLIENTS.keys())
def test_contracts_whose_clients_differ_have_different_fingerprints(
    first: Callable[[], Events], second: Callable[[], Events]
) -> None:
    one, other = Contract.of(first()), Contract.of(second())
    assert client_text(one) != client_text(other)
    assert one.fingerprint != other.fingerprint


DOC_ONLY: dict[str, tuple[Pair, bool]] = {
    # name: ((first, second), whether the documentation shows in the generated client)
    "a struct's docstring": (
        (lambda: received(struct(doc="One.")), lambda: received(struct(doc="Two."))),
        True,
    ),
    "a field description": (
        (
            lambda: received(struct(fields=[("x", Annotated[int, msgspec.Meta(description="One.")])])),
            lambda: received(struct(fields=[("x", Annotated[int, msgspec.Meta(description="Two.")])])),
        ),
        True,
    ),
    "a field title": (
        (
            lambda: received(struct(fields=[("x", Annotated[int, msgspec.Meta(title="One")])])),
            lambda: received(struct(fields=[("x", Annotated[int, msgspec.Meta(title="Two")])])),
        ),
        True,
    ),
    "a field's examples": (
        (
            lambda: received(struct(fields=[("x", Annotated[int, msgspec.Meta(examples=[1])])])),
            lambda: received(struct(fields=[("x", Annotated[int, msgspec.Meta(examples=[2])])])),
        ),
        False,
    ),
    "a description next to a format": (
        (
            lambda: sent(
                struct(fields=[("at", Annotated[datetime.datetime, msgspec.Meta(description="One.")])])
            ),
            lambda: sent(
                struct(fields=[("at", Annotated[datetime.datetime, msgspec.Meta(description="Two.")])])
            ),
        ),
        True,
    ),
    "a handler's docstring": (
        (lambda: sent(struct(), doc="One."), lambda: sent(struct(), doc="Two.")),
        True,
    ),
    "a pydantic model's docstring": (
        (
            lambda: received(pydantic_model(doc="One.", x=(int, 0))),
            lambda: received(pydantic_model(doc="Two.", x=(int, 0))),
        ),
        True,
    ),
    "a pydantic field description": (
        (
            lambda: sent(pydantic_model(x=(int, pydantic.Field(0, description="One.")))),
            lambda: sent(pydantic_model(x=(int, pydantic.Field(0, description="Two.")))),
        ),
        True,
    ),
    "a returned struct's docstring": (
        (lambda: returned(struct(doc="One.")), lambda: returned(struct(doc="Two."))),
        True,
    ),
    "a pydantic field title and examples": (
        (
            lambda: sent(pydantic_model(x=(int, pydantic.Field(0, title="One", examples=[1])))),
            lambda: sent(pydantic_model(x=(int, pydantic.Field(0, title="Two", examples=[2])))),
        ),
        False,
    ),
}


@pytest.mark.parametrize(("pair", "shows"), DOC_ONLY.values(), ids=DOC_ONLY.keys())
def test_contracts_that_differ_only_in_documentation_share_the_fingerprint(pair: Pair, shows: bool) -> None:
    first, second = pair
    one, other = Contract.of(first()), Contract.of(second())
    assert (client_text(one) != client_text(other)) is shows
    assert one.fingerprint == other.fingerprint


def test_omit_defaults_changes_the_fingerprint_and_the_received_type() -> None:
    """The defect this file guards against: the schema, which describes what the server decodes, is
    the same with and without omit_defaults, but the client receives another type."""
    written, omitted = (Contract.of(received(struct(omit_defaults=omit))) for omit in (False, True))
    assert written.json_schema() == omitted.json_schema()
    assert "  x: number;" in client_text(written)
    assert "  x?: number;" in client_text(omitted)
    assert written.fingerprint != omitted.fingerprint


def test_omit_defaults_on_a_reply_changes_the_fingerprint_and_the_reply_type() -> None:
    """As above, for what a handler returns: the schema of the reply is the same, its type is not."""
    written, omitted = (Contract.of(returned(struct(omit_defaults=omit))) for omit in (False, True))
    assert written.json_schema() == omitted.json_schema()
    assert written.fingerprint != omitted.fingerprint


def test_a_contract_without_calls_is_hashed_as_before_replies_existed() -> None:
    """Events that cannot be called add nothing to what the fingerprint hashes, so the fingerprint of
    a contract without calls (and the generated types of its events) did not change with them."""
    contract = Contract.of(sent(str, "go") + received(int, "n"))
    assert canonical_types(contract) == (
        '{"declarations":[],"client_to_server":[["go","text","string"]],'
        '"server_to_client":[["n","json","number"]]}'
    )
    called = Contract.of(returned(int, name="go") + received(int, "n"))
    assert canonical_types(called) == (
        '{"declarations":[],"client_to_server":[["go","text","string","json","number"]],'
        '"server_to_client":[["n","json","number"]]}'
    )


def test_the_model_carries_the_contract_fingerprint() -> None:
    contract = Contract.of(received(struct(doc="Documented.")) + sent(str, "go", doc="Go."))
    assert build(contract).fingerprint == contract.fingerprint
    assert "Documented." not in canonical_types(contract)
    assert "Go." not in canonical_types(contract)


def test_a_contract_without_a_typescript_form_still_has_a_fingerprint() -> None:
    """The server sends the fingerprint to every client, so a contract that no client can be
    generated for (an enum with float values) must still have one."""
    Odd = enum.Enum("Odd", {"HALF": 0.5}, module=__name__)
    contract = Contract.of(received(Odd))
    with pytest.raises(CodegenError):
        build(contract)
    assert len(contract.fingerprint) == 32
    assert contract.fingerprint != Contract.of(received(color("red"))).fingerprint


async def test_refuse_closes_a_client_generated_before_omit_defaults_was_set() -> None:
    """The issue as a user meets it: the page was generated before the struct got omit_defaults."""

    def server(omit_defaults: bool) -> Server:
        ss = Server(contract_check="refuse")
        ss.event("item", struct(omit_defaults=omit_defaults))
        return ss

    stale = server(omit_defaults=False).contract.fingerprint
    ss = server(omit_defaults=True)
    async with running(make_app(ss), ss) as url:
        async with connect_client(url, path=f"/socket?ss_contract={stale}") as client:
            assert client.hello["contract"] != stale
            with pytest.raises(ConnectionClosed):
                await client.recv()
            assert client.ws.close_code == CloseCode.CONTRACT_MISMATCH
