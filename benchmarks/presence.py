"""Presence of many sockets in one room, across instances linked by Redis (issue 16's figures).

    python -m benchmarks.presence --redis URL

serves one instance of the presence server (:func:`presence_server`) on typed-ss's native transport,
on an OS-picked port of 127.0.0.1 (it prints ``PORT <n>``), until SIGINT or SIGTERM. The orchestrator
(:func:`benchmarks.run.presence_repetition`) starts a redis-server and three of these, and runs the
load generator's ``presence`` scenario (:func:`measure`, in a process of its own) against them:

1. ``sockets`` real WebSocket connections, spread over the instances in turn (socket ``i`` on
   instance ``i % instances``), each with a presence payload of its own (``Card(name="user-00042")``,
   from its ``?name=`` query) and identity ``i % identities`` (``?user=``); each sends one message
   and has its answer, so that what a connection allocates once it has read one is in the baseline.
2. Every socket joins an untracked room (``plain``), then a tracked one (``chat:bench``),
   ``join_batch`` at a time (the next ones once these have their answers): each instance's RSS is
   read before and after each room, by PID, after a ``gc.collect()`` in the server. The tracked
   room's presence tables hold every instance's members on each instance with a member
   (docs/presence.md): the tracked join's growth less the untracked join's is what they cost. The
   tables' own objects are also counted in the server (``sys.getsizeof``, each object once). The
   tracked join is done when every instance's table holds every member.
3. ``ss.cluster.members(room)`` and ``ss.cluster.count(room)`` are asked on the first instance (a
   call to the server, which times the query alone, in the process) and answered by all; each answer
   is checked (every member, with its payload; no instance missing).
4. Presence events: a new socket (a new identity) on the first instance joins the tracked room, then
   leaves it; the times until the first member on another instance and until the last member
   anywhere have its ``joined`` (and its ``left``).

Whether the cluster stayed whole is recorded too: the peers taken for gone, the presence parts asked
again, the questions not answered in time, the messages lost between instances and the Redis
reconnections, summed over the instances, and each instance's worst event-loop lag and outbox length
(:class:`Watch`) while joining the tracked room and while querying.

Presence is per identity (``Presence(per_identity=True)``): one ``joined`` per identity, not per
socket. Per socket, 10,000 joins would send a presence event to every member already in the room,
about 50 million deliveries (n^2/2); here the first socket of each identity joins before the others
(socket ``i`` has identity ``i % identities``), so only the first ``identities`` joins are told, to a
room of at most ``identities`` members. The members query, the count and the tables' entries (one
per socket) are the same either way; the tables' count of members by key holds one entry per identity
instead of one per socket.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import itertools
import json
import logging
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
from starlette.requests import HTTPConnection

from benchmarks import procstat
from benchmarks.loadgen import TIMEOUT, Conn, Spec, Window, connect, frame, percentiles
from benchmarks.servers import MAX_CONNECTIONS, serve_natively
from typed_ss import Presence, Server, Socket

logger = logging.getLogger("benchmarks.presence")

__all__ = ["PLAIN", "ROOM", "Card", "User", "measure", "presence_server", "table_bytes"]

ROOM: Final = "chat:bench"
"""The tracked room (``Presence(tracked=...)``: the rooms whose names start with ``chat:``)."""
PLAIN: Final = "plain"
"""The untracked room: the same sockets, membership only."""
QUERY_TIMEOUT: Final = 30.0
"""Seconds a query waits for the other instances: long enough that a slow answer is timed, not cut."""
WATCH_INTERVAL: Final = 0.05
"""Seconds between two samples of the event loop's lag and the outbox (:class:`Watch`)."""
LATE: Final = 0.5
"""An event loop this many seconds late is logged (to set beside the cluster's own warnings)."""
KIND: Final = "typed-ss-native"
"""The wire and transport: the presence server is typed-ss on its native transport."""


class Card(msgspec.Struct, frozen=True):
    """Each socket's presence payload: what other members see of it."""

    name: str


class User(msgspec.Struct, frozen=True):
    """Each socket's identity: the sockets of one user share it (presence is per identity)."""

    id: str


def card_of(sock: Socket[User]) -> Card:
    return Card(sock.request.query_params.get("name", ""))


