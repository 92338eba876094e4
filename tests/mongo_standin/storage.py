"""Collections, capped-collection eviction, filters and cursors, the way MongoDB documents them.

- A collection keeps its documents in insertion order (the ``$natural`` order), each under a
  ``RecordId`` that only grows. A capped collection has a byte cap (``size``, raised to 4096 if at
  most that, else to a multiple of 256) and optionally a document cap (``max``); an insert that goes
  past either removes the oldest documents first. A document larger than the cap is refused
  (``BadValue``, "object to insert exceeds cappedMaxSize").
- A tailable cursor remembers the last record it examined. A ``getMore`` continues after it; if
  that record has been removed meanwhile the cursor dies with ``CappedPositionLost`` (136). A
  tailable ``find`` on an empty collection keeps no cursor (id 0, SERVER-13955), on a non-empty one
  it always does, even when nothing matched yet.
- Filters: top-level fields compared by equality, ``$eq``, ``$ne`` (``$ne`` also matches a missing
  field) and ``$in``. Projections: inclusion of top-level fields. Sort: ``{$natural: 1 | -1}``.
  ``showRecordId`` adds each document's RecordId as ``$recordId``. Other operators are refused,
  never ignored.
- Ordinary collections also take updates (a replacement, or ``$set`` of top-level fields, with
  ``upsert``) and deletes, matched by the same filters.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import bson
from bson import ObjectId
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

__all__ = [
    "BATCH_BYTES",
    "MAX_BSON_SIZE",
    "Collection",
    "CommandError",
    "Cursor",
    "Filter",
    "Record",
    "compile_filter",
    "compile_projection",
    "raw",
    "with_record_id",
]

MAX_BSON_SIZE = 16 * 1024 * 1024
BATCH_BYTES = MAX_BSON_SIZE
"""A batch stops before it would pass 16 MiB (it always holds at least one document)."""

_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(document_class=dict)

CODE_NAMES = {
    2: "BadValue",
    9: "FailedToParse",
    13: "Unauthorized",
    14: "TypeMismatch",
    20: "IllegalOperation",
    43: "CursorNotFound",
    48: "NamespaceExists",
    59: "CommandNotFound",
    72: "InvalidOptions",
    73: "InvalidNamespace",
    136: "CappedPositionLost",
    175: "QueryPlanKilled",
    238: "NotImplemented",
    292: "CursorInUse",
    11000: "DuplicateKey",
}


class CommandError(Exception):
    """A command that fails: the reply is ``{ok: 0, errmsg, code, codeName}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def reply(self) -> dict[str, Any]:
        return {
            "ok": 0.0,
            "errmsg": self.message,
            "code": self.code,
            "codeName": CODE_NAMES.get(self.code, f"Location{self.code}"),
        }


def not_implemented(what: str) -> CommandError:
    """What real MongoDB supports but this stand-in does not: refused, so no test passes by accident."""
    return CommandError(238, f"the MongoDB stand-in does not implement {what}")


@dataclass(frozen=True)
class Record:
    """One stored document: its RecordId, its BSON exactly as inserted, and its decoded form."""

    rid: int
    data: bytes
    doc: dict[str, Any]


Filter = Callable[[dict[str, Any]], bool]


def compile_filter(spec: object) -> Filter:
    if spec is None:
        return lambda doc: True
    if not isinstance(spec, dict):
        raise CommandError(14, "BSON field 'filter' is the wrong type, expected type 'object'")
    tests: list[Filter] = []
    for key, condition in spec.items():
        if key.startswith("$"):
            raise CommandError(2, f"unknown top level operator: {key}")
        if "." in key:
            raise not_implemented(f"dotted field paths in filters ({key!r})")
        tests.append(_field_test(key, condition))
    return lambda doc: all(test(doc) for test in tests)


_MISSING = object()


def _equal(value: object, expected: object) -> bool:
    if expected is None:
        return value is _MISSING or value is None  # {f: null} also matches a missing field
    if value is _MISSING:
        return False
    # bool and int are different BSON types; Python would call True == 1.
    return (type(value) is type(expected) and value == expected) or (
        isinstance(value, int | float)
        and isinstance(expected, int | float)
        and not isinstance(value, bool)
        and not isinstance(expected, bool)
        and value == expected
    )


