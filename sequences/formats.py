"""Camera trajectory files: readers, writers, format detection and a registry.

Every reader returns a :class:`sequences.trajectory.PoseTrajectory` in the viewgp convention:

* poses are **camera-to-world** (``x_world = R @ x_cam + t``, ``t`` is the camera centre);
* camera axes are **OpenCV** (x right, y down, z forward = optical axis), so ``R[:, 2]`` is the
  viewing direction in the world;
* timestamps are float64 **seconds**, strictly increasing;
* rotations are exact rotations: quaternions are normalised, 3x3 matrices are checked against a
  tolerance and projected onto SO(3).

What each file holds and what we do with it:

========  ===========================================  ==============================================
format    file content (as written by the source)      conversion to the viewgp convention
========  ===========================================  ==============================================
tum       ``t tx ty tz qx qy qz qw`` (space separated,  none: camera-to-world, optical centre in the
          ``#`` comments); quaternion xyzw              mocap world; OpenCV camera axes
euroc     ``#timestamp,px,py,pz,qw,qx,qy,qz,...``       none: body (IMU) frame S to world R; ns -> s.
          timestamps in ns, quaternion **wxyz**,        Extra columns (velocity, biases) are ignored.
          header line starting with ``#``               The body frame is not the camera frame.
kitti     N x 12 = rows of the 3x4 ``[R|t]``,           none: camera i -> camera 0 (world = first
          row-major; times in a separate times.txt      camera), OpenCV camera axes
colmap    ``images.txt``: two lines per image,          **world-to-camera** inverted:
          ``ID QW QX QY QZ TX TY TZ CAM_ID NAME``       ``R = Rwc^T``, ``t = -Rwc^T T``; images are
          then the POINTS2D line (may be empty)         ordered by NAME (natural sort); timestamps
                                                        are the image index (or parsed from NAMEs)
arkit     CSV with header naming ``timestamp, tx, ty,   camera-to-world in the gravity-aligned
          tz, qx, qy, qz, qw`` (any order, extra        (y-up) ARKit world; ARKit camera axes are
          columns ignored); quaternion xyzw             OpenGL (x right, y up, z backward):
                                                        ``R_cv = R_gl @ diag(1, -1, -1)``
advio     ADVIO ``iphone/arkit.csv``: headerless        as arkit (OpenGL camera axes converted);
          ``t, x, y, z, qw, qx, qy, qz``; optional      ``camera_axes="opencv"`` reads a file whose
          ``frames.csv`` (``t, frame_index``)           frame needs no axis flip (e.g. ground truth)
imu       ``timestamp, gx, gy, gz[, ax, ay, az]``,      orientation by integrating the gyroscope
          rad/s, header optional, seconds               (body frame; R(t0) = identity), translations
                                                        are zeros (not observable from a gyroscope)
========  ===========================================  ==============================================

The world frame is never changed: a trajectory lives in its source's world (mocap room, first KITTI
camera, COLMAP model, ARKit's gravity-aligned y-up session frame).

Details: KITTI times come from ``times_path``, else ``<stem>_times.txt`` beside the poses, else the
frame index. EuRoC's integer nanoseconds are kept in ``metadata['timestamps_ns']`` (float64 seconds
resolve ~240 ns at Unix-epoch magnitudes) and written back verbatim. Quaternions may be off unit
norm by ``quat_atol`` (default 1e-3: files printed with 4 decimals are ~1e-4 off); matrices by
``rotation_atol`` (default 1e-4 on ``|R^T R - I|``; KITTI's printed rotations are ~2e-7 off).

Entry points: :func:`read_poses`, :func:`write_poses`, :func:`detect_format` and the registry
:data:`FORMATS` (name -> :class:`PoseFormat`). Every malformed input raises :class:`PoseFormatError`
(a ``ValueError``) naming the file and, where there is one, the line.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from generative.fileio import atomic_write_text
from sequences.trajectory import PoseTrajectory
from viewgp.poses import (
    integrate_gyroscope,
    matrix_to_quat,
    project_to_so3,
    quat_to_matrix,
    so3_log,
    validate_rotations,
)

__all__ = [
    "PoseFormatError",
    "PoseFormat",
    "FORMATS",
    "read_poses",
    "write_poses",
    "detect_format",
    "read_advio_frames",
    "opengl_to_opencv",
]

PathLike = Union[str, os.PathLike]

#: Camera-axis flip between OpenGL (x right, y up, z backward) and OpenCV (x right, y down, z forward).
#: It is its own inverse: ``R_cv = R_gl @ GL_TO_CV`` and ``R_gl = R_cv @ GL_TO_CV``.
GL_TO_CV = np.diag([1.0, -1.0, -1.0])


class PoseFormatError(ValueError):
    """A pose file is malformed, of an unknown format, or inconsistent with its companion file."""


def opengl_to_opencv(rotations: np.ndarray) -> np.ndarray:
    """Camera-to-world rotations ``(N, 3, 3)`` with OpenGL camera axes -> OpenCV axes (and back).

    Only the camera's y and z axes flip (columns 1 and 2); the world frame and the camera centre are
    unchanged.
    """
    return np.asarray(rotations, dtype=np.float64) @ GL_TO_CV


@dataclass(frozen=True)
class _ReadOptions:
    reorthonormalize: bool = True
    rotation_atol: float = 1e-4
    quat_atol: float = 1e-3


# ----------------------------------------------------------------------------------------------------
# Text tables with line numbers


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _split(line: str, sep: Optional[str]) -> list[str]:
    if sep is None:
        return line.split()
    return [tok.strip() for tok in line.split(sep)]


def _read_text_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"pose file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8-sig") as fh:
            return fh.read().splitlines()
    except UnicodeDecodeError as e:
        raise PoseFormatError(f"{path}: not a text file ({e})") from None


@dataclass
class _Table:
    """Data rows of a text file: tokens per row, their 1-based line numbers and the optional header."""

    path: Path
    layout: str
    rows: list[list[str]]
    lines: np.ndarray
    header: Optional[list[str]] = None

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


def _read_table(
    path: Path,
    *,
    sep: Optional[str],
    ncols: Union[int, tuple[int, ...]],
    layout: str,
    header: bool = False,
    min_cols: bool = False,
) -> _Table:
    """Parse the data rows of ``path``.

    Blank lines and lines starting with ``#`` are skipped, except that with ``header=True`` the first
    non-blank line is taken as a header when its first field is not a number (a leading ``#`` is
    removed from it). ``ncols`` is the allowed column count(s), or the minimum with ``min_cols``.
    """
    allowed = (ncols,) if isinstance(ncols, int) else tuple(ncols)
    rows: list[list[str]] = []
    lines: list[int] = []
    head: Optional[list[str]] = None
    seen_first = False
    for lineno, raw in enumerate(_read_text_lines(path), start=1):
        s = raw.strip()
        if not s:
            continue
        if header and not seen_first:
            seen_first = True
            cand = _split(s.lstrip("#").strip(), sep)
            if cand and not _is_number(cand[0]):
                head = [c.strip().lower() for c in cand]
                continue
        seen_first = True
        if s.startswith("#"):
            continue
        toks = _split(s, sep)
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
    return _Table(path, layout, rows, np.asarray(lines, dtype=np.int64), head)


# ----------------------------------------------------------------------------------------------------
# Checks shared by the readers, reported by line


def _check_increasing(tab: _Table, times: np.ndarray, order: Optional[np.ndarray] = None) -> None:
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


def _quats_to_rotations(tab: _Table, q: np.ndarray, scalar_first: bool, opts: _ReadOptions) -> np.ndarray:
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
    return quat_to_matrix(torch.from_numpy(q), scalar_first=scalar_first).numpy()


def _checked_matrices(tab: _Table, R: np.ndarray, opts: _ReadOptions, order: Optional[np.ndarray] = None) -> np.ndarray:
    """Rotation matrices read as text: validated within ``rotation_atol`` (error names the line), then projected."""
    Rt = torch.from_numpy(R)
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


def _trajectory(
    tab: _Table, times: np.ndarray, R: np.ndarray, T: np.ndarray, fmt: str, convention: str, **extra
) -> PoseTrajectory:
    _check_increasing(tab, times)
    meta = {"path": str(tab.path), "format": fmt, "convention": convention}
    meta.update(extra)
    return PoseTrajectory(times, R, T, source_format=fmt, metadata=meta)


# ----------------------------------------------------------------------------------------------------
# Writing


def _fmt(values: np.ndarray) -> list[str]:
    # repr of a Python float is the shortest string that reads back to the identical double.
    return [repr(float(v)) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def _meta_list(traj: PoseTrajectory, key: str) -> Optional[list]:
    """A per-pose metadata entry, or None when absent or no longer aligned with the poses."""
    v = traj.metadata.get(key)
    if v is not None and len(v) == len(traj):
        return list(v)
    return None


def _quats(traj: PoseTrajectory, rotations: Optional[np.ndarray] = None, scalar_first: bool = False) -> np.ndarray:
    R = traj.rotations if rotations is None else rotations
    return matrix_to_quat(torch.from_numpy(np.ascontiguousarray(R)), scalar_first=scalar_first).numpy()


# ----------------------------------------------------------------------------------------------------
# TUM


_TUM_LAYOUT = "t tx ty tz qx qy qz qw"
_CONV_C2W = "camera-to-world, OpenCV camera axes (x right, y down, z forward), seconds"


def _read_tum(path: Path, opts: _ReadOptions, times_path=None) -> PoseTrajectory:
    tab = _read_table(path, sep=None, ncols=8, layout=_TUM_LAYOUT)
    a = tab.floats(range(8))
    R = _quats_to_rotations(tab, a[:, 4:8], scalar_first=False, opts=opts)
    return _trajectory(tab, a[:, 0], R, a[:, 1:4], "tum", _CONV_C2W)


def _write_tum(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    q = _quats(traj)
    out = [f"# {_TUM_LAYOUT}"]
    for i in range(len(traj)):
        out.append(" ".join(_fmt(np.r_[traj.timestamps[i], traj.translations[i], q[i]])))
    atomic_write_text(path, "\n".join(out) + "\n")


# ----------------------------------------------------------------------------------------------------
# EuRoC


_EUROC_LAYOUT = "#timestamp [ns], p_x, p_y, p_z, q_w, q_x, q_y, q_z[, ignored columns]"
_EUROC_HEADER = "#timestamp [ns],p_RS_R_x [m],p_RS_R_y [m],p_RS_R_z [m],q_RS_w [],q_RS_x [],q_RS_y [],q_RS_z []"


def _ns_to_seconds(ns: np.ndarray) -> np.ndarray:
    # Split into whole seconds and remainder: exact integer parts, one rounding in the sum.
    sec, rem = np.divmod(ns, 10**9)
    return sec.astype(np.float64) + rem.astype(np.float64) * 1e-9


def _seconds_to_ns(t: np.ndarray) -> np.ndarray:
    whole = np.floor(t)
    frac = t - whole  # exact for |t| < 2**52
    return whole.astype(np.int64) * 10**9 + np.rint(frac * 1e9).astype(np.int64)


def _read_euroc(path: Path, opts: _ReadOptions, times_path=None) -> PoseTrajectory:
    tab = _read_table(path, sep=",", ncols=8, min_cols=True, layout=_EUROC_LAYOUT)
    ns = np.empty(len(tab.rows), dtype=np.int64)
    for i, row in enumerate(tab.rows):
        tok = row[0]
        try:
            ns[i] = int(tok)
        except ValueError:
            # Tolerate a float-printed nanosecond stamp ("1.4e18"); anything else is an error.
            try:
                v = float(tok)
            except ValueError:
                raise tab.error(i, f"column 1: timestamp {tok!r} is not an integer number of nanoseconds") from None
            if not math.isfinite(v):
                raise tab.error(i, f"column 1: non-finite timestamp {tok!r}")
            ns[i] = int(round(v))
    a = tab.floats(range(1, 8))
    R = _quats_to_rotations(tab, a[:, 3:7], scalar_first=True, opts=opts)
    return _trajectory(
        tab, _ns_to_seconds(ns), R, a[:, 0:3], "euroc",
        "body (IMU) frame to world, seconds (file: nanoseconds); body axes are the IMU's, not a camera's",
        timestamps_ns=ns,
    )


def _write_euroc(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    q = _quats(traj, scalar_first=True)
    ns = _seconds_to_ns(traj.timestamps)
    # float64 seconds hold ~240 ns at Unix-epoch magnitudes: write the file's own integer stamps back
    # when the trajectory still carries them and they agree with its timestamps.
    raw = _meta_list(traj, "timestamps_ns")
    if raw is not None:
        raw = np.asarray(raw, dtype=np.int64)
        if np.abs(_ns_to_seconds(raw) - traj.timestamps).max() <= 1e-6:
            ns = raw
    out = [_EUROC_HEADER]
    for i in range(len(traj)):
        out.append(",".join([str(int(ns[i]))] + _fmt(np.r_[traj.translations[i], q[i]])))
    atomic_write_text(path, "\n".join(out) + "\n")


# ----------------------------------------------------------------------------------------------------
# KITTI odometry


_KITTI_LAYOUT = "r11 r12 r13 tx r21 r22 r23 ty r31 r32 r33 tz"


def _kitti_times_path(path: Path) -> Path:
    return path.with_name(path.stem + "_times.txt")


def _read_kitti(path: Path, opts: _ReadOptions, times_path=None) -> PoseTrajectory:
    tab = _read_table(path, sep=None, ncols=12, layout=_KITTI_LAYOUT)
    P = tab.floats(range(12)).reshape(-1, 3, 4)
    R = _checked_matrices(tab, np.ascontiguousarray(P[:, :, :3]), opts)
    T = np.ascontiguousarray(P[:, :, 3])
    if times_path is None and _kitti_times_path(path).is_file():
        times_path = _kitti_times_path(path)
    if times_path is not None:
        ttab = _read_table(Path(times_path), sep=None, ncols=1, layout="one timestamp (seconds) per line")
        times = ttab.floats([0])[:, 0]
        if times.shape[0] != P.shape[0]:
            raise PoseFormatError(
                f"KITTI poses/times mismatch: {path} has {P.shape[0]} poses but {times_path} has {times.shape[0]} timestamps"
            )
        _check_increasing(ttab, times)
        source = str(times_path)
    else:
        times = np.arange(P.shape[0], dtype=np.float64)
        source = "frame index (no times file given or found)"
    return _trajectory(
        tab, times, R, T, "kitti", "camera i to camera 0 (world = first camera), OpenCV camera axes", times_source=source
    )


def _write_kitti(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    P = np.concatenate([traj.rotations, traj.translations[:, :, None]], axis=2).reshape(-1, 12)
    atomic_write_text(path, "".join(" ".join(_fmt(row)) + "\n" for row in P))
    tp = Path(times_path) if times_path is not None else _kitti_times_path(path)
    atomic_write_text(tp, "".join(repr(float(t)) + "\n" for t in traj.timestamps))


# ----------------------------------------------------------------------------------------------------
# COLMAP images.txt


_COLMAP_LAYOUT = "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, then a POINTS2D line (X Y POINT3D_ID ...)"
_COLMAP_HEADER = (
    "# Image list with two lines of data per image:\n"
    "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
    "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
)


def _natural_key(name: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name)]


_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def _time_from_name(name: str) -> Optional[float]:
    found = _NUMBER_RE.findall(Path(name).stem)
    return float(found[-1]) if found else None


def _read_colmap(path: Path, opts: _ReadOptions, times_path=None, time_from: str = "index", order: str = "name") -> PoseTrajectory:
    """COLMAP ``images.txt``. ``order``: 'name' (natural sort of NAME) or 'id' (IMAGE_ID).
    ``time_from``: 'index' (0, 1, 2, ... in that order) or 'name' (last number in the file stem, e.g.
    ``1305031098.6659.png`` or ``frame_000123.png``; images are then ordered by it)."""
    if time_from not in ("index", "name"):
        raise ValueError(f"colmap: time_from must be 'index' or 'name', got {time_from!r}")
    if order not in ("name", "id"):
        raise ValueError(f"colmap: order must be 'name' or 'id', got {order!r}")
    rows: list[list[str]] = []
    lines: list[int] = []
    expect_points = False
    last = 0
    for lineno, raw in enumerate(_read_text_lines(path), start=1):
        s = raw.strip()
        if s.startswith("#"):
            continue
        if expect_points:
            # The POINTS2D line may be empty; it must hold (X, Y, POINT3D_ID) triples.
            n = len(s.split())
            if n % 3 != 0:
                raise PoseFormatError(
                    f"{path}:{lineno}: expected the POINTS2D line of the image on line {last} "
                    f"(X Y POINT3D_ID triples), got {n} fields - is a POINTS2D line missing?"
                )
            expect_points = False
            continue
        if not s:
            continue
        toks = s.split()
        if len(toks) < 10:
            raise PoseFormatError(f"{path}:{lineno}: expected at least 10 fields ({_COLMAP_LAYOUT}), got {len(toks)}")
        rows.append(toks[:9] + [" ".join(toks[9:])])
        lines.append(lineno)
        expect_points = True
        last = lineno
    if expect_points:
        raise PoseFormatError(
            f"{path}: file ends after the image line {last} without its POINTS2D line (truncated file?)"
        )
    if not rows:
        raise PoseFormatError(f"{path}: no images found (empty file or only comments); layout: {_COLMAP_LAYOUT}")
    tab = _Table(path, _COLMAP_LAYOUT, rows, np.asarray(lines, dtype=np.int64))
    a = tab.floats(range(1, 8))
    ids = tab.floats([0, 8])
    for i in range(len(rows)):
        for j, c in enumerate((0, 8)):
            if ids[i, j] != int(ids[i, j]):
                raise tab.error(i, f"column {c + 1}: {rows[i][c]!r} is not an integer id")
    names = [r[9] for r in rows]
    R_w2c = _quats_to_rotations(tab, a[:, 0:4], scalar_first=True, opts=opts)
    T_w2c = a[:, 4:7]
    R = np.transpose(R_w2c, (0, 2, 1))
    C = -np.einsum("nij,nj->ni", R, T_w2c)
    if time_from == "name":
        parsed = [_time_from_name(n) for n in names]
        for i, t in enumerate(parsed):
            if t is None:
                raise tab.error(i, f"image name {names[i]!r} holds no number to use as a timestamp (time_from='name')")
        times_all = np.asarray(parsed, dtype=np.float64)
        perm = np.argsort(times_all, kind="stable")
        times = times_all[perm]
    else:
        if order == "name":
            perm = np.asarray(sorted(range(len(names)), key=lambda i: _natural_key(names[i])), dtype=np.int64)
        else:
            perm = np.argsort(ids[:, 0], kind="stable")
        times = np.arange(len(names), dtype=np.float64)
    _check_increasing(tab, times, order=perm)
    meta = {
        "path": str(path),
        "format": "colmap",
        "convention": "file is world-to-camera; converted to camera-to-world, OpenCV camera axes",
        "names": [names[i] for i in perm],
        "image_ids": [int(ids[i, 0]) for i in perm],
        "camera_ids": [int(ids[i, 1]) for i in perm],
        "times_source": "image name" if time_from == "name" else f"image index (ordered by {order})",
    }
    return PoseTrajectory(times, R[perm], C[perm], source_format="colmap", metadata=meta)


def _write_colmap(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    n = len(traj)
    names = _meta_list(traj, "names") or [f"frame_{i:06d}.png" for i in range(n)]
    ids = _meta_list(traj, "image_ids") or list(range(1, n + 1))
    cams = _meta_list(traj, "camera_ids") or [1] * n
    R_w2c = np.transpose(traj.rotations, (0, 2, 1))
    T_w2c = -np.einsum("nij,nj->ni", R_w2c, traj.translations)
    q = _quats(traj, rotations=R_w2c, scalar_first=True)
    out = [_COLMAP_HEADER + f"# Number of images: {n}, written by viewgp (camera-to-world inverted)"]
    for i in range(n):
        out.append(" ".join([str(int(ids[i]))] + _fmt(np.r_[q[i], T_w2c[i]]) + [str(int(cams[i])), str(names[i])]))
        out.append("")
    atomic_write_text(path, "\n".join(out) + "\n")


# ----------------------------------------------------------------------------------------------------
# ARKit CSV and ADVIO arkit.csv


_ARKIT_COLUMNS = ("timestamp", "tx", "ty", "tz", "qx", "qy", "qz", "qw")
_ARKIT_ALIASES = {"timestamp": ("timestamp", "time", "t"), "tx": ("tx", "x"), "ty": ("ty", "y"), "tz": ("tz", "z")}
_ARKIT_LAYOUT = "header 'timestamp,tx,ty,tz,qx,qy,qz,qw' (any order, extra columns ignored)"
_CONV_GL = "camera-to-world in the gravity-aligned (y-up) ARKit world; OpenGL camera axes converted to OpenCV"


def _arkit_column_index(tab: _Table) -> list[int]:
    if tab.header is None:
        return list(range(8))  # headerless: the documented order
    idx = []
    missing = []
    for col in _ARKIT_COLUMNS:
        names = _ARKIT_ALIASES.get(col, (col,))
        hit = next((tab.header.index(n) for n in names if n in tab.header), None)
        if hit is None:
            missing.append(col)
        idx.append(hit)
    if missing:
        raise PoseFormatError(
            f"{tab.path}: header {','.join(tab.header)!r} lacks column(s) {missing}; expected {_ARKIT_LAYOUT}"
        )
    return idx


def _read_arkit(path: Path, opts: _ReadOptions, times_path=None) -> PoseTrajectory:
    tab = _read_table(path, sep=",", ncols=8, min_cols=True, layout=_ARKIT_LAYOUT, header=True)
    cols = _arkit_column_index(tab)
    need = max(cols) + 1
    for i, row in enumerate(tab.rows):
        if len(row) < need:
            raise tab.error(i, f"expected at least {need} columns ({_ARKIT_LAYOUT}), got {len(row)}")
    a = tab.floats(cols)
    R = opengl_to_opencv(_quats_to_rotations(tab, a[:, 4:8], scalar_first=False, opts=opts))
    return _trajectory(tab, a[:, 0], R, a[:, 1:4], "arkit", _CONV_GL)


def _write_arkit(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    q = _quats(traj, rotations=opengl_to_opencv(traj.rotations))
    out = [",".join(_ARKIT_COLUMNS)]
    for i in range(len(traj)):
        out.append(",".join(_fmt(np.r_[traj.timestamps[i], traj.translations[i], q[i]])))
    atomic_write_text(path, "\n".join(out) + "\n")


_ADVIO_LAYOUT = "t, x, y, z, qw, qx, qy, qz (no header)"


def read_advio_frames(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """ADVIO ``frames.csv`` (``t, frame_index``, no header) -> times ``(M,)`` seconds, frame indices ``(M,)`` int."""
    tab = _read_table(Path(path), sep=",", ncols=2, layout="t, frame_index (no header)")
    a = tab.floats([0, 1])
    for i in range(a.shape[0]):
        if a[i, 1] != int(a[i, 1]):
            raise tab.error(i, f"column 2: frame index {tab.rows[i][1]!r} is not an integer")
    _check_increasing(tab, a[:, 0])
    return a[:, 0], a[:, 1].astype(np.int64)


def _read_advio(path: Path, opts: _ReadOptions, times_path=None, camera_axes: str = "opengl") -> PoseTrajectory:
    """ADVIO pose CSV. With ``times_path`` (a ``frames.csv``) the poses are interpolated (SLERP + linear)
    at the video frame times; frames outside the pose time range are dropped and the kept frame
    indices are recorded in ``metadata['frame_indices']``."""
    if camera_axes not in ("opengl", "opencv"):
        raise ValueError(f"advio: camera_axes must be 'opengl' or 'opencv', got {camera_axes!r}")
    tab = _read_table(path, sep=",", ncols=8, layout=_ADVIO_LAYOUT)
    a = tab.floats(range(8))
    R = _quats_to_rotations(tab, a[:, 4:8], scalar_first=True, opts=opts)
    if camera_axes == "opengl":
        R = opengl_to_opencv(R)
    conv = _CONV_GL if camera_axes == "opengl" else _CONV_C2W
    traj = _trajectory(tab, a[:, 0], R, a[:, 1:4], "advio", conv, camera_axes_in_file=camera_axes)
    if times_path is None:
        return traj
    ftimes, findex = read_advio_frames(times_path)
    t0, t1 = traj.time_range
    keep = (ftimes >= t0) & (ftimes <= t1)
    if not keep.any():
        raise PoseFormatError(
            f"{times_path}: no frame time lies inside the pose time range [{t0}, {t1}] of {path}"
        )
    out = traj.interpolate(ftimes[keep])
    out.metadata.update(
        frames_path=str(times_path), frame_indices=findex[keep].tolist(), frames_dropped=int((~keep).sum())
    )
    return out


def _write_advio(path: Path, traj: PoseTrajectory, times_path=None, camera_axes: str = "opengl") -> None:
    if camera_axes not in ("opengl", "opencv"):
        raise ValueError(f"advio: camera_axes must be 'opengl' or 'opencv', got {camera_axes!r}")
    R = opengl_to_opencv(traj.rotations) if camera_axes == "opengl" else traj.rotations
    q = _quats(traj, rotations=R, scalar_first=True)
    atomic_write_text(
        path,
        "".join(",".join(_fmt(np.r_[traj.timestamps[i], traj.translations[i], q[i]])) + "\n" for i in range(len(traj))),
    )


# ----------------------------------------------------------------------------------------------------
# Phone IMU CSV


_IMU_LAYOUT = "timestamp, gx, gy, gz[, ax, ay, az] (rad/s; header optional)"
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _read_imu(path: Path, opts: _ReadOptions, times_path=None, time_unit: str = "s", initial_rotation=None) -> PoseTrajectory:
    """Gyroscope CSV -> orientations by :func:`viewgp.poses.integrate_gyroscope` (trapezoidal, body frame),
    starting from ``initial_rotation`` (default identity). Translations are zeros. The raw samples are
    kept in ``metadata['gyroscope']`` (and ``metadata['accelerometer']`` when present)."""
    if time_unit not in _TIME_UNITS:
        raise ValueError(f"imu: time_unit must be one of {sorted(_TIME_UNITS)}, got {time_unit!r}")
    tab = _read_table(path, sep=",", ncols=(4, 7), layout=_IMU_LAYOUT, header=True)
    widths = {len(r) for r in tab.rows}
    if len(widths) > 1:
        w0 = len(tab.rows[0])
        i = next(k for k, r in enumerate(tab.rows) if len(r) != w0)
        raise tab.error(i, f"{len(tab.rows[i])} columns but the first row has {w0} ({_IMU_LAYOUT})")
    w = widths.pop()
    a = tab.floats(range(w))
    times = a[:, 0] * _TIME_UNITS[time_unit]
    _check_increasing(tab, times)
    R = integrate_gyroscope(torch.from_numpy(times), torch.from_numpy(a[:, 1:4].copy()), R0=initial_rotation).numpy()
    meta = {
        "gyroscope": a[:, 1:4].copy(),
        "accelerometer": a[:, 4:7].copy() if w == 7 else None,
        "time_unit": time_unit,
    }
    return _trajectory(
        tab, times, R, np.zeros((times.shape[0], 3)), "imu",
        "body (IMU) orientation integrated from the gyroscope, R(t0) = initial rotation; translations are zeros",
        **meta,
    )


def _write_imu(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    """Angular velocities that reproduce ``traj``'s orientations exactly under the reader's trapezoidal
    integration: ``(w_k + w_{k+1}) / 2 = log(R_k^T R_{k+1}) / dt_k``, seeded with the stored first
    gyroscope sample when there is one (then a read file is written back as it was)."""
    n = len(traj)
    R = torch.from_numpy(traj.rotations)
    if np.abs(traj.translations).max(initial=0.0) > 0:
        warnings.warn("IMU CSV holds angular velocity only: the translations are not written", stacklevel=3)
    if n and np.abs(traj.rotations[0] - np.eye(3)).max() > 1e-12:
        warnings.warn("IMU CSV starts from the identity orientation: the first rotation is not written", stacklevel=3)
    omega = np.zeros((n, 3))
    if n > 1:
        dt = np.diff(traj.timestamps)
        rates = so3_log(R[:-1].transpose(-1, -2) @ R[1:]).numpy() / dt[:, None]
        gyro = _meta_list(traj, "gyroscope")
        omega[0] = np.asarray(gyro[0], dtype=np.float64) if gyro is not None else rates[0]
        for k in range(n - 1):
            omega[k + 1] = 2.0 * rates[k] - omega[k]
    acc = _meta_list(traj, "accelerometer")
    cols = ["timestamp", "gx", "gy", "gz"] + (["ax", "ay", "az"] if acc is not None else [])
    out = [",".join(cols)]
    for i in range(n):
        vals = [traj.timestamps[i], *omega[i]] + (list(np.asarray(acc[i], dtype=np.float64)) if acc is not None else [])
        out.append(",".join(_fmt(np.asarray(vals))))
    atomic_write_text(path, "\n".join(out) + "\n")


# ----------------------------------------------------------------------------------------------------
# Registry and public API


@dataclass(frozen=True)
class PoseFormat:
    """One registered pose file format."""

    name: str
    description: str
    extensions: tuple[str, ...]
    reader: Callable[..., PoseTrajectory] = field(repr=False)
    writer: Callable[..., None] = field(repr=False)


#: Registered formats by name, in detection-listing order.
FORMATS: dict[str, PoseFormat] = {
    f.name: f
    for f in (
        PoseFormat("tum", f"TUM RGB-D: '{_TUM_LAYOUT}'", (".txt",), _read_tum, _write_tum),
        PoseFormat("euroc", f"EuRoC ground truth CSV: '{_EUROC_LAYOUT}'", (".csv",), _read_euroc, _write_euroc),
        PoseFormat("kitti", f"KITTI odometry: '{_KITTI_LAYOUT}' + <stem>_times.txt", (".txt",), _read_kitti, _write_kitti),
        PoseFormat("colmap", f"COLMAP images.txt: '{_COLMAP_LAYOUT}'", (".txt",), _read_colmap, _write_colmap),
        PoseFormat("arkit", f"ARKit CSV: {_ARKIT_LAYOUT}", (".csv",), _read_arkit, _write_arkit),
        PoseFormat("advio", f"ADVIO arkit.csv: '{_ADVIO_LAYOUT}'", (".csv",), _read_advio, _write_advio),
        PoseFormat("imu", f"phone IMU CSV: '{_IMU_LAYOUT}'", (".csv", ".txt"), _read_imu, _write_imu),
    )
}


def _known() -> str:
    return "; ".join(f"{f.name} ({f.description})" for f in FORMATS.values())


def _get_format(name: str) -> PoseFormat:
    fmt = FORMATS.get(str(name).lower())
    if fmt is None:
        raise PoseFormatError(f"unknown pose format {name!r}; known formats: {', '.join(FORMATS)}")
    return fmt


def detect_format(path: PathLike) -> str:
    """Guess the format of a pose file from its name, header/comments and column count.

    Rules, on the first data line: whitespace-separated with >= 10 fields and a non-numeric 10th
    (an image name) -> colmap; 8 numbers -> tum; 12 numbers -> kitti. Comma-separated with a header
    (or a ``#`` header comment) naming qx..qw -> arkit, naming gx/gyro or with 4/7 columns -> imu; headerless with an EuRoC
    header comment, >= 9 columns or a nanosecond (>= 16 digit integer) stamp -> euroc; 8 columns ->
    advio; 4 or 7 -> imu. Raises :class:`PoseFormatError` listing the known formats when none fits.
    """
    path = Path(path)
    lines = _read_text_lines(path)[:200]
    first_i = next((k for k, s in enumerate(lines) if s.strip() and not s.lstrip().startswith("#")), None)
    comments = [s.lower() for s in lines if s.lstrip().startswith("#")]
    if first_i is None:
        raise PoseFormatError(
            f"{path}: cannot detect the pose format of a file with no data lines (empty, or only comments). "
            f"Known formats: {_known()}"
        )
    first = lines[first_i].strip()
    if "," in first:
        toks = _split(first, ",")
        n = len(toks)
        if not all(_is_number(t) for t in toks):
            head = [t.lstrip("#").strip().lower() for t in toks]
            if {"qx", "qy", "qz", "qw"} <= set(head):
                return "arkit"
            if any(h in ("gx", "gyro_x", "gyroscope_x") for h in head) or n in (4, 7):
                return "imu"
        else:
            # A header may hide in a '#' comment line: ARKit's names or EuRoC's.
            if any({"qx", "qy", "qz", "qw"} <= {t.lstrip("#").strip() for t in c.split(",")} for c in comments):
                return "arkit"
            if any("q_rs_w" in c or c.replace(" ", "").startswith("#timestamp,") for c in comments):
                return "euroc"
            digits = toks[0].lstrip("-")
            if n >= 9 or (digits.isdigit() and len(digits) >= 16):
                return "euroc"
            if n == 8:
                return "advio"
            if n in (4, 7):
                return "imu"
    else:
        toks = first.split()
        n = len(toks)
        numeric = [_is_number(t) for t in toks]
        if n >= 10 and all(numeric[:9]) and not numeric[9]:
            return "colmap"
        if all(numeric):
            if n == 8:
                return "tum"
            if n == 12:
                return "kitti"
    sep = "comma" if "," in first else "whitespace"
    raise PoseFormatError(
        f"{path}:{first_i + 1}: cannot detect the pose format (first data line has {len(toks)} {sep}-separated "
        f"fields: {first[:80]!r}). Known formats: {_known()}. Name the format to read it explicitly: --format NAME "
        "on the command line, read_poses(path, format=NAME) in Python."
    )


def read_poses(
    path: PathLike,
    format: Optional[str] = None,
    times_path: Optional[PathLike] = None,
    *,
    reorthonormalize: bool = True,
    rotation_atol: float = 1e-4,
    quat_atol: float = 1e-3,
    **options,
) -> PoseTrajectory:
    """Read a trajectory file into a camera-to-world :class:`PoseTrajectory` (see the module docstring).

    Args:
        path: the pose file.
        format: a name in :data:`FORMATS`; ``None`` detects it (:func:`detect_format`).
        times_path: KITTI: the ``times.txt`` (default: ``<stem>_times.txt`` beside ``path`` if it
            exists, else the frame index); ADVIO: a ``frames.csv`` at whose times the poses are
            interpolated. Ignored by the other formats.
        reorthonormalize: project 3x3 rotation matrices read from text (KITTI) onto SO(3) after they
            pass the ``rotation_atol`` check (printed rotations carry ~1e-7 noise).
        rotation_atol: largest ``|R^T R - I|`` accepted for a matrix; beyond it the error names the line.
        quat_atol: largest ``| |q| - 1 |`` accepted for a quaternion (4-decimal files reach ~1e-4).
        **options: format-specific: colmap ``time_from='index'|'name'``, ``order='name'|'id'``;
            advio ``camera_axes='opengl'|'opencv'``; imu ``time_unit='s'|'ms'|'us'|'ns'``,
            ``initial_rotation`` (3, 3).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pose file not found: {path}")
    fmt = _get_format(format) if format is not None else FORMATS[detect_format(path)]
    opts = _ReadOptions(reorthonormalize=reorthonormalize, rotation_atol=rotation_atol, quat_atol=quat_atol)
    return fmt.reader(path, opts, times_path, **options)


def write_poses(path: PathLike, traj: PoseTrajectory, format: str, *, times_path: Optional[PathLike] = None, **options) -> None:
    """Write ``traj`` (camera-to-world, OpenCV axes) in ``format``, converting to that format's convention.

    Floats are written with ``repr`` (exact round trip). KITTI also writes the times file
    (``times_path``, default ``<stem>_times.txt`` beside ``path``). Files are replaced atomically.
    The imu writer warns that translations (and a non-identity first orientation) are not stored.
    """
    if not isinstance(traj, PoseTrajectory):
        raise TypeError(f"write_poses: expected a PoseTrajectory, got {type(traj).__name__}")
    _get_format(format).writer(Path(path), traj, times_path, **options)
