"""Arrow IPC batches of events: many events of the contract in one Kafka message.

A message whose ``content-type`` header is ``application/vnd.apache.arrow.stream``
holds an Arrow IPC *stream* (a schema, then one or more record batches). Each row is
one event of the same contract as a JSON message; each column a field:

- the top-level fields (``event_id``, ``type``, ``ts``, ``model``, ... and any extra
  field) are columns; a null cell is a field the event does not have;
- ``features``, ``prediction`` and ``segment`` are struct columns (one child per key)
  or map columns (``map<string, V>``); in a struct a null child is a key the event
  does not have;
- a field sent as an explicit null is named in the optional ``_nulls`` column
  (``list<list<string>>``: the path of each such field, e.g. ``["features", "coupon"]``);
- a column whose values have no single Arrow type (a number in one row, a string in
  another; a list) is a string column of JSON texts, its field metadata
  ``monitor.encoding = json``;
- ``ts`` may also be an Arrow timestamp column (it becomes epoch seconds).

Rows are made into dicts once per batch (one ``to_pylist`` per column, zipped into
dicts) and then validated by ``Decoder.validate``, the same validation a JSON event
gets. ``EventBatcher`` and ``encode_events`` are the producer's side: pure, no Kafka.

>>> events = [{"event_id": "e-1", "type": "prediction", "ts": 1763800000.5, "model": "m",
...            "features": {"price": 1.5, "coupon": None}, "segment": {"new_user": True}},
...           {"event_id": "e-2", "type": "click", "ts": 1763800001.0, "model": "m"}]
>>> rows, reason, _ = decode_stream(encode_events(events), Limits())
>>> rows == events, reason
(True, None)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from collectors.decode import Limits

#: The header that marks a message as an Arrow IPC stream, and its value.
CONTENT_TYPE_HEADER = "content-type"
ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"
#: ``RawMessage.encoding`` of a message: one JSON event, or an Arrow IPC stream of rows.
JSON = "json"
ARROW = "arrow"
#: At most this many rows in one Arrow message (more is dead-lettered whole, ``too_large``).
MAX_ROWS = 10_000
#: A message may decode (decompress) to at most this many times ``collect.max_message_bytes``.
MAX_EXPANSION = 64
#: The optional column naming, per row, the fields sent as an explicit null.
NULLS_COLUMN = "_nulls"
#: Field metadata of a column of JSON texts.
JSON_METADATA = {b"monitor.encoding": b"json"}
_ARROW_BYTES = ARROW_CONTENT_TYPE.encode()

Row = dict[str, Any]


def encoding_of(headers: Iterable[tuple[str, bytes | None]] | None) -> str:
    """``ARROW`` if the headers say the value is an Arrow IPC stream, else ``JSON``.

    >>> encoding_of([("content-type", b"application/vnd.apache.arrow.stream")])
    'arrow'
    >>> encoding_of([])
    'json'
    """
    for key, value in headers or ():
        if key.lower() == CONTENT_TYPE_HEADER and value is not None \
                and value.split(b";", 1)[0].strip().lower() == _ARROW_BYTES:
            return ARROW
    return JSON


def arrow_headers() -> list[tuple[str, bytes]]:
    """The headers a producer sets on an Arrow message."""
    return [(CONTENT_TYPE_HEADER, _ARROW_BYTES)]


# -- decoding -------------------------------------------------------------------------------

class ArrowInputError(Exception):
    """A whole message (or file) that cannot be rows: ``reason`` is a contract reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode_stream(value: bytes | None, limits: Limits, max_rows: int = MAX_ROWS) -> tuple[list[Row] | None,
                                                                                          str | None, str]:
    """``(rows, None, "")`` of an Arrow IPC stream message, or ``(None, reason, detail)``.

    Rows are not validated yet (see ``Decoder.validate``); a row whose float cell is
    NaN or infinite comes out with the key ``NON_FINITE`` naming the column.
    """
    if value is None or len(value) == 0:
        return None, "empty", "message has no value"
    if len(value) > limits.max_message_bytes:
        return None, "oversized", (f"message is {len(value)} bytes; collect.max_message_bytes is "
                                   f"{limits.max_message_bytes}")
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(value))
        batches = list(reader)
    except (pa.ArrowException, OSError, ValueError) as exc:
        return None, "not_arrow", f"not an Arrow IPC stream: {str(exc)[:200]}"
    try:
        check_schema(reader.schema)
        total = sum(b.num_rows for b in batches)
        if total > max_rows:
            return None, "too_large", f"the Arrow stream holds {total} rows; at most {max_rows}"
        if total == 0:
            return None, "empty", "the Arrow stream holds no rows"
        size = sum(b.get_total_buffer_size() for b in batches)
        if size > MAX_EXPANSION * limits.max_message_bytes:
            return None, "oversized", (f"the Arrow stream decodes to {size} bytes; at most {MAX_EXPANSION}x "
                                       "collect.max_message_bytes")
        rows: list[Row] = []
        for batch in batches:
            rows.extend(rows_of(batch))
    except ArrowInputError as bad:
        return None, bad.reason, bad.detail
    except (pa.ArrowException, ValueError, TypeError) as exc:  # a stream valid to Arrow, not to us
        return None, "not_arrow", f"unreadable Arrow stream: {str(exc)[:200]}"
    return rows, None, ""


