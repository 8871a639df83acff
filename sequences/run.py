"""Camera runs: frames with timestamps and camera poses, and pose-only trajectories.

Conventions (the viewgp ones, see :mod:`viewgp.poses`):

* A pose ``(R, t)`` is **camera-to-world**: ``x_world = R @ x_cam + t``; ``t`` is the camera centre.
* Camera axes are **OpenCV**: x right, y down, z forward (the optical axis), so ``R[:, 2]`` is the
  viewing direction in world coordinates. Readers in :mod:`sequences.poses.formats` convert other
  conventions (OpenGL/ARKit, COLMAP world-to-camera) to this one.
* Timestamps are float64 seconds, strictly increasing. Frames are uint8 RGB ``(N, H, W, 3)``.

A :class:`CameraRun` on disk (:meth:`CameraRun.save` / :meth:`CameraRun.load`) is one directory::

    run.json          manifest (version, n, observed mask, intrinsics, metadata, frame list, convention)
    poses.txt         TUM format (t tx ty tz qx qy qz qw), floats written exactly (repr)
    frames/000000.png ... one PNG per frame (absent for pose-only runs)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol, Union, runtime_checkable

import numpy as np
import torch

from generative.images.fileio import atomic_write_text
from generative.images.imageio import read_image, write_image
from sequences.poses.formats import PoseFormatError, read_poses, write_poses
from sequences.poses.trajectory import PoseTrajectory, as_indices, normalize_index, validated_poses
from viewgp.poses import pose_features

# PoseTrajectory lives in sequences.poses.trajectory; it is re-exported here for code written before the move.
__all__ = ["FrameSource", "ImageFileFrames", "read_frame", "PoseTrajectory", "CameraRun", "RUN_FORMAT_VERSION", "CONVENTION"]

#: Version of the run directory layout written by :meth:`CameraRun.save`.
RUN_FORMAT_VERSION = 1

#: The pose convention, recorded in every saved run.
CONVENTION = (
    "camera-to-world (x_world = R x_cam + t, t = camera centre); OpenCV camera axes "
    "(x right, y down, z forward); timestamps in seconds; poses.txt quaternions xyzw"
)


@runtime_checkable
class FrameSource(Protocol):
    """A lazily read sequence of uint8 RGB frames (e.g. a video file); a numpy array satisfies it too.

    * ``len(source)`` is the number of frames ``N``;
    * ``source.shape`` is ``(N, H, W, 3)``;
    * ``source[i]`` (int) gives ``(H, W, 3)`` uint8 (a ``(1, H, W, 3)`` result is accepted too);
      ``source[a:b:k]`` and ``source[index_array]`` give ``(k, H, W, 3)`` uint8, in the order asked.
    """

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


Frames = Union[np.ndarray, FrameSource, None]


# ----------------------------------------------------------------------------------------------------
# Lazy frame views


class _FrameSubset:
    """A lazy view of selected frames of another source (slicing a lazy run must not read video)."""

    def __init__(self, source: FrameSource, indices: np.ndarray) -> None:
        if isinstance(source, _FrameSubset):  # compose instead of stacking views
            indices, source = source.indices[indices], source.source
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.dtype = getattr(source, "dtype", np.dtype(np.uint8))

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.indices),) + tuple(self.source.shape[1:])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return _single_frame(self.source, int(self.indices[key]))
        return np.asarray(self.source[self.indices[key]])


def _single_frame(source, i: int) -> np.ndarray:
    f = np.asarray(source[i])
    return f[0] if f.ndim == 4 else f


class ImageFileFrames:
    """A lazy :class:`FrameSource` over image files of one size, read on demand.

    ``strict`` (a saved run's frames: 8-bit RGB PNGs we wrote) accepts nothing else; otherwise any
    image :func:`generative.images.imageio.read_image` decodes (a posed image folder). A file of another
    size than ``shape[1:]`` is a ``ValueError`` naming it.
    """

    def __init__(self, paths: list[Path], shape: tuple[int, int, int, int], strict: bool = True) -> None:
        self.paths = paths
        self.shape = shape
        self.strict = strict
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return read_frame(self.paths[int(key)], self.shape[1:], self.strict)
        idx = np.arange(len(self.paths))[key]
        out = np.empty((len(idx),) + tuple(self.shape[1:]), dtype=np.uint8)
        for j, i in enumerate(idx):
            out[j] = read_frame(self.paths[int(i)], self.shape[1:], self.strict)
        return out


def read_frame(path: Path, hw3: Optional[tuple[int, ...]] = None, strict: bool = True) -> np.ndarray:
    """One frame image as uint8 RGB ``(H, W, 3)``, checked against the run's frame size ``hw3``."""
    # strict: a saved run's frames are 8-bit RGB PNGs we wrote; anything else means the file was replaced.
    img = read_image(path, strict=strict, what="frame image")
    if hw3 is not None and img.shape != tuple(hw3):
        raise ValueError(f"frame {path}: size {img.shape} differs from the run's frame size {tuple(hw3)}")
    return img


# ----------------------------------------------------------------------------------------------------
# Camera run


def _jsonable(x, where: str):
    """Metadata -> JSON types (numpy arrays become lists); anything else raises naming the key."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist(), where)
    if isinstance(x, torch.Tensor):
        return _jsonable(x.detach().cpu().tolist(), where)
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x)
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    raise ValueError(f"{where}: {type(x).__name__} is not JSON-serialisable; store plain numbers, strings, lists or dicts")


@dataclass(eq=False)
class CameraRun:
    """A camera run: frames, their timestamps and camera-to-world poses, and an observed mask.

    Attributes:
        frames: ``(N, H, W, 3)`` uint8 RGB numpy array, a lazy :class:`FrameSource`, or ``None`` for a
            pose-only run (e.g. query poses of novel views).
        timestamps: ``(N,)`` float64 seconds, strictly increasing.
        rotations: ``(N, 3, 3)`` camera-to-world rotations, OpenCV camera axes (x right, y down,
            z forward).
        translations: ``(N, 3)`` camera centres in the world.
        observed: ``(N,)`` bool; frames marked False are held out (to be interpolated). Default all True.
        intrinsics: ``(3, 3)`` pinhole matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels, or None.
        metadata: free-form, JSON-serialisable for :meth:`save`.
    """

    frames: Frames
    timestamps: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray
    observed: Optional[np.ndarray] = None
    intrinsics: Optional[np.ndarray] = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.timestamps, self.rotations, self.translations = validated_poses(
            self.timestamps, self.rotations, self.translations
        )
        n = self.timestamps.shape[0]
        self._validate_frames(n)
        if self.observed is None:
            self.observed = np.ones(n, dtype=bool)
        else:
            obs = np.asarray(self.observed.detach().cpu() if isinstance(self.observed, torch.Tensor) else self.observed)
            if obs.shape != (n,):
                raise ValueError(f"lengths disagree: observed mask has shape {obs.shape} but there are {n} poses")
            if obs.dtype != bool:
                if not np.isin(obs, (0, 1)).all():
                    raise ValueError(f"observed: expected a boolean mask, got values other than 0/1 ({obs.dtype})")
                obs = obs.astype(bool)
            self.observed = obs.copy()
        if self.intrinsics is not None:
            K = np.array(self.intrinsics, dtype=np.float64)
            if K.shape != (3, 3):
                raise ValueError(f"intrinsics: expected a (3, 3) matrix, got shape {K.shape}")
            if not np.isfinite(K).all():
                raise ValueError("intrinsics: non-finite entries")
            if not np.allclose(K[2], (0.0, 0.0, 1.0)) or K[0, 0] <= 0 or K[1, 1] <= 0:
                raise ValueError(f"intrinsics: expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got {K.tolist()}")
            self.intrinsics = K
        if not isinstance(self.metadata, dict):
            raise ValueError(f"metadata: expected a dict, got {type(self.metadata).__name__}")
        self.metadata = dict(self.metadata)

    def _validate_frames(self, n: int) -> None:
        f = self.frames
        if f is None:
            return
        if isinstance(f, np.ndarray):
            if f.dtype != np.uint8:
                raise ValueError(f"frames: expected uint8 RGB (N, H, W, 3), got dtype {f.dtype}")
            shape = f.shape
        else:
            missing = [a for a in ("__len__", "__getitem__", "shape") if not hasattr(f, a)]
            if missing:
                raise ValueError(
                    f"frames: expected a (N, H, W, 3) uint8 array or a frame source with __len__, __getitem__ and "
                    f".shape; {type(f).__name__} lacks {missing}"
                )
            dtype = getattr(f, "dtype", None)
            if dtype is not None and np.dtype(dtype) != np.uint8:
                raise ValueError(f"frames: the frame source yields {dtype}, expected uint8")
            shape = tuple(f.shape)
            if len(f) != (shape[0] if shape else -1):
                raise ValueError(f"frames: the frame source has len {len(f)} but shape {shape}")
        if len(shape) != 4 or shape[3] != 3:
            raise ValueError(f"frames: expected uint8 RGB of shape (N, H, W, 3), got shape {tuple(shape)}")
        if shape[0] != n:
            raise ValueError(f"lengths disagree: {shape[0]} frames but {n} poses")

    # -- basic access ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def resolution(self) -> Optional[tuple[int, int]]:
        """``(H, W)`` of the frames, or None for a pose-only run."""
        if self.frames is None:
            return None
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    @property
    def frame_rate(self) -> Optional[float]:
        """Frames per second from the median timestamp step (``None`` for fewer than two frames)."""
        if len(self) < 2:
            return None
        step = float(np.median(np.diff(np.asarray(self.timestamps, np.float64))))
        return 1.0 / step if step > 0 else None

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as ``(H, W, 3)`` uint8 RGB."""
        if self.frames is None:
            raise ValueError("this camera run has no frames (pose-only)")
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"frame index {i} is out of range for a run of {n} frames")
        return _single_frame(self.frames, int(i) % n)

    def __getitem__(self, key) -> "CameraRun":
        """A sub-run by slice (positive step), increasing index array or ``(N,)`` boolean mask.

        Frames, poses, observed mask stay aligned; a lazy frame source stays lazy.
        """
        n = len(self)
        idx = normalize_index(key, n)
        if self.frames is None:
            frames = None
        elif isinstance(self.frames, np.ndarray):
            frames = self.frames[idx]
        else:
            frames = _FrameSubset(self.frames, as_indices(idx, n))
        return CameraRun(
            frames, self.timestamps[idx], self.rotations[idx], self.translations[idx], self.observed[idx],
            self.intrinsics, dict(self.metadata),
        )

    def subsample(self, k: int, offset: int = 0) -> "CameraRun":
        """Every ``k``-th frame starting at ``offset`` (the thesis used every 5th frame of face runs)."""
        if int(k) != k or k < 1:
            raise ValueError(f"subsample: k must be a positive integer, got {k}")
        if int(offset) != offset or not 0 <= offset < max(len(self), 1):
            raise ValueError(f"subsample: offset must be in [0, {len(self)}), got {offset}")
        return self[int(offset)::int(k)]

    # -- observed masks -------------------------------------------------------------------------------

    def with_observed(self, observed) -> "CameraRun":
        """The same run with the ``(N,)`` boolean ``observed`` mask replaced."""
        return CameraRun(
            self.frames, self.timestamps, self.rotations, self.translations, observed, self.intrinsics, dict(self.metadata)
        )

    def mask(self, indices) -> "CameraRun":
        """The same run with frames ``indices`` (int array or ``(N,)`` bool mask) marked unobserved."""
        hide = np.zeros(len(self), dtype=bool)
        hide[as_indices(normalize_index(indices, len(self)), len(self))] = True
        return self.with_observed(self.observed & ~hide)

    def keyframes(self, every: Optional[int] = None, ends: bool = False, offset: int = 0) -> np.ndarray:
        """A ``(N,)`` boolean mask: every ``every``-th frame from ``offset``, and/or the first and last.

        ``run.with_observed(run.keyframes(ends=True))`` is the thesis' interpolation setting (first and
        last frames only).
        """
        if every is None and not ends:
            raise ValueError("keyframes: give every=K and/or ends=True")
        m = np.zeros(len(self), dtype=bool)
        if every is not None:
            if int(every) != every or every < 1:
                raise ValueError(f"keyframes: every must be a positive integer, got {every}")
            m[int(offset)::int(every)] = True
        if ends and len(self):
            m[0] = m[-1] = True
        return m

    # -- poses ----------------------------------------------------------------------------------------

    def pose_features(self, with_time: bool = False) -> torch.Tensor:
        """Flat kernel inputs ``(N, 12)`` = vec(R) row-major + t, or ``(N, 13)`` with the timestamp; float64."""
        return pose_features(
            torch.from_numpy(self.rotations),
            torch.from_numpy(self.translations),
            torch.from_numpy(self.timestamps) if with_time else None,
        )

    @property
    def trajectory(self) -> PoseTrajectory:
        """The poses as a :class:`PoseTrajectory`."""
        return PoseTrajectory(
            self.timestamps.copy(), self.rotations.copy(), self.translations.copy(),
            source_format=str(self.metadata.get("source_format", "camera_run")), metadata=dict(self.metadata),
        )

    @classmethod
    def from_trajectory(
        cls, trajectory: PoseTrajectory, frames: Frames = None, observed=None, intrinsics=None, metadata: Optional[dict] = None
    ) -> "CameraRun":
        """A run with ``trajectory``'s poses (and ``frames``, one per pose, if given)."""
        meta = {"source_format": trajectory.source_format}
        meta.update(metadata or {})
        return cls(frames, trajectory.timestamps, trajectory.rotations, trajectory.translations, observed, intrinsics, meta)

    # -- disk -----------------------------------------------------------------------------------------

    def save(self, directory: Union[str, os.PathLike], progress: bool = False) -> Path:
        """Write the run to ``directory`` (layout in the module docstring); returns the directory.

        Frames go to ``frames/NNNNNN.png`` (lossless), poses to ``poses.txt`` (TUM, exact floats) and
        the manifest ``run.json`` last and atomically, so a half-written directory has no manifest.
        """
        from tqdm import tqdm

        if len(self) == 0:
            raise ValueError("cannot save an empty camera run")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": "viewgp-camera-run",
            "version": RUN_FORMAT_VERSION,
            "n": len(self),
            "convention": CONVENTION,
            "poses_file": "poses.txt",
            "poses_format": "tum",
            "timestamps_file": "poses.txt",
            "observed": [bool(b) for b in self.observed],
            "intrinsics": None if self.intrinsics is None else self.intrinsics.tolist(),
            "metadata": _jsonable(self.metadata, "metadata"),
            "resolution": None if self.resolution is None else list(self.resolution),
            "frames": None,
        }
        write_poses(d / "poses.txt", self.trajectory, "tum")
        if self.frames is not None:
            (d / "frames").mkdir(exist_ok=True)
            names = [f"frames/{i:06d}.png" for i in range(len(self))]
            chunk = 32  # bounded memory for lazy sources
            for start in tqdm(range(0, len(self), chunk), desc="saving frames", disable=not progress):
                block = np.asarray(self.frames[start:start + chunk])
                for j, img in enumerate(block):
                    write_image(d / names[start + j], img)
            manifest["frames"] = names
        atomic_write_text(d / "run.json", json.dumps(manifest, indent=1))
        return d

    @classmethod
    def load(cls, directory: Union[str, os.PathLike], lazy: bool = False) -> "CameraRun":
        """Read a run written by :meth:`save`. ``lazy=True`` reads frames from disk on demand.

        Raises ``ValueError`` naming the problem for a missing/invalid manifest, a missing frame file,
        or counts that disagree between the manifest, ``poses.txt`` and the frame list.
        """
        d = Path(directory)
        if not d.is_dir():
            raise FileNotFoundError(f"camera run directory not found: {d}")
        mpath = d / "run.json"
        if not mpath.is_file():
            raise ValueError(f"{d} is not a camera run directory: no run.json manifest")
        try:
            with open(mpath, "r", encoding="utf-8") as fh:
                m = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{mpath}: invalid JSON ({e})") from None
        if not isinstance(m, dict) or m.get("format") != "viewgp-camera-run":
            raise ValueError(f"{mpath}: not a viewgp camera run manifest")
        if m.get("version") != RUN_FORMAT_VERSION:
            raise ValueError(f"{mpath}: unsupported run format version {m.get('version')!r} (this code reads {RUN_FORMAT_VERSION})")
        for key in ("n", "poses_file", "observed", "frames"):
            if key not in m:
                raise ValueError(f"{mpath}: manifest lacks the key {key!r}")
        n = m["n"]
        ppath = d / m["poses_file"]
        if not ppath.is_file():
            raise ValueError(f"{mpath}: poses file {ppath} is missing")
        try:
            traj = read_poses(ppath, m.get("poses_format", "tum"))
        except PoseFormatError as e:
            raise ValueError(f"{d}: cannot read the poses: {e}") from None
        if len(traj) != n:
            raise ValueError(f"{mpath}: manifest says n = {n} but {ppath.name} holds {len(traj)} poses")
        if len(m["observed"]) != n:
            raise ValueError(f"{mpath}: observed mask has {len(m['observed'])} entries, expected n = {n}")
        frames = None
        if m["frames"] is not None:
            names = m["frames"]
            if len(names) != n:
                raise ValueError(f"{mpath}: frame list has {len(names)} files, expected n = {n}")
            paths = [d / name for name in names]
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise ValueError(f"{d}: {len(missing)} of {n} frame files are missing, first {missing[0]}")
            first = read_frame(paths[0])
            res = m.get("resolution")
            if res is not None and tuple(first.shape[:2]) != tuple(res):
                raise ValueError(f"{paths[0]}: size {first.shape[:2]} differs from the manifest resolution {tuple(res)}")
            shape = (n,) + first.shape
            frames = ImageFileFrames(paths, shape) if lazy else ImageFileFrames(paths, shape)[:]
        return cls(
            frames, traj.timestamps, traj.rotations, traj.translations, np.asarray(m["observed"], dtype=bool),
            m.get("intrinsics"), m.get("metadata") or {},
        )
