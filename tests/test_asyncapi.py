"""``typed-ss asyncapi``: the AsyncAPI 3.0 document of a server's contract.

The document's structure is checked here in Python (every event a message and an operation, the
directions, calls and their replies, the protocol's own messages, every reference resolving, the
schema rewrites), and its validity by the official AsyncAPI parser (``@asyncapi/parser``, pinned in
tools/asyncapi/package.json and installed by ``make setup``) under node, through
``tests/asyncapi/validate.mjs``: over tests/asyncapi/app.py (every case the generator maps),
tests/codegen/app.py (every type the client generator maps), the tutorial's app, the typed chat and
tests/codegen/presence_app.py (a server with presence on).
Broken documents must fail the same check, so it is known to catch what it is there for.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
from click.testing import CliRunner, Result

from typed_ss import Server
from typed_ss.asyncapi import ERROR_CODES, _converted, asyncapi_document, render
from typed_ss.cli import main
from typed_ss.cluster import Listed, ListedMember, MembersQuestion, PresenceNotice
from typed_ss.contract import Contract
from typed_ss.protocol import ErrorPayload, ErrorReply, Gap, Hello

ROOT: Final = Path(__file__).resolve().parent.parent
VALIDATE: Final = ROOT / "tests" / "asyncapi" / "validate.mjs"
PARSER: Final = ROOT / "tools" / "asyncapi" / "node_modules" / "@asyncapi" / "parser" / "package.json"
APP: Final = "tests.asyncapi.app:ss"
PRESENCE_APP: Final = "tests.codegen.presence_app:ss"
APPS: Final = [
    APP,
    "tests.codegen.app:ss",
    "examples.tutorial.app:ss",
    "examples.typed_chat.app:ss",
    PRESENCE_APP,
]

# The one diagnostic the parser gives a valid document: AsyncAPI 3.1 exists, and the document is 3.0,
# as asked for (3.0 is what most tools read).
EXPECTED_DIAGNOSTICS: Final = [("information", "asyncapi-latest-version", ("asyncapi",))]
CONTENT_TYPES: Final = {
    "json": "application/json",
    "text": "text/plain",
    "binary": "application/octet-stream",
}
_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")  # AsyncAPI's pattern for component keys


def contract_of(target: str) -> Contract:
    module, _, attribute = target.partition(":")
    server = getattr(__import__(module, fromlist=[attribute]), attribute)
    assert isinstance(server, Server)
    return server.contract


def document_of(target: str) -> dict[str, Any]:
    return asyncapi_document(contract_of(target), title=target)


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The node a local ``$ref`` points at (a JSON pointer); fails when there is none."""
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref} does not resolve"
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object in the document, with its path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


