"""Reading plain-text corpora: one sentence per line, from a file or a folder of .txt files."""
from __future__ import annotations

import os

from ..errors import DataError


def read_text(path) -> str:
    """A whole file as UTF-8 text; DataError naming the byte offset if it is not UTF-8."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"file {path!r} does not exist")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"file {path!r} is not UTF-8: byte 0x{raw[e.start]:02x} at offset {e.start} ({e.reason})") from None


def read_lines(path) -> list[str]:
    """Non-empty stripped lines of a text file, or of every ``.txt`` file in a folder
    (sorted by name); DataError if there are none."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".txt"))
        if not files:
            raise DataError(f"folder {path!r} holds no .txt files")
    else:
        files = [path]
    lines = []
    for f in files:
        lines.extend(line.strip() for line in read_text(f).split("\n") if line.strip())
    if not lines:
        raise DataError(f"corpus {path!r} is empty (no non-blank lines)")
    return lines
