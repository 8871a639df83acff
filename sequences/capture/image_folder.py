"""Posed image folders: a folder of images plus a pose file -> a :class:`~sequences.run.CameraRun`.

Frames meet poses in one of two ways, never by guessing a time:

* **by file name**, where the pose format names its images (COLMAP ``NAME``, ``transforms.json``
  ``file_path``; :attr:`sequences.poses.formats.PoseFormat.names_images`). A name is looked up in the folder
  as a relative path, then without its extension (NeRF's ``./train/r_0``), then by its base name;
  two images fitting one name is an error naming both. Poses without an image and images without a
  pose are each reported in one warning with the count; the run keeps the matched pairs.
* **by sorted order** otherwise (images in natural name order: ``frame_2`` before ``frame_10``): the
  counts must agree, else an error says how to fix it. With ``frame_times`` (one time per image)
  the poses are instead interpolated at the images' times (formats with timestamps), or take them
  (formats without).

The images are read lazily (:class:`sequences.run.ImageFileFrames`) and must share one size.
Intrinsics from the pose file (``metadata['intrinsics']``, for ``metadata['image_size']``) are
rescaled when the images have another size (nerfstudio's ``images_2`` folders); a
``transforms.json`` giving only ``camera_angle_x`` gets its focal length from the image width.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from generative.images.imageio import IMAGE_EXTENSIONS, is_image_file, read_image
from sequences.poses.formats import FORMATS, has_times, read_poses
from sequences.poses.posefile import natural_key
from sequences.run import CameraRun, ImageFileFrames
from sequences.poses.trajectory import PoseTrajectory
from sequences.capture.align import align_frames_to_poses, frame_times_from_csv, intrinsics_for_size, retimed, timing_error

__all__ = ["list_frame_images", "match_image_names", "load_image_run", "names_images"]

PathLike = Union[str, os.PathLike]


def names_images(traj: PoseTrajectory) -> bool:
    """Whether ``traj``'s poses name their images (frames are then matched by file name)."""
    fmt = FORMATS.get(traj.source_format)
    return bool(fmt is not None and fmt.names_images and traj.metadata.get("names"))


