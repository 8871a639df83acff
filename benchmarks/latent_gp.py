"""Benchmark: LatentGP (one Cholesky shared by all latent dims) vs GPyTorch's batch-independent ExactGP.

Prints, in one process:

* the time of one type-II ML step (loss + backward + Adam update; median over a few steps, one-off work
  such as the QR factor of the latents excluded), of the whole fit (one-offs included) and of a
  prediction (mean and variance at N query poses) for N in {300, 1000, 3000} and D in {512, 9216};
  a combination whose estimated memory or time exceeds ``--max-gb`` / ``--max-seconds`` is skipped and
  said so (the estimate uses this machine's measured matmul rate);
* the ratio against GPyTorch's batch-independent multi-output ExactGP (mean ``batch_shape=[D]``, one
  kernel shared by all outputs and expanded to the batch, ``GaussianLikelihood``; notes/ecosystem.md
  1.2) on the same data at N = 300, D = 512 (a couple of steps: it takes seconds per step);
* the wall time of a 50-step fit at N = 1000, D = 512.

Targets: >= 100x faster than the baseline; the 50-step fit under 20 s on 2 cores.

    python benchmarks/latent_gp.py              # full run (a few minutes on 2 CPU cores)
    python benchmarks/latent_gp.py --quick      # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# On a shared machine, OpenMP threads that spin-wait at barriers while another process holds the core
# make small multithreaded kernels up to 50x slower; passive waiting costs little when the machine is
# idle. Must be set before torch loads its OpenMP runtime; export OMP_WAIT_POLICY=ACTIVE to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gpytorch  # noqa: E402
from gpytorch.kernels import RBFKernel, ScaleKernel  # noqa: E402

from viewgp.latent_gp import LatentGP  # noqa: E402
from viewgp.poses import pose_features, so3_exp  # noqa: E402

try:
    from viewgp.kernels import ViewKernel  # noqa: E402

    KERNEL_NAME = "ScaleKernel(ViewKernel())"
except ImportError:  # kernels not available: any GPyTorch kernel will do for timing
    ViewKernel = None
    KERNEL_NAME = "ScaleKernel(RBFKernel())"


def make_kernel() -> gpytorch.kernels.Kernel:
    return ScaleKernel(ViewKernel() if ViewKernel is not None else RBFKernel()).double()


def trajectory(n: int, seed: int = 0) -> torch.Tensor:
    """``(n, 12)`` pose features of a smooth hand-held-like camera path with a little jitter."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, n / 30.0, n, dtype=torch.float64)
    rv = torch.stack([0.1 * torch.sin(1.3 * t), 0.8 * torch.sin(0.4 * t), 0.05 * torch.cos(2.1 * t)], -1)
    rv = rv + 0.01 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    trans = torch.stack([0.2 * t, 0.05 * torch.sin(t), torch.zeros_like(t)], -1)
    return pose_features(so3_exp(rv), trans)


def latents(n: int, d: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def gflops_rate() -> float:
    """Measured float64 matmul rate of this process (GFLOP/s), for the skip estimates."""
    a = torch.randn(1000, 1000, dtype=torch.float64)
    a @ a
    t0 = time.perf_counter()
    for _ in range(3):
        a @ a
    return 3 * 2e9 / (time.perf_counter() - t0) / 1e9


def estimate(n: int, d: int, steps: int) -> tuple[float, float]:
    """Rough (GFLOP, GB) of a fit with ``steps`` steps plus one prediction at n query poses."""
    k = min(n, d)
    one_off = (2 * d * n * n if d > n else 0) + n**3 / 3 + 2 * n * n * d  # QR factor, factorisation
    per_step = 4 / 3 * n**3 + 4 * n * n * k  # Cholesky + inverse, solve + outer product
    predict = 2 * n * n * d + n**3
    gb = (4 * n * d + 8 * n * n) * 8 / 1e9  # latents, residuals, alpha, mean; a few N x N matrices
    return (one_off + steps * per_step + predict) / 1e9, gb


def time_ours(x: torch.Tensor, z: torch.Tensor, steps: int) -> dict:
    stamps: list[float] = []
    gp = LatentGP(kernel=make_kernel())
    t0 = time.perf_counter()
    gp.fit(x, z, steps=steps, callback=lambda s, v: stamps.append(time.perf_counter()))
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    gp.predict(x)
    pred = time.perf_counter() - t0
    step = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))
    return {"step": step, "fit": fit, "predict": pred}


