"""Fused Gram matrix and hyper-parameter gradient of ``ScaleKernel(ViewKernel(...))`` for large N.

Evaluated through GPyTorch, the view kernel builds every factor as its own N x N tensor and autograd
keeps a chain of elementwise temporaries (distance, division, clamp, exp, product, scale, identity
plus noise) alive for the backward pass; at N = 5,000 that elementwise work and its copies cost more
than the Cholesky. Every factor of the view kernel is a stationary function of one scaled distance,

    k_f(x, x') = p_f(a_f) exp(-e_f(a_f)),         K = s^2 prod_f k_f,

(SE/RBF: ``a = r^2``, ``p = 1``, ``e = a / 2``; Matern-nu: ``a = sqrt(2 nu) r``, ``e = a``, ``p`` the
Matern polynomial; ``r`` the distance over the lengthscale, the SE orientation kernel's ``r^2`` being
``tr(I - R^T R') / l^2``), so the whole matrix is one exponential of a sum of distances, written
block by block into one buffer. The SE/RBF exponents are quadratic in the pose columns, so their sum
(and ``log s^2``) is ONE matrix product of augmented features; the gradient of any ``f(K)`` with
``W = df/dK`` is

    df/ds^2 = sum(W * K) / s^2,      df/dl_f = sum(W * K * rho_f) / l_f,
    rho_f = d log k_f / d log l_f    (r^2 for SE/RBF, a for Matern-1/2, a^2 / (1 + a) for 3/2,
                                      a^2 (1 + a) / (3 + 3a + a^2) for 5/2),

with ``W * K`` recomputed block by block from the poses instead of being stored (no N x N
temporaries beyond ``W`` itself) and the SE/RBF sums ``sum(W * K * r^2)`` again matrix products (see
:meth:`FusedGram.gradient`). Blocks cover the lower triangle only (W and K are symmetric).

For rotation matrices the values equal GPyTorch's (to rounding); where GPyTorch clamps each factor's
distance at 0, the sum of the exponents is clamped here, which differs only for inputs that are not
rotations. :meth:`FusedGram.from_kernel` returns ``None`` for kernels it does not cover (other orientation forms,
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
    trace: bool  # True: SE orientation on vec(R), r^2 = (3 - R.R') / l^2
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
    def _floats(self) -> tuple[float, list[float]]:
        hp = [float(v.detach()) for v in self.hyperparameters()]
        return hp[0], hp[1:]

    def _columns(self, x: Tensor, f: _Factor, centre: Tensor) -> Tensor:
        contiguous = f.cols == list(range(f.cols[0], f.cols[-1] + 1))
        xf = x[:, f.cols[0]:f.cols[-1] + 1] if contiguous else x[:, f.cols]  # a view: no gather
        # Euclidean columns centred: the norm expansion of squared distances then loses no digits.
        return xf if f.trace else xf - centre[f.cols]

    def _quadratic(self, x: Tensor, centre: Tensor, ls: list[float], scale: float, left: bool) -> Tensor:
        """Augmented features of the SE/RBF factors: for rows ``a`` of the left and ``b`` of the right
        operand, ``left(a) . right(b) = log s^2 - sum_f r_f^2 / 2``, the log of their product kernel.

        With ``u = cols / l`` (``cols / (sqrt2 l)`` for the orientation, where ``r^2 / 2 = (3 - R.R') /
        (2 l^2)``) and ``c = |u|^2 / 2`` (``3 / (4 l^2)``): ``-r^2/2 = -c_a - c_b + u_a.u_b``, so left =
        ``[u, -c + log s^2, 1]``, right = ``[u, 1, -c]``: the whole exponent is one matrix product.
        """
        us, c = [], torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for f, l in zip(self.factors, ls):
            if f.nu is not None:
                continue
            a = self._columns(x, f, centre)
            if f.trace:
                us.append(a / (math.sqrt(2.0) * l))
                c = c + 3.0 / (4.0 * l * l)
            else:
                u = a / l
                us.append(u)
                c = c + 0.5 * u.square().sum(1)
        one = torch.ones_like(c)
        tail = [math.log(scale) - c, one] if left else [one, -c]
        return torch.cat(us + [t[:, None] for t in tail], 1)

    def _matern(self, xa: Tensor, xb: Tensor, f: _Factor, l: float, centre: Tensor) -> Tensor:
        """``a = sqrt(2 nu) r`` of a Matern factor between rows ``xa`` and ``xb``."""
        a, b = self._columns(xa, f, centre), self._columns(xb, f, centre)
        if a.shape[1] == 1:
            d = (a - b.mT).abs_()
        else:
            d = (a.square().sum(1, keepdim=True) + b.square().sum(1) - 2.0 * (a @ b.mT)).clamp_min_(0.0).sqrt_()
        return d.mul_(math.sqrt(2 * f.nu) / l)

    def _block(self, left: Tensor, right: Tensor, xa: Tensor, xb: Tensor, centre: Tensor, ls: list[float],
               scale: float, diag_offset: Optional[int], keep: bool,
               out: Optional[Tensor] = None) -> tuple[Tensor, list[tuple[_Factor, Tensor]]]:
        """``K`` for one block (rows ``xa``, columns ``xb``; written into ``out`` when given, e.g. a view
        of the whole matrix) and, with ``keep``, the Matern factors' ``a`` blocks; ``diag_offset``: the
        block holds rows ``offset..`` of a symmetric matrix, whose self-distances are exactly 0."""
        # The product straight into the caller's buffer: a temporary and its copy cost 3x as much.
        logk = torch.mm(left, right.mT, out=out) if out is not None else left @ right.mT
        logk.clamp_max_(math.log(scale))
        if diag_offset is not None:
            logk.diagonal(diag_offset).fill_(math.log(scale))
        polys, kept = [], []
        for f, l in zip(self.factors, ls):
            if f.nu is None:
                continue
            a = self._matern(xa, xb, f, l, centre)
            if diag_offset is not None:
                a.diagonal(diag_offset).zero_()
            logk.sub_(a)
            p = _MATERN_P[f.nu](a)
            if p is not None:
                polys.append(p)
            if keep:
                kept.append((f, a))
        # Entries below 1e-300 s^2 would be subnormal numbers, whose arithmetic is many times slower
        # (in the Cholesky too): exactly 0 instead.
        k = torch.nn.functional.threshold_(logk, math.log(scale) - 690.0, -math.inf).exp_()  # one pass
        for p in polys:
            k.mul_(p)
        if diag_offset is not None:
            k.diagonal(diag_offset).fill_(scale)  # k(x, x) = s^2 exactly, as GPyTorch's kernels give
        return k, kept

    @torch.no_grad()
    def matrix(self, x1: Tensor, x2: Optional[Tensor] = None, add_diagonal: float = 0.0,
               lower_only: bool = False, out: Optional[Tensor] = None, copy: Optional[Tensor] = None) -> Tensor:
        """``K(x1, x2)`` ``(N, M)`` in ``x1``'s dtype (``x2=None``: the symmetric ``K(x1, x1)`` with
        ``add_diagonal`` on its diagonal; ``lower_only`` writes only the lower triangle, which is
        all a Cholesky reads: above the diagonal blocks the entries are left uninitialised, and
        torch's Cholesky zeroes them in its factor, in place or not); ``out``: a contiguous ``(N, M)``
        tensor of ``x1``'s dtype and device to write into; ``copy``: an ``(N, M)`` tensor (any dtype)
        that gets the same blocks before ``add_diagonal``, each while it is still in cache)."""
        sym = x2 is None
        x2 = x1 if sym else x2
        scale, ls = self._floats()
        centre = x2.mean(0)
        left, right = self._quadratic(x1, centre, ls, scale, True), self._quadratic(x2, centre, ls, scale, False)
        n = x1.shape[0]
        if out is None:
            out = torch.empty((n, x2.shape[0]), dtype=x1.dtype, device=x1.device)
        elif out.shape != (n, x2.shape[0]) or out.dtype != x1.dtype or not out.is_contiguous():
            raise ValueError(f"out: expected a contiguous {(n, x2.shape[0])} {x1.dtype} tensor, got "
                             f"{tuple(out.shape)} {out.dtype}")
        for s in range(0, n, self.block):
            e = min(s + self.block, n)
            stop = e if (sym and lower_only) else x2.shape[0]
            k, _ = self._block(left[s:e], right[:stop], x1[s:e], x2[:stop], centre, ls, scale, s if sym else None,
                               keep=False, out=out[s:e, :stop])
            if copy is not None:
                copy[s:e, :stop].copy_(k)
        if sym and add_diagonal:
            out.diagonal().add_(add_diagonal)
        return out

    @torch.no_grad()
    def gradient(self, x: Tensor, W, gram: Optional[Tensor] = None) -> list[Tensor]:
        """``[d f / d s^2, d f / d l_1, ...]`` for a symmetric ``W = df/dK(x, x)`` ``(N, N)``, given as
        a tensor or as a function ``W(s, e)`` returning its rows ``s:e``, columns ``:e`` (so ``W``
        need never exist whole).

        ``gram``: ``K(x, x)`` as :meth:`matrix` wrote it (``lower_only`` suffices; any diagonal, e.g. with
        the noise added): its blocks are reused instead of the exponentials being evaluated again (only
        Matern factors' distances are recomputed), which at N = 2,000 is a seventh of a whole
        value-and-gradient step.

        Only the lower triangle of ``W`` is read. Per block, ``M = W * K`` is formed once (in ``W``'s
        dtype: float32 halves the elementwise work); the SE/RBF factors' sums ``sum(M * r_f^2)`` then
        come from one product ``M @ [cols, |cols|^2, 1]`` (the squared distance is quadratic in the
        columns), and only Matern factors need an elementwise pass of their own.
        """
        w_block = W if callable(W) else (lambda s, e: W[s:e, :e])
        dtype = w_block(0, 1).dtype
        scale, ls = self._floats()
        centre = x.mean(0)
        left, right = self._quadratic(x, centre, ls, scale, True), self._quadratic(x, centre, ls, scale, False)
        quad = [(i, f, self._columns(x, f, centre)) for i, f in enumerate(self.factors) if f.nu is None]
        # Right-hand columns: every quadratic factor's columns, then |cols|^2 of the Euclidean ones, then 1.
        rhs = torch.cat([a for _, _, a in quad] + [a.square().sum(1, keepdim=True) for _, f, a in quad if not f.trace]
                        + [torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1).to(dtype)
        n = x.shape[0]
        acc = torch.zeros(1 + len(self.factors), dtype=torch.float64, device=x.device)
        for s in range(0, n, self.block):
            e = min(s + self.block, n)
            if gram is None:
                k, kept = self._block(left[s:e], right[:e], x[s:e], x[:e], centre, ls, scale, s, keep=True)
                m = k.to(dtype).mul_(w_block(s, e))
            else:
                m = w_block(s, e)
                m = m.clone() if not callable(W) else m  # a view of the caller's W is not overwritten
                wd = m.diagonal(s).clone()
                m.mul_(gram[s:e, :e].to(dtype))  # (converting first is faster than a mixed-dtype product)
                m.diagonal(s).copy_(wd.mul_(scale))  # K without the noise: k(x, x) = s^2
                kept = []
                for f, l in zip(self.factors, ls):
                    if f.nu is not None:
                        a = self._matern(x[s:e], x[:e], f, l, centre)
                        a.diagonal(s).zero_()
                        kept.append((f, a))
            # Off-diagonal blocks stand for their mirror image too; the diagonal block is whole.
            m[:, :s].mul_(2.0)
            # Summed in m's dtype (torch's cascade summation: float32 stays accurate to ~1e-7 of the
            # sum); sum(dtype=float64) would first copy the whole block to float64.
            acc[0] += m.sum().to(torch.float64)
            g = (m @ rhs[:e]).to(torch.float64)  # (B, q)
            rows = rhs[s:e].to(torch.float64)
            col, sq = 0, sum(a.shape[1] for _, _, a in quad)
            for i, f, a in quad:
                w = a.shape[1]
                cross = (rows[:, col : col + w] * g[:, col : col + w]).sum()
                if f.trace:  # sum M (3 - R.R')
                    total = 3.0 * g[:, -1].sum() - cross
                else:  # sum M (|a_i|^2 + |a_j|^2 - 2 a_i.a_j)
                    total = (rows[:, sq] * g[:, -1]).sum() + g[:, sq].sum() - 2.0 * cross
                    sq += 1
                acc[1 + i] += total / (ls[i] * ls[i])  # sum M r^2
                col += w
            for f, a in kept:
                i = self.factors.index(f)
                acc[1 + i] += (m * _MATERN_RHO[f.nu](a.to(dtype))).sum().to(torch.float64)
        return [acc[0] / scale] + [acc[1 + i] / l for i, l in enumerate(ls)]
