"""The gRPC backend's tokens, configuration checks, token refresh on a live stream, insecure mode, the
per-peer outbox, and what it logs when a peer stops or refuses this node."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.backends.grpc_certs import CertificateAuthority
from tests.support import eventually, free_ports
from typed_ss.backends.grpc import GrpcBackend, TLSConfig, make_token, verify_token
from typed_ss.backends.grpc.config import SHUTTING_DOWN, PeerAddress
from typed_ss.backends.grpc.peers import Peer
from typed_ss.backends.grpc.tokens import TokenError
from typed_ss.errors import ConfigurationError

KEY = b"k" * 32

pytestmark = pytest.mark.timeout(30)


def test_a_token_names_its_issuer_and_expiry() -> None:
    expires = int(time.time()) + 60
    assert verify_token(KEY, make_token(KEY, "node1", expires)) == ("node1", expires)
    assert verify_token(KEY, make_token(KEY, "ñode@host:1", expires))[0] == "ñode@host:1"


@pytest.mark.parametrize(
    ("token", "error"),
    [
        (make_token(b"x" * 32, "node1", int(time.time()) + 60), "signature"),
        (make_token(KEY, "node1", int(time.time()) - 31), "expired"),
        ("v1.bm9kZTE.notanumber.sig", "malformed"),
        ("Bearer whatever", "malformed"),
        ("", "malformed"),
    ],
    # Fixed ids: the tokens hold the time, and pytest-xdist's workers must all collect the same ids.
    ids=["wrong-key", "expired", "bad-expiry", "bearer", "empty"],
)
def test_bad_tokens_are_rejected(token: str, error: str) -> None:
    with pytest.raises(TokenError, match=error):
        verify_token(KEY, token)


def test_a_tampered_token_is_rejected() -> None:
    version, name, expires, signature = make_token(KEY, "node1", int(time.time()) + 60).split(".")
    forged = make_token(KEY, "node2", int(expires)).split(".")[1]
    with pytest.raises(TokenError, match="signature"):
        verify_token(KEY, ".".join([version, forged, expires, signature]))
    with pytest.raises(TokenError, match="signature"):
        verify_token(KEY, ".".join([version, name, str(int(expires) + 3600), signature]))


def test_the_clock_skew_allowance() -> None:
    token = make_token(KEY, "node1", int(time.time()) - 10)
    assert verify_token(KEY, token, skew=30)[0] == "node1"
    with pytest.raises(TokenError, match="expired"):
        verify_token(KEY, token, skew=5)


def test_security_is_on_unless_insecure_is_asked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="insecure=True"):
        GrpcBackend("127.0.0.1:1", [])
    tls = TLSConfig(ca=b"", cert=b"", key=b"")
    with pytest.raises(ConfigurationError, match="insecure=True"):
        GrpcBackend("127.0.0.1:1", [], tls=tls)
    with pytest.raises(ConfigurationError, match="16 bytes"):
        GrpcBackend("127.0.0.1:1", [], tls=tls, shared_key=b"short")
    with pytest.raises(ConfigurationError, match="contradict"):
        GrpcBackend("127.0.0.1:1", [], tls=tls, insecure=True)
    with pytest.raises(ConfigurationError, match="capped"):
        GrpcBackend("127.0.0.1:1", [], tls=tls, shared_key=KEY, max_backoff=5)


def test_peer_syntax() -> None:
    assert PeerAddress.parse("10.0.0.2:30001") == PeerAddress("10.0.0.2:30001", "10.0.0.2")
    assert PeerAddress.parse("node2@10.0.0.2:30001") == PeerAddress("10.0.0.2:30001", "node2")
    assert PeerAddress.parse("[::1]:30001") == PeerAddress("[::1]:30001", "::1")
    for bad in ("10.0.0.2", "node@:1", "host:port"):
        with pytest.raises(ConfigurationError):
            PeerAddress.parse(bad)


async def receive(backend: GrpcBackend) -> tuple[str, bytes]:
    async for message in backend.messages():
        return message
    raise AssertionError("stopped")


async def test_tokens_are_refreshed_on_a_live_stream(tmp_path: Path) -> None:
    """With 3-second tokens and no skew allowance, the stream outlives several tokens."""
    ca = CertificateAuthority.create(tmp_path)
    first, second = (f"127.0.0.1:{port}" for port in free_ports(2))
    options = {"shared_key": KEY, "token_ttl": 3.0, "clock_skew": 0.0}
    a = GrpcBackend(first, [second], tls=ca.issue(tmp_path, "a"), name="a", **options)  # type: ignore[arg-type]
    b = GrpcBackend(second, [first], tls=ca.issue(tmp_path, "b"), name="b", **options)  # type: ignore[arg-type]
    await a.start()
    await b.start()
    try:
        await b.subscribe("t")
        for i in range(4):
            await a.publish("t", b"%d" % i)
            assert await asyncio.wait_for(receive(b), 2) == ("t", b"%d" % i)
            await asyncio.sleep(1.5)  # the refresh interval: tokens live 3 s
        for backend in (a, b):
            health = backend.health()
            assert health.reconnects == 0
            assert health.detail["refused"] == 0
    finally:
        await a.stop()
        await b.stop()


async def test_insecure_mode_works_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first, second = (f"127.0.0.1:{port}" for port in free_ports(2))
    a = GrpcBackend(first, [second], insecure=True)
    b = GrpcBackend(second, [first], insecure=True)
    with caplog.at_level(logging.WARNING, logger="typed_ss.backends.grpc"):
        await a.start()
        await b.start()
    try:
        assert "INSECURE" in caplog.text
        await b.subscribe("t")
        await a.publish("t", b"plain")
        assert await asyncio.wait_for(receive(b), 2) == ("t", b"plain")
        assert a.health().detail["secure"] is False
    finally:
        await a.stop()
        await b.stop()


async def test_a_node_listed_as_its_own_peer_is_ignored(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    node = GrpcBackend(f"127.0.0.1:{port}", [f"127.0.0.1:{port}"], insecure=True)
    await node.start()
    try:
        await node.subscribe("b")
        await node.publish("b", b"to myself")
        assert node.health().detail["peers"][f"127.0.0.1:{port}"]["state"] == "self (ignored)"  # type: ignore[index]
        assert node.health().state == "connected"
    finally:
        await node.stop()


def test_a_peer_outbox_keeps_the_newest_and_counts_what_it_drops() -> None:
    peer = Peer(PeerAddress.parse("127.0.0.1:1"), max_messages=3, max_bytes=1000)
    for i in range(5):
        peer.queue("t", b"%d" % i)
    assert [data for _, data in peer.outbox] == [b"2", b"3", b"4"]
    assert peer.outbox.dropped == 2
    assert peer.wake.is_set()  # the link's pump is woken
    by_bytes = Peer(PeerAddress.parse("127.0.0.1:1"), max_messages=100, max_bytes=10)
    for i in range(5):
        by_bytes.queue("t", b"%04d" % i)
    assert [data for _, data in by_bytes.outbox] == [b"0003", b"0004"]
    assert (by_bytes.outbox.dropped, by_bytes.outbox.bytes) == (3, 8)
    by_bytes.interest = {"t"}
    assert by_bytes.take_batch(1) == [("t", b"0003")]  # at least one message, even over the limit
    assert (len(by_bytes.outbox), by_bytes.outbox.bytes) == (1, 4)


def test_a_batch_skips_topics_the_peer_no_longer_wants_and_stops_at_its_bounds() -> None:
    peer = Peer(PeerAddress.parse("127.0.0.1:1"), max_messages=10_000, max_bytes=10**9)
    peer.interest = {"a"}
    for i in range(6):
        peer.queue("a" if i % 2 == 0 else "b", b"x" * 10)
    assert peer.take_batch(25) == [("a", b"x" * 10)]  # a, b (dropped: unwanted), then 30 > 25
    assert [topic for topic, _ in peer.outbox] == ["a", "b", "a", "b"]
    assert peer.outbox.bytes == 40
    for _ in range(600):
        peer.queue("a", b"y")
    batch = peer.take_batch(10**6)
    assert len(batch) == 512  # at most 512 messages per batch
    assert all(topic == "a" for topic, _ in batch)
    assert peer.outbox.dropped == 0


def test_a_restarted_peer_gets_an_empty_outbox_and_a_returning_one_keeps_it() -> None:
    peer = Peer(PeerAddress.parse("127.0.0.1:1"), max_messages=100, max_bytes=1000)
    assert peer.welcomed("node2", 7, ["b"]) is None  # the first welcome
    peer.queue("b", b"kept")
    assert peer.welcomed("node2", 7, ["b", "r:x"]) is None  # the same run, back after an outage
    assert [data for _, data in peer.outbox] == [b"kept"]
    assert peer.interest == {"b", "r:x"}
    peer.queue("b", b"stale")
    assert peer.welcomed("node2", 8, ["b"]) == 2  # a new boot number: a restart
    assert (len(peer.outbox), peer.outbox.bytes) == (0, 0)
    assert (peer.discarded_on_restart, peer.restarts_seen, peer.boot) == (2, 1, 8)
    assert peer.outbox.dropped == 0  # discarded on restart, not dropped by a bound


async def test_every_peer_figure_is_reported(tmp_path: Path) -> None:
    first, second = (f"127.0.0.1:{port}" for port in free_ports(2))
    a = GrpcBackend(first, [second], insecure=True)
    b = GrpcBackend(second, [first], insecure=True)
    await a.start()
    await b.start()
    try:
        await b.subscribe("t")
        await a.publish("t", b"counted")
        assert await asyncio.wait_for(receive(b), 2) == ("t", b"counted")
        health = a.health()
        link = health.detail["peers"][second]  # type: ignore[index]
        assert set(link) == {
            "node",
            "state",
            "outbox",
            "outbox_bytes",
            "sent",
            "dropped",
            "discarded_on_restart",
            "reconnects",
            "restarts_seen",
            "interest",
            "last_error",
        }
        assert (link["node"], link["state"], link["sent"], link["last_error"]) == (second, "connected", 1, "")
        assert [task.name for task in health.tasks] == [f"grpc link to {second}"]
        assert b.health().detail["inbound"] == {first: {"lagging": False, "received": 1}}
        for key in ("refused", "too_large", "received", "inbound_streams", "lagging_acks", "silent_peers"):
            assert key in health.detail
    finally:
        await a.stop()
        await b.stop()
    assert a.health().state == "stopped"
    assert a.health().detail["peers"][second]["state"] == "stopped"  # type: ignore[index]


async def test_a_peer_that_stops_is_a_warning_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    first, second = (f"127.0.0.1:{port}" for port in free_ports(2))
    a = GrpcBackend(first, [second], insecure=True)
    b = GrpcBackend(second, [first], insecure=True)
    await a.start()
    await b.start()
    try:
        await eventually(lambda: a.health().state == "connected")
        with caplog.at_level(logging.WARNING, logger="typed_ss.backends.grpc"):
            await b.stop()
            await eventually(lambda: a.health().detail["peers"][second]["state"] != "connected")  # type: ignore[index]
        lost = [record for record in caplog.records if SHUTTING_DOWN in record.getMessage()]
        assert lost, caplog.text
        assert all(record.levelno == logging.WARNING for record in lost), caplog.text
        assert a.health().reconnects == 1
    finally:
        await a.stop()
        await b.stop()


async def test_a_peer_that_refuses_this_node_is_an_error_from_the_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = (f"127.0.0.1:{port}" for port in free_ports(2))
    a = GrpcBackend(first, [second], insecure=True, shared_key=b"a" * 32, start_timeout=0.5)
    b = GrpcBackend(second, [first], insecure=True, shared_key=b"b" * 32, start_timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="typed_ss.backends.grpc"):
        await b.start()
        await a.start()
        try:
            await eventually(lambda: bool(a.health().detail["peers"][second]["last_error"]))  # type: ignore[index]
        finally:
            await a.stop()
            await b.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"cannot reach peer {second}" in m and "refused by the peer" in m for m in errors), caplog.text
    assert "refused by the peer" in str(a.health().detail["peers"][second]["last_error"])  # type: ignore[index]


def test_without_grpcio_the_package_names_the_extra() -> None:
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'grpc' or name.startswith('grpc.'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from typed_ss.errors import MissingDependencyError\n"
        "try:\n"
        "    from typed_ss.backends.grpc import GrpcBackend\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc.extra, exc)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", blocker], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("grpc "), done
    assert "typed-ss[grpc]" in done.stdout
