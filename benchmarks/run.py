"""The orchestrator: starts every server in its own process, runs each scenario's load generator in
another, alternates the servers between repetitions, and hands the medians to :mod:`benchmarks.report`.

Every process it starts (servers, redis-server, load generators, valgrind) it stops itself, by PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import socket
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
from benchmarks.loadgen import HAVE_PICOWS, Spec
from benchmarks.servers import KINDS, OURS, VARIANTS

__all__ = [
    "FULL",
    "PRESENCE_KIND",
    "QUICK",
    "SCENARIOS",
    "SMOKE",
    "Sizes",
    "presence_repetition",
    "run_suite",
]

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = ("idle", "echo", "call", "broadcast", "roomcast", "redis", "presence", "callgrind")
"""Every scenario a run can be narrowed to (``python -m benchmarks quick --scenarios call``)."""


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
    note="quick sizes: 1 repetition, fan-out up to 1,000, rooms of 10 members, 1,000 idle connections, "
    "presence of 2,000 sockets in one room; `make bench` runs the full sizes",
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
    quiet_retries=3,
    note="full sizes: medians of 5 repetitions (presence: 3), servers alternated between repetitions, a "
    "measurement taken again (up to 3 times; presence never) when other processes used more than 0.3 "
    "cores during it",
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


def _die_with_parent() -> None:
    """Run in a child before it executes: Linux sends it SIGTERM if this process dies first, so a
    killed run (a stopped test, a Ctrl-C'd make) leaves no server behind."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _read_port(process: subprocess.Popen[str], timeout: float) -> int:
    """The port from the server's first line of output, ``PORT <n>`` (printed in one write)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        raise RuntimeError(f"the server did not report its port within {timeout} s: {line!r}")
    return int(line.split()[1])


def _stop(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGINT (uvicorn shuts down gracefully, valgrind writes its output), then SIGKILL; by PID."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.contextmanager
def server(
    kind: str,
    workdir: Path,
    *,
    redis_url: str | None = None,
    wrapper: list[str] | None = None,
    module: str | None = None,
) -> Iterator[Started]:
    """Run ``python -m benchmarks.servers KIND`` (under ``wrapper``, e.g. valgrind) until the block ends;
    for ``go``, the Go server :func:`benchmarks.goserver.build` built in ``workdir``; with ``module``,
    ``python -m MODULE`` (``kind`` names it in the logs: the presence server, :mod:`benchmarks.presence`)."""
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
    log = open(workdir / f"server-{kind}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=_die_with_parent
    )
    try:
        port = _read_port(process, 180.0 if wrapper else 30.0)
        yield Started(kind, process, port, log)
    finally:
        _stop(process)
        if process.stdout is not None:
            process.stdout.close()
        log.close()


def _free_port() -> int:
    # redis-server cannot be given port 0: take one the OS picked and hand it over.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, int]]:
    """A redis-server without persistence on a free loopback port; yields its URL and PID."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: `make bench` installs it")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", process.pid
    finally:
        _stop(process)


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
    }