def _unequal(value: object, expected: object) -> bool:
    return not _equal(value, expected)


def _among(value: object, choices: list[object]) -> bool:
    return any(_equal(value, choice) for choice in choices)


def _field_test(key: str, condition: object) -> Filter:
    if isinstance(condition, dict) and condition and all(k.startswith("$") for k in condition):
        checks: list[Callable[[object], bool]] = []
        for operator, operand in condition.items():
            if operator == "$eq":
                checks.append(functools.partial(_equal, expected=operand))
            elif operator == "$ne":
                checks.append(functools.partial(_unequal, expected=operand))
            elif operator == "$in":
                if not isinstance(operand, list):
                    raise CommandError(2, "$in needs an array")
                checks.append(functools.partial(_among, choices=operand))
            elif operator in {"$gt", "$gte", "$lt", "$lte", "$nin", "$exists", "$type", "$regex"}:
                raise not_implemented(f"the {operator} query operator")
            else:
                raise CommandError(2, f"unknown operator: {operator}")
        return lambda doc: all(check(doc.get(key, _MISSING)) for check in checks)
    if isinstance(condition, dict):
        raise not_implemented("equality with an embedded document")
    return lambda doc: _equal(doc.get(key, _MISSING), condition)


def compile_projection(spec: object) -> Callable[[Record], dict[str, Any] | RawBSONDocument]:
    """The documents to return: whole (no projection), or an inclusion of top-level fields."""
    if spec is None or spec == {}:
        return raw
    if not isinstance(spec, dict):
        raise CommandError(14, "BSON field 'projection' is the wrong type, expected type 'object'")
    include = {key for key, value in spec.items() if value in (1, True) and not isinstance(value, float)}
    if len(include) != len(spec) - (1 if spec.get("_id") in (0, False) else 0):
        raise not_implemented("projections other than the inclusion of top-level fields")
    if any("." in key or key.startswith("$") for key in include):
        raise not_implemented("projections of dotted paths or operators")
    if spec.get("_id", 1) not in (0, False):
        include.add("_id")
    return lambda record: {k: v for k, v in record.doc.items() if k in include}


def raw(record: Record) -> RawBSONDocument:
    return RawBSONDocument(record.data)


def with_record_id(
    project: Callable[[Record], dict[str, Any] | RawBSONDocument],
) -> Callable[[Record], dict[str, Any] | RawBSONDocument]:
    """``project``, with the document's RecordId added as ``$recordId`` (``showRecordId``)."""

    def shown(record: Record) -> dict[str, Any]:
        document = project(record)
        fields = dict(bson.decode(document.raw)) if isinstance(document, RawBSONDocument) else dict(document)
        return {**fields, "$recordId": bson.Int64(record.rid)}

    return shown


def round_capped_size(size: int) -> int:
    """MongoDB's rule: a cap of at most 4096 bytes becomes 4096, a larger one a multiple of 256."""
    if size <= 4096:
        return 4096
    return (size + 255) // 256 * 256


