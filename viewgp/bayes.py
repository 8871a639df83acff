"""Fully Bayesian latent GP: priors over the kernel hyper-parameters, NUTS (Pyro) over them, and
posterior predictions averaged over the hyper-parameter samples.

Parameterisation. Every positive hyper-parameter of a :class:`~viewgp.latent_gp.LatentGP` (each raw
GPyTorch parameter of its kernel, i.e. output scale, lengthscales, ARD scales, and the noise) is
sampled as ``u = log(theta)``, element-wise, in one flat vector. The priors are log-normal,

    log theta_j ~ N(log theta0_j, s_j^2),

centred on the data-driven starting values ``theta0`` the GP carries when :func:`nuts_latent_gp` is
called (median-heuristic lengthscales, output scale = latent variance, noise = 1% of it in the
pipeline); ``s_j`` is ``prior_log_sd`` (1 by default) and ``noise_log_sd`` (2) for the noise. In ``u``
the density of a log-normal on ``theta`` times the Jacobian ``|d theta / d u| = theta`` is exactly the
normal density of ``u``, so the potential energy is

    U(u) = -log p(Z | theta(u)) + sum_j (u_j - log theta0_j)^2 / (2 s_j^2)   (+ const),

with ``log p(Z | theta)`` the multi-output log marginal likelihood of :class:`LatentGP` (one Cholesky
for all D latent dimensions, its closed-form ``dK`` gradient, O(N^3) per evaluation whatever D is).
The raw GPyTorch parameters are ``constraint.inverse_transform(exp(u))``, substituted with
``torch.func.functional_call`` so the gradient flows back to ``u``.

Sampling. One or more NUTS chains run one after another in-process (Pyro's multi-chain mode forks
processes, which is slow and fragile on CPU), started from the type-II ML estimate (plus a small
seeded perturbation per chain). Diagnostics per hyper-parameter: effective sample size and split
R-hat (``pyro.ops.stats``; split R-hat is defined for a single chain too), and the number of divergent
transitions. If sampling raises, more than ``max_divergent_frac`` of the transitions diverge or any
R-hat exceeds ``max_rhat``, the result falls back to the type-II ML point estimate with a warning, and
``BayesResult.fallback`` says why.

Prediction. For S thinned posterior samples the GP posterior is computed at each ``theta_s`` and
mixed (law of total variance):

    mean = 1/S sum_s m_s,     var = 1/S sum_s v_s + 1/(S D) sum_{s,d} (m_{s,d} - mean_d)^2,

the second term averaged over the D latent dimensions so the variance keeps LatentGP's shared ``(M,)``
shape. With every sample equal this is exactly :meth:`LatentGP.predict` at that ``theta``.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from viewgp.latent_gp import LatentGP

__all__ = ["HyperParameter", "BayesResult", "nuts_latent_gp", "bayes_predict"]


@dataclass(frozen=True)
class HyperParameter:
    """One raw GPyTorch parameter of a LatentGP, sampled element-wise in log space."""

    name: str  # parameter path in the LatentGP, e.g. "kernel.base_kernel.orientation.raw_lengthscale"
    label: str  # readable name, e.g. "orientation.lengthscale"
    shape: torch.Size
    constraint: object  # GPyTorch Interval / Positive / GreaterThan
    offset: int  # first index in the flat vector u

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))


def _label(name: str) -> str:
    """``kernel.base_kernel.orientation.raw_lengthscale`` -> ``orientation.lengthscale`` (the keys of
    :meth:`LatentGP.hyperparameters`); ``raw_noise`` -> ``noise``."""
    parts = name.split(".")
    if parts[0] == "kernel":
        parts = parts[1:]
    parts = [p for p in parts if p != "base_kernel"]
    parts[-1] = parts[-1].removeprefix("raw_")
    return ".".join(parts)


def hyperparameter_layout(gp: LatentGP) -> list[HyperParameter]:
    """All positive hyper-parameters of ``gp``: kernel raw parameters (with their constraints) and the
    noise, unless ``gp.learn_noise`` is False (then the noise stays fixed)."""
    out, offset = [], 0
    for name, p in gp.named_parameters():
        if name == "raw_noise":
            if not gp.learn_noise:
                continue
            constraint = gp.noise_constraint
        else:
            owner, _, attr = name.rpartition(".")
            constraint = gp.get_submodule(owner).constraint_for_parameter_name(attr)
        if constraint is None or float(torch.as_tensor(constraint.lower_bound).max()) < 0:
            raise ValueError(
                f"hyper-parameter {name!r} is not constrained positive ({constraint}); cannot sample its log"
            )
        hp = HyperParameter(name, _label(name), p.shape, constraint, offset)
        out.append(hp)
        offset += hp.size
    return out


def _raw(hp: HyperParameter, u: Tensor) -> Tensor:
    """Raw (unconstrained GPyTorch) value for log-values ``u`` of one hyper-parameter."""
    value = u[hp.offset : hp.offset + hp.size].exp().reshape(hp.shape)
    lo = torch.as_tensor(hp.constraint.lower_bound, dtype=u.dtype)
    # A GreaterThan(lb) value must stay above lb; the prior keeps theta >> lb in practice.
    return hp.constraint.inverse_transform(torch.maximum(value, lo * (1 + 1e-9) + 1e-300))


def current_log_values(gp: LatentGP, layout: list[HyperParameter]) -> Tensor:
    """Flat ``u = log(theta)`` of ``gp``'s current hyper-parameters."""
    params = dict(gp.named_parameters())
    vals = [hp.constraint.transform(params[hp.name].detach()).reshape(-1) for hp in layout]
    return torch.cat(vals).log()


