"""``viewgp demo``: the whole pipeline on a rendered phone-like run with the bundled backbone."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from sequences.cli.options import PIPELINE_PRECISION, UsageError, add_device_arg, add_precision_arg, positive_int
from sequences.cli.outputs import listing, staged_output

EPILOG = """what it does:
  1. renders a hand-held phone run over a tabletop scene (pybullet, on the CPU; standstill, back-and-forth
     motion, a landscape-to-portrait roll) at 256 px, with exact camera poses, and saves it under OUT/run;
  2. keeps every 10th frame as a keyframe and encodes the frames with the bundled 64 px Pioneer (trained by
     examples/train_default_backbone.py on other runs; this run was never seen);
  3. fits the view-aware latent GP (orientation x translation) and a time-only GP, predicts every frame,
     compares both with linear interpolation between keyframes, brings the view GP to 256 px with the
     keyframes' own pixels (view+warp, view+detail), and scores everything against the methods that use no
     backbone (nearest / blended keyframes, a pixel-space GP);
  4. writes report.html, interpolated.mp4, comparison.mp4 (every method and baseline side by side, keyframes
     marked, uncertainty with its colour scale), uncertainty.mp4, strips, latent_trajectories.png,
     kernel_matrices.png, reliability.png, metrics.json.

examples:
  viewgp demo
  viewgp demo --out /tmp/demo --keyframes ends
  viewgp interpolate --run viewgp-demo/run --keyframes every:5 --method view linear --out /tmp/every5
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="render a phone-like run and interpolate it with the bundled backbone",
                              description="Run the encode -> GP -> decode pipeline end to end on a synthetic "
                              "phone-like camera run; needs no data, weights or network.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="viewgp-demo", metavar="DIR",
                   help="output folder, written only when the demo succeeds (default: ./viewgp-demo)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    p.add_argument("--frames", type=positive_int, default=120, help="frames in the rendered run (default 120)")
    p.add_argument("--size", type=positive_int, default=256,
                   help="rendered frame size in pixels, also the output size (default 256)")
    p.add_argument("--keyframes", default="every:10", metavar="SPEC",
                   help="every:K (every K-th frame and the last; default every:10), greedy:K, ends, or all")
    p.add_argument("--method", nargs="+", default=["view", "time", "linear"], metavar="METHOD",
                   help="methods to compare (default: view time linear)")
    p.add_argument("--run-seed", type=int, default=0, help="scene and trajectory seed (default 0; the "
                   "bundled backbone was trained on seeds 1-420)")
    p.add_argument("--backbone", default=None, metavar="CKPT",
                   help="weights of a trained backbone (default: the bundled 64 px Pioneer)")
    p.add_argument("--diagnostics", action="store_true",
                   help="also score the warp driven by each held-out frame's own reconstruction and by the true frame "
                        "(rows per-frame+warp, truth+warp: how far the prediction and the decoder are from perfect)")
    add_device_arg(p, "cpu")
    add_precision_arg(p, PIPELINE_PRECISION)
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior samples (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from sequences.cli.backbones import load_backbone
    from sequences.pipeline.orchestrate import PipelineConfig, run_pipeline
    from viewgp.keyframes import parse_keyframes
    from sequences.pipeline.report import methods_table
    from sequences.synthetic import phone_run

    t0 = time.perf_counter()
    with staged_output(args) as staging:
        backbone = load_backbone(args.backbone, args.device)  # fail before rendering when the weights are missing
        # Rendered at --size (the output size: detail layers and pixel baselines work there) and area-resized
        # to the model's resolution when encoded, as the training data were.
        camera_run = phone_run(args.frames, size=args.size, seed=args.run_seed)
        camera_run.save(os.path.join(staging, "run"))
        try:
            keys = parse_keyframes(args.keyframes, len(camera_run), camera_run.pose_features(with_time=True))
        except ValueError as exc:
            raise UsageError(f"--keyframes: {exc}") from None
        camera_run = camera_run.with_observed(keys)
        config = PipelineConfig(methods=tuple(args.method), device=args.device, seed=args.seed, fps=camera_run.frame_rate,
                                progress=not args.quiet, cache_dir=os.path.join(args.out, "cache"), output_size=args.size,
                                precision=args.precision, diagnostics=args.diagnostics)
        metrics = run_pipeline(camera_run, backbone, str(staging), config)
    wall = time.perf_counter() - t0

    print(f"viewgp demo: {len(camera_run)} frames, {int(metrics['n_observed'])} keyframes ({args.keyframes}), "
          f"backbone {backbone.kind} {backbone.resolution} px, {wall:.1f} s")
    print(f"precision of the posterior samples: {metrics['precision']['precision']} ({metrics['precision']['reason']})")
    print(f"held-out frames scored at {metrics['output_size']} px (centre square):")
    print(methods_table(metrics))
    out = os.path.abspath(args.out)
    print(f"wrote {out}/: {listing(Path(out))} (the run itself in run/)")
    return 0