#: Key of a row dict whose float cell is NaN or infinite (the row is bad input, ``non_finite_number``).
NON_FINITE = "\x00non_finite"


def _supported(typ: pa.DataType) -> bool:
    t = pa.types
    if t.is_null(typ) or t.is_boolean(typ) or t.is_integer(typ) or t.is_timestamp(typ):
        return True
    if t.is_floating(typ):
        return not t.is_float16(typ)
    if t.is_string(typ) or t.is_large_string(typ) or t.is_string_view(typ):
        return True
    if t.is_dictionary(typ):
        return _supported(typ.value_type)
    if t.is_struct(typ):
        return all(_supported(typ.field(i).type) for i in range(typ.num_fields))
    if t.is_map(typ):
        return (t.is_string(typ.key_type) or t.is_large_string(typ.key_type)) and _supported(typ.item_type)
    if t.is_list(typ) or t.is_large_list(typ):
        return _supported(typ.value_type)
    if t.is_union(typ):
        return all(_supported(typ.field(i).type) for i in range(typ.num_fields))
    return False


def check_schema(schema: pa.Schema) -> None:
    """Raise ``ArrowInputError`` (``wrong_type``) for a column the contract has no value for."""
    for f in schema:
        if f.name == NULLS_COLUMN:
            continue
        if not _supported(f.type):
            raise ArrowInputError("wrong_type", f"column {f.name} is of Arrow type {f.type}; the contract's values "
                                                "are numbers, strings, booleans, null and objects of them")


def _values(f: pa.Field, arr: pa.Array) -> list[Any]:
    """A column as Python values (one ``to_pylist``, or one per struct child)."""
    typ = arr.type
    if f.metadata and f.metadata.get(b"monitor.encoding") == b"json":
        loads = orjson.loads
        return [None if v is None else loads(v) for v in arr.to_pylist()]
    if pa.types.is_timestamp(typ):
        per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[typ.unit]
        return pc.divide(arr.cast(pa.int64()).cast(pa.float64()), float(per_second)).to_pylist()  # type: ignore[no-any-return]
    if pa.types.is_struct(typ):
        children = arr.flatten()
        names = [typ.field(i).name for i in range(typ.num_fields)]
        if not names:
            out: list[Any] = [{} for _ in range(len(arr))]
        else:
            columns = [_values(typ.field(i), child) for i, child in enumerate(children)]
            out = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
            if any(child.null_count for child in children):  # a null child is a key the row does not have
                out = [{k: v for k, v in d.items() if v is not None} for d in out]
        if arr.null_count:
            out = [d if ok else None for d, ok in zip(out, arr.is_valid().to_pylist(), strict=True)]
        return out
    if pa.types.is_map(typ):
        return [None if v is None else dict(v) for v in arr.to_pylist()]
    return arr.to_pylist()  # type: ignore[no-any-return]


def _non_finite_rows(arr: pa.Array) -> set[int]:
    """Rows of a column holding a NaN or an infinity anywhere inside."""
    typ = arr.type
    if pa.types.is_floating(typ):
        bad = pc.fill_null(pc.invert(pc.is_finite(arr)), False)
        if not pc.any(bad).as_py():
            return set()
        return set(pc.indices_nonzero(bad).to_pylist())
    if pa.types.is_struct(typ):
        rows: set[int] = set()
        for child in arr.flatten():
            rows |= _non_finite_rows(child)
        return rows
    if pa.types.is_map(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ):
        inner = _non_finite_rows(arr.items if pa.types.is_map(typ) else arr.flatten())
        if not inner:
            return set()
        parents = pc.list_parent_indices(arr).to_pylist()
        return {parents[i] for i in inner}
    return set()


