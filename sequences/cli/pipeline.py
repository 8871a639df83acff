"""``viewgp interpolate | smooth | views``: the encode -> GP -> decode pipeline on a camera run."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np

from sequences.cli.backbones import LPIPS_ALEX_FILES, LPIPS_VGG_FILES, require_weights
from sequences.cli.capture_options import add_capture_args, capture_from_args
from sequences.cli.options import (PIPELINE_PRECISION, UsageError, add_device_arg, add_precision_arg,
                                    non_negative_int, positive_float, positive_int)
from sequences.cli.outputs import add_output_args, check_output_folder, listing, staged_output

# The names come from the registries (viewgp.kernels.KERNEL_NAMES, viewgp.predict.BASELINES) when help is shown.
COMMON_EPILOG = """
methods (--method; the first is decoded with uncertainty):
  kernels: {registry:kernels} (view = orientation x translation, the default)
  latent baselines: {registry:latent_baselines}
"""

INTERPOLATE_EPILOG = """examples:
  viewgp interpolate --video run.mp4 --poses poses.txt --keyframes every:10 --out out/
  viewgp interpolate --images scene/images --poses scene/transforms.json --out out/
  viewgp interpolate --video run.mp4 --poses sparse/0 --frame-times posed_frame_times.txt --out out/
  viewgp interpolate --run saved_run/ --keyframes ends --out out/
  viewgp interpolate --video run.mp4 --poses poses.txt --backbone runs/pioneer64/model.safetensors --out out/
  viewgp interpolate --run saved_run/ --backbone stylegan2:ffhq-256.pt --keyframes greedy:12 --out out/
  viewgp interpolate --video phone.mp4 --poses auto --out out/   (no pose file: structure from motion on frames
      sampled at 2 per second, pip install -e '.[sfm]'; frames it cannot register are dropped; see viewgp poses)
""" + COMMON_EPILOG

SMOOTH_EPILOG = """examples:
  viewgp smooth --video run.mp4 --poses poses.txt --format tum --out out/
""" + COMMON_EPILOG

VIEWS_EPILOG = """examples:
  viewgp views --run turntable_run/ --azimuths 0:360:5 --out out/
