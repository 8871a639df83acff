"""FITC (fully independent training conditional) posterior on inducing frames, for runs too long for
an exact N x N factorisation.

With ``M`` inducing frames ``Z`` (a subset of the run chosen by :func:`viewgp.subset.kernel_cover`,
so every frame is within correlation ``1 - tol`` of one, the "keyframes" of the approximation) the
prior covariance is replaced by ``Q + diag(K - Q)``, ``Q = K_nz K_zz^-1 K_zn``: exact on the
diagonal, low rank off it. With ``Lam = s_n^2 + diag(K - Q)`` (N,), ``L_z L_z^T = K_zz`` and
``V = L_z^-1 K_zn`` (M x N),

    B = I + V Lam^-1 V^T = L_B L_B^T,      alpha = L_z^-T L_B^-T L_B^-1 V Lam^-1 R     (M x D),
    mean(q) = m + k_qz alpha,              var(q) = k_qq - |L_z^-1 k_zq|^2 + |L_B^-1 L_z^-1 k_zq|^2,

O(N M^2) time and O(N M) memory, one factorisation for all D (Snelson & Ghahramani 2006; the
numerically stable form of Rasmussen & Williams 2006, 8.3). The hyper-parameters are those of the
exact fit on a subset of frames (:class:`viewgp.latent_gp.LatentGP` with ``subset=``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["InducingPosterior", "fit_inducing", "inducing_posterior_terms"]

# Relative jitter on K_zz: inducing frames can be strongly correlated (a standstill, a slow pan).
_KZZ_JITTER = 1e-6


@dataclass
class InducingPosterior:
    """Fitted FITC state: inducing poses ``(M, P)``, their indices into the training frames ``(M,)``,
    ``L_z`` and ``L_B`` ``(M, M)`` (see the module docstring)."""

    poses: Tensor
    index: Tensor
    chol_zz: Tensor
    chol_b: Tensor


def fit_inducing(gp, x: Tensor, r: Tensor, index: Tensor) -> tuple[InducingPosterior, Tensor]:
    """FITC on poses ``x`` ``(N, P)`` and residuals ``r`` ``(N, D)`` with inducing frames ``x[index]``,
    at ``gp``'s hyper-parameters. Returns the state and ``alpha`` ``(M, D)``."""
    with torch.no_grad():
        z = x[index]
        kzz = gp._K(z, z)
        kzz.diagonal().add_(_KZZ_JITTER * float(kzz.diagonal().mean()))
        lz = gp._cholesky(kzz)
        del kzz
        v = torch.linalg.solve_triangular(lz, gp._K(z, x), upper=False)  # (M, N)
        lam = gp.noise.detach() + (gp.kernel_diag(x).detach() - v.square().sum(0)).clamp_min(0)
        v.div_(lam.sqrt())
        b = v @ v.mT
        b.diagonal().add_(1.0)
        lb = gp._cholesky(b)
        del b
        beta = torch.linalg.solve_triangular(lb, v @ (r / lam.sqrt()[:, None]), upper=False)
        del v
        alpha = torch.linalg.solve_triangular(lz.mT, torch.linalg.solve_triangular(lb.mT, beta, upper=True), upper=True)
    return InducingPosterior(z, index, lz, lb), alpha


def inducing_posterior_terms(gp, state: InducingPosterior, alpha: Tensor, mean: Tensor,
                             xq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Flat posterior mean ``(Q, D)`` at poses ``xq`` and ``V, W`` ``(M, Q)`` with posterior
    covariance ``K(xq, xq) - V^T V + W^T W``."""
    kzq = gp._K(state.poses, xq)
    v = torch.linalg.solve_triangular(state.chol_zz, kzq, upper=False)
    w = torch.linalg.solve_triangular(state.chol_b, v, upper=False)
    return mean + kzq.mT.to(alpha.dtype) @ alpha, v, w  # alpha may be stored in LatentGP's mean_dtype
