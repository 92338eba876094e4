"""Scale-out: typed-ss instances in processes of their own, on each multihome backend (issue 17).

    python -m benchmarks.scale --backend redis|redis-cluster|nats --url URL
    python -m benchmarks.scale --backend grpc --listen 127.0.0.1:PORT --peer HOST:PORT ... --name NAME

serves one instance (:func:`scale_server`: the benchmark's typed-ss server, :func:`typed_ss_server`,
on the backend named, and a ``stats`` call that reports its multihome counters) on typed-ss's native
transport, on an OS-picked port of 127.0.0.1 (it prints ``PORT <n>``), until SIGINT or SIGTERM. The
orchestrator (:func:`benchmarks.run.scale_repetition`) starts the broker (:mod:`benchmarks.brokers`:
one redis-server; a Redis Cluster of 3 masters and 3 replicas; 3 nats-server nodes routed to each
other; no broker for the gRPC mesh, each instance a peer of every other) and ``instances`` of these
(8; the smoke test's 4), and runs the load generator's ``scale`` scenario (:func:`measure`, in a
process of its own) against them:

1. ``receivers`` connections on every instance. The instances are split in two halves
   (:class:`Layout`): the second half holds the rooms' members (connection ``j`` of such an instance
   joins room ``j % rooms``), the first half none, so every room has members on half the instances
   and none on the other half.
2. Where the broker says who listens: Redis ``PUBSUB NUMSUB``, Redis Cluster ``PUBSUB SHARDNUMSUB``
   on each master (which master serves each room), NATS ``/connz?subs=1`` on each node, and the
   gRPC mesh's interest as the roomcasting instance sees it.
3. A window with no cast at all (``idle`` seconds): what the control plane (heartbeats, probes)
   costs each broker node, per second; the phases below subtract it.
4. Broadcasts, ``broadcast_rate`` a second (a steady rate, not a closed loop), each from the first
   connection of instance ``i % instances`` in turn (every instance publishes, as every instance of a
   deployment does; on Redis Cluster each publishes on a broadcast channel of its own). Every
   connection gets every broadcast.
5. Roomcasts, ``roomcast_rate`` a second, to the rooms in turn, all from instance 0, which holds no
   member: every delivery crosses instances, and the instances without members must receive none
   of them (their bridges' ``received`` counter, ``ss.health().multihome``, stays where it was).
6. A burst: ``burst`` roomcasts sent to instance 0 at once: how many casts a second one instance
   gets out to the backend and delivered, and whose CPU was busy meanwhile (the roomcasting
   instance's, the busiest receiving one's). Then the same number roomcast, inside instance 0, to a
   room without members anywhere (a ``drain`` call): how many a second its outbox hands to the
   backend, and its CPU per publish, with nothing delivered.
7. The broker alone (:mod:`benchmarks.ceiling`): the load generator publishes straight into the
   first broker node, to 1 subscriber and to one per instance, as fast as it takes them: the node's
   CPU per publish and per delivery, from which its ceiling is computed.

Each cast's send time is kept in the load generator (senders and receivers are in its one process;
the payload carries the cast's number and origin); the latency is taken at every delivery to a
connection on another instance than the sender's. Every delivery is counted by cast: one missing, or
one too many, fails the run. Over each phase: the servers' CPU (all the instances, by PID), each
broker node's CPU (by PID) and its counters (Redis ``INFO stats``/``commandstats``, and ``CLUSTER
INFO``'s pub/sub messages over the cluster bus; NATS ``/varz``), and each instance's (received,
delivered, lost; gRPC: messages sent to peers), less what the idle window says the control plane did
meanwhile, per cast published.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from benchmarks import brokers, procstat
from benchmarks.loadgen import TIMEOUT, Conn, Spec, Window, connect, frame, percentiles
from benchmarks.presence import Caller
from benchmarks.servers import serve_natively, typed_ss_server
from typed_ss import Server, Socket
from typed_ss.backends.base import Backend
from typed_ss.multihome import BROADCAST_TOPIC, room_topic

__all__ = ["BACKENDS", "GROUP", "KIND", "Layout", "make_backend", "measure", "scale_server"]

BACKENDS: Final = ("redis", "redis-cluster", "nats", "grpc")
"""The backends the scenario runs on, in the reports' order."""
NAMES: Final = {"redis": "Redis", "redis-cluster": "Redis Cluster", "nats": "NATS", "grpc": "gRPC mesh"}
GROUP: Final = "bench-scale"
"""Every backend's group: the channels' and subjects' prefix."""
KIND: Final = "typed-ss-native"
"""The wire and transport: the instances are typed-ss on its native transport."""
NATS_NODES: Final = 3
HANDSHAKES: Final = 50
"""Handshakes in flight at once per instance while opening the connections."""
PAYLOAD_SIZE: Final = 64
NOBODY: Final = "nobody"
"""A room no connection joins: what is roomcast to it is published, and delivered nowhere."""


