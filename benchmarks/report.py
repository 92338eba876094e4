"""What a run prints and writes: the table with ratios, the targets, the JSON file and the chart."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks import goserver
from benchmarks.run import ROOT
from benchmarks.scale import NAMES as SCALE_NAMES
from benchmarks.servers import OURS, VARIANTS, native_settings, serve_settings

__all__ = [
    "all_targets",
    "comparisons",
    "environment",
    "rows",
    "scale_node_table",
    "scale_table",
    "table",
    "targets",
    "write_chart",
]

NAMES = {
    "typed-ss": "typed-ss",
    "typed-ss-native": "typed-ss native",
    "typed-ss-recovery": "typed-ss recovery",
    "asgi": "raw ASGI",
    "starlette": "bare Starlette",
    "socketio": "python-socketio",
    "go": "Go",
}


@dataclass(frozen=True)
class Row:
    key: str
    """Scenario key in the results."""
    metric: str
    label: str
    higher_is_better: bool | None
    """``None``: shown for information (the load generator's own cost), not compared."""


def fanout_sizes(medians: dict[str, Any]) -> list[int]:
    """The fan-out sizes a run measured (its ``broadcast<N>`` scenarios)."""
    return sorted(int(key.removeprefix("broadcast")) for key in medians if key.startswith("broadcast"))


def rows(medians: dict[str, Any]) -> list[Row]:
    """Every figure shown, in order, for the scenarios in ``medians``."""
    rows: list[Row] = []
    for key, title in (("echo1", "echo, 1 conn"), ("echo50", "echo, 50 conns")):
        rows += [
            Row(key, "msgs_per_s", f"{title}: msgs/s", True),
            Row(key, "rtt_p50_us", f"{title}: RTT p50 µs", False),
            Row(key, "rtt_p99_us", f"{title}: RTT p99 µs", False),
            Row(key, "server_cpu_us_per_msg", f"{title}: server CPU µs/msg", False),
            Row(key, "server_kernel_cpu_us_per_msg", f"{title}: of which in the kernel", None),
            Row(key, "client_cpu_us_per_msg", f"{title}: client CPU µs/msg", None),
            Row(key, "server_cpu_util", f"{title}: server CPU (cores)", None),
            Row(key, "client_cpu_util", f"{title}: client CPU (cores)", None),
            Row(key, "other_cpu_util", f"{title}: other tenants' CPU (cores)", None),
        ]
    title = "call, 50 conns"
    rows += [
        Row("call50", "calls_per_s", f"{title}: calls/s", True),
        Row("call50", "rtt_p50_us", f"{title}: round trip p50 µs", False),
        Row("call50", "rtt_p99_us", f"{title}: round trip p99 µs", False),
        Row("call50", "server_cpu_us_per_call", f"{title}: server CPU µs/call", False),
        Row("call50", "server_kernel_cpu_us_per_call", f"{title}: of which in the kernel", None),
        Row("call50", "client_cpu_us_per_call", f"{title}: client CPU µs/call", None),
        Row("call50", "server_cpu_util", f"{title}: server CPU (cores)", None),
        Row("call50", "client_cpu_util", f"{title}: client CPU (cores)", None),
        Row("call50", "other_cpu_util", f"{title}: other tenants' CPU (cores)", None),
    ]
    for receivers in fanout_sizes(medians):
        key = f"broadcast{receivers}"
        title = f"broadcast to {receivers:,}"
        rows += [
            Row(key, "latency_p50_ms", f"{title}: last receiver p50 ms", False),
            Row(key, "latency_p99_ms", f"{title}: last receiver p99 ms", False),
            Row(key, "deliverys_per_s", f"{title}: deliveries/s", True),
            Row(key, "server_cpu_us_per_delivery", f"{title}: server CPU µs/delivery", False),
            Row(key, "client_cpu_us_per_delivery", f"{title}: client CPU µs/delivery", None),
            Row(key, "server_cpu_util", f"{title}: server CPU (cores)", None),
            Row(key, "client_cpu_util", f"{title}: client CPU (cores)", None),
        ]
    rows += [
        Row("roomcast", "latency_p50_ms", "roomcast: last member p50 ms", False),
        Row("roomcast", "latency_p99_ms", "roomcast: last member p99 ms", False),
        Row("roomcast", "deliverys_per_s", "roomcast: deliveries/s", True),
        Row("roomcast", "server_cpu_us_per_delivery", "roomcast: server CPU µs/delivery", False),
        Row("idle", "kib_per_connection", "idle: server RSS KiB/conn", False),
        Row("idle", "connects_per_s", "idle: connects/s", True),
        Row("idle", "server_cpu_us_per_connect", "idle: server CPU µs/connect", False),
        Row("redis", "latency_p50_ms", "2 instances over Redis: p50 ms", False),
        Row("redis", "latency_p99_ms", "2 instances over Redis: p99 ms", False),
        Row("redis", "server_cpu_us_per_delivery", "2 instances over Redis: servers' CPU µs/delivery", False),
    ]
    return rows + presence_rows(medians) + callgrind_rows(medians)


def presence_rows(medians: dict[str, Any]) -> list[Row]:
    """The presence scenario's figures (:mod:`benchmarks.presence`): typed-ss native's alone, compared
    with nothing (no peer has presence), so neither divided nor charted."""
    figures: dict[str, Any] = next(iter(medians.get("presence", {}).values()), {})
    sockets, instances = figures.get("sockets"), figures.get("instances")
    if not isinstance(sockets, int | float) or not isinstance(instances, int | float):
        return []
    title = f"presence, {sockets:,.0f} sockets in one room on {instances:.0f} instances"
    labels = [
        ("members_p50_ms", "members(room) p50 ms"),
        ("members_p99_ms", "members(room) p99 ms"),
        ("members_servers_cpu_ms", "members(room): servers' CPU ms/query"),
        ("members_untracked_p50_ms", "members(untracked room) p50 ms"),
        ("count_p50_ms", "count(room) p50 ms"),
        ("count_p99_ms", "count(room) p99 ms"),
        ("count_servers_cpu_ms", "count(room): servers' CPU ms/query"),
        ("untracked_bytes_per_local_member", "untracked room: RSS bytes/local member"),
        ("tracked_bytes_per_local_member", "tracked room: RSS bytes/local member"),
        ("presence_bytes_per_member", "presence tables: RSS bytes/member, per instance"),
        ("table_bytes_per_member", "presence tables: their objects' bytes/member, per instance"),
        ("presence_mib_per_instance", "presence tables: RSS MiB per instance"),
        ("untracked_joins_per_s", "untracked room: joins/s"),
        ("tracked_joins_per_s", "tracked room: joins/s (every table complete)"),
        ("joined_remote_p50_ms", "a join's event, first member on another instance p50 ms"),
        ("joined_all_p50_ms", "a join's event, every member told p50 ms"),
        ("joined_all_p99_ms", "a join's event, every member told p99 ms"),
        ("event_servers_cpu_us_per_delivery", "presence events: servers' CPU µs/delivery"),
        ("peers_lost", "peers taken for gone during the run"),
        ("resyncs", "presence parts asked again during the run"),
        ("tracked_join_outbox_max", "while joining: the longest outbox (messages)"),
        ("tracked_join_published_per_s", "while joining: messages published/s per instance"),
        ("tracked_join_loop_lag_max_ms", "while joining: the worst event-loop lag ms"),
        ("queries_events_full_collections", "while querying: full garbage collections"),
        ("queries_events_full_collection_max_ms", "while querying: the longest full collection ms"),
    ]
    return [Row("presence", metric, f"{title}: {label}", None) for metric, label in labels]


def callgrind_rows(medians: dict[str, Any]) -> list[Row]:
    """The instruction counts: per server, then typed-ss's core alone (shown once, under the first
    typed-ss kind of the run), then the kernel CPU the counts leave out, from the timed echo."""
    rows = [
        Row("callgrind", "instructions_per_msg", "callgrind: instructions/echo msg", False),
        Row("callgrind", "instructions_per_msg_50conns", "callgrind: instructions/echo msg, 50 conns", False),
        Row("callgrind", "instructions_per_call", "callgrind: instructions/call", False),
        Row("core", "instructions_per_msg", "typed-ss core alone: instructions/echo msg", None),
        Row("core", "instructions_per_call", "typed-ss core alone: instructions/call", None),
    ]
    if "callgrind" in medians:
        not_counted = "kernel CPU µs/echo msg, {} (timed echo; not in callgrind)"
        rows += [
            Row("echo1", "server_kernel_cpu_us_per_msg", not_counted.format("1 conn"), None),
            Row("echo50", "server_kernel_cpu_us_per_msg", not_counted.format("50 conns"), None),
        ]
    return rows


def comparisons(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    """The (ours, theirs) pairs a report divides, of the servers in ``kinds``: each typed-ss kind over
    each peer, then typed-ss native over typed-ss on uvicorn (what the transport alone changes), then
    each variant over the kind it varies (typed-ss recovery over typed-ss native: what recovery
    costs), which is compared with nothing else."""
    ours = [kind for kind in kinds if kind in OURS and kind not in VARIANTS]
    pairs = [(kind, peer) for kind in ours for peer in kinds if peer not in OURS]
    if "typed-ss" in kinds and "typed-ss-native" in kinds:
        pairs.append(("typed-ss-native", "typed-ss"))
    pairs += [(variant, base) for variant, base in VARIANTS.items() if variant in kinds and base in kinds]
    return pairs


@dataclass(frozen=True)
class Target:
    label: str
    key: str
    metric: str
    peer: str
    op: str
    """``<=`` or ``>=``, applied to the figure of ``ours`` divided by the peer's."""
    bound: float
    ours: str = "typed-ss"
    """The typed-ss kind held to the target."""


def all_targets(medians: dict[str, Any]) -> list[Target]:
    """The issue's targets, for the fan-out sizes in ``medians``; the echo and call throughput ones
    for the native transport too, and the native transport's against the Go original (measured in the
    same run: echo over 50 connections at least its messages per second and at most its server CPU per
    message; broadcast to 200 and 1,000 at most its last receiver's p50); and what recovery may cost:
    at every fan-out size, typed-ss recovery's server CPU per broadcast delivery at most 1.3x typed-ss
    native's."""
    throughput = [
        Target("echo 50 conns msgs/s >= 0.85x Starlette", "echo50", "msgs_per_s", "starlette", ">=", 0.85),
        Target("echo 50 conns msgs/s >= 4x python-socketio", "echo50", "msgs_per_s", "socketio", ">=", 4),
        Target("call 50 conns calls/s >= 4x python-socketio", "call50", "calls_per_s", "socketio", ">=", 4),
    ]
    found = list(throughput)
    sizes = fanout_sizes(medians)
    for receivers in sizes:
        key, name = f"broadcast{receivers}", f"broadcast {receivers:,} p50"
        found += [
            Target(f"{name} <= 1.25x bare Starlette", key, "latency_p50_ms", "starlette", "<=", 1.25),
            Target(
                f"{name} >= 3x faster than python-socketio", key, "latency_p50_ms", "socketio", "<=", 1 / 3
            ),
        ]
    found += [
        Target("idle KiB/conn <= 1.5x bare Starlette", "idle", "kib_per_connection", "starlette", "<=", 1.5),
        Target(
            "callgrind instructions/echo msg <= 1.3x bare Starlette",
            "callgrind",
            "instructions_per_msg",
            "starlette",
            "<=",
            1.3,
        ),
    ]
    native = NAMES["typed-ss-native"]
    found += [
        replace(target, label=f"{native}: {target.label}", ours="typed-ss-native") for target in throughput
    ]
    versus_go = [
        Target("echo 50 conns msgs/s >= 1.0x Go", "echo50", "msgs_per_s", "go", ">=", 1.0),
        Target(
            "echo 50 conns server CPU µs/msg <= 1.0x Go", "echo50", "server_cpu_us_per_msg", "go", "<=", 1.0
        ),
    ]
    versus_go += [
        Target(
            f"broadcast {receivers:,} p50 <= 1.0x Go",
            f"broadcast{receivers}",
            "latency_p50_ms",
            "go",
            "<=",
            1.0,
        )
        for receivers in sizes
        if receivers in (200, 1000)
    ]
    found += [
        replace(target, label=f"{native}: {target.label}", ours="typed-ss-native") for target in versus_go
    ]
    recovery = NAMES["typed-ss-recovery"]
    found += [
        Target(
            f"{recovery}: broadcast {receivers:,} server CPU µs/delivery <= 1.3x {native}",
            f"broadcast{receivers}",
            "server_cpu_us_per_delivery",
            "typed-ss-native",
            "<=",
            1.3,
            ours="typed-ss-recovery",
        )
        for receivers in sizes
    ]
    return found


def _value(medians: dict[str, Any], key: str, metric: str, kind: str) -> float | None:
    value = medians.get(key, {}).get(kind, {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def _format(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table(medians: dict[str, Any], kinds: tuple[str, ...]) -> list[str]:
    """A Markdown table: each figure per server, then each typed-ss kind divided by each peer (and
    typed-ss native by typed-ss on uvicorn)."""
    pairs = comparisons(kinds)
    header = ["figure", *(NAMES[kind] for kind in kinds), *(f"{NAMES[a]} / {NAMES[b]}" for a, b in pairs)]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for row in rows(medians):
        if row.key not in medians:
            continue
        values = {kind: _value(medians, row.key, row.metric, kind) for kind in kinds}
        if all(value is None for value in values.values()):
            continue
        cells = [row.label, *(_format(values[kind]) for kind in kinds)]
        for ours, peer in pairs:
            ratio = _ratio(values[ours], values[peer])
            cells.append("" if row.higher_is_better is None or ratio is None else f"{ratio:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(medians: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target whose figures were measured: the ratio, met or missed, and by how much."""
    checked = []
    for target in all_targets(medians):
        ratio = _ratio(
            _value(medians, target.key, target.metric, target.ours),
            _value(medians, target.key, target.metric, target.peer),
        )
        if ratio is None:
            continue
        met = ratio <= target.bound if target.op == "<=" else ratio >= target.bound
        # How far from the bound, in percent of it (positive: missed by that much).
        miss = (ratio / target.bound - 1) * 100 if target.op == "<=" else (1 - ratio / target.bound) * 100
        checked.append(
            {
                "target": target.label,
                "ours": target.ours,
                "ratio": ratio,
                "met": met,
                "missed_by_pct": max(0.0, miss),
            }
        )
    return checked


SCALE_ROWS: tuple[tuple[str, str], ...] = (
    ("instances", "instances (processes)"),
    ("connections", "connections, all instances"),
    ("rooms", "rooms"),
    ("members_per_room", "members per room"),
    ("member_instances", "instances with members (of every room)"),
    ("broker_nodes", "broker nodes"),
    ("broker_connections", "the instances' connections to the broker"),
    ("streams", "gRPC streams, N x (N - 1)"),
    ("room_subscribers_max", "instances subscribed to a room's channel, at most"),
    ("idle_instance_cpu_util", "no casts: each instance's CPU (cores), the control plane alone"),
    ("idle_instance_sent_per_s", "no casts: messages each instance sends its peers per second"),
    ("bc_casts_per_s", "broadcast: casts/s (a steady rate)"),
    ("bc_deliveries_per_s", "broadcast: deliveries/s"),
    ("bc_latency_p50_ms", "broadcast: cross-instance latency p50 ms"),
    ("bc_latency_p99_ms", "broadcast: cross-instance latency p99 ms"),
    ("bc_servers_cpu_us_per_delivery", "broadcast: servers' CPU µs/delivery"),
    ("bc_servers_cpu_us_per_cast", "broadcast: servers' CPU µs/cast"),
    ("bc_instance_cpu_us_per_cast", "broadcast: each instance's CPU µs/cast"),
    ("bc_instances_per_cast", "broadcast: messages the instances received per cast"),
    ("bc_broker_in_per_cast", "broadcast: broker messages in per cast, all nodes"),
    ("bc_broker_out_per_cast", "broadcast: broker messages out per cast, all nodes"),
    ("bc_broker_bus_out_per_cast", "broadcast: cluster bus messages per cast"),
    ("bc_mesh_messages_per_cast", "broadcast: mesh messages per cast"),
    ("bc_broker_out_bytes_per_cast", "broadcast: broker bytes out per cast"),
    ("bc_broker_cpu_us_per_cast", "broadcast: broker CPU µs/cast, all nodes"),
    ("rc_casts_per_s", "roomcast: casts/s (a steady rate)"),
    ("rc_deliveries_per_s", "roomcast: deliveries/s"),
    ("rc_latency_p50_ms", "roomcast: cross-instance latency p50 ms"),
    ("rc_latency_p99_ms", "roomcast: cross-instance latency p99 ms"),
    ("rc_servers_cpu_us_per_delivery", "roomcast: servers' CPU µs/delivery"),
    ("rc_servers_cpu_us_per_cast", "roomcast: servers' CPU µs/cast"),
    ("rc_roomcaster_cpu_us_per_cast", "roomcast: the sending instance's CPU µs/cast"),
    ("rc_member_instance_cpu_us_per_cast", "roomcast: each instance with members: CPU µs/cast"),
    ("rc_other_instances_cpu_us_per_cast", "roomcast: the other instances without members: CPU µs/cast"),
    ("rc_received_without_members", "roomcast: messages received by the instances without members"),
    ("rc_received_by_members_min", "roomcast: messages received by each instance with members, fewest"),
    ("rc_instances_per_cast", "roomcast: messages the instances received per cast"),
    ("rc_broker_in_per_cast", "roomcast: broker messages in per cast, all nodes"),
    ("rc_broker_out_per_cast", "roomcast: broker messages out per cast, all nodes"),
    ("rc_broker_bus_out_per_cast", "roomcast: cluster bus messages per cast"),
    ("rc_mesh_messages_per_cast", "roomcast: mesh messages per cast"),
    ("rc_broker_out_bytes_per_cast", "roomcast: broker bytes out per cast"),
    ("rc_broker_cpu_us_per_cast", "roomcast: broker CPU µs/cast, all nodes"),
    ("burst", "burst: roomcasts sent at once to one instance"),
    ("burst_casts_per_s", "burst: roomcasts/s that instance got out (all delivered)"),
    ("burst_roomcaster_cpu_util", "burst: that instance's CPU (cores)"),
    ("burst_member_cpu_util_max", "burst: the busiest receiving instance's CPU (cores)"),
    ("burst_latency_p99_ms", "burst: cross-instance latency p99 ms"),
    ("drain_publishes_per_s", "one instance's outbox, nothing delivered: publishes/s"),
    ("drain_cpu_util", "one instance's outbox, nothing delivered: its CPU (cores)"),
    ("drain_cpu_us_per_publish", "one instance's outbox, nothing delivered: its CPU µs/publish"),
    ("ceiling_one_publishes_per_s", "broker alone, 1 subscriber: publishes/s"),
    ("ceiling_one_node_cpu_util", "broker alone, 1 subscriber: the node's CPU (cores)"),
    ("ceiling_one_node_cpu_us_per_publish", "broker alone, 1 subscriber: the node's CPU µs/publish"),
    ("ceiling_all_publishes_per_s", "broker alone, a subscriber per instance: publishes/s"),
    ("ceiling_all_deliveries_per_s", "broker alone, a subscriber per instance: deliveries/s"),
    ("ceiling_all_node_cpu_util", "broker alone, a subscriber per instance: the node's CPU (cores)"),
    ("ceiling_all_node_cpu_us_per_publish", "broker alone, a subscriber per instance: node CPU µs/publish"),
    ("ceiling_all_replica_cpu_us_per_publish", "broker alone: its replica's CPU µs/publish (cluster bus)"),
    ("ceiling_all_client_cpu_util", "broker alone: the load generator's CPU (cores)"),
    ("ceiling_cpu_us_per_publish_alone", "broker alone: the node's CPU µs per publish, deliveries apart"),
    ("ceiling_cpu_us_per_delivery", "broker alone: the node's CPU µs per delivery"),
    ("lost", "messages lost between instances"),
    ("other_cpu_util", "other tenants' CPU (cores), the busier phase"),
)
"""The scale scenario's figures (:mod:`benchmarks.scale`), one column per backend."""
SCALE_NODE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("in_per_cast", "in/cast"),
    ("out_per_cast", "out/cast"),
    ("bus_in_per_cast", "bus in/cast"),
    ("bus_out_per_cast", "bus out/cast"),
    ("sent_per_cast", "sent/cast"),
    ("out_bytes_per_cast", "bytes out/cast"),
    ("cpu_us_per_cast", "CPU µs/cast"),
)
"""Each broker node's figures per cast (the gRPC mesh: each instance's messages sent to its peers)."""


def scale_backends(medians: dict[str, Any]) -> list[str]:
    """The backends a run measured the scale scenario on, in the reports' order."""
    return [backend for backend in SCALE_NAMES if f"scale-{backend}" in medians]


def _scale_figures(medians: dict[str, Any], backend: str) -> dict[str, Any]:
    figures: dict[str, Any] = next(iter(medians.get(f"scale-{backend}", {}).values()), {})
    return figures


def scale_table(medians: dict[str, Any]) -> list[str]:
    """The scale scenario's figures as a Markdown table, a column per backend (none: no line)."""
    backends = scale_backends(medians)
    if not backends:
        return []
    lines = ["| figure | " + " | ".join(SCALE_NAMES[b] for b in backends) + " |"]
    lines.append("|---" + "|---:" * len(backends) + "|")
    for metric, label in SCALE_ROWS:
        values = []
        for backend in backends:
            figures = _scale_figures(medians, backend)
            value = figures.get(metric)
            values.append(float(value) if isinstance(value, int | float) else None)
        if all(value is None for value in values):
            continue
        lines.append(f"| {label} | " + " | ".join(_format(value) for value in values) + " |")
    return lines


def scale_node_table(medians: dict[str, Any], phase: str) -> list[str]:
    """Each broker node's share of ``phase`` (``bc``: the broadcasts, ``rc``: the roomcasts), per
    cast, for every backend of the run: a row per node (the gRPC mesh: per instance)."""
    rows: list[tuple[str, str, dict[str, float]]] = []
    for backend in scale_backends(medians):
        figures = _scale_figures(medians, backend)
        nodes: dict[str, dict[str, float]] = {}
        for key, value in figures.items():
            parts = key.split(":")
            if (
                len(parts) == 4
                and parts[0] == "node"
                and parts[2] == phase
                and isinstance(value, int | float)
            ):
                nodes.setdefault(parts[1], {})[parts[3]] = float(value)
        for node, values in nodes.items():
            rooms = figures.get(f"node:{node}:rooms", figures.get(f"node:{node}:room_subscriptions"))
            if isinstance(rooms, int | float):
                values["rooms"] = float(rooms)
            rows.append((SCALE_NAMES[backend], node, values))
    if not rows:
        return []
    columns = [
        (metric, label) for metric, label in SCALE_NODE_COLUMNS if any(metric in v for _, _, v in rows)
    ]
    extra = any("rooms" in values for _, _, values in rows)
    header = ["backend", "node", *(["rooms (Redis Cluster) / room subscriptions (NATS)"] if extra else [])]
    header += [label for _, label in columns]
    lines = ["| " + " | ".join(header) + " |", "|---|---" + "|---:" * (len(header) - 2) + "|"]
    for backend, node, values in rows:
        cells = [backend, node, *([_format(values.get("rooms"))] if extra else [])]
        cells += [_format(values.get(metric)) for metric, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


MIN_REPETITIONS_FOR_VERDICT = 3
"""Repetitions a run needs before its targets are called met or missed: one repetition, with no
measurement retaken, is at the mercy of one burst of other load (a quick run once showed a 0.32x
"miss" that way)."""


def target_lines(checked: list[dict[str, Any]], repetitions: int = MIN_REPETITIONS_FOR_VERDICT) -> list[str]:
    """The targets as a Markdown table. With fewer than :data:`MIN_REPETITIONS_FOR_VERDICT`
    repetitions the result says where the ratio lies, not met or MISSED."""
    verdict = repetitions >= MIN_REPETITIONS_FOR_VERDICT
    lines = ["| target | ours / peer | result |", "|---|---:|---|"]
    for item in checked:
        missed = item["missed_by_pct"]
        if not verdict:
            side = "within" if item["met"] else "outside"
            plural = "" if repetitions == 1 else "s"
            result = f"{side} the bound ({repetitions} repetition{plural}: indicative only)"
        elif item["met"]:
            result = "met"
        else:
            result = f"MISSED by {missed:.2f}%" if missed < 1 else f"MISSED by {missed:.0f}%"
        lines.append(f"| {item['target']} | {item['ratio']:.2f}x | {result} |")
    return lines


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    """The machine, the versions and the settings a run was taken with."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    packages = ["typed-ss", "uvicorn", "starlette", "websockets", "uvloop", "httptools", "msgspec"]
    packages += ["python-socketio", "python-engineio", "picows", "aiofastnet", "redis", "psutil"]
    return {
        "machine": f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, {cpu}",
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "versions": {package: _version(package) for package in packages},
        "commit": commit,
        # Protocol classes are recorded by their import path (how uvicorn's --ws/--http name them).
        "uvicorn_settings": {
            name: f"{value.__module__}:{value.__qualname__}" if isinstance(value, type) else value
            for name, value in serve_settings().items()
        },
        "native_settings": native_settings(),
        "go": goserver.versions(),
    }


def write_chart(medians: dict[str, Any], kinds: tuple[str, ...], path: Path, title: str) -> bool:
    """A PNG of each typed-ss kind's advantage over each peer per figure (above 1: typed-ss is
    better); returns ``False`` when matplotlib is not installed, or there is nothing to draw (no peer in
    ``kinds``)."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(ours, peer) for ours, peer in comparisons(kinds) if peer not in OURS]
    if not pairs:
        return False
    labels: list[str] = []
    bars: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    for row in rows(medians):
        if row.higher_is_better is None:
            continue
        advantages: dict[tuple[str, str], float] = {}
        for ours, peer in pairs:
            mine, theirs = (
                _value(medians, row.key, row.metric, ours),
                _value(medians, row.key, row.metric, peer),
            )
            if mine and theirs:
                advantages[(ours, peer)] = mine / theirs if row.higher_is_better else theirs / mine
        if not advantages:
            continue
        labels.append(row.label)
        for pair in pairs:
            bars[pair].append(advantages.get(pair, float("nan")))
    if not labels:
        return False
    per_label = 0.12 * len(pairs) + 0.1
    figure, axes = plt.subplots(figsize=(10, per_label * len(labels) + 1.6))
    height = 0.8 / len(pairs)
    positions = list(range(len(labels)))
    peers = list(dict.fromkeys(peer for _, peer in pairs))
    colours = {peer: f"C{index}" for index, peer in enumerate(peers)}
    for index, (ours, peer) in enumerate(pairs):
        native = ours != "typed-ss"
        axes.barh(
            [p + index * height for p in positions],
            bars[(ours, peer)],
            height=height,
            color=colours[peer],
            alpha=1.0 if native else 0.55,
            hatch="//" if native else None,
            edgecolor="white" if native else None,
            label=f"{NAMES[ours]} vs {NAMES[peer]}",
        )
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_yticks([p + height * (len(pairs) - 1) / 2 for p in positions], labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("typed-ss's advantage (peer / typed-ss for costs and latencies); > 1: typed-ss better")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
