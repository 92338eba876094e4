"""A smoke test of the benchmark harness (benchmarks/): every scenario runs on tiny sizes against real
server processes, typed-ss on uvicorn and on its native transport (with recovery off and on) among
them. It proves the harness works; it asserts no speed. The call scenario's frames are checked
against typed-ss's and python-socketio's own encoders, and a wrong reply must fail its run. The raw
ASGI app answers every operation exactly as the bare Starlette endpoint does; with recovery on,
typed-ss's casts carry an offset flag and its replies none, as the load generator expects.

The callgrind scenario has tests of its own (a server's counts, 50 connections included, and the core
alone's), each skipped where valgrind is missing: ``make test`` does not install it. So has the scale
scenario, one per backend (4 instances, each a process, on Redis, a Redis Cluster, 3 NATS nodes or
the gRPC mesh), each skipped, naming why, where its broker or client library is missing.

`make test` does not install the bench group: /proc then stands in for psutil, and the load generator
runs on picows only because the native transport made it a core dependency (else on websockets);
python-socketio, the peer, is in the dev group, so every scenario runs against it too.

`make test` installs Debian's Go and gorilla/websocket, which the Go server (the ``go`` kind, built at
bench time) needs, so there every scenario runs against it too. Where they are missing (pytest run by
hand elsewhere), the smoke run leaves that kind out and the test checks that the run says why, and the
Go server's own test is skipped naming the reason (pytest's ``-rs`` shows it); everything else runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from benchmarks import goserver, procstat, report, run, scale
from benchmarks.__main__ import main as bench_main
from benchmarks.loadgen import Conn, Spec, call, call_frame, connect, frame, payload, reply_frame, wire
from benchmarks.run import (
    NO_REDIS,
    PRESENCE_KIND,
    SCALE_BACKENDS,
    SCALE_KIND,
    SCENARIOS,
    SMOKE,
    Sizes,
    run_suite,
    server,
)
from benchmarks.servers import KINDS, OURS, VARIANTS
from typed_ss.protocol import encode_frame, parse_call_flag, split_client_frame, with_flag

pytestmark = [pytest.mark.timeout(180)]

PAYLOAD = "call".ljust(64, ".")


GO_MISSING = goserver.unavailable()
"""Why the Go server cannot be built here (``None``: it can); ``make bench`` installs what it needs."""
VALGRIND_MISSING = shutil.which("valgrind") is None or shutil.which("callgrind_control") is None
needs_valgrind = pytest.mark.skipif(VALGRIND_MISSING, reason="valgrind is not installed (`make bench`)")
PEERS = ["raw ASGI", "bare Starlette", "python-socketio", "Go"]
PRESENCE_ROW = f"presence, {SMOKE.presence_sockets} sockets in one room on 3 instances: members(room) p50 ms"


@pytest.mark.slow
def test_every_scenario_runs_on_tiny_sizes() -> None:
    redis = shutil.which("redis-server") is not None
    # callgrind has its own tests below: under valgrind, it would take as long as the rest together;
    # so has scale (a test per backend, below: each starts brokers and several instances).
    timed = tuple(scenario for scenario in SCENARIOS if scenario not in ("callgrind", "scale"))
    outcome = run_suite(replace(SMOKE, kinds=KINDS, scenarios=timed), redis=redis)
    medians = outcome["medians"]
    kinds: tuple[str, ...] = KINDS
    if GO_MISSING is None:
        assert outcome["skipped"] == {}
    else:  # the run goes on without the Go server and says why
        kinds = tuple(kind for kind in KINDS if kind != "go")
        assert outcome["skipped"] == {"go": GO_MISSING}
        assert "make bench" in GO_MISSING
    assert outcome["kinds"] == list(kinds)

    scenarios = {"idle", "echo1", "echo50", "call50", "broadcast5", "roomcast"}
    scenarios |= {"redis", "presence"} if redis else set()
    assert set(medians) == scenarios
    assert set(NO_REDIS) == {"go"}
    for scenario in scenarios - {"presence"}:
        # The Go server has no Redis backend: the redis scenario leaves it out (typed-ss with recovery
        # runs in it with the history in Redis).
        expected = {kind for kind in kinds if kind not in NO_REDIS or scenario != "redis"}
        assert set(medians[scenario]) == expected, scenario
    if redis:  # presence is typed-ss native's alone, on three instances
        assert set(medians["presence"]) == {PRESENCE_KIND} == {"typed-ss-native"}
        presence = medians["presence"][PRESENCE_KIND]
        assert (presence["sockets"], presence["instances"]) == (SMOKE.presence_sockets, 3)
        for figure in ("members_p50_ms", "count_p50_ms", "joined_all_p50_ms", "table_bytes_per_member"):
            assert presence[figure] > 0, figure
        assert presence["members_p50_ms"] <= presence["members_p99_ms"]
        assert presence["peers_lost"] == presence["unanswered"] == 0
    for kind in kinds:
        assert medians["echo50"][kind]["msgs_per_s"] > 0
        assert medians["broadcast5"][kind]["latency_p50_ms"] > 0
        assert medians["idle"][kind]["connects_per_s"] > 0
        call50 = medians["call50"][kind]
        # Every call of the measured phase was answered (the load generator checked each reply).
        assert round(call50["calls_per_s"] * call50["seconds"]) == 50 * SMOKE.call50_calls, kind
        assert 0 < call50["rtt_p50_us"] <= call50["rtt_p99_us"], kind

    assert set(outcome["cpu_clocks"]) == {"server", "server_kernel", "client"}

    table = report.table(medians, kinds)
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    names = ["typed-ss", "typed-ss native", "typed-ss recovery", *PEERS]
    peers = list(PEERS)
    if GO_MISSING is not None:
        names, peers = names[:-1], peers[:-1]
    assert header[1 : 1 + len(names)] == names
    assert header[1 + len(names) :] == [
        *(f"typed-ss / {peer}" for peer in peers),
        *(f"typed-ss native / {peer}" for peer in peers),
        "typed-ss native / typed-ss",
        "typed-ss recovery / typed-ss native",  # what recovery costs; compared with no peer
    ]
    by_label = {line.split(" | ")[0].removeprefix("| "): line for line in table[2:]}
    for label in ("broadcast to 5: server CPU µs/delivery", "broadcast to 5: last receiver p50 ms"):
        assert re.search(r"\| \d+\.\d\dx \|$", by_label[label]), label  # the last column: a ratio
    assert "idle: server RSS KiB/conn" in by_label
    if redis:  # under typed-ss native alone, and divided by nothing
        cells = [cell.strip() for cell in by_label[PRESENCE_ROW].strip("|").split("|")][1:]
        figures, ratios = cells[: len(names)], cells[len(names) :]
        assert float(figures[1]) > 0
        assert figures[:1] + figures[2:] == ["-"] * (len(names) - 1)
        assert ratios == [""] * len(ratios)
    text = "\n".join(table)
    assert "echo, 50 conns: msgs/s" in text
    assert "broadcast to 5: last receiver p50 ms" in text
    assert "call, 50 conns: calls/s" in text
    assert "callgrind" not in text  # nothing counted, nothing shown
    assert "core alone" not in text
    checked = {(item["ours"], item["target"]) for item in report.targets(medians)}
    assert ("typed-ss", "echo 50 conns msgs/s >= 0.85x Starlette") in checked
    assert ("typed-ss", "call 50 conns calls/s >= 4x python-socketio") in checked
    assert ("typed-ss-native", "typed-ss native: echo 50 conns msgs/s >= 0.85x Starlette") in checked
    assert ("typed-ss-native", "typed-ss native: echo 50 conns msgs/s >= 4x python-socketio") in checked
    assert ("typed-ss-native", "typed-ss native: call 50 conns calls/s >= 4x python-socketio") in checked
    versus_go = ("typed-ss-native", "typed-ss native: echo 50 conns msgs/s >= 1.0x Go")
    assert (versus_go in checked) == (GO_MISSING is None)
    recovery = "typed-ss recovery: broadcast 5 server CPU µs/delivery <= 1.3x typed-ss native"
    assert ("typed-ss-recovery", recovery) in checked
    assert {ours for ours, _ in checked} == {"typed-ss", "typed-ss-native", "typed-ss-recovery"}
    assert [label for ours, label in checked if ours == "typed-ss-recovery"] == [recovery]


def test_presence_runs_only_with_typed_ss_native_on_redis(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The presence scenario's servers are typed-ss native on Redis: a run without that kind, or with
    --no-redis, leaves it out and says why; its figures are shown in typed-ss native's column only."""
    ran: list[int] = []
    monkeypatch.setattr(run, "presence_repetition", lambda sizes, workdir, results: ran.append(1))
    for kinds, redis in ((("starlette",), True), (("typed-ss-native",), False)):
        outcome = run_suite(replace(SMOKE, kinds=kinds, scenarios=("presence",)), redis=redis)
        assert outcome["medians"] == {}
    assert ran == []
    err = capsys.readouterr().err
    assert "presence: not run (typed-ss-native is not in --kinds" in err
    assert "presence: not run (--no-redis" in err
    run_suite(replace(SMOKE, kinds=("typed-ss-native",), scenarios=("presence",), repetitions=3))
    assert ran == [1]  # SMOKE.presence_repetitions of the run's 3

    medians = {"presence": {PRESENCE_KIND: {"sockets": 10_000, "instances": 3, "members_p50_ms": 40.0}}}
    table = report.table(medians, ("typed-ss", "typed-ss-native", "socketio"))
    label = "presence, 10,000 sockets in one room on 3 instances: members(room) p50 ms"
    assert table[2:] == [f"| {label} | - | 40.0 | - |  |  |  |"]
    assert report.targets(medians) == []


