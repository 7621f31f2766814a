"""The saved-state format refuses what is not the state: hostile and damaged blobs."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from monitor import state_format
from monitor.state_format import HEADER, StateFormatError, loads


def blob(data: object) -> bytes:
    return HEADER + msgspec.msgpack.encode(data)


# Names that reach a dangerous class through what an allowed module imports, or that are not classes of the state.
TRAVERSALS = ["monitor.config:os._wrap_close", "monitor.config:dataclasses.builtins.type",
              "detectors:base.pickle._Unpickler", "detectors:base.pickle.io.FileIO", "os:system", "builtins:eval",
              "monitor.config:Path", "detectors.base:np.ndarray"]


@pytest.mark.parametrize("name", TRAVERSALS)
@pytest.mark.parametrize("tag", ["$object", "$newobj"])
def test_a_class_is_named_only_by_its_own_module(name: str, tag: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")
    payload = {"$tuple": [str(victim), "w"]}
    data = {"$def": [0, {tag: [name, payload, None] if tag == "$newobj" else [name, {"$tuple": []}]}]}
    with pytest.raises(StateFormatError):
        loads(blob(data))
    assert victim.read_text() == "still here"


def test_no_constructor_and_no_callback_but_the_state_s_own() -> None:
    with pytest.raises(StateFormatError, match="unknown tag"):  # a constructor call ($new) is not a thing
        loads(blob({"$def": [0, {"$new": ["fractions:Fraction", {"$tuple": ["1/3"]}, None]}]}))
    track = {"$def": [0, {"$object": ["monitor.model_state:Stream", {"$tuple": [None, {"$def": [5, {"$dict": []}]}]}]}]}
    with pytest.raises(StateFormatError, match="not one of the state's"):
        loads(blob({"$def": [1, {"$method": [track, "flush"]}]}))
    with pytest.raises(StateFormatError, match="only a compiled class"):
        loads(blob({"$def": [0, {"$newobj": ["monitor.model_state:Stream", {"$tuple": []}, None]}]}))


@pytest.mark.parametrize("data", [
    b"MMSTATE", HEADER + b"\xc1", {"$tuple": 5}, {"$def": 5}, {"$ref": [1]}, {"$scalar": ["<f8", b""]},
    {"$def": [0, {"$array": ["O", [1], b"x"]}]}, {"$def": [0, {"$object": ["monitor.model_state:Stream", 7]}]},
    {"a": 1, "b": 2}, {"$watch": "nobody"},
])
def test_damaged_state_is_a_state_format_error(data: object) -> None:
    with pytest.raises(StateFormatError):
        loads(data if isinstance(data, bytes) else blob(data))


def test_a_state_nested_absurdly_deep_is_refused_without_recursion() -> None:
    level = b"\x81\xa6$tuple\x91"  # msgpack: {"$tuple": [ ... ]}, written by hand (too deep to encode)
    with pytest.raises(StateFormatError, match="deeper"):
        loads(HEADER + level * 5000 + b"\x01")


def test_the_state_s_own_callback_round_trips() -> None:
    assert ("monitor.model_state:VersionState", "changed") in state_format.ALLOWED_METHODS
