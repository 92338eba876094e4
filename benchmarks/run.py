"""The orchestrator: starts every server in its own process, runs each scenario's load generator in
another, alternates the servers between repetitions, and hands the medians to :mod:`benchmarks.report`.

Every process it starts (servers, the brokers of :mod:`benchmarks.brokers`, load generators, valgrind)
it stops itself, by PID.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, NamedTuple

from benchmarks import goserver, procstat
from benchmarks.brokers import Node, free_port, nats_cluster, redis_cluster, redis_server
from benchmarks.brokers import die_with_parent as _die_with_parent
from benchmarks.brokers import stop as _stop
from benchmarks.loadgen import HAVE_PICOWS, Spec
from benchmarks.scale import NATS_NODES, Layout
from benchmarks.servers import KINDS, OURS, VARIANTS

__all__ = [
    "FULL",
    "PRESENCE_KIND",
    "QUICK",
    "SCALE_BACKENDS",
    "SCALE_KIND",
    "SCENARIOS",
    "SMOKE",
    "Sizes",
    "presence_repetition",
    "run_suite",
    "scale_repetition",
]

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = ("idle", "echo", "call", "broadcast", "roomcast", "redis", "presence", "scale", "callgrind")
"""Every scenario a run can be narrowed to (``python -m benchmarks quick --scenarios call``)."""
SCALE_BACKENDS = ("redis", "redis-cluster", "nats", "grpc")
"""The backends the scale scenario runs on (``--backends`` narrows them), in the reports' order."""


@dataclass(frozen=True)
class Sizes:
    """Every count and duration of one run of the suite (all bounded)."""

    name: str
    repetitions: int
    echo1_messages: int
    """Messages on the single connection."""
    echo50_messages: int
    """Messages per connection, 50 connections."""
    echo_warmup: int
    call50_calls: int
    """Calls per connection, 50 connections (after ``echo_warmup`` calls each)."""
    fanout: tuple[tuple[int, int], ...]
    """(receivers, sequential broadcasts) per fan-out size."""
    rooms: int
    members: int
    rounds: int
    idle: int
    redis_receivers: int
    redis_broadcasts: int
    callgrind: tuple[int, int] | None
    """Echo messages (and calls) of the short and the long callgrind run on one connection (``None``:
    no server is counted)."""
    callgrind50: tuple[int, int] | None = None
    """Echo messages per connection of the short and the long callgrind run over 50 connections."""
    core: tuple[int, int] | None = None
    """Echo messages (and calls) of the short and the long count of typed-ss's core alone
    (:mod:`benchmarks.core`, under callgrind; ``None``: not counted)."""
    presence_sockets: int = 30
    """Sockets in one tracked room, spread over ``presence_instances`` instances on Redis
    (:mod:`benchmarks.presence`)."""
    presence_instances: int = 3
    presence_identities: int = 6
    """Identities the sockets share (socket ``i`` has identity ``i % presence_identities``)."""
    presence_queries: int = 3
    """Members queries, and count queries, timed (after one not timed)."""
    presence_probes: int = 2
    """Presence events timed: a new socket joins the room, then leaves it (after one not timed)."""
    presence_join_batch: int = 100
    """Sockets that join a room at once (the next ones once these have their answers)."""
    presence_repetitions: int = 1
    """Repetitions of the presence scenario (the first ones of the run's)."""
    scale_instances: int = 4
    """typed-ss native instances, each a process, on each backend of the scale scenario
    (:mod:`benchmarks.scale`): half of them hold the rooms' members."""
    scale_receivers: int = 4
    """Connections on each instance (on the instances with members, each a member of one room)."""
    scale_rooms: int = 2
    scale_broadcasts: int = 20
    """Broadcasts, sent at ``scale_broadcast_rate`` a second, from every instance in turn."""
    scale_broadcast_rate: float = 50.0
    scale_roomcasts: int = 40
    """Roomcasts, sent at ``scale_roomcast_rate`` a second, from an instance without members."""
    scale_roomcast_rate: float = 100.0
    scale_idle: float = 0.5
    """Seconds without casts, measuring what the control plane alone costs each broker node."""
    scale_burst: int = 20
    """Roomcasts sent at once from one instance: how many a second one instance gets out."""
    scale_ceiling_seconds: float = 0.2
    """Seconds of publishes straight into a broker node (:mod:`benchmarks.ceiling`), for each of two
    fan-outs: the broker's own ceiling."""
    scale_warmup: int = 2
    """Broadcasts and roomcasts sent (and delivered) before the measured ones."""
    scale_repetitions: int = 1
    """Repetitions of the scale scenario (the first ones of the run's)."""
    scale_backends: tuple[str, ...] = SCALE_BACKENDS
    """The backends the scale scenario runs on, of :data:`SCALE_BACKENDS`."""
    quiet_retries: int = 0
    """Times a measurement is taken again when other processes used more than ``max_other_cpu``
    cores during it (the quietest attempt is kept), within ``retry_budget`` seconds per run."""
    max_other_cpu: float = 0.3
    retry_budget: float = 900.0
    kinds: tuple[str, ...] = KINDS
    scenarios: tuple[str, ...] = SCENARIOS
    """The scenarios to run, of :data:`SCENARIOS` (``callgrind`` counts echo messages and calls, and
    typed-ss's core alone)."""
    note: str = ""


