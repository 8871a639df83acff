"""What the pose-file readers and writers share (:mod:`sequences.poses.formats` and the format modules).

* :class:`PoseFormatError`, the one error every malformed pose file raises (a ``ValueError`` whose
  message names the file and, where there is one, the line);
* text tables with line numbers (:func:`read_table`), header columns found by name
  (:func:`header_columns`), the checks of timestamps, quaternions and rotation matrices that name the
  offending line, and :func:`make_trajectory`;
* exact float writing (:func:`fmt_floats`: ``repr`` reads back to the identical double);
* the OpenGL <-> OpenCV camera-axis flip, natural sorting of image names, and nanosecond clocks.

Nothing here knows a particular format; the conventions are in :mod:`sequences.poses.formats`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Protocol, Sequence, Union

import numpy as np
import torch

from sequences.poses.trajectory import PoseTrajectory
from viewgp.poses import matrix_to_quat, project_to_so3, quat_to_matrix, validate_rotations

__all__ = [
    "PathLike",
    "PoseFormatError",
    "AmbiguousFormatError",
    "ReadOptions",
    "GL_TO_CV",
    "opengl_to_opencv",
    "Table",
    "RowErrors",
    "read_text_lines",
    "read_table",
    "is_number",
    "split_fields",
    "header_columns",
    "check_increasing",
    "quats_to_rotations",
    "checked_matrices",
    "make_trajectory",
    "fmt_floats",
    "meta_list",
    "quaternions_of",
    "natural_key",
    "ns_to_seconds",
    "seconds_to_ns",
    "CONV_C2W",
]

PathLike = Union[str, os.PathLike]

#: Camera-axis flip between OpenGL (x right, y up, z backward) and OpenCV (x right, y down, z forward).
#: It is its own inverse: ``R_cv = R_gl @ GL_TO_CV`` and ``R_gl = R_cv @ GL_TO_CV``.
GL_TO_CV = np.diag([1.0, -1.0, -1.0])

#: The convention note of a file that is already in the viewgp convention.
CONV_C2W = "camera-to-world, OpenCV camera axes (x right, y down, z forward), seconds"


class PoseFormatError(ValueError):
    """A pose file is malformed, of an unknown format, or inconsistent with its companion file."""


class AmbiguousFormatError(PoseFormatError):
    """Detection found more than one format that reads the file differently; ``candidates`` names them."""

    def __init__(self, message: str, candidates: Sequence[str]) -> None:
        super().__init__(message)
        self.candidates = tuple(candidates)


@dataclass(frozen=True)
class ReadOptions:
    """Tolerances every reader honours (see :func:`sequences.poses.formats.read_poses`)."""

    reorthonormalize: bool = True
    rotation_atol: float = 1e-4
    quat_atol: float = 1e-3


def opengl_to_opencv(rotations: np.ndarray) -> np.ndarray:
    """Camera-to-world rotations ``(N, 3, 3)`` with OpenGL camera axes -> OpenCV axes (and back).

    Only the camera's y and z axes flip (columns 1 and 2); the world frame and the camera centre are
    unchanged.
    """
    return np.asarray(rotations, dtype=np.float64) @ GL_TO_CV


# ----------------------------------------------------------------------------------------------------
# Text tables with line numbers


def is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def split_fields(line: str, sep: Optional[str]) -> list[str]:
    """Fields of one line: whitespace-separated (``sep=None``) or split at ``sep`` and stripped."""
    if sep is None:
        return line.split()
    return [tok.strip() for tok in line.split(sep)]


def read_text_lines(path: Path) -> list[str]:
    """The lines of a text pose file (a UTF-8 BOM is dropped); a binary file is a :class:`PoseFormatError`."""
    if not path.is_file():
        raise FileNotFoundError(f"pose file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8-sig") as fh:
            return fh.read().splitlines()
    except UnicodeDecodeError as e:
        raise PoseFormatError(f"{path}: not a text file ({e})") from None


_UNIT_RE = re.compile(r"\s*[\[(]([^\])]*)[\])]\s*$")


def _header_name(token: str) -> tuple[str, Optional[str]]:
    """``'timestamp [ns]'`` -> ``('timestamp', 'ns')``: lower-case name and the unit in brackets, if any."""
    t = token.strip().lstrip("#").strip().lower()
    m = _UNIT_RE.search(t)
    if m:
        return t[: m.start()].strip(), (m.group(1).strip() or None)
    return t, None


@dataclass
class Table:
    """Data rows of a text file: tokens per row, their 1-based line numbers and the optional header.

    ``header`` holds the lower-case column names with any bracketed unit removed (``'timestamp [ns]'``
    -> ``'timestamp'``); ``units`` the removed units (``None`` where a name had none).
    """

    path: Path
    layout: str
    rows: list[list[str]]
    lines: np.ndarray
    header: Optional[list[str]] = None
    units: Optional[list[Optional[str]]] = None

    def line(self, i: int) -> int:
        return int(self.lines[i])

    def error(self, i: int, message: str) -> PoseFormatError:
        return PoseFormatError(f"{self.path}:{self.line(i)}: {message}")

    def floats(self, columns: Sequence[int]) -> np.ndarray:
        """``(N, len(columns))`` float64; a non-number or NaN/inf names its line and column."""
        out = np.empty((len(self.rows), len(columns)), dtype=np.float64)
        for i, row in enumerate(self.rows):
            for j, c in enumerate(columns):
                tok = row[c]
                try:
                    v = float(tok)
                except ValueError:
                    raise self.error(i, f"column {c + 1}: {tok!r} is not a number (layout: {self.layout})") from None
                if not math.isfinite(v):
                    raise self.error(i, f"column {c + 1}: non-finite value {tok!r}")
                out[i, j] = v
        return out

    def same_width(self) -> int:
        """The column count shared by every row; a row of another width names its line."""
        w0 = len(self.rows[0])
        for i, r in enumerate(self.rows):
            if len(r) != w0:
                raise self.error(i, f"{len(r)} columns but the first row has {w0} ({self.layout})")
        return w0


def read_table(
    path: Path,
    *,
    sep: Optional[str],
    ncols: Union[int, tuple[int, ...]],
    layout: str,
    header: bool = False,
    min_cols: bool = False,
) -> Table:
    """Parse the data rows of ``path``.

    Blank lines and lines starting with ``#`` are skipped, except that with ``header=True`` the first
    non-blank line is taken as a header when its first field is not a number (a leading ``#`` is
    removed from it). ``ncols`` is the allowed column count(s), or the minimum with ``min_cols``.
    """
    allowed = (ncols,) if isinstance(ncols, int) else tuple(ncols)
    rows: list[list[str]] = []
    lines: list[int] = []
    head: Optional[list[str]] = None
    units: Optional[list[Optional[str]]] = None
    seen_first = False
    for lineno, raw in enumerate(read_text_lines(path), start=1):
        s = raw.strip()
        if not s:
            continue
        if header and not seen_first:
            seen_first = True
            cand = split_fields(s.lstrip("#").strip(), sep)
            if cand and not is_number(cand[0]):
                names = [_header_name(c) for c in cand]
                head, units = [n for n, _ in names], [u for _, u in names]
                continue
        seen_first = True
        if s.startswith("#"):
            continue
        toks = split_fields(s, sep)
        n = len(toks)
        ok = n >= allowed[0] if min_cols else n in allowed
        if not ok:
            want = f"at least {allowed[0]}" if min_cols else " or ".join(str(a) for a in allowed)
            sep_name = "whitespace" if sep is None else repr(sep)
            raise PoseFormatError(
                f"{path}:{lineno}: expected {want} columns separated by {sep_name} ({layout}), got {n}"
            )
        rows.append(toks)
        lines.append(lineno)
    if not rows:
        raise PoseFormatError(f"{path}: no pose rows found (empty file, or only comments/header); layout: {layout}")
    return Table(path, layout, rows, np.asarray(lines, dtype=np.int64), head, units)


def header_columns(
    tab: Table, aliases: Mapping[str, Sequence[str]], optional: Sequence[str] = ()
) -> dict[str, Optional[int]]:
    """Column index of each wanted field, found in ``tab.header`` by the first of its ``aliases`` present.

    ``aliases`` maps our field name to the header names accepted for it, in order of preference. A
    missing field not in ``optional`` raises one error naming the file, its header, the missing
    fields and the expected layout; missing optional fields map to ``None``. Every row must be as
    wide as the header.
    """
    assert tab.header is not None
    width = tab.same_width()
    if width != len(tab.header):
        raise tab.error(0, f"{width} columns but the header names {len(tab.header)} ({tab.layout})")
    found: dict[str, Optional[int]] = {}
    missing = []
    for name, names in aliases.items():
        hit = next((tab.header.index(n) for n in names if n in tab.header), None)
        if hit is None and name not in optional:
            missing.append(name)
        found[name] = hit
    if missing:
        raise PoseFormatError(
            f"{tab.path}: header {','.join(tab.header)!r} lacks column(s) {missing}; expected {tab.layout}"
        )
    return found


# ----------------------------------------------------------------------------------------------------
# Checks shared by the readers, reported by line


class RowErrors(Protocol):
    """Where a reader's rows came from: ``error(i, message)`` names row ``i``'s place in the file (a
    :class:`Table` line, a COLMAP binary record, a transforms.json frame)."""

    def error(self, i: int, message: str) -> PoseFormatError: ...


def check_increasing(tab: Table, times: np.ndarray, order: Optional[np.ndarray] = None) -> None:
    """Strictly increasing timestamps; ``order`` maps positions in ``times`` to table rows."""
    if times.shape[0] < 2:
        return
    bad = np.flatnonzero(np.diff(times) <= 0)
    if bad.size:
        k = int(bad[0]) + 1
        i = int(order[k]) if order is not None else k
        j = int(order[k - 1]) if order is not None else k - 1
        raise tab.error(
            i,
            f"timestamp {float(times[k])!r} is not after the previous one {float(times[k - 1])!r} (line {tab.line(j)}); "
            "timestamps must be strictly increasing",
        )


def quats_to_rotations(tab: RowErrors, q: np.ndarray, scalar_first: bool, opts: ReadOptions) -> np.ndarray:
    """Unit-quaternion rows -> ``(N, 3, 3)``; a quaternion whose norm is off by more than ``quat_atol`` names its line."""
    norms = np.linalg.norm(q, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > opts.quat_atol)
    if bad.size:
        i = int(bad[0])
        order = "w x y z" if scalar_first else "x y z w"
        raise tab.error(
            i,
            f"quaternion ({order}) has norm {norms[i]:.6g}, not a unit quaternion "
            f"(tolerance {opts.quat_atol}; {bad.size} such rows in all) - wrong columns or wrong format?",
        )
    return quat_to_matrix(torch.from_numpy(np.ascontiguousarray(q)), scalar_first=scalar_first).numpy()


def checked_matrices(tab: RowErrors, R: np.ndarray, opts: ReadOptions, order: Optional[np.ndarray] = None) -> np.ndarray:
    """Rotation matrices read as text: validated within ``rotation_atol`` (error names the line), then projected."""
    Rt = torch.from_numpy(np.ascontiguousarray(R))
    try:
        validate_rotations(Rt, atol=opts.rotation_atol)
    except ValueError:
        # Find the first offending row to name its line; this path only runs for a bad file.
        for k in range(Rt.shape[0]):
            try:
                validate_rotations(Rt[k], atol=opts.rotation_atol)
            except ValueError as e:
                i = int(order[k]) if order is not None else k
                raise tab.error(i, f"invalid rotation: {e}") from None
        raise
    if opts.reorthonormalize:
        return project_to_so3(Rt).numpy()
    return R


def make_trajectory(
    tab: Table, times: np.ndarray, R: np.ndarray, T: np.ndarray, fmt: str, convention: str, **extra
) -> PoseTrajectory:
    """A :class:`PoseTrajectory` of a table's rows, with ``path``, ``format`` and ``convention`` metadata."""
    check_increasing(tab, times)
    meta = {"path": str(tab.path), "format": fmt, "convention": convention}
    meta.update(extra)
    return PoseTrajectory(times, R, T, source_format=fmt, metadata=meta)


