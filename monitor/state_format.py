"""The pipeline's saved state as plain data: a versioned format, read without running code.

A checkpoint (``mm_checkpoints``) or a partition's join (``mm_join_states``) lives in a
database several daemons share; whoever can write those tables must not be able to
make a daemon run code, as unpickling lets them. So the state is written as plain
data (msgpack: maps, lists, numbers, strings, bytes) and read back by building only
classes on an allow-list, setting their attributes, never calling anything named in
the data:

- numbers, strings, bytes, ``None``, lists as themselves; tuples, sets, deques,
  ordered dicts and maps with keys other than strings as tagged maps;
- numpy arrays as their dtype, shape and raw bytes;
- objects of allowed classes (ours, and river's detectors) as their class name and
  attributes (their ``__getstate__``), or, for a compiled class that keeps its state
  inside (river's ADWIN), its ``__reduce__``: allowed class, arguments, state;
- ``Watch`` declarations by name, looked up in the registry of the reader.

The first bytes name the format and its version (``MMSTATE`` and a number): a blob of
another version, or not of this format, is refused with ``StateFormatError``.

>>> import numpy as np
>>> from collections import deque
>>> blob = dumps({"n": 1, (1, "a"): deque([1.5, float("inf")], maxlen=3), "x": np.arange(3)})
>>> back = loads(blob)
>>> back["n"], back[(1, "a")], back["x"].tolist()
(1, deque([1.5, inf], maxlen=3), [0, 1, 2])
>>> loads(b"\\x80\\x04junk")
Traceback (most recent call last):
...
monitor.state_format.StateFormatError: not a saved state of this model-monitor (format MMSTATE/1)
"""

from __future__ import annotations

import copyreg
import importlib
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from types import MethodType
from typing import Any

import msgspec
import numpy as np

MAGIC = b"MMSTATE"
VERSION = 1
HEADER = MAGIC + bytes([VERSION])
#: Module prefixes whose classes may be built from saved state.
ALLOWED_MODULES = ("detectors.", "river.")
_ALLOWED_EXACT = frozenset({"monitor.model_state", "monitor.metrics", "monitor.config", "collectors.join",
                            "collectors.contract", "detectors", "fractions"})


class StateFormatError(ValueError):
    """Saved state that this version cannot read: another format or version, or a class not allowed."""


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _allowed(module: str) -> bool:
    return module in _ALLOWED_EXACT or any(module.startswith(p) for p in ALLOWED_MODULES if p.endswith("."))


def _class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not _allowed(module):
        raise StateFormatError(f"saved state names {name}, which is not a class of model-monitor's state")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise StateFormatError(f"saved state names {name}, which this version does not have") from None
    if not isinstance(obj, type):
        raise StateFormatError(f"saved state names {name}, which is not a class")
    return obj


#: Values written as they are, untagged.
_PLAIN = frozenset({str, float, int, bytes, bool, type(None)})