@pytest.mark.slow
@pytest.mark.parametrize("backend", SCALE_BACKENDS)
def test_the_scale_scenario_runs_on_tiny_sizes(backend: str) -> None:
    """Instances in processes of their own on each backend: every broadcast and roomcast reaches
    every recipient (the load generator counts each cast's deliveries and fails the run on one
    missing or one too many), the instances without members receive none of the roomcasts, and the
    broker (or the mesh) is read per node. Sizes are tiny: nothing here is a measurement."""
    unavailable = run.scale_unavailable(backend)
    if unavailable is not None:
        pytest.skip(unavailable)
    sizes = replace(SMOKE, kinds=(SCALE_KIND,), scenarios=("scale",), scale_backends=(backend,))
    outcome = run_suite(sizes)
    assert outcome["scale_skipped"] == {}
    assert set(outcome["medians"]) == {f"scale-{backend}"}
    figures = outcome["medians"][f"scale-{backend}"][SCALE_KIND]
    count, per = SMOKE.scale_instances, SMOKE.scale_receivers
    half = count // 2  # the instances with members: each has members of every room
    assert (figures["instances"], figures["connections"]) == (count, count * per)
    # Every broadcast reached every connection; every roomcast every member, all on other instances.
    assert figures["bc_deliveries"] == SMOKE.scale_broadcasts * count * per
    assert figures["bc_remote_deliveries"] == SMOKE.scale_broadcasts * (count - 1) * per
    members = half * per // SMOKE.scale_rooms
    assert figures["members_per_room"] == members
    assert figures["rc_deliveries"] == figures["rc_remote_deliveries"] == SMOKE.scale_roomcasts * members
    # Interest routing: the broker (or the roomcasting instance) knows exactly the instances with
    # members, and the others' bridges received nothing of the rooms.
    assert figures["room_subscribers_min"] == figures["room_subscribers_max"] == half
    assert figures["rc_received_without_members"] == 0
    assert figures["rc_received_by_members_min"] == SMOKE.scale_roomcasts
    assert figures["rc_instances_per_cast"] == half
    # Redis sends a publisher its own messages back (its bridge drops them); NATS (no_echo) and the
    # mesh do not.
    assert figures["bc_instances_per_cast"] == (count if backend.startswith("redis") else count - 1)
    assert figures["lost"] == figures["bc_duplicates"] == figures["rc_duplicates"] == 0
    for phase in ("bc", "rc"):
        assert 0 < figures[f"{phase}_latency_p50_ms"] <= figures[f"{phase}_latency_p99_ms"], phase
        assert figures[f"{phase}_servers_cpu_us_per_delivery"] > 0, phase
    nodes = {key.split(":")[1] for key in figures if key.startswith("node:")}
    if backend == "grpc":
        assert figures["streams"] == count * (count - 1)
        assert nodes == {f"instance-{i}" for i in range(count)}
        assert "rc_mesh_messages_per_cast" in figures
    else:
        expected = {"redis": {"redis"}, "nats": {"nats-1", "nats-2", "nats-3"}}.get(backend)
        expected = expected or {f"{role}-{i}" for role in ("master", "replica") for i in (1, 2, 3)}
        assert nodes == expected
        assert figures["rc_broker_cpu_us_per_cast"] >= 0
    if backend == "nats":  # node 2's clients are instances without members: no room subscription
        assert figures["node:nats-2:room_subscriptions"] == 0
        assert figures["node:nats-1:room_subscriptions"] > 0
    if backend == "redis-cluster":  # every room's channel is served by one master
        assert sum(figures[f"node:master-{i}:rooms"] for i in (1, 2, 3)) == SMOKE.scale_rooms

    table = report.scale_table(outcome["medians"])
    assert table[0] == f"| figure | {scale.NAMES[backend]} |"
    label = "roomcast: messages received by the instances without members"
    assert f"| {label} | 0.00 |" in table
    assert report.scale_node_table(outcome["medians"], "rc")[2:]  # a row per node


