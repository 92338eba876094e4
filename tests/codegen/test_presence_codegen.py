"""The generated clients of a server with presence on (tests/codegen/presence_app.py): the contract and its
fingerprint, the golden files (TypeScript, JavaScript and Python), tsc and mypy --strict over their
presence API (right and wrong uses), and the clients driving a real server, from node and from Python.
A server without presence keeps its contract, its fingerprint and its generated code (the golden files
of tests/codegen/app.py, checked by test_codegen.py and test_python_client.py, do not change)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest

from tests.codegen.presence_app import Card, make_app, presence_server, ss
from tests.codegen.support import HERE, JS_CLIENT, TSC, tool
from tests.support import eventually, running
from typed_ss import CallError, Contract, EventContract, Server
from typed_ss.codegen import build, generate, ir
from typed_ss.codegen.files import write
from typed_ss.codegen.naming import GENERATED_NAMES, PRESENCE_NAMES
from typed_ss.codegen.python import MODULE
from typed_ss.codegen.render import RUNTIME

pytestmark = pytest.mark.timeout(60)

SOURCE = "tests.codegen.presence_app:ss"
GOLDEN = HERE / "golden" / "presence"
UPDATE = os.environ.get("TYPED_SS_UPDATE_GOLDEN") == "1"
GENERATED = {"ts": ["ss.client.ts"], "js": ["ss.client.js", "ss.client.d.ts"], "py": [MODULE]}
CHECKS = HERE / "ts_presence"


def without_presence() -> Server[Any]:
    """The presence app's events on a server without presence."""
    plain: Server[Any] = Server()
    for name, spec in ss.handlers.items():
        if not name.startswith("__"):
            plain.on(name)(spec.handler)
    return plain


# --- the contract --------------------------------------------------------------------------------------


def test_the_contract_carries_the_presence_payload_type_and_only_with_presence() -> None:
    contract = ss.contract
    assert contract.presence is Card
    schema = contract.json_schema()
    assert schema["presence"] == {"kind": "json", "schema": {"$ref": "#/$defs/Card"}}
    assert "Card" in schema["$defs"]
    # The protocol's own call is not one of the application's events.
    assert [e.name for e in contract.events] == ["away", "join", "leave"]

    plain = without_presence().contract
    assert plain.presence is None
    assert [(e.name, e.direction) for e in plain.events] == [(e.name, e.direction) for e in contract.events]
    assert "presence" not in plain.json_schema()
    assert plain.fingerprint != contract.fingerprint
    # Without presence, the contract is what it was before presence existed.
    assert plain == Contract.of(plain.events) == Contract(plain.events)
    assert build(plain).presence is None


class Badge(msgspec.Struct, kw_only=True):
    name: str
    status: Literal["online", "away"] = "online"


class Documented(msgspec.Struct, kw_only=True):
    """Another docstring: documentation only."""

    name: str
    status: Literal["online", "away"] = "online"


def test_the_fingerprint_follows_the_presence_type_and_not_its_documentation() -> None:
    def with_presence(payload: object) -> str:
        return Contract.of(ss.contract.events, presence=payload).fingerprint

    assert with_presence(Card) == ss.contract.fingerprint
    # Another type with the same shape and another name is another generated client.
    assert with_presence(Badge) != ss.contract.fingerprint
    assert with_presence(dict[str, str]) != ss.contract.fingerprint
    documented = msgspec.defstruct(
        "Card", [("name", str), ("status", Literal["online", "away"], "online")], kw_only=True
    )
    assert with_presence(documented) == ss.contract.fingerprint  # no docstring: the same client
    assert Documented.__doc__


def test_the_client_model_has_the_presence_type_in_the_received_shape() -> None:
    model = build(ss.contract)
    assert model.presence == ir.Name("Card")
    assert {d.name for d in model.declarations} == {"Card", "CardInput"}
    plain = build(Contract.of([], presence=list[int]))
    assert plain.presence == ir.Array(ir.NUMBER)
    assert plain.declarations == ()


def test_presence_names_are_reserved_only_with_presence() -> None:
    members = msgspec.defstruct("Members", [("n", int)])
    event = msgspec.defstruct("PresenceEvent", [("n", int)])
    events = [EventContract("m", "server_to_client", members), EventContract("e", "server_to_client", event)]
    assert {d.name for d in build(Contract.of(events)).declarations} == {"Members", "PresenceEvent"}
    presence = build(Contract.of(events, presence=members))
    assert {d.name for d in presence.declarations} == {"Members_", "PresenceEvent_"}
    assert presence.presence == ir.Name("Members_")
    (module,) = [
        f for f in generate(Contract.of(events, presence=members), "ts", "x") if f.name == "ss.client.ts"
    ]
    assert f"export type Members = {RUNTIME}.Members<Members_>;" in module.text
    assert f"export type PresenceEvent = {RUNTIME}.PresenceEvent<Members_>;" in module.text