# --- the server ------------------------------------------------------------------------------------


def make_backend(
    kind: str, *, url: str | None = None, listen: str = "", peers: list[str] | None = None, name: str = ""
) -> Backend:
    """The backend an instance runs on: ``url`` is Redis's, any Redis Cluster node's, or the NATS
    node the instance is placed on; the gRPC mesh's instance listens on ``listen`` and links to
    every one of ``peers`` (plaintext: one machine)."""
    if kind == "redis":
        from typed_ss.backends.redis import RedisBackend

        return RedisBackend(url, group=GROUP)
    if kind == "redis-cluster":
        from typed_ss.backends.redis_cluster import RedisClusterBackend

        return RedisClusterBackend(url, group=GROUP)
    if kind == "nats":
        from typed_ss.backends.nats import NatsBackend

        return NatsBackend(url, group=GROUP, name=f"bench {name}", dont_randomize=True)
    if kind == "grpc":
        from typed_ss.backends.grpc import GrpcBackend

        return GrpcBackend(listen=listen, peers=peers or [], insecure=True, name=name or listen)
    raise ValueError(f"unknown backend {kind!r}; one of {', '.join(BACKENDS)}")


def scale_server(backend: Backend) -> Server:
    """The benchmark's typed-ss server (``bc``, ``rc``, ``join``, ...) on ``backend``, with a ``stats``
    call: this instance's multihome counters, and for each topic named (a JSON list) what the backend
    says of it (the gRPC mesh: the peers that want it)."""
    ss = typed_ss_server(None, backend=backend)

    @ss.on("stats")
    async def stats(sock: Socket, topics: str) -> str:
        health = ss.health()
        multihome = health.multihome
        figures: dict[str, Any] = {
            "peers": len(health.cluster.peers),
            "sockets": health.sockets,
            "state": "none" if multihome is None else multihome.backend.state,
            "cpu": time.process_time(),  # this process's CPU seconds so far, every thread
        }
        if multihome is not None:
            for counter in ("received", "delivered", "published", "lost", "duplicates", "outbox_dropped"):
                figures[counter] = getattr(multihome, counter)
            figures["subscriptions"] = multihome.subscriptions
        detail = {} if multihome is None else multihome.backend.detail
        peers = detail.get("peers")
        if isinstance(peers, dict):  # the gRPC mesh: messages sent to each peer, and their interest
            figures["sent"] = sum(int(peer.get("sent", 0)) for peer in peers.values())
            interested = getattr(backend, "interested_peers", None)
            if callable(interested):
                figures["interest"] = {topic: len(interested(topic)) for topic in json.loads(topics or "[]")}
        return json.dumps(figures)

    @ss.on("drain")
    async def drain(sock: Socket, count: str) -> str:
        """Roomcast ``count`` messages to a room with no member anywhere, at once, and return how long
        this instance took to hand them all to the backend, and its CPU meanwhile: its own publishing
        rate, with no delivery anywhere (the gRPC mesh sends nothing: no peer wants the room)."""
        total = int(count)
        before = _published(ss)
        started, cpu = time.perf_counter(), time.process_time()
        for number in range(total):
            await ss.roomcast(NOBODY, "drain", f"{number}".ljust(PAYLOAD_SIZE, "."))
        deadline = started + 60.0
        # The bridge's counter has no event to wait on: it is looked at every 5 ms.
        while _published(ss) - before < total and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
        published = _published(ss) - before
        return json.dumps({"published": published, "seconds": seconds, "cpu": time.process_time() - cpu})

    return ss


def _published(ss: Server) -> int:
    multihome = ss.health().multihome
    return 0 if multihome is None else multihome.published


async def serve(backend: Backend) -> None:
    """One instance on the native transport until SIGINT or SIGTERM."""
    await serve_natively(scale_server(backend))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--url", help="Redis's URL, any Redis Cluster node's, or the NATS node's")
    parser.add_argument("--listen", default="", help="gRPC: this instance's HOST:PORT")
    parser.add_argument("--peer", action="append", default=[], help="gRPC: another instance's HOST:PORT")
    parser.add_argument("--name", default="", help="this instance's name on the backend")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    backend = make_backend(args.backend, url=args.url, listen=args.listen, peers=args.peer, name=args.name)
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        uvloop.run(serve(backend))
    else:
        asyncio.run(serve(backend))