# ----------------------------------------------------------------------------------------------------
# Writing


def fmt_floats(values) -> list[str]:
    """Floats as the shortest strings that read back to the identical doubles (``repr``)."""
    return [repr(float(v)) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def meta_list(traj: PoseTrajectory, key: str) -> Optional[list]:
    """A per-pose metadata entry, or None when absent or no longer aligned with the poses."""
    v = traj.metadata.get(key)
    if v is not None and len(v) == len(traj):
        return list(v)
    return None


def quaternions_of(rotations: np.ndarray, scalar_first: bool = False) -> np.ndarray:
    """``(N, 4)`` unit quaternions of ``(N, 3, 3)`` rotations, xyzw (or wxyz with ``scalar_first``)."""
    return matrix_to_quat(torch.from_numpy(np.ascontiguousarray(rotations)), scalar_first=scalar_first).numpy()


# ----------------------------------------------------------------------------------------------------
# Names and clocks


def natural_key(name: str):
    """Sort key that orders ``frame_2`` before ``frame_10`` (digit runs compare as numbers)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(name))]


def ns_to_seconds(ns: np.ndarray) -> np.ndarray:
    """Integer nanoseconds ``(N,)`` -> float64 seconds."""
    # Split into whole seconds and remainder: exact integer parts, one rounding in the sum.
    sec, rem = np.divmod(np.asarray(ns, dtype=np.int64), 10**9)
    return sec.astype(np.float64) + rem.astype(np.float64) * 1e-9


def seconds_to_ns(t: np.ndarray) -> np.ndarray:
    """Float64 seconds ``(N,)`` -> integer nanoseconds (nearest)."""
    whole = np.floor(t)
    frac = t - whole  # exact for |t| < 2**52
    return whole.astype(np.int64) * 10**9 + np.rint(frac * 1e9).astype(np.int64)
