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
  attributes (their ``__getstate__``), built by ``__new__`` and given their attributes
  (no constructor runs); a compiled class of river's that keeps its state inside (the
  ADWIN window) by its own ``__new__`` with saved arguments; a class is named by its
  module and its own name, defined in that module, on the allow-list;
- the one callback the state keeps (``ALLOWED_METHODS``) by its owner and name;
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
ALLOWED_MODULES = ("detectors.", "river.drift.", "river.stats.", "river.utils.", "river.base.",
                   "river._river_rust.")
_ALLOWED_EXACT = frozenset({"monitor.model_state", "monitor.slices", "monitor.judges", "monitor.metrics",
                            "monitor.config",
                            "collectors.join", "collectors.contract", "detectors", "fractions"})
#: The one kind of callback the state keeps: a track tells its version that it added a test.
ALLOWED_METHODS = frozenset({("monitor.model_state:VersionState", "changed")})
#: Classes built by their own ``__new__`` with saved arguments (compiled, keeping their state
#: inside: river's ADWIN window); never by a constructor.
_NEWOBJ_MODULES = ("river._river_rust.",)
#: Deepest nesting read back (our state nests a few dozen levels): deeper is damage or an attack.
MAX_DEPTH = 200


class StateFormatError(ValueError):
    """Saved state that this version cannot read: another format or version, or a class not allowed."""


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _allowed(module: str) -> bool:
    return module in _ALLOWED_EXACT or module.startswith(ALLOWED_MODULES)


def _class(name: str) -> type:
    """The class ``module:Name`` names: defined in that module itself (not reached through
    what the module imports), in a module of the state, and a class."""
    if type(name) is not str:
        raise StateFormatError("saved state names a class by something other than text")
    module, _, qualname = name.partition(":")
    if not _allowed(module) or not qualname.isidentifier():
        raise StateFormatError(f"saved state names {name}, which is not a class of model-monitor's state")
    try:
        obj: Any = getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError):
        raise StateFormatError(f"saved state names {name}, which this version does not have") from None
    if not isinstance(obj, type) or obj.__module__ != module or obj.__qualname__ != qualname:
        raise StateFormatError(f"saved state names {name}, which is not a class of model-monitor's state")
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
            if (_name(type(obj.__self__)), obj.__func__.__name__) not in ALLOWED_METHODS:
                raise TypeError(f"the callback {obj!r} is not part of the state format (ALLOWED_METHODS)")
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
        if func is getattr(copyreg, "__newobj__", None) and args[0].__module__.startswith(_NEWOBJ_MODULES):
            return {"$newobj": [_name(args[0]), self.encode(tuple(args[1:])), self.encode(state)]}
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
            if (_name(type(instance)), name) not in ALLOWED_METHODS:
                raise StateFormatError(f"saved state names a callback {name!r} of {type(instance).__name__}, "
                                       "which is not one of the state's")
            out = self.defined[ref] = getattr(instance, name)
            return out
        if tag == "$object":
            name, state = value
            cls = _class(name)
            new: Any = cls.__new__
            instance = self.defined[ref] = new(cls)
            _set_state(instance, self.decode(state))
            return instance
        if tag == "$newobj":
            name, args, state = value
            cls = _class(name)
            if not cls.__module__.startswith(_NEWOBJ_MODULES):
                raise StateFormatError(f"saved state builds {name} from arguments, which only a compiled class "
                                       "of river's may be")
            arguments = self.decode(args)
            if type(arguments) is not tuple:
                raise StateFormatError("saved state gives a class arguments that are not a tuple")
            instance = self.defined[ref] = cls.__new__(cls, *arguments)
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
    if not blob.startswith(MAGIC) or len(blob) < len(HEADER):
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
    except RecursionError:
        raise StateFormatError(f"saved state nests deeper than {MAX_DEPTH} levels: damaged") from None
    if _depth(data) > MAX_DEPTH:
        raise StateFormatError(f"saved state nests deeper than {MAX_DEPTH} levels: damaged")
    try:
        return _Decoder(watches).decode(data)
    except StateFormatError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, RecursionError) as exc:
        # A blob of the right format whose values do not fit: damaged, or not ours.
        raise StateFormatError(f"saved state is damaged: {type(exc).__name__}: {exc}") from None


def _depth(data: Any) -> int:
    """How deep ``data`` nests, without recursion (a hostile blob may nest very deep)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        items = value if type(value) is list else value.values() if type(value) is dict else ()
        stack.extend((v, depth + 1) for v in items if type(v) is list or type(v) is dict)
    return deepest
