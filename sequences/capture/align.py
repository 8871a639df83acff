"""Frames meet poses, in one place: per-frame times (:func:`frame_times_from_csv`), the alignment of
frames with a pose trajectory by time (:func:`align_frames_to_poses`), timing for poses without
timestamps (:func:`timed_for_frames`) and the intrinsics of the frames' size
(:func:`intrinsics_for_size`). Every capture path (video, image folder, structure from motion) uses
these and no other.

Poses without timestamps are paired with frames by order or by given times, never by taking the pose
index for seconds.

COLMAP models, ``transforms.json`` and KITTI without its times file hold no time
(:func:`sequences.poses.formats.has_times` is False; the trajectory's timestamps are the pose index).
Such poses meet the frames of a video (or of an image folder without names) in one of two ways:

* **equal counts**: pose ``i`` is frame ``i`` (poses in their image-name order), and the poses take
  the frames' times;
* **given times**: ``frame_times`` holds the time of each posed frame (one per pose, in order, on the
  frames' clock), and the frames in between get interpolated poses.

Anything else is refused with one message that says both fixes (:func:`timing_error`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np

from generative.images.geometry import rescale_intrinsics
from sequences.poses.formats import has_times
from sequences.poses.nerf import intrinsics_from_fields
from sequences.poses.trajectory import PoseTrajectory

__all__ = ["frame_times_from_csv", "align_frames_to_poses", "retimed", "timing_error", "timed_for_frames",
           "intrinsics_for_size"]

PathLike = Union[str, os.PathLike]


def _pose_source(traj: PoseTrajectory) -> str:
    path = traj.metadata.get("path")
    return f"{path} ({traj.source_format})" if path else f"the {traj.source_format} poses"


def retimed(traj: PoseTrajectory, times, source: str) -> PoseTrajectory:
    """``traj`` with its timestamps replaced by ``times`` ``(N,)`` seconds, marked as real times."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if t.shape[0] != len(traj):
        raise ValueError(f"{source}: {t.shape[0]} times for the {len(traj)} poses of {_pose_source(traj)}; give one time per pose")
    meta = dict(traj.metadata, has_times=True, times_source=source)
    try:
        return PoseTrajectory(t, traj.rotations, traj.translations, traj.source_format, meta)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def timing_error(traj: PoseTrajectory, n_frames: int, frames: str) -> ValueError:
    """The refusal for poses without time that cannot be paired with ``n_frames`` ``frames``."""
    return ValueError(
        f"{_pose_source(traj)} has no timestamps, so its {len(traj)} poses cannot be matched by time to the "
        f"{n_frames} frames of {frames} (the pose index is not a time). Fix: give --frame-times FILE "
        "(frame_times= in Python) with the time of each posed frame in seconds on the video clock, one line "
        "per pose in image-name order, or give exactly one frame per pose (e.g. --images DIR, matched by file name)"
    )


def timed_for_frames(
    traj: PoseTrajectory, frame_times: np.ndarray, frames: str, pose_times: Optional[np.ndarray] = None,
    pose_times_source: str = "given frame times",
) -> PoseTrajectory:
    """Poses on the frames' clock: ``traj`` itself when it has times, else paired as the module says.

    Args:
        traj: the poses.
        frame_times: ``(M,)`` times of the frames (a video's container times).
        frames: what the frames are, for messages (``"video.mp4"``).
        pose_times: ``(N,)`` time of each pose (``--frame-times``), or None.
    """
    if has_times(traj):
        return traj
    if pose_times is not None:
        return retimed(traj, pose_times, pose_times_source)
    ft = np.asarray(frame_times, dtype=np.float64).reshape(-1)
    if ft.shape[0] == len(traj):
        return retimed(traj, ft, f"frame times of {frames} (one frame per pose, in order)")
    raise timing_error(traj, ft.shape[0], frames)


# ----------------------------------------------------------------------------------------------------
# Frame times from files, and alignment with poses


