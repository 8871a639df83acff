"""Atomic output files: every file the project writes goes through :func:`atomic_write`.

A file is written to a temporary name in its destination folder and moved into place with
``os.replace``, so a crash or a kill never leaves a half-written file under the final name, and a
reader sees either the old file or the new one. The temporary file gets the permissions an ordinary
``open(path, "w")`` would give (``0666 & ~umask``), not ``mkstemp``'s private ``0600``.
Leftover temporary files of a killed writer are named ``.<name>.*.tmp``; :func:`remove_stale_temporaries`
clears them.

A whole output folder is made the same way: :func:`make_staging_folder` creates ``.<name>.staging-<pid>-*``
beside it, the results are written there, and :func:`replace_folder` moves them into place (the old
folder, if any, goes only once the new one is complete). :func:`remove_stale_staging` clears what a killed
run left beside the folder, putting a folder back that a kill caught in the middle of its replacement.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
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
    "make_staging_folder",
    "replace_folder",
    "remove_stale_staging",
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


def remove_stale_temporaries(*folders: PathLike) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write` left in ``folders`` (not recursive):
    names ``.<name>.<8 random characters><suffix>``; returns what was removed."""
    removed = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if _TEMPORARY.fullmatch(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


# ------------------------------------------------------------------------------------------ folders
def _sibling_prefix(path: Path, kind: str) -> str:
    return f".{path.name}.{kind}-"


def make_staging_folder(path: PathLike) -> Path:
    """A new empty folder beside ``path`` (``.<name>.staging-<pid>-<random>``) to write results into."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{_sibling_prefix(path, 'staging')}{os.getpid()}-", dir=path.parent))
    os.chmod(folder, 0o777 & ~_umask())  # an ordinary folder's permissions, not mkdtemp's private 0700
    return folder


def replace_folder(staging: PathLike, path: PathLike, keep: Sequence[str] = ()) -> Path:
    """Move the finished ``staging`` folder to ``path``, replacing what was there.

    Entries of the old folder named in ``keep`` (e.g. a cache) move into the new one unless it has its own.
    The old folder is renamed aside first and deleted only after the new one is in place; a kill between
    the two renames is repaired by :func:`remove_stale_staging`. Returns ``path``.
    """
    staging, path = Path(staging), Path(path)
    if path.exists():
        for name in keep:
            if (path / name).exists() and not (staging / name).exists():
                os.replace(path / name, staging / name)
        old = Path(tempfile.mkdtemp(prefix=f"{_sibling_prefix(path, 'replaced')}{os.getpid()}-", dir=path.parent))
        os.replace(path, old)  # replaces the empty placeholder folder
        os.replace(staging, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, path)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_staging(path: PathLike) -> list[Path]:
    """Delete the staging folders that killed runs left beside ``path`` (their process is gone) and
    finish interrupted replacements: an old folder renamed aside goes back to ``path`` when nothing took
    its place, and is deleted otherwise. Returns what was removed or restored."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    found = []
    for kind in ("replaced", "staging"):  # restore before deleting: a staged result never wins by accident
        prefix = _sibling_prefix(path, kind)
        for p in sorted(path.parent.iterdir()):
            pid = p.name[len(prefix):].split("-", 1)[0]
            if not (p.name.startswith(prefix) and p.is_dir() and pid.isdigit()) or _pid_alive(int(pid)):
                continue
            if kind == "replaced" and not path.exists():
                os.replace(p, path)
            else:
                shutil.rmtree(p, ignore_errors=True)
            found.append(p)
    return found