class _Encoder:
    def __init__(self) -> None:
        from monitor.model_state import Watch  # noqa: PLC0415 - imported late: model_state is a user of this

        self.watch = Watch
        self.ids: dict[int, int] = {}
        self.keep: list[Any] = []  # what was given an id stays alive (ids of dead objects are reused)

    def encode(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, bool | int | float | str | bytes):
            return obj
        if isinstance(obj, np.generic):
            return {"$scalar": [obj.dtype.str, obj.tobytes()]}
        if type(obj) is tuple:
            return {"$tuple": [self.encode(v) for v in obj]}
        if type(obj) is frozenset:
            return {"$frozenset": [self.encode(v) for v in obj]}
        if isinstance(obj, self.watch):
            return {"$watch": obj.name}
        ref = self.ids.get(id(obj))
        if ref is not None:
            return {"$ref": ref}
        ref = self.ids[id(obj)] = len(self.ids)
        self.keep.append(obj)
        return {"$def": [ref, self._value(obj)]}

    def _value(self, obj: Any) -> Any:
        if type(obj) is list:
            if obj and all(type(v) is tuple and all(type(x) in _PLAIN for x in v) for v in obj):
                # Rows of plain values (a join buffer's predictions): one array each, untagged.
                return {"$rows": [list(v) for v in obj]}
            return {"$list": [self.encode(v) for v in obj]}
        if type(obj) is dict:
            return {"$dict": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                return {"$objects": [self.encode(v) for v in obj.tolist()]}
            return {"$array": [obj.dtype.str, list(obj.shape), np.ascontiguousarray(obj).tobytes()]}
        if type(obj) is deque:
            return {"$deque": [[self.encode(v) for v in obj], obj.maxlen]}
        if type(obj) is OrderedDict:
            return {"$odict": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if type(obj) is Counter:
            return {"$counter": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if type(obj) is set:
            return {"$set": [self.encode(v) for v in obj]}
        if isinstance(obj, MethodType):  # a callback kept by a part of the state: the owner and the name
            return {"$method": [self.encode(obj.__self__), obj.__func__.__name__]}
        return self._object(obj)

    def _object(self, obj: Any) -> Any:
        cls = type(obj)
        if not _allowed(cls.__module__):
            raise TypeError(f"{_name(cls)} is not part of the state format (monitor/state_format.py)")
        if hasattr(obj, "__dict__") or hasattr(cls, "__slots__"):
            return {"$object": [_name(cls), self.encode(obj.__getstate__())]}
        # A compiled class keeping its state inside (river's ADWIN): its own reduction.
        reduced = obj.__reduce_ex__(4)
        func, args = reduced[0], reduced[1]
        state = reduced[2] if len(reduced) > 2 else None
        if func is getattr(copyreg, "__newobj__", None):
            return {"$newobj": [_name(args[0]), self.encode(tuple(args[1:])), self.encode(state)]}
        if isinstance(func, type) and _allowed(func.__module__):
            return {"$new": [_name(func), self.encode(tuple(args)), self.encode(state)]}
        raise TypeError(f"{_name(cls)} reduces to {func!r}: not part of the state format")


class _Decoder:
    def __init__(self, watches: Mapping[str, Any]) -> None:
        self.watches = watches
        self.defined: dict[int, Any] = {}

    def decode(self, obj: Any) -> Any:
        if type(obj) is list:  # msgspec gives arrays for our pairs
            return [self.decode(v) for v in obj]
        if type(obj) is not dict:
            return obj
        if len(obj) != 1:
            raise StateFormatError("saved state holds a map that is not a tagged value")
        tag, value = next(iter(obj.items()))
        if tag == "$ref":
            if value not in self.defined:
                raise StateFormatError(f"saved state refers to value {value!r} before it is defined")
            return self.defined[value]
        if tag == "$def":
            ref, inner = value
            return self._define(ref, inner)
        if tag == "$tuple":
            return tuple(self.decode(v) for v in value)
        if tag == "$frozenset":
            return frozenset(self.decode(v) for v in value)
        if tag == "$scalar":
            dtype, data = value
            return np.frombuffer(data, dtype=_dtype(dtype))[0]
        if tag == "$watch":
            if value not in self.watches:
                raise StateFormatError(f"saved state watches {value!r}, which this daemon does not declare")
            return self.watches[value]
        raise StateFormatError(f"saved state holds an unknown tag {tag!r}")

    def _define(self, ref: int, obj: Any) -> Any:
        if type(obj) is not dict or len(obj) != 1:
            raise StateFormatError("saved state holds a definition that is not a tagged value")
        tag, value = next(iter(obj.items()))
        # Containers and objects are registered before their contents are read: a part of
        # the state may refer back to its owner (a callback).
        out: Any
        if tag == "$rows":
            out = self.defined[ref] = [tuple(row) for row in value]
            return out
        if tag == "$list":
            out = self.defined[ref] = []
            out.extend(self.decode(v) for v in value)
            return out
        if tag == "$dict":
            out = self.defined[ref] = {}
            for k, v in value:
                out[self.decode(k)] = self.decode(v)
            return out
        if tag == "$odict":
            out = self.defined[ref] = OrderedDict()
            for k, v in value:
                out[self.decode(k)] = self.decode(v)
            return out
        if tag == "$counter":
            out = self.defined[ref] = Counter()
            for k, v in value:
                out[self.decode(k)] = self.decode(v)
            return out
        if tag == "$set":
            out = self.defined[ref] = set()
            out.update(self.decode(v) for v in value)
            return out
        if tag == "$deque":
            items, maxlen = value
            out = self.defined[ref] = deque(maxlen=maxlen)
            out.extend(self.decode(v) for v in items)
            return out
        if tag == "$array":
            dtype, shape, data = value
            out = self.defined[ref] = np.frombuffer(data, dtype=_dtype(dtype)).reshape(shape).copy()
            return out
        if tag == "$objects":
            out = self.defined[ref] = np.empty(len(value), dtype=object)
            for i, v in enumerate(value):
                out[i] = self.decode(v)
            return out
        if tag == "$method":
            owner, name = value
            instance = self.decode(owner)
            method = getattr(type(instance), name, None)
            if not callable(method):
                raise StateFormatError(f"saved state names a method {name!r} that {type(instance).__name__} lacks")
            out = self.defined[ref] = getattr(instance, name)
            return out
        if tag == "$object":
            name, state = value
            cls = _class(name)
            new: Any = cls.__new__
            instance = self.defined[ref] = new(cls)
            _set_state(instance, self.decode(state))
            return instance
        if tag in ("$newobj", "$new"):
            name, args, state = value
            cls = _class(name)
            arguments = self.decode(args)
            instance = self.defined[ref] = cls.__new__(cls, *arguments) if tag == "$newobj" else cls(*arguments)
            decoded = self.decode(state)
            if decoded is not None:
                _set_state(instance, decoded)
            return instance
        raise StateFormatError(f"saved state holds an unknown tag {tag!r}")


def _dtype(text: str) -> np.dtype[Any]:
    dtype = np.dtype(text)
    if dtype.hasobject:
        raise StateFormatError("saved state holds an array of Python objects as raw bytes")
    return dtype


def _set_state(instance: Any, state: Any) -> None:
    """What ``pickle`` does with a state, without calling anything the data names."""
    setstate = getattr(type(instance), "__setstate__", None)
    if setstate is not None:
        setstate(instance, state)
        return
    slots: dict[str, Any] = {}
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    for key, value in (state or {}).items():
        instance.__dict__[key] = value
    for key, value in (slots or {}).items():
        object.__setattr__(instance, key, value)


def dumps(state: Any) -> bytes:
    """``state`` in the saved-state format."""
    return HEADER + msgspec.msgpack.encode(_Encoder().encode(state))


def loads(blob: bytes, watches: Mapping[str, Any] | None = None) -> Any:
    """Read what ``dumps`` wrote; ``watches``: the reader's registry, by name."""
    if not blob.startswith(MAGIC):
        raise StateFormatError(f"not a saved state of this model-monitor (format MMSTATE/{VERSION})")
    if blob[len(MAGIC):len(HEADER)] != bytes([VERSION]):
        raise StateFormatError(f"saved state of format version {blob[len(MAGIC)]}; this model-monitor reads "
                               f"version {VERSION}")
    if watches is None:
        from monitor.model_state import WATCHES  # noqa: PLC0415

        watches = {w.name: w for w in WATCHES}
    try:
        data = msgspec.msgpack.decode(blob[len(HEADER):])
    except msgspec.DecodeError as exc:
        raise StateFormatError(f"saved state is damaged: {exc}") from None
    return _Decoder(watches).decode(data)
