"""``typed-ss gen-client --lang py``: the generated module against its golden file, the CLI, its typing
under mypy --strict (right and wrong uses), the renderer's choices on hand-made models, and the module
driving tests/codegen/app.py's server end to end."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import typing
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import msgspec
import pydantic
import pytest
from click.testing import CliRunner, Result

from tests.apps import make_app
from tests.codegen.support import APP, HERE
from tests.support import eventually, running
from typed_ss import CallError, Contract, HandlerError, Server, Socket
from typed_ss.cli import main
from typed_ss.codegen import generate, ir
from typed_ss.codegen.ir import ClientModel, Declaration, EventType
from typed_ss.codegen.python import MODULE, render

pytestmark = pytest.mark.timeout(60)

GOLDEN = HERE / "golden" / "py" / MODULE
UPDATE = os.environ.get("TYPED_SS_UPDATE_GOLDEN") == "1"


def generated(contract: Contract, source: str = APP) -> str:
    (module,) = generate(contract, "py", source)
    assert module.name == MODULE
    return module.text


@pytest.fixture
def load(tmp_path: Path) -> Iterator[Any]:
    """Imports a generated module's text as a module of its own (msgspec resolves its annotations
    through ``sys.modules``, so it is registered there until the test ends)."""
    loaded: list[str] = []

    def load(text: str) -> Any:  # a module mypy knows nothing of
        name = f"ss_client_{len(loaded)}_{id(tmp_path)}"
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loaded.append(name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


# --- the output --------------------------------------------------------------------------------------


def test_output_matches_the_golden_file() -> None:
    """Regenerate with TYPED_SS_UPDATE_GOLDEN=1 (and review the diff) after changing the generator."""
    from tests.codegen.app import ss

    produced = generated(ss.contract)
    if UPDATE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(produced)
        pytest.skip(f"updated {GOLDEN}: review and commit it")
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run TYPED_SS_UPDATE_GOLDEN=1 pytest {__file__}"
    assert produced == GOLDEN.read_text(), (
        f"the generated module differs from {GOLDEN}; if the change is intended, "
        f"run TYPED_SS_UPDATE_GOLDEN=1 pytest {__file__} and review the diff"
    )


def test_output_is_deterministic_and_names_its_contract() -> None:
    from tests.codegen.app import ss

    first = generated(ss.contract)
    assert first == generated(Contract.of(reversed(ss.contract.events)))
    assert f'CONTRACT: _typing.Final = "{ss.contract.fingerprint}"' in first
    assert "\r" not in first
    assert str(Path.cwd()) not in first


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_gen_client_lang_py_writes_one_module_and_check_tells_when_it_is_stale(tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    first = run("gen-client", APP, "--out", str(out), "--lang", "py")
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir()) == [MODULE]  # the runtime is typed_ss.client: no copies
    mtime = (out / MODULE).stat().st_mtime_ns
    again = run("gen-client", APP, "--out", str(out), "--lang", "py")
    assert (again.exit_code, "up to date" in again.output) == (0, True)
    assert (out / MODULE).stat().st_mtime_ns == mtime

    fresh = run("gen-client", APP, "--out", str(out), "--lang", "py", "--check")
    assert (fresh.exit_code, fresh.stdout.strip()) == (0, f"{out}: up to date")
    module = out / MODULE
    stale_text = module.read_text().replace("    note: str\n", "", 1)
    module.write_text(stale_text)
    stale = run("gen-client", APP, "--out", str(out), "--lang", "py", "--check")
    assert stale.exit_code == 1
    assert "+    note: str" in stale.stdout
    assert "--lang py" in stale.stderr
    assert module.read_text() == stale_text
    # The TypeScript check knows nothing of the Python module, and the other way round.
    assert run("gen-client", APP, "--out", str(out), "--check").exit_code == 1


# --- typing ------------------------------------------------------------------------------------------

USE_OK = """\
from typing import Any, assert_type

import ss_client
from ss_client import (
    AddQuery, AddQueryInput, AddResult, Answer, AnswerInput, ChatMessage, Join, Profile, Question,
    RatingInput,
)
from typed_ss import HandlerError
from typed_ss.client import Client
from typed_ss.client.typed import ContractStatus


