"""Data-driven GP hyper-parameters: starting values for type-II ML, prior medians for NUTS, and the
final values when there is too little data to fit (e.g. only the first and last frame observed).

Lengthscales come from the median pairwise pose distance in each sub-kernel's input columns, converted
to the kernel's own distance (chordal for the SE orientation kernel, geodesic angle for heat/Matern/Euler).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def median_distance(x: Tensor) -> float:
    d = torch.cdist(x, x)
    d = d[d > 1e-9]
    return float(d.median()) if d.numel() else 1.0


def lengthscale_modules(kernel) -> list[tuple[str, torch.nn.Module]]:
    """Sub-kernels with a GPyTorch lengthscale and explicit input columns (``active_dims``)."""
    return [
        (name, m)
        for name, m in kernel.named_modules()
        if getattr(m, "has_lengthscale", False) and getattr(m, "active_dims", None) is not None
    ]


def lengthscale_from_median(kernel, median: float) -> float:
    """A kernel's lengthscale for which the median pairwise pose distance sits on its length scale.

    ``median`` is measured in the kernel's input columns; for rotations that is the chordal distance
    ``d = ||R - R'||_F = 2 sqrt(2) sin(theta / 2)``. The SE view kernel is ``exp(-d^2 / (4 l^2))``, so
    ``l = d / sqrt(2)``; kernels of the geodesic angle (heat, Matern, Euler, geodesic) take
    ``l = theta = 2 asin(d / (2 sqrt(2)))``.
    """
    from viewgp.kernels import OrientationKernel

    if kernel.active_dims.numel() != 9:  # translation or time: plain Euclidean distances
        return median
    if isinstance(kernel, OrientationKernel):
        return median / math.sqrt(2.0)
    return 2.0 * math.asin(min(1.0, median / (2.0 * math.sqrt(2.0))))


def init_hyperparameters(gp, poses_obs: Tensor, poses_query: Tensor, z_flat: Tensor) -> None:
    """Data-driven starting values; they are also the final values when there is too little data to fit.

    Output scale = mean per-dimension variance of the observed latents; noise = 1% of it; every
    lengthscale = median distance between all (observed and query) poses in that kernel's columns.
    """
    allp = torch.cat([poses_obs, poses_query], 0)
    centred = z_flat - z_flat.mean(0, keepdim=True)
    spread = float(centred.pow(2).mean()) if z_flat.shape[0] > 1 else float(z_flat.pow(2).mean())
    spread = max(spread, 1e-8)
    with torch.no_grad():
        gp.kernel.outputscale = torch.as_tensor(spread, dtype=torch.float64)
        gp.noise = torch.as_tensor(1e-2 * spread, dtype=torch.float64)
    set_median_lengthscales(gp.kernel.base_kernel, allp)


def set_median_lengthscales(kernel, poses: Tensor) -> None:
    """Every lengthscale of ``kernel`` from the median pairwise distance of ``poses`` in its columns."""
    with torch.no_grad():
        for _, m in lengthscale_modules(kernel):
            med = median_distance(poses[:, m.active_dims.tolist()])
            m.lengthscale = torch.full_like(m.lengthscale, lengthscale_from_median(m, med))
