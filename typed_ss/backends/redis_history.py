"""Connection state recovery's history and sessions in Redis, shared by every instance of a
:class:`~typed_ss.backends.redis.RedisBackend` (docs/recovery.md, "Where history lives").

**History.** Each topic's messages are kept in a Redis stream, ``<group>:history:<topic>``, trimmed
to about ``max_entries`` entries and to nothing older than ``max_age`` seconds; the key expires once
nothing was added for ``max_age`` seconds and more. One script adds a message to its stream and
publishes it, with its stream id in front, on the topic's channel: Redis runs a script alone, so
every subscriber receives a topic's messages in the stream's order, and an instance delivers its
own casts from its subscription too. A stream id (``<ms>-<seq>``) becomes the frame's offset as one
decimal number, ``ms * 1_000_000 + seq`` (a stream gets far fewer than a million entries in one
millisecond), so a client's offset is the same on every instance.

A reconnect's replay reads each stream after the client's offset, and is refused when the stream was
trimmed and its first kept entry is past that offset (Redis 7's ``entries-added`` and
``recorded-first-entry-id``): never a partial replay. A stream
that expired was sent nothing for longer than any session lasts, so an absent stream means nothing
was sent. Redis must not evict these keys (``maxmemory-policy noeviction``): an evicted stream
cannot be told from an expired one.

**Sessions.** A session is one key, ``<group>:session:<token>``, its state as JSON, written when it
changes (at connect, at every join and leave) by the writer task of
:class:`~typed_ss.backends._sessions.SessionWriter`, which keeps only each session's latest change
while Redis does not answer. While a connection holds it, its holder refreshes its
expiry; once the connection ended it expires ``window`` seconds later: an instance that crashes
leaves its sessions to be taken up elsewhere. Taking one up renames its key to the new token in one
script, so two instances cannot both take it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import msgspec

from typed_ss.backends._sessions import Change, SessionWriter
from typed_ss.backends.base import SessionRecord
from typed_ss.errors import BackendError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["RedisHistory", "RedisSessions", "offset_of", "stream_id_of"]

logger = logging.getLogger("typed_ss.backends.redis")

_PER_MS: Final = 1_000_000

_APPEND: Final = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'd', ARGV[2])
local now = redis.call('TIME')
local horizon = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[4])
if horizon > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', '~', horizon)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[1], id .. ' ' .. ARGV[2])
return id
"""
"""Keep a message in its topic's stream (trimmed by length and age) and publish it with its id."""

_READ: Final = """
local out = {}
for i, key in ipairs(KEYS) do
  local first = '0-0'
  local trimmed = 0
  local entries = {}
  if redis.call('EXISTS', key) == 1 then
    local info = redis.call('XINFO', 'STREAM', key)
    local added, length, last = 0, 0, '0-0'
    for j = 1, #info, 2 do
      if info[j] == 'entries-added' then added = info[j + 1] end
      if info[j] == 'length' then length = info[j + 1] end
      if info[j] == 'recorded-first-entry-id' then first = info[j + 1] end
      if info[j] == 'last-generated-id' then last = info[j + 1] end
    end
    if added > length then trimmed = 1 end
    -- Trimmed to nothing: only a client that had the last entry missed nothing.
    if length == 0 then first = last end
    entries = redis.call('XRANGE', key, '(' .. ARGV[i], '+', 'COUNT', ARGV[#ARGV])
  end
  out[i] = {trimmed, first, entries}
end
return out
"""
"""Each stream's entries after an id, whether Redis ever trimmed it and its first kept id, read at one
instant."""

_TAKE: Final = """
local state = redis.call('GET', KEYS[1])
if not state then return false end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], state, 'PX', ARGV[1])
return state
"""
"""Move a session to a new token, returning its state; nothing when it is gone."""


def offset_of(stream_id: bytes | str) -> int:
    """A Redis stream id as a frame offset: one decimal number, in the same order."""
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms) * _PER_MS + int(seq or 0)


def stream_id_of(offset: int) -> str:
    """The Redis stream id of a frame offset (:func:`offset_of` undone)."""
    return f"{offset // _PER_MS}-{offset % _PER_MS}"