async def confirm(q: Question) -> AnswerInput:
    if not q.text:
        raise HandlerError("empty", "ask something")
    return AnswerInput(yes=True)


def on_chat(message: ChatMessage) -> None:
    print(message.room, message.text)


async def main() -> None:
    client = ss_client.connect("ws://127.0.0.1:8000/socket", headers={"X-Token": "t"}, reconnect=False)
    client.on.chat(on_chat)
    client.on.presence(lambda p: print(p.room))  # p: Join | Leave
    client.on.blob(lambda data: print(len(data)))
    client.handle.confirm(confirm)
    client.handle.rate(lambda q: RatingInput(starCount=len(q.text)))
    client.handle.confirm(lambda q: Answer(yes=True, reason=""))
    client.handle.greet(lambda name: f"hello {name}")
    client.handle.poke(lambda n: None)
    async with client:
        assert_type(await client.call.add(AddQueryInput(a=1, b=2)), AddResult)
        assert_type(await client.call.add(AddQuery(a=1, b=2)), AddResult)  # the received shape too
        assert_type(await client.call.add(AddQueryInput(a=1), timeout=1.0), AddResult)
        assert_type(await client.call.upper("tea"), str)
        assert_type(await client.call.reverse(b"abc"), bytes)
        assert_type(await client.call.whois("ann"), Profile)
        assert_type(await client.call.count([1, 2]), int | float)
        assert_type(await client.call.anything(bytearray(b"x")), Any)
        assert_type(await client.call.chat(ss_client.ChatMessageInput(
            room="tea", text="hi", author_id=1, sent_at="2024-01-01T00:00:00Z")), None)
        await client.send.action(Join(room="tea"))
        await client.send.toggle("on")
        await client.send.ping()
        assert_type(client.id, str | None)
        assert_type(client.contract_status, ContractStatus)
        assert_type(client.raw, Client)
"""

USE_WRONG = """\
import ss_client
from ss_client import AddQueryInput, ChatMessage, Question


async def wrong_reply(q: Question) -> str:
    return "yes"


def on_question(q: Question) -> None: ...


async def main() -> None:
    async with ss_client.connect("ws://127.0.0.1:8000/socket") as client:
        await client.call.add(AddQueryInput(a="1"))  # E: arg-type
        await client.call.add(Question(text="not an AddQuery"))  # E: arg-type
        text: str = await client.call.add(AddQueryInput(a=1))  # E: assignment
        await client.call.nope(1)  # E: attr-defined
        await client.send.toggle("maybe")  # E: arg-type
        client.handle.confirm(wrong_reply)  # E: arg-type
        client.on.chat(on_question)  # E: arg-type
        client.handle.chat(on_question)  # E: attr-defined
        ss_client.connect("ws://x", reconect=False)  # E: call-arg
        del text