""" + COMMON_EPILOG


def _add_source(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("camera run (--run, or --video / --images with --poses)")
    src.add_argument("--run", help="a saved CameraRun directory (CameraRun.save, viewgp import)")
    add_capture_args(src)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default=None,
                   help="checkpoint of a trained backbone (kinds: {registry:backbones}), or stylegan2:G.pt for a "
                   "rosinality-format StyleGAN2 generator (inverted at the keyframes); default: the bundled 64 px "
                   "Pioneer")
    add_output_args(p)
    p.add_argument("--method", nargs="+", default=["view", "linear"], metavar="METHOD",
                   help="methods to compare, the first is the headline (default: view linear; see below)")
    p.add_argument("--samples", type=non_negative_int, default=8,
                   help="posterior samples decoded for the uncertainty maps; 0: no uncertainty.mp4 (default 8)")
    p.add_argument("--steps", type=non_negative_int, default=None,
                   help="type-II ML steps fitting the GP hyper-parameters; 0: keep the median-heuristic start "
                   "(default: 150, or 0 for fewer than 6 keyframes)")
    p.add_argument("--fps", type=positive_float, default=None,
                   help="frame rate of the written videos (default: the run's own, from its timestamps; 30 when "
                   "it has none)")
    add_device_arg(p, "cpu")
    add_precision_arg(p, PIPELINE_PRECISION)
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior samples and of inversion (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    out = p.add_argument_group("output frames")
    out.add_argument("--output-size", type=non_negative_int, default=256, metavar="PX",
                     help="side of the square output frames (centre crop), at most the run's own short side; "
                          "0 = the run's own resolution (default 256)")
    out.add_argument("--no-detail", action="store_true",
                     help="leave out the native-resolution detail layers (keyframes warped along the decoded motion, "
                          "GP-interpolated residuals)")
    out.add_argument("--no-pixel-baselines", action="store_true",
                     help="do not score the no-backbone baselines (nearest / blended keyframes, pixel-space GP)")
    out.add_argument("--diagnostics", action="store_true",
                     help="also score the warp driven by each held-out frame's own reconstruction (a perfect latent "
                          "prediction) and by the true frame (a perfect decoder): rows per-frame+warp, truth+warp")
    out.add_argument("--score-frames", type=non_negative_int, default=1000, metavar="N",
                     help="score SSIM, LPIPS and the calibration on at most N evenly spaced frames of a long run "
                          "(MSE on all); 0 = every frame (default 1000)")
    out.add_argument("--sample-frames", type=non_negative_int, default=1000, metavar="N",
                     help="decode the posterior samples at most at N frames of a long run (one per window, the largest "
                          "variance), the others' sd maps carried from the nearest; 0 = every frame (default 1000)")
    out.add_argument("--adapt-steps", type=non_negative_int, default=0, metavar="N",
                     help="fine-tune the backbone for N steps on the observed frames before encoding (default 0)")
    p.add_argument("--bayes", action="store_true",
                   help="integrate the GP hyper-parameters out with NUTS (Pyro) instead of type-II ML; "
                   "ESS, R-hat and divergences go to metrics.json")
    p.add_argument("--nuts", default="200,200,2", metavar="SAMPLES,WARMUP,CHAINS",
                   help="NUTS settings with --bayes (default 200,200,2)")
    inv = p.add_argument_group("inversion (backbones without an encoder, e.g. stylegan2:G.pt, or --refine)")
    inv.add_argument("--invert-steps", type=positive_int, default=200, help="optimisation steps per keyframe (default 200)")
    inv.add_argument("--invert-lr", type=positive_float, default=0.1, help="Adam learning rate (default 0.1)")
    inv.add_argument("--space", choices=("w", "wplus"), default="wplus", help="StyleGAN2 latent space (default wplus)")
    inv.add_argument("--vgg-weights", default=None, metavar="DIR",
                     help="folder with vgg16-397923af.pth and vgg.pth: LPIPS-VGG inversion loss (default: pixel MSE)")
    inv.add_argument("--refine", action="store_true",
                     help="backbones with an encoder: refine each encoding with --invert-steps optimisation steps")
    p.add_argument("--lpips-weights", default=None, metavar="DIR",
                   help="folder with alexnet-owt-7be5be79.pth and alex.pth for LPIPS in metrics.json "
                   "(default: the torch hub cache when they are there; otherwise LPIPS is skipped)")


def register(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("interpolate", help="fill in frames between keyframes with the view-aware GP",
                              description="Encode keyframes, fit the latent GP on them and predict every frame.",
                              epilog=INTERPOLATE_EPILOG, formatter_class=fmt)
    _add_source(p)
    _add_common(p)
    p.add_argument("--keyframes", default=None, metavar="SPEC",
                   help="every:K (every K-th frame from the first, and the last frame, so nothing is extrapolated), "
                   "greedy:K (K frames where the GP is least certain, first and last included), ends, or all "
                   "(default: with --run, the observed mask saved in the run when it holds frames out; else every:10)")
    p.set_defaults(func=run_interpolate)

    p = subparsers.add_parser("smooth", help="smooth the per-frame encodings of every frame",
                              description="Encode all frames and replace each latent by the GP posterior mean.",
                              epilog=SMOOTH_EPILOG, formatter_class=fmt)
    _add_source(p)
    _add_common(p)
    p.set_defaults(func=run_smooth, keyframes="all")

    p = subparsers.add_parser("views", help="predict novel views of a run at new camera poses",
                              description="Fit on the run's frames and predict views on an azimuth sweep around "
                              "the run's look-at centre at its mean distance and elevation.",
                              epilog=VIEWS_EPILOG, formatter_class=fmt)
    _add_source(p)
    _add_common(p)
    p.add_argument("--azimuths", default="0:360:5", help="start:stop:step in degrees (default 0:360:5)")
    p.set_defaults(func=run_views, keyframes="all")


def _load_inputs(args):
    from sequences.cli.backbones import load_backbone

    run = capture_from_args(args)
    return run, load_backbone(args.backbone, args.device)


def _config(args, backbone):
    """The pipeline settings of the options. The encoding and inversion cache goes to ``--out``/cache
    itself, not to the staging folder: it is kept across runs, so a killed run resumes its inversions."""
    from generative.latents.invert import InversionConfig
    from sequences.pipeline.state import PipelineConfig

    inversion = None
    if backbone is not None and (args.refine or not getattr(backbone, "has_encoder", False)):
        inversion = InversionConfig(steps=args.invert_steps, lr=args.invert_lr, space=args.space,
                                    init="encoder" if args.refine else "mean", seed=args.seed)
    return PipelineConfig(inversion=inversion, perceptual_weights=args.vgg_weights, bayes=_nuts(args),
                          methods=tuple(args.method), n_samples=args.samples, fit_steps=args.steps,
                          fps=args.fps, device=args.device, seed=args.seed,
                          progress=not args.quiet, cache_dir=os.path.join(args.out, "cache"),
                          lpips_weights=args.lpips_weights, output_size=args.output_size or None,
                          detail=not args.no_detail, pixel_baselines=not args.no_pixel_baselines,
                          adapt_steps=args.adapt_steps, precision=args.precision,
                          diagnostics=args.diagnostics, score_frames=args.score_frames or None,
                          sample_frames=args.sample_frames or None)


def _nuts(args) -> dict | None:
    """``--nuts SAMPLES,WARMUP,CHAINS`` as NUTS settings when ``--bayes`` is given."""
    if not args.bayes:
        return None
    try:
        ns, nw, nc = (int(v) for v in args.nuts.split(","))
    except ValueError:
        raise UsageError(f"--nuts {args.nuts!r}: expected SAMPLES,WARMUP,CHAINS, e.g. 200,200,2") from None
    if min(ns, nc) < 1 or nw < 0:
        raise UsageError(f"--nuts {args.nuts!r}: need SAMPLES >= 1, WARMUP >= 0 and CHAINS >= 1")
    return dict(num_samples=ns, warmup_steps=nw, num_chains=nc)


def _check_args(args) -> None:
    """Option values argparse cannot check on its own, before anything is read."""
    from viewgp.kernels import KERNEL_NAMES
    from viewgp.predict import BASELINES

    check_output_folder(Path(args.out).expanduser(), args.overwrite)
    require_weights("--lpips-weights", args.lpips_weights, LPIPS_ALEX_FILES)
    require_weights("--vgg-weights", args.vgg_weights, LPIPS_VGG_FILES)
    if not math.isfinite(args.time_offset):
        raise UsageError(f"--time-offset {args.time_offset}: expected a finite number of seconds")
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames {args.max_frames}: expected an integer >= 1")
    unknown = [m for m in args.method if m not in KERNEL_NAMES + BASELINES]
    if unknown:
        raise UsageError(f"--method {unknown[0]!r} is not a method; choose from {', '.join(KERNEL_NAMES + BASELINES)}")
    _nuts(args)


def _inputs(args):
    """The camera run and backbone of the options, the run checked for what the pipeline needs."""
    from sequences.pipeline.state import check_run_for_pipeline

    _check_args(args)
    run, backbone = _load_inputs(args)
    source = args.run or f"{args.video or args.images} with {args.poses}"
    check_run_for_pipeline(run, source)
    return run, backbone


def _keyframes(args, run):
    """The observed-frame mask of ``--keyframes`` (see its help) and a line saying what it chose."""
    from viewgp.keyframes import parse_keyframes

    spec = args.keyframes
    if spec is None and args.run and 0 < run.observed.sum() < len(run):
        mask = run.observed
        return mask, f"keyframes: the {int(mask.sum())} observed frames saved in {args.run} (of {len(run)})"
    spec = spec or "every:10"
    try:
        mask = parse_keyframes(spec, len(run), run.pose_features(with_time=True))
    except ValueError as exc:
        raise UsageError(f"--keyframes: {exc}") from None
    if mask.all() and args.command == "interpolate":
        raise UsageError(f"--keyframes {spec} keeps all {len(run)} frames of the run: nothing is left to interpolate; "
                         "choose fewer keyframes, or smooth every frame with 'viewgp smooth'")
    extra = " (the last frame is always kept)" if spec.startswith("every:") and (len(run) - 1) % int(spec[6:]) else ""
    return mask, f"keyframes {spec}: {int(mask.sum())} of {len(run)} frames{extra}"


def _report(out: str, metrics: dict) -> None:
    """The same summary as ``viewgp demo``: precision, the methods table with the 95% interval column
    (held-out frames), or each method's error over all frames when smoothing."""
    from sequences.pipeline.report import methods_table

    p = metrics["precision"]
    print(f"precision of the posterior samples: {p['precision']} ({p['reason']})")
    if any(e.get("mse_held_out") is not None for e in metrics["methods"].values()):
        print(f"held-out frames scored at {metrics['output_size']} px (centre square):")
        print(methods_table(metrics))
    else:
        for m, e in metrics["methods"].items():
            if e.get("mse_all") is not None:
                print(f"  {m:>12}: MSE {e['mse_all']:.5f} over all frames")
    print(f"wrote {out}: {listing(Path(out))}")