# --- the layout -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Which instances hold the rooms' members, which one roomcasts, and (NATS) which node each
    instance is a client of.

    The first half of the instances holds no member (instance 0 roomcasts), the second half holds
    the members. On NATS, the instances without members but the roomcaster are the only clients of
    node 2 (``nats-2``): a node whose clients want none of the rooms, which their traffic must not
    reach across the routes; node 1 has the roomcaster and half the members' instances, node 3 the
    other half (8 instances: 0, 4, 5 on node 1; 1, 2, 3 on node 2; 6, 7 on node 3).
    """

    instances: int

    @property
    def members(self) -> list[int]:
        return list(range(self.instances // 2, self.instances))

    @property
    def without_members(self) -> list[int]:
        return list(range(self.instances // 2))

    roomcaster: int = 0

    def nats_node(self, instance: int) -> int:
        """The NATS node (0-based) instance ``instance`` is a client of."""
        half = self.instances // 2
        if instance == self.roomcaster:
            return 0
        if instance < half:
            return 1
        return 0 if instance - half < (self.instances - half + 1) // 2 else 2


# --- the load generator's side ----------------------------------------------------------------------


def _say(text: str) -> None:
    """Progress, on stderr (shown when the scenario fails)."""
    print(f"{time.strftime('%H:%M:%S')} scale: {text}", file=sys.stderr, flush=True)


def _raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"{needed} connections need `ulimit -n {needed}` (the hard limit is {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class Tally:
    """The deliveries of one phase: each cast's count, the cross-instance latencies, and a future
    that is done once every cast has reached every recipient it must reach."""

    def __init__(self, expected: list[int]) -> None:
        self.expected = expected
        self.counts = [0] * len(expected)
        self.left = sum(expected)
        self.sent_ns = [0] * len(expected)
        self.latencies_ns: list[int] = []
        self.last_ns = 0
        self.extra = 0  # deliveries beyond a cast's recipients, or of an unknown cast
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.left:
            self.done.set_result(None)

    def delivered(self, number: int, remote: bool, now: int) -> None:
        if not 0 <= number < len(self.counts) or self.counts[number] >= self.expected[number]:
            self.extra += 1
            return
        self.counts[number] += 1
        if remote:
            self.latencies_ns.append(now - self.sent_ns[number])
        self.left -= 1
        if not self.left:
            self.last_ns = now
            if not self.done.done():
                self.done.set_result(None)


class Receivers:
    """Every connection's message handler: finds the cast by the number in its payload and counts
    it in the phase's :class:`Tally` (of its kind: ``bc`` or ``rc``)."""

    def __init__(self) -> None:
        self.tallies: dict[bytes, Tally | None] = {b"bc": None, b"rc": None}

    def handler(self, instance: int) -> Callable[[bytes], None]:
        tallies = self.tallies
        clock = time.perf_counter_ns

        def on_message(data: bytes) -> None:
            now = clock()
            head, _, body = data.partition(b"\x02")
            event = head.partition(b"\x01")[0]
            tally = tallies.get(event)
            if tally is None:
                return  # an answer to a join, or a cast of a phase that is over
            if event == b"rc":
                body = body.partition(b" ")[2]  # after the room's name
            number, origin, _ = body.split(b"|", 2)
            tally.delivered(int(number), int(origin) != instance, now)

        return on_message


def _payload(number: int, origin: int) -> str:
    """A cast's payload: its number and the instance it is sent from, padded to
    :data:`PAYLOAD_SIZE` (its send time is kept here, in the load generator that receives it too)."""
    return f"{number}|{origin}|".ljust(PAYLOAD_SIZE, ".")


async def _paced(count: int, rate: float, send: Callable[[int], None]) -> float:
    """Call ``send(i)`` for ``i`` in ``range(count)``, ``rate`` a second (catching up at once when
    late); returns how late the latest send was, in seconds."""
    started = time.perf_counter()
    late = 0.0
    for number in range(count):
        due = started + number / rate  # rate inf: every one due at once
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        late = max(late, time.perf_counter() - due)
        send(number)
    return late


