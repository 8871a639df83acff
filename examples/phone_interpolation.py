"""Reproduction 8(b): interpolation and smoothing of a hand-held phone run (thesis section 3.3, Fig. 3.7).

Phone-like runs (``sequences.synthetic.phone_run``: standstill, back-and-forth motion, a landscape ->
portrait roll; exact poses) are encoded with the backbone, and three protocols are scored on frames the
methods did not see (or, for smoothing, against the clean frames):

* **ends**: only the first and last frame are observed (hyper-parameters from the data: too few points
  for type-II ML);
* **every 10th**: every 10th frame is observed (type-II ML);
* **smoothing**: every frame is observed, but through noisy encodings (Gaussian pixel noise of sd
  ``--noise`` on the [0, 1] scale added before encoding); each method predicts every frame.

Methods: ``view`` (orientation x translation), ``time`` (a temporal SE kernel only), ``linear``
(SLERP in latent space between the neighbouring observed frames in time; for smoothing that is the noisy
per-frame encodings themselves). ``per-frame`` encodes and decodes the true clean frames: the floor for
any latent-space method with this backbone.

Scores: pixel MSE against the rendered frames (on [0, 1], at the backbone's resolution) and latent MSE
against the encodings of the clean frames, both averaged over the scored frames and over runs.

    .venv/bin/python examples/phone_interpolation.py                  # bundled backbone, 3 runs
    .venv/bin/python examples/phone_interpolation.py --seeds 0 100 101 102 --frames 120
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads crawl on a shared CPU

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative import load, load_default  # noqa: E402
from generative.data import square_resize  # noqa: E402
from generative.frames import decode_frames, encode_frames  # noqa: E402
from sequences.evaluate import frame_errors  # noqa: E402
from viewgp.keyframes import parse_keyframes  # noqa: E402
from viewgp.predict import predict_latents  # noqa: E402
from sequences.synthetic import phone_run  # noqa: E402

METHODS = ("view", "time", "linear")
PROTOCOLS = ("ends", "every:10", "smoothing")


def evaluate_run(backbone, seed: int, frames: int, size: int, noise: float, steps, device: str) -> dict:
    """``{protocol: {method: (pixel MSE, latent MSE)}}`` for one rendered run."""
    run = phone_run(frames, size=size, seed=seed)
    clean = np.stack([square_resize(np.asarray(f), backbone.resolution) for f in run.frames])
    z_clean = encode_frames(backbone, clean, progress=False).astype(np.float64)
    rng = np.random.default_rng(seed)
    noisy = np.clip(clean + rng.normal(0, 255 * noise, clean.shape), 0, 255).round().astype(np.uint8)
    z_noisy = encode_frames(backbone, noisy, progress=False).astype(np.float64)
    poses, times = run.pose_features(with_time=True), np.asarray(run.timestamps)
    geometry = backbone.latent_geometry
    n = len(run)
    out: dict = {}
    for proto in PROTOCOLS:
        if proto == "smoothing":
            obs, z_obs, scored = np.ones(n, bool), z_noisy, np.ones(n, bool)
        else:
            obs = parse_keyframes(proto, n)
            z_obs, scored = z_clean[obs], ~obs
        rows = {}
        for m in METHODS:
            if m == "linear" and proto == "smoothing":
                z = z_noisy  # interpolation through every frame returns the frames' own encodings
            else:
                kw = {} if m == "linear" else dict(steps=steps, device=device)
                z = predict_latents(m, poses[torch.from_numpy(obs)], times[obs], z_obs, poses, times, geometry, **kw).mean
            rows[m] = z
        rows["per-frame"] = z_clean
        scores = {}
        for m, z in rows.items():
            dec = decode_frames(backbone, z.astype(np.float32))
            pix = np.asarray(frame_errors(dec, clean)["mse"])[scored].mean()
            lat = ((z - z_clean) ** 2).sum(1)[scored].mean()
            scores[m] = (float(pix), float(lat))
        out[proto] = scores
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default=None, help="checkpoint (default: the bundled backbone)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 100, 101],
                   help="run seeds (default 0 100 101; the bundled backbone was trained on seeds 1-64)")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--size", type=int, default=64, help="render size before resizing to the backbone's resolution")
    p.add_argument("--noise", type=float, default=0.1, help="pixel noise sd for the smoothing protocol")
    p.add_argument("--steps", type=int, default=None, help="ML-II steps (default: 150, none for < 6 frames)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    backbone = load_default(args.device) if args.backbone is None else load(args.backbone, device=args.device)
    res = [evaluate_run(backbone, s, args.frames, args.size, args.noise, args.steps, args.device) for s in args.seeds]
    print(f"Phone-like runs: {len(args.seeds)} runs x {args.frames} frames, backbone {backbone.kind} "
          f"{backbone.resolution} px; scored frames: held out (ends, every:10) or all (smoothing, noise sd {args.noise})")
    print(f"| {'protocol':<10} | {'method':<9} | {'pixel MSE':>9} | {'latent MSE':>10} | {'runs won (pixel)':>16} |")
    print(f"|{'-' * 12}|{'-' * 11}|{'-' * 11}|{'-' * 12}|{'-' * 18}|")
    for proto in PROTOCOLS:
        for m in METHODS + ("per-frame",):
            pix = np.mean([r[proto][m][0] for r in res])
            lat = np.mean([r[proto][m][1] for r in res])
            wins = sum(all(r[proto][m][0] <= r[proto][k][0] for k in METHODS if k != m) for r in res)
            w = f"{wins}/{len(res)}" if m != "per-frame" else "(floor)"
            print(f"| {proto:<10} | {m:<9} | {pix:9.5f} | {lat:10.4f} | {w:>16} |")
    print(f"\nwall time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
