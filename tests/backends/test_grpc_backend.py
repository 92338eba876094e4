"""The gRPC backend's tokens, configuration checks, token refresh on a live stream, and insecure mode."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from tests.backends.grpc_bus import free_ports
from tests.backends.grpc_certs import CertificateAuthority
from typed_ss.backends.grpc import (
    GrpcBackend,
    PeerAddress,
    TLSConfig,
    TokenError,
    _Peer,
    make_token,
    verify_token,
)
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
    peer = _Peer(PeerAddress.parse("127.0.0.1:1"), max_messages=3, max_bytes=1000)
    for i in range(5):
        peer.queue("t", b"%d" % i)
    assert [data for _, data in peer.outbox] == [b"2", b"3", b"4"]
    assert peer.dropped == 2
    by_bytes = _Peer(PeerAddress.parse("127.0.0.1:1"), max_messages=100, max_bytes=10)
    for i in range(5):
        by_bytes.queue("t", b"%04d" % i)
    assert [data for _, data in by_bytes.outbox] == [b"0003", b"0004"]
    assert (by_bytes.dropped, by_bytes.outbox_bytes) == (3, 8)
    by_bytes.interest = {"t"}
    assert by_bytes.take_batch(1) == [("t", b"0003")]  # at least one message, even over the limit
