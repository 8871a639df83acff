"""Camera trajectory files: readers, writers, format detection and a registry.

Every reader returns a :class:`sequences.poses.trajectory.PoseTrajectory` in the viewgp convention:

* poses are **camera-to-world** (``x_world = R @ x_cam + t``, ``t`` is the camera centre);
* camera axes are **OpenCV** (x right, y down, z forward = optical axis), so ``R[:, 2]`` is the
  viewing direction in the world;
* timestamps are float64 **seconds**, strictly increasing - or, for formats that hold no time
  (COLMAP, ``transforms.json``, KITTI without its times file), the pose index, marked
  ``metadata['has_times'] = False`` (see :func:`has_times`): such poses are matched to frames by
  image name or order, never by time;
* rotations are exact rotations: quaternions are normalised, 3x3 matrices are checked against a
  tolerance and projected onto SO(3).

What each file holds and what we do with it:

===========  ========================================  ==============================================
format       file content (as written by the source)   conversion to the viewgp convention
===========  ========================================  ==============================================
tum          ``t tx ty tz qx qy qz qw [extra ...]``    none: camera-to-world, optical centre in the
             (space separated, ``#`` comments);        mocap world; OpenCV camera axes. Extra columns
             quaternion xyzw                           (OpenVINS covariances) -> ``metadata``
euroc        ``#timestamp,px,py,pz,qw,qx,qy,qz,...``   none: body (IMU) frame S to world R; ns -> s.
             timestamps in ns, quaternion **wxyz**,    Extra columns (velocity, biases) are ignored.
             header line starting with ``#``           The body frame is not the camera frame.
kitti        N x 12 = rows of the 3x4 ``[R|t]``,       none: camera i -> camera 0 (world = first
             row-major; times in a separate times.txt  camera), OpenCV camera axes; no times file:
                                                       no timestamps
colmap       ``images.txt``: two lines per image,      **world-to-camera** inverted:
             ``ID QW QX QY QZ TX TY TZ CAM_ID NAME``   ``R = Rwc^T``, ``t = -Rwc^T T``; images are
             then the POINTS2D line (may be empty);    ordered by NAME (natural sort); no timestamps
             ``cameras.txt`` beside it: intrinsics     (or parsed from NAMEs); cx, cy - 0.5
colmap_bin   ``images.bin`` (+ ``cameras.bin``):       as colmap (:mod:`sequences.poses.colmap`)
             COLMAP's binary model
nerf         ``transforms.json``: frames with          camera-to-world, **OpenGL** camera axes:
             ``file_path`` and 4x4                     ``R_cv = R_gl @ diag(1, -1, -1)``; ordered by
             ``transform_matrix``; ``fl_x``,           file_path; no timestamps; intrinsics shared
             ``camera_angle_x``, ``w``, ``h`` ...      or per frame, cx, cy - 0.5 (:mod:`sequences.poses.nerf`)
arkit        CSV with header naming ``timestamp, tx,   camera-to-world in the gravity-aligned
             ty, tz, qx, qy, qz, qw`` (any order,      (y-up) ARKit world; ARKit camera axes are
             extra columns ignored); quaternion xyzw   OpenGL (x right, y up, z backward):
                                                       ``R_cv = R_gl @ diag(1, -1, -1)``
advio        ADVIO ``iphone/arkit.csv``: headerless    as arkit (OpenGL camera axes converted);
             ``t, x, y, z, qw, qx, qy, qz``; optional  ``camera_axes="opencv"`` reads a file whose
             ``frames.csv`` (``t, frame_index``)       frame needs no axis flip (e.g. ground truth)
imu          ``timestamp, gx, gy, gz[, ax, ay, az]``,  orientation by integrating the gyroscope
             rad/s; header names any order (Sensor     (body frame; R(t0) = identity), translations
             Logger ``Gyroscope.csv``: ``time,         are zeros (not observable from a gyroscope)
             seconds_elapsed, z, y, x``)
orientation  CSV with header naming a time and ``qx,   device-to-world (east-north-up world); phone
             qy, qz, qw`` (Sensor Logger               device axes = OpenGL camera axes of the back
             ``Orientation.csv``)                      camera: flipped; translations are zeros
===========  ========================================  ==============================================

The world frame is never changed: a trajectory lives in its source's world (mocap room, first KITTI
camera, COLMAP model, ARKit's gravity-aligned y-up session frame). Intrinsics, where a format holds
them, go to ``metadata['intrinsics']`` (3x3, pixel centres at integers as in OpenCV) with
``metadata['image_size']`` (w, h) and ``metadata['distortion']`` (kept, never applied).

Details: KITTI times come from ``times_path``, else ``<stem>_times.txt`` beside the poses, else the
frame index. EuRoC's integer nanoseconds are kept in ``metadata['timestamps_ns']`` (float64 seconds
resolve ~240 ns at Unix-epoch magnitudes) and written back verbatim. Quaternions may be off unit
norm by ``quat_atol`` (default 1e-3: files printed with 4 decimals are ~1e-4 off); matrices by
``rotation_atol`` (default 1e-4 on ``|R^T R - I|``; KITTI's printed rotations are ~2e-7 off).

Detection (:func:`detect_format`) never guesses between formats that read the same columns in
different orders: a headerless 8-column CSV is ADVIO's (``t, x, y, z, qw, qx, qy, qz``) only when its
path says so (``advio`` in it, or ADVIO's ``iphone/arkit.csv``), and ARKit needs its header; a CSV of
``x, y, z`` is a gyroscope only when its file name says so (``Gyroscope.csv``). Anything else that
more than one format could read is refused with the candidates (:class:`AmbiguousFormatError`).

Entry points: :func:`read_poses`, :func:`write_poses`, :func:`detect_format`, :func:`has_times` and
the registry :data:`FORMATS` (name -> :class:`PoseFormat`). Every malformed input raises
:class:`PoseFormatError` (a ``ValueError``) naming the file and, where there is one, the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from generative.images.fileio import atomic_write_text
from sequences.poses import colmap, nerf, sensorlogs
from sequences.poses.posefile import (
    CONV_C2W,
    GL_TO_CV,
    AmbiguousFormatError,
    PathLike,
    PoseFormatError,
    ReadOptions,
    checked_matrices,
    check_increasing,
    fmt_floats,
    header_columns,
    is_number,
    make_trajectory,
    meta_list,
    ns_to_seconds,
    opengl_to_opencv,
    quaternions_of,
    quats_to_rotations,
    read_table,
    read_text_lines,
    seconds_to_ns,
    split_fields,
)
from sequences.poses.trajectory import PoseTrajectory

__all__ = [
    "PoseFormatError",
    "AmbiguousFormatError",
    "PoseFormat",
    "FORMATS",
    "read_poses",
    "write_poses",
    "detect_format",
    "resolve_pose_path",
    "has_times",
    "read_advio_frames",
    "opengl_to_opencv",
    "GL_TO_CV",
]


def has_times(traj: PoseTrajectory) -> bool:
    """Whether ``traj``'s timestamps are times (seconds) rather than the pose index of a format without time."""
    return bool(traj.metadata.get("has_times", True))