class Broker:
    """Reads every broker node's counters and CPU (the gRPC mesh has none: its instances' own)."""

    def __init__(self, backend: str, nodes: list[dict[str, Any]]) -> None:
        self.backend = backend
        self.nodes = nodes
        self.clients: dict[str, Any] = {}
        if backend in ("redis", "redis-cluster"):
            import redis.asyncio as aioredis

            self.clients = {node["name"]: aioredis.Redis(port=node["port"]) for node in nodes}

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    async def counters(self) -> dict[str, dict[str, float]]:
        """Each node's counters so far: ``cpu`` (seconds), ``in`` (messages published to it by
        clients), ``out`` (NATS: messages it sent, to clients and routes), ``bus_in``/``bus_out``
        (Redis Cluster: pub/sub messages over the cluster bus; NATS: messages from and to routes),
        ``in_bytes``, ``out_bytes``."""
        found: dict[str, dict[str, float]] = {}
        for node in self.nodes:
            figures: dict[str, float] = {"cpu": procstat.cpu_seconds(node["pid"])}
            if self.backend == "nats":
                varz = await asyncio.to_thread(brokers.monitor, node["monitor_port"], "varz")
                figures.update(
                    {
                        "in": varz["in_msgs"],
                        "out": varz["out_msgs"],
                        "in_bytes": varz["in_bytes"],
                        "out_bytes": varz["out_bytes"],
                    }
                )
            else:
                client = self.clients[node["name"]]
                stats = await client.info("stats")
                commands = await client.info("commandstats")
                figures["in"] = sum(
                    commands.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("publish", "spublish")
                )
                figures["in_bytes"] = stats["total_net_input_bytes"]
                figures["out_bytes"] = stats["total_net_output_bytes"]
                if self.backend == "redis-cluster":
                    info = _cluster_info(await client.execute_command("CLUSTER", "INFO"))
                    figures["bus_in"] = sum(
                        int(info.get(f"cluster_stats_messages_{kind}_received", 0))
                        for kind in ("publish", "publishshard")
                    )
                    figures["bus_out"] = sum(
                        int(info.get(f"cluster_stats_messages_{kind}_sent", 0))
                        for kind in ("publish", "publishshard")
                    )
            found[node["name"]] = figures
        return found

    async def interest(self, rooms: list[str], instances: int) -> dict[str, Any]:
        """Who the broker says wants each room's messages (and the broadcasts'): subscribers per
        room; on Redis Cluster, the master serving each room; on NATS, each node's subscriptions."""
        topics = [room_topic(room) for room in rooms]
        if self.backend == "redis":
            client = next(iter(self.clients.values()))
            channels = [f"{GROUP}:{topic}" for topic in topics]
            answer = dict(await client.pubsub_numsub(f"{GROUP}:{BROADCAST_TOPIC}", *channels))
            counts = [int(answer[channel.encode()]) for channel in channels]
            return {
                "room_subscribers": counts,
                "broadcast_subscribers": int(answer[f"{GROUP}:{BROADCAST_TOPIC}".encode()]),
            }
        if self.backend == "redis-cluster":
            from typed_ss.backends.redis_cluster import RedisClusterBackend

            names = RedisClusterBackend(self.nodes[0]["url"], group=GROUP)  # never started: names only
            masters = [node for node in self.nodes if node["role"] == "master"]
            counts, owners = [], []
            for topic in topics:
                (channel,) = names.channels(topic)
                per_master = [
                    await self._shardnumsub(self.clients[node["name"]], channel) for node in masters
                ]
                counts.append(sum(per_master))
                owners.append(masters[max(range(len(masters)), key=per_master.__getitem__)]["name"])
            broadcast = [
                sum([await self._shardnumsub(self.clients[node["name"]], channel) for node in masters])
                for channel in names.channels(BROADCAST_TOPIC)
            ]
            rooms_on = {node["name"]: owners.count(node["name"]) for node in masters}
            return {
                "room_subscribers": counts,
                "broadcast_subscribers": min(broadcast),
                "broadcast_channels": len(broadcast),
                "rooms_per_master": rooms_on,
            }
        if self.backend == "nats":
            from typed_ss.backends.nats import subject_token

            subjects = {f"{GROUP}.{subject_token(topic)}" for topic in topics}
            per_node: dict[str, int] = {}
            counts = [0] * len(topics)
            ordered = [f"{GROUP}.{subject_token(topic)}" for topic in topics]
            for node in self.nodes:
                connz = await asyncio.to_thread(
                    brokers.monitor, node["monitor_port"], f"connz?subs=1&limit={instances + 100}"
                )
                subscribed = 0
                for conn in connz.get("connections") or []:
                    wanted = set(conn.get("subscriptions_list") or []) & subjects
                    subscribed += len(wanted)
                    for index, subject in enumerate(ordered):
                        counts[index] += subject in wanted
                per_node[node["name"]] = subscribed
            return {"room_subscribers": counts, "room_subscriptions_per_node": per_node}
        return {}

    @staticmethod
    async def _shardnumsub(client: Any, channel: str) -> int:
        answer = await client.execute_command("PUBSUB", "SHARDNUMSUB", channel)
        return int(answer[1])


def _cluster_info(answer: Any) -> dict[str, str]:
    """``CLUSTER INFO``'s fields, whether redis-py parsed the answer or not."""
    if isinstance(answer, dict):
        return {str(key): str(value) for key, value in answer.items()}
    text = answer.decode() if isinstance(answer, bytes) else str(answer)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class Snapshot:
    """Every instance's figures (``stats``), every broker node's counters, and the time, at once."""

    def __init__(self, instances: list[dict[str, Any]], nodes: dict[str, dict[str, float]]) -> None:
        self.instances = instances
        self.nodes = nodes
        self.at = time.perf_counter()


async def _snapshot(callers: list[Caller], broker: Broker) -> Snapshot:
    instances = list(await asyncio.gather(*(caller.call("stats", "") for caller in callers)))
    return Snapshot(instances, await broker.counters())


def _delta(before: Snapshot, after: Snapshot, counter: str) -> list[Any]:
    return [
        b.get(counter, 0) - a.get(counter, 0) for a, b in zip(before.instances, after.instances, strict=True)
    ]


