"""Fused Gram matrix and hyper-parameter gradient of ``ScaleKernel(ViewKernel(...))`` for large N.

Evaluated through GPyTorch, the view kernel builds every factor as its own N x N tensor and autograd
keeps a chain of elementwise temporaries (distance, division, clamp, exp, product, scale, identity
plus noise) alive for the backward pass; at N = 5,000 that elementwise work and its copies cost more
than the Cholesky. Every factor of the view kernel is a stationary function of one scaled distance,

    k_f(x, x') = p_f(a_f) exp(-e_f(a_f)),         K = s^2 prod_f k_f,

(SE/RBF: ``a = r^2``, ``p = 1``, ``e = a / 2``; Matern-nu: ``a = sqrt(2 nu) r``, ``e = a``, ``p`` the
Matern polynomial; ``r`` the distance over the lengthscale, the SE orientation kernel's ``r^2`` being
``tr(I - R^T R') / l^2``), so the whole matrix is one exponential of a sum of distances, written
block by block into one buffer, and the gradient of any ``f(K)`` with ``W = df/dK`` is

    df/ds^2 = sum(W * K) / s^2,      df/dl_f = sum(W * K * rho_f) / l_f,
    rho_f = d log k_f / d log l_f    (r^2 for SE/RBF, a for Matern-1/2, a^2 / (1 + a) for 3/2,
                                      a^2 (1 + a) / (3 + 3a + a^2) for 5/2),

recomputed block by block from the poses (a matrix product per block) instead of being stored: no
N x N temporaries beyond ``W`` itself. Blocks cover the lower triangle only (W and K are symmetric).

:meth:`FusedGram.from_kernel` returns ``None`` for kernels it does not cover (other orientation forms,
ARD or batched lengthscales, other kernels); callers then use the kernel's own GPyTorch graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

__all__ = ["FusedGram"]

# Matern polynomial p(a) and rho = d log k / d log l as functions of a = sqrt(2 nu) r.
_MATERN_P = {
    0.5: lambda a: None,
    1.5: lambda a: 1 + a,
    2.5: lambda a: 1 + a + a * a / 3,
}
_MATERN_RHO = {
    0.5: lambda a: a,
    1.5: lambda a: a * a / (1 + a),
    2.5: lambda a: a * a * (1 + a) / (3 + 3 * a + a * a),
}


@dataclass
class _Factor:
    """One factor: the columns it reads, how its distance is measured and its GPyTorch module."""

    module: torch.nn.Module
    cols: list[int]
    trace: bool  # True: SE orientation on vec(R), r^2 = clamp(3 - R.R', 0, 4) / l^2
    nu: Optional[float]  # None: SE/RBF; else the Matern smoothness


class FusedGram:
    """``K = s^2 prod_f k_f`` of a ``ScaleKernel(ViewKernel)`` evaluated and differentiated block-wise.

    Args:
        kernel: the ``ScaleKernel``; use :meth:`from_kernel`, which checks that it is covered.
        block: rows per block (memory of the temporaries: ``block x N`` per factor).
    """

    def __init__(self, kernel, factors: list[_Factor], block: int = 512):
        self.kernel = kernel
        self.factors = factors
        self.block = int(block)

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_kernel(cls, kernel) -> Optional["FusedGram"]:
        """A fused evaluator for ``ScaleKernel(ViewKernel(...))`` with SE orientation and RBF/Matern
        translation and time factors, unbatched and with one lengthscale each; else ``None``."""
        from gpytorch.kernels import ScaleKernel

        from viewgp.kernels import OrientationKernel, ViewKernel, _EuclideanKernel

        if not isinstance(kernel, ScaleKernel) or type(kernel.base_kernel) is not ViewKernel:
            return None
        view = kernel.base_kernel
        if kernel.batch_shape != torch.Size([]) or view.active_dims is not None:
            return None
        factors = []
        for f in view.factors:
            if f.active_dims is None or f.lengthscale.numel() != 1 or f.batch_shape != torch.Size([]):
                return None
            cols = f.active_dims.tolist()
            if type(f) is OrientationKernel and f.form == "se":
                factors.append(_Factor(f, cols, True, None))
            elif isinstance(f, _EuclideanKernel) and not isinstance(f, OrientationKernel):
                factors.append(_Factor(f, cols, False, f.nu))
            else:
                return None
        return cls(kernel, factors)

    def hyperparameters(self) -> list[Tensor]:
        """``[s^2, l_1, ..., l_F]`` as 0-d tensors, differentiable in the raw GPyTorch parameters."""
        return [self.kernel.outputscale.reshape(())] + [f.module.lengthscale.reshape(()) for f in self.factors]

    # ------------------------------------------------------------------------------ evaluation
    def _centred(self, x: Tensor, centre: Tensor) -> list[Tensor]:
        """Each factor's columns; Euclidean ones centred (the norm expansion of the squared distance
        then loses no digits to large coordinates)."""
        out = []
        for f in self.factors:
            xf = x[:, f.cols]
            out.append(xf if f.trace else xf - centre[f.cols])
        return out

    def _distances(self, a: Tensor, b: Tensor, f: _Factor, ls: float, diag_offset: Optional[int]) -> Tensor:
        """``a_f`` (see the module docstring) between rows ``a`` ``(B, c)`` and ``b`` ``(M, c)``;
        ``diag_offset``: the block holds rows ``offset..offset+B`` of a symmetric matrix, whose
        self-distances are set to exactly 0."""
        if f.trace:
            d = (3.0 - a @ b.mT).clamp_(0.0, 4.0)
        elif len(f.cols) == 1:
            d = (a - b.mT).square_()
        else:
            d = (a.square().sum(1, keepdim=True) + b.square().sum(1) - 2.0 * (a @ b.mT)).clamp_min_(0.0)
        if diag_offset is not None:
            d.diagonal(diag_offset).zero_()
        d.div_(ls * ls)  # r^2
        if f.nu is None:
            return d
        return d.sqrt_().mul_(math.sqrt(2 * f.nu))

    def _block(self, xa: list[Tensor], xb: list[Tensor], ls: list[float], scale: float, dtype: torch.dtype,
               diag_offset: Optional[int], keep: bool) -> tuple[Tensor, list[Tensor]]:
        """``K`` for one block in ``dtype`` and, with ``keep``, the per-factor ``rho_f`` blocks."""
        expo = None
        poly = None
        rhos = []
        for f, a, b, l in zip(self.factors, xa, xb, ls):
            d = self._distances(a, b, f, l, diag_offset).to(dtype)
            e = d * 0.5 if f.nu is None else d
            expo = e.clone() if expo is None else expo.add_(e)
            if f.nu is not None:
                p = _MATERN_P[f.nu](d)
                if p is not None:
                    poly = p if poly is None else poly.mul_(p)
            if keep:
                rhos.append(d if f.nu is None else _MATERN_RHO[f.nu](d))
        k = expo.neg_().exp_().mul_(scale)
        if poly is not None:
            k.mul_(poly)
        return k, rhos

    def _floats(self) -> tuple[float, list[float]]:
        hp = [float(v.detach()) for v in self.hyperparameters()]
        return hp[0], hp[1:]

    @torch.no_grad()
    def matrix(self, x1: Tensor, x2: Optional[Tensor] = None, add_diagonal: float = 0.0,
               lower_only: bool = False) -> Tensor:
        """``K(x1, x2)`` ``(N, M)`` in ``x1``'s dtype (``x2=None``: the symmetric ``K(x1, x1)`` with
        ``add_diagonal`` on its diagonal; ``lower_only`` leaves the strict upper triangle
        unwritten (zeros), which is all a Cholesky reads)."""
        sym = x2 is None
        x2 = x1 if sym else x2
        scale, ls = self._floats()
        centre = x2.mean(0)
        xa, xb = self._centred(x1, centre), self._centred(x2, centre)
        n = x1.shape[0]
        out = (torch.zeros if lower_only else torch.empty)((n, x2.shape[0]), dtype=x1.dtype, device=x1.device)
        for s in range(0, n, self.block):
            e = min(s + self.block, n)
            stop = e if (sym and lower_only) else x2.shape[0]
            k, _ = self._block([a[s:e] for a in xa], [b[:stop] for b in xb], ls, scale, x1.dtype,
                               s if sym else None, keep=False)
            out[s:e, :stop] = k
        if sym and add_diagonal:
            out.diagonal().add_(add_diagonal)
        return out

    @torch.no_grad()
    def gradient(self, x: Tensor, W: Tensor) -> list[Tensor]:
        """``[d f / d s^2, d f / d l_1, ...]`` for a symmetric ``W = df/dK(x, x)`` ``(N, N)``.

        Only the lower triangle of ``W`` is read; the kernel blocks are recomputed in ``W``'s dtype
        (float32 halves the elementwise work; the distances themselves are taken in ``x``'s dtype).
        """
        scale, ls = self._floats()
        xs = self._centred(x, x.mean(0))
        n = x.shape[0]
        acc = torch.zeros(1 + len(self.factors), dtype=torch.float64, device=x.device)
        for s in range(0, n, self.block):
            e = min(s + self.block, n)
            k, rhos = self._block([a[s:e] for a in xs], [a[:e] for a in xs], ls, scale, W.dtype, s, keep=True)
            wk = W[s:e, :e] * k
            # Off-diagonal blocks stand for their mirror image too; the diagonal block is whole.
            wk[:, :s].mul_(2.0)
            acc[0] += wk.sum(dtype=torch.float64)
            for i, r in enumerate(rhos):
                acc[1 + i] += (wk * r).sum(dtype=torch.float64)
        out = [acc[0] / scale] + [acc[1 + i] / l for i, l in enumerate(ls)]
        return out