# --- the output -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["ts", "js", "py"])
def test_output_matches_the_golden_files(lang: Literal["ts", "js", "py"], tmp_path: Path) -> None:
    """Regenerate with TYPED_SS_UPDATE_GOLDEN=1 (and review the diff) after changing the generator."""
    write(tmp_path, generate(ss.contract, lang, SOURCE))
    for name in GENERATED[lang]:
        golden = GOLDEN / lang / name
        produced = (tmp_path / name).read_text()
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


@pytest.mark.parametrize("name", ["ss.client.ts", "ss.client.d.ts"])
def test_every_top_level_name_of_the_generated_module_is_reserved(name: str, tmp_path: Path) -> None:
    write(tmp_path, generate(ss.contract, "ts" if name == "ss.client.ts" else "js", SOURCE))
    module = (tmp_path / name).read_text()
    declared = set(
        re.findall(r"^export (?:declare )?(?:type|interface|const|function) (\w+)", module, re.MULTILINE)
    )
    declared |= set(re.findall(r"^const (\w+)", module, re.MULTILINE))
    declared |= set(re.findall(r"^import (?:type )?(?:\* as )?(\w+) from", module, re.MULTILINE))
    payload_types = {d.name for d in build(ss.contract).declarations}
    assert declared >= PRESENCE_NAMES
    assert declared - payload_types - {RUNTIME} <= GENERATED_NAMES | PRESENCE_NAMES


def tsc(directory: Path) -> tuple[int, str]:
    done = subprocess.run(
        [
            tool(TSC, "TypeScript (clients/js/node_modules/.bin/tsc)"),
            "-p",
            "tsconfig.json",
            "--pretty",
            "false",
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("lang", ["ts", "js"])
def test_tsc_types_the_presence_api_and_refuses_wrong_uses(lang: Literal["ts", "js"], tmp_path: Path) -> None:
    """ts_presence/usage_ok.ts compiles; every @ts-expect-error line of usage_expect_errors.ts errors."""
    shutil.copytree(CHECKS, tmp_path, dirs_exist_ok=True)
    shutil.copy(HERE / "ts" / "tsconfig.base.json", tmp_path / "tsconfig.base.json")
    write(tmp_path / "generated", generate(ss.contract, lang, SOURCE))
    status, output = tsc(tmp_path)
    assert (status, output) == (0, ""), output


USE_OK = """\
from typing import assert_type

import ss_client
from ss_client import Card
from typed_ss.client.typed import Listed, PresenceEvent


async def main() -> None:
    client = ss_client.connect("ws://127.0.0.1:8000/socket?user=ann", reconnect=False)

    @client.on_presence
    def changed(event: PresenceEvent[Card]) -> None:
        assert_type(event.presence, Card | None)
        print(event.room, event.change, event.socket)

    client.on_presence(lambda event: print(event.presence.name if event.presence else None))

    async def on_change(event: PresenceEvent[Card]) -> None: ...

    client.on_presence(on_change)
    async with client:
        await client.call.join("chat:tea")
        listed = await client.members("chat:tea", timeout=2.0)
        assert_type(listed, Listed[Card | None])
        for member in listed.members:
            assert_type(member.presence, Card | None)
            print(member.socket, member.instance)
        assert_type(listed.missing, list[str])
        assert_type(listed.truncated, bool)
"""

USE_WRONG = """\
import ss_client
from ss_client import Card
from typed_ss.client.typed import PresenceEvent


def on_int(event: PresenceEvent[int]) -> None: ...


def on_code(code: int) -> None: ...


async def main() -> None:
    async with ss_client.connect("ws://127.0.0.1:8000/socket") as client:
        client.on_presence(on_int)  # E: type-var
        client.on_presence(on_code)  # E: type-var
        await client.members(1)  # E: arg-type
        listed = await client.members("chat:tea")
        name: str = listed.members[0].presence.name  # E: union-attr
        card: Card = listed.members[0].presence  # E: assignment
        del name, card
"""


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_mypy_strict_types_the_presence_api_and_refuses_wrong_uses(tmp_path: Path) -> None:
    from mypy import api

    write(tmp_path, generate(ss.contract, "py", SOURCE))
    (tmp_path / "use_ok.py").write_text(USE_OK)
    (tmp_path / "use_wrong.py").write_text(USE_WRONG)
    (tmp_path / "mypy.ini").write_text("[mypy]\n")  # not the project's configuration
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-pretty",
            str(tmp_path / MODULE),
            str(tmp_path / "use_ok.py"),
            str(tmp_path / "use_wrong.py"),
        ]
    )
    assert not stderr, stderr
    errors = [line for line in stdout.splitlines() if ": error: " in line]
    assert not [e for e in errors if "use_wrong.py" not in e], stdout  # the module and use_ok.py pass
    found = set()
    for error in errors:
        match = re.fullmatch(r".*use_wrong\.py:(\d+): error: .*\[([a-z-]+)\]", error)
        assert match is not None, error
        found.add((int(match.group(1)), match.group(2)))
    expected = {
        (number, line.rpartition("# E: ")[2])
        for number, line in enumerate(USE_WRONG.splitlines(), start=1)
        if "# E: " in line
    }
    assert found == expected, stdout


