"""Data-driven GP hyper-parameters: starting values for type-II ML, prior medians for NUTS, and the
final values when there is too little data to fit (e.g. only the first and last frame observed).

Lengthscales come from the median pairwise pose distance in each sub-kernel's input columns, converted
to the distance the kernel's lengthscale is measured in (its ``lengthscale_distance``: Euclidean for
translation and time, chordal for the SE orientation kernel, the geodesic angle for heat/Matern/Euler).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor


# Pairwise distances of at most this many points: the median of 2,000 evenly spaced frames is as good
# a starting lengthscale as that of all (and 2N x 2N distances of a 10,000-frame run took 6 GB).
MEDIAN_POINTS = 2000


def median_distance(x: Tensor, max_points: int = MEDIAN_POINTS) -> float:
    """Median of the non-zero pairwise distances of the rows of ``x`` ``(N, c)``; beyond
    ``max_points`` rows, of ``max_points`` evenly spaced ones (deterministic)."""
    if x.shape[0] > max_points:
        x = x[torch.linspace(0, x.shape[0] - 1, max_points, device=x.device).round().long()]
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


# Median distance d in a kernel's input columns -> the lengthscale that puts d on the kernel's length
# scale, by the distance the kernel's lengthscale is measured in (its ``lengthscale_distance``). Rotation
# columns hold vec(R), where d is chordal: ``d = ||R - R'||_F = 2 sqrt(2) sin(theta / 2)``.
_FROM_MEDIAN: dict[str, Callable[[float], float]] = {
    "euclidean": lambda d: d,
    # the SE view kernel is exp(-d^2 / (4 l^2)): l = d / sqrt(2)
    "chordal": lambda d: d / math.sqrt(2.0),
    # kernels of the rotation angle: l = theta = 2 asin(d / (2 sqrt(2)))
    "geodesic": lambda d: 2.0 * math.asin(min(1.0, d / (2.0 * math.sqrt(2.0)))),
}


def lengthscale_from_median(kernel, median: float) -> float:
    """A kernel's lengthscale for which the median pairwise pose distance sits on its length scale.

    ``median`` is measured in the kernel's input columns. The kernel's ``lengthscale_distance`` says
    how to convert it: ``"euclidean"`` (translation, time) ``l = d``; ``"chordal"`` (SE orientation
    kernel on vec(R)) ``l = d / sqrt(2)``; ``"geodesic"`` (heat, Matern, Euler, geodesic, quaternion
    kernels) ``l = theta = 2 asin(d / (2 sqrt(2)))``. GPyTorch's own kernels, which declare none,
    measure Euclidean distances.
    """
    distance = getattr(kernel, "lengthscale_distance", "euclidean")
    if distance not in _FROM_MEDIAN:
        raise ValueError(
            f"{type(kernel).__name__}.lengthscale_distance is {distance!r}; use one of {', '.join(map(repr, _FROM_MEDIAN))}"
        )
    return _FROM_MEDIAN[distance](median)


def _mean_square(z: Tensor, centred: bool, columns: int = 8192) -> float:
    """Mean square of ``z`` ``(N, D)`` (about each column's mean when ``centred``), in float64 a block of
    columns at a time: a whole frame of pixels per row is 1.6 GB per float64 copy."""
    total = 0.0
    for s in range(0, z.shape[1], columns):
        block = z[:, s : s + columns].to(torch.float64)
        if centred:
            block = block - block.mean(0, keepdim=True)
        total += float(block.square().sum())
    return total / max(z.numel(), 1)


def init_hyperparameters(gp, poses_obs: Tensor, poses_query: Tensor, z_flat: Tensor) -> None:
    """Data-driven starting values; they are also the final values when there is too little data to fit.

    Output scale = mean per-dimension variance of the observed latents; noise = 1% of it; every
    lengthscale = median distance between all (observed and query) poses in that kernel's columns.
    """
    allp = torch.cat([poses_obs, poses_query], 0)
    spread = max(_mean_square(z_flat, centred=z_flat.shape[0] > 1), 1e-8)
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