def rows_of(batch: pa.RecordBatch) -> list[Row]:
    """The rows of one record batch as dicts (not yet validated)."""
    n = batch.num_rows
    names: list[str] = []
    columns: list[list[Any]] = []
    nullable: list[str] = []
    nulls: list[Any] | None = None
    non_finite: dict[int, str] = {}
    for f, arr in zip(batch.schema, batch.columns, strict=True):
        if f.name == NULLS_COLUMN:
            nulls = arr.to_pylist()
            continue
        names.append(f.name)
        columns.append(_values(f, arr))
        if arr.null_count or pa.types.is_null(arr.type):
            nullable.append(f.name)
        for r in _non_finite_rows(arr):
            non_finite.setdefault(r, f.name)
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)] if names \
        else [{} for _ in range(n)]
    if nullable:
        for row in rows:
            for name in nullable:
                if row[name] is None:
                    del row[name]
    if nulls is not None:
        for row, paths in zip(rows, nulls, strict=True):
            for path in paths or ():
                _set_null(row, path)
    for r, name in non_finite.items():
        rows[r][NON_FINITE] = name
    return rows


def _set_null(row: Row, path: Sequence[str]) -> None:
    if not path:
        return
    target: Any = row
    for name in path[:-1]:
        target = target.get(name) if type(target) is dict else None
        if type(target) is not dict:
            return
    target[path[-1]] = None


def read_file(source: Any) -> Iterator[pa.RecordBatch]:
    """The record batches of an Arrow IPC stream (or IPC file) at ``source`` (a path or a buffer)."""
    try:
        reader: Any = pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        reader = pa.ipc.open_file(source)  # the random-access IPC file format (Feather v2)
        check_schema(reader.schema)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
        return
    check_schema(reader.schema)
    yield from reader


# -- encoding (the producer's side) -----------------------------------------------------------

_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class _Kinds:
    """What values a column (or a struct child) held: the Arrow type follows from it."""

    kinds: set[str] = field(default_factory=set)
    children: dict[str, _Kinds] = field(default_factory=dict)

    def observe(self, value: Any, depth: int) -> None:
        kind = type(value)
        if value is None:
            return
        if kind is bool:
            self.kinds.add("bool")
        elif kind is int:
            self.kinds.add("int" if _INT64[0] <= value <= _INT64[1] else "json")
        elif kind is float:
            self.kinds.add("float")
        elif kind is str:
            self.kinds.add("str")
        elif kind is dict and depth < 2 and all(type(k) is str for k in value):
            self.kinds.add("dict")
            children = self.children
            for k, v in value.items():
                child = children.get(k)
                if child is None:
                    child = children[k] = _Kinds()
                child.observe(v, depth + 1)
        else:
            self.kinds.add("json")

    def field(self, name: str) -> pa.Field:
        kinds = self.kinds
        if not kinds:
            return pa.field(name, pa.null())
        if kinds == {"bool"}:
            return pa.field(name, pa.bool_())
        if kinds == {"int"}:
            return pa.field(name, pa.int64())
        if kinds <= {"int", "float"}:
            return pa.field(name, pa.float64())
        if kinds == {"str"}:
            return pa.field(name, pa.string())
        if kinds == {"dict"}:
            return pa.field(name, pa.struct([c.field(k) for k, c in self.children.items()]))
        return pa.field(name, pa.string(), metadata=JSON_METADATA)


class SchemaBuilder:
    """Works out one Arrow schema for events seen so far (``observe``, then ``schema``)."""

    def __init__(self) -> None:
        self._columns: dict[str, _Kinds] = {}
        self._nulls = False

    def observe(self, event: Mapping[str, Any]) -> None:
        columns = self._columns
        for name, value in event.items():
            kinds = columns.get(name)
            if kinds is None:
                kinds = columns[name] = _Kinds()
            kinds.observe(value, 1)
            if value is None or (type(value) is dict and None in value.values()):
                self._nulls = True

    def schema(self) -> pa.Schema:
        fields = [k.field(name) for name, k in self._columns.items()]
        if self._nulls:
            fields.append(pa.field(NULLS_COLUMN, pa.list_(pa.list_(pa.string()))))
        return pa.schema(fields)


