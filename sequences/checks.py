"""Checks a camera run must pass before the pipeline spends minutes on it.

The readers (:mod:`sequences.formats`, :mod:`sequences.video`) check that files parse; these check that
what they produced can be interpolated: enough frames, and camera positions whose scale the GP can work
with. Each failure is one ``ValueError`` naming the source, the problem and the fix.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_COORDINATE", "check_run_for_pipeline"]

#: Larger camera coordinates are not positions in metres (or any unit a camera run is recorded in): a
#: corrupt row, or a unit error. Squared distances between them would overflow the kernel's float64.
MAX_COORDINATE = 1e8


def check_run_for_pipeline(run, source: str, min_frames: int = 2) -> None:
    """``ValueError`` unless ``run`` (read from ``source``, named in the message) has at least
    ``min_frames`` frames with pixels and plausible camera positions."""
    n = len(run)
    if run.frames is None:
        raise ValueError(f"{source}: the camera run has poses but no frames to encode")
    if n < min_frames:
        meta = run.metadata
        if "video_frames" in meta:
            why = (f" (the video has {meta['video_frames']} frame(s); {n} of them lie inside the time range of "
                   "the poses). Give a longer video, or a pose file that covers more of it")
        else:
            why = "; save a run with more frames"
        raise ValueError(f"{source}: the camera run has {n} frame(s); the pipeline needs at least {min_frames}{why}")
    t = np.asarray(run.translations, np.float64)
    big = np.flatnonzero(np.abs(t).max(axis=1) > MAX_COORDINATE)
    if big.size:
        i = int(big[0])
        raise ValueError(
            f"{source}: camera position {t[i].tolist()} at t = {float(run.timestamps[i]):.6f} s ({big.size} frame(s) "
            f"in all) is not a plausible position (a coordinate beyond {MAX_COORDINATE:g}); fix that pose row or "
            "the units of the pose file"
        )