def presence_server(redis_url: str | None) -> Server[User]:
    """The server each instance runs: presence tracked in the ``chat:`` rooms, per identity; handlers
    to join and leave rooms, and calls that run the cluster's queries and report on this instance."""
    backend = None
    if redis_url is not None:
        from typed_ss.backends.redis import RedisBackend

        backend = RedisBackend(redis_url, group="bench-presence")
    presence = Presence(Card, card_of, tracked=lambda room: room.startswith("chat:"), per_identity=True)
    ss: Server[User] = Server(backend=backend, max_connections=MAX_CONNECTIONS, presence=presence)
    watch = Watch(ss)

    @ss.authenticate
    async def authenticate(request: HTTPConnection) -> User:
        return User(request.query_params.get("user", "anon"))

    @ss.on("join")
    async def join(sock: Socket[User], room: str) -> None:
        await sock.join(room)
        await sock.emit("joined", room)

    @ss.on("leave")
    async def leave(sock: Socket[User], room: str) -> None:
        await sock.leave(room)
        await sock.emit("left", room)

    @ss.on("ping")
    async def ping(sock: Socket[User], data: str) -> None:
        await sock.emit("pong", data)

    @ss.on("members")
    async def members(sock: Socket[User], room: str) -> str:
        started = time.perf_counter()
        answer = await ss.cluster.members(room, timeout=QUERY_TIMEOUT)
        seconds = time.perf_counter() - started
        named = sum(1 for member in answer.value if isinstance(member.presence, Card))
        return json.dumps(
            {
                "seconds": seconds,
                "members": len(answer.value),
                "with_payload": named,
                "missing": len(answer.missing),
                "truncated": answer.truncated,
            }
        )

    @ss.on("count")
    async def count(sock: Socket[User], room: str) -> str:
        started = time.perf_counter()
        answer = await ss.cluster.count(room, timeout=QUERY_TIMEOUT)
        seconds = time.perf_counter() - started
        return json.dumps({"seconds": seconds, "count": answer.value, "missing": len(answer.missing)})

    @ss.on("stats")
    async def stats(sock: Socket[User], collect: str) -> str:
        watch.start()
        worst = watch.taken()
        if collect:
            gc.collect()
            watch.reset()  # after this collection: the next window's worst is its own
        health = ss.health()
        cluster, multihome = health.cluster, health.multihome
        return json.dumps(
            {
                "peers": len(cluster.peers),
                "sockets": health.sockets,
                "presence_entries": cluster.presence_entries,
                "table_bytes": table_bytes(ss) if collect else None,
                # Whether the cluster stayed whole: peers taken for gone, parts asked again, questions
                # not answered in time, messages lost between instances, Redis connections remade.
                "peers_lost": cluster.peers_lost,
                "resyncs": cluster.resyncs,
                "unanswered": cluster.unanswered,
                "lost": 0 if multihome is None else multihome.lost,
                "reconnects": 0 if multihome is None else multihome.backend.reconnects,
                "published": 0 if multihome is None else multihome.published,
                **worst,
            }
        )

    return ss


class Watch:
    """Samples, every :data:`WATCH_INTERVAL`, how late the event loop wakes up, and every fifth time
    how many messages wait in the outbox to the backend (heartbeats wait there behind presence
    changes); times the garbage collector's full (generation 2) collections. Keeps the worst of each,
    and counts the collections, since the last reset."""

    def __init__(self, ss: Server[Any]) -> None:
        self.ss = ss
        self.task: asyncio.Task[None] | None = None
        self.lag = 0.0
        self.outbox = 0
        self.collections = 0
        self.collection = 0.0
        self._collecting = 0.0

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())
            gc.callbacks.append(self._collected)

    def taken(self) -> dict[str, float]:
        return {
            "loop_lag_max_ms": self.lag * 1e3,
            "outbox_max": self.outbox,
            "full_collections": self.collections,
            "full_collection_max_ms": self.collection * 1e3,
        }

    def reset(self) -> None:
        self.lag, self.outbox, self.collections, self.collection = 0.0, 0, 0, 0.0

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._collecting = time.perf_counter()
        else:
            self.collections += 1
            self.collection = max(self.collection, time.perf_counter() - self._collecting)

    async def _run(self) -> None:
        for tick in itertools.count():
            started = time.perf_counter()
            await asyncio.sleep(WATCH_INTERVAL)
            lag = time.perf_counter() - started - WATCH_INTERVAL
            self.lag = max(self.lag, lag)
            if tick % 5 and lag <= LATE:
                continue  # ss.health() lists every room: not at every tick
            multihome = self.ss.health().multihome
            outbox = 0 if multihome is None else multihome.outbox
            self.outbox = max(self.outbox, outbox)
            if lag > LATE:
                logger.warning("the event loop woke up %.2f s late; %d messages in the outbox", lag, outbox)


