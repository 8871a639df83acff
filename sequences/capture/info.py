"""What a run directory or a pose file holds, as ``(label, value)`` lines for ``viewgp info``.

A run directory (``run.json``) reports its frames, resolution, time span, pose source, intrinsics
and observed mask; a pose file (or a COLMAP model folder) its detected format, pose count, time
span (or that it has none), convention, intrinsics and the images it names. Nothing is decoded
beyond the first frame.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from sequences.poses.formats import has_times, read_poses, resolve_pose_path
from sequences.run import CameraRun

__all__ = ["describe"]

PathLike = Union[str, os.PathLike]
Lines = list[tuple[str, str]]


def _time_span(times: np.ndarray, timed: bool, source: Optional[str]) -> str:
    if not timed:
        stand_in = (source or "pose index").removeprefix("none: ")
        return f"none; timestamps are the {stand_in} (frames are matched by name or order, never by time)"
    t0, t1 = float(times[0]), float(times[-1])
    rate = f", {1.0 / float(np.median(np.diff(times))):.3g} per second" if len(times) > 1 else ""
    return f"{t0:.6f} .. {t1:.6f} s ({t1 - t0:.3f} s{rate})" + (f"; from {source}" if source else "")


def _intrinsics(K, size=None, distortion=None) -> Lines:
    if K is None:
        return [("intrinsics", "none")]
    K = np.asarray(K, dtype=np.float64)
    text = f"fx {K[0, 0]:.6g}, fy {K[1, 1]:.6g}, cx {K[0, 2]:.6g}, cy {K[1, 2]:.6g} (pixel centres at integers)"
    if size is not None:
        text += f" for {int(size[0])}x{int(size[1])} images"
    out = [("intrinsics", text)]
    if distortion:
        out.append(("distortion", ", ".join(f"{k} {v}" for k, v in distortion.items()) + " (kept, not applied)"))
    return out


def _extent(T: np.ndarray) -> str:
    lo, hi = T.min(axis=0), T.max(axis=0)
    path = float(np.linalg.norm(np.diff(T, axis=0), axis=1).sum()) if len(T) > 1 else 0.0
    return f"box {np.round(hi - lo, 4).tolist()} (diagonal {float(np.linalg.norm(hi - lo)):.4g}), path length {path:.4g}"


def _ranges(mask: np.ndarray) -> str:
    """``[0:10, 20:25]``-style runs of True in ``mask``."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return "none"
    cuts = np.flatnonzero(np.diff(idx) > 1)
    starts, ends = np.r_[idx[0], idx[cuts + 1]], np.r_[idx[cuts], idx[-1]]
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in zip(starts, ends)]
    return ", ".join(parts[:8]) + (", ..." if len(parts) > 8 else "")


def _names(names) -> str:
    names = list(names)
    return f"{names[0]} .. {names[-1]}" if len(names) > 1 else names[0]


def _describe_run(d: Path) -> Lines:
    run = CameraRun.load(d, lazy=True)
    meta = run.metadata
    res = run.resolution
    lines: Lines = [
        ("camera run", str(d)),
        ("frames", f"{len(run)}" + ("" if run.frames is not None else " poses (pose-only run: no frames)")),
        ("resolution", "none" if res is None else f"{res[1]}x{res[0]} (width x height)"),
        ("time span", _time_span(run.timestamps, bool(meta.get("has_times", True)), meta.get("times_source"))),
        ("pose format", str(meta.get("source_format", "unknown")) + (f" from {meta['pose_file']}" if meta.get("pose_file") else "")),
    ]
    if meta.get("video"):
        lines.append(("video", str(meta["video"])))
    if meta.get("images"):
        lines.append(("images", str(meta["images"])))
    lines += _intrinsics(run.intrinsics, None if res is None else (res[1], res[0]), meta.get("distortion"))
    lines.append(("observed", f"{int(run.observed.sum())} of {len(run)} frames ({_ranges(run.observed)})"))
    lines.append(("camera centres", _extent(run.translations)))
    return lines


def _describe_pose_file(path: Path) -> Lines:
    traj = read_poses(path)
    meta = traj.metadata
    lines: Lines = [
        ("pose file", str(path)),
        ("pose format", f"{traj.source_format} (detected)"),
        ("poses", str(len(traj))),
        ("time span", _time_span(traj.timestamps, has_times(traj), meta.get("times_source"))),
        ("convention", str(meta.get("convention", ""))),
    ]
    lines += _intrinsics(meta.get("intrinsics"), meta.get("image_size"), meta.get("distortion"))
    names = meta.get("names")
    if names:
        lines.append(("images named", f"{len(names)}: {_names(names)}"))
        if traj.source_format == "nerf":
            from sequences.capture.image_folder import match_image_names

            found = sum(h is not None for h in match_image_names(names, path.parent, by_base_name=False))
            lines.append(("images found", f"{found} of {len(names)} beside {path.name}"))
    if meta.get("extra_names") or meta.get("extra_columns") is not None:
        extra = meta.get("extra_names") or [f"column {9 + k}" for k in range(np.asarray(meta["extra_columns"]).shape[1])]
        lines.append(("extra columns", ", ".join(extra) + " (kept in metadata)"))
    lines.append(("camera centres", _extent(traj.translations)))
    return lines


def describe(path: PathLike) -> Lines:
    """Summary lines of a run directory or a pose file (see the module docstring)."""
    p = Path(path)
    if p.is_dir() and (p / "run.json").is_file():
        return _describe_run(p)
    return _describe_pose_file(resolve_pose_path(p))
