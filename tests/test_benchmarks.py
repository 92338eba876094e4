"""A smoke test of the benchmark harness (benchmarks/): every scenario runs on tiny sizes against real
server processes. It proves the harness works; it asserts no speed. The call scenario's frames are
checked against typed-ss's and python-socketio's own encoders, and a wrong reply must fail its run.

`make test` does not install the bench group: the load generator then runs on websockets instead of
picows and /proc stands in for psutil; python-socketio, the peer, is in the dev group, so every
scenario runs against it too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from websockets.asyncio.server import ServerConnection, serve

from benchmarks import report
from benchmarks.loadgen import Spec, call, call_frame, reply_frame
from benchmarks.run import SMOKE, run_suite
from typed_ss.protocol import encode_frame, parse_call_flag, split_client_frame, with_flag

pytestmark = [pytest.mark.timeout(120)]

KINDS = ("typed-ss", "starlette", "socketio")
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

    table = "\n".join(report.table(medians, KINDS))
    assert "echo, 50 conns: msgs/s" in table
    assert "broadcast to 5: last receiver p50 ms" in table
    assert "call, 50 conns: calls/s" in table
    checked = {item["target"] for item in report.targets(medians)}
    assert "echo 50 conns msgs/s >= 0.85x Starlette" in checked
    assert "call 50 conns calls/s >= 4x python-socketio" in checked


@pytest.mark.slow
def test_a_run_narrowed_to_calls_runs_only_calls() -> None:
    outcome = run_suite(replace(SMOKE, kinds=("typed-ss", "starlette"), scenarios=("call",)))
    medians = outcome["medians"]
    assert set(medians) == {"call50"}
    assert set(medians["call50"]) == {"typed-ss", "starlette"}
    assert tuple(outcome["sizes"]["scenarios"]) == ("call",)
    labels = [
        line.split(" | ")[0].removeprefix("| ") for line in report.table(medians, ("typed-ss", "starlette"))
    ]
    assert labels[2:] == [row.label for row in report.rows(medians) if row.key == "call50"]


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