def table_bytes(ss: Server[Any]) -> int | None:
    """The bytes of the presence tables' own objects on this instance (``sys.getsizeof`` of each
    table, part, dict, entry and the strings and bytes in it, each object counted once), and of the
    payloads made for its local sockets; ``None`` if the roster no longer keeps them where this looks
    (``typed_ss/cluster/roster.py``'s private ``_tables`` and ``_payloads``)."""
    roster = ss.cluster.roster
    tables = getattr(roster, "_tables", None)
    payloads = getattr(roster, "_payloads", None)
    if not isinstance(tables, dict) or not isinstance(payloads, dict):
        return None
    try:
        return _walk(tables, payloads)
    except AttributeError:  # a table, part or entry no longer shaped as this expects
        return None


def _walk(tables: dict[str, Any], payloads: dict[Any, bytes]) -> int:
    seen: set[int] = set()
    total = 0

    def size(obj: object) -> None:
        nonlocal total
        if id(obj) not in seen:
            seen.add(id(obj))
            total += sys.getsizeof(obj)

    size(tables)
    size(payloads)
    for payload in payloads.values():
        size(payload)
    for table in tables.values():
        size(table)
        size(table.parts)
        size(table.counts)
        for key in table.counts:
            size(key)
        for origin, part in table.parts.items():
            size(origin)
            size(part)
            size(part.entries)
            for socket_id, entry in part.entries.items():
                size(socket_id)
                size(entry)
                size(entry.socket)
                size(entry.key)
                size(entry.presence)
    return total


async def serve(redis_url: str | None) -> None:
    """One instance on the native transport until SIGINT or SIGTERM (as ``typed-ss-native``)."""
    await serve_natively(presence_server(redis_url))


# --- the load generator's side ----------------------------------------------------------------------

JOIN_BATCH: Final = 100
"""Sockets that join a room at once by default (``spec.extra["join_batch"]``); the next ones once all of
these have their answer."""
HANDSHAKES: Final = 50
"""Handshakes in flight at once per instance while opening the connections."""
STABILITY: Final = ("peers_lost", "resyncs", "unanswered", "lost", "reconnects")
"""The counters (summed over the instances) that say whether the cluster stayed whole during a run."""


def _say(text: str) -> None:
    """Progress, on stderr (shown when the scenario fails)."""
    print(f"{time.strftime('%H:%M:%S')} presence: {text}", file=sys.stderr, flush=True)


class Caller:
    """Calls on one connection that is in no room, each answered by its reply (JSON in a ``str``)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.ids = 0
        self.waiting: dict[bytes, asyncio.Future[Any]] = {}
        conn.on_message = self._received

    def _received(self, data: bytes) -> None:
        head, _, body = data.partition(b"\x02")
        future = self.waiting.pop(head, None)
        if future is not None and not future.done():
            future.set_result(json.loads(body))

    async def call(self, event: str, data: str) -> Any:
        self.ids += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[f"{event}\x01Sr{self.ids}".encode()] = future
        self.conn.send(f"{event}\x01c{self.ids}\x02{data}".encode())
        return await asyncio.wait_for(future, QUERY_TIMEOUT + TIMEOUT)


async def _stats(callers: list[Caller], collect: bool = False) -> list[dict[str, Any]]:
    """Each instance's figures (``stats``), after a ``gc.collect()`` there with ``collect``."""
    return list(await asyncio.gather(*(caller.call("stats", "gc" if collect else "") for caller in callers)))


async def _until(callers: list[Caller], done: Callable[[dict[str, Any]], bool], what: str) -> None:
    """Ask every instance for its figures every 20 ms until ``done`` holds for each."""
    deadline = time.perf_counter() + TIMEOUT
    while True:
        last = await _stats(callers)
        if all(done(stats) for stats in last):
            return
        if time.perf_counter() > deadline:
            raise TimeoutError(f"presence: not within {TIMEOUT} s: {what}; the instances report {last}")
        await asyncio.sleep(0.02)