"""


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_mypy_strict_types_every_call_and_handler_and_refuses_wrong_ones(tmp_path: Path) -> None:
    from mypy import api

    from tests.codegen.app import ss

    (tmp_path / MODULE).write_text(generated(ss.contract))
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


# --- the renderer's choices ---------------------------------------------------------------------------


def obj(*props: tuple[str, ir.Node] | ir.Prop) -> ir.Object:
    return ir.Object(tuple(p if isinstance(p, ir.Prop) else ir.Prop(*p) for p in props))


def rendered(
    declarations: Sequence[Declaration], c2s: Sequence[EventType], s2c: Sequence[EventType] = ()
) -> str:
    """The module rendered from a model made by hand."""
    (module,) = render(ClientModel("0" * 32, tuple(declarations), tuple(c2s), tuple(s2c)), "test")
    return module.text


def test_unions_of_objects_are_tagged_by_their_literal_property_or_said_less_precisely(load: Any) -> None:
    cat = Declaration("Cat", obj(("kind", ir.Literal("cat")), ("name", ir.STRING)))
    dog = Declaration("Dog", obj(("kind", ir.Literal("dog")), ("good", ir.BOOLEAN)))
    left = Declaration("Left", obj(("x", ir.NUMBER)))
    right = Declaration("Right", obj(("y", ir.NUMBER)))
    pet = ir.union([ir.Name("Cat"), ir.Name("Dog")])
    side = ir.union([ir.Name("Left"), ir.Name("Right"), ir.NULL])
    lists = ir.union([ir.Array(ir.NUMBER), ir.Tuple((ir.TupleElement(ir.STRING),)), ir.STRING])
    events = [
        EventType("pet", "json", pet),
        EventType("side", "json", side),
        EventType("lists", "json", lists),
    ]
    text = rendered([cat, dog, left, right], events)
    assert 'class Cat(_msgspec.Struct, kw_only=True, tag_field="kind", tag="cat"):' in text
    assert "_runtime.Outgoing[Cat | Dog, " in text
    assert "_runtime.Outgoing[dict[str, _typing.Any] | None, " in text  # no tag tells Left from Right
    assert "_runtime.Outgoing[list[_typing.Any] | str, " in text
    module = load(text)
    for payload_type in (module.Cat | module.Dog, dict[str, Any] | None, list[Any] | str):
        msgspec.json.Decoder(payload_type)  # msgspec takes every one of them
    assert msgspec.json.decode(b'{"kind":"dog","good":true}', type=module.Cat | module.Dog) == module.Dog(
        good=True
    )


def test_names_python_cannot_take_are_changed_and_aliases_follow_what_they_use(load: Any) -> None:
    declarations = [
        # An alias is evaluated as the module loads: Palette must come after Color, which it uses.
        Declaration("Palette", ir.Array(ir.Name("Color"))),
        Declaration("Color", ir.union([ir.Literal("red"), ir.Literal("green")])),
        Declaration("list", obj(("class", ir.STRING), ir.Prop("content-type", ir.STRING, optional=True))),
        Declaration("connect", obj(("a", ir.Name("Palette")))),
    ]
    events = [
        EventType("other-message", "json", ir.Name("list")),
        EventType("class", "text", ir.STRING),
        EventType("_client", "binary", ir.Name("BinaryOut")),
        EventType("when", "json", ir.STRING),
    ]
    text = rendered(declarations, events, [EventType("connect", "json", ir.Name("connect"))])
    assert "class list_(_msgspec.Struct" in text
    assert "class connect_(_msgspec.Struct" in text
    assert '    class_: str = _msgspec.field(name="class")' in text
    assert (
        'content_type: str | _msgspec.UnsetType = _msgspec.field(name="content-type", default=_msgspec.UNSET)'
        in text
    )
    assert text.index("Color: _typing.TypeAlias") < text.index("Palette: _typing.TypeAlias")
    for method in ("async def other_message(", "async def class_(", "async def _client_(", "def connect("):
        assert method in text
    assert '_runtime.Outgoing("when", str, "json"' in text  # a JSON string: see wire_type
    module = load(text)
    assert msgspec.json.encode(module.list_(class_="x")) == b'{"class":"x"}'
    assert typing.get_args(module.Palette) == (module.Color,)


# --- end to end ---------------------------------------------------------------------------------------


async def test_the_generated_module_drives_the_apps_server_in_every_payload_kind(load: Any) -> None:
    from tests.codegen.app import app, ss

    generated_client = load(generated(ss.contract))
    got: list[Any] = []
    async with running(app, ss) as url:
        client = generated_client.connect(url + "/socket", reconnect=False)
        for event in ("chat", "presence", "pet", "status", "blob", "moved", "profile", "note", "tree"):
            getattr(client.on, event)(got.append)
        client.handle.confirm(lambda q: generated_client.AnswerInput(yes=q.text == "tea?"))
        client.handle.greet(lambda who: f"hello {who}")
        client.handle.sign(lambda data: bytes(data) + b"!")
        client.handle.rate(lambda q: generated_client.RatingInput(starCount=len(q.text)))
        client.handle.poke(lambda n: None)

        def refuse(who: str) -> str:
            raise HandlerError("busy", "not now", data={"who": who})

        async with client:
            assert client.contract_status == "current"
            call = client.call
            assert await call.add(generated_client.AddQueryInput(a=1, b=2)) == generated_client.AddResult(
                sum=3, note=""
            )
            assert await call.add(generated_client.AddQueryInput(a=4)) == generated_client.AddResult(
                sum=4, note=""
            )
            # The received shape is sent as well: every field is there.
            assert await call.add(generated_client.AddQuery(a=2, b=5)) == generated_client.AddResult(
                sum=7, note=""
            )
            assert await call.upper("tea") == "TEA"
            assert await call.reverse(b"abc") == b"cba"
            profile = await call.whois("ann")
            assert (profile.userName, profile.initial) == ("ann", "a")
            assert await call.count([1, 2, 3]) == 3
            assert await call.anything(b"xyz") == {"size": 3}
            assert await call.ask_confirm("tea?") == generated_client.Answer(yes=True, reason="")
            assert await call.ask_greet("bob") == "hello bob"
            assert await call.ask_sign(b"x") == b"x!"
            assert await call.ask_rate("four") == generated_client.Rating(starCount=4, comment="")
            assert await call.ask_poke(3) is None
            client.handle.greet(refuse)
            assert await call.ask_failing("greet") == 'busy: not now {"who": "fail"}'
            with pytest.raises(CallError) as refused:
                await call.refuse("kitchen")
            assert (refused.value.code, refused.value.data) == ("not_found", {"room": "kitchen"})

            await client.send.chat(
                generated_client.ChatMessageInput(
                    room="r", text="t", author_id=1, sent_at="2024-01-01T00:00:00Z"
                )
            )
            await client.send.action(generated_client.LeaveInput(room="tea"))
            await client.send.pet(generated_client.DogInput(name="rex"))
            await client.send.toggle("on")
            await client.send.upload(b"abc")
            await client.send.move(generated_client.PointInput(x=1, y=2))
            await client.send.profile(generated_client.ProfileInput(userName="ann"))
            await client.send.say("hi")
            await client.send.ping()
            await eventually(lambda: len(got) == 9)
    chat, leave, dog, status, blob, point, echoed, note, tree = got
    assert (chat.room, chat.reply_to, chat.tags, chat.edited) == ("r", None, [], msgspec.UNSET)
    assert leave == generated_client.Leave(room="tea", reason="")
    assert dog == generated_client.Dog(name="rex", good=True)
    assert (status, blob, note) == ("on", b"cba", "you said hi")
    assert point == generated_client.Point(x=1, y=2)
    assert (echoed.userName, echoed.age, echoed.friends) == ("ann", 0, [])
    assert tree == generated_client.Tree(value=1, children=[generated_client.Tree(value=2, children=[])])


class Stamp(msgspec.Struct):
    at: datetime


class Visit(pydantic.BaseModel):
    day: date


async def test_payloads_that_are_json_strings_travel_as_json(load: Any) -> None:
    ss = Server()
    ticks = ss.event("tick", datetime)
    seen: list[object] = []

    @ss.on("when")
    async def when(sock: Socket, at: datetime) -> date:
        seen.append(at)
        await ticks.emit(sock, at)
        return at.date()

    @ss.on("stamp")
    async def stamp(sock: Socket, value: Stamp) -> Visit:
        return Visit(day=value.at.date())

    generated_client = load(generated(ss.contract, "test"))
    ticked: list[str] = []
    async with running(make_app(ss), ss) as url:
        client = generated_client.connect(url + "/socket")
        client.on.tick(ticked.append)
        async with client:
            # `str` in Python, a JSON string on the wire: sent quoted, received unquoted.
            assert await client.call.when("2024-05-06T07:08:09+00:00") == "2024-05-06"
            assert await client.call.stamp(
                generated_client.Stamp(at="2024-05-06T07:08:09Z")
            ) == generated_client.Visit(day="2024-05-06")
            await eventually(lambda: ticked)
    assert isinstance(seen[0], datetime)
    assert ticked == ["2024-05-06T07:08:09Z"]  # msgspec writes UTC so


@pytest.mark.parametrize(
    "hook",
    ["on_connected", "on_disconnected", "on_reload_needed", "on_server_error", "on_reconnected", "on_gap"],
)
def test_the_generated_client_hands_every_hook_to_the_client_under_it(load: Any, hook: str) -> None:
    from tests.codegen.app import ss

    client = load(generated(ss.contract)).connect("ws://127.0.0.1:9/socket", reconnect=False)

    def registered(*_: object) -> None:
        pass

    assert getattr(client, hook)(registered) is registered
    assert getattr(client.raw, f"_{hook}") is registered