@dataclass
class Baseline:
    """What the control plane alone did per second (the idle window): each node's counters, and the
    gRPC instances' messages sent."""

    nodes: dict[str, dict[str, float]]
    sent: list[float]
    cpu: list[float]
    """Each instance's CPU (cores)."""


def _rates(before: Snapshot, after: Snapshot) -> Baseline:
    seconds = after.at - before.at
    nodes = {
        name: {key: (after.nodes[name][key] - value) / seconds for key, value in figures.items()}
        for name, figures in before.nodes.items()
    }
    sent = [value / seconds for value in _delta(before, after, "sent")]
    return Baseline(nodes, sent, [value / seconds for value in _delta(before, after, "cpu")])


async def measure(spec: Spec) -> dict[str, Any]:
    """The ``scale`` scenario (module docstring): ``spec.receivers`` connections on each of the
    instances at ``spec.extra["urls"]`` (PIDs ``spec.server_pids``) on ``spec.extra["backend"]``
    (broker nodes ``spec.extra["nodes"]``, PIDs ``spec.helper_pids``), ``spec.rooms`` rooms,
    ``spec.broadcasts`` broadcasts and ``spec.messages`` roomcasts at their rates, after
    ``spec.warmup`` of each not measured."""
    urls: list[str] = spec.extra["urls"]
    backend: str = spec.extra["backend"]
    layout = Layout(len(urls))
    rooms = [f"room{number}" for number in range(spec.rooms)]
    if spec.receivers < len(rooms):
        raise ValueError(
            f"{spec.receivers} connections per instance cannot each hold a member of {len(rooms)} rooms"
        )
    _raise_file_limit(len(urls) * (spec.receivers + 1) + 256)
    broker = Broker(backend, spec.extra["nodes"])
    callers = [Caller(await connect(KIND, url)) for url in urls]  # in no room: they ask and report
    try:
        return await _measure(spec, backend, layout, urls, rooms, callers, broker)
    finally:
        await broker.close()


