"""3D-R2N2 ShapeNet renderings (``ShapeNetRendering/<synset>/<object>/rendering/``) as camera runs.

A rendering folder holds ``00.png ... 23.png`` (RGBA, 137x137, transparent background), an optional
``renderings.txt`` listing them, and ``rendering_metadata.txt`` with one line per image::

    azimuth elevation in_plane_rotation distance_ratio fov        (degrees, degrees, degrees, -, degrees)

What the numbers mean, from the renderer that wrote them (chrischoy/3D-R2N2
``lib/blender_renderer.py``, ``setViewpoint``; the same camera as meshrcnn/pytorch3d's
``compute_extrinsic_matrix``):

* the camera sits at ``distance = distance_ratio * 1.75`` (``MAX_CAMERA_DIST``) from the origin on
  the +x axis of a parent frame rotated by the Blender 'XYZ' Euler angles
  ``(-in_plane, -elevation, -azimuth)``; so in Blender's world (z up) its centre is
  ``d (cos el cos az, -cos el sin az, sin el)`` - azimuth turns *clockwise* seen from above - and it
  looks at the origin with up = +z, rolled by the in-plane angle about its optical axis (always 0
  in the released data);
* Blender imported each ShapeNet ``model.obj`` (y up) rotated +90 degrees about x: a model point
  ``(x, y, z)`` is at ``(x, -z, y)`` in the Blender world. ``frame="shapenet"`` expresses poses in
  the model's own coordinates instead (what meshrcnn/pytorch3d do);
* the ``fov`` column (25) is written but never applied by that renderer, so the images have
  Blender's default camera: a 35 mm lens on a 32 mm sensor, i.e. ``fov = 2 atan(16/35) = 49.13``
  degrees across the image width (meshrcnn's ``BLENDER_INTRINSIC`` has the same 2.1875 = 2 * 35/32).
  ``fov="metadata"`` uses the column anyway.

Poses are returned in the viewgp convention: camera-to-world, OpenCV camera axes (x right, y down,
z forward). Frames are composited over ``background`` with the alpha channel. Timestamps are the
view index (R2N2 viewpoints are random, not a sequence).

It lives beside its only user, ``tests/test_r2n2.py``: no command or example reads R2N2 folders, so it is
not part of the installed packages.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from generative.images.imageio import read_image
from sequences.run import CameraRun

__all__ = [
    "MAX_CAMERA_DISTANCE",
    "BLENDER_DEFAULT_FOV_DEG",
    "METADATA_FILE",
    "read_r2n2_metadata",
    "r2n2_pose",
    "r2n2_poses",
    "read_r2n2_object",
    "iter_r2n2",
]

#: Camera distance for ``distance_ratio = 1`` (R2N2's ``cfg.RENDERING.MAX_CAMERA_DIST``).
MAX_CAMERA_DISTANCE = 1.75
#: Horizontal field of view of Blender's default camera (35 mm lens, 32 mm sensor), degrees.
BLENDER_DEFAULT_FOV_DEG = math.degrees(2 * math.atan(16.0 / 35.0))
METADATA_FILE = "rendering_metadata.txt"
_COLUMNS = "azimuth elevation in_plane_rotation distance_ratio fov"

PathLike = Union[str, os.PathLike]

# Model (ShapeNet, y up) -> Blender world (z up): (x, y, z) -> (x, -z, y).
_BLENDER_FROM_SHAPENET = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_CV_FROM_GL = np.diag([1.0, -1.0, -1.0])


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# The camera object's own rotation (Blender 'ZXY' Euler (0, 90, 90) = Ry(90) Rx(0) Rz(90)):
# it looks along the parent's -x with up +z (OpenGL camera axes).
_CAMERA_LOCAL_GL = _ry(math.pi / 2) @ _rz(math.pi / 2)


def r2n2_pose(
    azimuth: float, elevation: float, in_plane: float = 0.0, distance_ratio: float = 1.0, frame: str = "blender"
) -> tuple[np.ndarray, np.ndarray]:
    """Camera-to-world ``(R (3, 3), t (3,))`` (OpenCV axes) of one R2N2 viewpoint (module docstring).

    ``frame``: ``"blender"`` (z-up world the images were rendered in) or ``"shapenet"`` (the
    model's own y-up coordinates).
    """
    if frame not in ("blender", "shapenet"):
        raise ValueError(f"frame must be 'blender' or 'shapenet', got {frame!r}")
    parent = _rz(math.radians(-azimuth)) @ _ry(math.radians(-elevation)) @ _rx(math.radians(-in_plane))
    t = parent @ np.array([distance_ratio * MAX_CAMERA_DISTANCE, 0.0, 0.0])
    R = parent @ _CAMERA_LOCAL_GL @ _CV_FROM_GL
    if frame == "shapenet":
        R, t = _BLENDER_FROM_SHAPENET.T @ R, _BLENDER_FROM_SHAPENET.T @ t
    return R, t


def r2n2_poses(metadata: np.ndarray, frame: str = "blender") -> tuple[np.ndarray, np.ndarray]:
    """Poses of all rows of a ``(N, 5)`` metadata array: rotations ``(N, 3, 3)``, centres ``(N, 3)``."""
    pairs = [r2n2_pose(a, e, r, d, frame) for a, e, r, d, _ in np.asarray(metadata, dtype=np.float64)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def read_r2n2_metadata(path: PathLike) -> np.ndarray:
    """``rendering_metadata.txt`` -> ``(N, 5)`` float64 (azimuth, elevation, in-plane, ratio, fov).

    Blank lines are ignored. A line with a wrong number of values, a non-number, a non-positive
    distance ratio or a field of view outside (0, 180) raises ``ValueError`` naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"R2N2 metadata file not found: {path}")
    rows = []
    with open(path, "r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            vals = line.split()
            if not vals:
                continue
            if len(vals) != 5:
                raise ValueError(f"{path}:{lineno}: expected 5 values ({_COLUMNS}), got {len(vals)}: {line.strip()!r}")
            try:
                row = [float(v) for v in vals]
            except ValueError:
                raise ValueError(f"{path}:{lineno}: not a number in {line.strip()!r}") from None
            if not all(math.isfinite(v) for v in row):
                raise ValueError(f"{path}:{lineno}: non-finite value in {line.strip()!r}")
            if row[3] <= 0:
                raise ValueError(f"{path}:{lineno}: distance ratio must be positive, got {vals[3]}")
            if not 0 < row[4] < 180:
                raise ValueError(f"{path}:{lineno}: field of view must be in (0, 180) degrees, got {vals[4]}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no viewpoints")
    return np.asarray(rows, dtype=np.float64)


def _rendering_dir(directory: Path) -> Path:
    if (directory / METADATA_FILE).is_file():
        return directory
    if (directory / "rendering" / METADATA_FILE).is_file():
        return directory / "rendering"
    if not directory.is_dir():
        raise FileNotFoundError(f"R2N2 folder not found: {directory}")
    where = directory / "rendering" if (directory / "rendering").is_dir() else directory
    raise ValueError(f"{where}: no {METADATA_FILE} (expected an R2N2 'rendering' folder)")


def _image_names(rdir: Path) -> list[str]:
    listing = rdir / "renderings.txt"
    if listing.is_file():
        names = [ln.strip() for ln in listing.read_text(encoding="utf-8").splitlines() if ln.strip()]
        missing = [n for n in names if not (rdir / n).is_file()]
        if missing:
            raise ValueError(f"{listing}: lists {len(missing)} missing image(s), first {missing[0]!r}")
        return names
    return sorted((p.name for p in rdir.glob("*.png") if re.fullmatch(r"\d+", p.stem)), key=lambda n: int(Path(n).stem))


def read_r2n2_object(
    directory: PathLike,
    background=(255, 255, 255),
    frame: str = "blender",
    fov: str = "blender",
) -> CameraRun:
    """One object's R2N2 renderings as a :class:`CameraRun`.

    Args:
        directory: the object folder (containing ``rendering/``) or the ``rendering`` folder.
        background: RGB colour the transparent background is composited on.
        frame: world frame of the poses, ``"blender"`` (z up) or ``"shapenet"`` (model coordinates).
        fov: ``"blender"`` (the renderer's actual 49.13 degrees) or ``"metadata"`` (the file's column).
    Raises:
        ``ValueError`` for a missing metadata file, a malformed line (with its number), or a
        number of images that differs from the number of metadata lines.
    """
    if fov not in ("blender", "metadata"):
        raise ValueError(f"fov must be 'blender' or 'metadata', got {fov!r}")
    bg = np.asarray(background, dtype=np.float64).reshape(-1)
    if bg.shape != (3,) or (bg < 0).any() or (bg > 255).any():
        raise ValueError(f"background must be an RGB triple in 0..255, got {background}")
    rdir = _rendering_dir(Path(directory))
    meta = read_r2n2_metadata(rdir / METADATA_FILE)
    names = _image_names(rdir)
    if len(names) != len(meta):
        raise ValueError(
            f"{rdir}: {len(names)} images but {len(meta)} viewpoints in {METADATA_FILE}; they must correspond one to one"
        )
    images = [read_image(rdir / n, background=bg) for n in names]  # alpha composited over the background
    for name, img in zip(names, images):
        if img.shape != images[0].shape:
            raise ValueError(f"{rdir / name}: size {img.shape[:2]} differs from {names[0]}'s {images[0].shape[:2]}")
    frames = np.stack(images)
    n, h, w = frames.shape[:3]
    if fov == "metadata":
        fovs = np.unique(meta[:, 4])
        if len(fovs) > 1:
            raise ValueError(f"{rdir / METADATA_FILE}: the fov column varies ({fovs.tolist()}); one intrinsic matrix per run")
        fov_deg = float(fovs[0])
    else:
        fov_deg = BLENDER_DEFAULT_FOV_DEG
    f = (max(w, h) / 2) / math.tan(math.radians(fov_deg) / 2)  # Blender's sensor fit: the larger side
    K = np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])
    R, T = r2n2_poses(meta, frame)
    obj_dir = rdir.parent if rdir.name == "rendering" else rdir
    info = {
        "source_format": "r2n2",
        "directory": str(rdir),
        "object_id": obj_dir.name,
        "synset": obj_dir.parent.name,
        "images": names,
        "azimuth_deg": meta[:, 0].tolist(),
        "elevation_deg": meta[:, 1].tolist(),
        "in_plane_deg": meta[:, 2].tolist(),
        "distance_ratio": meta[:, 3].tolist(),
        "fov_column_deg": meta[:, 4].tolist(),
        "fov_deg": fov_deg,
        "frame": frame,
        "background": bg.tolist(),
        "timestamps": "view index",
    }
    return CameraRun(frames, np.arange(n, dtype=np.float64), R, T, intrinsics=K, metadata=info)


def iter_r2n2(
    root: PathLike, synsets: Optional[Sequence[str]] = None, **kwargs
) -> Iterator[CameraRun]:
    """Runs of every object under ``root/<synset>/<object>/rendering`` (sorted by synset, object).

    ``synsets`` restricts the categories (ids such as ``"03001627"`` for chairs); ``kwargs`` go to
    :func:`read_r2n2_object`. Object folders without a ``rendering`` subfolder are skipped with a
    warning; a malformed rendering folder raises.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"R2N2 root not found: {root}")
    wanted = None if synsets is None else {str(s) for s in synsets}
    syn_dirs = sorted(d for d in root.iterdir() if d.is_dir() and (wanted is None or d.name in wanted))
    if wanted is not None:
        missing = wanted - {d.name for d in syn_dirs}
        if missing:
            raise ValueError(f"{root}: synset folder(s) not found: {sorted(missing)}")
    for sdir in syn_dirs:
        for odir in sorted(d for d in sdir.iterdir() if d.is_dir()):
            if not (odir / "rendering").is_dir():
                warnings.warn(f"{odir}: no 'rendering' folder; skipped", stacklevel=2)
                continue
            yield read_r2n2_object(odir, **kwargs)
