"""Atomic output files: every file the project writes goes through :func:`atomic_write`.

A file is written to a temporary name in its destination folder and moved into place with
``os.replace``, so a crash or a kill never leaves a half-written file under the final name, and a
reader sees either the old file or the new one. The temporary file gets the permissions an ordinary
``open(path, "w")`` would give (``0666 & ~umask``), not ``mkstemp``'s private ``0600``.
Leftover temporary files of a killed writer are named ``.<name>.*.tmp``; :func:`remove_stale_temporaries`
clears them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

PathLike = Union[str, os.PathLike]
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.[A-Za-z0-9]+")  # mkstemp(prefix=".<name>.", suffix=...)

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_csv",
    "remove_stale_temporaries",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it into place.

    ``suffix`` is the temporary file's extension (writers that pick a format by extension, such as
    OpenCV's video writer, need the real one, e.g. ``".mp4"``). Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, flushed to disk before it replaces the old file."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (``NaN`` / ``inf`` are refused: they are not JSON) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def atomic_write_csv(path: PathLike, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV table (``header``, then ``rows``; Python's default ``excel`` dialect) atomically."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def remove_stale_temporaries(folder: PathLike) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write` left in ``folder`` (not recursive):
    names ``.<name>.<8 random characters><suffix>``; returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        if _TEMPORARY.fullmatch(p.name) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
