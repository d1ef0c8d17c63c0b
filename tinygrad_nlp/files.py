"""The one atomic writer: a file appears whole or not at all.

Every file the package writes that a crash must not leave half-written (checkpoints,
Hugging Face folders, downloads, graph pictures) goes through ``atomic_path``: the
content is written to a temporary file in the same folder, flushed to disk, and renamed
over the target, so a reader sees the old file or the new one, never a part.
"""
from __future__ import annotations

import contextlib
import os
import tempfile


def _sync_folder(folder) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Within the block, write to the path it yields (a temporary file beside ``path``,
    ending in ``suffix`` for writers that look at it); at the end it is synced and
    renamed to ``path``. On an error it is removed and ``path`` is left as it was (a
    process killed outright may leave its ``.tmp-*`` file behind, never a half-written
    ``path``)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _sync_folder(folder)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path, mode: str = "w", suffix: str = ""):
    """``open(path, mode)`` (text modes in UTF-8) written through ``atomic_path``."""
    with atomic_path(path, suffix) as tmp, open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
        yield f


__all__ = ["atomic_path", "atomic_write"]
