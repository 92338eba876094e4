"""What a client causes is logged at WARNING or below, rate-limited, and escaped.

A client that repeats a bad request thousands of times gets an answer each time, but the log gets a
handful of lines and a count of the ones left out; nothing it sends can start a new log line.
"""

from __future__ import annotations

import logging

import pytest

from tests.apps import echo_server, make_app
from tests.support import connect_client, running
from typed_ss import Server, Socket
from typed_ss.logs import DEFAULT_BURST, ClientLog

pytestmark = pytest.mark.timeout(60)


def typed_ss_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("typed_ss")]


async def test_a_client_repeating_a_refused_join_gets_errors_and_the_log_gets_a_few_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="typed_ss")
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        for _ in range(2_000):
            await client.send("join", "__socket_id:someone-else")  # the handler's join refuses it
        for _ in range(2_000):
            frame = await client.expect("__error")
            assert frame.json()["code"] == "handler_error"
        await client.send("echo_text", "still here")
        assert (await client.expect("echo_text")).payload == "still here"
    records = [r for r in typed_ss_records(caplog) if "refused what socket" in r.getMessage()]
    assert 1 <= len(records) <= DEFAULT_BURST
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in records)


async def test_a_handler_bug_set_off_by_every_message_logs_a_few_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        for _ in range(1_000):
            await client.send("fail")
        for _ in range(1_000):
            await client.expect("__error")
    records = [r for r in typed_ss_records(caplog) if "failed on socket" in r.getMessage()]
    assert 1 <= len(records) <= DEFAULT_BURST
    assert all(r.levelno == logging.ERROR and r.exc_info is not None for r in records)


async def test_malformed_frames_are_logged_at_info_a_few_times(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="typed_ss")
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        for n in range(1_000):
            await client.ws.send(f"no delimiter {n}\n forged line")
        await client.send("echo_text", "after")
        assert (await client.expect("echo_text")).payload == "after"
    records = [r for r in typed_ss_records(caplog) if "malformed" in r.getMessage()]
    assert 1 <= len(records) <= DEFAULT_BURST
    assert all(r.levelno <= logging.INFO for r in records)


async def test_a_forged_contract_fingerprint_cannot_forge_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url:
        async with connect_client(url, path="/socket?ss_contract=x%0AERROR%20forged%20line") as client:
            await client.send("echo_text", "hi")
            await client.expect("echo_text")
    records = [r for r in typed_ss_records(caplog) if "another contract" in r.getMessage()]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert "\n" not in records[0].getMessage()


async def test_invalid_payload_details_are_escaped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="typed_ss")
    ss = Server()

    @ss.on("counts")
    async def counts(sock: Socket, data: dict[str, int]) -> None:
        pass

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("counts", '{"a\\nERROR forged": "not a number"}')
        await client.expect("__error")
    for record in typed_ss_records(caplog):
        assert "\n" not in record.getMessage()


def test_the_client_log_reports_what_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.client_log")
    log = ClientLog(logging.getLogger("test.client_log"), burst=3, period=3600)
    for n in range(10):
        log.info("kind", "line %d", n)
    log.info("other", "another kind has its own budget")
    assert [r.getMessage() for r in caplog.records] == [
        "line 0",
        "line 1",
        "line 2",
        "another kind has its own budget",
    ]
    assert log.suppressed("kind") == 7
