"""Benchmark: NUTS over the view-kernel hyper-parameters for N = 200 frames, D = 512 latents.

Poses: a hand-held phone trajectory (``sequences.synthetic.phone_trajectory``) of 250 frames; every
5th frame is held out (50 query frames), the other 200 are observed. Latents: drawn from the GP prior
with the view kernel (SE orientation x RBF translation) at known hyper-parameters (lengthscales from
the median heuristic, output scale 1, noise 1e-2), so the held-out truth is known.

Prints the NUTS wall time (the type-II ML start excluded, reported separately), the time per
transition, per-hyper-parameter posterior summaries with ESS and split R-hat, divergences, and the
held-out latent RMSE of the Bayesian mixture vs the type-II ML point prediction.

    python benchmarks/bayes_nuts.py                  # 2 chains x (200 warmup + 200 samples)
    python benchmarks/bayes_nuts.py --quick          # 1 chain x (30 + 30), smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/latent_gp.py

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpytorch.kernels import ScaleKernel  # noqa: E402

from viewgp.hyperparameters import init_hyperparameters  # noqa: E402
from sequences.synthetic import phone_trajectory  # noqa: E402
from viewgp.bayes import nuts_latent_gp  # noqa: E402
from viewgp.kernels import make_kernel  # noqa: E402
from viewgp.latent_gp import LatentGP  # noqa: E402
from viewgp.poses import pose_features  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200, help="observed frames N")
    ap.add_argument("--dims", type=int, default=512, help="latent dimensions D")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mean", choices=("constant", "zero"), default="constant",
                    help="GP mean: 'constant' (empirical per-dimension mean, as the pipeline) or 'zero' "
                    "(matches how the latents are drawn, so the true values are recoverable)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.warmup, args.samples, args.chains = 30, 30, 1
    torch.set_num_threads(args.threads)

    n_all = args.frames * 5 // 4
    times, R, C, _ = phone_trajectory(n_all, seed=0)
    X = pose_features(torch.from_numpy(R), torch.from_numpy(C), torch.from_numpy(times))
    held = torch.arange(n_all) % 5 == 4
    x_obs, x_q = X[~held], X[held]

    # Ground-truth latents from the GP prior at data-driven lengthscales.
    g = torch.Generator().manual_seed(0)
    truth = LatentGP(kernel=ScaleKernel(make_kernel("view")), mean="zero")
    init_hyperparameters(truth, x_obs, x_q, torch.ones(2, 1))
    truth.kernel.outputscale = 1.0
    K = truth.kernel(X, X).to_dense().detach() + 1e-8 * torch.eye(n_all, dtype=torch.float64)
    F = torch.linalg.cholesky(K) @ torch.randn(n_all, args.dims, generator=g, dtype=torch.float64)
    Z = F + 0.1 * torch.randn(n_all, args.dims, generator=g, dtype=torch.float64)
    true_hp = {k.removeprefix("base_kernel."): v for k, v in truth.hyperparameters().items()}
    true_hp["noise"] = 0.01

    gp = LatentGP(kernel=ScaleKernel(make_kernel("view")), mean=args.mean)
    init_hyperparameters(gp, x_obs, x_q, Z[~held])
    t0 = time.perf_counter()
    res = nuts_latent_gp(gp, x_obs, Z[~held], num_samples=args.samples, warmup_steps=args.warmup,
                         num_chains=args.chains, seed=0, progress=False)
    total = time.perf_counter() - t0
    s = res.summary()
    n_trans = args.chains * (args.warmup + args.samples)
    print(f"N = {len(x_obs)} observed frames, M = {len(x_q)} query frames, D = {args.dims}, mean = {args.mean}, "
          f"threads = {args.threads}, {args.chains} chain(s) x ({args.warmup} warmup + {args.samples} samples)")
    print(f"NUTS wall time: {s['wall_seconds']:.1f} s ({1e3 * s['wall_seconds'] / n_trans:.0f} ms per transition); "
          f"type-II ML start: {total - s['wall_seconds']:.1f} s")
    print(f"divergences: {s['divergences']} / {s['transitions']}; fallback: {s['fallback']}")
    cols = ("ml", "mean", "q05", "q95", "ess", "rhat")
    print(f"{'hyper-parameter':26s} {'true':>9s}" + "".join(f" {c:>9s}" for c in cols))
    for name, e in s["hyperparameters"].items():
        vals = [true_hp.get(name, float("nan"))] + [e.get(c, float("nan")) for c in cols]
        print(f"{name:26s}" + "".join(f" {v:9.4g}" for v in vals))

    t0 = time.perf_counter()
    mean_b, var_b = res.predict(x_q, max_samples=50)
    t_pred = time.perf_counter() - t0
    mean_ml, var_ml = gp.predict(x_q)
    rmse = lambda m: float((m - F[held]).pow(2).mean().sqrt())  # noqa: E731
    print(f"held-out latent RMSE vs noise-free truth: Bayes {rmse(mean_b):.4f}, ML {rmse(mean_ml):.4f}; "
          f"mean predictive sd: Bayes {float(var_b.mean().sqrt()):.4f}, ML {float(var_ml.mean().sqrt()):.4f}; "
          f"Bayes prediction {t_pred:.2f} s")


if __name__ == "__main__":
    main()