QUICK = Sizes(
    name="quick",
    repetitions=1,
    echo1_messages=2000,
    echo50_messages=200,
    echo_warmup=20,
    call50_calls=200,
    fanout=((200, 100), (1000, 30)),
    rooms=100,
    members=10,
    rounds=10,
    idle=1000,
    redis_receivers=50,
    redis_broadcasts=100,
    callgrind=(200, 800),
    callgrind50=(8, 32),
    core=(2000, 12_000),
    presence_sockets=2000,
    presence_identities=200,
    presence_queries=20,
    presence_probes=5,
    scale_instances=8,
    scale_receivers=50,
    scale_rooms=20,
    scale_broadcasts=150,
    scale_broadcast_rate=50.0,
    scale_roomcasts=1000,
    scale_roomcast_rate=250.0,
    scale_idle=2.0,
    scale_burst=2000,
    scale_ceiling_seconds=2.0,
    scale_warmup=5,
    note="quick sizes: 1 repetition, fan-out up to 1,000, rooms of 10 members, 1,000 idle connections, "
    "presence of 2,000 sockets in one room, 8 instances of 50 connections on each backend; `make bench` "
    "runs the full sizes",
)
FULL = Sizes(
    name="full",
    repetitions=5,
    echo1_messages=3000,
    echo50_messages=1000,
    echo_warmup=50,
    call50_calls=1000,
    # python-socketio needs about 1.5 s per broadcast to 10,000 here.
    fanout=((200, 200), (1000, 100), (10_000, 10)),
    rooms=100,
    members=100,
    rounds=20,
    idle=10_000,
    redis_receivers=200,
    redis_broadcasts=200,
    callgrind=(500, 2500),
    callgrind50=(20, 100),
    core=(2000, 12_000),
    presence_sockets=10_000,
    presence_identities=1000,
    presence_queries=50,
    presence_probes=20,
    presence_repetitions=3,
    scale_instances=8,
    scale_receivers=125,
    scale_rooms=25,
    scale_broadcasts=400,
    scale_broadcast_rate=40.0,
    scale_roomcasts=5000,
    scale_roomcast_rate=500.0,
    scale_idle=5.0,
    scale_burst=5000,
    scale_ceiling_seconds=3.0,
    scale_warmup=20,
    scale_repetitions=3,
    quiet_retries=3,
    note="full sizes: medians of 5 repetitions (presence and scale: 3), servers alternated between "
    "repetitions, a measurement taken again (up to 3 times; presence and scale never) when other "
    "processes used more than 0.3 cores during it",
)
SMOKE = Sizes(
    name="smoke",
    repetitions=1,
    echo1_messages=20,
    echo50_messages=4,
    echo_warmup=2,
    call50_calls=4,
    fanout=((5, 3),),
    rooms=2,
    members=3,
    rounds=2,
    idle=10,
    redis_receivers=3,
    redis_broadcasts=3,
    callgrind=None,
    core=(20, 120),
    presence_sockets=30,
    presence_identities=6,
    presence_queries=3,
    presence_probes=2,
    note="smoke sizes: proves the harness works, measures nothing",
)
SIZES = {sizes.name: sizes for sizes in (QUICK, FULL, SMOKE)}


# --- processes -------------------------------------------------------------------------------------


@dataclass
class Started:
    """A server process this run started, and where it listens."""

    kind: str
    process: subprocess.Popen[str]
    port: int
    log: IO[str]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid


class ServerDidNotStart(RuntimeError):
    """A server process did not report its port (it failed to start: see its log)."""


