"""Load a page in headless Chromium: a screenshot and the DOM as the browser built it.

Debian's ``chromium`` is driven from the command line (``--screenshot``, ``--dump-dom``)
with a throwaway profile in a temporary folder and a timeout; as root it needs
``--no-sandbox``. The PNG is decoded here with zlib (no imaging library needed), so
tests can check that a page is not blank.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

TIMEOUT_S = 60.0


def chromium() -> str:
    """The Chromium binary; the test is skipped without one, except in CI (env CI set), where it fails."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "no chromium binary (Debian: apt-get install chromium; scripts/test installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"chromium is required in CI: {message}")
        pytest.skip(message)
    return found


@dataclass(frozen=True)
class Loaded:
    """What the browser made of a page: its DOM (serialised) and a screenshot (RGB pixels)."""

    dom: str
    png: bytes
    pixels: np.ndarray  # height x width x 3, uint8

    def non_white_share(self) -> float:
        """The share of pixels that are not (nearly) white."""
        return float((self.pixels.min(axis=2) < 245).mean())

    def ink_share(self) -> float:
        """The share of pixels neither (nearly) white nor of the most common colour (the page's background)."""
        flat = self.pixels.reshape(-1, 3).astype(np.int32)
        codes = flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]
        values, counts = np.unique(codes, return_counts=True)
        background = values[counts.argmax()]
        return float(((codes != background) & (flat.min(axis=1) < 245)).mean())

    def colours(self) -> int:
        """How many distinct colours the screenshot holds."""
        flat = self.pixels.reshape(-1, 3).astype(np.uint32)
        return len(np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]))


def _run(args: list[str], profile: Path) -> bytes:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr.decode()[-2000:]}"
    return result.stdout


def load(url: str, width: int = 1280, height: int = 2000) -> Loaded:
    """Screenshot ``url`` at ``width`` x ``height`` and dump its DOM (two Chromium runs)."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as tmp:
        shot = Path(tmp) / "page.png"
        _run([f"--screenshot={shot}", f"--window-size={width},{height}", url], Path(tmp) / "profile-shot")
        dom = _run(["--dump-dom", url], Path(tmp) / "profile-dom").decode()
        png = shot.read_bytes()
    return Loaded(dom, png, decode_png(png))


def decode_png(data: bytes) -> np.ndarray:
    """RGB pixels (height x width x 3) of an 8-bit, non-interlaced RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = colour_type = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour_type in (2, 6) and interlace == 0, "unsupported PNG layout"
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.int32)
    previous = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 2:
            row = (line + previous) & 0xFF
        elif kind == 1:  # Sub: a running sum per channel
            row = np.cumsum(line.reshape(width, channels), axis=0).reshape(stride) & 0xFF
        else:  # Average and Paeth depend on the byte to the left: byte by byte, in plain Python (faster)
            cur, up = line.tolist(), previous.tolist()
            for x in range(stride):
                a = cur[x - channels] if x >= channels else 0
                if kind == 3:
                    cur[x] = (cur[x] + (a + up[x]) // 2) & 0xFF
                    continue
                b, c = up[x], up[x - channels] if x >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[x] = (cur[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
            row = np.array(cur, dtype=np.int32)
        out[y] = row
        previous = row
    return out.reshape(height, width, channels)[:, :, :3].astype(np.uint8)