async def _measure(
    spec: Spec,
    backend: str,
    layout: Layout,
    urls: list[str],
    rooms: list[str],
    callers: list[Caller],
    broker: Broker,
) -> dict[str, Any]:
    count, per = len(urls), spec.receivers
    await _until_connected(callers)

    _say(f"{backend}: opening {count} x {per} connections")
    receivers = Receivers()
    conns = await _open(urls, per, receivers)
    members = [0] * len(rooms)
    joins = []
    for instance in layout.members:
        for index, conn in enumerate(conns[instance]):
            room = index % len(rooms)
            members[room] += 1
            joins.append((conn, rooms[room]))
    await _join(joins)
    interest = await broker.interest(rooms, count)
    if backend == "grpc":
        topics = json.dumps([room_topic(room) for room in rooms])
        answer = await callers[layout.roomcaster].call("stats", topics)
        interest = {"room_subscribers": [answer["interest"][room_topic(room)] for room in rooms]}

    _say(f"{backend}: {spec.extra['idle']} s without casts (the control plane alone)")
    before = await _snapshot(callers, broker)
    await asyncio.sleep(spec.extra["idle"])
    baseline = _rates(before, await _snapshot(callers, broker))

    everyone = [conn for instance in conns for conn in instance]
    senders = [conns[instance][0] for instance in range(count)]
    roomcaster = conns[layout.roomcaster][0]  # on an instance without members: in no room

    def broadcast(number: int) -> None:
        origin = number % count
        tally = receivers.tallies[b"bc"]
        assert tally is not None
        tally.sent_ns[number] = time.perf_counter_ns()
        senders[origin].send(frame(KIND, "bc", _payload(number, origin)))

    def roomcast(number: int) -> None:
        room = rooms[number % len(rooms)]
        tally = receivers.tallies[b"rc"]
        assert tally is not None
        tally.sent_ns[number] = time.perf_counter_ns()
        roomcaster.send(frame(KIND, "rc", f"{room} {_payload(number, layout.roomcaster)}"))

    pids, helpers = spec.server_pids, spec.helper_pids
    bc_rate, rc_rate = float(spec.extra["broadcast_rate"]), float(spec.extra["roomcast_rate"])
    room_members = [members[number % len(rooms)] for number in range(max(spec.warmup, spec.messages))]

    async def phase(event: bytes, casts: int, rate: float, expected: list[int]) -> dict[str, Any]:
        send = broadcast if event == b"bc" else roomcast
        tally = receivers.tallies[event] = Tally(expected)
        start = await _snapshot(callers, broker)
        window = Window(pids, helpers)
        cpu = [procstat.cpu_seconds(pid) for pid in pids]
        late = await _paced(casts, rate, send)
        async with asyncio.timeout(TIMEOUT + casts / rate):
            try:
                await tally.done
            except TimeoutError:
                missing = [
                    n for n, (got, want) in enumerate(zip(tally.counts, expected, strict=True)) if got < want
                ]
                raise AssertionError(
                    f"{backend}: {len(missing)} of {casts} {event.decode()} casts not delivered to every "
                    f"recipient (the first: {missing[:5]})"
                ) from None
        figures = window.end(sum(expected), "delivery")
        cpu = [procstat.cpu_seconds(pid) - used for pid, used in zip(pids, cpu, strict=True)]
        await asyncio.sleep(0.2)  # a delivery too many would arrive now
        receivers.tallies[event] = None
        end = await _snapshot(callers, broker)
        if tally.extra:
            raise AssertionError(f"{backend}: {tally.extra} {event.decode()} deliveries too many")
        return {
            "tally": tally,
            "window": figures,
            "late": late,
            "cpu": cpu,
            "start": start,
            "end": end,
        }

    if spec.warmup:
        _say(f"{backend}: warm-up, {spec.warmup} broadcasts and roomcasts")
        await phase(b"bc", spec.warmup, bc_rate, [count * per] * spec.warmup)
        await phase(b"rc", spec.warmup, rc_rate, room_members[: spec.warmup])

    _say(f"{backend}: {spec.broadcasts} broadcasts, {bc_rate:g}/s, to {count * per} connections")
    bc = await phase(b"bc", spec.broadcasts, bc_rate, [count * per] * spec.broadcasts)
    _say(f"{backend}: {spec.messages} roomcasts, {rc_rate:g}/s, to rooms of {min(members)}-{max(members)}")
    rc = await phase(b"rc", spec.messages, rc_rate, room_members[: spec.messages])
    burst = int(spec.extra["burst"])
    _say(f"{backend}: {burst} roomcasts at once, from one instance")
    room_members = [members[number % len(rooms)] for number in range(burst)]
    flood = await phase(b"rc", burst, float("inf"), room_members)

    _say(f"{backend}: {burst} roomcasts to a room without members, queued at once in one instance")
    drained = await callers[layout.roomcaster].call("drain", str(burst))
    if drained["published"] < burst:
        raise AssertionError(f"{backend}: {drained['published']} of {burst} roomcasts published in 60 s")

    await asyncio.gather(*(conn.close() for conn in [*everyone, *(caller.conn for caller in callers)]))
    ceilings = await _ceilings(backend, spec.extra["nodes"], count, float(spec.extra["ceiling_seconds"]))

    result: dict[str, Any] = {
        "backend": backend,
        "instances": count,
        "connections": count * per,
        "rooms": len(rooms),
        "member_instances": len(layout.members),
        "members_per_room": statistics.mean(members),
        "broadcasts": spec.broadcasts,
        "roomcasts": spec.messages,
        "broadcast_rate": bc_rate,
        "roomcast_rate": rc_rate,
        "broker_nodes": len(spec.extra["nodes"]),
        "streams": count * (count - 1) if backend == "grpc" else 0,
        "broker_connections": _broker_connections(backend, count, spec.extra["nodes"]),
    }
    result.update(_interest_figures(interest))
    for name, figures in (("bc", bc), ("rc", rc)):
        result.update(_phase_figures(name, figures, baseline, layout))
    # A burst: how many casts a second one instance gets out to the backend (and delivered).
    result["burst"] = burst
    result["burst_casts_per_s"] = burst / flood["window"]["seconds"]
    result["burst_latency_p99_ms"] = percentiles([ns / 1e9 for ns in flood["tally"].latencies_ns], 1e3)["p99"]
    # Which side set the pace: the roomcasting instance, or the busiest of those that deliver.
    result["burst_roomcaster_cpu_util"] = flood["cpu"][layout.roomcaster] / flood["window"]["seconds"]
    result["burst_member_cpu_util_max"] = (
        max(flood["cpu"][i] for i in layout.members) / flood["window"]["seconds"]
    )
    result["burst_lost"] = sum(_delta(flood["start"], flood["end"], "lost"))
    # One instance's own publishing rate, with nothing delivered: what its outbox drains per second.
    result["drain_publishes_per_s"] = drained["published"] / drained["seconds"]
    result["drain_cpu_util"] = drained["cpu"] / drained["seconds"]
    result["drain_cpu_us_per_publish"] = drained["cpu"] / drained["published"] * 1e6
    result.update(ceilings)
    result["lost"] = result["bc_lost"] + result["rc_lost"] + result["burst_lost"]
    result["other_cpu_util"] = max(bc["window"]["other_cpu_util"], rc["window"]["other_cpu_util"])
    result["idle"] = {
        "nodes": {name: rates for name, rates in baseline.nodes.items()},
        "sent_per_s": baseline.sent,
    }
    # What the control plane alone costs (heartbeats to every instance; the backends' probes): each
    # instance's CPU, and (the mesh) the messages it sends its peers, per second.
    result["idle_instance_cpu_util"] = statistics.mean(baseline.cpu)
    if any(baseline.sent):
        result["idle_instance_sent_per_s"] = statistics.mean(baseline.sent)
    for name, rates in baseline.nodes.items():
        result[f"node:{name}:idle:in_per_s"] = rates.get("in", 0.0)
        result[f"node:{name}:idle:cpu_util"] = rates["cpu"]
    return result


