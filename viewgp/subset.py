"""Subsets of frames: for fitting hyper-parameters on long runs, and as inducing frames.

Type-II ML on all N frames of a long video costs O(N^3) per likelihood evaluation, but the few
hyper-parameters (an output scale, a noise and a lengthscale per factor) are estimated about as well
from a subset of frames that covers the run: :func:`stratified_subset` takes half of it stratified in
time (one random frame from each of m/2 equal-count stretches of the run, so frames close in time
still occur and the noise stays identifiable against short lengthscales) and the other half by
greedy coverage in pose (:func:`kernel_cover`: repeatedly the frame least correlated, under the
kernel, with those chosen so far, so rarely visited views are in it too).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["auto_subset_size", "kernel_cover", "stratified_subset", "SUBSET_ALL_UP_TO", "SUBSET_MAX"]

# Up to this many frames the hyper-parameters are fitted on all of them.
SUBSET_ALL_UP_TO = 1500
# ... and beyond, on at most this many.
SUBSET_MAX = 2000


def auto_subset_size(n: int) -> int:
    """Frames to fit hyper-parameters on for a run of ``n``: all up to 1,500; beyond, 1,000 + n/50
    (1,040 at 2,000 frames, 1,100 at 5,000, 1,200 at 10,000, 2,000 from 50,000 on): an L-BFGS evaluation then costs
    0.1-0.5 s on 2 cores whatever the length of the run, and the fitted values move by about 0.1%
    between 1,000 and 1,500 frames of a 10,000-frame run (``benchmarks/latent_gp.py --long
    --accuracy`` compares the held-out error with the fit on all frames)."""
    n = int(n)
    if n <= SUBSET_ALL_UP_TO:
        return n
    return min(SUBSET_MAX, 1000 + n // 50)


def kernel_cover(
    correlation: Callable[[Tensor], Tensor],
    n: int,
    m: int,
    initial: Sequence[int] = (),
    tol: float = 0.0,
    device=None,
) -> Tensor:
    """Greedy farthest-point selection in kernel correlation.

    Args:
        correlation: ``correlation(idx)`` -> ``(len(idx), n)`` kernel correlations
            ``k(x_i, x_j) / sqrt(k(x_i, x_i) k(x_j, x_j))`` of frames ``idx`` with every frame.
        n: number of frames; m: at most this many indices are returned (``initial`` included).
        initial: frames chosen beforehand.
        tol: stop once every frame has correlation >= ``1 - tol`` with a chosen one (with ``tol = 0``
            only exact duplicates of chosen frames are left out).

    Returns:
        ``(k,)`` long tensor, ``k <= m``: ``initial`` first, then the frames in the order chosen.
    """
    chosen = [int(i) for i in initial][:m]
    best = torch.full((n,), -math.inf, dtype=torch.float64, device=device)
    for s in range(0, len(chosen), 1024):
        rows = correlation(torch.as_tensor(chosen[s : s + 1024], device=device))
        best = torch.maximum(best, rows.max(0).values.to(best))
    while len(chosen) < min(m, n):
        j = int(torch.argmin(best))
        if float(best[j]) >= 1.0 - tol - 1e-12:  # 1e-12: rounding of the correlation of a duplicate
            break
        chosen.append(j)
        best = torch.maximum(best, correlation(torch.tensor([j], device=device))[0].to(best))
        best[j] = math.inf
    return torch.as_tensor(chosen, dtype=torch.long, device=device)


def stratified_subset(
    x: Tensor,
    m: int,
    correlation: Optional[Callable[[Tensor], Tensor]] = None,
    seed: int = 0,
    time_column: Optional[int] = 12,
) -> Tensor:
    """``m`` frame indices (sorted) of poses ``x`` ``(N, P)``, stratified in time and pose.

    Half: one frame drawn (seeded) from each of ``ceil(m/2)`` equal-count stretches of the frames in
    time order (column ``time_column`` where ``x`` has it, else the row order). The rest: greedy
    coverage in ``correlation`` (see :func:`kernel_cover`; without one, more time strata).
    """
    n = x.shape[0]
    m = min(int(m), n)
    if m >= n:
        return torch.arange(n, device=x.device)
    if time_column is not None and x.shape[1] > time_column:
        order = torch.argsort(x[:, time_column].cpu(), stable=True)
    else:
        order = torch.arange(n)
    m_time = m if correlation is None else (m + 1) // 2
    edges = torch.linspace(0, n, m_time + 1, dtype=torch.float64).floor().long()
    g = torch.Generator().manual_seed(int(seed))
    width = (edges[1:] - edges[:-1]).clamp_min(1)
    offset = (torch.rand(m_time, generator=g, dtype=torch.float64) * width).long().clamp_max(width - 1)
    picked = order[(edges[:-1] + offset).clamp_max(n - 1)].tolist()
    if correlation is not None:
        picked = kernel_cover(correlation, n, m, initial=picked, device=x.device).tolist()
    return torch.as_tensor(sorted(set(picked)), dtype=torch.long, device=x.device)