def _raise_file_limit(needed: int) -> None:
    """Raise this process's open-file limit to ``needed`` (as far as the hard limit allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"{needed} connections need `ulimit -n {needed}` (the hard limit is {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def _open(urls: list[str], count: int, identities: int) -> list[Conn]:
    """``count`` member connections, socket ``i`` on instance ``i % len(urls)`` with its own name and
    identity ``i % identities``; :data:`HANDSHAKES` handshakes at a time per instance."""
    conns: list[Conn | None] = [None] * count
    gates = [asyncio.Semaphore(HANDSHAKES) for _ in urls]

    async def one(index: int) -> None:
        instance = index % len(urls)
        async with gates[instance]:
            query = f"?name=user-{index:05d}&user=u{index % identities}"
            conns[index] = await connect(KIND, urls[instance], query)

    async with asyncio.timeout(TIMEOUT + count / 50):
        await asyncio.gather(*(one(index) for index in range(count)))
    return [conn for conn in conns if conn is not None]


async def _each(conns: list[Conn], event: str, data: str, answer: bytes, batch: int) -> float:
    """Every connection sends ``event``, ``batch`` at a time, each batch once the one before has its
    ``answer``s (what else arrives meanwhile, presence events, is ignored); the seconds it took."""
    message = frame(KIND, event, data)
    started = time.perf_counter()
    for at in range(0, len(conns), batch):
        await _batch(conns[at : at + batch], message, answer)
    return time.perf_counter() - started


async def _batch(batch: list[Conn], message: bytes, answer: bytes) -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = len(batch)

    def on_message(data: bytes) -> None:
        nonlocal waiting
        if data == answer:
            waiting -= 1
            if not waiting and not done.done():
                done.set_result(None)

    for conn in batch:
        conn.on_message = on_message
    for conn in batch:
        conn.send(message)
    async with asyncio.timeout(TIMEOUT + len(batch) / 100):
        await done


async def _join_all(conns: list[Conn], room: str, batch: int) -> float:
    """Every connection joins ``room``, ``batch`` at a time; the seconds until the last join was
    answered."""
    return await _each(conns, "join", room, f"joined\x01S\x02{room}".encode(), batch)


async def _rss(pids: list[int], callers: list[Caller]) -> tuple[list[int], list[dict[str, Any]]]:
    """Each instance's RSS (and figures), once each has collected its garbage and gone quiet."""
    stats = await _stats(callers, collect=True)
    await asyncio.sleep(1.0)
    return [procstat.rss_bytes(pid) for pid in pids], stats


class _Told:
    """One presence event's arrivals at the room's members: when the first member on another
    instance than the joiner's had it, and when the last member did."""

    def __init__(self, expected: int) -> None:
        self.left = expected
        self.first_remote: float | None = None
        self.done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def handler(self, remote: bool, change: bytes, tag: bytes) -> Callable[[bytes], None]:
        def on_message(data: bytes) -> None:
            if not data.startswith(b"__presence\x01") or change not in data or tag not in data:
                return
            now = time.perf_counter()
            if remote and self.first_remote is None:
                self.first_remote = now
            self.left -= 1
            if not self.left and not self.done.done():
                self.done.set_result(now)

        return on_message


async def _tell(
    members: list[Conn], instances: int, probe: Conn, message: bytes, change: str, tag: bytes
) -> tuple[float, float]:
    """Send ``message`` on ``probe`` (on the first instance); the seconds until the first member on
    another instance and until the last member had the ``change`` event whose payload holds ``tag``."""
    told = _Told(len(members))
    marker = f'"change":"{change}"'.encode()
    for index, conn in enumerate(members):
        conn.on_message = told.handler(index % instances != 0, marker, tag)
    started = time.perf_counter()
    probe.send(message)
    async with asyncio.timeout(TIMEOUT):
        last = await told.done
    assert told.first_remote is not None
    return told.first_remote - started, last - started


