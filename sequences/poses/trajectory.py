"""Pose trajectories: camera-to-world poses at timestamps, the evo-style type every pose-file reader
returns (:mod:`sequences.poses.formats`) and a :class:`sequences.run.CameraRun` is built on.

Conventions are those of :mod:`sequences.run`: camera-to-world poses, OpenCV camera axes, float64
seconds strictly increasing. The validation helpers here are shared with :class:`~sequences.run.CameraRun`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch

from viewgp.poses import interpolate_poses, matrix_to_quat, validate_rotations

__all__ = ["PoseTrajectory", "validated_poses", "normalize_index", "as_indices"]


# ----------------------------------------------------------------------------------------------------
# Validation helpers


def _float_array(x, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.array(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: cannot convert to a float array ({e})") from None
    if a.ndim != 1 + len(shape_tail) or a.shape[1:] != shape_tail:
        want = ", ".join(["N", *map(str, shape_tail)])
        raise ValueError(f"{name}: expected shape ({want}), got {a.shape}")
    return a


def _check_finite(a: np.ndarray, name: str) -> None:
    if a.size == 0:
        return
    bad = ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"{name}: non-finite value (NaN or inf) at index {int(np.flatnonzero(bad)[0])}")


def _check_increasing(t: np.ndarray, name: str = "timestamps") -> None:
    if t.shape[0] > 1:
        bad = np.flatnonzero(np.diff(t) <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise ValueError(
                f"{name}: must be strictly increasing; index {i} ({float(t[i])!r}) is not after index {i - 1} ({float(t[i - 1])!r})"
            )


def validated_poses(timestamps, rotations, translations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(t, R, T)`` as float64 arrays ``(N,)``, ``(N, 3, 3)``, ``(N, 3)``; a ``ValueError`` naming the
    problem for mismatched lengths, non-finite values, non-rotations or timestamps out of order."""
    t = _float_array(timestamps, "timestamps", ())
    R = _float_array(rotations, "rotations", (3, 3))
    T = _float_array(translations, "translations", (3,))
    if not (t.shape[0] == R.shape[0] == T.shape[0]):
        raise ValueError(
            f"lengths disagree: {t.shape[0]} timestamps, {R.shape[0]} rotations, {T.shape[0]} translations"
        )
    _check_finite(t, "timestamps")
    _check_finite(R, "rotations")
    _check_finite(T, "translations")
    validate_rotations(torch.from_numpy(R), "rotations")
    _check_increasing(t)
    return t, R, T


def normalize_index(key, n: int) -> Union[slice, np.ndarray]:
    """A forward slice stays a slice; bool masks and index arrays become increasing int64 indices."""
    if isinstance(key, (bool, np.bool_)) or isinstance(key, (int, np.integer)):
        raise TypeError(
            "CameraRun[i] with an integer is ambiguous: use run.frame(i) for one frame or run[[i]] / run[i:i+1] for a run"
        )
    if isinstance(key, slice):
        if key.step is not None and key.step <= 0:
            raise ValueError(f"slice step must be positive (frames stay in time order), got {key.step}")
        return key
    idx = np.asarray(key.detach().cpu() if isinstance(key, torch.Tensor) else key)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"boolean mask has shape {idx.shape}, expected ({n},)")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1:
        raise TypeError(f"index must be a slice, a 1-D integer array or a ({n},) boolean mask; got {idx.dtype} {idx.shape}")
    out = np.where(idx < 0, idx + n, idx).astype(np.int64)
    bad = np.flatnonzero((out < 0) | (out >= n))
    if bad.size:
        raise IndexError(f"index {int(idx[bad[0]])} (position {int(bad[0])}) is out of range for a run of {n} frames")
    if out.size > 1 and (np.diff(out) <= 0).any():
        k = int(np.flatnonzero(np.diff(out) <= 0)[0]) + 1
        raise ValueError(
            f"indices must be strictly increasing (frames stay in time order); position {k} ({int(out[k])}) "
            f"is not after {int(out[k - 1])}"
        )
    return out


def as_indices(key: Union[slice, np.ndarray], n: int) -> np.ndarray:
    """A :func:`normalize_index` result as an int64 index array."""
    return np.arange(n)[key] if isinstance(key, slice) else key


# ----------------------------------------------------------------------------------------------------
# Pose trajectory


@dataclass(eq=False)
class PoseTrajectory:
    """Camera-to-world poses at timestamps, as read from a pose file.

    Attributes:
        timestamps: ``(N,)`` float64 seconds, strictly increasing.
        rotations: ``(N, 3, 3)`` float64 rotations (camera-to-world).
        translations: ``(N, 3)`` float64 camera centres in the world.
        source_format: name of the file format it came from (see :data:`sequences.poses.formats.FORMATS`).
        metadata: free-form information (source path, convention notes, per-format extras).
    """

    timestamps: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray
    source_format: str = "unknown"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.timestamps, self.rotations, self.translations = validated_poses(
            self.timestamps, self.rotations, self.translations
        )
        self.metadata = dict(self.metadata)

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def __getitem__(self, key) -> "PoseTrajectory":
        """Sub-trajectory by slice, increasing index array or boolean mask."""
        idx = normalize_index(key, len(self))
        return PoseTrajectory(
            self.timestamps[idx], self.rotations[idx], self.translations[idx], self.source_format, dict(self.metadata)
        )

    @property
    def time_range(self) -> tuple[float, float]:
        """``(first, last)`` timestamp in seconds."""
        if len(self) == 0:
            raise ValueError("time_range of an empty trajectory")
        return float(self.timestamps[0]), float(self.timestamps[-1])

    def interpolate(self, query_times, extrapolate: bool = False) -> "PoseTrajectory":
        """Poses at ``query_times`` ``(M,)`` (strictly increasing): SLERP rotations, linear translations.

        A query outside :attr:`time_range` raises ``ValueError`` unless ``extrapolate`` (end poses held).
        """
        tq = _float_array(query_times, "query_times", ())
        R, T = interpolate_poses(
            torch.from_numpy(self.timestamps), torch.from_numpy(self.rotations), torch.from_numpy(self.translations),
            torch.from_numpy(tq), extrapolate=extrapolate,
        )
        meta = dict(self.metadata, interpolated_from=len(self))
        return PoseTrajectory(tq, R.numpy(), T.numpy(), self.source_format, meta)

    def quaternions(self, scalar_first: bool = False) -> np.ndarray:
        """``(N, 4)`` canonical unit quaternions (w >= 0), xyzw or wxyz with ``scalar_first``."""
        return matrix_to_quat(torch.from_numpy(self.rotations), scalar_first=scalar_first).numpy()
