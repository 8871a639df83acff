"""``viewgp interpolate | smooth | views``: the encode -> GP -> decode pipeline on a camera run."""

from __future__ import annotations

import argparse
import os

import numpy as np

from .common import add_capture_args, capture_from_args

COMMON_EPILOG = """
kernels (--method, first is decoded with uncertainty): view (orientation x translation, default),
orientation, time, euler, quaternion, geodesic, so3_heat, so3_matern; baselines: linear, nearest,
independent.
"""

INTERPOLATE_EPILOG = """examples:
  viewgp interpolate --video run.mp4 --poses poses.txt --keyframes every:10 --out out/
  viewgp interpolate --images scene/images --poses scene/transforms.json --out out/
  viewgp interpolate --video run.mp4 --poses sparse/0 --frame-times posed_frame_times.txt --out out/
  viewgp interpolate --run saved_run/ --keyframes ends --out out/
  viewgp interpolate --video run.mp4 --poses poses.txt --backbone runs/pioneer64/model.safetensors --out out/
  viewgp interpolate --run saved_run/ --backbone stylegan2:ffhq-256.pt --keyframes greedy:12 --out out/
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
                   help="checkpoint of a trained backbone, or stylegan2:G.pt for a rosinality-format StyleGAN2 "
                   "generator (inverted at the keyframes); default: the bundled 32 px tabletop Pioneer")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", nargs="+", default=["view", "linear"], help="methods to compare (default: view linear)")
    p.add_argument("--samples", type=int, default=8, help="posterior samples decoded for uncertainty maps")
    p.add_argument("--steps", type=int, default=None, help="ML-II steps (default: 150, or none for < 6 keyframes)")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--bayes", action="store_true",
                   help="integrate the GP hyper-parameters out with NUTS (Pyro) instead of type-II ML; "
                   "ESS, R-hat and divergences go to metrics.json")
    p.add_argument("--nuts", default="200,200,2", metavar="SAMPLES,WARMUP,CHAINS",
                   help="NUTS settings with --bayes (default 200,200,2)")
    inv = p.add_argument_group("inversion (backbones without an encoder, e.g. stylegan2:G.pt, or --refine)")
    inv.add_argument("--invert-steps", type=int, default=200, help="optimisation steps per keyframe (default 200)")
    inv.add_argument("--invert-lr", type=float, default=0.1, help="Adam learning rate (default 0.1)")
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
    p.add_argument("--keyframes", default="every:10",
                   help="every:K (default every:10), greedy:K (K frames where the GP is least certain), ends, or all")
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
    run = capture_from_args(args)
    from generative.backbone import load_backbone

    return run, load_backbone(args.backbone, args.device)


def _config(args, backbone=None):
    from generative.invert import InversionConfig
    from sequences.pipeline import PipelineConfig

    inversion = None
    if backbone is not None and (args.refine or not getattr(backbone, "has_encoder", False)):
        inversion = InversionConfig(steps=args.invert_steps, lr=args.invert_lr, space=args.space,
                                    init="encoder" if args.refine else "mean", seed=args.seed)
    bayes = None
    if args.bayes:
        try:
            ns, nw, nc = (int(v) for v in args.nuts.split(","))
        except ValueError:
            raise ValueError(f"--nuts {args.nuts!r}: expected SAMPLES,WARMUP,CHAINS, e.g. 200,200,2") from None
        bayes = dict(num_samples=ns, warmup_steps=nw, num_chains=nc)
    return PipelineConfig(inversion=inversion, perceptual_weights=args.vgg_weights, bayes=bayes, methods=tuple(args.method), n_samples=args.samples, fit_steps=args.steps, fps=args.fps,
                          device=args.device, seed=args.seed, progress=not args.quiet,
                          cache_dir=os.path.join(args.out, "cache"), lpips_weights=args.lpips_weights)


def _report(out: str, metrics: dict) -> None:
    print(f"wrote {out}: interpolated.mp4, comparison.mp4, uncertainty.mp4, strips, plots, metrics.json")
    for m, e in metrics["methods"].items():
        lp = f"  LPIPS {e['lpips_held_out']:.4f}" if "lpips_held_out" in e else ""
        if "mse_held_out" in e:
            print(f"  {m:>12}: held-out MSE {e['mse_held_out']:.5f}  PSNR {e['psnr_held_out']:.2f} dB{lp}")
        elif "mse_all" in e:
            print(f"  {m:>12}: MSE {e['mse_all']:.5f}")


def run_interpolate(args) -> int:
    from sequences.pipeline import parse_keyframes, run_pipeline

    run, backbone = _load_inputs(args)
    run = run.with_observed(parse_keyframes(args.keyframes, len(run), run.pose_features(with_time=True)))
    metrics = run_pipeline(run, backbone, args.out, _config(args, backbone))
    _report(args.out, metrics)
    return 0


def run_smooth(args) -> int:
    from sequences.pipeline import run_pipeline

    run, backbone = _load_inputs(args)
    run = run.with_observed(np.ones(len(run), bool))
    metrics = run_pipeline(run, backbone, args.out, _config(args, backbone))
    _report(args.out, metrics)
    return 0


def parse_range(spec: str) -> np.ndarray:
    """``'start:stop:step'`` (degrees, stop exclusive) -> values."""
    try:
        a, b, s = (float(v) for v in spec.split(":"))
    except ValueError:
        raise ValueError(f"--azimuths {spec!r}: expected start:stop:step, e.g. 0:360:5") from None
    if s <= 0 or b <= a:
        raise ValueError(f"--azimuths {spec!r}: need step > 0 and stop > start")
    return np.arange(a, b, s)


def run_views(args) -> int:
    from sequences.pipeline import azimuth_sweep, run_pipeline

    run, backbone = _load_inputs(args)
    query = azimuth_sweep(run, parse_range(args.azimuths))
    metrics = run_pipeline(run.with_observed(np.ones(len(run), bool)), backbone, args.out, _config(args, backbone), query=query)
    _report(args.out, metrics)
    return 0