def _read_port(process: subprocess.Popen[str], timeout: float) -> int:
    """The port from the server's first line of output, ``PORT <n>`` (printed in one write)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        raise ServerDidNotStart(f"the server did not report its port within {timeout} s: {line!r}")
    return int(line.split()[1])


@contextlib.contextmanager
def server(
    kind: str,
    workdir: Path,
    *,
    redis_url: str | None = None,
    wrapper: list[str] | None = None,
    module: str | None = None,
    args: list[str] | None = None,
) -> Iterator[Started]:
    """Run ``python -m benchmarks.servers KIND`` (under ``wrapper``, e.g. valgrind) until the block ends;
    for ``go``, the Go server :func:`benchmarks.goserver.build` built in ``workdir``; with ``module``,
    ``python -m MODULE`` (``kind`` names it in the logs: the presence server, :mod:`benchmarks.presence`);
    ``args``: more arguments."""
    with servers(kind, workdir, [args or []], redis_url=redis_url, wrapper=wrapper, module=module) as (one,):
        yield one


@contextlib.contextmanager
def servers(
    kind: str,
    workdir: Path,
    args: list[list[str]],
    *,
    redis_url: str | None = None,
    wrapper: list[str] | None = None,
    module: str | None = None,
) -> Iterator[list[Started]]:
    """:func:`server` ``len(args)`` times at once, each with its own more arguments: all are started
    before any is waited for (the scale scenario's instances start together)."""
    env = None
    if module is not None:
        command = [*(wrapper or []), sys.executable, "-m", module]
    elif kind == "go":
        if wrapper:
            raise ValueError("the Go server is not run under a wrapper")
        command, env = goserver.command(workdir)
    else:
        command = [*(wrapper or []), sys.executable, "-m", "benchmarks.servers", kind]
    if redis_url is not None:
        command += ["--redis", redis_url]
    started: list[tuple[subprocess.Popen[str], IO[str]]] = []
    try:
        for more in args:
            output: IO[str] = open(workdir / f"server-{kind}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
            try:
                child = subprocess.Popen(
                    [*command, *more],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=output,
                    text=True,
                    preexec_fn=_die_with_parent,
                )
            except BaseException:
                output.close()
                raise
            started.append((child, output))
        timeout = (180.0 if wrapper else 30.0) + 2.0 * len(args)
        yield [Started(kind, child, _read_port(child, timeout), output) for child, output in started]
    finally:
        for child, output in started:  # closed here, whatever happened
            _stop(child)
            if child.stdout is not None:
                child.stdout.close()
            output.close()


def loadgen(spec: Spec, timeout: float = 300.0) -> dict[str, Any]:
    """Run one scenario in a load-generator process and return its figures."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", json.dumps(asdict(spec))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({spec.scenario}, {spec.kind}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _settle(pid: int, timeout: float = 30.0) -> None:
    """Wait (at most ``timeout`` seconds) until the server ``pid`` has finished closing the last
    scenario's connections: python-socketio takes seconds to tear down 10,000, which would otherwise
    overlap the next server's measurement."""
    deadline = time.monotonic() + timeout
    busy = procstat.cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = procstat.cpu_seconds(pid)
        if now - busy < 0.01:  # under 5% of a core over the last 0.2 s
            return
        busy = now


class Retries:
    """Takes a measurement again while other tenants' load spoiled it, within a time budget."""

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self.spent = 0.0

    def measure(self, spec: Spec, *, retry: bool = True) -> dict[str, Any]:
        """Run ``spec``, again while it was spoiled and ``retry`` allows (never for figures that need
        a fresh server, such as idle memory)."""
        best: dict[str, Any] | None = None
        for attempt in range(1 + (self.sizes.quiet_retries if retry else 0)):
            started = time.monotonic()
            figures = loadgen(spec)
            figures["attempts"] = attempt + 1
            if attempt:
                self.spent += time.monotonic() - started
            if best is None or figures.get("other_cpu_util", 0.0) < best.get("other_cpu_util", 0.0):
                best = figures
            if figures.get("other_cpu_util", 0.0) <= self.sizes.max_other_cpu:
                break
            if self.spent > self.sizes.retry_budget:
                break
            time.sleep(2.0)
        assert best is not None
        return best


# --- the suite -------------------------------------------------------------------------------------

Results = dict[str, dict[str, list[dict[str, Any]]]]
"""scenario key -> server kind -> one figures dict per repetition."""


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _rotated(kinds: tuple[str, ...], by: int) -> list[str]:
    by %= len(kinds)
    return [*kinds[by:], *kinds[:by]]


def _repetition(sizes: Sizes, rep: int, workdir: Path, results: Results, retries: Retries) -> None:
    """One repetition: fresh servers, idle first (on servers that have seen no load), then the rest,
    each scenario visiting the servers in this repetition's order."""
    order = _rotated(sizes.kinds, rep)
    chosen = set(sizes.scenarios)
    if not chosen & {"idle", "echo", "call", "broadcast", "roomcast"}:
        return
    with contextlib.ExitStack() as stack:
        servers = {kind: stack.enter_context(server(kind, workdir)) for kind in order}

        # A server prints its port before uvicorn has finished starting: let them all settle, so that
        # the first measurement is not taken while the others are still starting.
        time.sleep(2.0)

        def each(key: str, spec: Spec, *, retry: bool = True) -> None:
            for kind in order:
                started = servers[kind]
                spec = replace(spec, kind=kind, url=started.url, server_pids=[started.pid])
                figures = retries.measure(spec, retry=retry)
                results.setdefault(key, {}).setdefault(kind, []).append(figures)
                _settle(started.pid)

        base = Spec(scenario="", kind="", url="", server_pids=[])
        if "idle" in chosen:
            _say(f"  idle: {sizes.idle} connections")
            # Never retaken: a second attempt would find the memory of the first one's connections pooled.
            each("idle", replace(base, scenario="idle", connections=sizes.idle), retry=False)
        if "echo" in chosen:
            _say("  echo: 1 and 50 connections")
            each(
                "echo1",
                replace(
                    base,
                    scenario="echo",
                    connections=1,
                    messages=sizes.echo1_messages,
                    warmup=sizes.echo_warmup * 5,
                ),
            )
            each(
                "echo50",
                replace(
                    base,
                    scenario="echo",
                    connections=50,
                    messages=sizes.echo50_messages,
                    warmup=sizes.echo_warmup,
                ),
            )
        if "call" in chosen:
            _say("  call: 50 connections")
            each(
                "call50",
                replace(
                    base,
                    scenario="call",
                    connections=50,
                    messages=sizes.call50_calls,
                    warmup=sizes.echo_warmup,
                ),
            )
        if "broadcast" in chosen:
            for receivers, broadcasts in sizes.fanout:
                _say(f"  broadcast: {receivers} receivers")
                each(
                    f"broadcast{receivers}",
                    replace(
                        base,
                        scenario="broadcast",
                        receivers=receivers,
                        broadcasts=broadcasts,
                        warmup=max(2, broadcasts // 10),
                    ),
                )
        if "roomcast" in chosen:
            _say(f"  roomcast: {sizes.rooms} rooms of {sizes.members}")
            each(
                "roomcast",
                replace(
                    base,
                    scenario="roomcast",
                    rooms=sizes.rooms,
                    members=sizes.members,
                    rounds=sizes.rounds,
                    warmup=max(1, sizes.rounds // 10),
                ),
            )


NO_REDIS = {"go": "no Redis backend"}
"""Kinds the redis scenario skips, with why: the Go server has no Redis backend. typed-ss with recovery
runs in it with the history in Redis (streams, a script per cast, delivery from the subscription):
what that costs, against typed-ss native on the same Redis."""
NO_CALLGRIND = frozenset({"go"})
"""Kinds the callgrind scenario skips: its instruction counts compare the Python servers, and the Go
server is not run under valgrind."""


def _redis_repetition(sizes: Sizes, rep: int, workdir: Path, results: Results, retries: Retries) -> None:
    """Two instances of each kind on one redis-server: the sender on one, the receivers on the other."""
    _say(f"  redis: 2 instances, {sizes.redis_receivers} receivers on the other instance")
    kinds = tuple(kind for kind in sizes.kinds if kind not in NO_REDIS)
    with redis_server(workdir) as (url, redis_pid):
        for kind in _rotated(kinds, rep) if kinds else []:
            with server(kind, workdir, redis_url=url) as one, server(kind, workdir, redis_url=url) as two:
                time.sleep(2.0)  # both instances started and subscribed
                spec = Spec(
                    scenario="redis",
                    kind=kind,
                    url=one.url,
                    other_url=two.url,
                    server_pids=[one.pid, two.pid],
                    helper_pids=[redis_pid],
                    receivers=sizes.redis_receivers,
                    broadcasts=sizes.redis_broadcasts,
                    warmup=max(3, sizes.redis_broadcasts // 10),
                )
                results.setdefault("redis", {}).setdefault(kind, []).append(retries.measure(spec))


PRESENCE_KIND = "typed-ss-native"
"""The presence scenario's server: typed-ss on its native transport (:mod:`benchmarks.presence`), its
figures recorded under that kind."""


def presence_repetition(sizes: Sizes, workdir: Path, results: Results) -> None:
    """Presence of ``presence_sockets`` sockets in one tracked room, over ``presence_instances``
    presence servers on one redis-server (:mod:`benchmarks.presence`): members and count queries,
    memory, presence events. Never retaken: its memory figures need fresh servers."""
    count = sizes.presence_instances
    _say(
        f"  presence: {sizes.presence_sockets:,} sockets in one room over {count} instances on Redis, "
        f"{sizes.presence_queries} queries of each kind, {sizes.presence_probes} presence events"
    )
    with redis_server(workdir) as (url, redis_pid), contextlib.ExitStack() as stack:
        instances = [
            stack.enter_context(server("presence", workdir, redis_url=url, module="benchmarks.presence"))
            for _ in range(count)
        ]
        spec = Spec(
            scenario="presence",
            kind=PRESENCE_KIND,
            url=instances[0].url,
            server_pids=[started.pid for started in instances],
            helper_pids=[redis_pid],
            connections=sizes.presence_sockets,
            messages=sizes.presence_queries,
            rounds=sizes.presence_probes,
            warmup=1,
            extra={
                "urls": [started.url for started in instances],
                "identities": sizes.presence_identities,
                "join_batch": sizes.presence_join_batch,
            },
        )
        figures = loadgen(spec, timeout=600)
        results.setdefault("presence", {}).setdefault(PRESENCE_KIND, []).append(figures)


SCALE_KIND = "typed-ss-native"
"""The scale scenario's servers: typed-ss on its native transport (:mod:`benchmarks.scale`), its
figures recorded under that kind (keys ``scale-<backend>``)."""
NEEDS_REDIS = frozenset({"redis", "redis-cluster"})
"""The scale scenario's backends on Redis: ``--no-redis`` leaves them out."""


def scale_unavailable(backend: str) -> str | None:
    """Why the scale scenario cannot run on ``backend`` here (``None``: it can)."""
    programs = {
        "redis": ["redis-server"],
        "redis-cluster": ["redis-server"],
        "nats": ["nats-server"],
    }
    for program in programs.get(backend, []):
        if (shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")) is None:
            return f"{program} is not installed (`make bench` installs it)"
    module = {"redis": "redis", "redis-cluster": "redis", "nats": "nats", "grpc": "grpc"}[backend]
    if importlib.util.find_spec(module) is None:
        return (
            f"the Python package {module!r} is not installed (typed-ss's extras: `make test` installs them)"
        )
    return None


@contextlib.contextmanager
def _scale_brokers(backend: str, workdir: Path) -> Iterator[list[Node]]:
    """The broker of ``backend``: one redis-server, a Redis Cluster of 3 masters with a replica each,
    3 nats-server nodes routed to each other, or none (the gRPC mesh)."""
    if backend == "redis":
        with redis_server(workdir) as (url, pid):
            yield [Node("redis", "single", int(url.rsplit(":", 1)[1].split("/")[0]), pid)]
    elif backend == "redis-cluster":
        with redis_cluster(workdir) as nodes:
            yield nodes
    elif backend == "nats":
        with nats_cluster(workdir, NATS_NODES) as nodes:
            yield nodes
    else:
        yield []


def _scale_arguments(backend: str, nodes: list[Node], count: int) -> list[list[str]]:
    """Each instance's arguments to ``python -m benchmarks.scale``: Redis's URL; a Redis Cluster
    master's (each instance is given another, as a deployment spreads them); its NATS node's
    (:meth:`benchmarks.scale.Layout.nats_node`); or its gRPC address and every other instance's."""
    arguments = []
    masters = [node for node in nodes if node.role != "replica"]
    ports = [free_port() for _ in range(count)] if backend == "grpc" else []
    for instance in range(count):
        more = ["--backend", backend, "--name", f"instance-{instance}"]
        if backend == "grpc":
            more += ["--listen", f"127.0.0.1:{ports[instance]}"]
            more += [
                arg for port in ports if port != ports[instance] for arg in ("--peer", f"127.0.0.1:{port}")
            ]
        elif backend == "nats":
            more += ["--url", nodes[Layout(count).nats_node(instance)].url]
        else:
            more += ["--url", masters[instance % len(masters)].url]
        arguments.append(more)
    return arguments


def scale_repetition(sizes: Sizes, workdir: Path, results: Results, backends: tuple[str, ...]) -> None:
    """``scale_instances`` instances of the scale server (:mod:`benchmarks.scale`), each a process, on
    each of ``backends`` in turn, each with fresh brokers: cross-instance broadcasts and roomcasts,
    and the broker's load. Never retaken: it needs fresh servers."""
    count = sizes.scale_instances
    for backend in backends:
        _say(
            f"  scale: {count} instances on {backend}, {sizes.scale_receivers} connections each, "
            f"{sizes.scale_broadcasts} broadcasts at {sizes.scale_broadcast_rate:g}/s, "
            f"{sizes.scale_roomcasts} roomcasts at {sizes.scale_roomcast_rate:g}/s to "
            f"{sizes.scale_rooms} rooms"
        )
        with _scale_brokers(backend, workdir) as nodes:
            for attempt in range(3):
                arguments = _scale_arguments(backend, nodes, count)
                try:
                    instances = servers("scale", workdir, arguments, module="benchmarks.scale")
                    with instances as started:
                        spec = Spec(
                            scenario="scale",
                            kind=SCALE_KIND,
                            url=started[0].url,
                            server_pids=[one.pid for one in started],
                            helper_pids=[node.pid for node in nodes],
                            receivers=sizes.scale_receivers,
                            rooms=sizes.scale_rooms,
                            broadcasts=sizes.scale_broadcasts,
                            messages=sizes.scale_roomcasts,
                            warmup=sizes.scale_warmup,
                            extra={
                                "backend": backend,
                                "urls": [one.url for one in started],
                                "nodes": [{**asdict(node), "url": node.url} for node in nodes],
                                "broadcast_rate": sizes.scale_broadcast_rate,
                                "roomcast_rate": sizes.scale_roomcast_rate,
                                "idle": sizes.scale_idle,
                                "burst": sizes.scale_burst,
                                "ceiling_seconds": sizes.scale_ceiling_seconds,
                            },
                        )
                        figures = loadgen(spec, timeout=600)
                except ServerDidNotStart:
                    if attempt == 2:
                        raise
                    _say(f"  scale: an instance on {backend} did not start (a port taken meanwhile?): again")
                    continue
                results.setdefault(f"scale-{backend}", {}).setdefault(SCALE_KIND, []).append(figures)
                break


def _callgrind(sizes: Sizes, workdir: Path, results: Results) -> None:
    """The instruction counts: each Python server's per echo message (on 1 and on 50 connections) and
    per call (one process under callgrind, start-up excluded), and typed-ss's core alone
    (:mod:`benchmarks.core`)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        _say("  callgrind: valgrind is not installed, skipped (`make bench` installs it)")
        return
    if sizes.callgrind is not None:
        for kind in sizes.kinds:
            if kind not in NO_CALLGRIND:
                figures = _count_server(kind, sizes, workdir)
                results.setdefault("callgrind", {}).setdefault(kind, []).append(figures)
    _count_core(sizes, workdir, results)


class _Count(NamedTuple):
    """One count taken in a server under callgrind: the difference between a short and a long run."""

    figure: str
    scenario: str
    connections: int
    messages: tuple[int, int]
    """Per connection, of the short and the long run."""
    prefix: str
    """Of the figures holding the two runs' totals (``<prefix>short``, ``<prefix>long``)."""


def _server_counts(sizes: Sizes) -> list[_Count]:
    assert sizes.callgrind is not None
    counts = [
        _Count("instructions_per_msg", "echo", 1, sizes.callgrind, ""),
        _Count("instructions_per_call", "call", 1, sizes.callgrind, "call_"),
    ]
    if sizes.callgrind50 is not None:
        counts.append(_Count("instructions_per_msg_50conns", "echo", 50, sizes.callgrind50, "echo50_"))
    return counts


def _count_server(kind: str, sizes: Sizes, workdir: Path) -> dict[str, float]:
    """Instructions per unit of each of :func:`_server_counts`, all in one server process of ``kind``
    under callgrind: (long run - short run) / the difference of their messages, so that start-up and
    the connections' set-up cancel out."""
    counts = _server_counts(sizes)
    _say(f"  callgrind: {kind}: " + "; ".join(_describe(count) for count in counts))
    out = workdir / f"callgrind-{kind}.out"
    wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    figures: dict[str, float] = {}
    with server(kind, workdir, wrapper=wrapper) as started:
        for count in counts:
            base = Spec(
                scenario=count.scenario,
                kind=kind,
                url=started.url,
                server_pids=[started.pid],
                connections=count.connections,
                warmup=0,
            )
            warmup = max(2, 100 // count.connections)
            loadgen(replace(base, messages=warmup), timeout=600)  # imports and caches warmed up
            totals = [_count_one_run(started.pid, out, replace(base, messages=n)) for n in count.messages]
            short, long = count.messages
            figures[count.figure] = (totals[1] - totals[0]) / ((long - short) * count.connections)
            figures[f"{count.prefix}short"], figures[f"{count.prefix}long"] = totals
    return figures


def _describe(count: _Count) -> str:
    short, long = count.messages
    where = "1 connection" if count.connections == 1 else f"{count.connections} connections (each)"
    return f"{count.scenario} {short} and {long} on {where}"


def _count_one_run(pid: int, out: Path, spec: Spec) -> int:
    """The instructions the server ``pid`` (under callgrind, writing ``out``) runs for ``spec``:
    counters zeroed, the load generator run, the counters dumped and read."""
    _callgrind_control("-z", pid)
    loadgen(spec, timeout=600)
    dumps_before = set(out.parent.glob(f"{out.name}.*"))
    _callgrind_control("-d", pid)
    (dump,) = set(out.parent.glob(f"{out.name}.*")) - dumps_before
    return _summary(dump)


CORE_TIMEOUT = 600.0
"""Seconds one count of the core under callgrind may take (about 15 at 12,000 messages)."""


def _count_core(sizes: Sizes, workdir: Path, results: Results) -> None:
    """Instructions per echo message and per call of typed-ss's core alone (:mod:`benchmarks.core`),
    from valgrind's totals of a short and a long run; recorded once, under the first typed-ss kind of
    the run that is no variant (the core serves typed-ss's and typed-ss native's server, recovery off)."""
    if sizes.core is None:
        return
    column = next((kind for kind in sizes.kinds if kind in OURS and kind not in VARIANTS), None)
    if column is None:
        _say("  callgrind: typed-ss's core alone not counted: no typed-ss kind but a variant in this run")
        return
    short, long = sizes.core
    _say(f"  callgrind: typed-ss's core alone, {short} and {long} echo messages, then calls")
    figures: dict[str, float] = {}
    for operation, unit in (("echo", "msg"), ("call", "call")):
        totals = _core_totals(operation, (short, long), workdir)
        figures[f"instructions_per_{unit}"] = (totals[1] - totals[0]) / (long - short)
        figures[f"{operation}_short"], figures[f"{operation}_long"] = totals
    results.setdefault("core", {}).setdefault(column, []).append(figures)


def _core_totals(operation: str, counts: tuple[int, int], workdir: Path) -> list[int]:
    """valgrind's instruction totals of ``python -m benchmarks.core`` serving each of ``counts``
    messages of ``operation``, the runs side by side (a count does not depend on timing)."""
    outs = [workdir / f"callgrind-core-{operation}-{count}.out" for count in counts]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for count, out in zip(counts, outs, strict=True):
            processes.append(_start_core(operation, count, out))
        for process, out in zip(processes, outs, strict=True):
            if process.wait(CORE_TIMEOUT) != 0:
                log = out.with_suffix(".log").read_text()[-3000:]
                raise RuntimeError(f"benchmarks.core under callgrind failed ({out.name}):\n{log}")
    finally:
        for process in processes:
            _stop(process)
    return [_summary(out) for out in outs]


def _start_core(operation: str, count: int, out: Path) -> subprocess.Popen[bytes]:
    """``python -m benchmarks.core`` under callgrind, with a fixed hash seed (so that two runs differ
    only by their messages); valgrind's report goes to ``out`` with a ``.log`` beside it."""
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    command += [sys.executable, "-m", "benchmarks.core", str(count), "--kind", operation]
    with open(out.with_suffix(".log"), "w") as log:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=_die_with_parent,
        )


def _callgrind_control(option: str, pid: int) -> None:
    # The server answers between two event-loop ticks (uvicorn ticks every 0.1 s even when idle); an
    # idle native server, blocked in epoll_wait, is made to answer by vgdb through ptrace.
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=120)


def _summary(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {dump}")


def wait_until_quiet(max_wait: float, threshold: float = 0.5) -> float:
    """Wait (at most ``max_wait`` seconds) for the 1-minute load average to drop below ``threshold``;
    returns the load average when the run starts."""
    deadline = time.monotonic() + max_wait
    load = os.getloadavg()[0]
    while load >= threshold and time.monotonic() < deadline:
        _say(f"waiting for a quiet machine: load average {load:.2f} >= {threshold}")
        time.sleep(min(30.0, max(0.0, deadline - time.monotonic())))
        load = os.getloadavg()[0]
    return load


def medians(results: Results) -> dict[str, dict[str, dict[str, float]]]:
    """The median of every figure over the repetitions, and its range ((max - min) / median, %)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key, by_kind in results.items():
        for kind, runs in by_kind.items():
            figures: dict[str, float] = {"runs": len(runs)}
            for name in runs[0]:
                values = [run[name] for run in runs if isinstance(run.get(name), int | float)]
                if not values:
                    continue
                median = statistics.median(values)
                figures[name] = median
                if len(values) > 1 and median:
                    figures[f"{name}_range_pct"] = (max(values) - min(values)) / abs(median) * 100
            out.setdefault(key, {})[kind] = figures
    return out


def run_suite(sizes: Sizes, *, redis: bool = True, wait_quiet: float = 0.0) -> dict[str, Any]:
    """Run every scenario at ``sizes``; returns the raw runs, the medians, how they were taken, the
    kinds measured and those skipped, with why (``go`` where the Go server cannot be built)."""
    started = time.time()
    load_before = wait_until_quiet(wait_quiet) if wait_quiet else os.getloadavg()[0]
    results: Results = {}
    retries = Retries(sizes)
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="typed-ss-bench-") as tmp:
        workdir = Path(tmp)
        if "go" in sizes.kinds:
            try:
                goserver.build(workdir)
            except goserver.GoUnavailable as error:
                skipped["go"] = str(error)
                _say(f"go: skipped, the Go server cannot be built here: {error}")
                sizes = replace(sizes, kinds=tuple(kind for kind in sizes.kinds if kind != "go"))
        for kind in sizes.kinds if redis and "redis" in sizes.scenarios else ():
            if kind in NO_REDIS:
                _say(f"{kind}: not in the redis scenario ({NO_REDIS[kind]})")
        presence = redis and "presence" in sizes.scenarios and PRESENCE_KIND in sizes.kinds
        if "presence" in sizes.scenarios and not presence:
            why = "--no-redis" if not redis else f"{PRESENCE_KIND} is not in --kinds"
            _say(f"presence: not run ({why}; its servers are {PRESENCE_KIND} on Redis)")
        scale_backends: tuple[str, ...] = ()
        scale_skipped: dict[str, str] = {}
        if "scale" in sizes.scenarios:
            if SCALE_KIND not in sizes.kinds:
                _say(f"scale: not run ({SCALE_KIND} is not in --kinds; its servers are {SCALE_KIND})")
            else:
                for backend in sizes.scale_backends:
                    reason = (
                        "--no-redis" if backend in NEEDS_REDIS and not redis else scale_unavailable(backend)
                    )
                    if reason is None:
                        scale_backends += (backend,)
                    else:
                        scale_skipped[backend] = reason
                        _say(f"scale: not run on {backend} ({reason})")
        counted = sizes.callgrind is not None and "callgrind" in sizes.scenarios
        for kind in sorted(set(sizes.kinds) & NO_CALLGRIND) if counted else []:
            _say(f"{kind}: not in the callgrind scenario (instruction counts are for the Python servers)")
        for rep in range(sizes.repetitions):
            _say(f"repetition {rep + 1} of {sizes.repetitions}")
            _repetition(sizes, rep, workdir, results, retries)
            if redis and "redis" in sizes.scenarios:
                _redis_repetition(sizes, rep, workdir, results, retries)
            if presence and rep < sizes.presence_repetitions:
                presence_repetition(sizes, workdir, results)
            if scale_backends and rep < sizes.scale_repetitions:
                scale_repetition(sizes, workdir, results, scale_backends)
        if "callgrind" in sizes.scenarios and (sizes.callgrind is not None or sizes.core is not None):
            _callgrind(sizes, workdir, results)
    return {
        "sizes": asdict(sizes),
        "client_library": "picows" if HAVE_PICOWS else "websockets",
        "cpu_clocks": procstat.clocks(),
        "started": started,
        "seconds": time.time() - started,
        "retry_seconds": retries.spent,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "runs": results,
        "medians": medians(results),
        "kinds": list(sizes.kinds),
        "skipped": skipped,
        "scale_skipped": scale_skipped,
    }
