"""The one way a backend writes connection state recovery's sessions: a writer task that keeps only
each session's latest change, and retries with the shared backoff while the backend does not answer.

A backend that keeps sessions (Redis, MongoDB) subclasses :class:`SessionWriter` with how to write
a batch of changes, how to read one session and how to take one up; the
:class:`~typed_ss.backends.base.SessionStore` API (``save``, ``expire``, ``delete``, ``refresh``
that never wait; ``load``, ``take``) is this class's. What waits to be written is bounded by the
sessions this instance holds or held (one change each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Literal, NamedTuple

import msgspec

from typed_ss.backends.base import SessionRecord
from typed_ss.supervision import Backoff, Supervised

__all__ = ["Change", "SessionWriter"]

WRITE_TIMEOUT = 5.0
"""Seconds a batch of writes may take before it counts as failed (and is retried)."""


class Change(NamedTuple):
    """The latest change of one session, not written yet."""

    what: Literal["create", "update", "expire", "delete"]
    """``create``: a new session (written whatever the store has); ``update``: a held session's new
    state, written only if the store still has it (one taken up elsewhere, or expired, is not brought
    back); ``expire``: it lasts ``ttl`` more; ``delete``: it ended."""
    record: SessionRecord | None
    ttl: float
    """Seconds the session lasts from the write on."""


class SessionWriter(ABC):
    """Sessions in a shared store, written in the background (see the module docstring)."""

    def __init__(self, store: str, *, held_ttl: float, max_backoff: float, log: logging.Logger) -> None:
        self._store = store
        self.held_ttl = held_ttl
        """Seconds a held session lasts in the store; its holder refreshes it before that."""
        self._log = log
        self._unwritten: dict[str, Change] = {}
        self._writing = 0  # changes in the batch being written
        self._changed = asyncio.Event()
        self._idle = asyncio.Event()  # clear while a batch is being written
        self._idle.set()
        self._closing = False
        self._backoff = Backoff(cap=max_backoff)
        self.writer = Supervised(f"{store.lower()} session writer", self._write_loop, log=log)

    def __len__(self) -> int:
        """Changes not written yet (those of a write under way included)."""
        return len(self._unwritten) + self._writing

    # --- the SessionStore API ----------------------------------------------------------------------

    def save(self, token: str, record: SessionRecord, *, new: bool = False, ttl: float | None = None) -> None:
        self._queue(
            token, Change("create" if new else "update", record, self.held_ttl if ttl is None else ttl)
        )

    def expire(self, token: str, after: float) -> None:
        self._queue(token, Change("expire", None, after))

    def delete(self, token: str) -> None:
        self._queue(token, Change("delete", None, 0.0))

    def refresh(self, tokens: list[str]) -> None:
        for token in tokens:
            if token not in self._unwritten:
                self._unwritten[token] = Change("expire", None, self.held_ttl)
        if tokens:
            self._changed.set()

    async def take(self, token: str, new_token: str) -> SessionRecord | None:
        unwritten = self._unwritten.pop(token, None)
        if unwritten is not None and unwritten.what in ("create", "update"):
            await self._write({token: unwritten})  # made here a moment ago: the store has it first
        record = await self._take(token, new_token)
        if record is not None and record.left is not None:
            # Where the old connection left is of no use to the new one (and would mislead a replay
            # after this one ends without a note of its own): gone from the new token at once.
            record = msgspec.structs.replace(record, left=None)
            await self._write({new_token: Change("update", record, self.held_ttl)})
        return record

    @abstractmethod
    async def load(self, token: str) -> SessionRecord | None: ...

    # --- what a store implements -------------------------------------------------------------------

    @abstractmethod
    async def _write(self, batch: dict[str, Change]) -> None:
        """Write every change of ``batch`` (token -> change); raise if they may not all be written."""

    @abstractmethod
    async def _take(self, token: str, new_token: str) -> SessionRecord | None:
        """Move the session to ``new_token`` at once (only one of two concurrent takes succeeds) and
        return its state; ``None`` when it is gone."""

    # --- the writer --------------------------------------------------------------------------------

    def _queue(self, token: str, change: Change) -> None:
        earlier = self._unwritten.get(token)
        self._unwritten[token] = change if earlier is None else _merge(earlier, change)
        self._changed.set()

    async def close(self, within: float = 1.0) -> None:
        """Stop the writer, then write what is left, for at most ``within`` seconds (the backend
        stops: what cannot be written now is left to expire)."""
        # A write on its way is let finish (bounded) rather than cancelled: a client library
        # cancelled halfway through a round trip may hang cleaning up its connection. No new batch
        # is taken meanwhile; what is left is written below.
        self._closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._idle.wait()
        await self.writer.stop()
        batch, self._unwritten = self._unwritten, {}
        if batch:
            try:
                async with asyncio.timeout(within):
                    await self._write(batch)
            except Exception as exc:
                self._log.warning(
                    "%d recovery sessions were not written to %s at stop: %r", len(batch), self._store, exc
                )

    async def _write_loop(self) -> None:
        while True:
            await self._changed.wait()
            if self._closing:
                await (
                    asyncio.get_running_loop().create_future()
                )  # close() writes the rest: wait to be stopped
            self._changed.clear()
            batch, self._unwritten = self._unwritten, {}
            self._idle.clear()
            self._writing = len(batch)
            try:
                async with asyncio.timeout(WRITE_TIMEOUT):
                    await self._write(batch)
            except asyncio.CancelledError:
                self._writing = 0
                self._put_back(batch)
                self._idle.set()
                raise
            except Exception as exc:
                self._writing = 0
                self._put_back(batch)
                self._idle.set()
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc  # stopped while writing: a library made it an error
                self._changed.set()
                delay = self._backoff.failed()
                if self._backoff.should_log():
                    self._log.error(
                        "writing %d recovery sessions to %s failed (%d in a row), retrying: %r",
                        len(batch),
                        self._store,
                        self._backoff.failures,
                        exc,
                    )
                await asyncio.sleep(delay)
                continue
            self._writing = 0
            self._idle.set()
            failures = self._backoff.succeeded()
            if failures:
                self._log.warning(
                    "writing recovery sessions to %s works again after %d failures", self._store, failures
                )

    def _put_back(self, batch: dict[str, Change]) -> None:
        """A batch that may not have been written waits again, under the changes made since."""
        for token, change in batch.items():
            newer = self._unwritten.get(token)
            self._unwritten[token] = change if newer is None else _merge(change, newer)


def _merge(earlier: Change, later: Change) -> Change:
    """One change that has the effect of ``earlier`` then ``later``."""
    if later.what == "expire":
        if earlier.what in ("create", "update"):
            return earlier._replace(ttl=later.ttl)  # the state still to be written, with the new expiry
        if earlier.what == "delete":
            return earlier
        return later
    if later.what == "update" and earlier.what == "create":
        return later._replace(what="create")  # not written yet: it must still be created
    return later
