"""A smoke test of the benchmark harness (benchmarks/): every scenario runs on tiny sizes against real
server processes, typed-ss on uvicorn and on its native transport among them. It proves the harness
works; it asserts no speed. The call scenario's frames are checked against typed-ss's and
python-socketio's own encoders, and a wrong reply must fail its run.

`make test` does not install the bench group: /proc then stands in for psutil, and the load generator
runs on picows only because the native transport made it a core dependency (else on websockets);
python-socketio, the peer, is in the dev group, so every scenario runs against it too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from benchmarks import report
from benchmarks.__main__ import main as bench_main
from benchmarks.loadgen import Spec, call, call_frame, frame, reply_frame
from benchmarks.run import SMOKE, Sizes, run_suite
from benchmarks.servers import KINDS, OURS
from typed_ss.protocol import encode_frame, parse_call_flag, split_client_frame, with_flag

pytestmark = [pytest.mark.timeout(180)]

PAYLOAD = "call".ljust(64, ".")


@pytest.mark.slow
def test_every_scenario_runs_on_tiny_sizes() -> None:
    redis = shutil.which("redis-server") is not None
    outcome = run_suite(replace(SMOKE, kinds=KINDS), redis=redis)
    medians = outcome["medians"]

    scenarios = {"idle", "echo1", "echo50", "call50", "broadcast5", "roomcast"}
    scenarios |= {"redis"} if redis else set()
    assert set(medians) == scenarios
    for scenario in scenarios:
        assert set(medians[scenario]) == set(KINDS), scenario
    for kind in KINDS:
        assert medians["echo50"][kind]["msgs_per_s"] > 0
        assert medians["broadcast5"][kind]["latency_p50_ms"] > 0
        assert medians["idle"][kind]["connects_per_s"] > 0
        call50 = medians["call50"][kind]
        # Every call of the measured phase was answered (the load generator checked each reply).
        assert round(call50["calls_per_s"] * call50["seconds"]) == 50 * SMOKE.call50_calls, kind
        assert 0 < call50["rtt_p50_us"] <= call50["rtt_p99_us"], kind

    table = report.table(medians, KINDS)
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[1:5] == ["typed-ss", "typed-ss native", "bare Starlette", "python-socketio"]
    assert header[5:] == [
        "typed-ss / bare Starlette",
        "typed-ss / python-socketio",
        "typed-ss native / bare Starlette",
        "typed-ss native / python-socketio",
        "typed-ss native / typed-ss",
    ]
    text = "\n".join(table)
    assert "echo, 50 conns: msgs/s" in text
    assert "broadcast to 5: last receiver p50 ms" in text
    assert "call, 50 conns: calls/s" in text
    checked = {(item["ours"], item["target"]) for item in report.targets(medians)}
    assert ("typed-ss", "echo 50 conns msgs/s >= 0.85x Starlette") in checked
    assert ("typed-ss", "call 50 conns calls/s >= 4x python-socketio") in checked
    assert ("typed-ss-native", "typed-ss native: echo 50 conns msgs/s >= 0.85x Starlette") in checked
    assert ("typed-ss-native", "typed-ss native: echo 50 conns msgs/s >= 4x python-socketio") in checked
    assert ("typed-ss-native", "typed-ss native: call 50 conns calls/s >= 4x python-socketio") in checked


@pytest.mark.slow
def test_a_run_narrowed_to_calls_runs_only_calls() -> None:
    kinds = ("typed-ss-native", "starlette")
    outcome = run_suite(replace(SMOKE, kinds=kinds, scenarios=("call",)))
    medians = outcome["medians"]
    assert set(medians) == {"call50"}
    assert set(medians["call50"]) == set(kinds)
    assert tuple(outcome["sizes"]["scenarios"]) == ("call",)
    table = report.table(medians, kinds)
    assert table[0] == "| figure | typed-ss native | bare Starlette | typed-ss native / bare Starlette |"
    labels = [line.split(" | ")[0].removeprefix("| ") for line in table]
    assert labels[2:] == [row.label for row in report.rows(medians) if row.key == "call50"]


def test_ratios_divide_each_typed_ss_kind_by_each_peer() -> None:
    assert OURS == ("typed-ss", "typed-ss-native")
    assert report.comparisons(KINDS) == [
        ("typed-ss", "starlette"),
        ("typed-ss", "socketio"),
        ("typed-ss-native", "starlette"),
        ("typed-ss-native", "socketio"),
        ("typed-ss-native", "typed-ss"),
    ]
    assert report.comparisons(("typed-ss", "socketio")) == [("typed-ss", "socketio")]
    assert report.comparisons(("starlette", "socketio")) == []


def test_targets_hold_each_kind_to_its_own_figures() -> None:
    medians = {
        "echo50": {
            "typed-ss": {"msgs_per_s": 50.0},
            "typed-ss-native": {"msgs_per_s": 100.0},
            "starlette": {"msgs_per_s": 50.0},
            "socketio": {"msgs_per_s": 10.0},
        }
    }
    checked = {item["target"]: (item["ours"], item["ratio"], item["met"]) for item in report.targets(medians)}
    assert checked == {
        "echo 50 conns msgs/s >= 0.85x Starlette": ("typed-ss", 1.0, True),
        "echo 50 conns msgs/s >= 4x python-socketio": ("typed-ss", 5.0, True),
        "typed-ss native: echo 50 conns msgs/s >= 0.85x Starlette": ("typed-ss-native", 2.0, True),
        "typed-ss native: echo 50 conns msgs/s >= 4x python-socketio": ("typed-ss-native", 10.0, True),
    }


def test_kinds_narrow_a_run_without_adding_typed_ss(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``--kinds`` runs the servers named, in the reports' order, and no other."""
    ran: list[tuple[str, ...]] = []
    load = ("load_average_before", "load_average_after")

    def fake_suite(sizes: Sizes, **_: object) -> dict[str, object]:
        ran.append(sizes.kinds)
        return {"medians": {}, "client_library": "picows", "seconds": 0.0, **dict.fromkeys(load, 0.0)}

    monkeypatch.setattr("benchmarks.__main__.run_suite", fake_suite)
    monkeypatch.setattr("benchmarks.report.write_chart", lambda *_: False)
    argv = ["smoke", "--out", str(tmp_path), "--scenarios", "call", "--kinds", "socketio", "typed-ss-native"]
    assert bench_main(argv) == 0
    assert ran == [("typed-ss-native", "socketio")]