async def _probe(urls: list[str], members: list[Conn], number: int) -> dict[str, float]:
    """A new socket, of an identity of its own, on the first instance joins the tracked room, then
    leaves it: the times until its ``joined`` and its ``left`` reach the members."""
    name = f"probe-{number:03d}"
    probe = await connect(KIND, urls[0], f"?name={name}&user={name}")
    tag = f'"name":"{name}"'.encode()
    joined = await _tell(members, len(urls), probe, frame(KIND, "join", ROOM), "joined", tag)
    left = await _tell(members, len(urls), probe, frame(KIND, "leave", ROOM), "left", tag)
    await probe.close()
    return {"joined_remote": joined[0], "joined_all": joined[1], "left_remote": left[0], "left_all": left[1]}


async def _queries(
    caller: Caller, event: str, room: str, count: int, check: Callable[[dict[str, Any]], None]
) -> list[float]:
    """``count`` queries of ``event`` one after another; each one's seconds, as the server timed it."""
    seconds = []
    for _ in range(count):
        answer = await caller.call(event, room)
        check(answer)
        seconds.append(answer["seconds"])
    return seconds


async def measure(spec: Spec) -> dict[str, Any]:
    """The ``presence`` scenario (module docstring): ``spec.connections`` sockets over the instances
    at ``spec.extra["urls"]`` (PIDs ``spec.server_pids``), ``spec.extra["identities"]`` identities,
    ``spec.messages`` queries of each kind and ``spec.rounds`` presence events, each after
    ``spec.warmup`` not timed."""
    urls: list[str] = spec.extra["urls"]
    identities: int = spec.extra["identities"]
    batch: int = spec.extra.get("join_batch", JOIN_BATCH)
    sockets, pids, helpers = spec.connections, spec.server_pids, spec.helper_pids
    _raise_file_limit(sockets + len(urls) + 256)
    callers = [Caller(await connect(KIND, url)) for url in urls]  # in no room: they ask and report
    await _until(callers, lambda stats: stats["peers"] == len(urls) - 1, "every instance hearing the others")
    before = await _stats(callers)

    _say(f"opening {sockets} connections")
    started = time.perf_counter()
    members = await _open(urls, sockets, identities)
    connects_per_s = sockets / (time.perf_counter() - started)
    local = [len(range(instance, sockets, len(urls))) for instance in range(len(urls))]
    # Each socket's first message, answered: what a connection allocates once it has read one.
    await _each(members, "ping", "x", b"pong\x01S\x02x", JOIN_BATCH)

    _say("joining the untracked room")
    rss_connected, _ = await _rss(pids, callers)
    untracked_join_s = await _join_all(members, PLAIN, batch)
    rss_untracked, untracked_stats = await _rss(pids, callers)

    _say("joining the tracked room")
    joining = Window(pids, helpers)
    tracked_acks_s = await _join_all(members, ROOM, batch)
    await _until(
        callers,
        lambda stats: stats["presence_entries"] == sockets,
        f"each instance's presence table holding the {sockets} members",
    )
    tracked_join = joining.end(sockets, "join")
    rss_tracked, tables_stats = await _rss(pids, callers)  # the worst lag and outbox while joining

    _say("queries")
    asker = callers[0]  # asked on the first instance, answered by every one

    def every_member(answer: dict[str, Any]) -> None:
        if (answer["members"], answer["with_payload"], answer["missing"]) != (sockets, sockets, 0):
            raise AssertionError(f"members({ROOM!r}) answered {answer}: not the {sockets} members")

    def every_one_counted(answer: dict[str, Any]) -> None:
        if (answer["count"], answer["missing"]) != (sockets, 0):
            raise AssertionError(f"count({ROOM!r}) answered {answer}: not {sockets}")

    await _queries(asker, "members", ROOM, max(1, spec.warmup), every_member)
    listing = Window(pids, helpers)
    members_s = await _queries(asker, "members", ROOM, spec.messages, every_member)
    listed = listing.end(spec.messages, "query")
    counting = Window(pids, helpers)
    count_s = await _queries(asker, "count", ROOM, spec.messages, every_one_counted)
    counted = counting.end(spec.messages, "query")
    plain_s = await _queries(asker, "members", PLAIN, spec.messages, every_member)

    _say("presence events")
    for number in range(spec.warmup):
        await _probe(urls, members, number)
    probing = Window(pids, helpers)
    probes = [await _probe(urls, members, spec.warmup + n) for n in range(spec.rounds)]
    told = probing.end(2 * spec.rounds * sockets, "delivery")

    after = await _stats(callers)  # and the worst lag, outbox and collections since the joins
    await asyncio.gather(*(conn.close() for conn in [*members, *(caller.conn for caller in callers)]))

    # Memory: each instance's growth for the untracked room and for the tracked one, per local member;
    # presence's own cost is the difference, held on every instance for every member of the room.
    untracked = [b - a for a, b in zip(rss_connected, rss_untracked, strict=True)]
    tracked = [b - a for a, b in zip(rss_untracked, rss_tracked, strict=True)]
    extra = [t - u for t, u in zip(tracked, untracked, strict=True)]
    tables = [stats["table_bytes"] for stats in tables_stats]
    result: dict[str, Any] = {
        "sockets": sockets,
        "instances": len(urls),
        "identities": identities,
        "join_batch": batch,
        "connects_per_s": connects_per_s,
        "untracked_joins_per_s": sockets / untracked_join_s,
        "tracked_joins_per_s": sockets / tracked_join["seconds"],
        "tracked_join_acks_s": tracked_acks_s,
        "tracked_join_s": tracked_join["seconds"],
        "tracked_join_servers_cpu_us": tracked_join["server_cpu_us_per_join"],
        "rss_connected_mib": statistics.mean(rss_connected) / 2**20,
        "rss_tracked_mib": statistics.mean(rss_tracked) / 2**20,
        "untracked_bytes_per_local_member": statistics.mean(
            u / n for u, n in zip(untracked, local, strict=True)
        ),
        "tracked_bytes_per_local_member": statistics.mean(t / n for t, n in zip(tracked, local, strict=True)),
        "presence_mib_per_instance": statistics.mean(extra) / 2**20,
        "presence_bytes_per_member": statistics.mean(extra) / sockets,
        "per_instance": {
            "local_members": local,
            "rss_connected": rss_connected,
            "rss_untracked": rss_untracked,
            "rss_tracked": rss_tracked,
            "table_bytes": tables,
        },
        "other_cpu_util": max(part["other_cpu_util"] for part in (tracked_join, listed, counted, told)),
    }
    if all(isinstance(size, int) for size in tables):
        result["table_bytes_per_member"] = statistics.mean(tables) / sockets
    result.update({f"members_{k}_ms": v for k, v in percentiles(members_s, 1e3).items()})
    result["members_servers_cpu_ms"] = listed["server_cpu_us_per_query"] / 1e3
    result.update({f"count_{k}_ms": v for k, v in percentiles(count_s, 1e3).items()})
    result["count_servers_cpu_ms"] = counted["server_cpu_us_per_query"] / 1e3
    result.update({f"members_untracked_{k}_ms": v for k, v in percentiles(plain_s, 1e3).items()})
    for key in ("joined_remote", "joined_all", "left_all"):
        result.update({f"{key}_{k}_ms": v for k, v in percentiles([p[key] for p in probes], 1e3).items()})
    result["event_servers_cpu_us_per_delivery"] = told["server_cpu_us_per_delivery"]
    for counter in STABILITY:
        result[counter] = sum(b[counter] - a[counter] for a, b in zip(before, after, strict=True))
    for phase, figures in (("tracked_join", tables_stats), ("queries_events", after)):
        for worst in ("loop_lag_max_ms", "outbox_max", "full_collection_max_ms"):
            result[f"{phase}_{worst}"] = max(stats[worst] for stats in figures)
        result[f"{phase}_full_collections"] = sum(stats["full_collections"] for stats in figures)
    # How fast each instance's outbox drained while joining: a heartbeat queued behind the worst
    # outbox waited about outbox_max / this.
    published = [b["published"] - a["published"] for a, b in zip(untracked_stats, tables_stats, strict=True)]
    result["tracked_join_published_per_s"] = statistics.mean(published) / tracked_join["seconds"]
    result["samples_ms"] = {
        "members": [round(seconds * 1e3, 2) for seconds in members_s],
        "count": [round(seconds * 1e3, 2) for seconds in count_s],
        "members_untracked": [round(seconds * 1e3, 2) for seconds in plain_s],
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="a redis:// URL: the instances on it form one cluster")
    args = parser.parse_args()
    # Warnings with their time, to set beside the load generator's progress when a run fails.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        uvloop.run(serve(args.redis))
    else:
        asyncio.run(serve(args.redis))


if __name__ == "__main__":
    main()
