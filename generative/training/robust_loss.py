"""Barron's general and adaptive robust loss (J. T. Barron, "A General and Adaptive Robust Loss
Function", CVPR 2019), used by the automodulator for its image reconstruction term.

General form, for residual ``x``, shape ``alpha`` and scale ``c > 0``::

    rho(x, alpha, c) = |alpha - 2| / alpha * (((x / c)^2 / |alpha - 2| + 1)^(alpha / 2) - 1)

with the limits ``alpha -> 2``: ``(x/c)^2 / 2`` (L2), ``alpha -> 0``: ``log((x/c)^2 / 2 + 1)`` (Cauchy),
``alpha -> -inf``: ``1 - exp(-(x/c)^2 / 2)`` (Welsch). ``alpha = 1`` is the pseudo-Huber / Charbonnier
``sqrt((x/c)^2 + 1) - 1`` and ``alpha = -2`` Geman-McClure ``2 (x/c)^2 / ((x/c)^2 + 4)``.

Adaptive version: a probability density ``p(x | alpha, c) = exp(-rho(x, alpha, c)) / (c Z(alpha))``
with ``Z(alpha) = int exp(-rho(x, alpha, 1)) dx`` (finite for ``alpha >= 0``), and the loss is its
negative log-likelihood ``rho(x, alpha, c) + log c + log Z(alpha)``; minimising it over ``alpha`` and
``c`` too (one pair per pixel and channel) lets the model pick how robust each output should be,
while ``log c + log Z`` stop it from simply declaring every residual an outlier.

Numerical approximation of ``log Z(alpha)`` (documented, tested): there is no closed form for general
``alpha``. :func:`log_partition_table` integrates ``exp(-rho(x, alpha, 1))`` with
``scipy.integrate.quad`` at 257 shapes ``alpha = 1 - cos(pi u)`` (``u`` uniform on [0, 1], so the nodes
crowd at both ends where ``log Z`` bends fastest) once, on first use (~1 s, cached);
:func:`log_partition` interpolates it with a cubic Hermite spline in ``u`` whose node slopes are the
table's finite differences. It is differentiable in ``alpha`` and within 1e-7 of fresh quad values
over [0, 2]; the test checks off-grid shapes and the closed forms ``Z(2) = sqrt(2 pi)``,
``Z(0) = pi sqrt(2)``, ``Z(1) = 2 e K_1(1)``. (Barron's library likewise splines a precomputed table
over a transformed ``alpha``.)
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "rho",
    "log_partition_table",
    "log_partition",
    "adaptive_nll",
    "AdaptiveRobustLoss",
    "ALPHA_LO",
    "ALPHA_HI",
]

ALPHA_LO, ALPHA_HI = 0.001, 1.999  # the adaptive loss's shape range (Barron's defaults)
SCALE_LO = 1e-5
_EPS = 1e-6
_TABLE_N = 257


def rho(x: Tensor, alpha, scale=1.0) -> Tensor:
    """The general robust loss ``rho(x, alpha, c)`` elementwise (module docstring); ``alpha`` and
    ``scale`` broadcast against ``x``. ``alpha`` equal to 0 or 2 (or within 1e-6 of them) uses the
    exact limit; ``alpha = -inf`` gives Welsch. Differentiable in ``x``, ``alpha`` and ``scale``."""
    x = torch.as_tensor(x)
    alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    if bool((scale <= 0).any()):
        raise ValueError("the robust loss scale must be positive")
    sq = (x / scale).pow(2)
    # General branch with safe denominators (its value is replaced by the limits where they apply,
    # and the safe values keep the unused branch's gradients finite).
    beta = (alpha - 2).abs().clamp_min(_EPS)
    a_safe = torch.where(alpha >= 0, alpha.clamp_min(_EPS), alpha.clamp_max(-_EPS))
    a_fin = torch.where(torch.isfinite(a_safe), a_safe, torch.full_like(a_safe, -1.0))
    general = beta / a_fin * ((sq / beta + 1).pow(a_fin / 2) - 1)
    out = general
    out = torch.where((alpha - 2).abs() < _EPS, sq / 2, out)
    out = torch.where(alpha.abs() < _EPS, torch.log1p(sq / 2), out)
    out = torch.where(torch.isneginf(alpha), -torch.expm1(-sq / 2), out)
    return out


def _alpha_of_u(u):
    """Grid coordinate ``u`` in [0, 1] -> shape ``alpha = 1 - cos(pi u)`` in [0, 2]: nodes crowd at both ends,
    where ``log Z`` bends fastest (near ``alpha = 2`` it behaves like ``(2 - alpha) log(2 - alpha)``, which is
    smooth in ``u``; on a uniform ``alpha`` grid the last interval would be off by 5e-4)."""
    return 1.0 - np.cos(np.pi * u)


@functools.lru_cache(maxsize=1)
def log_partition_table() -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, log Z(alphas))`` at 257 shapes ``alpha = 1 - cos(pi u)``, ``u`` evenly over ``[0, 1]``;
    ``Z`` by ``scipy.integrate.quad`` of ``2 int_0^inf exp(-rho(x, alpha, 1)) dx`` (symmetric density)."""
    from scipy.integrate import quad

    def rho_np(x: float, a: float) -> float:
        if a <= 0.0:
            return math.log1p(0.5 * x * x)
        if a >= 2.0:
            return 0.5 * x * x
        b = 2.0 - a
        return b / a * ((x * x / b + 1.0) ** (a / 2.0) - 1.0)

    alphas = _alpha_of_u(np.linspace(0.0, 1.0, _TABLE_N))
    logz = np.empty_like(alphas)
    for i, a in enumerate(alphas):
        val, _ = quad(lambda x: math.exp(-rho_np(x, float(a))), 0.0, np.inf, epsabs=1e-12, epsrel=1e-11, limit=200)
        logz[i] = math.log(2.0 * val)
    return alphas, logz


