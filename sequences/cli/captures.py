"""``viewgp import`` and ``viewgp info``: real captures in, and what a run or a pose file holds."""

from __future__ import annotations

import argparse

from sequences.cli.capture_options import add_capture_args, capture_from_args

IMPORT_EPILOG = """examples:
  viewgp import --images scene/images --poses scene/sparse/0 --out runs/scene
  viewgp import --poses nerf_scene/transforms.json --out runs/nerf_scene
  viewgp import --video phone.mp4 --poses poses.txt --out runs/phone
  viewgp import --video phone.mp4 --poses sparse/0/images.bin --frame-times posed_frame_times.txt --out runs/phone

The run directory: run.json (manifest: frame count, observed mask, intrinsics, metadata with the
source, pose format and image names), poses.txt (TUM, camera-to-world, OpenCV camera axes, exact
floats) and frames/000000.png ... (lossless copies of the frames).
"""

INFO_EPILOG = """examples:
  viewgp info runs/scene
  viewgp info scene/transforms.json
  viewgp info sparse/0
"""


def register(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("import", help="write a capture (video or posed images + poses) as a run directory",
                              description="Read a video or a posed image folder with its pose file and write a "
                              "viewgp run directory that --run reads.", epilog=IMPORT_EPILOG, formatter_class=fmt)
    add_capture_args(p.add_argument_group("capture (--video or --images with --poses; a transforms.json alone)"))
    p.add_argument("--out", required=True, metavar="RUN", help="the new run directory (must not exist, or be empty)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_import)

    p = subparsers.add_parser("info", help="print what a run directory or a pose file holds",
                              description="Frames, resolution, time span, pose format, intrinsics and observed mask "
                              "of a run directory; format, poses, times and named images of a pose file.",
                              epilog=INFO_EPILOG, formatter_class=fmt)
    p.add_argument("path", metavar="RUN|FILE", help="a run directory, a pose file or a COLMAP model folder")
    p.set_defaults(func=run_info)


def _print(lines) -> None:
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k + ':':<{width + 1}} {v}")


def run_import(args) -> int:
    from sequences.capture.info import describe
    from sequences.capture.load import import_capture, new_run_directory

    new_run_directory(args.out)  # refuse an occupied --out before reading any frame
    source = {k: getattr(args, k) for k in ("video", "images", "poses", "format", "times", "frame_times", "time_offset")}
    out = import_capture(args.out, capture_from_args(args), source, progress=not args.quiet)
    print(f"wrote {out}")
    _print(describe(out))
    return 0


def run_info(args) -> int:
    from sequences.capture.info import describe

    _print(describe(args.path))
    return 0