def frame_times_from_csv(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame times from a CSV: ``(times (M,) seconds, frame_indices (M,) int)``.

    Two columns ``t, frame_index`` (ADVIO ``frames.csv``) or one column ``t`` (frame ``i`` on line
    ``i``). ``#`` comments and a non-numeric header line are skipped. Times must increase.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frame times file not found: {path}")
    rows: list[tuple[int, list[str]]] = []
    with open(path, "r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            s = line.split("#", 1)[0].strip()
            if s:
                rows.append((lineno, [v.strip() for v in s.replace(",", " ").split()]))
    if rows:
        try:
            float(rows[0][1][0])
        except ValueError:
            rows = rows[1:]  # header
    if not rows:
        raise ValueError(f"{path}: no frame times")
    ncols = len(rows[0][1])
    if ncols not in (1, 2):
        raise ValueError(f"{path}:{rows[0][0]}: expected 't' or 't, frame_index' per line, got {ncols} values")
    times, index = np.empty(len(rows)), np.empty(len(rows), dtype=np.int64)
    for i, (lineno, vals) in enumerate(rows):
        if len(vals) != ncols:
            raise ValueError(f"{path}:{lineno}: expected {ncols} values, got {len(vals)}")
        try:
            times[i] = float(vals[0])
            fi = float(vals[1]) if ncols == 2 else float(i)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: not a number in {vals}") from None
        if fi != int(fi) or fi < 0:
            raise ValueError(f"{path}:{lineno}: frame index {vals[1]!r} is not a non-negative integer")
        index[i] = int(fi)
        if not np.isfinite(times[i]):
            raise ValueError(f"{path}:{lineno}: non-finite time {vals[0]!r}")
        if i and times[i] <= times[i - 1]:
            raise ValueError(f"{path}:{lineno}: time {vals[0]} is not after the previous line's")
        if i and index[i] <= index[i - 1]:
            raise ValueError(f"{path}:{lineno}: frame index {index[i]} is not after the previous line's")
    return times, index


def align_frames_to_poses(
    frame_times, trajectory: PoseTrajectory, time_offset: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poses at frame times: SLERP rotations, linear translations (:meth:`PoseTrajectory.interpolate`).

    Frame ``i`` is at pose time ``frame_times[i] + time_offset``. Frames outside the trajectory's
    time range are dropped with a warning saying how many at each end; no overlap at all raises
    ``ValueError`` stating both ranges and the offset that would line up their starts.

    Returns:
        ``keep (N,) bool``, rotations ``(K, 3, 3)`` and translations ``(K, 3)`` for the kept frames.
    """
    ft = np.asarray(frame_times, dtype=np.float64).reshape(-1)
    if ft.size == 0:
        raise ValueError("align_frames_to_poses: no frame times")
    if not np.isfinite(ft).all():
        raise ValueError(f"frame times: non-finite value at index {int(np.flatnonzero(~np.isfinite(ft))[0])}")
    bad = np.flatnonzero(np.diff(ft) <= 0)
    if bad.size:
        raise ValueError(f"frame times must be strictly increasing; index {int(bad[0]) + 1} is not after index {int(bad[0])}")
    if len(trajectory) < 1:
        raise ValueError("align_frames_to_poses: the trajectory has no poses")
    q = ft + float(time_offset)
    t0, t1 = trajectory.time_range
    before, after = q < t0, q > t1
    keep = ~(before | after)
    if not keep.any():
        raise ValueError(
            f"no frame lies inside the pose time range: frames span [{q[0]:.6f}, {q[-1]:.6f}] s "
            f"(frame times + time offset {float(time_offset):g}) but poses span [{t0:.6f}, {t1:.6f}] s. "
            f"The clocks differ: try --time-offset {t0 - ft[0]:.6f} (aligns the first frame with the first pose)"
        )
    if before.any() or after.any():
        parts = []
        if before.any():
            parts.append(f"{int(before.sum())} before the first pose (t < {t0:.6f})")
        if after.any():
            parts.append(f"{int(after.sum())} after the last pose (t > {t1:.6f})")
        warnings.warn(
            f"dropped {int((~keep).sum())} of {len(q)} frames outside the pose time range: " + ", ".join(parts),
            stacklevel=2,
        )
    at = trajectory.interpolate(q[keep])
    return keep, at.rotations, at.translations


# ----------------------------------------------------------------------------------------------------
# Intrinsics


def intrinsics_for_size(meta: dict, width: int, height: int) -> Optional[np.ndarray]:
    """``K`` for images of ``width x height`` from pose-file metadata: the file's ``intrinsics``, rescaled
    from its ``image_size`` when that differs, or a NeRF ``camera``'s fields; None when it has none."""
    K = meta.get("intrinsics")
    if K is None:
        camera = meta.get("camera")
        return None if not camera else intrinsics_from_fields(camera, width, height)
    size = meta.get("image_size")
    if size is None:
        return np.asarray(K, dtype=np.float64).copy()
    return rescale_intrinsics(K, (int(size[0]), int(size[1])), (width, height))
