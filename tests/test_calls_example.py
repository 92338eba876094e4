"""examples/calls: the till (bot.py) works a shift at the order desk (app.py) through the generated
client, in-process and as the two documented commands; the committed client is current; and mypy
--strict holds the till to the desk's contract.

(`make codegen-check` also fails `make test` when the committed client is stale. docs/python-client.md
shows bot.py, and tests/test_docs.py checks that it shows it as it is.)
"""

from __future__ import annotations

import asyncio
import importlib
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import eventually, free_port, running
from typed_ss import Server, Socket
from typed_ss.codegen import files, generate

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "calls"
APP = "examples.calls.app:ss"


def load_app() -> tuple[ModuleType, Server]:
    # A fresh module per test: a Server holds its sockets and must not be shared between event loops.
    module = importlib.reload(importlib.import_module("examples.calls.app"))
    server = module.ss
    assert isinstance(server, Server)
    return module, server


def test_the_committed_client_is_current() -> None:
    from examples.calls.app import ss

    diffs = files.check(EXAMPLE / "generated", generate(ss.contract, "py", APP))
    assert not diffs, "examples/calls/generated is stale: run `make codegen`\n" + "".join(diffs)


async def test_a_shift_prices_orders_is_refused_and_confirms_leaving() -> None:
    from examples.calls import bot
    from examples.calls.generated.ss_client import Placed, Quote, Receipt

    module, ss = load_app()
    rooms_when_gone: list[frozenset[str]] = []

    @ss.on_disconnect
    async def gone(sock: Socket) -> None:
        rooms_when_gone.append(sock.rooms)  # the disconnect hook still sees the socket's rooms

    async with running(module.app, ss) as url:
        till = await bot.shift(url + "/socket")
        await eventually(lambda: rooms_when_gone)
    assert till.orders == [
        (
            Quote(subtotal=1200, discount=120, total=1080),
            Receipt(order=1, total=1080),
            Placed(order=1, items=3, total=1080),
        ),
        (
            Quote(subtotal=250, discount=0, total=250),
            Receipt(order=2, total=250),
            Placed(order=2, items=1, total=250),
        ),
    ]
    [refused] = till.refused
    assert (refused.code, refused.message, refused.data) == (
        "unknown_item",
        "not on the menu: espresso",
        {"skus": ["espresso"]},
    )
    assert till.questions == ["Stop following orders?"]
    assert rooms_when_gone == [frozenset()]  # the till said yes: the desk took it out of the room


async def test_tills_working_at_once_each_find_their_own_orders_among_the_rooms() -> None:
    from examples.calls import bot

    module, ss = load_app()
    async with running(module.app, ss) as url:
        tills = await asyncio.gather(*(bot.shift(url + "/socket") for _ in range(3)))
    numbers = []
    for till in tills:
        for _, receipt, placed in till.orders:
            assert (placed.order, placed.total) == (receipt.order, receipt.total)
            numbers.append(receipt.order)
        assert till.questions == ["Stop following orders?"]
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]


async def test_a_till_generated_from_another_contract_stops_before_its_shift() -> None:
    from examples.calls import bot

    module, ss = load_app()
    ss.event("closing", str)  # the desk's contract changes; the till's client was generated before
    async with running(module.app, ss) as url:
        with pytest.raises(bot.OutOfDate, match="regenerate ss_client"):
            await bot.shift(url + "/socket")
        await eventually(lambda: not ss.sockets)
    assert next(module.order_numbers) == 1  # nothing was ordered


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_documented_commands_run_a_shift() -> None:
    port = free_port()  # the desk is told its port before it binds it
    desk = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.calls.app", "--port", str(port), cwd=ROOT, stdout=subprocess.DEVNULL
    )
    try:

        async def listening() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return False
            writer.close()
            await writer.wait_closed()
            return True

        await eventually(listening, within=30)
        till = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "examples.calls.bot",
            f"ws://127.0.0.1:{port}/socket",
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(till.communicate(), 60)
        assert till.returncode == 0, stderr.decode()
        assert stdout.decode().splitlines() == [
            "order 1: 3 items, 10.80 after 1.20 off",
            "order 2: 1 items, 2.50 after 0.00 off",
            "refused: unknown_item: not on the menu: espresso {'skus': ['espresso']}",
            "the desk asked 'Stop following orders?': yes",
        ]
    finally:
        if desk.returncode is None:
            desk.kill()  # by its PID
        await desk.wait()


BROKEN = {
    "a field the line does not have": (
        'LineInput(sku="sencha", quantity=2)',
        'LineInput(sku="sencha", qty=2)',
        "call-arg",
    ),
    "a payload of another event": (
        "await client.call.quote(basket)",
        'await client.call.quote("tea")',
        "arg-type",
    ),
    "an event the desk does not handle": (
        "await client.call.order(basket, timeout=10.0)",
        "await client.call.pay(basket, timeout=10.0)",
        "attr-defined",
    ),
    "a reply of the wrong type": ("return AnswerInput(yes=True)", "return True", "return-value"),
    "a field the reply does not have": ("quote.discount", "quote.rebate", "attr-defined"),
}
"""Each breakage of bot.py (the text it replaces, by what) and the mypy error code it must cause."""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mypy_holds_the_till_to_the_desks_contract(tmp_path: Path) -> None:
    from mypy import api

    source = (EXAMPLE / "bot.py").read_text()
    names = {"bot_as_is.py": "as is"}
    (tmp_path / "bot_as_is.py").write_text(source)
    for number, (what, (original, broken, _)) in enumerate(BROKEN.items()):
        assert source.count(original) == 1, original
        names[f"bot_broken_{number}.py"] = what
        (tmp_path / f"bot_broken_{number}.py").write_text(source.replace(original, broken))
    (tmp_path / "mypy.ini").write_text("[mypy]\n")  # not the project's configuration: a reader's
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-pretty",
            "--no-error-summary",
            *(str(tmp_path / name) for name in names),
        ]
    )
    assert not stderr, stderr
    found: dict[str, set[str]] = {what: set() for what in names.values()}
    for line in stdout.splitlines():
        match = re.fullmatch(r".*/(bot_\w+\.py):\d+: error: .*\[([a-z-]+)\]", line)
        assert match is not None, line
        found[names[match[1]]].add(match[2])
    assert found == {"as is": set(), **{what: {code} for what, (_, _, code) in BROKEN.items()}}, stdout