def _cell(f: pa.Field, value: Any) -> Any:
    if value is None:
        return None
    if f.metadata:  # a column of JSON texts
        return orjson.dumps(value).decode()
    if pa.types.is_struct(f.type) and type(value) is dict:
        typ = f.type
        return {typ.field(i).name: _cell(typ.field(i), value.get(typ.field(i).name)) for i in range(typ.num_fields)}
    if pa.types.is_floating(f.type) and type(value) is int:
        return float(value)
    return value


def _null_paths(event: Mapping[str, Any]) -> list[list[str]] | None:
    paths = []
    for name, value in event.items():
        if value is None:
            paths.append([name])
        elif type(value) is dict:
            paths.extend([name, k] for k, v in value.items() if v is None)
    return paths or None


def events_to_batch(events: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """A record batch of ``events`` in ``schema`` (from a ``SchemaBuilder`` that saw them)."""
    arrays = []
    for f in schema:
        if f.name == NULLS_COLUMN:
            arrays.append(pa.array([_null_paths(e) for e in events], type=f.type))
            continue
        name = f.name
        if pa.types.is_struct(f.type) or f.metadata:
            cells = [_cell(f, e.get(name)) for e in events]
        elif pa.types.is_floating(f.type):
            cells = [float(v) if type(v) is int else v for v in (e.get(name) for e in events)]
        else:
            cells = [e.get(name) for e in events]
        arrays.append(pa.array(cells, type=f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def encode_events(events: Sequence[Mapping[str, Any]]) -> bytes:
    """One Arrow IPC stream (a schema and one record batch) holding ``events``."""
    builder = SchemaBuilder()
    for event in events:
        builder.observe(event)
    schema = builder.schema()
    return encode_batch(events_to_batch(events, schema))


def encode_batch(batch: pa.RecordBatch) -> bytes:
    """A record batch as an Arrow IPC stream (schema, batch, end of stream)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


class EventBatcher:
    """Buffers events and hands back Arrow IPC messages: a model server's side of the encoding.

    ``add`` returns the encoded messages that became due (``max_rows`` buffered), ``poll``
    those due by age (the oldest buffered event waited ``max_age_s``), ``flush`` the rest.
    A message that encodes to more than ``max_bytes`` is split in halves until it fits
    (a single event over it is sent alone: the daemon dead-letters it as ``oversized``).

    >>> batcher = EventBatcher(max_rows=2)
    >>> batcher.add({"event_id": "e-1", "type": "click", "ts": 1763800000.0, "model": "m"})
    []
    >>> len(batcher.add({"event_id": "e-2", "type": "click", "ts": 1763800001.0, "model": "m"}))
    1
    """

    def __init__(self, max_rows: int = 1000, max_age_s: float = 1.0, max_bytes: int = 200 * 1024,
                 clock: Any = time.monotonic) -> None:
        if not 1 <= max_rows <= MAX_ROWS:
            raise ValueError(f"max_rows must be 1..{MAX_ROWS}, got {max_rows}")
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.clock = clock
        self._events: list[Mapping[str, Any]] = []
        self._since = math.inf

    def __len__(self) -> int:
        return len(self._events)

    def add(self, event: Mapping[str, Any]) -> list[bytes]:
        if not self._events:
            self._since = self.clock()
        self._events.append(event)
        if len(self._events) >= self.max_rows:
            return self.flush()
        return []

    def poll(self) -> list[bytes]:
        """The buffered events as messages if the oldest has waited ``max_age_s``."""
        if self._events and self.clock() - self._since >= self.max_age_s:
            return self.flush()
        return []

    def flush(self) -> list[bytes]:
        events, self._events, self._since = self._events, [], math.inf
        return self._encode(events) if events else []

    def _encode(self, events: Sequence[Mapping[str, Any]]) -> list[bytes]:
        value = encode_events(events)
        if len(value) <= self.max_bytes or len(events) == 1:
            return [value]
        half = len(events) // 2
        return self._encode(events[:half]) + self._encode(events[half:])