def list_frame_images(folder: PathLike, recursive: bool = False) -> list[Path]:
    """The JPEG/PNG files of ``folder`` in natural name order; none is a ``ValueError`` naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    found = [p for p in (folder.rglob("*") if recursive else folder.iterdir()) if is_image_file(p)]
    if not found:
        raise ValueError(f"--images {folder}: no images in the folder (looked for {', '.join(IMAGE_EXTENSIONS)} files)")
    return sorted(found, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def _clean(name: str) -> str:
    n = name.replace("\\", "/")
    return n[2:] if n.startswith("./") else n


def _has_image_extension(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _unique(hits: list[Path], name: str, folder: Path) -> Optional[Path]:
    if len(hits) > 1:
        raise ValueError(f"{folder}: image name {name!r} fits {len(hits)} files ({hits[0].name}, {hits[1].name}); "
                         "keep one, or give the folder the names are relative to")
    return hits[0] if hits else None


def match_image_names(names: Sequence[str], folder: PathLike, by_base_name: bool = True) -> list[Optional[Path]]:
    """The image file in ``folder`` (searched recursively) for each pose image name, or None.

    Tried in order: the name as a path relative to ``folder``; without an extension, the same path
    with any image extension; with ``by_base_name``, the file name alone anywhere under ``folder``.
    """
    folder = Path(folder)
    files = [p for p in folder.rglob("*") if is_image_file(p)]
    rel: dict[str, list[Path]] = {}
    stem: dict[str, list[Path]] = {}
    base: dict[str, list[Path]] = {}
    base_stem: dict[str, list[Path]] = {}
    for p in files:
        r = p.relative_to(folder).as_posix()
        rel.setdefault(r, []).append(p)
        stem.setdefault(r[: -len(p.suffix)], []).append(p)
        base.setdefault(p.name, []).append(p)
        base_stem.setdefault(p.stem, []).append(p)
    out = []
    for raw in names:
        n = _clean(str(raw))
        tables = [(rel, n)] + ([] if _has_image_extension(n) else [(stem, n)])
        if by_base_name:
            b = n.rsplit("/", 1)[-1]
            tables += [(base, b)] + ([] if _has_image_extension(b) else [(base_stem, b)])
        hit = None
        for table, key in tables:
            hit = _unique(table.get(key, []), str(raw), folder)
            if hit is not None:
                break
        out.append(hit)
    return out


def _warn_unmatched(what: str, count: int, total: int, examples: list[str], where: str) -> None:
    if count:
        shown = ", ".join(repr(e) for e in examples[:3]) + (", ..." if count > 3 else "")
        warnings.warn(f"{count} of {total} {what} {where} (dropped): {shown}", stacklevel=3)


def _by_name(traj: PoseTrajectory, folder: Path, default_folder: bool) -> tuple[PoseTrajectory, list[Path], list[str]]:
    names = [str(n) for n in traj.metadata["names"]]
    # Beside its transforms.json a name is a relative path; elsewhere the folder may be the images' own.
    hits = match_image_names(names, folder, by_base_name=not default_folder)
    keep = np.array([h is not None for h in hits])
    pose_file = traj.metadata.get("path", "the pose file")
    _warn_unmatched("frames listed in", int((~keep).sum()), len(names), [n for n, k in zip(names, keep) if not k],
                    f"{pose_file} have no image in {folder}")
    if not keep.any():
        raise ValueError(f"--images {folder}: none of the {len(names)} images named in {pose_file} is there "
                         f"(first name {names[0]!r}); give the folder the names are relative to")
    paths = [h for h in hits if h is not None]
    used = set(paths)
    extra = [p for p in list_frame_images(folder, recursive=True) if p not in used] if not default_folder else []
    _warn_unmatched("images in", len(extra), len(extra) + len(paths), [p.name for p in extra], f"{folder} have no pose in {pose_file}")
    sub = traj[np.flatnonzero(keep)]
    sub.metadata["names"] = [n for n, k in zip(names, keep) if k]
    return sub, paths, sub.metadata["names"]


def _by_order(traj: PoseTrajectory, folder: Path, frame_times: Optional[np.ndarray], source: str
              ) -> tuple[PoseTrajectory, list[Path], list[str]]:
    paths = list_frame_images(folder)
    pose_file = traj.metadata.get("path", "the pose file")
    if frame_times is None:
        if len(paths) != len(traj):
            raise ValueError(
                f"--images {folder} has {len(paths)} images but {pose_file} has {len(traj)} poses; {traj.source_format} "
                "poses do not name their images, so images (in name order) are paired with poses in order and the "
                "counts must agree. Fix: remove the images without a pose, or give --frame-times FILE (one time per image)"
                + (" to interpolate the poses at" if has_times(traj) else "")
            )
        return traj, paths, [p.name for p in paths]
    if frame_times.shape[0] != len(paths):
        raise ValueError(f"--frame-times {source}: {frame_times.shape[0]} times for the {len(paths)} images of {folder}; "
                         "give one time per image, in name order")
    if not has_times(traj):
        if len(paths) != len(traj):
            raise timing_error(traj, len(paths), str(folder))
        return retimed(traj, frame_times, source), paths, [p.name for p in paths]
    keep, R, T = align_frames_to_poses(frame_times, traj)
    at = PoseTrajectory(frame_times[keep], R, T, traj.source_format,
                        dict(traj.metadata, times_source=source, interpolated_from=len(traj)))
    kept = [p for p, k in zip(paths, keep) if k]
    return at, kept, [p.name for p in kept]


def load_image_run(
    images: Optional[PathLike],
    poses: Union[PathLike, PoseTrajectory],
    format: Optional[str] = None,
    times_path: Optional[PathLike] = None,
    frame_times: Union[PathLike, Sequence[float], np.ndarray, None] = None,
    max_frames: Optional[int] = None,
    time_offset: float = 0.0,
) -> CameraRun:
    """A run from a posed image folder (see the module docstring).

    Args:
        images: the image folder; ``None`` for a ``transforms.json`` whose images lie beside it.
        poses: a pose file (:func:`sequences.poses.formats.read_poses` with ``format``, ``times_path``) or a
            trajectory.
        frame_times: one time per image (seconds), an array or a CSV for
            :func:`sequences.capture.align.frame_times_from_csv`.
        max_frames: only the first ``max_frames`` frames (after matching).
        time_offset: seconds added to ``frame_times`` to put them on the pose clock.
    Returns:
        a run with lazily read frames, the poses of the matched images, intrinsics where the pose
        file has them; metadata records the image folder, the pose file and format, the image
        names, the time source and any distortion.
    """
    traj = poses if isinstance(poses, PoseTrajectory) else read_poses(poses, format, times_path=times_path)
    default_folder = images is None
    if default_folder:
        if traj.source_format != "nerf" or "path" not in traj.metadata:
            raise ValueError(f"give the image folder (--images DIR): {traj.source_format} poses do not say where their images are")
        images = Path(traj.metadata["path"]).parent
    folder = Path(images)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder}: image folder not found")
    ft, source = None, None
    if frame_times is not None:
        if isinstance(frame_times, (str, os.PathLike)):
            ft, source = frame_times_from_csv(frame_times)[0], str(frame_times)
        else:
            ft, source = np.asarray(frame_times, dtype=np.float64).reshape(-1), "given frame times"
        ft = ft + float(time_offset)
    if names_images(traj):
        sub, paths, names = _by_name(traj, folder, default_folder)
        if ft is not None:
            sub = retimed(sub, ft, source)
    else:
        sub, paths, names = _by_order(traj, folder, ft, source)
    if max_frames is not None:
        if int(max_frames) != max_frames or max_frames < 1:
            raise ValueError(f"--max-frames must be a positive integer, got {max_frames}")
        sub, paths, names = sub[: int(max_frames)], paths[: int(max_frames)], names[: int(max_frames)]
    first = read_image(paths[0], what="frame image")
    h, w = first.shape[:2]
    meta = {k: traj.metadata[k] for k in ("convention", "distortion", "camera", "cameras", "nerf_fields")
            if traj.metadata.get(k) is not None}
    meta.update(
        source_format=traj.source_format, images=str(folder), pose_file=traj.metadata.get("path"), names=names,
        frame_files=[str(p) for p in paths], times_source=sub.metadata.get("times_source", meta.get("times_source")),
        has_times=has_times(sub),
    )
    frames = ImageFileFrames(paths, (len(paths), h, w, 3), strict=False)
    return CameraRun(frames, sub.timestamps, sub.rotations, sub.translations,
                     intrinsics=intrinsics_for_size(traj.metadata, w, h), metadata=meta)
