"""AGE / Pioneer / Balanced Pioneer losses (thesis eqs. 2.22-2.25, 3.2-3.3; SPEC 3).

All weights below are in the *code* scale of the original repositories (their READMEs: "all loss
hyper-parameters in the code base are scaled by a factor of 0.1 in comparison to the paper"):
KL weight 0.1, image L1 weight 1, latent weight 100.

* encoder: ``L_E = match_x * L1(G(E(x)), x) + kl_term``, with
  ``kl_term = 0.1 KL(E(x)) - 0.1 KL(E(G(z)))`` (Pioneer) or ``max(-M, 0.1 KL(E(x)) - 0.1 KL(E(G(z))))``
  (Balanced, eq. 3.2, margin ``M`` > 0);
* decoder: ``L_G = 0.1 KL(E(G(z))) + 100 * latent_cosine_loss(E(G(z)), z)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["empirical_kl", "reconstruction_l1", "latent_cosine_loss", "kl_margin", "encoder_kl_term"]


def empirical_kl(z: Tensor, eps: float = 1e-12) -> Tensor:
    """KL(N(mu_j, v_j) || N(0, 1)) averaged over dimensions j, from a batch ``z (B, D)``.

    ``mu_j`` is the batch mean and ``v_j`` the biased batch variance of dimension j:
    ``mean_j[(v_j + mu_j^2) / 2 - log(v_j) / 2 - 1/2]`` (the Aalto code's ``KLN01Loss``; AGE itself
    used v^2 for v and no 1/2, a known bug). ``v`` is clamped at ``eps`` so a collapsed batch gives
    a large finite value instead of inf.
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"empirical_kl needs a batch of at least 2 latents (B, D), got {tuple(z.shape)}")
    mu = z.mean(dim=0)
    var = z.var(dim=0, unbiased=False).clamp_min(eps)
    return ((var + mu.pow(2)) / 2 - var.log() / 2 - 0.5).mean()


def reconstruction_l1(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean absolute error over every element (the code's ``L1``; thesis eq. 2.24 up to a constant)."""
    return (x_hat - x).abs().mean()


def latent_cosine_loss(z_hat: Tensor, z: Tensor, form: str = "code") -> Tensor:
    """Latent reconstruction mismatch between ``z_hat (B, D)`` and ``z (B, D)`` (both L2-normalised here).

    * ``form="code"`` (default, the original ``utils.mismatch``): ``mean_b(2 - (1/D) sum_i zh_i z_i)``
      -- the per-element mean divides the cosine by D, so with weight 100 and D = 512 the effective
      weight on ``-cos`` is 100 / 512 ~= 0.2.
    * ``form="thesis"`` (eq. 2.25): ``mean_b(1 - cos)``.
    """
    zh = F.normalize(z_hat, dim=1)
    zz = F.normalize(z, dim=1)
    if form == "code":
        return 2.0 - (zh * zz).mean()
    if form == "thesis":
        return 1.0 - (zh * zz).sum(dim=1).mean()
    raise ValueError(f"unknown latent loss form '{form}'; use 'code' or 'thesis'")


def kl_margin(gap: Tensor, margin: float) -> Tensor:
    """``max(-margin, gap)`` for ``margin > 0`` (thesis eq. 3.2); ``gap`` unchanged for ``margin <= 0``."""
    if margin > 0:
        return torch.clamp(gap, min=-float(margin))
    return gap


def encoder_kl_term(kl_real: Tensor, kl_fake: Tensor, kl_weight: float, margin: float) -> Tensor:
    """``kl_margin(w KL_real - w KL_fake, margin)``: the encoder pulls real codes towards the prior and
    pushes generated ones away, by at most ``margin`` in total once the gap is wide enough."""
    return kl_margin(kl_weight * kl_real - kl_weight * kl_fake, margin)
