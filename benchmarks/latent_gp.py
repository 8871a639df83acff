"""Benchmark: LatentGP (one Cholesky shared by all latent dims) vs GPyTorch's batch-independent ExactGP.

Prints, in one process, the time of one type-II ML step (loss + backward) and of a prediction (mean and
variance at N query poses) for N in {300, 1000, 3000} and D in {512, 9216}; the ratio against GPyTorch's
batch-independent multi-output ExactGP (mean batch_shape [D], shared kernel, GaussianLikelihood) on the
same data at N = 300, D = 512; and the wall time of a 50-step fit at N = 1000, D = 512.

    python benchmarks/latent_gp.py            # full run (a few minutes on 2 CPU cores)
    python benchmarks/latent_gp.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gpytorch  # noqa: E402
from gpytorch.kernels import ScaleKernel  # noqa: E402

from viewgp.kernels import ViewKernel  # noqa: E402
from viewgp.latent_gp import LatentGP  # noqa: E402
from viewgp.poses import pose_features, so3_exp  # noqa: E402


def trajectory(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, n / 30.0, n, dtype=torch.float64)
    rv = torch.stack([0.1 * torch.sin(1.3 * t), 0.8 * torch.sin(0.4 * t), 0.05 * torch.cos(2.1 * t)], -1)
    rv = rv + 0.01 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    trans = torch.stack([0.2 * t, 0.05 * torch.sin(t), torch.zeros_like(t)], -1)
    return pose_features(so3_exp(rv), trans)


def time_ours(x: torch.Tensor, z: torch.Tensor, steps: int) -> tuple[float, float]:
    gp = LatentGP(kernel=ScaleKernel(ViewKernel()).double())
    gp.fit(x, z, steps=1)  # warm-up
    t0 = time.perf_counter()
    gp.fit(x, z, steps=steps)
    step = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    gp.predict(x)
    return step, time.perf_counter() - t0


def time_gpytorch(x: torch.Tensor, z: torch.Tensor, steps: int) -> float:
    """GPyTorch's documented batch-independent multi-output model, kernel shared across outputs."""
    d = z.shape[1]

    class BatchGP(gpytorch.models.ExactGP):
        def __init__(self, x, y, lik):
            super().__init__(x, y, lik)
            self.mean = gpytorch.means.ConstantMean(batch_shape=torch.Size([d]))
            self.cov = ScaleKernel(ViewKernel())

        def forward(self, x):
            m = self.mean(x)
            k = self.cov(x).expand(d, x.shape[-2], x.shape[-2])
            return gpytorch.distributions.MultivariateNormal(m, k)

    lik = gpytorch.likelihoods.GaussianLikelihood()
    model = BatchGP(x, z.T.contiguous(), lik).double()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    times = []
    with gpytorch.settings.max_cholesky_size(10**5):
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = -mll(model(x), z.T).sum()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    return sum(times[1:]) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-gb", type=float, default=12.0, help="skip sizes whose latents exceed this")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [300, 1000] if args.quick else [300, 1000, 3000]
    dims = [512] if args.quick else [512, 9216]
    print(f"torch {torch.__version__}, gpytorch {gpytorch.__version__}, threads {torch.get_num_threads()}, float64")
    print(f"{'N':>6} {'D':>6} {'ML-II step (s)':>15} {'predict (s)':>12}")
    results = {}
    for n in sizes:
        x = trajectory(n)
        for d in dims:
            gb = n * d * 8 * 4 / 1e9  # latents, residuals, alpha, predictions
            if gb > args.max_gb:
                print(f"{n:>6} {d:>6}   skipped (~{gb:.1f} GB)")
                continue
            z = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
            steps = 10 if n <= 1000 else 3
            step, pred = time_ours(x, z, steps)
            results[(n, d)] = step
            print(f"{n:>6} {d:>6} {step:>15.4f} {pred:>12.4f}", flush=True)

    x = trajectory(300)
    z = torch.randn(300, 512, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    base = time_gpytorch(x, z, steps=1 if args.quick else 2)
    ours = results.get((300, 512)) or time_ours(x, z, 10)[0]
    print(f"\nGPyTorch batch-independent ExactGP, N=300 D=512: {base:.3f} s per step")
    print(f"LatentGP, N=300 D=512: {ours * 1e3:.1f} ms per step -> {base / ours:.0f}x faster (target >= 100x)")

    x = trajectory(1000)
    z = torch.randn(1000, 512, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    t0 = time.perf_counter()
    LatentGP(kernel=ScaleKernel(ViewKernel()).double()).fit(x, z, steps=50)
    print(f"50-step fit, N=1000 D=512: {time.perf_counter() - t0:.2f} s (target < 20 s)")


if __name__ == "__main__":
    main()