def test_the_scale_scenario_runs_on_the_backends_asked_for(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--backends`` narrows the scale scenario; ``--no-redis`` leaves out its Redis backends, and a
    run without typed-ss native leaves it out, each saying why."""
    ran: list[tuple[str, ...]] = []
    monkeypatch.setattr(
        run, "scale_repetition", lambda sizes, workdir, results, backends: ran.append(backends)
    )
    monkeypatch.setattr(run, "scale_unavailable", lambda backend: None)  # every broker installed
    outcome = run_suite(replace(SMOKE, kinds=(SCALE_KIND,), scenarios=("scale",)), redis=False)
    assert outcome["scale_skipped"] == {"redis": "--no-redis", "redis-cluster": "--no-redis"}
    run_suite(replace(SMOKE, kinds=(SCALE_KIND,), scenarios=("scale",), scale_backends=("grpc",)))
    run_suite(replace(SMOKE, kinds=("starlette",), scenarios=("scale",)))
    assert ran == [("nats", "grpc"), ("grpc",)]
    assert f"scale: not run ({SCALE_KIND} is not in --kinds" in capsys.readouterr().err
    monkeypatch.setattr(run, "scale_unavailable", lambda backend: "nats-server is not installed")
    outcome = run_suite(replace(SMOKE, kinds=(SCALE_KIND,), scenarios=("scale",), scale_backends=("nats",)))
    assert outcome["scale_skipped"] == {"nats": "nats-server is not installed"}
    assert len(ran) == 2


def test_the_scale_layout_leaves_a_nats_node_without_members() -> None:
    """Half the instances hold the members, instance 0 (without) roomcasts; on NATS, node 2's clients
    are instances without members only, and the roomcaster is on another node."""
    layout = scale.Layout(8)
    assert (layout.without_members, layout.members, layout.roomcaster) == ([0, 1, 2, 3], [4, 5, 6, 7], 0)
    assert [layout.nats_node(i) for i in range(8)] == [0, 1, 1, 1, 0, 0, 2, 2]
    small = scale.Layout(4)
    assert [small.nats_node(i) for i in range(4)] == [0, 1, 0, 2]


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
    assert OURS == ("typed-ss", "typed-ss-native", "typed-ss-recovery")
    assert VARIANTS == {"typed-ss-recovery": "typed-ss-native"}
    assert KINDS[-1] == "go"  # a peer, never one of ours
    assert report.NAMES["asgi"] == "raw ASGI"
    assert report.comparisons(KINDS) == [
        ("typed-ss", "asgi"),
        ("typed-ss", "starlette"),
        ("typed-ss", "socketio"),
        ("typed-ss", "go"),
        ("typed-ss-native", "asgi"),
        ("typed-ss-native", "starlette"),
        ("typed-ss-native", "socketio"),
        ("typed-ss-native", "go"),
        ("typed-ss-native", "typed-ss"),
        ("typed-ss-recovery", "typed-ss-native"),
    ]
    assert report.comparisons(("typed-ss", "socketio")) == [("typed-ss", "socketio")]
    assert report.comparisons(("starlette", "socketio")) == []
    # Recovery is divided by typed-ss native only: by no peer, and no peer by it.
    assert report.comparisons(("typed-ss-recovery", "socketio")) == []
    assert report.comparisons(("typed-ss", "typed-ss-recovery", "socketio")) == [("typed-ss", "socketio")]
    native_and_recovery = ("typed-ss-native", "typed-ss-recovery", "go")
    assert report.comparisons(native_and_recovery) == [
        ("typed-ss-native", "go"),
        ("typed-ss-recovery", "typed-ss-native"),
    ]


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


def test_the_native_transport_is_held_to_the_go_originals_figures() -> None:
    medians = {
        "echo50": {
            "typed-ss-native": {"msgs_per_s": 90.0, "server_cpu_us_per_msg": 4.0},
            "go": {"msgs_per_s": 100.0, "server_cpu_us_per_msg": 5.0},
        },
        "broadcast200": {"typed-ss-native": {"latency_p50_ms": 1.0}, "go": {"latency_p50_ms": 0.8}},
        "broadcast1000": {"typed-ss-native": {"latency_p50_ms": 4.0}, "go": {"latency_p50_ms": 4.0}},
        "broadcast10000": {"typed-ss-native": {"latency_p50_ms": 9.0}, "go": {"latency_p50_ms": 1.0}},
    }
    checked = {item["target"]: item for item in report.targets(medians)}
    assert {label: (item["ours"], item["met"]) for label, item in checked.items()} == {
        "typed-ss native: echo 50 conns msgs/s >= 1.0x Go": ("typed-ss-native", False),
        "typed-ss native: echo 50 conns server CPU µs/msg <= 1.0x Go": ("typed-ss-native", True),
        "typed-ss native: broadcast 200 p50 <= 1.0x Go": ("typed-ss-native", False),
        "typed-ss native: broadcast 1,000 p50 <= 1.0x Go": ("typed-ss-native", True),
    }
    assert checked["typed-ss native: echo 50 conns msgs/s >= 1.0x Go"]["missed_by_pct"] == pytest.approx(10)
    assert checked["typed-ss native: broadcast 200 p50 <= 1.0x Go"]["missed_by_pct"] == pytest.approx(25)


def test_recovery_is_held_to_typed_ss_natives_broadcast_cpu_at_every_size() -> None:
    kinds = ("typed-ss-native", "typed-ss-recovery")
    cpu = {200: (2.0, 2.4), 1000: (1.0, 1.5), 10_000: (1.0, 1.3)}  # native, recovery: µs/delivery
    medians: dict[str, dict[str, dict[str, float]]] = {
        f"broadcast{size}": {
            "typed-ss-native": {"server_cpu_us_per_delivery": native, "latency_p50_ms": 2.0},
            "typed-ss-recovery": {"server_cpu_us_per_delivery": recovery, "latency_p50_ms": 3.0},
        }
        for size, (native, recovery) in cpu.items()
    }
    medians["idle"] = {
        "typed-ss-native": {"kib_per_connection": 10.0},
        "typed-ss-recovery": {"kib_per_connection": 12.5},
    }
    checked = {item["target"]: item for item in report.targets(medians)}
    recovery = {label: item for label, item in checked.items() if item["ours"] == "typed-ss-recovery"}
    label = "typed-ss recovery: broadcast {} server CPU µs/delivery <= 1.3x typed-ss native"
    assert {key: (item["ratio"], item["met"]) for key, item in recovery.items()} == {
        label.format("200"): (pytest.approx(1.2), True),
        label.format("1,000"): (pytest.approx(1.5), False),
        label.format("10,000"): (pytest.approx(1.3), True),
    }
    assert recovery[label.format("1,000")]["missed_by_pct"] == pytest.approx(100 * (1.5 / 1.3 - 1))
    lines = report.target_lines(list(recovery.values()), repetitions=3)
    assert lines[2:] == [
        f"| {label.format('200')} | 1.20x | met |",
        f"| {label.format('1,000')} | 1.50x | MISSED by 15% |",
        f"| {label.format('10,000')} | 1.30x | met |",
    ]
    assert "indicative only" in report.target_lines(list(recovery.values()), repetitions=1)[2]

    table = report.table(medians, kinds)
    assert (
        table[0] == "| figure | typed-ss native | typed-ss recovery | typed-ss recovery / typed-ss native |"
    )
    by_label = {line.split(" | ")[0].removeprefix("| "): line for line in table[2:]}
    assert by_label["broadcast to 1,000: server CPU µs/delivery"] == (
        "| broadcast to 1,000: server CPU µs/delivery | 1.00 | 1.50 | 1.50x |"
    )
    assert by_label["broadcast to 10,000: last receiver p50 ms"].endswith("| 2.00 | 3.00 | 1.50x |")
    assert by_label["idle: server RSS KiB/conn"].endswith("| 10.0 | 12.5 | 1.25x |")  # sessions' memory


def test_the_core_is_counted_under_a_kind_without_recovery(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The core alone serves the benchmark server with recovery off: never shown under the recovery
    kind, even when it comes first."""
    monkeypatch.setattr(run, "_core_totals", lambda operation, counts, workdir: [100, 700])
    results: run.Results = {}
    sizes = replace(SMOKE, scenarios=("callgrind",), callgrind=None)
    run._count_core(replace(sizes, kinds=("typed-ss-recovery", "typed-ss-native")), tmp_path, results)
    assert set(results["core"]) == {"typed-ss-native"}
    assert results["core"]["typed-ss-native"][0]["instructions_per_msg"] == 6.0
    results.clear()
    run._count_core(replace(sizes, kinds=("typed-ss-recovery", "asgi")), tmp_path, results)
    assert results == {}


@pytest.mark.slow
def test_a_run_without_go_skips_it_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where Go is missing (``make test`` does not install it), the Go kind is left out of the run,
    which goes on with the others and records why."""
    reason = f"go is not installed ({goserver.INSTALL_HINT})"
    monkeypatch.setattr(goserver, "unavailable", lambda: reason)
    outcome = run_suite(replace(SMOKE, kinds=("starlette", "go"), scenarios=("echo",)))
    assert outcome["skipped"] == {"go": reason}
    assert outcome["kinds"] == ["starlette"]
    assert {kind for figures in outcome["medians"].values() for kind in figures} == {"starlette"}


@pytest.mark.slow
@needs_valgrind
def test_callgrind_counts_a_server_on_one_and_on_50_connections() -> None:
    sizes = replace(SMOKE, kinds=("asgi",), scenarios=("callgrind",), callgrind=(2, 12), callgrind50=(1, 3))
    outcome = run_suite(replace(sizes, core=None))
    medians = outcome["medians"]
    assert set(medians) == {"callgrind"}
    figures = medians["callgrind"]["asgi"]
    for name in ("instructions_per_msg", "instructions_per_msg_50conns", "instructions_per_call"):
        assert figures[name] > 0, name
    for prefix in ("", "call_", "echo50_"):
        assert 0 < figures[f"{prefix}short"] < figures[f"{prefix}long"], prefix

    labels = [line.split(" | ")[0].removeprefix("| ") for line in report.table(medians, ("asgi",))[2:]]
    assert labels == [
        "callgrind: instructions/echo msg",
        "callgrind: instructions/echo msg, 50 conns",
        "callgrind: instructions/call",
    ]


@pytest.mark.slow
@needs_valgrind
def test_the_core_alone_is_counted_once_under_the_first_typed_ss_kind() -> None:
    outcome = run_suite(
        replace(SMOKE, kinds=("typed-ss-native", "asgi"), scenarios=("callgrind",), callgrind=None)
    )
    medians = outcome["medians"]
    assert set(medians) == {"core"}
    assert set(medians["core"]) == {"typed-ss-native"}
    figures = medians["core"]["typed-ss-native"]
    assert figures["instructions_per_msg"] > 0
    assert figures["instructions_per_call"] > 0
    for operation in ("echo", "call"):
        assert 0 < figures[f"{operation}_short"] < figures[f"{operation}_long"], operation


def test_the_reports_show_the_core_in_one_column_and_the_kernel_beside_callgrind() -> None:
    kinds = ("typed-ss", "typed-ss-native", "asgi")
    echo = {"server_kernel_cpu_us_per_msg": 3.0, "msgs_per_s": 1.0}
    counted = {
        "instructions_per_msg": 90.0,
        "instructions_per_msg_50conns": 60.0,
        "instructions_per_call": 95.0,
    }
    medians = {
        "echo1": dict.fromkeys(kinds, echo),
        "echo50": dict.fromkeys(kinds, echo),
        "callgrind": dict.fromkeys(kinds, counted),
        "core": {"typed-ss": {"instructions_per_msg": 15.0, "instructions_per_call": 25.0}},
    }
    table = report.table(medians, kinds)
    assert table[0] == (
        "| figure | typed-ss | typed-ss native | raw ASGI | typed-ss / raw ASGI | typed-ss native / raw ASGI "
        "| typed-ss native / typed-ss |"
    )
    by_label = {line.split(" | ")[0].removeprefix("| "): line for line in table[2:]}
    labels = list(by_label)
    callgrind = labels.index("callgrind: instructions/echo msg")
    assert labels[callgrind:] == [
        "callgrind: instructions/echo msg",
        "callgrind: instructions/echo msg, 50 conns",
        "callgrind: instructions/call",
        "typed-ss core alone: instructions/echo msg",
        "typed-ss core alone: instructions/call",
        "kernel CPU µs/echo msg, 1 conn (timed echo; not in callgrind)",
        "kernel CPU µs/echo msg, 50 conns (timed echo; not in callgrind)",
    ]
    assert by_label["callgrind: instructions/echo msg, 50 conns"].endswith("| 1.00x | 1.00x | 1.00x |")
    # The core is typed-ss's alone, counted once: one figure, no ratio.
    assert by_label["typed-ss core alone: instructions/call"].endswith("| 25.0 | - | - |  |  |  |")
    del medians["callgrind"], medians["core"]
    assert not any("kernel CPU µs/echo msg" in line for line in report.table(medians, kinds))


def test_server_cpu_is_read_in_nanoseconds_with_its_kernel_part_in_ticks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pid = os.getpid()
    clocks = procstat.clocks()
    assert "ticks" in clocks["server_kernel"]
    assert "CLOCK_PROCESS_CPUTIME_ID" in clocks["client"]
    if procstat.HAVE_SCHEDSTAT:
        assert "schedstat" in clocks["server"]
        assert procstat.schedstat_ns(pid) > 0
        # The total comes from schedstat's nanoseconds, whatever the ticks say.
        monkeypatch.setattr(procstat, "schedstat_ns", lambda _pid: 1_234_567_891)
        assert procstat.cpu_seconds(pid) == 1.234567891
    monkeypatch.setattr(procstat, "HAVE_SCHEDSTAT", False)
    assert "no schedstat here" in procstat.clocks()["server"]
    ticks = procstat.cpu_seconds(pid)
    assert ticks <= sum(procstat.cpu_split(pid))


def test_the_raw_asgi_app_speaks_the_bare_starlette_wire() -> None:
    assert wire("asgi") == wire("starlette") == "bare"
    for make in (frame, lambda kind, event, data: call_frame(kind, event, 3, data)):
        assert make("asgi", "add", PAYLOAD) == make("starlette", "add", PAYLOAD)
    assert reply_frame("asgi", "add", 3, PAYLOAD) == reply_frame("starlette", "add", 3, PAYLOAD)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["asgi", "starlette"])
async def test_the_bare_endpoints_answer_alike(kind: str, tmp_path: Path) -> None:
    """The raw ASGI app and the bare Starlette endpoint: the same answer to each operation."""
    with server(kind, tmp_path) as started:
        conn = await connect(kind, started.url)
        got = await _exchange(
            conn,
            [
                b"ehi",
                b"c7\x02" + PAYLOAD.encode(),
                b"jroom1",
                b"rroom1 to the room",
                b"rroom2 to nobody",
                b"bto all",
                b"xunknown commands are ignored",
            ],
            expected=5,
        )
        await conn.close()
    assert got == [
        b"ehi",
        reply_frame(kind, "add", 7, PAYLOAD),
        b"jroom1",
        b"rroom1 to the room",
        b"bto all",
    ]


async def _exchange(conn: Conn, messages: list[bytes], expected: int) -> list[bytes]:
    """Send ``messages`` on ``conn``; the ``expected`` answers, and any that came in 0.1 s more."""
    got: list[bytes] = []
    enough = asyncio.get_running_loop().create_future()

    def on_message(message: bytes) -> None:
        got.append(message)
        if len(got) == expected and not enough.done():
            enough.set_result(None)

    conn.on_message = on_message
    for message in messages:
        conn.send(message)
    await asyncio.wait_for(enough, 10)
    await asyncio.sleep(0.1)  # nothing more comes
    return got


def test_the_go_server_speaks_typed_ss_wire() -> None:
    for make in (frame, lambda kind, event, data: call_frame(kind, event, 3, data)):
        assert make("go", "add", PAYLOAD) == make("typed-ss", "add", PAYLOAD)
    assert reply_frame("go", "add", 3, PAYLOAD) == reply_frame("typed-ss", "add", 3, PAYLOAD)


@pytest.mark.slow
@pytest.mark.skipif(GO_MISSING is not None, reason=f"the Go server cannot be built here: {GO_MISSING}")
async def test_the_go_server_answers_as_typed_ss_does(tmp_path: Path) -> None:
    """The Go server, built with Debian's Go, answers each operation with typed-ss's frames."""
    goserver.build(tmp_path)
    with server("go", tmp_path) as started:
        conn = await connect("go", started.url)
        got: list[bytes] = []
        six = asyncio.get_running_loop().create_future()

        def on_message(message: bytes) -> None:
            got.append(message)
            if len(got) == 6 and not six.done():
                six.set_result(None)

        conn.on_message = on_message
        for message in (
            b"echo\x02hi",
            b"add\x01c7\x02" + PAYLOAD.encode(),
            b"add\x02no reply: not a call",
            b"join\x02room1",
            b"rc\x02room1 to the room",
            b"rc\x02room2 to nobody",
            b"bc\x02to all",
            b"nothing\x02unknown events are ignored",
            b"echo\x02\xff",
        ):
            conn.send(message)
        await asyncio.wait_for(six, 10)
        await asyncio.sleep(0.1)  # nothing more comes
        await conn.close()
    assert got == [
        b"echo\x01S\x02hi",
        reply_frame("typed-ss", "add", 7, PAYLOAD),
        b"joined\x01S\x02room1",
        b"rc\x01S\x02room1 to the room",
        b"bc\x01S\x02to all",
        b'__error\x01J\x02{"event":"echo","code":"invalid_payload","detail":"payload is not valid UTF-8"}',
    ]


def test_kinds_narrow_a_run_without_adding_typed_ss(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``--kinds`` runs the servers named, in the reports' order, and no other."""
    ran: list[tuple[str, ...]] = []
    load = ("load_average_before", "load_average_after")

    def fake_suite(sizes: Sizes, **_: object) -> dict[str, object]:
        ran.append(sizes.kinds)
        outcome: dict[str, object] = {"medians": {}, "client_library": "picows", "seconds": 0.0}
        return {**outcome, "cpu_clocks": procstat.clocks(), **dict.fromkeys(load, 0.0)}

    monkeypatch.setattr("benchmarks.__main__.run_suite", fake_suite)
    monkeypatch.setattr("benchmarks.report.write_chart", lambda *_: False)
    argv = ["smoke", "--out", str(tmp_path), "--scenarios", "call", "--kinds", "socketio", "typed-ss-native"]
    assert bench_main(argv) == 0
    assert ran == [("typed-ss-native", "socketio")]


def test_every_typed_ss_kind_speaks_one_wire() -> None:
    for kind in ("typed-ss-native", "typed-ss-recovery"):
        assert wire(kind) == wire("typed-ss")
        for make in (frame, lambda kind, event, data: call_frame(kind, event, 3, data)):
            assert make(kind, "add", PAYLOAD) == make("typed-ss", "add", PAYLOAD)
        assert reply_frame(kind, "add", 3, PAYLOAD) == reply_frame("typed-ss", "add", 3, PAYLOAD)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["typed-ss-native", "typed-ss-recovery"])