# --- end to end ------------------------------------------------------------------------------------------


@pytest.fixture
def generated_module(tmp_path: Path) -> Iterator[Any]:
    """The generated Python module of the presence app, imported (registered in ``sys.modules`` until the
    test ends: msgspec resolves its annotations there)."""
    name = f"ss_client_presence_{id(tmp_path)}"
    (module_file,) = generate(ss.contract, "py", SOURCE)
    path = tmp_path / f"{name}.py"
    path.write_text(module_file.text)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


async def test_the_generated_python_client_drives_a_server_with_presence(generated_module: Any) -> None:
    server = presence_server()
    seen: list[Any] = []
    async with running(make_app(server), server) as url:
        ann = generated_module.connect(url + "/socket?user=ann", reconnect=False)
        bob = generated_module.connect(url + "/socket?user=bob", reconnect=False)
        carol = generated_module.connect(url + "/socket?user=carol", reconnect=False)
        assert ann.on_presence(seen.append) == seen.append
        async with ann, bob, carol:
            assert ann.contract_status == "current"
            await ann.call.join("chat:tea")
            await bob.call.join("chat:tea")
            await eventually(lambda: len(seen) == 2)
            assert [(e.change, e.socket) for e in seen] == [("joined", ann.id), ("joined", bob.id)]
            assert seen[1].presence == generated_module.Card(name="bob", status="online")
            await bob.call.away()
            listed = await ann.members("chat:tea")
            assert sorted((m.socket, m.presence.status) for m in listed.members) == sorted(
                [(ann.id, "online"), (bob.id, "away")]
            )
            assert all(isinstance(m.presence, generated_module.Card) for m in listed.members)
            assert (listed.missing, listed.truncated) == ([], False)
            with pytest.raises(CallError) as refused:
                await carol.members("chat:tea")
            assert refused.value.code == "forbidden"
            await bob.call.leave("chat:tea")
            await eventually(lambda: len(seen) == 3)
            assert (seen[2].change, seen[2].socket) == ("left", bob.id)


def test_the_generated_client_of_a_server_without_presence_has_no_presence_api(generated_module: Any) -> None:
    plain = generate(without_presence().contract, "py", "plain")[0].text
    assert "on_presence" not in plain
    assert "members" not in plain
    assert "PresenceApi" not in plain
    assert "def on_presence(" in generate(ss.contract, "py", SOURCE)[0].text
    assert hasattr(generated_module.TypedClient, "members")


def compiled_ts_client(tmp_path: Path) -> Path:
    """The --lang ts output, compiled by tsc to JavaScript next to the runtime it imports."""
    source = tmp_path / "ts"
    write(source, generate(ss.contract, "ts", SOURCE))
    out = tmp_path / "ts-out"
    subprocess.run(
        [
            tool(TSC, "TypeScript"),
            *("--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler"),
            *("--lib", "es2022,dom", "--strict", "--outDir", str(out)),
            str(source / "ss.client.ts"),
        ],
        check=True,
        timeout=120,
    )
    for name in ("ss.js", "ss.mjs", "ss-typed.js", "ss-typed.mjs"):
        shutil.copy(source / name, out / name)
    return out / "ss.client.js"


def js_client(tmp_path: Path) -> Path:
    out = tmp_path / "js"
    write(out, generate(ss.contract, "js", SOURCE))
    return out / "ss.client.js"


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("lang", ["js", "ts"])
async def test_the_generated_js_client_drives_a_server_with_presence(
    lang: Literal["js", "ts"], tmp_path: Path
) -> None:
    module = js_client(tmp_path) if lang == "js" else compiled_ts_client(tmp_path)
    (module.parent / "package.json").write_text(json.dumps({"type": "module"}))
    node = tool("node", "node")
    server = presence_server()
    async with running(make_app(server), server) as url:
        process = await asyncio.create_subprocess_exec(
            node,
            str(HERE / "e2e_presence.mjs"),
            str(module),
            url,
            str(JS_CLIENT / "package.json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    assert "not ok" not in text
    assert text.count("ok - ") == 5, text


def test_a_presence_payload_type_with_no_client_form_names_the_presence_event() -> None:
    from typed_ss.codegen import CodegenError

    class Opaque:
        pass

    with pytest.raises(CodegenError, match="__presence"):
        build(Contract.of([], presence=Opaque))
