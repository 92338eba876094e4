"""Connection state recovery's history and sessions in Redis, shared by every instance of a
:class:`~typed_ss.backends.redis.RedisBackend` (docs/recovery.md, "Where the history lives").

**History.** Each topic's messages are kept in a Redis stream, ``<group>:history:<topic>``, with a
hash beside it, ``<group>:history-meta:<topic>``. One script adds a message to its stream and
publishes it, with its stream id in front, on the topic's channel: Redis runs a script alone, so
every subscriber receives a topic's messages in the stream's order, and an instance delivers its
own casts from its subscription too. A stream id (``<ms>-<seq>``) becomes the frame's offset as one
decimal number, ``ms * 1_000_000 + seq`` (a stream gets far fewer than a million entries in one
millisecond), so a client's offset is the same on every instance.

The script also trims the stream, exactly: back to ``max_entries`` entries once it holds 100 more
(so the cost per message stays flat), and everything older than ``max_age`` seconds; and it records
in the hash the newest id it removed (``trimmed``). A reconnect's replay reads each stream after the
client's offset and is refused exactly when ``trimmed`` is past that offset: never a partial replay,
never a refusal for what the client had. The hash also holds each publisher's last sequence number
on the topic, so a publish retried after it had worked (its answer was lost) is kept once. Both keys
expire once nothing was added for twice ``max_age`` and a minute: a stream that expired was sent
nothing for longer than any session lasts, so an absent stream means nothing was sent. Redis must
not evict these keys (``maxmemory-policy noeviction``): an evicted stream cannot be told from an
expired one.

**Sessions.** A session is one key, ``<group>:session:<token>``, its state as JSON, written when it
changes (at connect, at every join and leave, and when its connection ends: with where it left and
its expiry) by the writer task of
:class:`~typed_ss.backends._sessions.SessionWriter`, which keeps only each session's latest change
while Redis does not answer. While a connection holds it, its holder refreshes its
expiry; once the connection ended it expires ``window`` seconds later: an instance that crashes
leaves its sessions to be taken up elsewhere. Taking one up copies its state to the new token's key
and leaves an empty tombstone under the old one, in one script, so two instances cannot both take it
and a late write to the old token cannot bring it back.
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
local stream, meta = KEYS[1], KEYS[2]
local publisher, seq = ARGV[6], tonumber(ARGV[7])
if publisher ~= '' then
  if seq <= tonumber(redis.call('HGET', meta, publisher) or '0') then
    return false
  end
  redis.call('HSET', meta, publisher, seq)
end
local id = redis.call('XADD', stream, '*', 'd', ARGV[2])
local function parse(text)
  local ms, n = string.match(text, '(%d+)-(%d+)')
  return tonumber(ms), tonumber(n)
end
local function later(x, y)
  local xm, xn = parse(x)
  local ym, yn = parse(y)
  return xm > ym or (xm == ym and xn > yn)
end
local cut = nil
local excess = redis.call('XLEN', stream) - tonumber(ARGV[3])
if excess >= 100 then
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', excess)
  cut = oldest[#oldest][1]
end
local now = redis.call('TIME')
local horizon = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[4])
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1][1]
if parse(first) < horizon then
  local aged = redis.call('XREVRANGE', stream, '(' .. horizon .. '-0', '-', 'COUNT', 1)
  if #aged > 0 and (cut == nil or later(aged[1][1], cut)) then cut = aged[1][1] end
end
if cut then
  local ms, n = parse(cut)
  redis.call('XTRIM', stream, 'MINID', ms .. '-' .. (n + 1))
  redis.call('HSET', meta, 'trimmed', cut)
end
redis.call('PEXPIRE', stream, ARGV[5])
redis.call('PEXPIRE', meta, ARGV[5])
redis.call('PUBLISH', ARGV[1], id .. ' ' .. ARGV[2])
return id
"""
"""Keep a message in its topic's stream, once per publisher and sequence number; trim the stream by
length and age, recording the newest id removed; publish the message with its id."""

