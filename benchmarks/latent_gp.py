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

``--long`` prints, instead, rows for long runs (N = 2,000, 5,000, 10,000, 20,000 frames of a hand-held
phone trajectory, D = 512 smooth latents plus noise), each against the floor measured in the same
process, interleaved with the measurements (``floor``: one torch Cholesky of ``K + s_n^2 I`` plus one
triangular solve with the D right-hand sides, as a user would call them; ``raw``: the same flops with
none of torch's copies, LAPACK's ``potrf`` in place and a solve with column-major right-hand sides
into memory written beforehand):

* ``step``: one value-and-gradient evaluation of the likelihood on all N frames with the exact trace
  term (``gradient_trace="exact"``, the default below 1,024 frames; median of a few, each paired with
  a floor measurement; ``step/floor`` is the median of the pairs' ratios); ``hutch`` the same with
  the trace term estimated from 64 probes (``"hutchinson"``, the default from 1,024 frames on: no
  ``K_y^-1``), against both floors;
* ``fit``: ``gp.fit(X, Z)`` with the public defaults, i.e. hyper-parameters by L-BFGS to convergence
  on an automatic subset of frames (``subset="auto"``), then the solve on all N; ``predict``: posterior mean and variance at all N
  poses; ``peak``: the process's resident memory at most during fit + predict (sampled);
* ``--public N,...``: the plain public call ``LatentGP().fit(X, Z).predict(X)`` (default kernel, start
  values and fit) against one Cholesky + solve of the matrix it fitted;
* ``--accuracy``: held-out error of the subset fit against the full fit where both run, and the
  error of the inducing-point solver against the exact posterior at N = 10,000.

    python benchmarks/latent_gp.py              # full run (a few minutes on 2 CPU cores)
    python benchmarks/latent_gp.py --quick      # smoke run
    python benchmarks/latent_gp.py --long       # long runs (about 15 minutes on 2 cores)
    python benchmarks/latent_gp.py --long --sizes 2000,5000 --accuracy
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

# On a shared machine, OpenMP threads that spin-wait at barriers while another process holds the core
# make small multithreaded kernels up to 50x slower; passive waiting costs little when the machine is
# idle. Must be set before torch loads its OpenMP runtime; export OMP_WAIT_POLICY=ACTIVE to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import math  # noqa: E402

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
    gp = LatentGP(kernel=make_kernel(), optimizer="adam", steps=steps, subset=None)
    t0 = time.perf_counter()
    gp.fit(x, z, callback=lambda s, v: stamps.append(time.perf_counter()))
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


# ------------------------------------------------------------------------------------ long runs
def phone_run(n: int, d: int = 512, seed: int = 0, noise: float = 0.03,
              frequency: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 13)`` pose features of :func:`sequences.synthetic.phone_trajectory` at 30 fps and ``(n, d)``
    latents: a random smooth function of the pose (random Fourier features of vec(R) and the camera
    centre in 20 cm units, frequencies of standard deviation ``frequency``) plus ``noise`` per frame."""
    import numpy as np

    from sequences.synthetic import phone_trajectory

    t, R, C, _ = phone_trajectory(n, 30.0, seed)
    x = pose_features(torch.from_numpy(R), torch.from_numpy(C), torch.from_numpy(t))
    rng = np.random.default_rng(seed)
    f = np.concatenate([R.reshape(n, 9), C / 0.2], 1)
    w, b = rng.normal(size=(12, 32)) * frequency, rng.uniform(0, 2 * np.pi, 32)
    z = np.cos(f @ w + b) @ rng.normal(size=(32, d)) / np.sqrt(32) + noise * rng.normal(size=(n, d))
    return x, torch.from_numpy(z)


class PeakRSS:
    """Largest resident set size of this process while the block runs (sampled every 20 ms), in GB;
    on CUDA the peak of allocated device memory."""

    def __init__(self, device: str = "cpu"):
        self.device, self.peak = device, 0.0

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            return self
        self._stop = threading.Event()
        self.peak = self._rss()

        def watch():
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, self._rss())

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            self.peak = torch.cuda.max_memory_allocated() / 1e9
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss())


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def long_gp(x: torch.Tensor, z: torch.Tensor, device: str, **options) -> LatentGP:
    """The GP of ``gp_predict('view', ...)``: data-driven start (:func:`viewgp.predict.build_gp`)."""
    from viewgp.predict import build_gp

    return build_gp("view", x, x, z, device=device, **options)


def floor_seconds(gp: LatentGP, x: torch.Tensor, c: torch.Tensor, device: str, raw: bool = False) -> float:
    """One torch Cholesky of ``K + s_n^2 I`` plus one triangular solve with the columns of ``c``, as a
    user calls them; ``raw``: the stricter floor of LAPACK's ``potrf`` in place on a copy of ``K``
    made beforehand (:mod:`viewgp.lapack`; torch's Cholesky where it is not found) and the solve with
    column-major right-hand sides into memory written beforehand (no copy, no page fault timed)."""
    from viewgp.lapack import cholesky_lower_
    from viewgp.likelihood import _column_major

    with torch.no_grad():
        K = gp._K(x, x)
        K.diagonal().add_(float(gp.noise))
    if raw:
        A, cf = K.clone(), _column_major(c)
        out = torch.zeros_like(cf.mT).mT
    _sync(device)
    t0 = time.perf_counter()
    if raw:
        L = A if cholesky_lower_(A) == 0 else torch.linalg.cholesky(K)
        torch.linalg.solve_triangular(L, cf, upper=False, out=out)
    else:
        L = torch.linalg.cholesky(K)
        torch.linalg.solve_triangular(L, c, upper=False)
    _sync(device)
    return time.perf_counter() - t0


def floor_and_step(gp: LatentGP, x: torch.Tensor, z: torch.Tensor, reps: int, device: str) -> dict:
    """Medians of the floor and the raw floor (:func:`floor_seconds`) and of the step (value + gradient
    on all frames) with the exact trace term (``gradient_trace="exact"``) and with the Hutchinson
    estimate (``"hutchinson"``, 64 probes), each with the median of its ratios to the floors measured
    beside it; interleaved so load changes hit all; ``reps=0``: the floor only."""
    c = (z - z.mean(0)).to(device)
    x = x.to(device)
    floors, raws, steps = [], [], {"exact": [], "hutchinson": []}
    trace = gp.gradient_trace
    gp._step_cache = {}  # as inside fit(): residuals, probes and buffers are kept between evaluations
    for _ in range(max(reps, 1)):
        floors.append(floor_seconds(gp, x, c, device))
        if not reps:
            break
        raws.append(floor_seconds(gp, x, c, device, raw=True))
        for mode, times in steps.items():
            gp.gradient_trace = mode
            gp.zero_grad()
            t0 = time.perf_counter()
            gp.neg_log_marginal_likelihood(x, c, c.shape[1]).backward()
            _sync(device)
            times.append(time.perf_counter() - t0)
    gp.gradient_trace, gp._step_cache = trace, None
    med = statistics.median
    out = {"floor": med(floors), "raw": med(raws) if raws else math.nan}
    for mode, times in steps.items():
        out[mode] = med(times) if times else math.nan
        out[mode + "/floor"] = med([s / f for s, f in zip(times, floors)]) if times else math.nan
        out[mode + "/raw"] = med([s / f for s, f in zip(times, raws)]) if times else math.nan
    return out


def long_rows(sizes: list[int], d: int, reps: int, device: str, max_step_n: int) -> None:
    print(f"{'N':>6} {'D':>4} {'floor s':>8} {'raw s':>7} {'step s':>7} {'step/floor':>10} {'hutch s':>7} "
          f"{'hutch/floor':>11} {'hutch/raw':>9} {'fit s':>7} {'evals':>5} {'subset':>6} {'predict s':>9} "
          f"{'fit+pred s':>10} {'(fit+pred)/floor':>16} {'peak GB':>7}", flush=True)
    for n in sizes:
        x, z = phone_run(n, d)
        gp = long_gp(x, z, device)
        # Above max_step_n only the floor (for the fit + predict ratio): one step there takes minutes.
        r = floor_and_step(gp, x, z, 0 if n > max_step_n else reps if n <= 10000 else 1, device)
        gp = long_gp(x, z, device)
        with PeakRSS(device) as mem:
            t0 = time.perf_counter()
            gp.fit(x, z)  # the public defaults: L-BFGS on an automatic subset (here no Adam comparison: N > 512)
            _sync(device)
            t1 = time.perf_counter()
            mean, var = gp.predict(x)
            _sync(device)
            t2 = time.perf_counter()
        m = n if gp.subset_ is None else len(gp.subset_)
        print(f"{n:>6} {d:>4} {r['floor']:>8.3f} {r['raw']:>7.3f} {r['exact']:>7.3f} {r['exact/floor']:>10.2f} "
              f"{r['hutchinson']:>7.3f} {r['hutchinson/floor']:>11.2f} {r['hutchinson/raw']:>9.2f} {t1 - t0:>7.2f} "
              f"{len(gp.history_):>5} {m:>6} {t2 - t1:>9.2f} {t2 - t0:>10.2f} {(t2 - t0) / r['floor']:>16.2f} "
              f"{mem.peak:>7.2f}", flush=True)
        del gp, mean, var


def public_rows(sizes: list[int], d: int, device: str) -> None:
    """``LatentGP().fit(X, Z).predict(X)`` with no option at all (the default kernel and its default
    start values, the default fit), against one torch Cholesky + solve of the fitted ``K + s_n^2 I``
    (the floor, measured after it in the same process)."""
    print(f"\nplain public call: LatentGP().fit(X, Z) + predict(X), D = {d}")
    print(f"{'N':>6} {'fit s':>7} {'evals':>5} {'subset':>6} {'optimizer':>9} {'predict s':>9} {'fit+pred s':>10} "
          f"{'floor s':>8} {'(fit+pred)/floor':>16} {'peak GB':>7}", flush=True)
    for n in sizes:
        x, z = phone_run(n, d)
        x, z = x.to(device), z.to(device)
        with PeakRSS(device) as mem:
            t0 = time.perf_counter()
            gp = LatentGP(device=device).fit(x, z)
            _sync(device)
            t1 = time.perf_counter()
            gp.predict(x)
            _sync(device)
            t2 = time.perf_counter()
        floor = floor_seconds(gp, x, (z - z.mean(0)), device)
        m = n if gp.subset_ is None else len(gp.subset_)
        print(f"{n:>6} {t1 - t0:>7.2f} {len(gp.history_):>5} {m:>6} {gp.optimizer_:>9} {t2 - t1:>9.2f} {t2 - t0:>10.2f} "
              f"{floor:>8.3f} {(t2 - t0) / floor:>16.2f} {mem.peak:>7.2f}", flush=True)
        del gp


def held_out_mse(gp: LatentGP, x: torch.Tensor, z: torch.Tensor, held: torch.Tensor) -> float:
    mean, _ = gp.predict(x[held])
    return float((mean.cpu() - z[held]).pow(2).mean())


def accuracy(sizes: list[int], d: int, device: str) -> None:
    """Subset vs full hyper-parameter fit: held-out MSE, every 5th frame held out, for ``sizes`` of
    ``(N, subset, frequency)`` (see :func:`phone_run`)."""
    print("\nsubset fit vs full fit (L-BFGS, every 5th frame held out; both solve on all training frames)")
    print(f"{'N':>6} {'freq':>4} {'train':>6} {'subset':>6} {'full MSE':>10} {'subset MSE':>10} {'diff %':>7} {'full fit s':>10} "
          f"{'subset fit s':>12}", flush=True)
    for n, m, frequency in sizes:
        x, z = phone_run(n, d, frequency=frequency)
        held = torch.arange(n) % 5 == 2
        xt, zt = x[~held], z[~held]
        res = {}
        for name, subset in (("full", None), ("subset", m)):
            gp = long_gp(xt, zt, device, optimizer="lbfgs", steps=150, subset=subset)
            t0 = time.perf_counter()
            gp.fit(xt, zt)
            res[name] = (held_out_mse(gp, x, z, held), time.perf_counter() - t0, gp)
        mf, ms = res["full"][0], res["subset"][0]
        m_used = len(res["subset"][2].subset_) if res["subset"][2].subset_ is not None else xt.shape[0]
        print(f"{n:>6} {frequency:>4g} {xt.shape[0]:>6} {m_used:>6} {mf:>10.6f} {ms:>10.6f} {100 * (ms - mf) / mf:>7.2f} "
              f"{res['full'][1]:>10.1f} {res['subset'][1]:>12.1f}", flush=True)


def inducing_error(n: int, d: int, device: str, tols: list[float], budget: int = 4096) -> None:
    print(f"\ninducing-point (FITC) solver vs the exact posterior, N = {n}, D = {d}, same hyper-parameters "
          f"(subset fit), every 5th frame held out; inducing frames until every frame has correlation >= 1 - tol "
          f"with one (at most {budget}); errors over all N frames: |mean - exact| / |exact - prior mean|, "
          "max |var - exact| / max exact var")
    x, z = phone_run(n, d)
    held = torch.arange(n) % 5 == 2
    xt, zt = x[~held], z[~held]
    gp = long_gp(xt, zt, device, optimizer="lbfgs", steps=150, subset="auto")
    t0 = time.perf_counter()
    gp.fit(xt, zt)
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    m_ex, v_ex = gp.predict(x)
    t_exact += time.perf_counter() - t0
    state = gp.state_dict()
    mse_ex = float((m_ex[held].cpu() - z[held]).pow(2).mean())
    print(f"{'tol':>7} {'M':>6} {'rel. mean err':>13} {'rel. var err':>12} {'held-out MSE':>12} {'exact MSE':>10} "
          f"{'solve+pred s':>12} {'exact s':>8}", flush=True)
    centred = (m_ex - gp.mean_).norm()
    for tol in tols:
        sp = long_gp(xt, zt, device, solver="inducing", max_inducing=budget, inducing_tol=tol, optimizer=None)
        sp.load_state_dict(state)
        t0 = time.perf_counter()
        sp.fit(xt, zt)
        m_sp, v_sp = sp.predict(x)
        dt = time.perf_counter() - t0
        err_m = float((m_sp - m_ex).norm() / centred)
        err_v = float((v_sp - v_ex).abs().max() / v_ex.max())
        mse = float((m_sp[held].cpu() - z[held]).pow(2).mean())
        print(f"{tol:>7.0e} {len(sp.inducing_.index):>6} {err_m:>13.2e} {err_v:>12.2e} {mse:>12.6f} {mse_ex:>10.6f} {dt:>12.1f} "
              f"{t_exact:>8.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes only (smoke run)")
    ap.add_argument("--long", action="store_true", help="long-run rows instead (see above)")
    ap.add_argument("--sizes", default="2000,5000,10000,20000", help="N of the --long rows")
    ap.add_argument("--max-step-n", type=int, default=20000, help="--long: no full-data step above this N")
    ap.add_argument("--reps", type=int, default=3, help="--long: paired floor/step measurements per N")
    ap.add_argument("--accuracy", action="store_true", help="--long: subset and inducing-point accuracy")
    ap.add_argument("--public", default="", metavar="SIZES",
                    help="--long: also rows of the plain LatentGP().fit(X, Z).predict(X) at these N (e.g. 10000)")
    ap.add_argument("--device", default="cpu", help="--long: cpu or cuda")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--max-gb", type=float, default=12.0, help="skip combinations estimated above this memory")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="skip combinations estimated above this time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.long:
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, float64, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        sizes = [int(v) for v in args.sizes.split(",") if v]
        if sizes:
            long_rows(sizes, 512, args.reps, args.device, args.max_step_n)
        public = [int(v) for v in args.public.split(",") if v]
        if public:
            public_rows(public, 512, args.device)
        if args.accuracy:
            accuracy([(2500, 1000, 1.5), (5000, "auto", 1.5), (2500, 1000, 6.0), (5000, "auto", 6.0)], 512, args.device)
            inducing_error(10000, 512, args.device, [1e-2, 1e-3, 1e-4, 1e-5])
        return
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
    LatentGP(kernel=make_kernel(), steps=steps).fit(x, z)
    print(f"{steps}-step fit, N={n} D=512: {time.perf_counter() - t0:.2f} s (target < 20 s at N=1000, 50 steps)")


if __name__ == "__main__":
    main()