# ----------------------------------------------------------------------------------------------------
# TUM


_TUM_LAYOUT = "t tx ty tz qx qy qz qw [extra columns]"


def _tum_extra_names(path: Path, n: int) -> Optional[list[str]]:
    """Names of the columns past the 8th from a ``#`` comment naming all ``n`` columns (OpenVINS writes one)."""
    for raw in read_text_lines(path):
        s = raw.strip()
        if s.startswith("#"):
            toks = s.lstrip("#").split()
            if len(toks) == n:
                return toks[8:]
        elif s:
            break
    return None


def _read_tum(path: Path, opts: ReadOptions, times_path=None) -> PoseTrajectory:
    tab = read_table(path, sep=None, ncols=8, min_cols=True, layout=_TUM_LAYOUT)
    n = tab.same_width()
    a = tab.floats(range(n))
    R = quats_to_rotations(tab, a[:, 4:8], scalar_first=False, opts=opts)
    extra = {}
    if n > 8:
        extra = dict(extra_columns=a[:, 8:].copy(), extra_names=_tum_extra_names(path, n))
    return make_trajectory(tab, a[:, 0], R, a[:, 1:4], "tum", CONV_C2W, **extra)


def _write_tum(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    q = quaternions_of(traj.rotations)
    extra = meta_list(traj, "extra_columns")
    names = traj.metadata.get("extra_names") if extra is not None else None
    head = "t tx ty tz qx qy qz qw" + ("".join(f" {n}" for n in names) if names else "")
    out = [f"# {head}"]
    for i in range(len(traj)):
        row = np.r_[traj.timestamps[i], traj.translations[i], q[i], [] if extra is None else np.asarray(extra[i], float)]
        out.append(" ".join(fmt_floats(row)))
    atomic_write_text(path, "\n".join(out) + "\n")


# ----------------------------------------------------------------------------------------------------
# EuRoC


_EUROC_LAYOUT = "#timestamp [ns], p_x, p_y, p_z, q_w, q_x, q_y, q_z[, ignored columns]"
_EUROC_HEADER = "#timestamp [ns],p_RS_R_x [m],p_RS_R_y [m],p_RS_R_z [m],q_RS_w [],q_RS_x [],q_RS_y [],q_RS_z []"


def _read_euroc(path: Path, opts: ReadOptions, times_path=None) -> PoseTrajectory:
    tab = read_table(path, sep=",", ncols=8, min_cols=True, layout=_EUROC_LAYOUT, header=True)
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
    R = quats_to_rotations(tab, a[:, 3:7], scalar_first=True, opts=opts)
    return make_trajectory(
        tab, ns_to_seconds(ns), R, a[:, 0:3], "euroc",
        "body (IMU) frame to world, seconds (file: nanoseconds); body axes are the IMU's, not a camera's",
        timestamps_ns=ns,
    )


def _write_euroc(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    q = quaternions_of(traj.rotations, scalar_first=True)
    ns = seconds_to_ns(traj.timestamps)
    # float64 seconds hold ~240 ns at Unix-epoch magnitudes: write the file's own integer stamps back
    # when the trajectory still carries them and they agree with its timestamps.
    raw = meta_list(traj, "timestamps_ns")
    if raw is not None:
        raw = np.asarray(raw, dtype=np.int64)
        if np.abs(ns_to_seconds(raw) - traj.timestamps).max() <= 1e-6:
            ns = raw
    out = [_EUROC_HEADER]
    for i in range(len(traj)):
        out.append(",".join([str(int(ns[i]))] + fmt_floats(np.r_[traj.translations[i], q[i]])))
    atomic_write_text(path, "\n".join(out) + "\n")


# ----------------------------------------------------------------------------------------------------
# KITTI odometry


_KITTI_LAYOUT = "r11 r12 r13 tx r21 r22 r23 ty r31 r32 r33 tz"


def _kitti_times_path(path: Path) -> Path:
    return path.with_name(path.stem + "_times.txt")


def _read_kitti(path: Path, opts: ReadOptions, times_path=None) -> PoseTrajectory:
    tab = read_table(path, sep=None, ncols=12, layout=_KITTI_LAYOUT)
    P = tab.floats(range(12)).reshape(-1, 3, 4)
    R = checked_matrices(tab, np.ascontiguousarray(P[:, :, :3]), opts)
    T = np.ascontiguousarray(P[:, :, 3])
    if times_path is None and _kitti_times_path(path).is_file():
        times_path = _kitti_times_path(path)
    if times_path is not None:
        ttab = read_table(Path(times_path), sep=None, ncols=1, layout="one timestamp (seconds) per line")
        times = ttab.floats([0])[:, 0]
        if times.shape[0] != P.shape[0]:
            raise PoseFormatError(
                f"KITTI poses/times mismatch: {path} has {P.shape[0]} poses but {times_path} has {times.shape[0]} timestamps"
            )
        check_increasing(ttab, times)
        source = str(times_path)
    else:
        times = np.arange(P.shape[0], dtype=np.float64)
        source = "none: frame index (no times file given or found)"
    return make_trajectory(
        tab, times, R, T, "kitti", "camera i to camera 0 (world = first camera), OpenCV camera axes",
        times_source=source, has_times=times_path is not None,
    )


def _write_kitti(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    P = np.concatenate([traj.rotations, traj.translations[:, :, None]], axis=2).reshape(-1, 12)
    atomic_write_text(path, "".join(" ".join(fmt_floats(row)) + "\n" for row in P))
    tp = Path(times_path) if times_path is not None else _kitti_times_path(path)
    atomic_write_text(tp, "".join(repr(float(t)) + "\n" for t in traj.timestamps))


# ----------------------------------------------------------------------------------------------------
# ARKit CSV and ADVIO arkit.csv


_ARKIT_COLUMNS = ("timestamp", "tx", "ty", "tz", "qx", "qy", "qz", "qw")
_ARKIT_ALIASES = {"timestamp": ("timestamp", "time", "t"), "tx": ("tx", "x"), "ty": ("ty", "y"), "tz": ("tz", "z"),
                  "qx": ("qx",), "qy": ("qy",), "qz": ("qz",), "qw": ("qw",)}
_ARKIT_LAYOUT = "header 'timestamp,tx,ty,tz,qx,qy,qz,qw' (any order, extra columns ignored)"
_CONV_GL = "camera-to-world in the gravity-aligned (y-up) ARKit world; OpenGL camera axes converted to OpenCV"


def _read_arkit(path: Path, opts: ReadOptions, times_path=None) -> PoseTrajectory:
    tab = read_table(path, sep=",", ncols=8, min_cols=True, layout=_ARKIT_LAYOUT, header=True)
    if tab.header is None:
        # Headerless, the columns could be in ADVIO's order as well: refuse rather than guess.
        raise PoseFormatError(
            f"{path}: an ARKit CSV needs its header ({_ARKIT_LAYOUT}); a headerless 't, x, y, z, qw, qx, qy, qz' "
            "file is ADVIO's: read it with format 'advio'"
        )
    cols = header_columns(tab, _ARKIT_ALIASES)
    a = tab.floats([cols[c] for c in _ARKIT_COLUMNS])
    R = opengl_to_opencv(quats_to_rotations(tab, a[:, 4:8], scalar_first=False, opts=opts))
    return make_trajectory(tab, a[:, 0], R, a[:, 1:4], "arkit", _CONV_GL)


def _write_arkit(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    q = quaternions_of(opengl_to_opencv(traj.rotations))
    out = [",".join(_ARKIT_COLUMNS)]
    for i in range(len(traj)):
        out.append(",".join(fmt_floats(np.r_[traj.timestamps[i], traj.translations[i], q[i]])))
    atomic_write_text(path, "\n".join(out) + "\n")


_ADVIO_LAYOUT = "t, x, y, z, qw, qx, qy, qz (no header)"


def read_advio_frames(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """ADVIO ``frames.csv`` (``t, frame_index``, no header) -> times ``(M,)`` seconds, frame indices ``(M,)`` int."""
    tab = read_table(Path(path), sep=",", ncols=2, layout="t, frame_index (no header)")
    a = tab.floats([0, 1])
    for i in range(a.shape[0]):
        if a[i, 1] != int(a[i, 1]):
            raise tab.error(i, f"column 2: frame index {tab.rows[i][1]!r} is not an integer")
    check_increasing(tab, a[:, 0])
    return a[:, 0], a[:, 1].astype(np.int64)


def _check_advio_axes(camera_axes: str) -> None:
    if camera_axes not in ("opengl", "opencv"):
        raise ValueError(f"advio: camera_axes must be 'opengl' or 'opencv', got {camera_axes!r}")


def _read_advio(path: Path, opts: ReadOptions, times_path=None, camera_axes: str = "opengl") -> PoseTrajectory:
    """ADVIO pose CSV. With ``times_path`` (a ``frames.csv``) the poses are interpolated (SLERP + linear)
    at the video frame times; frames outside the pose time range are dropped and the kept frame
    indices are recorded in ``metadata['frame_indices']``."""
    _check_advio_axes(camera_axes)
    tab = read_table(path, sep=",", ncols=8, layout=_ADVIO_LAYOUT)
    a = tab.floats(range(8))
    R = quats_to_rotations(tab, a[:, 4:8], scalar_first=True, opts=opts)
    if camera_axes == "opengl":
        R = opengl_to_opencv(R)
    conv = _CONV_GL if camera_axes == "opengl" else CONV_C2W
    traj = make_trajectory(tab, a[:, 0], R, a[:, 1:4], "advio", conv, camera_axes_in_file=camera_axes)
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
    _check_advio_axes(camera_axes)
    R = opengl_to_opencv(traj.rotations) if camera_axes == "opengl" else traj.rotations
    q = quaternions_of(R, scalar_first=True)
    atomic_write_text(
        path,
        "".join(",".join(fmt_floats(np.r_[traj.timestamps[i], traj.translations[i], q[i]])) + "\n" for i in range(len(traj))),
    )


# ----------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class PoseFormat:
    """One registered pose file format.

    ``names_images``: its poses name their images (``metadata['names']``), so frames are matched to
    poses by file name; ``has_times``: its files hold timestamps (KITTI: only with its times file).
    """

    name: str
    description: str
    extensions: tuple[str, ...]
    reader: Callable[..., PoseTrajectory] = field(repr=False)
    writer: Callable[..., None] = field(repr=False)
    names_images: bool = False
    has_times: bool = True


#: Registered formats by name, in detection-listing order.
FORMATS: dict[str, PoseFormat] = {
    f.name: f
    for f in (
        PoseFormat("tum", f"TUM RGB-D: '{_TUM_LAYOUT}'", (".txt",), _read_tum, _write_tum),
        PoseFormat("euroc", f"EuRoC ground truth CSV: '{_EUROC_LAYOUT}'", (".csv",), _read_euroc, _write_euroc),
        PoseFormat("kitti", f"KITTI odometry: '{_KITTI_LAYOUT}' + <stem>_times.txt", (".txt",), _read_kitti, _write_kitti),
        PoseFormat("colmap", f"COLMAP images.txt: '{colmap.TEXT_LAYOUT}'", (".txt",), colmap.read_text, colmap.write_text,
                   names_images=True, has_times=False),
        PoseFormat("colmap_bin", f"COLMAP {colmap.BINARY_LAYOUT}", (".bin",), colmap.read_binary, colmap.write_binary,
                   names_images=True, has_times=False),
        PoseFormat("nerf", f"NeRF / instant-ngp / nerfstudio transforms.json: {nerf.LAYOUT}", (".json",),
                   nerf.read_transforms, nerf.write_transforms, names_images=True, has_times=False),
        PoseFormat("arkit", f"ARKit CSV: {_ARKIT_LAYOUT}", (".csv",), _read_arkit, _write_arkit),
        PoseFormat("advio", f"ADVIO arkit.csv: '{_ADVIO_LAYOUT}'", (".csv",), _read_advio, _write_advio),
        PoseFormat("imu", f"phone gyroscope CSV: '{sensorlogs.IMU_LAYOUT}'", (".csv", ".txt"), sensorlogs.read_imu,
                   sensorlogs.write_imu),
        PoseFormat("orientation", f"phone orientation CSV: {sensorlogs.ORIENTATION_LAYOUT}", (".csv",),
                   sensorlogs.read_orientation, sensorlogs.write_orientation),
    )
}


def _known() -> str:
    return "; ".join(f"{f.name} ({f.description})" for f in FORMATS.values())


def _get_format(name: str) -> PoseFormat:
    fmt = FORMATS.get(str(name).lower())
    if fmt is None:
        raise PoseFormatError(f"unknown pose format {name!r}; known formats: {', '.join(FORMATS)}")
    return fmt


# ----------------------------------------------------------------------------------------------------
# Detection


_MODEL_FILES = ("images.bin", "images.txt", "transforms.json")


def resolve_pose_path(path: PathLike) -> Path:
    """``path``, or for a folder the one pose file in it (a COLMAP model folder such as ``sparse/0``
    holds ``images.bin`` or ``images.txt``; a NeRF scene ``transforms.json``)."""
    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"pose file not found: {path}")
        return path
    found = [path / n for n in _MODEL_FILES if (path / n).is_file()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise PoseFormatError(f"{path} is a folder without a pose file (looked for {', '.join(_MODEL_FILES)}); give the pose file")
    raise AmbiguousFormatError(
        f"{path} holds {' and '.join(p.name for p in found)}: give one of them as the pose file", [p.name for p in found]
    )


def _ambiguous(path: Path, where: str, candidates: dict[str, str]) -> AmbiguousFormatError:
    listed = "; ".join(f"{name} ({why})" for name, why in candidates.items())
    return AmbiguousFormatError(
        f"{path}{where}: ambiguous pose format, it could be {listed}. Give the format explicitly "
        f"(--format {'|'.join(candidates)}, or format=... in Python)",
        list(candidates),
    )


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start < len(head) - 4  # a multi-byte character cut at the end of the block is still text
    return False


def _advio_by_path(path: Path) -> bool:
    """ADVIO's pose files are ``.../advio-NN/iphone/arkit.csv``: the path says so."""
    parts = [p.lower() for p in path.resolve().parts]
    return any("advio" in p for p in parts) or (parts[-1] == "arkit.csv" and len(parts) > 1 and parts[-2] == "iphone")


def _looks_like_quaternion(values: list[float]) -> bool:
    return abs(math.sqrt(sum(v * v for v in values)) - 1.0) < 1e-2


def _looks_like_rotation(values: list[float]) -> bool:
    R = np.asarray(values, dtype=np.float64).reshape(3, 4)[:, :3]
    return bool(np.abs(R.T @ R - np.eye(3)).max() < 1e-2)


def _detect_csv_header(path: Path, where: str, head: list[str]) -> str:
    names = set(head)
    if {"qx", "qy", "qz", "qw"} <= names:
        has_position = all({a, b} & names for a, b in (("tx", "x"), ("ty", "y"), ("tz", "z")))
        return "arkit" if has_position else "orientation"
    if "q_rs_w" in names or "p_rs_r_x" in names:
        return "euroc"
    explicit = {n for axis in sensorlogs.GYRO_NAMES.values() for n in axis[:-1]}  # all but the bare x, y, z
    if names & explicit:
        return "imu"
    if {"x", "y", "z"} <= names and names & set(sensorlogs.TIME_NAMES):
        sensor = sensorlogs.sensor_of_name(path)
        if sensor == "gyroscope":
            return "imu"
        if sensor is not None:
            article = "an" if sensor[0] in "aeiou" else "a"
            raise PoseFormatError(
                f"{path}: {article} {sensor} log (columns x, y, z by its name), not a pose file; viewgp reads the gyroscope "
                "log (Gyroscope.csv, format imu) and the orientation log (Orientation.csv, format orientation)"
            )
        raise _ambiguous(path, where, {"imu": "if its x, y, z are gyroscope rates in rad/s; the file name does not say"})
    raise PoseFormatError(
        f"{path}{where}: cannot detect the pose format from the header {','.join(head)!r}. Known formats: {_known()}. "
        "Give the format explicitly (--format NAME, or format=... in Python)."
    )


def _detect_text(path: Path) -> str:
    lines = read_text_lines(path)[:200]
    first_i = next((k for k, s in enumerate(lines) if s.strip() and not s.lstrip().startswith("#")), None)
    if first_i is None:
        raise PoseFormatError(
            f"{path}: cannot detect the pose format of a file with no data lines (empty, or only comments). "
            f"Known formats: {_known()}"
        )
    first = lines[first_i].strip()
    where = f":{first_i + 1}"
    if "," in first:
        # The readers take the first non-blank line as the header when it is not numeric ('#' allowed).
        top = next(s.strip() for s in lines if s.strip())
        cand = split_fields(top.lstrip("#").strip(), ",")
        if not is_number(cand[0]) and len(cand) > 1:
            return _detect_csv_header(path, where, [h.split("[")[0].split("(")[0].strip().lower() for h in cand])
        if any("q_rs_w" in s.lower() for s in lines if s.lstrip().startswith("#")):
            return "euroc"
        toks = split_fields(first, ",")
        n = len(toks)
        digits = toks[0].lstrip("-")
        if digits.isdigit() and len(digits) >= 16:
            return "euroc"
        if n == 8:
            if _advio_by_path(path):
                return "advio"
            raise _ambiguous(path, where, {
                "advio": "t, x, y, z, qw, qx, qy, qz; the path does not say ADVIO",
                "arkit": "needs its header line, which this file lacks",
            })
        if n in (4, 7):
            return "imu"
    else:
        toks = first.split()
        n = len(toks)
        numeric = [is_number(t) for t in toks]
        if n >= 10 and all(numeric[:9]) and not numeric[9]:
            return "colmap"
        if all(numeric) and n >= 8:
            vals = [float(t) for t in toks]
            quat = _looks_like_quaternion(vals[4:8])
            # A TUM row with 4 extra columns whose fields 1-3, 5-7, 9-11 form a rotation is not met in practice.
            if n == 12 and _looks_like_rotation(vals):
                return "kitti"
            if n == 8 or quat:
                return "tum"
    sep = "comma" if "," in first else "whitespace"
    raise PoseFormatError(
        f"{path}{where}: cannot detect the pose format (first data line has {len(toks)} {sep}-separated "
        f"fields: {first[:80]!r}). Known formats: {_known()}. Name the format to read it explicitly: --format NAME "
        "on the command line, read_poses(path, format=NAME) in Python."
    )


def detect_format(path: PathLike) -> str:
    """The format of a pose file, from its name and content; refuses to guess between readings.

    Rules: a folder is resolved by :func:`resolve_pose_path`. A JSON object with ``frames`` holding
    ``transform_matrix`` -> nerf. A binary file named ``images.bin`` (or any ``.bin``) -> colmap_bin.
    Whitespace-separated text, first data line: >= 10 fields with a non-numeric 10th (an image name) ->
    colmap; 12 numbers whose 3x3 block is a rotation -> kitti; 8 or more numbers with a unit
    quaternion in fields 5-8 -> tum (extra columns kept). Comma-separated with a header (first
    non-blank line, ``#`` allowed) naming qx..qw and a position -> arkit, qx..qw without a position
    -> orientation, EuRoC's ``q_RS_w`` -> euroc, gyroscope names (gx, gyro_x, w_RS_S_x) -> imu,
    ``x, y, z`` -> imu only when the file name says gyroscope. Headerless CSV: a nanosecond
    (>= 16 digit) stamp -> euroc; 8 columns -> advio when the path names ADVIO, else ambiguous;
    4 or 7 columns -> imu. Raises :class:`AmbiguousFormatError` with the candidates where more than
    one format fits, :class:`PoseFormatError` listing the known formats where none does.
    """
    path = resolve_pose_path(path)
    name = path.name.lower()
    if name in ("cameras.txt", "cameras.bin", "points3d.txt", "points3d.bin"):
        raise PoseFormatError(f"{path}: this is a COLMAP {name.split('.')[0]} file; give the model's images{path.suffix} as the pose file")
    if _is_binary(path):
        if path.suffix.lower() == ".bin":
            return "colmap_bin"
        raise PoseFormatError(f"{path}: a binary file that is not a COLMAP images.bin. Known formats: {_known()}")
    if path.suffix.lower() == ".json" or (read_text_lines(path) or [""])[0].lstrip().startswith("{"):
        if nerf.looks_like_transforms(path):
            return "nerf"
        raise PoseFormatError(f"{path}: a JSON file but not a transforms.json ({nerf.LAYOUT})")
    return _detect_text(path)


# ----------------------------------------------------------------------------------------------------
# Reading and writing


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
        path: the pose file, or a folder holding one (:func:`resolve_pose_path`: a COLMAP model folder).
        format: a name in :data:`FORMATS`; ``None`` detects it (:func:`detect_format`).
        times_path: KITTI: the ``times.txt`` (default: ``<stem>_times.txt`` beside ``path`` if it
            exists, else the frame index); ADVIO: a ``frames.csv`` at whose times the poses are
            interpolated. Ignored by the other formats.
        reorthonormalize: project 3x3 rotation matrices read from text (KITTI, transforms.json) onto
            SO(3) after they pass the ``rotation_atol`` check (printed rotations carry ~1e-7 noise).
        rotation_atol: largest ``|R^T R - I|`` accepted for a matrix; beyond it the error names the line.
        quat_atol: largest ``| |q| - 1 |`` accepted for a quaternion (4-decimal files reach ~1e-4).
        **options: format-specific: colmap/colmap_bin ``time_from='index'|'name'``, ``order='name'|'id'``,
            ``cameras_path``; nerf ``order='name'|'file'``; advio and orientation
            ``camera_axes='opengl'|'opencv'``; imu and orientation ``time_unit='s'|'ms'|'us'|'ns'``;
            imu ``initial_rotation`` (3, 3).
    """
    path = resolve_pose_path(path)
    fmt = _get_format(format) if format is not None else FORMATS[detect_format(path)]
    opts = ReadOptions(reorthonormalize=reorthonormalize, rotation_atol=rotation_atol, quat_atol=quat_atol)
    return fmt.reader(path, opts, times_path, **options)


def write_poses(path: PathLike, traj: PoseTrajectory, format: str, *, times_path: Optional[PathLike] = None, **options) -> None:
    """Write ``traj`` (camera-to-world, OpenCV axes) in ``format``, converting to that format's convention.

    Floats are written with ``repr`` (exact round trip). KITTI also writes the times file
    (``times_path``, default ``<stem>_times.txt`` beside ``path``); COLMAP the cameras file beside the
    images file when the intrinsics are known. Files are replaced atomically. The imu and orientation
    writers warn that translations (imu: and a non-identity first orientation) are not stored.
    """
    if not isinstance(traj, PoseTrajectory):
        raise TypeError(f"write_poses: expected a PoseTrajectory, got {type(traj).__name__}")
    _get_format(format).writer(Path(path), traj, times_path, **options)
