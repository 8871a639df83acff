"""COLMAP models: ``images.txt`` / ``images.bin`` poses with ``cameras.txt`` / ``cameras.bin`` intrinsics.

Conventions (the ones :mod:`sequences.poses.formats` lists):

* COLMAP stores **world-to-camera** ``(q, T)`` per image (``x_cam = R(q) x_world + T``, quaternion
  **wxyz**) with OpenCV camera axes; we invert to camera-to-world: ``R = R(q)^T``, ``t = -R(q)^T T``.
* Images carry no time. They are ordered by NAME (natural sort; ``order='id'`` by IMAGE_ID) and the
  trajectory's timestamps are their index, marked ``metadata['has_times'] = False`` so that no caller
  takes them for seconds (``time_from='name'`` parses a time from each name instead).
* Intrinsics come from the cameras file beside the images file. COLMAP's image coordinates put the
  centre of the top-left pixel at (0.5, 0.5); ours (OpenCV, :mod:`sequences.synthetic`) at (0, 0), so
  ``cx = cx_colmap - 0.5`` and ``cy = cy_colmap - 0.5``. Distortion parameters are kept, not applied.

Binary layout (little-endian), as COLMAP writes it: ``images.bin`` = uint64 count, then per image
int32 IMAGE_ID, 4 float64 QW QX QY QZ, 3 float64 TX TY TZ, int32 CAMERA_ID, NAME as bytes ending in
NUL, uint64 point count and that many (float64 X, float64 Y, int64 POINT3D_ID); ``cameras.bin`` =
uint64 count, then per camera int32 CAMERA_ID, int32 MODEL_ID, uint64 WIDTH, uint64 HEIGHT and the
model's float64 parameters.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from generative.images.fileio import atomic_write_bytes, atomic_write_text
from sequences.poses.posefile import (
    PoseFormatError,
    ReadOptions,
    Table,
    fmt_floats,
    meta_list,
    natural_key,
    quaternions_of,
    quats_to_rotations,
    read_text_lines,
)
from sequences.poses.trajectory import PoseTrajectory

__all__ = ["CAMERA_MODELS", "TEXT_LAYOUT", "BINARY_LAYOUT", "read_text", "write_text", "read_binary", "write_binary",
           "camera_intrinsics"]

TEXT_LAYOUT = "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, then a POINTS2D line (X Y POINT3D_ID ...)"
BINARY_LAYOUT = "images.bin (+ cameras.bin): COLMAP's binary model"

#: COLMAP camera models: id -> (name, parameter names). Focal lengths and principal point come first.
CAMERA_MODELS: dict[int, tuple[str, tuple[str, ...]]] = {
    0: ("SIMPLE_PINHOLE", ("f", "cx", "cy")),
    1: ("PINHOLE", ("fx", "fy", "cx", "cy")),
    2: ("SIMPLE_RADIAL", ("f", "cx", "cy", "k")),
    3: ("RADIAL", ("f", "cx", "cy", "k1", "k2")),
    4: ("OPENCV", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
    5: ("OPENCV_FISHEYE", ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4")),
    6: ("FULL_OPENCV", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")),
    7: ("FOV", ("fx", "fy", "cx", "cy", "omega")),
    8: ("SIMPLE_RADIAL_FISHEYE", ("f", "cx", "cy", "k")),
    9: ("RADIAL_FISHEYE", ("f", "cx", "cy", "k1", "k2")),
    10: ("THIN_PRISM_FISHEYE", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "sx1", "sy1")),
}
_MODEL_IDS = {name: i for i, (name, _) in CAMERA_MODELS.items()}

_TEXT_HEADER = (
    "# Image list with two lines of data per image:\n"
    "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
    "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
)
_CAMERAS_HEADER = "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
#: COLMAP pixel coordinates minus ours (see the module docstring).
_PIXEL_SHIFT = 0.5


# ----------------------------------------------------------------------------------------------------
# Cameras


def camera_intrinsics(camera: dict) -> tuple[np.ndarray, dict]:
    """A camera record (``model``, ``width``, ``height``, ``params``) -> ``(K (3, 3), distortion)``.

    ``K`` is in our pixel convention (centre of the top-left pixel at (0, 0)); ``distortion`` maps the
    model's other parameter names to their values (empty for the pinhole models), plus ``model``.
    """
    names = dict(CAMERA_MODELS.values())[camera["model"]]
    p = dict(zip(names, camera["params"]))
    fx = p.get("fx", p.get("f"))
    fy = p.get("fy", p.get("f"))
    K = np.array([[fx, 0.0, p["cx"] - _PIXEL_SHIFT], [0.0, fy, p["cy"] - _PIXEL_SHIFT], [0.0, 0.0, 1.0]])
    dist = {k: v for k, v in p.items() if k not in ("f", "fx", "fy", "cx", "cy")}
    return K, (dict(model=camera["model"], **dist) if dist else {})


def _pinhole_camera(K, size) -> dict:
    K = np.asarray(K, dtype=np.float64)
    return dict(camera_id=1, model="PINHOLE", width=int(size[0]), height=int(size[1]),
                params=[K[0, 0], K[1, 1], K[0, 2] + _PIXEL_SHIFT, K[1, 2] + _PIXEL_SHIFT])


def _camera_record(path: Path, where: str, cid: int, model: str, width: int, height: int, params: list) -> dict:
    if model not in _MODEL_IDS:
        raise PoseFormatError(f"{path}{where}: unknown camera model {model!r}; known: {', '.join(_MODEL_IDS)}")
    want = len(CAMERA_MODELS[_MODEL_IDS[model]][1])
    if len(params) != want:
        raise PoseFormatError(f"{path}{where}: camera model {model} has {want} parameters, got {len(params)}")
    return dict(camera_id=int(cid), model=model, width=int(width), height=int(height), params=[float(v) for v in params])


def _read_cameras_text(path: Path) -> list[dict]:
    cams = []
    for lineno, raw in enumerate(read_text_lines(path), start=1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        toks = s.split()
        try:
            cid, model, w, h, params = int(toks[0]), toks[1], int(toks[2]), int(toks[3]), [float(v) for v in toks[4:]]
        except (ValueError, IndexError):
            raise PoseFormatError(f"{path}:{lineno}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS..., got {s[:80]!r}") from None
        cams.append(_camera_record(path, f":{lineno}", cid, model, w, h, params))
    return cams


def _write_cameras_text(path: Path, cams: list[dict]) -> None:
    lines = [_CAMERAS_HEADER + f"# Number of cameras: {len(cams)}"]
    for c in cams:
        lines.append(" ".join([str(c["camera_id"]), c["model"], str(c["width"]), str(c["height"])] + fmt_floats(c["params"])))
    atomic_write_text(path, "\n".join(lines) + "\n")


class _Reader:
    """Little-endian records from a binary file; running off the end names the file and what was read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def take(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise PoseFormatError(
                f"{self.path}: file ends at byte {len(self.data)} while reading {what} (truncated, or not a COLMAP binary model?)"
            )
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return out

    def skip(self, nbytes: int, what: str) -> None:
        if self.pos + nbytes > len(self.data):
            raise PoseFormatError(f"{self.path}: file ends at byte {len(self.data)} while reading {what} (truncated file?)")
        self.pos += nbytes

    def name(self, what: str) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise PoseFormatError(f"{self.path}: {what}: image name without its terminating NUL byte (truncated file?)")
        raw, self.pos = self.data[self.pos:end], end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PoseFormatError(f"{self.path}: {what}: image name {raw[:40]!r} is not UTF-8") from None

    def count(self, what: str, record_size: int) -> int:
        (n,) = self.take("Q", f"the number of {what}")
        if n * record_size > len(self.data) - self.pos:
            raise PoseFormatError(
                f"{self.path}: says it holds {n} {what} but has only {len(self.data)} bytes (not a COLMAP binary model?)"
            )
        return int(n)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise PoseFormatError(f"{self.path}: {len(self.data) - self.pos} bytes left after the last record (not a COLMAP binary model?)")


def _read_cameras_binary(path: Path) -> list[dict]:
    r = _Reader(path)
    cams = []
    for k in range(r.count("cameras", 24)):
        cid, mid, w, h = r.take("iiQQ", f"camera record {k + 1}")
        if mid not in CAMERA_MODELS:
            raise PoseFormatError(f"{path}: camera record {k + 1}: unknown camera model id {mid} (known: 0-{max(CAMERA_MODELS)})")
        name, pnames = CAMERA_MODELS[mid]
        params = r.take("d" * len(pnames), f"the parameters of camera record {k + 1}")
        cams.append(_camera_record(path, "", cid, name, w, h, list(params)))
    r.end()
    return cams


def _write_cameras_binary(path: Path, cams: list[dict]) -> None:
    out = [struct.pack("<Q", len(cams))]
    for c in cams:
        out.append(struct.pack("<iiQQ", c["camera_id"], _MODEL_IDS[c["model"]], c["width"], c["height"]))
        out.append(struct.pack("<" + "d" * len(c["params"]), *c["params"]))
    atomic_write_bytes(path, b"".join(out))


def _cameras_beside(images_path: Path, cameras_path: Optional[Path]) -> tuple[Optional[list[dict]], Optional[Path]]:
    """The cameras of a model: ``cameras_path``, else ``cameras.bin`` / ``cameras.txt`` beside the images file."""
    if cameras_path is None:
        kinds = (".bin", ".txt") if images_path.suffix.lower() == ".bin" else (".txt", ".bin")
        cameras_path = next((images_path.with_name("cameras" + k) for k in kinds if images_path.with_name("cameras" + k).is_file()), None)
        if cameras_path is None:
            return None, None
    cameras_path = Path(cameras_path)
    if not cameras_path.is_file():
        raise FileNotFoundError(f"COLMAP cameras file not found: {cameras_path}")
    read = _read_cameras_binary if cameras_path.suffix.lower() == ".bin" else _read_cameras_text
    return read(cameras_path), cameras_path


def _cameras_to_write(traj: PoseTrajectory) -> Optional[list[dict]]:
    """The cameras a writer stores: those read with the poses, else one PINHOLE from the intrinsics."""
    cams = traj.metadata.get("cameras")
    if cams:
        return [dict(c) for c in cams]
    K, size = traj.metadata.get("intrinsics"), traj.metadata.get("image_size")
    if K is not None and size is not None:
        return [_pinhole_camera(K, size)]
    return None


# ----------------------------------------------------------------------------------------------------
# Images -> trajectory (shared by the text and the binary reader)


@dataclass
class _Images:
    """Image records as read: ``ids (N,)``, ``qvec (N, 4)`` wxyz world-to-camera, ``tvec (N, 3)``."""

    path: Path
    ids: np.ndarray
    qvec: np.ndarray
    tvec: np.ndarray
    camera_ids: list[int]
    names: list[str]
    error: Callable[[int, str], PoseFormatError]


_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def _time_from_name(name: str) -> Optional[float]:
    found = _NUMBER_RE.findall(Path(name).stem)
    return float(found[-1]) if found else None


def _to_trajectory(im: _Images, opts: ReadOptions, time_from: str, order: str, cameras_path, fmt: str) -> PoseTrajectory:
    if time_from not in ("index", "name"):
        raise ValueError(f"colmap: time_from must be 'index' or 'name', got {time_from!r}")
    if order not in ("name", "id"):
        raise ValueError(f"colmap: order must be 'name' or 'id', got {order!r}")
    if not im.names:
        raise PoseFormatError(f"{im.path}: no images found (empty model, or only comments)")
    seen: dict[str, int] = {}
    for i, n in enumerate(im.names):
        if n in seen:
            raise im.error(i, f"image name {n!r} appears twice (also image {seen[n] + 1}); frames are matched by name")
        seen[n] = i
    R_w2c = quats_to_rotations(im, im.qvec, scalar_first=True, opts=opts)
    R = np.transpose(R_w2c, (0, 2, 1))
    C = -np.einsum("nij,nj->ni", R, im.tvec)
    if time_from == "name":
        parsed = [_time_from_name(n) for n in im.names]
        for i, t in enumerate(parsed):
            if t is None:
                raise im.error(i, f"image name {im.names[i]!r} holds no number to use as a timestamp (time_from='name')")
        times_all = np.asarray(parsed, dtype=np.float64)
        perm = np.argsort(times_all, kind="stable")
        times = times_all[perm]
        same = np.flatnonzero(np.diff(times) <= 0)
        if same.size:
            a, b = int(perm[same[0]]), int(perm[same[0] + 1])
            raise im.error(b, f"image name {im.names[b]!r} gives the same time {times[same[0] + 1]!r} as {im.names[a]!r} "
                           "(time_from='name'); timestamps must be strictly increasing")
    else:
        if order == "name":
            perm = np.asarray(sorted(range(len(im.names)), key=lambda i: natural_key(im.names[i])), dtype=np.int64)
        else:
            perm = np.argsort(im.ids, kind="stable")
        times = np.arange(len(im.names), dtype=np.float64)
    cameras, cpath = _cameras_beside(im.path, cameras_path)
    meta = {
        "path": str(im.path),
        "format": fmt,
        "convention": "file is world-to-camera; converted to camera-to-world, OpenCV camera axes",
        "names": [im.names[i] for i in perm],
        "image_ids": [int(im.ids[i]) for i in perm],
        "camera_ids": [int(im.camera_ids[i]) for i in perm],
        "has_times": time_from == "name",
        "times_source": "image name" if time_from == "name" else f"none: image index (ordered by {order})",
        "cameras": cameras,
        "cameras_path": None if cpath is None else str(cpath),
    }
    meta.update(_shared_intrinsics(cameras, meta["camera_ids"], im.path))
    return PoseTrajectory(times, R[perm], C[perm], source_format=fmt, metadata=meta)


def _shared_intrinsics(cameras: Optional[list[dict]], camera_ids: list[int], path: Path) -> dict:
    """``intrinsics``, ``image_size`` and ``distortion`` when every image uses one camera (else none)."""
    if not cameras:
        return {}
    by_id = {c["camera_id"]: c for c in cameras}
    unknown = sorted(set(camera_ids) - set(by_id))
    if unknown:
        raise PoseFormatError(f"{path}: images refer to CAMERA_ID {unknown[:5]} that the cameras file does not define")
    used = {by_id[i]["camera_id"]: by_id[i] for i in camera_ids}
    distinct = {(c["model"], c["width"], c["height"], tuple(c["params"])) for c in used.values()}
    if len(distinct) != 1:
        return {}
    cam = next(iter(used.values()))
    K, dist = camera_intrinsics(cam)
    return {"intrinsics": K.tolist(), "image_size": [cam["width"], cam["height"]], "distortion": dist or None}


# ----------------------------------------------------------------------------------------------------
# images.txt


def read_text(path: Path, opts: ReadOptions, times_path=None, time_from: str = "index", order: str = "name",
              cameras_path=None) -> PoseTrajectory:
    """COLMAP ``images.txt`` (+ ``cameras.txt``). ``order``: 'name' (natural sort of NAME) or 'id' (IMAGE_ID).
    ``time_from``: 'index' (0, 1, 2, ... in that order; no time) or 'name' (last number in the file
    stem, e.g. ``1305031098.6659.png`` or ``frame_000123.png``; images are then ordered by it)."""
    rows: list[list[str]] = []
    lines: list[int] = []
    expect_points = False
    last = 0
    for lineno, raw in enumerate(read_text_lines(path), start=1):
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
            raise PoseFormatError(f"{path}:{lineno}: expected at least 10 fields ({TEXT_LAYOUT}), got {len(toks)}")
        rows.append(toks[:9] + [" ".join(toks[9:])])
        lines.append(lineno)
        expect_points = True
        last = lineno
    if expect_points:
        raise PoseFormatError(
            f"{path}: file ends after the image line {last} without its POINTS2D line (truncated file?)"
        )
    if not rows:
        raise PoseFormatError(f"{path}: no images found (empty file or only comments); layout: {TEXT_LAYOUT}")
    tab = Table(path, TEXT_LAYOUT, rows, np.asarray(lines, dtype=np.int64))
    a = tab.floats(range(1, 8))
    ids = tab.floats([0, 8])
    for i in range(len(rows)):
        for j, c in enumerate((0, 8)):
            if ids[i, j] != int(ids[i, j]):
                raise tab.error(i, f"column {c + 1}: {rows[i][c]!r} is not an integer id")
    im = _Images(path, ids[:, 0].astype(np.int64), a[:, 0:4], a[:, 4:7], [int(v) for v in ids[:, 1]],
                 [r[9] for r in rows], tab.error)
    return _to_trajectory(im, opts, time_from, order, cameras_path, "colmap")


def _world_to_camera(traj: PoseTrajectory) -> tuple[np.ndarray, np.ndarray, list, list, list]:
    """``(qvec (N, 4) wxyz, tvec (N, 3), ids, camera_ids, names)`` of a camera-to-world trajectory."""
    n = len(traj)
    names = meta_list(traj, "names") or [f"frame_{i:06d}.png" for i in range(n)]
    ids = meta_list(traj, "image_ids") or list(range(1, n + 1))
    cams = meta_list(traj, "camera_ids") or [1] * n
    R_w2c = np.transpose(traj.rotations, (0, 2, 1))
    T_w2c = -np.einsum("nij,nj->ni", R_w2c, traj.translations)
    return quaternions_of(R_w2c, scalar_first=True), T_w2c, ids, cams, names


def write_text(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    """``images.txt``, and ``cameras.txt`` beside it when the intrinsics are known."""
    q, T, ids, cams, names = _world_to_camera(traj)
    out = [_TEXT_HEADER + f"# Number of images: {len(traj)}, written by viewgp (camera-to-world inverted)"]
    for i in range(len(traj)):
        out.append(" ".join([str(int(ids[i]))] + fmt_floats(np.r_[q[i], T[i]]) + [str(int(cams[i])), str(names[i])]))
        out.append("")
    atomic_write_text(path, "\n".join(out) + "\n")
    cameras = _cameras_to_write(traj)
    if cameras is not None:
        _write_cameras_text(path.with_name("cameras.txt"), cameras)


# ----------------------------------------------------------------------------------------------------
# images.bin


def read_binary(path: Path, opts: ReadOptions, times_path=None, time_from: str = "index", order: str = "name",
                cameras_path=None) -> PoseTrajectory:
    """COLMAP ``images.bin`` (+ ``cameras.bin``); options as for :func:`read_text`."""
    r = _Reader(path)
    n = r.count("images", 64 + 1 + 8)
    ids, qt, cams, names = np.empty(n, np.int64), np.empty((n, 7)), [], []
    for k in range(n):
        what = f"image record {k + 1} of {n}"
        rec = r.take("i7di", what)
        ids[k], qt[k], cams_k = rec[0], rec[1:8], rec[8]
        cams.append(int(cams_k))
        names.append(r.name(what))
        (npts,) = r.take("Q", f"the point count of {what}")
        r.skip(24 * int(npts), f"the {npts} 2D points of {what}")  # (X, Y, POINT3D_ID): not needed
    r.end()

    def error(i: int, message: str) -> PoseFormatError:
        return PoseFormatError(f"{path}: image record {i + 1} (IMAGE_ID {int(ids[i])}, {names[i]!r}): {message}")

    im = _Images(path, ids, qt[:, 0:4], qt[:, 4:7], cams, names, error)
    return _to_trajectory(im, opts, time_from, order, cameras_path, "colmap_bin")


def write_binary(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    """``images.bin`` (no 2D points), and ``cameras.bin`` beside it when the intrinsics are known."""
    q, T, ids, cams, names = _world_to_camera(traj)
    out = [struct.pack("<Q", len(traj))]
    for i in range(len(traj)):
        out.append(struct.pack("<i7di", int(ids[i]), *q[i], *T[i], int(cams[i])))
        out.append(str(names[i]).encode("utf-8") + b"\x00" + struct.pack("<Q", 0))
    atomic_write_bytes(path, b"".join(out))
    cameras = _cameras_to_write(traj)
    if cameras is not None:
        _write_cameras_binary(path.with_name("cameras.bin"), cameras)
