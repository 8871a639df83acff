"""Captures in: one entry point from what a user has on disk to a :class:`~sequences.run.CameraRun`,
and the import of a capture into a run directory.

Sources (exactly one):

* ``run``: a saved run directory (:meth:`CameraRun.load`);
* ``video`` + ``poses``: :func:`sequences.capture.video.load_run` (poses interpolated at frame times; poses
  without timestamps need ``frame_times`` or one frame per pose, :mod:`sequences.capture.align`);
* ``images`` + ``poses``: :func:`sequences.capture.image_folder.load_image_run` (matched by file name, or by
  sorted order); a ``transforms.json`` alone stands for its own image folder.
* ``video`` or ``images`` with ``poses='auto'``: no pose file; structure from motion poses the frames
  (:func:`sequences.capture.sfm.posed_capture`, the optional extra ``.[sfm]``) and those it cannot register are
  dropped, with a warning listing them.

Intrinsics held by the pose file (COLMAP cameras, transforms.json) go to the run, rescaled to the
frames' size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from sequences.poses.formats import has_times, read_poses
from sequences.capture.align import intrinsics_for_size
from sequences.capture.image_folder import load_image_run
from sequences.run import CameraRun

__all__ = ["load_capture", "new_run_directory", "import_capture"]

PathLike = Union[str, os.PathLike]


def load_capture(
    *,
    run: Optional[PathLike] = None,
    video: Optional[PathLike] = None,
    images: Optional[PathLike] = None,
    poses: Optional[PathLike] = None,
    format: Optional[str] = None,
    times_path: Optional[PathLike] = None,
    frame_times: Optional[PathLike] = None,
    time_offset: float = 0.0,
    max_frames: Optional[int] = None,
    progress: bool = True,
) -> CameraRun:
    """The camera run of one source (see the module docstring); a ``ValueError`` says what is missing.
    ``progress``: bars for the long phases (structure from motion with ``poses='auto'``)."""
    given = [name for name, v in (("--run", run), ("--video", video), ("--images", images)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give one camera run source, not {' and '.join(given)}")
    if run is not None:
        for name, v in (("--poses", poses), ("--frame-times", frame_times)):
            if v is not None:
                raise ValueError(f"{name} does not apply to --run (a saved run holds its poses and times)")
        loaded = CameraRun.load(run)
        return loaded if max_frames is None else loaded[: int(max_frames)]
    if poses is not None and str(poses).strip().lower() == "auto":
        return _posed_by_sfm(video, images, format, times_path, frame_times, time_offset, max_frames, progress)
    if poses is None and given:
        raise ValueError(f"{given[0]} needs --poses FILE: the camera poses of its frames (TUM, COLMAP, transforms.json, ...)")
    if poses is None:
        raise ValueError("give a camera run: --run DIR, --video FILE with --poses FILE, or --images DIR with --poses FILE "
                         "(a transforms.json alone: --poses transforms.json)")
    traj = read_poses(poses, format, times_path=times_path)
    if video is None:
        return load_image_run(images, traj, frame_times=frame_times, max_frames=max_frames, time_offset=time_offset)
    from sequences.capture.video import load_run

    out = load_run(video, traj, time_offset=time_offset, max_frames=max_frames, frame_times=frame_times)
    h, w = out.resolution
    meta = dict(out.metadata, pose_file=traj.metadata.get("path"), source_format=traj.source_format,
                has_times=True, times_source=out.metadata.get("frame_times_source"),
                pose_times_source=traj.metadata.get("times_source") if has_times(traj) else None)
    if traj.metadata.get("distortion"):
        meta["distortion"] = traj.metadata["distortion"]
    return CameraRun(out.frames, out.timestamps, out.rotations, out.translations, out.observed,
                     intrinsics_for_size(traj.metadata, w, h), meta)


def _posed_by_sfm(video, images, format, times_path, frame_times, time_offset, max_frames, progress) -> CameraRun:
    """``--poses auto``: the frames posed by structure from motion (a ``ValueError`` says what is missing)."""
    from sequences.capture.sfm import posed_capture, pycolmap_missing_reason

    for name, v in (("--format", format), ("--times", times_path)):
        if v is not None:
            raise ValueError(f"{name} does not apply to --poses auto: structure from motion computes the poses")
    if video is None and images is None:
        raise ValueError("--poses auto needs the frames to pose: --video FILE or --images DIR")
    reason = pycolmap_missing_reason()
    if reason is not None:
        raise ValueError(reason)
    return posed_capture(video=video, images=images, max_frames=max_frames, frame_times=frame_times, time_offset=time_offset,
                         progress=progress)


def new_run_directory(out: PathLike) -> Path:
    """``out`` as the folder of a new run: it must not exist or be empty, so that an import never mixes
    its frames with another run's (checked before any frame is read)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out}: already exists and is not an empty folder; choose a new run directory")
    return out


def import_capture(out: PathLike, run: CameraRun, source: dict, progress: bool = False) -> Path:
    """Write ``run`` (read by :func:`load_capture` from ``source``, its keywords) to the new run
    directory ``out`` (:func:`new_run_directory`); ``source`` is recorded as ``metadata['imported_from']``."""
    out = new_run_directory(out)
    meta = dict(run.metadata, imported_from={k: str(v) for k, v in source.items() if v is not None})
    run = CameraRun(run.frames, run.timestamps, run.rotations, run.translations, run.observed, run.intrinsics, meta)
    return run.save(out, progress=progress)