_READ: Final = """
local out = {}
for i = 1, #KEYS, 2 do
  local trimmed = redis.call('HGET', KEYS[i + 1], 'trimmed') or '0-0'
  out[#out + 1] = {trimmed, redis.call('XRANGE', KEYS[i], '(' .. ARGV[(i + 1) / 2], '+')}
end
return out
"""
"""Each stream's entries after an id, with the newest id trimmed from it, read at one instant."""

_TAKE: Final = """
local state = redis.call('GET', KEYS[1])
if not state or state == '' then return false end
redis.call('SET', KEYS[1], '', 'PX', ARGV[1])
redis.call('SET', KEYS[2], state, 'PX', ARGV[1])
return state
"""
"""Move a session to a new token, returning its state; nothing when it is gone. The old token's key
is left empty (a tombstone) for as long as a session lasts: a write to it that was on its way
(retried after its answer was lost) cannot bring it back."""

_WRITE: Final = """
local state = redis.call('GET', KEYS[1])
if state == '' then return 0 end
local what = ARGV[1]
if what == 'create' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
elseif what == 'update' then
  if state then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
elseif what == 'expire' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""
"""One change of a session, unless its token was taken up (a tombstone)."""


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
        self._meta_prefix = f"{prefix}history-meta:"
        self._channel_prefix = prefix
        self._max_entries = max_entries
        self._max_age_ms = int(max_age * 1000)
        # Streams outlive the age they are trimmed to a little, so that a stream is never gone while
        # a session that refers to it may still come back.
        self._expire_ms = self._max_age_ms * 2 + 60_000
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)

    async def append(self, topic: str, data: bytes, publisher: str = "", seq: int = 0) -> None:
        """Keep ``data`` in ``topic``'s stream and publish it, with its id, on ``topic``'s channel;
        nothing when ``publisher`` already added its ``seq`` (or a later one) to the topic."""
        await self._append(
            keys=[self._key_prefix + topic, self._meta_prefix + topic],
            args=[
                self._channel_prefix + topic,
                data,
                self._max_entries,
                self._max_age_ms,
                self._expire_ms,
                publisher,
                seq,
            ],
        )

    async def position(self, topic: str) -> int:
        """The offset of ``topic``'s newest kept message; 0 when it has none."""
        newest = await self._client.xrevrange(self._key_prefix + topic, count=1)
        return offset_of(newest[0][0]) if newest and newest[0][0] is not None else 0

    async def since(self, after: dict[str, int]) -> list[tuple[str, int, bytes]] | None:
        """Each topic's messages after its offset as ``(topic, offset, data)``, oldest first within a
        topic; ``None`` when some of them are no longer kept."""
        topics = list(after)
        keys = [key for topic in topics for key in (self._key_prefix + topic, self._meta_prefix + topic)]
        replies = await self._read(keys=keys, args=[stream_id_of(after[topic]) for topic in topics])
        found: list[tuple[str, int, bytes]] = []
        for topic, (trimmed, entries) in zip(topics, replies, strict=True):
            if offset_of(trimmed) > after[topic]:
                return None  # Redis no longer has some of what came after the client's offset
            for stream_id, fields in entries:
                found.append((topic, offset_of(stream_id), _field(fields, b"d")))
        return found

    @staticmethod
    def unkept(data: bytes) -> bytes:
        """``data`` as published on a history channel without being kept: its offset is 0."""
        return b"0-0 " + data

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
        self._write_script: Any = None

    def start(self, client: aioredis.Redis) -> None:
        """Start writing to Redis through ``client`` (the backend started)."""
        self._client = client
        self._take_script = client.register_script(_TAKE)
        self._write_script = client.register_script(_WRITE)
        self.writer.start()

    async def stop(self) -> None:
        await self.close()

    async def load(self, token: str) -> SessionRecord | None:
        """The session of ``token``, if Redis has it."""
        state = await self._redis().get(self._key_prefix + token)
        return None if not state else _decode(state)  # b"": a tombstone

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
                state = b"" if change.record is None else _encode(change.record)
                ttl = max(1, int(change.ttl * 1000))
                await self._write_script(
                    keys=[self._key_prefix + token], args=[change.what, state, ttl], client=pipe
                )
            await pipe.execute()

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise BackendError("the Redis backend has not started")
        return self._client
