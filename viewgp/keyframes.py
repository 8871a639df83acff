"""Choosing which frames to observe: keyframe specs (``every:K``, ``ends``, ``all``, ``greedy:K``) and
greedy maximum-variance keyframes.

A GP's posterior variance depends on *where* it has observations, not on what was observed, so the
frames worth inverting (expensive: minutes per frame for an optimization-based StyleGAN inversion) can
be picked before any of them is processed: repeatedly add the frame whose posterior variance, given the
frames chosen so far, is largest (the classic greedy design for GP regression, equivalently the
pivoted Cholesky of the kernel matrix plus noise).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["greedy_keyframes", "greedy_view_keyframes", "parse_keyframes"]


def greedy_keyframes(kernel, poses: Tensor, k: int, noise: float = 1e-4, initial: Sequence[int] = ()) -> list[int]:
    """Indices of ``k`` frames chosen greedily by largest posterior variance.

    Args:
        kernel: any GPyTorch kernel over pose features (hyper-parameters as they are set).
        poses: ``(N, P)`` pose features of every frame.
        k: number of keyframes to return (including ``initial``), ``1 <= k <= N``.
        noise: observation noise variance relative to the kernel's scale (keeps the update stable).
        initial: frames that are observed anyway (e.g. the first and last).
    Returns:
        ``k`` distinct indices in the order they were chosen (``initial`` first); ties go to the
        lowest index.
    """
    n = poses.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in [1, {n}] for {n} frames, got {k}")
    initial = [int(i) for i in initial]
    if len(set(initial)) != len(initial) or any(not 0 <= i < n for i in initial) or len(initial) > k:
        raise ValueError(f"initial keyframes {initial} must be distinct indices in [0, {n}) and at most k = {k}")
    with torch.no_grad():
        K = kernel(poses, poses).to_dense().to(torch.float64)
    var = K.diagonal().clone()
    # Rows of the incremental Cholesky factor: var_i = K_ii - sum_j L_ji^2 after each choice.
    rows: list[Tensor] = []
    chosen: list[int] = []
    for step in range(k):
        if step < len(initial):
            j = initial[step]
        else:
            masked = var.clone()
            masked[chosen] = -float("inf")
            j = int(torch.argmax(masked))
        pivot = float(var[j]) + noise * float(K[j, j])
        if pivot <= 0:
            raise ValueError("kernel matrix is not positive definite at the chosen frame; increase noise")
        row = K[j].clone()
        for r in rows:
            row = row - r[j] * r
        row = row / pivot**0.5
        rows.append(row)
        var = (var - row.pow(2)).clamp_min(0)
        chosen.append(j)
    return chosen


def greedy_view_keyframes(poses: Tensor, k: int, method: str = "view") -> list[int]:
    """``k`` keyframes of a run with pose features ``(N, 13)``: first and last, then greedily where the
    GP (kernel ``method``, lengthscales by the median heuristic) is least certain."""
    from viewgp.hyperparameters import set_median_lengthscales
    from viewgp.kernels import make_kernel

    kernel = make_kernel(method).to(torch.float64)
    set_median_lengthscales(kernel, poses)
    n = poses.shape[0]
    initial = [0, n - 1] if k >= 2 and n >= 2 else [0]
    return greedy_keyframes(kernel, poses.to(torch.float64), k, initial=initial)


def parse_keyframes(spec: str, n: int, poses: Optional[Tensor] = None) -> np.ndarray:
    """Observed-frame mask ``(n,)`` from ``'every:K'`` (every K-th frame and the last), ``'ends'``
    (first and last frame only), ``'all'``, or ``'greedy:K'``: K frames (first and last included)
    chosen one by one where the view-aware GP's posterior variance is largest (needs ``poses``,
    ``(n, 13)`` pose features; see :func:`greedy_keyframes`; K beyond ``n`` keeps all frames)."""
    mask = np.zeros(n, bool)
    kind, _, arg = spec.partition(":")
    if spec == "all":
        mask[:] = True
    elif spec == "ends":
        mask[[0, n - 1]] = True
    elif kind in ("every", "greedy") and arg:
        try:
            k = int(arg)
        except ValueError:
            k = 0
        if k < 1:
            raise ValueError(f"keyframes {spec!r}: K in '{kind}:K' must be a positive integer")
        if kind == "greedy" and k < 2 <= n:
            raise ValueError(f"keyframes {spec!r}: K in 'greedy:K' must be at least 2 (the first and last frames "
                             "are always kept)")
        if kind == "every":
            mask[::k] = True
            mask[n - 1] = True
        else:
            if poses is None:
                raise ValueError(f"keyframes {spec!r}: greedy selection needs the run's poses")
            mask[greedy_view_keyframes(poses, min(k, n))] = True
    else:
        raise ValueError(f"unknown keyframes spec {spec!r}; use 'every:K', 'greedy:K', 'ends' or 'all'")
    return mask
