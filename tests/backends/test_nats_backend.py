"""The NATS backend on its own, against real nats-server processes of the tests' own.

Subjects for awkward topic names; TLS and credentials passed through to nats-py (and a refusal
reported, not waited on); a NATS that is down at start, or goes down, and comes back; publishes that
fail fast meanwhile; a slow consumer's drops counted; a message over the server's ``max_payload``
dropped and counted; nats-py closing its client; an application's own client; a hung server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nkeys
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient

from tests.backends.grpc_certs import CertificateAuthority
from tests.backends.nats_server import MAX_PAYLOAD, NatsServer
from tests.backends.receiving import receiving
from tests.support import eventually, free_port
from typed_ss import ConfigurationError
from typed_ss.backends import Backend
from typed_ss.backends.nats import MAX_TOKEN, NatsBackend, subject_token, topic_of_token
from typed_ss.errors import BackendError

# The tests that run nats-server processes are slow; the subject mapping's are not.
pytestmark = pytest.mark.timeout(60)

AWKWARD = [
    "",
    "b",
    "c",
    "r:lobby",
    "r:__socket_id:AbC-123_x",
    "a.b",
    "a b",
    "a\tb\r\n",
    "*",
    ">",
    "a.*",
    "a.>",
    "_",
    "__",
    "_41",
    "A",
    "%41",
    "héllo",
    "日本語のルーム",
    "party 🎉",
    "\x00",
    "\ud800",  # a lone surrogate: not valid text, a str all the same
    "é" * 200,
    "é" * 400,  # hashed: longer than MAX_TOKEN escaped
]


def backend_on(server: NatsServer, **options: Any) -> NatsBackend:
    return NatsBackend(server.url, group="test", **options)


@contextlib.asynccontextmanager
async def running(*backends: Backend) -> AsyncIterator[None]:
    try:
        for backend in backends:
            await backend.start()
        yield
    finally:
        for backend in backends:
            await backend.stop()


def state(backend: Backend) -> str:
    return backend.health().state


def counter(backend: Backend, name: str) -> int:
    value = backend.health().detail[name]
    assert isinstance(value, int)
    return value


def connected(backend: Backend) -> bool:
    return state(backend) == "connected"


# --- subjects -----------------------------------------------------------------------------------------


def test_awkward_topics_map_to_single_safe_tokens_and_back() -> None:
    tokens = [subject_token(topic) for topic in AWKWARD]
    assert len(set(tokens)) == len(tokens), "one token per topic"
    for topic, token in zip(AWKWARD, tokens, strict=True):
        assert token, topic
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"), token
        assert len(token) <= MAX_TOKEN + 2
        if token.startswith("_h"):
            assert topic_of_token(token) is None  # hashed: the subscription knows its topic
        else:
            assert topic_of_token(token) == topic
    assert subject_token("r:lobby") == "r_3Alobby"  # readable in the monitoring
    assert subject_token("é" * 400).startswith("_h")


@given(st.text())
def test_every_topic_maps_to_a_safe_token_that_reads_back(topic: str) -> None:
    token = subject_token(topic)
    assert token
    assert all(char.isascii() and (char.isalnum() or char in "_-") for char in token)
    assert topic_of_token(token) == (None if token.startswith("_h") else topic)


def test_tokens_it_cannot_have_written_read_as_none() -> None:
    for token in ["a.b", "*", "_4", "_zz", "_41", "_e9", "x y", "_C3"]:
        assert topic_of_token(token) is None, token


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        NatsBackend("nats://127.0.0.1:4222", client=NatsClient())
    for group in ["", "a..b", "a.*", "a b", ">", "a.", "ü"]:
        with pytest.raises(ConfigurationError):
            NatsBackend(group=group)


@pytest.mark.slow
async def test_awkward_topics_travel_each_on_its_own_subject(nats_server: NatsServer) -> None:
    a, b = backend_on(nats_server), backend_on(nats_server, name="b")
    async with running(a, b), receiving(b) as at_b:
        for topic in AWKWARD:
            await b.subscribe(topic)
        for i, topic in enumerate(AWKWARD):
            await a.publish(topic, b"%d" % i)
        sent = [(topic, b"%d" % i) for i, topic in enumerate(AWKWARD)]
        # Each topic has a subscription of its own (order is kept per topic, not across them).
        await eventually(lambda: len(at_b.received) >= len(sent))
        assert sorted(at_b.received) == sorted(sent)
        # No wildcard: the server holds exactly these subjects for B's connection (and nats-py's
        # inbox for the requests that confirm subscriptions).
        connz = await nats_server.monitor("connz", subs=1)
        subjects = [set(conn["subscriptions_list"]) for conn in connz["connections"] if conn["name"] == "b"]
        (of_b,) = subjects
        inbox = {subject for subject in of_b if subject.startswith("_INBOX.")}
        assert len(inbox) == 1
        assert of_b - inbox == {b.subject(topic) for topic in AWKWARD}


# --- TLS and credentials ------------------------------------------------------------------------------


def tls_server(directory: Path) -> tuple[CertificateAuthority, NatsServer]:
    """A CA made for the test, and a nats-server (not started) requiring TLS with a certificate of it."""
    ca = CertificateAuthority.create(directory / "ca")
    cert = ca.issue(directory / "ca", "nats")
    options = ["--tls", "--tlscert", str(cert.cert), "--tlskey", str(cert.key)]
    return ca, NatsServer(directory / "nats", options=options)


@pytest.mark.slow
async def test_tls_with_the_servers_ca(tmp_path: Path) -> None:
    ca, server = tls_server(tmp_path)
    await server.start()
    try:
        context = ssl.create_default_context(cafile=str(ca.path))
        a = backend_on(server, tls=context, tls_hostname="localhost")
        b = backend_on(server, tls=context)
        async with running(a, b), receiving(b) as at_b:
            await b.subscribe("t")
            await a.publish("t", b"over TLS")
            await eventually(lambda: at_b.received == [("t", b"over TLS")])
            connz = await server.monitor("connz")
            assert [bool(conn.get("tls_version")) for conn in connz["connections"]] == [True, True]
    finally:
        await server.kill()


@pytest.mark.slow
async def test_a_certificate_it_cannot_verify_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, server = tls_server(tmp_path)
    await server.start()
    try:
        stranger = CertificateAuthority.create(tmp_path / "other", "another CA")
        backend = backend_on(server, tls=ssl.create_default_context(cafile=str(stranger.path)))
        async with running(backend):
            await backend.subscribe("t")  # returns: recorded, to be made once it can connect
            await eventually(
                lambda: "CERTIFICATE_VERIFY_FAILED" in str(backend.health().detail["last_error"])
            )
            assert state(backend) == "reconnecting"
            with pytest.raises(BackendError):
                await backend.publish("t", b"x")
        assert any(r.levelname == "ERROR" and "cannot reach NATS" in r.message for r in caplog.records)
    finally:
        await server.kill()


def nkey_user(directory: Path) -> tuple[str, dict[str, Any]]:
    """A user the server knows by its public nkey only, made for the test (never a committed key):
    the server's configuration, and the backend's options (the seed file)."""
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = directory / "user.nk"
    seed_file.write_bytes(seed)
    return f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}', {"nkeys_seed": str(seed_file)}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["user and password", "token", "nkey seed"])
async def test_credentials_are_passed_through(kind: str, tmp_path: Path) -> None:
    options: list[str] = []
    config = ""
    credentials: dict[str, Any]
    if kind == "user and password":
        options, credentials = (
            ["--user", "typed", "--pass", "s3cret"],
            {"user": "typed", "password": "s3cret"},
        )
    elif kind == "token":
        options, credentials = ["--auth", "t0ken"], {"token": "t0ken"}
    else:
        config, credentials = nkey_user(tmp_path)
    server = NatsServer(tmp_path / "nats", options=options, config=config)
    await server.start()
    try:
        a, b = backend_on(server, **credentials), backend_on(server, **credentials)
        async with running(a, b), receiving(b) as at_b:
            await b.subscribe("t")
            await a.publish("t", kind.encode())
            await eventually(lambda: at_b.received == [("t", kind.encode())])
        stranger = backend_on(server)  # without them: refused, and said so
        async with running(stranger):
            await eventually(lambda: "authorization" in str(stranger.health().detail["last_error"]).lower())
            assert state(stranger) != "connected"
    finally:
        await server.kill()


@pytest.mark.slow
@pytest.mark.parametrize("credentials", [{"user": "typed", "password": "wrong"}, {"token": "wrong"}])
async def test_a_refusal_is_reported_not_waited_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, credentials: dict[str, str]
) -> None:
    server = NatsServer(tmp_path / "nats", options=["--user", "typed", "--pass", "s3cret"])
    await server.start()
    try:
        backend = backend_on(server, **credentials)
        # Deadlines only: start, a subscription and a publish each return by themselves.
        async with asyncio.timeout(20), running(backend):
            await backend.subscribe("t")
            await eventually(lambda: "Authorization Violation" in str(backend.health().detail["last_error"]))
            assert state(backend) == "reconnecting"
            with pytest.raises(BackendError):
                await backend.publish("t", b"x")
        refused = [r for r in caplog.records if r.levelname == "ERROR" and "Authorization" in r.message]
        assert refused, "the refusal is logged as an error"
    finally:
        await server.kill()


# --- outages ------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_nats_down_at_start_then_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = NatsServer(tmp_path / "nats")
    server.pick_ports()  # where it will listen, once it runs
    a, b = backend_on(server), backend_on(server)
    async with asyncio.timeout(30), running(a, b), receiving(b) as at_b:
        # Nothing waits for NATS: start returned, a subscription returns (recorded), a publish raises.
        await b.subscribe("made-while-down")
        await eventually(lambda: state(b) == "reconnecting")
        assert "ConnectionRefusedError" in str(b.health().detail["last_error"])
        with pytest.raises(BackendError):
            await a.publish("made-while-down", b"lost")
        await server.start()
        try:
            await eventually(lambda: connected(a) and connected(b), within=20)
            await a.publish("made-while-down", b"made once NATS was up")
            await eventually(lambda: at_b.received == [("made-while-down", b"made once NATS was up")])
            assert (a.health().reconnects, b.health().reconnects) == (0, 0)  # none was ever lost
        finally:
            await server.kill()
    assert any(r.levelname == "ERROR" and "cannot reach NATS" in r.message for r in caplog.records)
    assert any(r.levelname == "WARNING" and "reconnected to NATS" in r.message for r in caplog.records)


@pytest.mark.slow
async def test_publish_fails_fast_while_nats_is_down_and_subscriptions_follow_it(
    nats_server: NatsServer,
) -> None:
    a, b = backend_on(nats_server, publish_timeout=0.5), backend_on(nats_server)
    async with running(a, b), receiving(b) as at_b:
        await b.subscribe("kept")
        await b.subscribe("dropped-while-down")
        await nats_server.kill()
        await eventually(lambda: state(a) == "reconnecting" and state(b) == "reconnecting")
        # Deadlines only: the publish gives up at once with the backend's own error, and
        # subscription changes return without waiting for NATS.
        async with asyncio.timeout(20):
            with pytest.raises(BackendError, match="not connected"):
                await a.publish("kept", b"x")
            await b.subscribe("made-while-down")
            await b.unsubscribe("dropped-while-down")
        await nats_server.start()
        await eventually(lambda: connected(a) and connected(b), within=20)
        assert b.health().reconnects == 1
        for topic in ["kept", "made-while-down", "dropped-while-down"]:
            await a.publish(topic, topic.encode())
        await a.publish("made-while-down", b"end")
        await eventually(lambda: ("made-while-down", b"end") in at_b.received)
        await eventually(lambda: ("kept", b"kept") in at_b.received)
        assert sorted(at_b.received) == [
            ("kept", b"kept"),
            ("made-while-down", b"end"),
            ("made-while-down", b"made-while-down"),
        ]
        assert await nats_server.interest(b.subject("dropped-while-down")) == 0
        assert await nats_server.interest(b.subject("made-while-down")) == 1


@pytest.mark.slow
async def test_a_client_nats_py_closed_is_replaced(nats_server: NatsServer) -> None:
    # nats-py closes its client for good on some server errors (an authorization revoked after
    # connecting): the backend makes a new one, and subscribes everything again.
    a, b = backend_on(nats_server), backend_on(nats_server)
    async with running(a, b), receiving(b) as at_b:
        await b.subscribe("t")
        first = b._client
        assert first is not None
        await first.close()
        await eventually(lambda: connected(b) and b._client is not first, within=20)
        assert b.health().reconnects == 1
        await a.publish("t", b"on the new client")
        await eventually(lambda: at_b.received == [("t", b"on the new client")])


@pytest.mark.slow
async def test_an_applications_own_client(nats_server: NatsServer) -> None:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1)
    try:
        a, b = backend_on(nats_server), NatsBackend(client=client, group="test")
        async with running(a, b), receiving(b) as at_b:
            await eventually(functools.partial(connected, b))
            await b.subscribe("t")
            await a.publish("t", b"1")
            await eventually(lambda: at_b.received == [("t", b"1")])
            await nats_server.kill()
            await nats_server.start()
            await eventually(lambda: b.health().reconnects == 1 and connected(b), within=20)
            await eventually(functools.partial(connected, a), within=20)
            await a.publish("t", b"2")
            await eventually(lambda: at_b.received == [("t", b"1"), ("t", b"2")])
        assert client.is_connected, "the application's client stays open"

        async def unsubscribed() -> bool:
            return await nats_server.interest(b.subject("t")) == 0

        await eventually(unsubscribed)  # the subscriptions the backend made are removed
    finally:
        await client.close()


# --- bounds -------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_slow_consumer_drops_and_counts(nats_server: NatsServer) -> None:
    # Nobody reads B's messages: nats-py's queue for the subscription (max_pending messages) and the
    # inbox (as many) fill, and everything else is dropped and counted, at one level or the other.
    a, b = backend_on(nats_server), backend_on(nats_server, max_pending=5)
    async with running(a, b):
        await b.subscribe("t")
        published = 0

        def accounted() -> bool:
            """Every message arrived: it waits in the inbox, or was dropped and counted."""
            detail = b.health().detail
            return detail["pending"] == 5 and detail["dropped"] == published - 5

        for _burst in range(20):
            for _ in range(500):
                await a.publish("t", b"x" * 16)
                published += 1
            await eventually(accounted)
            slow, dropped = counter(b, "slow_consumer"), counter(b, "dropped")
            if slow and dropped > slow:
                break
        assert slow > 0, "nats-py's own limit dropped some, counted"
        assert dropped > slow, "and the inbox dropped the oldest, counted"


@pytest.mark.slow
async def test_a_message_over_max_payload_is_dropped_and_counted(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = backend_on(nats_server), backend_on(nats_server)
    async with running(a, b), receiving(b) as at_b:
        await b.subscribe("t")
        await a.publish("t", b"x" * (MAX_PAYLOAD + 1))  # does not raise: a retry could never work
        await a.publish("t", b"after")
        await eventually(lambda: at_b.received == [("t", b"after")])
        assert a.health().detail["rejected"] == 1
    assert any(r.levelname == "ERROR" and "max_payload" in r.message for r in caplog.records)


@pytest.mark.slow
async def test_a_hung_server_is_not_waited_on(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A short hang (SIGSTOP), shorter than nats-py's pings take to give up on the connection.
    a = backend_on(nats_server, ping_interval=10)
    b = backend_on(nats_server, subscribe_timeout=0.5, ping_interval=10)
    async with running(a, b), receiving(b) as at_b:
        await eventually(lambda: connected(a) and connected(b))
        await nats_server.pause()
        try:
            # Deadlines only: the first subscription waits for its confirmation at most
            # subscribe_timeout, and marks NATS unresponsive; later ones do not wait at all.
            async with asyncio.timeout(20):
                await b.subscribe("during-the-hang")
                assert state(b) == "unresponsive"
                await b.subscribe("later")
        finally:
            nats_server.resume()
        await eventually(lambda: connected(b), within=20)  # it answers again
        assert b.health().reconnects == 0
        await a.publish("during-the-hang", b"1")
        await a.publish("later", b"2")
        await eventually(lambda: sorted(at_b.received) == [("during-the-hang", b"1"), ("later", b"2")])
    assert any("is not answering" in r.message for r in caplog.records)
    assert any("answers again" in r.message for r in caplog.records)


@pytest.mark.slow
async def test_health(nats_server: NatsServer) -> None:
    backend = backend_on(nats_server, name="health-check")
    assert backend.health().state == "stopped"
    async with running(backend):
        await backend.subscribe("t")
        await eventually(functools.partial(connected, backend))
        health = backend.health()
        assert health.name == "nats"
        assert health.detail["server"] == f"127.0.0.1:{nats_server.port}"
        assert health.detail["subjects"] == 1
        assert [task.name for task in health.tasks] == ["nats connection"]
        connz = await nats_server.monitor("connz")
        assert [conn["name"] for conn in connz["connections"]] == ["health-check"]
    assert backend.health().state == "stopped"


async def test_nothing_listens() -> None:
    backend = NatsBackend(f"nats://127.0.0.1:{free_port()}")
    async with asyncio.timeout(20), running(backend):
        await backend.subscribe("t")
        assert state(backend) == "reconnecting"
        with pytest.raises(BackendError):
            await backend.publish("t", b"x")