def set_log_values(gp: LatentGP, layout: list[HyperParameter], u: Tensor) -> None:
    """Write ``theta = exp(u)`` into ``gp``'s raw parameters (in place)."""
    params = dict(gp.named_parameters())
    with torch.no_grad():
        for hp in layout:
            params[hp.name].copy_(_raw(hp, u.to(params[hp.name].dtype)))


class _NegLogLik(nn.Module):
    """``-log p(Z | theta)`` as a module so ``functional_call`` can substitute the raw parameters."""

    def __init__(self, gp: LatentGP):
        super().__init__()
        self.gp = gp

    def forward(self, x: Tensor, c: Tensor, d: int) -> Tensor:
        return self.gp.neg_log_marginal_likelihood(x, c, d)


def make_potential(gp: LatentGP, layout: list[HyperParameter], prior_loc: Tensor, prior_scale: Tensor):
    """Potential energy ``U(u)`` (negative log joint, up to a constant) on the data ``gp`` was fitted
    to; ``u`` is a flat ``(P,)`` vector. NaN where the kernel matrix is not positive definite (Pyro's
    NUTS treats a NaN energy as a divergence)."""
    if not gp.is_fitted:
        raise RuntimeError("make_potential needs a fitted LatentGP (call gp.fit first)")
    x, c, d = gp.train_poses_, gp.residual_factor_, gp.alpha_.shape[1]
    module = _NegLogLik(gp)

    def potential(params: dict) -> Tensor:
        u = params["u"]
        raws = {f"gp.{hp.name}": _raw(hp, u) for hp in layout}
        prior = 0.5 * ((u - prior_loc) / prior_scale).pow(2).sum()
        try:
            nll = torch.func.functional_call(module, raws, (x, c, d))
        except ValueError:  # NotPSDError or a non-finite kernel matrix
            return u.sum() * math.nan
        return nll + prior

    return potential


