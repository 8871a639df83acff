"""``viewgp poses``: camera poses for a video or a photo folder that has none (structure from motion)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sequences.cli.options import CLIError, UsageError, non_negative_int, positive_float, positive_int
from sequences.cli.outputs import add_output_args, check_output_folder, listing, staged_output

EPILOG = """examples:
  viewgp poses --images scene/images --out scene/poses
  viewgp poses --video phone.mp4 --fps 3 --out phone_poses
  viewgp import --images scene/images --poses scene/poses/sparse/0 --out runs/scene
  viewgp interpolate --video phone.mp4 --poses auto --out out/      (the same, without keeping the model)

Structure from motion with COLMAP's Python bindings, on the CPU: SIFT features, matching (every pair
for a photo set of at most --exhaustive-max images; neighbours plus loop closure for a video or a larger
set), incremental mapping; the largest model is kept. Frames that are not registered are dropped and
listed in sfm.json (never given interpolated poses). Needs the optional extra: pip install -e '.[sfm]'.

--out holds: sparse/0/ (COLMAP text model: cameras.txt, images.txt, points3D.txt), sfm.json (registered
and dropped frames with the reason, timings, options); for --video also images/ (the sampled frames)
and frame_times.txt (t, frame_index of each registered frame on the video clock).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("poses", help="compute camera poses by structure from motion (pycolmap)",
                              description="Pose a video or a folder of photographs that comes without poses: "
                              "structure from motion writes a COLMAP model that --poses reads.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("frames to pose (one of them)")
    src.add_argument("--images", metavar="DIR", help="a folder of photographs (JPEG/PNG, taken in name order)")
    src.add_argument("--video", metavar="FILE", help="a video file OpenCV can read")
    src.add_argument("--fps", type=positive_float, default=2.0,
                     help="--video: frames sampled per second of video (default 2)")
    src.add_argument("--max-frames", type=positive_int, default=None,
                     help="only the first N images of the folder, or the first N frames of the video (default: all)")
    sfm = p.add_argument_group("structure from motion")
    sfm.add_argument("--max-image-size", type=non_negative_int, default=1080, metavar="PX",
                     help="long side of the images SIFT sees, 0 = full resolution (default 1080: on 44 phone photos "
                     "of 1080 x 1440, 720 registered 26, 1080 34, full resolution 30)")
    sfm.add_argument("--max-features", type=positive_int, default=8192, help="SIFT features per image (default 8192)")
    sfm.add_argument("--matching", choices=("auto", "exhaustive", "sequential"), default="auto",
                     help="image pairs to match: auto = exhaustive for photo sets up to --exhaustive-max, else "
                     "sequential with loop closure (always for --video)")
    sfm.add_argument("--exhaustive-max", type=positive_int, default=100, metavar="N",
                     help="the largest photo set auto matches exhaustively (default 100)")
    sfm.add_argument("--overlap", type=positive_int, default=10,
                     help="sequential matching: successors paired with each frame (default 10)")
    sfm.add_argument("--no-loop-closure", action="store_true",
                     help="sequential matching without retrieving similar frames further away")
    sfm.add_argument("--min-registered", type=positive_int, default=3, metavar="N",
                     help="fewer registered frames in the largest model is a failure (default 3)")
    sfm.add_argument("--threads", type=non_negative_int, default=0, help="CPU threads, 0 = all cores (default 0)")
    sfm.add_argument("--seed", type=int, default=0, help="seed of RANSAC, the mapper and loop closure (default 0)")
    add_output_args(p, "output folder for the model")
    p.add_argument("--quiet", action="store_true", help="no phase lines or progress bars")
    p.set_defaults(func=run_poses)


def _options(args):
    from sequences.capture.sfm import SfMOptions

    if args.min_registered < 2:
        raise UsageError(f"--min-registered {args.min_registered}: a model has at least 2 frames")
    return SfMOptions(max_image_size=args.max_image_size, max_features=args.max_features, matching=args.matching,
                      exhaustive_max_images=args.exhaustive_max, overlap=args.overlap,
                      loop_closure=not args.no_loop_closure, min_registered=args.min_registered,
                      threads=args.threads, seed=args.seed)


def run_poses(args) -> int:
    from generative.images.fileio import atomic_write_text
    from sequences.capture.sfm import pycolmap_missing_reason, reconstruct, sample_video, write_summary

    if (args.images is None) == (args.video is None):
        raise UsageError("give the frames to pose: --images DIR or --video FILE (one of them)")
    if args.images is not None and not Path(args.images).is_dir():
        raise FileNotFoundError(f"--images {args.images}: image folder not found")
    if args.video is not None and not Path(args.video).is_file():
        raise FileNotFoundError(f"--video {args.video}: video file not found")
    options = _options(args)
    check_output_folder(Path(args.out).expanduser(), args.overwrite)
    reason = pycolmap_missing_reason()
    if reason is not None:
        raise CLIError(reason)
    progress = not args.quiet
    with staged_output(args) as staging:
        model = staging / "sparse" / "0"
        extra = {}
        if args.video is not None:
            sampled = sample_video(args.video, staging / "images", fps=args.fps, max_frames=args.max_frames, progress=progress)
            result = reconstruct(sampled.folder, model, sampled.names, options, video=True, progress=progress,
                                 label=f"{args.video} (sampled at {args.fps:g} frames per second; more: --fps)")
            row = {nm: k for k, nm in enumerate(sampled.names)}
            lines = ["# t [s], frame_index: video container time and frame index of each registered frame, in name order"]
            for nm in result.trajectory.metadata["names"]:
                k = row[nm]
                lines.append(f"{float(sampled.times[k])!r}, {int(sampled.frame_indices[k])}")
            atomic_write_text(staging / "frame_times.txt", "\n".join(lines) + "\n")
            extra = {"video": str(args.video), "fps": args.fps, "video_frames": sampled.video_frames,
                     "video_fps": sampled.video_fps, "sampled_frames": len(sampled.names)}
            images = str(Path(args.out) / "images")
        else:
            names = None
            if args.max_frames is not None:
                from sequences.capture.image_folder import list_frame_images

                folder = Path(args.images)
                names = [p.relative_to(folder).as_posix() for p in list_frame_images(folder)][: args.max_frames]
            result = reconstruct(args.images, model, names, options, video=False, progress=progress)
            extra = {"images": str(args.images)}
            images = str(args.images)
        result.model_dir = Path(args.out) / "sparse" / "0"  # where it lies once the staging folder is in place
        write_summary(staging / "sfm.json", result, extra)
    s = result.seconds
    print(result.report())
    print(f"model: {result.points} points, mean reprojection error {result.reprojection_error:.2f} px; "
          f"matching {result.matching}: {result.verified_pairs} of {result.pairs} pairs verified")
    print(f"time: features {s['features']:.0f} s, matching {s['matching']:.0f} s, mapping {s['mapping']:.0f} s "
          f"(total {s['total']:.0f} s)")
    print(f"wrote {args.out}: {listing(Path(args.out))}")
    times = f" --frame-times {Path(args.out) / 'frame_times.txt'}" if args.video is not None else ""
    print(f"next: viewgp import --images {images} --poses {result.model_dir}{times} --out RUN_DIR")
    return 0