async def _ceilings(
    backend: str, nodes: list[dict[str, Any]], instances: int, seconds: float
) -> dict[str, float]:
    """The broker's own ceiling (:mod:`benchmarks.ceiling`), on its first node, with 1 subscriber and
    with one per instance; and, from the two, its CPU per publish alone and per delivery (the cost of
    a publish to ``f`` subscribers being about ``alone + f * delivery``). Nothing for the gRPC mesh."""
    if backend == "grpc" or seconds <= 0:
        return {}
    from benchmarks.ceiling import ceiling

    node = nodes[0]
    pids = [node["pid"]]
    channel = f"{GROUP}:ceiling"
    if backend == "nats":
        channel = f"{GROUP}.ceiling"
    elif backend == "redis-cluster":
        from redis.crc import key_slot

        # A channel of a slot master-1 serves (it serves slot 0 and the ones after), its replica too.
        channel = next(
            c for i in range(10_000) if key_slot((c := f"{GROUP}:{{c{i}}}:ceiling").encode()) < 100
        )
        pids.append(next(other["pid"] for other in nodes if other["name"] == "replica-1"))
    figures: dict[str, float] = {"ceiling_fanout": instances}
    for name, fanout in (("one", 1), ("all", instances)):
        _say(f"{backend}: the broker alone, {seconds:g} s of publishes to {fanout} subscriber(s)")
        found = await ceiling(backend, node["port"], pids, channel, fanout, seconds)
        figures.update({f"ceiling_{name}_{key}": value for key, value in found.items() if key != "fanout"})
    one, many = figures["ceiling_one_node_cpu_us_per_publish"], figures["ceiling_all_node_cpu_us_per_publish"]
    delivery = max(0.0, (many - one) / (instances - 1))
    figures["ceiling_cpu_us_per_delivery"] = delivery
    figures["ceiling_cpu_us_per_publish_alone"] = max(0.0, one - delivery)
    return figures


def _broker_connections(backend: str, instances: int, nodes: list[dict[str, Any]]) -> int:
    """The instances' connections to the broker: Redis, a subscriber and a publisher each; Redis
    Cluster, a subscriber per master and the cluster client's connection to each master it publishes
    to; NATS, one each; the gRPC mesh: none (its streams are counted apart)."""
    masters = sum(1 for node in nodes if node["role"] == "master")
    return {"redis": 2 * instances, "redis-cluster": 2 * masters * instances, "nats": instances}.get(
        backend, 0
    )