@dataclass
class BayesResult:
    """Output of :func:`nuts_latent_gp`.

    ``samples``: ``(C, S, P)`` log hyper-parameters per chain (``None`` if sampling raised);
    ``ml``: ``(P,)`` type-II ML log values (start of the chains and fallback); ``fallback``: why the
    point estimate is used instead of the samples (``None`` when the samples are used).
    """

    gp: LatentGP
    layout: list[HyperParameter]
    poses: Tensor  # (N, P) observed poses
    latents: Tensor  # (N, *latent_shape) observed latents
    ml: Tensor
    samples: Optional[Tensor]
    divergences: int = 0
    transitions: int = 0
    wall_seconds: float = 0.0
    fallback: Optional[str] = None
    prior_loc: Optional[Tensor] = None
    prior_scale: Optional[Tensor] = None
    _diag: dict = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """One readable name per entry of the flat vector (``orientation.lengthscale[0]`` for vectors)."""
        out = []
        for hp in self.layout:
            out += [hp.label] if hp.size == 1 else [f"{hp.label}[{i}]" for i in range(hp.size)]
        return out

    def flat_samples(self) -> Tensor:
        """``(C S, P)`` log hyper-parameters used for prediction (the ML point if a fallback applies)."""
        if self.fallback is not None or self.samples is None:
            return self.ml.unsqueeze(0)
        return self.samples.reshape(-1, self.samples.shape[-1])

    def diagnostics(self) -> dict:
        """Per-parameter effective sample size and split R-hat (``{}`` without samples)."""
        if self.samples is None:
            return {}
        if not self._diag:
            from pyro.ops.stats import effective_sample_size, split_gelman_rubin

            s = self.samples
            self._diag = {
                "ess": effective_sample_size(s, chain_dim=0, sample_dim=1),
                "rhat": split_gelman_rubin(s, chain_dim=0, sample_dim=1),
            }
        return self._diag

    def summary(self) -> dict:
        """JSON-ready summary: per hyper-parameter posterior mean, 5% / 95% quantiles, ESS, R-hat and
        the ML value (in the natural, not log, scale); divergences, wall time and fallback reason."""
        per = {}
        diag = self.diagnostics()
        theta = self.samples.reshape(-1, self.samples.shape[-1]).exp() if self.samples is not None else None
        for j, name in enumerate(self.labels):
            entry = {"ml": float(self.ml[j].exp())}
            if theta is not None:
                q = torch.quantile(theta[:, j], torch.tensor([0.05, 0.95], dtype=theta.dtype))
                entry.update(
                    mean=float(theta[:, j].mean()),
                    q05=float(q[0]),
                    q95=float(q[1]),
                    ess=float(diag["ess"][j]),
                    rhat=float(diag["rhat"][j]),
                )
            if self.prior_loc is not None:
                entry["prior_median"] = float(self.prior_loc[j].exp())
            per[name] = entry
        return {
            "hyperparameters": per,
            "chains": 0 if self.samples is None else int(self.samples.shape[0]),
            "samples_per_chain": 0 if self.samples is None else int(self.samples.shape[1]),
            "divergences": int(self.divergences),
            "transitions": int(self.transitions),
            "wall_seconds": float(self.wall_seconds),
            "fallback": self.fallback,
        }

    def predict(self, poses, max_samples: int = 50) -> tuple[Tensor, Tensor]:
        """Posterior predictive at ``poses`` ``(M, P)`` averaged over at most ``max_samples`` evenly
        thinned hyper-parameter samples. Returns mean ``(M, *latent_shape)`` and variance ``(M,)`` of
        the latent function (see the module docstring); the GP is left at the ML estimate."""
        return bayes_predict(self.gp, self.layout, self.flat_samples(), self.poses, self.latents, poses,
                             max_samples, restore=self.ml)