@dataclass
class Collection:
    name: str
    capped: bool = False
    size: int = 0
    max: int = 0
    records: deque[Record] = field(default_factory=deque)
    data_size: int = 0
    next_rid: int = 1
    ids: set[object] = field(default_factory=set)
    version: int = 0
    """Bumped on every insert; awaitData getMores wait for it to change."""
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The indexes created besides ``_id_``, by name (kept, not used)."""

    def options(self) -> dict[str, Any]:
        if not self.capped:
            return {}
        options: dict[str, Any] = {"capped": True, "size": self.size}
        if self.max:
            options["max"] = self.max
        return options

    @property
    def first_rid(self) -> int:
        """The RecordId of the oldest document present (``next_rid`` when the collection is empty)."""
        return self.records[0].rid if self.records else self.next_rid

    def insert(self, data: bytes) -> Record:
        """Store one document (raw BSON, ``_id`` already set); evicts the oldest past the caps."""
        if self.capped and len(data) > self.size:
            raise CommandError(2, "object to insert exceeds cappedMaxSize")
        doc = bson.decode(data, _OPTIONS)
        key = _id_key(doc["_id"])
        if key in self.ids:
            raise CommandError(
                11000,
                f"E11000 duplicate key error collection: {self.name} index: _id_ dup key: {{ _id: ... }}",
            )
        record = Record(self.next_rid, data, doc)
        self.next_rid += 1
        self.records.append(record)
        self.ids.add(key)
        self.data_size += len(data)
        if self.capped:
            while self.data_size > self.size or (self.max and len(self.records) > self.max):
                oldest = self.records.popleft()
                self.data_size -= len(oldest.data)
                self.ids.discard(_id_key(oldest.doc["_id"]))
        self.version += 1
        return record

    def replace(self, record: Record, doc: dict[str, Any]) -> None:
        """Replace an ordinary collection's document in place (same ``_id``, same RecordId)."""
        assert not self.capped, "documents of a capped collection are not updated here"
        data = bson.encode(doc)
        self.data_size += len(data) - len(record.data)
        self.records[self.records.index(record)] = Record(record.rid, data, bson.decode(data, _OPTIONS))
        self.version += 1

    def remove(self, record: Record) -> None:
        """Delete an ordinary collection's document."""
        assert not self.capped, "a capped collection's documents cannot be deleted"
        self.records.remove(record)
        self.ids.discard(_id_key(record.doc["_id"]))
        self.data_size -= len(record.data)
        self.version += 1

    def after(self, rid: int | None) -> Iterator[Record]:
        """The records after RecordId ``rid`` (all of them for ``None``), oldest first."""
        start = 0 if rid is None else max(0, rid + 1 - self.first_rid)
        return itertools.islice(self.records, start, None)


def _id_key(value: object) -> object:
    """A hashable key for an ``_id`` (ObjectIds, strings and numbers are what the tests use)."""
    if isinstance(value, ObjectId | str | int | float | bytes):
        return (type(value).__name__, value)
    return ("bson", bson.encode({"v": value}))


_cursor_ids = itertools.count(7_000_000_001)


@dataclass
class Cursor:
    """A server-side cursor. Tailable ones read the collection from ``position`` on; the others
    hold the rest of their (materialised) result."""

    ns: str
    collection: Collection | None
    lsid: object | None
    matches: Filter
    project: Callable[[Record], dict[str, Any] | RawBSONDocument]
    tailable: bool = False
    await_data: bool = False
    position: int | None = None
    """Tailable: the RecordId of the last record examined (``None``: not started)."""
    remaining: deque[Record] = field(default_factory=deque)
    limit: int = 0
    returned: int = 0
    id: int = field(default_factory=lambda: next(_cursor_ids))
    killed: str = ""
    """Why the server killed this cursor under a running ``getMore`` (``collection dropped``)."""

    def next_batch(self, batch_size: int) -> list[dict[str, Any] | RawBSONDocument]:
        """Up to ``batch_size`` documents (0: no count limit), at most 16 MiB unless only one.

        Raises:
            CommandError: CappedPositionLost, when the record this tailable cursor stopped at was
                removed from the capped collection.
        """
        batch: list[dict[str, Any] | RawBSONDocument] = []
        size = 0
        if self.killed:
            raise CommandError(175, f"PlanExecutor error during getMore :: caused by :: {self.killed}")
        if self.tailable:
            if self.collection is None:
                return batch  # a find on a missing collection: no cursor is kept either
            if self.position is not None and self.position < self.collection.first_rid:
                raise CommandError(
                    136,
                    "CollectionScan died due to failure to restore tailable cursor position. "
                    f"Last seen record id: RecordId({self.position})",
                )
            for record in self.collection.after(self.position):
                if self.matches(record.doc):
                    if batch and size + len(record.data) > BATCH_BYTES:
                        break
                    batch.append(self.project(record))
                    size += len(record.data)
                self.position = record.rid
                if batch_size and len(batch) >= batch_size:
                    break
            return batch
        while self.remaining and not (batch_size and len(batch) >= batch_size):
            if self.limit and self.returned >= self.limit:
                self.remaining.clear()
                break
            record = self.remaining[0]
            if batch and size + len(record.data) > BATCH_BYTES:
                break
            self.remaining.popleft()
            batch.append(self.project(record))
            size += len(record.data)
            self.returned += 1
        return batch

    @property
    def exhausted(self) -> bool:
        if self.tailable:
            return False
        return not self.remaining or bool(self.limit and self.returned >= self.limit)
