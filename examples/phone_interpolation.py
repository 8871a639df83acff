"""Reproduction 8(b): interpolation and smoothing of a hand-held phone run (thesis section 3.3, Fig. 3.7).

Phone-like runs (``sequences.synthetic.phone_run``: standstill, back-and-forth motion, a landscape ->
portrait roll; exact poses) are encoded with the backbone, and three protocols are scored on frames the
methods did not see (or, for smoothing, against the clean frames):

* **ends**: only the first and last frame are observed (hyper-parameters from the data: too few points
  for type-II ML);
* **every 10th**: every 10th frame is observed (type-II ML);
* **smoothing**: every frame is observed, but through noisy encodings (Gaussian pixel noise of sd
  ``--noise`` on the [0, 1] scale added before encoding); each method predicts every frame.

Each protocol is one ``sequences.pipeline.run_pipeline`` call (for smoothing the noisy run is observed
and the clean run is the query), so every method of the pipeline is in the table, scored at the
rendered size: latent GP kernels ``view`` (orientation x translation) and ``time`` (a temporal kernel
only), ``linear`` (SLERP in latent space between the neighbouring observed frames in time; for smoothing
that is the noisy per-frame encodings themselves); ``view+warp`` / ``view+detail`` (the view GP's decoded
prediction with the keyframes' own pixels: warped along the decoded motion, or their GP-interpolated
residuals); ``per-frame`` (encode + decode of every true frame, the floor of decoded latents); and the
methods without a backbone: ``px-nearest-time``, ``px-nearest-pose``, ``px-blend`` (time blend of the two
neighbouring keyframes), ``px-blend-pose``, ``px-flow`` (classical optical-flow interpolation between the
same two keyframes), ``px-gp`` (the view GP on pixels).

Scores: held-out pixel MSE (PSNR of it) and SSIM against the clean rendered frames, averaged over runs.

    .venv/bin/python examples/phone_interpolation.py                  # bundled backbone, 3 runs
    .venv/bin/python examples/phone_interpolation.py --seeds 0 100 101 102 --frames 120
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads crawl on a shared CPU

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative import load, load_default  # noqa: E402
from sequences.pipeline import PipelineConfig, run_pipeline  # noqa: E402
from sequences.pipeline.report import aggregate_table  # noqa: E402
from sequences.run import CameraRun  # noqa: E402
from sequences.synthetic import phone_run  # noqa: E402
from viewgp.keyframes import parse_keyframes  # noqa: E402

METHODS = ("view", "time", "linear")
PROTOCOLS = ("ends", "every:10", "smoothing")


def evaluate_run(backbone, seed: int, frames: int, size: int, noise: float, steps, device: str) -> dict:
    """``{protocol: metrics.json method entries}`` for one rendered run."""
    run = phone_run(frames, size=size, seed=seed)
    config = PipelineConfig(methods=METHODS, n_samples=8, fit_steps=steps, device=device, progress=False, media=False,
                            output_size=size)
    out: dict = {}
    for proto in PROTOCOLS:
        with tempfile.TemporaryDirectory() as folder:
            if proto == "smoothing":
                rng = np.random.default_rng(seed)
                clean = np.asarray(run.frames)
                noisy = np.clip(clean + rng.normal(0, 255 * noise, clean.shape), 0, 255).round().astype(np.uint8)
                noisy_run = CameraRun(noisy, run.timestamps, run.rotations, run.translations, intrinsics=run.intrinsics)
                m = run_pipeline(noisy_run, backbone, folder, config, query=run)
            else:
                m = run_pipeline(run.with_observed(parse_keyframes(proto, len(run))), backbone, folder, config)
        out[proto] = m["methods"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default=None, help="checkpoint (default: the bundled backbone)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1000, 1001],
                   help="run seeds (default 0 1000 1001; the bundled backbone was trained on seeds 1-420)")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--size", type=int, default=128, help="render and scoring size (the backbone sees it resized)")
    p.add_argument("--noise", type=float, default=0.1, help="pixel noise sd for the smoothing protocol")
    p.add_argument("--steps", type=int, default=None, help="ML-II steps (default: 150, none for < 6 frames)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    backbone = load_default(args.device) if args.backbone is None else load(args.backbone, device=args.device)
    res = {s: evaluate_run(backbone, s, args.frames, args.size, args.noise, args.steps, args.device) for s in args.seeds}
    print(f"Phone-like runs: {len(args.seeds)} runs x {args.frames} frames at {args.size} px, backbone {backbone.kind} "
          f"{backbone.resolution} px; scored: held-out frames (ends, every:10) or every frame against the clean "
          f"run (smoothing, noise sd {args.noise})\n")
    for proto in PROTOCOLS:
        print(aggregate_table({s: res[s][proto] for s in args.seeds}, f"protocol {proto}, runs"))
        print()
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
