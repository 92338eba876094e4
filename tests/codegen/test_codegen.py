"""The generator's output: golden files, names, the received/sent split, errors, the packaged runtime."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from pathlib import Path

import msgspec
import pydantic
import pytest

from tests.codegen.support import APP, HERE, JS_CLIENT, generate_app
from typed_ss import Contract, EventContract, Server, Socket
from typed_ss.codegen import CodegenError, build, generate
from typed_ss.codegen.naming import GENERATED_NAMES, assign_names
from typed_ss.codegen.render import RUNTIME
from typed_ss.codegen.runtime import CLIENT_FILES, esm_declarations, static_file, typed_esm_declarations
from typed_ss.codegen.typescript import write, write_declaration

GOLDEN = HERE / "golden"
UPDATE = os.environ.get("TYPED_SS_UPDATE_GOLDEN") == "1"
GENERATED = {"ts": ["ss.client.ts"], "js": ["ss.client.js", "ss.client.d.ts"]}


@pytest.mark.parametrize("lang", ["ts", "js"])
def test_output_matches_the_golden_files(lang: typing.Literal["ts", "js"], tmp_path: Path) -> None:
    """Regenerate with TYPED_SS_UPDATE_GOLDEN=1 (and review the diff) after changing the generator."""
    out = generate_app(tmp_path, lang)
    for name in GENERATED[lang]:
        golden = GOLDEN / lang / name
        produced = (out / name).read_text()
        if UPDATE:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(produced)
            continue
        assert golden.exists(), f"{golden} is missing: run TYPED_SS_UPDATE_GOLDEN=1 pytest {__file__}"
        assert produced == golden.read_text(), (
            f"{name} differs from {golden}; if the change is intended, "
            f"run TYPED_SS_UPDATE_GOLDEN=1 pytest {__file__} and review the diff"
        )
    if UPDATE:
        pytest.skip(f"updated the golden files in {GOLDEN / lang}: review and commit them")


def test_output_is_deterministic(tmp_path: Path) -> None:
    from tests.codegen.app import ss

    first = generate(ss.contract, "ts", APP)
    second = generate(Contract.of(reversed(ss.contract.events)), "ts", APP)
    assert first == second
    text = "".join(f.text for f in first)
    assert "\r" not in text
    assert str(Path.cwd()) not in text


def test_the_runtime_comes_from_clients_js_and_the_wheel_carries_it() -> None:
    assert {"ss.js", "ss.mjs", "ss.d.ts", "ss-typed.js", "ss-typed.mjs", "ss-typed.d.ts"} <= set(CLIENT_FILES)
    for name in CLIENT_FILES:
        assert static_file(name) == (JS_CLIENT / name).read_text()
    project = tomllib.loads((JS_CLIENT.parents[1] / "pyproject.toml").read_text())
    included = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert included == {f"clients/js/{name}": f"typed_ss/codegen/static/{name}" for name in CLIENT_FILES}


def test_the_es_module_declarations_are_ss_d_ts_with_an_es_export(tmp_path: Path) -> None:
    out = generate_app(tmp_path, "ts")
    mts = (out / "ss.d.mts").read_text()
    assert mts.endswith("\nexport default SS;\nexport { SS };\n")
    assert "\nexport = SS;" not in mts
    assert mts == esm_declarations((JS_CLIENT / "ss.d.ts").read_text())
    with pytest.raises(ValueError, match="export = SS"):
        esm_declarations("declare class SS {}\n")


def test_the_typed_runtime_declarations_for_its_es_module_import_ss_mjs(tmp_path: Path) -> None:
    out = generate_app(tmp_path, "ts")
    mts = (out / "ss-typed.d.mts").read_text()
    assert mts == typed_esm_declarations((JS_CLIENT / "ss-typed.d.ts").read_text())
    assert 'import type SS from "./ss.mjs";\n' in mts
    assert "require(" not in mts
    with pytest.raises(ValueError, match="exactly one"):
        typed_esm_declarations("export type Kind = string;\n")


@pytest.mark.parametrize("lang", ["ts", "js"])
def test_the_generated_module_holds_the_contract_and_no_runtime(
    lang: typing.Literal["ts", "js"], tmp_path: Path
) -> None:
    """The client's behaviour has one source, clients/js/ss-typed.js: the generated module only
    declares types, the contract and a `connect` that calls the runtime."""
    out = generate_app(tmp_path, lang)
    module = (out / f"ss.client.{lang}").read_text()
    functions = re.findall(r"^(?:export )?function (\w+)", module, re.MULTILINE)
    assert functions == ["connect"]
    assert f"return {RUNTIME}.connect" in module
    assert re.findall(r'from "(.+?)"', module) == (
        ["./ss.mjs", "./ss-typed.mjs"] if lang == "ts" else ["./ss-typed.mjs"]
    )
    assert "new SS(" not in module


@pytest.mark.parametrize("name", ["ss.client.ts", "ss.client.d.ts"])
def test_every_top_level_name_of_the_generated_module_is_reserved(name: str, tmp_path: Path) -> None:
    """A payload type named like one of these would shadow it; naming renames such types (and never
    makes a name that starts with `_` and a letter, which the module uses for the runtime)."""
    from tests.codegen.app import ss

    out = generate_app(tmp_path, "ts" if name == "ss.client.ts" else "js")
    module = (out / name).read_text()
    declared = set(
        re.findall(r"^export (?:declare )?(?:type|interface|const|function) (\w+)", module, re.MULTILINE)
    )
    declared |= set(re.findall(r"^const (\w+)", module, re.MULTILINE))
    declared |= set(re.findall(r"^import (?:type )?(?:\* as )?(\w+) from", module, re.MULTILINE))
    model = build(ss.contract)
    payload_types = {d.name for d in model.declarations}
    assert RUNTIME in declared
    assert declared - payload_types - {RUNTIME} <= GENERATED_NAMES
    assert re.fullmatch(r"_[A-Za-z]\w*", RUNTIME)


def test_no_payload_type_name_starts_with_an_underscore_and_a_letter() -> None:
    sources: list[object] = ["_runtime", "__x", "_1st", "__", msgspec.defstruct("_Hidden", [("a", int)])]
    names = assign_names(sources)
    assert names == ["runtime", "x", "_1st", "Type", "Hidden"]
    assert not any(re.match(r"_[A-Za-z]", name) for name in names)


def declarations(*events: EventContract) -> dict[str, str]:
    model = build(Contract.of(events))
    return {d.name: write_declaration(d) for d in model.declarations}


class Msg(msgspec.Struct):
    text: str


class Plain(msgspec.Struct):
    a: int


class WithDefault(msgspec.Struct):
    inner: Plain
    n: int = 0


class Holder(msgspec.Struct):
    """Differs only through what it contains."""

    items: list[WithDefault]


def test_only_types_whose_sent_shape_differs_get_an_input_type() -> None:
    decls = declarations(EventContract("h", "client_to_server", Holder))
    assert sorted(decls) == ["Holder", "HolderInput", "Plain", "WithDefault", "WithDefaultInput"]
    assert "items: WithDefaultInput[];" in decls["HolderInput"]
    assert "items: WithDefault[];" in decls["Holder"]
    assert "n?: number;" in decls["WithDefaultInput"]
    assert "n: number;" in decls["WithDefault"]


def test_same_named_types_are_all_module_qualified() -> None:
    from tests.codegen import app, other

    decls = declarations(
        EventContract("a", "server_to_client", app.Message),
        EventContract("b", "server_to_client", other.Message),
        EventContract("c", "server_to_client", Msg),
    )
    assert sorted(decls) == [
        "Msg",
        "tests_codegen_app_Message",
        "tests_codegen_other_Message",
        "tests_codegen_other_MessageInput",
    ]
    # A name used once stays short.
    alone = declarations(EventContract("b", "server_to_client", other.Message))
    assert list(alone) == ["Message", "MessageInput"]


def test_names_that_would_shadow_the_generated_code_are_changed() -> None:
    record = msgspec.defstruct("Record", [("a", int)])
    typed = msgspec.defstruct("TypedClient", [("a", int)])
    holder = msgspec.defstruct("Holder2", [("r", record), ("t", typed)])
    decls = declarations(EventContract("x", "server_to_client", holder))
    assert sorted(decls) == ["Holder2", "Record_", "TypedClient_"]
    assert "r: Record_;" in decls["Holder2"]


def test_an_input_name_taken_by_another_type_is_numbered() -> None:
    foo = msgspec.defstruct("Foo", [("a", int, 0)])
    foo_input = msgspec.defstruct("FooInput", [("b", int)])
    both = msgspec.defstruct("Both", [("foo", foo), ("foo_input", foo_input)])
    decls = declarations(EventContract("x", "client_to_server", both))
    assert {"Foo", "FooInput", "Foo_Input"} <= set(decls)
    assert "a?: number;" in decls["Foo_Input"]
    assert "b: number;" in decls["FooInput"]


def test_docstrings_cannot_end_the_comment() -> None:
    tricky = msgspec.defstruct("Tricky", [("a", int)])
    tricky.__doc__ = "Ends here */ or not."
    decls = declarations(EventContract("x", "server_to_client", tricky))
    assert "/** Ends here *\\/ or not. */" in decls["Tricky"]


class Weird:
    """A class msgspec has no JSON form for."""


class HasWeird(msgspec.Struct):
    fine: int
    weird: Weird


class HasExt(msgspec.Struct):
    ext: msgspec.msgpack.Ext


class Arbitrary(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)

    name: str
    weird: Weird


def test_an_unsupported_msgspec_type_names_the_event_and_the_field() -> None:
    with pytest.raises(CodegenError) as caught:
        build(Contract.of([EventContract("odd", "server_to_client", list[HasWeird])]))
    message = str(caught.value)
    assert "event 'odd' (server to client)" in message
    assert "field HasWeird.weird" in message
    assert "Weird" in message
    with pytest.raises(CodegenError, match=r"event 'ext' \(client to server\), field HasExt.ext"):
        build(Contract.of([EventContract("ext", "client_to_server", HasExt)]))


def test_an_unsupported_pydantic_type_names_the_event_and_the_field() -> None:
    # pydantic validates it but has no JSON Schema for it. Server.event refuses it at registration
    # (tests/test_events.py); the generator must refuse it too when handed such a contract.
    contract = Contract.of(
        [
            EventContract("arbitrary", "server_to_client", Arbitrary),
            EventContract("fine", "client_to_server", int),
        ]
    )
    with pytest.raises(CodegenError) as caught:
        build(contract)
    message = str(caught.value)
    assert "event 'arbitrary' (server to client)" in message
    assert "field Arbitrary.weird" in message


def test_an_enum_value_without_a_json_form_is_refused() -> None:
    import enum

    class Ratio(enum.Enum):
        HALF = 0.5

    holder = msgspec.defstruct("HasRatio", [("ratio", Ratio)])
    with pytest.raises(CodegenError, match=r"event 'r' .*field HasRatio.ratio: msgspec cannot describe it"):
        build(Contract.of([EventContract("r", "server_to_client", holder)]))


def test_a_handler_annotated_none_takes_a_json_null() -> None:
    ss = Server()

    @ss.on("ping")
    async def ping(sock: Socket, payload: None) -> None: ...

    (event,) = ss.contract.events
    assert (event.payload_type, event.kind) == (type(None), "json")
    model = build(ss.contract)
    assert write(model.client_to_server[0].payload) == "null"


def test_the_contract_tells_same_named_types_apart() -> None:
    """Two msgspec types with one name, and a pydantic model sharing an enum with a struct."""
    from tests.codegen import app, other

    contract = Contract.of(
        [
            EventContract("a", "server_to_client", Msg),
            EventContract("b", "server_to_client", other.Message),
            EventContract("c", "server_to_client", app.Message),
            EventContract("d", "server_to_client", app.ChatMessage),
            EventContract("e", "server_to_client", app.Profile),
        ]
    )
    schema = contract.json_schema()
    assert {"tests.codegen.other.Message", "tests.codegen.app.Message", "Color", "Profile"} <= set(
        schema["$defs"]
    )
    assert len(contract.fingerprint) == 32


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


def test_wire_kinds_and_payload_types_of_the_event_maps() -> None:
    model = build(
        Contract.of(
            [
                EventContract("raw", "client_to_server", bytes),
                EventContract("text", "client_to_server", str),
                EventContract("point", "client_to_server", Point),
                EventContract("raw", "server_to_client", bytes),
                EventContract("point", "server_to_client", Point),
            ]
        )
    )
    sent = {e.name: (e.kind, write(e.payload)) for e in model.client_to_server}
    received = {e.name: (e.kind, write(e.payload)) for e in model.server_to_client}
    assert sent == {
        "raw": ("binary", "BinaryOut"),
        "text": ("text", "string"),
        "point": ("json", "PointInput"),
    }
    assert received == {"raw": ("binary", "BinaryIn"), "point": ("json", "Point")}


class Item(msgspec.Struct):
    """A reply type with a default: its received and sent shapes differ."""

    x: int = 0


class Rated(pydantic.BaseModel):
    stars: int = pydantic.Field(0, alias="starCount")

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> int:
        return 2 * self.stars


def test_replies_are_typed_in_the_shape_they_travel() -> None:
    """A handler's return value is what the client receives; its answer to a server's call is what it
    sends. Binary replies are BinaryIn and BinaryOut accordingly."""
    from typed_ss.calls import NO_REPLY

    model = build(
        Contract.of(
            [
                EventContract("get", "client_to_server", str, reply=Item),
                EventContract("raw", "client_to_server", str, reply=bytes),
                EventContract("text", "client_to_server", str, reply=str),
                EventContract("ack", "client_to_server", str, reply=type(None)),
                EventContract("any", "client_to_server", str, reply=typing.Any),
                EventContract("model", "client_to_server", str, reply=Rated),
                EventContract("ask", "server_to_client", str, reply=Item),
                EventContract("sign", "server_to_client", str, reply=bytes),
                EventContract("rate", "server_to_client", str, reply=Rated),
                EventContract("poke", "server_to_client", str, reply=None),
                EventContract("news", "server_to_client", str),
                EventContract("legacy", "client_to_server", str, reply=NO_REPLY),
            ]
        )
    )
    replies = {
        e.name: (e.reply_kind, None if e.reply is None else write(e.reply), e.callable)
        for e in model.client_to_server + model.server_to_client
    }
    assert replies == {
        "get": ("json", "Item", True),
        "raw": ("binary", "BinaryIn", True),
        "text": ("text", "string", True),
        "ack": ("json", "null", True),
        "any": ("json", "unknown", True),
        "model": ("json", "Rated", True),
        "ask": ("json", "ItemInput", True),
        "sign": ("binary", "BinaryOut", True),
        "rate": ("json", "RatedInput", True),
        "poke": ("json", "null", True),
        "news": (None, None, False),
        "legacy": (None, None, False),
    }
    decls = {d.name: write_declaration(d) for d in model.declarations}
    assert "  x: number;" in decls["Item"]
    assert "  x?: number;" in decls["ItemInput"]
    assert "starCount: number;" in decls["Rated"]
    assert "double: number;" in decls["Rated"]
    assert "starCount?: number;" in decls["RatedInput"]
    assert "double" not in decls["RatedInput"]


@pytest.mark.parametrize(
    ("reply", "field"),
    [(list[HasWeird], "field HasWeird.weird"), (Arbitrary, "field Arbitrary.weird")],
    ids=["msgspec", "pydantic"],
)
def test_an_unsupported_reply_type_names_the_event_and_the_reply(reply: object, field: str) -> None:
    for direction, shown in (
        ("client_to_server", "client to server"),
        ("server_to_client", "server to client"),
    ):
        contract = Contract.of([EventContract("odd", direction, str, reply=reply)])  # type: ignore[arg-type]
        with pytest.raises(CodegenError) as caught:
            build(contract)
        assert f"event 'odd' ({shown}), the reply, {field}" in str(caught.value)


@pytest.mark.parametrize("lang", ["ts", "js"])
def test_the_generated_module_frames_the_clients_replies(
    lang: typing.Literal["ts", "js"], tmp_path: Path
) -> None:
    """The runtime learns the wire kind of each reply the client gives, and only of those."""
    out = generate_app(tmp_path, lang)
    module = (out / f"ss.client.{lang}").read_text()
    kinds = re.search(r"const CLIENT_REPLY_KINDS[^=]*= \{\n(.*?)\};", module, re.DOTALL)
    assert kinds is not None
    assert kinds[1].splitlines() == [
        '  confirm: "json",',
        '  greet: "text",',
        '  poke: "json",',
        '  rate: "json",',
        '  sign: "binary",',
    ]
    assert "replyKinds: CLIENT_REPLY_KINDS" in module