def operation_messages(document: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [resolve(document, ref["$ref"]) for ref in operation["messages"]]


def reply_messages(document: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [resolve(document, ref["$ref"]) for ref in operation["reply"]["messages"]]


def message(document: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = document["channels"]["socket"]["messages"][key]
    return found


# --- the structure -----------------------------------------------------------------------------------


def test_every_event_is_a_message_and_an_operation_from_the_servers_point_of_view() -> None:
    contract = contract_of(APP)
    document = document_of(APP)
    operations = document["operations"]
    assert len(operations) == len(contract.events) + 3  # and __hello, __error, __gap
    seen = set()
    for key, operation in operations.items():
        assert operation["channel"] == {"$ref": "#/channels/socket"}
        (sent,) = operation_messages(document, operation)
        direction = "client_to_server" if operation["action"] == "receive" else "server_to_client"
        event = next((e for e in contract.events if (e.name, e.direction) == (sent["name"], direction)), None)
        if event is None:
            assert sent["name"] in ("__hello", "__error", "__gap"), key
            assert operation["action"] == "send"
            continue
        seen.add((event.direction, event.name))
        # The server receives what clients send, and sends what it declares.
        sender = "client" if event.direction == "client_to_server" else "server"
        assert key == f"{operation['action']}.{key.partition('.')[2]}"
        assert sent["x-sac-sock"]["event"] == event.name
        assert sent["contentType"] == CONTENT_TYPES[event.kind]
        assert sent["x-sac-sock"]["frame"] == ("binary" if event.kind == "binary" else "text")
        if sender == "server":
            assert sent["x-sac-sock"]["typeLetter"] == {"json": "J", "text": "S", "binary": "B"}[event.kind]
        else:
            assert "typeLetter" not in sent["x-sac-sock"]
        if event.kind != "json":
            assert sent["payload"]["type"] == "string"
        if not event.callable:
            assert "reply" not in operation, key
            assert sent["x-sac-sock"]["flags"] == [""]
            continue
        assert sent["x-sac-sock"]["flags"] == ["", "c<id>"]
        assert operation["reply"]["channel"] == {"$ref": "#/channels/socket"}
        reply, failure = reply_messages(document, operation)
        assert (reply["name"], failure["name"]) == (event.name, event.name)
        assert reply["x-sac-sock"]["flags"] == ["r<id>"]
        assert failure["x-sac-sock"]["flags"] == ["e<id>"]
        assert reply["contentType"] == CONTENT_TYPES[event.reply_kind]
        assert failure["payload"] == {"$ref": "#/components/schemas/sac-sock.ErrorReply"}
        # The answer goes the other way: its sender is the one that was called.
        assert ("typeLetter" in reply["x-sac-sock"]) == (sender == "client")
    assert seen == {(e.direction, e.name) for e in contract.events}


def test_payloads_and_replies_each_way() -> None:
    document = document_of(APP)
    schemas = document["components"]["schemas"]
    # What clients send is what the server validates; what it sends is what it serialises.
    assert message(document, "client.profile")["payload"] == {"$ref": "#/components/schemas/ProfileInput"}
    assert message(document, "server.profile")["payload"] == {"$ref": "#/components/schemas/Profile"}
    assert schemas["Profile"]["properties"].keys() == {"userName", "age"}  # by alias
    # A handler's return value is the reply: a struct, None (an acknowledgement), unannotated (any JSON).
    assert message(document, "server.ask.reply")["payload"] == {"$ref": "#/components/schemas/Answer"}
    assert message(document, "server.forget.reply")["payload"] == {"type": "null"}
    assert "acknowledgement" in message(document, "server.forget.reply")["description"]
    assert message(document, "server.untyped.reply")["payload"] == {}
    assert message(document, "server.upper.reply")["contentType"] == "text/plain"
    assert message(document, "server.echo.reply")["payload"]["format"] == "binary"
    # A declared event's reply= is what the client answers with.
    assert message(document, "client.confirm.reply")["payload"] == {"$ref": "#/components/schemas/Confirmed"}
    assert message(document, "client.name-please.reply")["contentType"] == "text/plain"
    assert message(document, "client.file-please.reply")["contentType"] == "application/octet-stream"
    assert message(document, "client.ping.reply")["payload"] == {"type": "null"}
    assert "reply" not in document["operations"]["send.answer"]
    # Unions and Literals, a tagged union (its discriminator kept as an extension), a tuple.
    assert message(document, "client.forget")["payload"] == {
        "anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]
    }
    assert message(document, "server.light")["payload"] == {"enum": ["green", "red"]}
    move = message(document, "client.move")["payload"]
    assert move["x-discriminator"]["mapping"] == {
        "Join": "#/components/schemas/Join",
        "Leave": "#/components/schemas/Leave",
    }
    assert "discriminator" not in move
    assert message(document, "server.move.reply")["payload"] == {
        "type": "array",
        "minItems": 2,
        "maxItems": 2,
        "items": [{"type": "integer"}, {"type": "string"}],
        "additionalItems": False,
    }
    # A $ref with a default beside it (draft 07 would ignore the default), and a recursive struct.
    assert schemas["Query"]["properties"]["mood"] == {
        "allOf": [{"$ref": "#/components/schemas/Mood"}],
        "default": "calm",
    }
    assert schemas["Tree"]["properties"]["children"]["items"] == {"$ref": "#/components/schemas/Tree"}
    # Docstrings: the summary is the first paragraph, the description all of it.
    ask = message(document, "client.ask")
    assert ask["summary"] == "Ask a question."
    assert ask["description"].startswith("Ask a question.\n\nThe answer is scored.")


def test_event_names_that_are_not_identifiers() -> None:
    document = document_of(APP)
    operations = document["operations"]
    named = {key: operation_messages(document, operation)[0]["name"] for key, operation in operations.items()}
    # A name that needs no cleaning keeps it; a cleaned one that clashes gets a number.
    assert named["receive.a_b"] == "a_b"
    assert named["receive.a_b_2"] == "a.b"
    assert named["receive.caf_"] == "café"
    assert named["receive.chat_message"] == "chat:message"
    assert named["send.hello"] == "hello"
    # The app's Hello struct and the protocol's __hello payload have schemas of their own.
    schemas = document["components"]["schemas"]
    assert schemas["Hello"]["properties"].keys() == {"greeting"}
    assert schemas["sac-sock.Hello"]["properties"].keys() >= {"contract", "max_calls"}


@pytest.mark.parametrize(
    ("struct", "name"),
    [(Hello, "Hello"), (ErrorPayload, "Error"), (ErrorReply, "ErrorReply"), (Gap, "Gap")],
)
def test_the_protocols_own_schemas_match_its_structs(struct: type[msgspec.Struct], name: str) -> None:
    # Written by hand in typed_ss/asyncapi.py: a field added to the protocol must be added there too.
    schema = document_of(APP)["components"]["schemas"][f"sac-sock.{name}"]
    fields = msgspec.structs.fields(struct)
    assert list(schema["properties"]) == [f.encode_name for f in fields]
    assert schema["required"] == [f.encode_name for f in fields if f.required]


def test_presence_adds_its_event_and_its_call_and_only_with_presence() -> None:
    document = document_of(PRESENCE_APP)
    operations = document["operations"]
    assert len(operations) == len(contract_of(PRESENCE_APP).events) + 5  # and __presence, __members
    schemas = document["components"]["schemas"]

    (event,) = operation_messages(document, operations["send.__presence"])
    assert event == message(document, "server.__presence")
    assert event["payload"] == {"$ref": "#/components/schemas/sac-sock.PresenceEvent"}
    assert event["x-sac-sock"] == {"event": "__presence", "frame": "text", "typeLetter": "J", "flags": [""]}
    notice = schemas["sac-sock.PresenceEvent"]["properties"]
    assert notice["change"] == {"enum": ["joined", "left"]}
    # The application's presence payload, or null.
    assert notice["presence"]["anyOf"] == [{"$ref": "#/components/schemas/Card"}, {"type": "null"}]
    assert schemas["Card"]["properties"].keys() == {"name", "status"}

    call = operations["receive.__members"]
    (question,) = operation_messages(document, call)
    assert question["payload"] == {"$ref": "#/components/schemas/sac-sock.MembersQuestion"}
    assert question["x-sac-sock"] == {"event": "__members", "frame": "text", "flags": ["c<id>"]}
    reply, failure = reply_messages(document, call)
    assert reply["payload"] == {"$ref": "#/components/schemas/sac-sock.Members"}
    assert reply["x-sac-sock"]["flags"] == ["r<id>"]
    assert failure["payload"] == {"$ref": "#/components/schemas/sac-sock.ErrorReply"}
    assert "`forbidden`" in failure["description"]
    members = schemas["sac-sock.Members"]["properties"]["members"]
    assert members["items"] == {"$ref": "#/components/schemas/sac-sock.Member"}
    assert schemas["sac-sock.Member"]["properties"]["presence"] == notice["presence"]
    assert "## Presence" in document["info"]["description"]

    plain = document_of(APP)
    assert not {"send.__presence", "receive.__members"} & plain["operations"].keys()
    assert not [name for name in plain["components"]["schemas"] if "Member" in name or "Presence" in name]
    assert "## Presence" not in plain["info"]["description"]


@pytest.mark.parametrize(
    ("struct", "name"),
    [
        (PresenceNotice, "PresenceEvent"),
        (MembersQuestion, "MembersQuestion"),
        (Listed, "Members"),
        (ListedMember, "Member"),
    ],
)
def test_the_presence_schemas_match_the_servers_structs(struct: type[msgspec.Struct], name: str) -> None:
    schema = document_of(PRESENCE_APP)["components"]["schemas"][f"sac-sock.{name}"]
    fields = msgspec.structs.fields(struct)
    assert list(schema["properties"]) == [f.encode_name for f in fields]
    assert schema["required"] == [f.encode_name for f in fields if f.required]


def test_hello_error_and_the_error_reply_codes() -> None:
    document = document_of(APP)
    assert operation_messages(document, document["operations"]["send.__hello"]) == [
        message(document, "server.__hello")
    ]
    assert operation_messages(document, document["operations"]["send.__error"]) == [
        message(document, "server.__error")
    ]
    assert message(document, "server.__hello")["payload"] == {"$ref": "#/components/schemas/sac-sock.Hello"}
    assert message(document, "server.__error")["payload"] == {"$ref": "#/components/schemas/sac-sock.Error"}
    code = document["components"]["schemas"]["sac-sock.ErrorReply"]["properties"]["code"]
    assert code["examples"] == list(ERROR_CODES)
    assert ERROR_CODES == ("invalid_payload", "handler_error", "unknown_event", "too_many_calls")
    description = document["info"]["description"]
    for code_name in ERROR_CODES:
        assert f"`{code_name}`" in description
    for text in ("0x01", "0x02", "`S`", "`B`", "`J`", "`c<id>`", "`r<id>`", "`e<id>`", "**server**"):
        assert text in description, text


def test_server_and_channel() -> None:
    document = document_of(APP)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["version"] == contract_of(APP).fingerprint
    (server,) = document["servers"].values()
    assert server["protocol"] == "ws"
    assert "`sac-sock`" in server["description"]
    (channel,) = document["channels"].values()
    binding = channel["bindings"]["ws"]
    assert binding["method"] == "GET"
    assert "ss_contract" in binding["query"]["properties"]
    assert "sac-sock" in binding["headers"]["properties"]["Sec-WebSocket-Protocol"]["description"]


@pytest.mark.parametrize("target", APPS)
def test_every_reference_resolves_and_only_asyncapi_schema_keywords_are_left(target: str) -> None:
    document = document_of(target)
    assert all(_KEY.match(key) for key in document["components"]["schemas"])
    assert all(_KEY.match(key) for key in document["channels"]["socket"]["messages"])
    assert all(_KEY.match(key) for key in document["operations"])
    refs = 0
    for path, node in walk(document):
        if isinstance(node.get("$ref"), str):
            resolve(document, node["$ref"])
            refs += 1
            # Draft 07 ignores a $ref's siblings, so there are none.
            assert set(node) == {"$ref"}, path
        assert "$defs" not in node, path
        assert "prefixItems" not in node, path
        # AsyncAPI's discriminator is a string; OpenAPI-style objects are kept as x-discriminator.
        assert not isinstance(node.get("discriminator"), dict), path
    assert refs > 0
    # Each operation's messages and reply messages are the channel's own.
    prefix = "#/channels/socket/messages/"
    for operation in document["operations"].values():
        for ref in [*operation["messages"], *operation.get("reply", {}).get("messages", [])]:
            assert ref["$ref"].startswith(prefix)


def test_the_schema_rewrites_touch_schemas_and_not_data() -> None:
    refs = {"Point": "Point", "Page[int]": "Page_int_"}
    schema = {
        "type": "object",
        "properties": {
            # Fields named like keywords are names, not keywords.
            "$ref": {"type": "string", "default": {"$ref": "#/$defs/Point", "prefixItems": []}},
            "prefixItems": {"$ref": "#/$defs/Page[int]", "description": "a page"},
            "pair": {"type": "array", "prefixItems": [{"$ref": "#/$defs/Point"}], "items": False},
            "open": {"type": "array", "prefixItems": [{"type": "integer"}]},
            "tagged": {
                "anyOf": [{"$ref": "#/$defs/Point"}],
                "discriminator": {"propertyName": "kind", "mapping": {"p": "#/$defs/Point"}},
            },
        },
        "enum": [{"discriminator": {"a": 1}}],
    }
    assert _converted(schema, refs) == {
        "type": "object",
        "properties": {
            "$ref": {"type": "string", "default": {"$ref": "#/$defs/Point", "prefixItems": []}},
            "prefixItems": {"allOf": [{"$ref": "#/components/schemas/Page_int_"}], "description": "a page"},
            "pair": {
                "type": "array",
                "items": [{"$ref": "#/components/schemas/Point"}],
                "additionalItems": False,
            },
            "open": {"type": "array", "items": [{"type": "integer"}]},
            "tagged": {
                "anyOf": [{"$ref": "#/components/schemas/Point"}],
                "x-discriminator": {"propertyName": "kind", "mapping": {"p": "#/components/schemas/Point"}},
            },
        },
        "enum": [{"discriminator": {"a": 1}}],
    }


# --- the command ---------------------------------------------------------------------------------------


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_asyncapi_prints_the_document() -> None:
    result = run("asyncapi", APP)
    assert result.exit_code == 0, result.output
    assert result.stdout == render(document_of(APP))
    assert "asyncapi" in run("--help").output


def test_out_writes_the_file_and_then_leaves_it_alone(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "asyncapi.json"
    first = run("asyncapi", APP, "--out", str(out))
    assert (first.exit_code, first.stdout) == (0, f"wrote {out}\n")
    assert json.loads(out.read_text()) == json.loads(json.dumps(document_of(APP)))
    assert sorted(p.name for p in out.parent.iterdir()) == ["asyncapi.json"]  # no partial file left
    mtime = out.stat().st_mtime_ns
    second = run("asyncapi", APP, "--out", str(out))
    assert (second.exit_code, second.stdout) == (0, f"{out}: up to date\n")
    assert out.stat().st_mtime_ns == mtime
    out.write_text("{}")
    assert run("asyncapi", APP, "--out", str(out)).stdout == f"wrote {out}\n"
    assert out.read_text() == render(document_of(APP))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module:ss", 'Could not import module "no_such_module".'),
        ("tests.asyncapi.app:nope", 'Attribute "nope" not found in module "tests.asyncapi.app".'),
        ("tests.asyncapi.app", 'Import string "tests.asyncapi.app" must be in format'),
    ],
)
def test_import_failures_exit_2_with_one_line(target: str, message: str, tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    result = run("asyncapi", target, "--out", str(out))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}")
    assert result.stderr.count("\n") == 1, result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_the_document_is_the_same_in_every_process() -> None:
    # Hash randomisation changes the order of sets and of anything built from them: run it twice,
    # with different seeds, outside this process.
    outputs = [
        subprocess.run(
            [sys.executable, "-m", "typed_ss", "asyncapi", APP],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert outputs[0] == outputs[1] == render(document_of(APP))


# --- the official parser ---------------------------------------------------------------------------------


def validate(*documents: Path) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    """Run tests/asyncapi/validate.mjs over ``documents``: its exit code and each one's diagnostics."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: Node 20 is needed (README.md, 'Set up')")
    if not PARSER.is_file():
        pytest.fail(f"@asyncapi/parser is missing ({PARSER.parent}); run `make setup`")
    done = subprocess.run(
        [node, str(VALIDATE), *map(str, documents)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, list[dict[str, Any]]] = json.loads(done.stdout)
    return done.returncode, report


def diagnostics(found: list[dict[str, Any]]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(d["severity"], d["code"], tuple(d["path"])) for d in found]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_official_parser_accepts_every_document(tmp_path: Path) -> None:
    paths = []
    for target in APPS:
        path = tmp_path / f"{target.replace(':', '_')}.json"
        result = run("asyncapi", target, "--out", str(path))
        assert result.exit_code == 0, result.output
        paths.append(path)
    returncode, report = validate(*paths)
    for path in paths:
        assert diagnostics(report[str(path)]) == EXPECTED_DIAGNOSTICS, (path.name, report[str(path)])
    assert returncode == 0


def broken_documents() -> dict[str, tuple[dict[str, Any], str, tuple[str, ...]]]:
    """Documents made invalid on purpose, each with the diagnostic code and path the parser must give."""
    document = document_of(APP)
    broken: dict[str, tuple[dict[str, Any], str, tuple[str, ...]]] = {}

    no_action = copy.deepcopy(document)
    del no_action["operations"]["receive.ask"]["action"]
    broken["no_action"] = (no_action, "asyncapi-document-resolved", ("operations", "receive.ask"))

    missing_reply = copy.deepcopy(document)
    missing_reply["operations"]["receive.ask"]["reply"]["messages"].append(
        {"$ref": "#/channels/socket/messages/server.nothing.reply"}
    )
    broken["missing_reply"] = (
        missing_reply,
        "invalid-ref",
        ("operations", "receive.ask", "reply", "messages", "2", "$ref"),
    )

    # The rewrite the generator makes: without it, pydantic's and msgspec's discriminators are errors.
    discriminator = copy.deepcopy(document)
    move = discriminator["channels"]["socket"]["messages"]["client.move"]["payload"]
    move["discriminator"] = move.pop("x-discriminator")
    broken["discriminator"] = (
        discriminator,
        "asyncapi-document-resolved",
        ("channels", "socket", "messages", "client.move", "payload", "discriminator"),
    )

    unknown_action = copy.deepcopy(document)
    unknown_action["operations"]["send.__hello"]["action"] = "publish"  # AsyncAPI 2's word
    broken["unknown_action"] = (
        unknown_action,
        "asyncapi-document-resolved",
        ("operations", "send.__hello", "action"),
    )
    return broken


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_official_parser_fails_a_broken_document(tmp_path: Path) -> None:
    broken = broken_documents()
    paths = {}
    for name, (document, _, _) in broken.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(render(document))
    valid = tmp_path / "valid.json"
    valid.write_text(render(document_of(APP)))
    returncode, report = validate(valid, *paths.values())
    assert returncode == 1
    assert diagnostics(report[str(valid)]) == EXPECTED_DIAGNOSTICS
    for name, (_, code, path) in broken.items():
        errors = [d for d in diagnostics(report[str(paths[name])]) if d[0] == "error"]
        assert ("error", code, path) in errors, (name, errors)
    # Each alone fails the run: the exit code is not only the last document's.
    returncode, _ = validate(paths["no_action"], valid)
    assert returncode == 1