def test_both_typed_ss_kinds_speak_one_wire() -> None:
    for make in (frame, lambda kind, event, data: call_frame(kind, event, 3, data)):
        assert make("typed-ss-native", "add", PAYLOAD) == make("typed-ss", "add", PAYLOAD)
    assert reply_frame("typed-ss-native", "add", 3, PAYLOAD) == reply_frame("typed-ss", "add", 3, PAYLOAD)


def test_typed_ss_call_frames_are_the_protocols() -> None:
    """The load generator's typed-ss call and reply are what typed-ss's own protocol code reads and
    writes (docs/protocol.md section 5)."""
    event, flags, payload = split_client_frame(call_frame("typed-ss", "add", 7, PAYLOAD).decode(), 64)
    assert (event, parse_call_flag(flags), payload) == ("add", ("c", 7), PAYLOAD.encode())
    reply = with_flag(encode_frame("add", PAYLOAD), "r7")
    assert isinstance(reply, str)  # a text frame
    assert reply_frame("typed-ss", "add", 7, PAYLOAD) == reply.encode()


def test_socketio_call_frames_are_an_event_with_an_ack() -> None:
    """The load generator's python-socketio call is an event with an ack id (what its client's
    ``call()`` sends), and the reply it waits for is python-socketio's ack of that id."""
    from socketio import packet

    # Each message is an Engine.IO message packet ("4") holding a Socket.IO packet.
    frame = call_frame("socketio", "add", 7, PAYLOAD).decode()
    assert frame.startswith("4")
    sent = packet.Packet(encoded_packet=frame[1:])
    assert (sent.packet_type, sent.id, sent.data) == (packet.EVENT, 7, ["add", PAYLOAD])
    ack = packet.Packet(packet.ACK, data=[PAYLOAD], id=7).encode()
    assert reply_frame("socketio", "add", 7, PAYLOAD) == f"4{ack}".encode()


@contextlib.asynccontextmanager
async def answering(wrong_from: int) -> AsyncIterator[str]:
    """A server speaking the bare endpoint's call format that answers each connection's calls from
    number ``wrong_from`` on with the id of the call before."""

    async def handler(ws: ServerConnection) -> None:
        answered = 0
        async for message in ws:
            assert isinstance(message, str)
            call_id, _, data = message[1:].partition("\x02")
            answered += 1
            wrong = answered >= wrong_from
            await ws.send(f"r{int(call_id) - wrong}\x02{data}")

    async with serve(handler, "127.0.0.1", 0) as server:
        (sock, *_) = server.sockets
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}"


async def test_the_call_scenario_checks_every_reply() -> None:
    spec = Spec(scenario="call", kind="starlette", url="", server_pids=[os.getpid()], connections=3, warmup=2)
    async with answering(wrong_from=1000) as url:
        figures = await call(replace(spec, url=url, messages=5))
    assert round(figures["calls_per_s"] * figures["seconds"]) == 15
    async with answering(wrong_from=4) as url:  # the second call of the measured phase
        with pytest.raises(ValueError, match="call 4 expected b'r4"):
            await call(replace(spec, url=url, messages=5))
