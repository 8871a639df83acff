"""``viewgp bench``: time the latent GP on a synthetic camera run of the size you ask for."""

from __future__ import annotations

import argparse
import time

from sequences.cli.options import add_device_arg, positive_int

EPILOG = """examples:
  viewgp bench                          # N = 300 frames, D = 512 latent dims
  viewgp bench --frames 1000 --dims 512 9216 --steps 20
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time LatentGP fitting and prediction on a synthetic pose trajectory",
        description="Time type-II maximum-likelihood fitting and prediction of the view-aware latent GP "
        "on a synthetic hand-held camera trajectory with random latents.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--frames", type=positive_int, nargs="+", default=[300], help="numbers of frames N (default 300)")
    p.add_argument("--dims", type=positive_int, nargs="+", default=[512], help="latent dimensions D (default 512)")
    p.add_argument("--steps", type=positive_int, default=20, help="ML-II steps to time (default 20)")
    add_device_arg(p, "cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the trajectory and the random latents (default 0)")
    p.set_defaults(func=run)


def _trajectory(n: int, seed: int):
    """A smooth hand-held-like trajectory: slow yaw sweep with wobble, a walk along x."""
    import torch

    from viewgp.poses import pose_features, so3_exp

    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, n / 30.0, n, dtype=torch.float64)
    rv = torch.stack([0.1 * torch.sin(1.3 * t), 0.8 * torch.sin(0.4 * t), 0.05 * torch.cos(2.1 * t)], -1)
    rv = rv + 0.01 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    trans = torch.stack([0.2 * t, 0.05 * torch.sin(t), torch.zeros_like(t)], -1)
    return pose_features(so3_exp(rv), trans, t)


def run(args) -> int:
    import torch

    from viewgp.latent_gp import LatentGP

    torch.manual_seed(args.seed)
    print(f"{'N':>6} {'D':>6} {'ML-II step (ms)':>16} {'predict (ms)':>13} {'sample x8 (ms)':>15}")
    for n in args.frames:
        x = _trajectory(n, args.seed).to(args.device)
        for d in args.dims:
            z = torch.randn(n, d, dtype=torch.float64, device=args.device)
            # Adam on all frames: every step costs the same, so the mean step time is well defined.
            gp = LatentGP(device=args.device, optimizer="adam", steps=1, subset=None)
            gp.fit(x, z)  # warm-up: first call pays one-off costs
            gp.steps = args.steps
            t0 = time.perf_counter()
            gp.fit(x, z)
            step_ms = (time.perf_counter() - t0) / max(args.steps, 1) * 1e3
            t0 = time.perf_counter()
            gp.predict(x)
            pred_ms = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            gp.sample(x, 8, generator=torch.Generator(device=args.device).manual_seed(0))
            samp_ms = (time.perf_counter() - t0) * 1e3
            print(f"{n:>6} {d:>6} {step_ms:>16.1f} {pred_ms:>13.1f} {samp_ms:>15.1f}", flush=True)
    return 0