def time_gpytorch(x: torch.Tensor, z: torch.Tensor, steps: int) -> float:
    """GPyTorch's documented batch-independent multi-output model, kernel shared across outputs."""
    d = z.shape[1]

    class BatchGP(gpytorch.models.ExactGP):
        def __init__(self, x, y, lik):
            super().__init__(x, y, lik)
            self.mean = gpytorch.means.ConstantMean(batch_shape=torch.Size([d]))
            self.cov = make_kernel()

        def forward(self, x):
            k = self.cov(x).expand(d, x.shape[-2], x.shape[-2])  # gpleiss' tip (issue #2628)
            return gpytorch.distributions.MultivariateNormal(self.mean(x), k)

    y = z.T.contiguous()
    lik = gpytorch.likelihoods.GaussianLikelihood()
    model = BatchGP(x, y, lik).double()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    times = []
    with gpytorch.settings.max_cholesky_size(10**5):
        for _ in range(steps + 1):  # the first step is a warm-up
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = -mll(model(x), y).sum()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    return statistics.mean(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes only (smoke run)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--max-gb", type=float, default=12.0, help="skip combinations estimated above this memory")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="skip combinations estimated above this time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [100, 300] if args.quick else [300, 1000, 3000]
    dims = [512, 2048] if args.quick else [512, 9216]
    rate = gflops_rate()
    time_ours(trajectory(50), latents(50, 8), 3)  # warm-up: first calls pay one-off library costs
    print(f"torch {torch.__version__}, gpytorch {gpytorch.__version__}, threads {torch.get_num_threads()}, "
          f"float64, kernel {KERNEL_NAME}, matmul {rate:.1f} GFLOP/s, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'N':>6} {'D':>6} {'ML-II step (s)':>15} {'fit (s)':>9} {'steps':>6} {'predict (s)':>12}")
    results = {}
    for n in sizes:
        x = trajectory(n)
        for d in dims:
            steps = 10 if n <= 1000 else 4
            gflop, gb = estimate(n, d, steps)
            secs = gflop / rate
            if gb > args.max_gb or secs > args.max_seconds:
                print(f"{n:>6} {d:>6}   skipped: estimated {gb:.1f} GB, {secs:.0f} s "
                      f"(limits {args.max_gb:g} GB, {args.max_seconds:g} s)", flush=True)
                continue
            r = time_ours(x, latents(n, d), steps)
            results[(n, d)] = r["step"]
            print(f"{n:>6} {d:>6} {r['step']:>15.4f} {r['fit']:>9.2f} {steps:>6} {r['predict']:>12.4f}", flush=True)

    n, d = (100, 512) if args.quick else (300, 512)
    x, z = trajectory(n), latents(n, d)
    base = time_gpytorch(x, z, steps=1 if args.quick else 2)
    ours = results.get((n, d)) or time_ours(x, z, 10)["step"]
    print(f"\nGPyTorch batch-independent ExactGP, N={n} D={d}: {base:.3f} s per step")
    print(f"LatentGP, N={n} D={d}: {ours * 1e3:.1f} ms per step -> {base / ours:.0f}x faster (target >= 100x)")

    n, steps = (300, 10) if args.quick else (1000, 50)
    x, z = trajectory(n), latents(n, 512, seed=2)
    t0 = time.perf_counter()
    LatentGP(kernel=make_kernel()).fit(x, z, steps=steps)
    print(f"{steps}-step fit, N={n} D=512: {time.perf_counter() - t0:.2f} s (target < 20 s at N=1000, 50 steps)")


if __name__ == "__main__":
    main()