async def test_with_recovery_casts_carry_an_offset_and_replies_none(kind: str, tmp_path: Path) -> None:
    """What the load generator reads from typed-ss with recovery on: every cast (the echo, an emit to
    one socket, included) carries an offset flag after ``S``, which neither the echo's count nor the
    casts' payload match minds; a call's reply carries none, so the call scenario's byte-for-byte check
    holds. Recovery off, no frame carries one."""
    bc, rc = payload("bc7-0"), payload("room1 r3.")
    with server(kind, tmp_path) as started:
        conn = await connect(kind, started.url)
        got = await _exchange(
            conn,
            [
                frame(kind, "echo", "hi"),
                call_frame(kind, "add", 7, PAYLOAD),
                frame(kind, "join", "room1"),
                frame(kind, "rc", rc),
                frame(kind, "bc", bc),
            ],
            expected=5,
        )
        await conn.close()
    flag = rb"o\d+\.\d+" if kind == "typed-ss-recovery" else b""

    def cast(event: str, data: str) -> bytes:
        return re.escape(f"{event}\x01S".encode()) + flag + re.escape(f"\x02{data}".encode())

    answers = [cast("echo", "hi"), re.escape(reply_frame(kind, "add", 7, PAYLOAD))]
    answers += [cast("joined", "room1"), cast("rc", rc), cast("bc", bc)]
    for message, answer in zip(got, answers, strict=True):
        assert re.fullmatch(answer, message), message
    # The broadcast and roomcast scenarios find their messages by the tag in the payload.
    assert b"room1 r3." in got[3]
    assert b"bc7-0." in got[4]


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


def test_a_run_of_one_repetition_gives_no_verdict() -> None:
    checked = [
        {"target": "echo >= 4x", "ratio": 3.2, "met": False, "missed_by_pct": 20.0},
        {"target": "call >= 4x", "ratio": 4.5, "met": True, "missed_by_pct": 0.0},
    ]
    quick = "\n".join(report.target_lines(checked, repetitions=1))
    assert "MISSED" not in quick
    assert "| 3.20x | outside the bound (1 repetition: indicative only) |" in quick
    assert "| 4.50x | within the bound (1 repetition: indicative only) |" in quick
    full = report.target_lines(checked, repetitions=5)
    assert full[2:] == ["| echo >= 4x | 3.20x | MISSED by 20% |", "| call >= 4x | 4.50x | met |"]