class RedisHistory:
    """The streams that keep each topic's messages (see the module docstring)."""

    def __init__(self, client: aioredis.Redis, prefix: str, *, max_entries: int, max_age: float) -> None:
        self._client = client
        self._key_prefix = f"{prefix}history:"
        self._channel_prefix = prefix
        self._max_entries = max_entries
        self._max_age_ms = int(max_age * 1000)
        # Streams outlive the age they are trimmed to a little, so that a stream is never gone while
        # a session that refers to it may still come back.
        self._expire_ms = self._max_age_ms * 2 + 60_000
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)

    async def append(self, topic: str, data: bytes) -> None:
        """Keep ``data`` in ``topic``'s stream and publish it, with its id, on ``topic``'s channel."""
        await self._append(
            keys=[self._key_prefix + topic],
            args=[self._channel_prefix + topic, data, self._max_entries, self._max_age_ms, self._expire_ms],
        )

    async def position(self, topic: str) -> int:
        """The offset of ``topic``'s newest kept message; 0 when it has none."""
        newest = await self._client.xrevrange(self._key_prefix + topic, count=1)
        return offset_of(newest[0][0]) if newest and newest[0][0] is not None else 0

    async def since(self, after: dict[str, int]) -> list[tuple[str, int, bytes]] | None:
        """Each topic's messages after its offset as ``(topic, offset, data)``, oldest first within a
        topic; ``None`` when some of them are no longer kept."""
        topics = list(after)
        replies = await self._read(
            keys=[self._key_prefix + topic for topic in topics],
            args=[*(stream_id_of(after[topic]) for topic in topics), self._max_entries + 1],
        )
        found: list[tuple[str, int, bytes]] = []
        for topic, (trimmed, first, entries) in zip(topics, replies, strict=True):
            if trimmed and offset_of(first) > after[topic]:
                # Entries were trimmed, and the client's last one is among them: some it did not
                # receive may be too (Redis does not say which were trimmed, only what is left).
                return None
            for stream_id, fields in entries:
                found.append((topic, offset_of(stream_id), _field(fields, b"d")))
        return found

    @staticmethod
    def split(message: bytes) -> tuple[int, bytes]:
        """A message received on a history channel as ``(offset, data)``."""
        stream_id, _, data = message.partition(b" ")
        return offset_of(stream_id), data


def _field(fields: list[Any], name: bytes) -> bytes:
    for at in range(0, len(fields) - 1, 2):
        if fields[at] == name:
            return bytes(fields[at + 1])
    return b""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(SessionRecord).decode


class RedisSessions(SessionWriter):
    """Sessions by token in Redis (see the module docstring)."""

    def __init__(self, prefix: str, *, held_ttl: float, max_backoff: float) -> None:
        super().__init__("Redis", held_ttl=held_ttl, max_backoff=max_backoff, log=logger)
        self._client: aioredis.Redis | None = None
        self._key_prefix = f"{prefix}session:"
        self._take_script: Any = None

    def start(self, client: aioredis.Redis) -> None:
        """Start writing to Redis through ``client`` (the backend started)."""
        self._client = client
        self._take_script = client.register_script(_TAKE)
        self.writer.start()

    async def stop(self) -> None:
        await self.writer.stop()

    async def load(self, token: str) -> SessionRecord | None:
        """The session of ``token``, if Redis has it."""
        state = await self._redis().get(self._key_prefix + token)
        return None if state is None else _decode(state)

    async def _take(self, token: str, new_token: str) -> SessionRecord | None:
        if self._take_script is None:
            raise BackendError("the Redis backend has not started")
        state = await self._take_script(
            keys=[self._key_prefix + token, self._key_prefix + new_token], args=[int(self.held_ttl * 1000)]
        )
        return None if state is None else _decode(state)

    async def _write(self, batch: dict[str, Change]) -> None:
        async with self._redis().pipeline(transaction=False) as pipe:
            for token, change in batch.items():
                key = self._key_prefix + token
                ttl = int(change.ttl * 1000)
                if change.what == "create":
                    _ = pipe.set(key, _encode(change.record), px=ttl)
                elif change.what == "update":
                    _ = pipe.set(key, _encode(change.record), px=ttl, xx=True)
                elif change.what == "expire":
                    _ = pipe.pexpire(key, ttl)
                else:
                    _ = pipe.delete(key)
            await pipe.execute()

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise BackendError("the Redis backend has not started")
        return self._client