def _interest_figures(interest: dict[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = {"interest": interest}
    counts = interest.get("room_subscribers")
    if counts:
        figures["room_subscribers_min"] = min(counts)
        figures["room_subscribers_max"] = max(counts)
    for name, rooms in (interest.get("rooms_per_master") or {}).items():
        figures[f"node:{name}:rooms"] = rooms
    for name, subscriptions in (interest.get("room_subscriptions_per_node") or {}).items():
        figures[f"node:{name}:room_subscriptions"] = subscriptions
    return figures


def _phase_figures(name: str, phase: dict[str, Any], baseline: Baseline, layout: Layout) -> dict[str, Any]:
    """One phase's figures, prefixed ``name`` (``bc``, ``rc``): latency, rates, CPU, what each
    instance received, and each broker node's load per cast, less the control plane's."""
    tally: Tally = phase["tally"]
    window: dict[str, float] = phase["window"]
    start: Snapshot = phase["start"]
    end: Snapshot = phase["end"]
    casts = len(tally.expected)
    deliveries = sum(tally.expected)
    seconds = end.at - start.at
    figures: dict[str, Any] = {
        f"{name}_deliveries": deliveries,
        f"{name}_remote_deliveries": len(tally.latencies_ns),
        f"{name}_deliveries_per_s": window["deliverys_per_s"],
        f"{name}_casts_per_s": casts / window["seconds"],
        f"{name}_send_late_max_ms": phase["late"] * 1e3,
        f"{name}_servers_cpu_us_per_delivery": window["server_cpu_us_per_delivery"],
        f"{name}_servers_cpu_us_per_cast": window["server_cpu_us_per_delivery"] * deliveries / casts,
        f"{name}_servers_cpu_util": window["server_cpu_util"],
        f"{name}_client_cpu_util": window["client_cpu_util"],
        f"{name}_other_cpu_util": window["other_cpu_util"],
    }
    if tally.latencies_ns:
        seconds_each = [latency / 1e9 for latency in tally.latencies_ns]
        figures.update({f"{name}_latency_{k}_ms": v for k, v in percentiles(seconds_each, 1e3).items()})
    received = _delta(start, end, "received")
    figures[f"{name}_received"] = received
    figures[f"{name}_instances_per_cast"] = sum(received) / casts
    # Each instance's CPU, less what it used idle (the control plane), per cast.
    cpu = [
        max(0.0, used - idle * seconds) / casts * 1e6
        for used, idle in zip(_delta(start, end, "cpu"), baseline.cpu, strict=True)
    ]
    if name == "rc":  # the instances without members must have received none of the roomcasts
        figures[f"{name}_received_without_members"] = sum(received[i] for i in layout.without_members)
        figures[f"{name}_received_by_members_min"] = min(received[i] for i in layout.members)
        # Where a roomcast's CPU goes: the instance it is sent from, each instance with members (it
        # receives every roomcast and delivers it to its members), the others (none, if routed).
        others = [i for i in layout.without_members if i != layout.roomcaster]
        figures["rc_roomcaster_cpu_us_per_cast"] = cpu[layout.roomcaster]
        figures["rc_member_instance_cpu_us_per_cast"] = statistics.mean(cpu[i] for i in layout.members)
        figures["rc_other_instances_cpu_us_per_cast"] = sum(cpu[i] for i in others)
    else:
        figures[f"{name}_instance_cpu_us_per_cast"] = statistics.mean(cpu)
    for counter in ("lost", "duplicates", "outbox_dropped"):
        figures[f"{name}_{counter}"] = sum(_delta(start, end, counter))
    sent = _delta(start, end, "sent")
    if any(sent):  # the gRPC mesh: messages each instance sent its peers, less the control plane's
        net = [max(0.0, value - rate * seconds) for value, rate in zip(sent, baseline.sent, strict=True)]
        figures[f"{name}_mesh_messages_per_cast"] = sum(net) / casts
        for instance, value in enumerate(net):
            figures[f"node:instance-{instance}:{name}:sent_per_cast"] = value / casts
    totals: dict[str, float] = {}
    for node, after in end.nodes.items():
        rates = baseline.nodes[node]
        for key, value in after.items():
            net_value = max(0.0, value - start.nodes[node][key] - rates[key] * seconds)
            per_cast = net_value / casts
            metric = "cpu_us" if key == "cpu" else key
            figures[f"node:{node}:{name}:{metric}_per_cast"] = per_cast * (1e6 if key == "cpu" else 1)
            totals[metric] = totals.get(metric, 0.0) + per_cast * (1e6 if key == "cpu" else 1)
    for metric, value in totals.items():
        figures[f"{name}_broker_{metric}_per_cast"] = value
    if "cpu_us" in totals:
        figures[f"{name}_broker_cpu_us_per_delivery"] = totals["cpu_us"] * casts / deliveries
    return figures


async def _until_connected(callers: list[Caller]) -> None:
    """Every instance hears every other (the control plane's heartbeats) and its backend is
    connected."""
    deadline = time.perf_counter() + TIMEOUT
    while True:
        last = [await caller.call("stats", "") for caller in callers]
        if all(stats["peers"] == len(callers) - 1 and stats["state"] == "connected" for stats in last):
            return
        if time.perf_counter() > deadline:
            raise TimeoutError(f"scale: the instances did not all hear each other: {last}")
        await asyncio.sleep(0.1)


async def _open(urls: list[str], per: int, receivers: Receivers) -> list[list[Conn]]:
    """``per`` connections on each instance, :data:`HANDSHAKES` handshakes at a time per instance,
    each counting what it receives in ``receivers``."""
    conns: list[list[Conn]] = [[] for _ in urls]

    async def one(instance: int, gate: asyncio.Semaphore) -> None:
        async with gate:
            conn = await connect(KIND, urls[instance])
            conn.on_message = receivers.handler(instance)
            conns[instance].append(conn)

    gates = [asyncio.Semaphore(HANDSHAKES) for _ in urls]
    async with asyncio.timeout(TIMEOUT + len(urls) * per / 50):
        await asyncio.gather(*(one(i, gates[i]) for i in range(len(urls)) for _ in range(per)))
    return conns


async def _join(joins: list[tuple[Conn, str]]) -> None:
    """Each connection joins its room; returns once every join was answered (the instance then
    receives every roomcast to the room published afterwards: docs/multihome.md)."""
    if not joins:
        return
    waiting = len(joins)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    counting = [conn.on_message for conn, _room in joins]

    def answered(data: bytes) -> None:
        nonlocal waiting
        if data.startswith(b"joined\x01"):
            waiting -= 1
            if not waiting and not done.done():
                done.set_result(None)

    for conn, room in joins:
        conn.on_message = answered
        conn.send(frame(KIND, "join", room))
    async with asyncio.timeout(TIMEOUT + len(joins) / 100):
        await done
    for (conn, _room), handler in zip(joins, counting, strict=True):
        conn.on_message = handler


if __name__ == "__main__":
    main()
