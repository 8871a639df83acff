"""The capture source options of the pipeline and capture commands (``--video`` / ``--images`` with
``--poses`` and how to time them, ``--run``) and the :class:`~sequences.run.CameraRun` they name, read by
:func:`sequences.capture.load.load_capture`.
"""

from __future__ import annotations

import argparse

__all__ = ["POSE_FORMATS_HELP", "add_capture_args", "capture_from_args"]

#: The formats are the pose-format registry's (sequences.poses.formats.FORMATS), named when help is shown.
POSE_FORMATS_HELP = ("poses file in a registered format ({registry:pose_formats}; COLMAP also as a model folder), "
                     "or 'auto': structure from motion with pycolmap (pip install -e '.[sfm]'; 'viewgp poses' for "
                     "its options)")


def add_capture_args(group) -> None:
    """The capture source options: ``--video``/``--images`` with ``--poses`` and how to time them."""
    group.add_argument("--video", help="a video file OpenCV can read")
    group.add_argument("--images", metavar="DIR",
                       help="a folder of posed images: matched to the poses by file name where the format names "
                       "images (COLMAP, transforms.json), else by sorted order (the counts must agree)")
    group.add_argument("--poses", help=POSE_FORMATS_HELP)
    group.add_argument("--format", default=None, help="pose format ({registry:pose_formats}); detected from the file when omitted "
                       "(an ambiguous file is refused with the candidates)")
    group.add_argument("--times", default=None, help="KITTI times.txt (with --format kitti)")
    group.add_argument("--frame-times", default=None, metavar="FILE",
                       help="per-frame times (t, or t,frame_index per line): with --images one time per image; "
                       "with --video and poses without timestamps (COLMAP, transforms.json) the time of each "
                       "posed frame on the video clock, one per pose")
    group.add_argument("--time-offset", type=float, default=0.0, help="seconds added to frame times before alignment")
    group.add_argument("--max-frames", type=int, default=None, help="read only the first N frames of the video (default: all)")


def capture_from_args(args: argparse.Namespace):
    """The :class:`~sequences.run.CameraRun` of :func:`add_capture_args` options (and ``--run`` where present)."""
    from sequences.capture.load import load_capture

    return load_capture(run=getattr(args, "run", None), video=args.video, images=args.images, poses=args.poses,
                        format=args.format, times_path=args.times, frame_times=args.frame_times,
                        time_offset=args.time_offset, max_frames=args.max_frames,
                        progress=not getattr(args, "quiet", False))