def bayes_predict(
    gp: LatentGP,
    layout: list[HyperParameter],
    log_samples: Tensor,
    poses_obs,
    latents,
    poses,
    max_samples: int = 50,
    restore: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """Mixture of GP posteriors over hyper-parameter samples ``log_samples`` ``(S, P)`` (log values in
    ``layout`` order), conditioned on ``poses_obs`` ``(N, P)`` / ``latents`` ``(N, ...)``, at ``poses``
    ``(M, P)``: mean ``(M, *latent_shape)``, variance ``(M,)``.

    At most ``max_samples`` evenly thinned samples are used; ``gp`` is refactorised at each (the solve
    of :meth:`~viewgp.latent_gp.LatentGP.fit` with nothing optimised, whatever ``gp``'s ``optimizer``)
    and finally set to ``restore`` (default: the last sample used).
    """
    s = log_samples.shape[0]
    idx = torch.linspace(0, s - 1, min(s, max_samples), dtype=torch.float64).round().long().unique()
    m_sum = m_sq = v_sum = None
    with torch.no_grad():
        for i in idx.tolist():
            set_log_values(gp, layout, log_samples[i])
            gp._fit(poses_obs, latents, optimizer=None)
            xq = gp.as_poses(poses)
            mean, V = gp.posterior(xq)  # flat (M, D), unprojected: project the mixture mean only
            var = (gp.kernel_diag(xq) - V.pow(2).sum(0)).clamp_min(0)
            m_sum = mean.clone() if m_sum is None else m_sum + mean
            m_sq = mean.pow(2) if m_sq is None else m_sq + mean.pow(2)
            v_sum = var if v_sum is None else v_sum + var
        k = len(idx)
        mean = m_sum / k
        between = (m_sq / k - mean.pow(2)).clamp_min(0).mean(1) if k > 1 else torch.zeros_like(v_sum)
        var = v_sum / k + between
        if restore is not None:
            set_log_values(gp, layout, restore)
            gp._fit(poses_obs, latents, optimizer=None)
        mean = gp.project(mean.reshape((-1,) + gp.latent_shape_))
    return mean, var


def nuts_latent_gp(
    gp: LatentGP,
    poses,
    latents,
    num_samples: int = 200,
    warmup_steps: int = 200,
    num_chains: int = 2,
    seed: int = 0,
    ml_steps: int = 150,
    prior_log_sd: float = 1.0,
    noise_log_sd: float = 2.0,
    max_tree_depth: int = 8,
    max_divergent_frac: float = 0.1,
    max_rhat: float = 1.1,
    progress: bool = False,
) -> BayesResult:
    """NUTS over the hyper-parameters of ``gp`` given ``poses`` ``(N, P)`` and ``latents`` ``(N, D)``
    or ``(N, *latent_shape)``.

    ``gp``'s current hyper-parameters are the prior medians (set them from the data first, e.g. with
    the pipeline's median heuristic). ``gp`` is then fitted by type-II ML (``ml_steps`` Adam steps;
    0 keeps the prior medians) to start the chains and to serve as the fallback. ``num_chains`` chains
    of ``warmup_steps + num_samples`` NUTS transitions run one after another (seeds ``seed + chain``).
    On return ``gp`` holds the ML estimate.
    """
    import pyro
    from pyro.infer.mcmc import MCMC, NUTS

    if int(num_chains) < 1 or int(num_samples) < 4 or int(warmup_steps) < 0:
        raise ValueError(
            f"need num_chains >= 1, num_samples >= 4 (split R-hat halves each chain) and warmup_steps >= 0; "
            f"got {num_chains}, {num_samples}, {warmup_steps}"
        )
    layout = hyperparameter_layout(gp)
    prior_loc = current_log_values(gp, layout)
    dtype = prior_loc.dtype
    prior_scale = torch.full_like(prior_loc, prior_log_sd)
    for hp in layout:
        if hp.name == "raw_noise":
            prior_scale[hp.offset : hp.offset + hp.size] = noise_log_sd
    # Adam on all frames whatever gp's own fit options (they stay as they are).
    gp._fit(poses, latents, optimizer="adam", steps=ml_steps, subset=None)
    ml = current_log_values(gp, layout)
    potential = make_potential(gp, layout, prior_loc, prior_scale)
    result = BayesResult(gp, layout, gp.train_poses_, torch.as_tensor(latents), ml, None,
                         prior_loc=prior_loc, prior_scale=prior_scale)

    t0 = time.perf_counter()
    chains, divergences, transitions = [], 0, 0
    rng_state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:  # pyro.set_rng_seed reseeds the global generators: they are restored afterwards
        for chain in range(num_chains):
            pyro.set_rng_seed(seed + chain)
            g = torch.Generator().manual_seed(seed + chain)
            start = ml + (0.1 * torch.randn(ml.shape, generator=g, dtype=dtype) if chain > 0 else 0)
            kernel = NUTS(potential_fn=potential, max_tree_depth=max_tree_depth, adapt_step_size=True,
                          adapt_mass_matrix=True, full_mass=False)
            mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=1,
                        initial_params={"u": start.clone()}, disable_progbar=not progress)
            mcmc.run()
            chains.append(mcmc.get_samples()["u"].detach().to(dtype))
            divergences += sum(len(v) for v in mcmc.diagnostics().get("divergences", {}).values())
            transitions += num_samples
    except (RuntimeError, ValueError) as e:
        result.fallback = f"NUTS raised {type(e).__name__}: {e}"
    finally:
        random.setstate(rng_state[0])
        np.random.set_state(rng_state[1])
        torch.set_rng_state(rng_state[2])
    result.wall_seconds = time.perf_counter() - t0
    result.divergences, result.transitions = divergences, transitions
    if result.fallback is None:
        result.samples = torch.stack(chains)
        bad = ~torch.isfinite(result.samples)
        rhat = result.diagnostics()["rhat"]
        worst = int(torch.nan_to_num(rhat, nan=math.inf).argmax())
        if bool(bad.any()):
            result.fallback = "NUTS produced non-finite samples"
        elif divergences > max_divergent_frac * transitions:
            result.fallback = (f"{divergences} of {transitions} NUTS transitions diverged (more than "
                               f"{max_divergent_frac:.0%})")
        elif not float(rhat[worst]) <= max_rhat:
            result.fallback = (f"R-hat of {result.labels[worst]} is {float(rhat[worst]):.3f} > {max_rhat} "
                               f"(chains have not mixed)")
    if result.fallback is not None:
        warnings.warn(f"Bayesian GP: {result.fallback}; using the type-II ML point estimate instead",
                      RuntimeWarning, stacklevel=2)
    return result  # functional_call never touched gp's parameters: it still holds the ML fit
