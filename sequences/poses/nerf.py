"""NeRF / instant-ngp / nerfstudio ``transforms.json``: camera-to-world poses and intrinsics of posed images.

The file is a JSON object with a ``frames`` list; each frame has ``file_path`` (relative to the
JSON file's folder, with or without the image extension: the original NeRF scenes write
``./train/r_0`` for ``train/r_0.png``) and ``transform_matrix``, the 4x4 **camera-to-world** matrix
in **OpenGL camera axes** (x right, y up, z backward). We convert to OpenCV axes:
``R_cv = R_gl @ diag(1, -1, -1)``, camera centre unchanged; the world frame is the file's (instant-ngp's
``colmap2nerf`` and nerfstudio re-orient and re-scale COLMAP's world; ``scale``, ``offset`` and
``applied_transform`` are kept in ``metadata['nerf_fields']``, not applied).

Intrinsics: ``fl_x``/``fl_y`` (pixels) or ``camera_angle_x``/``camera_angle_y`` (field of view,
radians), ``cx``/``cy`` (default the image centre), ``w``/``h``, shared at the top level or per frame
(a frame's value wins). nerfstudio's and instant-ngp's pixel coordinates put the centre of the top-left
pixel at (0.5, 0.5) (the default ``cx = w / 2`` is the image centre); ours at (0, 0), so
``cx = cx_nerf - 0.5``. Distortion (``k1 k2 k3 k4 p1 p2``, ``camera_model``) is kept in
``metadata['distortion']``, not applied.

Frames carry no timestamps: they are ordered by ``file_path`` (natural sort; ``order='file'`` keeps
the listed order) and their timestamps are their index, marked ``metadata['has_times'] = False``.
A per-frame ``time`` (D-NeRF, in [0, 1]) is kept in ``metadata['frame_times']`` and not taken for seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from generative.images.fileio import atomic_write_text
from sequences.poses.posefile import GL_TO_CV, PoseFormatError, ReadOptions, checked_matrices, meta_list, natural_key
from sequences.poses.trajectory import PoseTrajectory

__all__ = ["LAYOUT", "read_transforms", "write_transforms", "intrinsics_from_fields", "looks_like_transforms"]

LAYOUT = "JSON object with 'frames': [{'file_path': ..., 'transform_matrix': 4x4 camera-to-world, OpenGL axes}, ...]"

_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
#: Pixel coordinates of nerfstudio / instant-ngp minus ours (see the module docstring).
_PIXEL_SHIFT = 0.5


def looks_like_transforms(path: Path) -> bool:
    """Whether the JSON file ``path`` is an object with a ``frames`` list whose first entry has a
    ``transform_matrix``; invalid JSON is a :class:`PoseFormatError` naming the line."""
    doc = _parse(path)
    frames = doc.get("frames") if isinstance(doc, dict) else None
    return bool(frames) and isinstance(frames, list) and isinstance(frames[0], dict) and "transform_matrix" in frames[0]


def intrinsics_from_fields(fields: dict, width: Optional[int] = None, height: Optional[int] = None) -> Optional[np.ndarray]:
    """``K (3, 3)`` in our pixel convention from ``fl_x``/``camera_angle_x``, ``cx``, ``cy``, ``w``, ``h``.

    ``width``/``height`` (pixels of the actual images) stand in for missing ``w``/``h``. ``None`` when
    no focal length can be formed (no ``fl_x`` and no ``camera_angle_x`` with a known width).
    """
    w = fields.get("w", width)
    h = fields.get("h", height)
    fx = fields.get("fl_x")
    if fx is None and "camera_angle_x" in fields and w is not None:
        fx = 0.5 * float(w) / math.tan(0.5 * float(fields["camera_angle_x"]))
    if fx is None:
        return None
    fy = fields.get("fl_y")
    if fy is None and "camera_angle_y" in fields and h is not None:
        fy = 0.5 * float(h) / math.tan(0.5 * float(fields["camera_angle_y"]))
    fy = fx if fy is None else fy
    cx, cy = fields.get("cx"), fields.get("cy")
    if cx is None or cy is None:
        if w is None or h is None:
            return None
        cx = 0.5 * float(w) if cx is None else cx
        cy = 0.5 * float(h) if cy is None else cy
    return np.array([[fx, 0.0, cx - _PIXEL_SHIFT], [0.0, fy, cy - _PIXEL_SHIFT], [0.0, 0.0, 1.0]], dtype=np.float64)


class _Frames:
    """Error context of a transforms.json: messages name the frame and its ``file_path``."""

    def __init__(self, path: Path, names: list[str]) -> None:
        self.path, self.names = path, names

    def error(self, i: int, message: str) -> PoseFormatError:
        return PoseFormatError(f"{self.path}: frame {i + 1} ({self.names[i]!r}): {message}")


def _parse(path: Path):
    try:
        with open(path, "r", encoding="utf-8-sig") as fh:
            return json.load(fh)
    except UnicodeDecodeError as e:
        raise PoseFormatError(f"{path}: not a text file ({e})") from None
    except json.JSONDecodeError as e:
        raise PoseFormatError(f"{path}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None


def _load(path: Path) -> dict:
    doc = _parse(path)
    frames = doc.get("frames") if isinstance(doc, dict) else None
    if not isinstance(frames, list) or not frames:
        raise PoseFormatError(f"{path}: no 'frames' list (expected {LAYOUT})")
    return doc


def _number(value, what: str, err) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise err(f"{what} is {value!r}, not a number") from None
    if not math.isfinite(v):
        raise err(f"{what} is not finite ({value!r})")
    return v


def _matrix(frame: dict, i: int, ctx: _Frames) -> np.ndarray:
    raw = frame.get("transform_matrix")
    try:
        M = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ctx.error(i, "transform_matrix is not a 4x4 list of numbers") from None
    if M.shape == (3, 4):
        M = np.vstack([M, [0.0, 0.0, 0.0, 1.0]])
    if M.shape != (4, 4):
        raise ctx.error(i, f"transform_matrix has shape {M.shape}, expected 4x4 (or 3x4)")
    if not np.isfinite(M).all():
        raise ctx.error(i, "transform_matrix has a non-finite entry")
    if np.abs(M[3] - (0.0, 0.0, 0.0, 1.0)).max() > 1e-6:
        raise ctx.error(i, f"transform_matrix last row is {M[3].tolist()}, expected [0, 0, 0, 1]")
    return M


def read_transforms(path: Path, opts: ReadOptions, times_path=None, order: str = "name") -> PoseTrajectory:
    """Read a ``transforms.json`` (see the module docstring); ``order``: 'name' or 'file'."""
    if order not in ("name", "file"):
        raise ValueError(f"nerf: order must be 'name' or 'file', got {order!r}")
    doc = _load(path)
    frames = doc["frames"]
    names = []
    for i, f in enumerate(frames):
        if not isinstance(f, dict) or not isinstance(f.get("file_path"), str) or "transform_matrix" not in f:
            raise PoseFormatError(f"{path}: frame {i + 1} lacks 'file_path' or 'transform_matrix' (expected {LAYOUT})")
        names.append(f["file_path"][2:] if f["file_path"].startswith("./") else f["file_path"])
    ctx = _Frames(path, names)
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise ctx.error(i, f"file_path appears twice (also frame {seen[n] + 1}); frames are matched by name")
        seen[n] = i
    M = np.stack([_matrix(f, i, ctx) for i, f in enumerate(frames)])
    R = checked_matrices(ctx, np.ascontiguousarray(M[:, :3, :3]), opts) @ GL_TO_CV
    perm = (np.asarray(sorted(range(len(names)), key=lambda i: natural_key(names[i])), dtype=np.int64)
            if order == "name" else np.arange(len(names)))
    shared = {k: _number(doc[k], k, lambda m: PoseFormatError(f"{path}: {m}")) for k in _INTRINSIC_KEYS if k in doc}
    per_frame = []
    for i, f in enumerate(frames):
        own = {k: _number(f[k], k, lambda m, i=i: ctx.error(i, m)) for k in _INTRINSIC_KEYS if k in f}
        per_frame.append({**shared, **own})
    meta = {
        "path": str(path),
        "format": "nerf",
        "convention": "camera-to-world with OpenGL camera axes; converted to OpenCV axes",
        "names": [names[i] for i in perm],
        "has_times": False,
        "times_source": "none: frame index (ordered by file_path)" if order == "name" else "none: frame index (file order)",
        "nerf_fields": {k: v for k, v in doc.items() if k != "frames" and k not in _INTRINSIC_KEYS and k not in _DISTORTION_KEYS},
    }
    meta.update(_intrinsics_meta([per_frame[i] for i in perm]))
    dist = {k: doc[k] for k in _DISTORTION_KEYS if k in doc}
    if dist:
        meta["distortion"] = dict(model=str(doc.get("camera_model", "OPENCV")), **dist)
    if any("time" in f for f in frames):
        meta["frame_times"] = [frames[i].get("time") for i in perm]
    return PoseTrajectory(np.arange(len(names), dtype=np.float64), R[perm], M[perm, :3, 3], source_format="nerf",
                          metadata=meta)


def _intrinsics_meta(fields: list[dict]) -> dict:
    """``camera`` (the fields, when every frame shares them), ``intrinsics`` and ``image_size`` when known."""
    distinct = {tuple(sorted(f.items())) for f in fields}
    if len(distinct) != 1:
        return {"camera": None, "camera_per_frame": fields}
    f = fields[0]
    out: dict = {"camera": f or None}
    K = intrinsics_from_fields(f)
    if K is not None:
        out["intrinsics"] = K.tolist()
    if "w" in f and "h" in f:
        out["image_size"] = [int(f["w"]), int(f["h"])]
    return out


def write_transforms(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    """``transforms.json`` with the poses (OpenGL axes), shared intrinsics and distortion when known."""
    n = len(traj)
    names = meta_list(traj, "names") or [f"images/frame_{i:06d}.png" for i in range(n)]
    doc: dict = {}
    K, size = traj.metadata.get("intrinsics"), traj.metadata.get("image_size")
    if K is not None:
        K = np.asarray(K, dtype=np.float64)
        doc.update(fl_x=float(K[0, 0]), fl_y=float(K[1, 1]), cx=float(K[0, 2]) + _PIXEL_SHIFT, cy=float(K[1, 2]) + _PIXEL_SHIFT)
    if size is not None:
        doc.update(w=int(size[0]), h=int(size[1]))
    dist = traj.metadata.get("distortion")
    if dist:
        doc["camera_model"] = str(dist.get("model", "OPENCV"))
        doc.update({k: float(v) for k, v in dist.items() if k in _DISTORTION_KEYS})
    doc.update(traj.metadata.get("nerf_fields") or {})
    R_gl = traj.rotations @ GL_TO_CV
    frames = []
    for i in range(n):
        M = np.eye(4)
        M[:3, :3], M[:3, 3] = R_gl[i], traj.translations[i]
        frames.append({"file_path": str(names[i]), "transform_matrix": M.tolist()})
    doc["frames"] = frames
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
