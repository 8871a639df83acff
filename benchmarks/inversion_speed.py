"""Encoder-based encoding vs optimization-based inversion, and keyframe inversion + GP vs inverting all.

Part 1 (thesis claim: an encoder is > 1000x faster than optimisation): time per frame, at one
resolution, of

* encoding with a Balanced Pioneer encoder (paper widths), batched;
* inverting a StyleGAN2 generator (config-F widths) into W+ with 200 and with 1000 projector steps.

Part 2: a rendered phone-like run through the pipeline with the StyleGAN2 generator as backbone,
(a) inverting every 10th frame and predicting the rest with the view-aware GP, against (b) inverting
every frame; wall time and image MSE against the rendered frames.

No trained StyleGAN2 ships with the project, so both use seeded random weights unless ``--generator``
names a rosinality-format checkpoint (timings do not depend on the weights; errors do). The loss is
pixel MSE unless ``--vgg-weights DIR`` holds the LPIPS-VGG files.

    .venv/bin/python benchmarks/inversion_speed.py --resolution 32 --frames 30
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative.latents.invert import InversionConfig, PerceptualLoss, invert  # noqa: E402
from generative.backbones.pioneer import PioneerAutoencoder, PioneerConfig  # noqa: E402
from generative.backbones.stylegan2 import StyleGAN2Config, StyleGAN2Generator  # noqa: E402


def _generator(args) -> StyleGAN2Generator:
    if args.generator:
        return StyleGAN2Generator.from_rosinality(args.generator, device=args.device).eval()
    torch.manual_seed(0)
    return StyleGAN2Generator(StyleGAN2Config(resolution=args.resolution, channel_multiplier=2,
                                              max_channels=args.max_channels)).to(args.device).eval()


def per_frame_times(args, gen: StyleGAN2Generator, perceptual) -> dict:
    r = gen.resolution
    torch.manual_seed(0)
    enc = PioneerAutoencoder(PioneerConfig(variant="balanced", resolution=r)).to(args.device).eval()
    x = torch.rand(16, 3, r, r, device=args.device) * 2 - 1
    with torch.no_grad():
        enc.encode(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            enc.encode(x)
        t_enc = (time.perf_counter() - t0) / (3 * len(x))
    target = x[:1]
    out = {"encode_s": t_enc}
    invert(gen, target, InversionConfig(steps=2, n_mean_latent=2000), perceptual)  # warm-up (first-call costs)
    for steps in args.steps:
        t0 = time.perf_counter()
        invert(gen, target, InversionConfig(steps=steps, space="wplus", n_mean_latent=2000), perceptual)
        out[f"invert{steps}_s"] = time.perf_counter() - t0
    return out


def keyframes_vs_all(args, gen: StyleGAN2Generator) -> dict:
    from sequences.pipeline import PipelineConfig, parse_keyframes, run_pipeline
    from sequences.synthetic import phone_run

    run = phone_run(args.frames, size=max(64, gen.resolution), seed=0)
    inv = InversionConfig(steps=args.pipeline_steps, space="wplus", n_mean_latent=2000)
    rows = {}
    for name, spec, methods in (("every 10th + view GP", "every:10", ("view",)), ("every frame", "all", ("independent",))):
        with tempfile.TemporaryDirectory() as out:
            cfg = PipelineConfig(methods=methods, n_samples=0, inversion=inv, progress=False, device=args.device,
                                 perceptual_weights=args.vgg_weights)
            t0 = time.perf_counter()
            m = run_pipeline(run.with_observed(parse_keyframes(spec, len(run))), gen, out, cfg)
            wall = time.perf_counter() - t0
        rows[name] = (wall, m["methods"][methods[0]]["mse_all"], int(m["n_observed"]))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--max-channels", type=int, default=512)
    p.add_argument("--steps", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--frames", type=int, default=30, help="frames of the rendered run in part 2")
    p.add_argument("--pipeline-steps", type=int, default=200, help="inversion steps per frame in part 2")
    p.add_argument("--generator", default=None, help="rosinality-format checkpoint (default: random weights)")
    p.add_argument("--vgg-weights", default=None, help="folder with vgg16-397923af.pth and vgg.pth")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--skip-pipeline", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    gen = _generator(args)
    perceptual = PerceptualLoss(args.vgg_weights, device=args.device) if args.vgg_weights else None
    t = per_frame_times(args, gen, perceptual)
    print(f"Part 1: seconds per frame at {gen.resolution} px on {args.device} "
          f"({'LPIPS-VGG' if perceptual else 'pixel MSE'} loss)")
    print(f"| {'method':<26} | {'s / frame':>10} | {'x encoder':>10} |")
    print(f"|{'-' * 28}|{'-' * 12}|{'-' * 12}|")
    print(f"| {'encoder (Balanced Pioneer)':<26} | {t['encode_s']:10.5f} | {1:10.0f} |")
    for steps in args.steps:
        s = t[f"invert{steps}_s"]
        print(f"| {f'inversion, {steps} steps':<26} | {s:10.3f} | {s / t['encode_s']:10.0f} |")
    if args.skip_pipeline:
        return 0
    rows = keyframes_vs_all(args, gen)
    print(f"\nPart 2: rendered phone run, {args.frames} frames, {args.pipeline_steps} inversion steps per frame")
    print(f"| {'protocol':<22} | {'inverted':>8} | {'wall s':>8} | {'image MSE':>9} |")
    print(f"|{'-' * 24}|{'-' * 10}|{'-' * 10}|{'-' * 11}|")
    for name, (wall, mse, n) in rows.items():
        print(f"| {name:<22} | {n:8d} | {wall:8.1f} | {mse:9.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