def _run(args, run, backbone, query=None) -> int:
    """The pipeline into a staging folder that replaces ``--out`` on success; prints the summary."""
    from sequences.pipeline.orchestrate import run_pipeline

    with staged_output(args) as staging:
        metrics = run_pipeline(run, backbone, str(staging), _config(args, backbone), query=query)
    _report(args.out, metrics)
    return 0


def run_interpolate(args) -> int:
    run, backbone = _inputs(args)
    mask, line = _keyframes(args, run)
    print(line)
    return _run(args, run.with_observed(mask), backbone)


def run_smooth(args) -> int:
    run, backbone = _inputs(args)
    return _run(args, run.with_observed(np.ones(len(run), bool)), backbone)


#: More novel views than this in one sweep is a typo (e.g. a step of 0.001 degrees).
MAX_VIEWS = 10_000


def parse_range(spec: str) -> np.ndarray:
    """``'start:stop:step'`` (degrees, stop exclusive) -> values."""
    try:
        a, b, s = (float(v) for v in spec.split(":"))
    except ValueError:
        raise UsageError(f"--azimuths {spec!r}: expected start:stop:step, e.g. 0:360:5") from None
    if not all(math.isfinite(v) for v in (a, b, s)) or s <= 0 or b <= a:
        raise UsageError(f"--azimuths {spec!r}: need finite numbers with step > 0 and stop > start")
    if (b - a) / s > MAX_VIEWS:
        raise UsageError(f"--azimuths {spec!r} asks for {int((b - a) / s)} views; at most {MAX_VIEWS}")
    return np.arange(a, b, s)


def run_views(args) -> int:
    from sequences.pipeline.views import azimuth_sweep

    azimuths = parse_range(args.azimuths)
    run, backbone = _inputs(args)
    return _run(args, run.with_observed(np.ones(len(run), bool)), backbone, query=azimuth_sweep(run, azimuths))