_TABLE_CACHE: dict = {}


def _table_tensors(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """The table values and node slopes (d log Z / d u) as tensors, cached per dtype and device (no
    host-to-device copy per training step)."""
    key = (dtype, str(device))
    if key not in _TABLE_CACHE:
        _, logz = log_partition_table()
        slopes = np.gradient(logz, 1.0 / (_TABLE_N - 1), edge_order=2)
        _TABLE_CACHE[key] = (torch.as_tensor(logz, dtype=dtype, device=device), torch.as_tensor(slopes, dtype=dtype, device=device))
    return _TABLE_CACHE[key]


def log_partition(alpha: Tensor) -> Tensor:
    """``log Z(alpha)`` for ``alpha`` in ``[0, 2]``: cubic Hermite interpolation of :func:`log_partition_table`
    in the grid coordinate ``u = arccos(1 - alpha) / pi`` (slopes: second-order finite differences);
    differentiable. Values outside ``[0, 2]`` raise ``ValueError``."""
    alpha = torch.as_tensor(alpha)
    if not alpha.is_floating_point():
        alpha = alpha.double()
    if bool(((alpha < 0) | (alpha > 2)).any()):
        raise ValueError("log_partition: the tabulated shape range is 0 <= alpha <= 2 (Z is infinite for alpha < 0)")
    h = 1.0 / (_TABLE_N - 1)
    y, m = _table_tensors(alpha.dtype, alpha.device)
    # clamp inside (-1, 1): d arccos / d alpha is infinite at the very ends of the range
    u = torch.arccos((1.0 - alpha).clamp(-1 + 1e-12, 1 - 1e-12)) / math.pi
    t_all = u / h
    i = t_all.detach().floor().clamp(0, _TABLE_N - 2).long()
    t = t_all - i.to(alpha.dtype)
    t2, t3 = t * t, t * t * t
    h00, h10, h01, h11 = 2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2
    return h00 * y[i] + h10 * h * m[i] + h01 * y[i + 1] + h11 * h * m[i + 1]


def adaptive_nll(x: Tensor, alpha: Tensor, scale: Tensor) -> Tensor:
    """Elementwise negative log-likelihood ``rho(x, alpha, c) + log c + log Z(alpha)`` (alpha in [0, 2])."""
    return rho(x, alpha, scale) + torch.log(scale) + log_partition(alpha)


class AdaptiveRobustLoss(nn.Module):
    """Adaptive robust loss with one shape ``alpha`` and one scale ``c`` per element of a
    ``shape`` (e.g. ``(3, H, W)`` for images: one per pixel and channel, as the automodulator).

    ``alpha = 0.001 + 1.998 sigmoid(a)`` and ``c = 1e-5 + softplus(s)``, with ``a, s`` the learned
    parameters, initialised so ``alpha = 1`` and ``c = 1`` (Barron's defaults). The forward returns
    the mean NLL over a batch of residuals ``(B, *shape)``. :meth:`load_upsampled` initialises a
    higher-resolution instance from a lower one (each parameter copied to the 2x2 new pixels), as the
    automodulator does at every phase change.
    """

    def __init__(self, shape: tuple, alpha_init: float = 1.0, scale_init: float = 1.0) -> None:
        super().__init__()
        if not ALPHA_LO < alpha_init < ALPHA_HI:
            raise ValueError(f"alpha_init must be in ({ALPHA_LO}, {ALPHA_HI}), got {alpha_init}")
        if scale_init <= SCALE_LO:
            raise ValueError(f"scale_init must exceed {SCALE_LO}, got {scale_init}")
        p = (alpha_init - ALPHA_LO) / (ALPHA_HI - ALPHA_LO)
        a0 = math.log(p / (1 - p))
        s0 = math.log(math.expm1(scale_init - SCALE_LO))
        self.latent_alpha = nn.Parameter(torch.full(tuple(shape), a0))
        self.latent_scale = nn.Parameter(torch.full(tuple(shape), s0))

    def alpha(self) -> Tensor:
        return ALPHA_LO + (ALPHA_HI - ALPHA_LO) * torch.sigmoid(self.latent_alpha)

    def scale(self) -> Tensor:
        return SCALE_LO + F.softplus(self.latent_scale)

    def forward(self, residual: Tensor) -> Tensor:
        if residual.shape[1:] != self.latent_alpha.shape:
            raise ValueError(f"robust loss for shape {tuple(self.latent_alpha.shape)} got residuals {tuple(residual.shape)}")
        return adaptive_nll(residual, self.alpha()[None], self.scale()[None]).mean()

    @torch.no_grad()
    def load_upsampled(self, smaller: "AdaptiveRobustLoss") -> None:
        """Copy ``smaller``'s parameters (half the spatial size) into this one, nearest-upsampled x2."""
        for mine, theirs in ((self.latent_alpha, smaller.latent_alpha), (self.latent_scale, smaller.latent_scale)):
            up = F.interpolate(theirs[None], scale_factor=2, mode="nearest")[0]
            if up.shape != mine.shape:
                raise ValueError(f"cannot upsample robust-loss parameters {tuple(theirs.shape)} into {tuple(mine.shape)}")
            mine.copy_(up)
