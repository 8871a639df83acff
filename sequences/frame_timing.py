"""Frame timing for poses without timestamps: pair them with frames by order or by given times, never
by taking the pose index for seconds.

COLMAP models, ``transforms.json`` and KITTI without its times file hold no time
(:func:`sequences.formats.has_times` is False; the trajectory's timestamps are the pose index).
Such poses meet the frames of a video (or of an image folder without names) in one of two ways:

* **equal counts**: pose ``i`` is frame ``i`` (poses in their image-name order), and the poses take
  the frames' times;
* **given times**: ``frame_times`` holds the time of each posed frame (one per pose, in order, on the
  frames' clock), and the frames in between get interpolated poses.

Anything else is refused with one message that says both fixes (:func:`timing_error`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from sequences.formats import has_times
from sequences.trajectory import PoseTrajectory

__all__ = ["retimed", "timing_error", "timed_for_frames"]


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
