"""The latent GP's speed: its negative log marginal likelihood and gradient, fast, behind one small
internal interface (:class:`FastLikelihood`, a base class of :class:`viewgp.latent_gp.LatentGP`).

:class:`~viewgp.latent_gp.LatentGP` is the model (fit, predict, leave-one-out, samples); it calls
:meth:`FastLikelihood.neg_log_marginal_likelihood` for the loss, :meth:`~FastLikelihood._cholesky` /
:meth:`~FastLikelihood._gram_cholesky` for factors (with the bounded jitter retry) and :meth:`~FastLikelihood._K`
for kernel matrices, and sets ``_step_cache`` to a dict while ``fit`` runs. What lives here:

* the closed-form gradient of the likelihood from a Cholesky factor (:class:`_GaussianNLL`), and for
  ``ScaleKernel(ViewKernel)`` kernels the fused path (:class:`_FusedNLL`): ``K_y`` built block-wise by
  :class:`viewgp.fused.FusedGram` into one buffer and factorised in place by LAPACK
  (:mod:`viewgp.lapack`), the gradient's ``K_y^-1`` in float32 where that is accurate enough
  (:meth:`~FastLikelihood.gradient_dtype`) or its trace estimated from fixed Rademacher probes
  (Hutchinson, :meth:`~FastLikelihood.trace_method`);
* the step buffers and operands kept between the likelihood evaluations of one fit
  (:meth:`~FastLikelihood._buffer`, :meth:`~FastLikelihood._step_operand`);
* free memory (:func:`available_bytes`), which decides what may be kept and when a factor is built
  in place.

What the model provides: ``kernel``, ``noise``, ``jitter``, ``max_jitter_tries``, ``fused``,
``gradient_precision``, ``gradient_trace``, ``trace_probes``, ``_dtype``, ``_device`` and
``hyperparameters()``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from viewgp.fused import FusedGram
from viewgp.lapack import cholesky_lower_

__all__ = ["FastLikelihood", "NotPSDError", "HUTCHINSON_MIN_N", "available_bytes"]

# float32 gradient only from this N on: below it the float64 inverse costs little.
_FLOAT32_MIN_N = 1024
# gradient_trace="auto" estimates the trace term from this N on (see LatentGP.trace_method).
HUTCHINSON_MIN_N = 1024


class NotPSDError(ValueError):
    """The kernel matrix plus noise stayed singular after the bounded jitter retries."""


class _GaussianNLL(torch.autograd.Function):
    """``D sum(log diag L) + 1/2 tr(C^T K_y^-1 C)`` from a given Cholesky factor ``L`` of ``K_y``.

    ``L`` comes in detached (it may carry retry jitter); the gradient is taken with respect to ``K_y``
    in closed form, and with respect to ``C`` (``A = K_y^-1 C``) when the latents need one.
    """

    @staticmethod
    def forward(ctx, Ky: Tensor, L: Tensor, C: Tensor, d: int) -> Tensor:
        A = torch.cholesky_solve(C, L)
        ctx.save_for_backward(L, A)
        ctx.d = d
        return d * torch.log(L.diagonal()).sum() + 0.5 * (C * A).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        L, A = ctx.saved_tensors
        gK = gC = None
        if ctx.needs_input_grad[0]:
            gK = torch.cholesky_inverse(L).mul_(0.5 * ctx.d)
            gK = torch.addmm(gK, A, A.transpose(0, 1), alpha=-0.5).mul_(g)
        if ctx.needs_input_grad[2]:
            gC = A * g
        return gK, None, gC, None


def _rademacher(n: int, p: int, dtype: torch.dtype, device) -> Tensor:
    """``(n, p)`` fixed random signs (seeded by ``n``: the same probes at every evaluation of a fit, so
    the estimated gradient is a smooth function of the hyper-parameters)."""
    g = torch.Generator().manual_seed(1_000_003 + n)
    return (torch.randint(0, 2, (n, p), generator=g).to(dtype) * 2 - 1).to(device)


class _FusedNLL(torch.autograd.Function):
    """``-log p(Z)`` without the constant for a kernel covered by :class:`FusedGram`.

    Forward: ``K_y`` built block-wise into one buffer (a copy in the gradient's dtype taken block by
    block when it fits, for the backward pass) and factorised there, ``B = L^-1 C``, value
    ``D sum(log diag L) + 1/2 ||B||^2``. Backward: ``W = 1/2 (D K_y^-1 - A A^T)`` with
    ``A = L^-T B`` (in the GP's :meth:`LatentGP.gradient_dtype`), ``K_y^-1`` exact or estimated
    (:meth:`LatentGP.trace_method`), then the fused kernel gradient; inputs
    ``(gp, plan, x, c, d, noise, outputscale, *lengthscales)``.
    """

    @staticmethod
    def forward(ctx, gp, plan: FusedGram, x: Tensor, c: Tensor, d: int, noise: Tensor, *hyper: Tensor) -> Tensor:
        n, k = x.shape[0], c.shape[1]
        scales = (float(hyper[0]), float(noise))
        probes = gp.trace_method(n) == "hutchinson"
        # The kernel is kept in the gradient's dtype, known before the factor exists (but for the
        # exact path's check of the factor for subnormal products, which may ask for float64 later).
        # L is read by triangular solves only: what lies above its diagonal need not be zeroed.
        L, gram = gp._gram_cholesky(x, plan, scales[1], keep=gp.gradient_dtype(n, *scales), clean=False)
        rhs = gp._step_operand("c", c.detach(), _column_major)
        B = torch.linalg.solve_triangular(L, rhs, upper=False, out=gp._buffer("B", (k, n), L.dtype, L.device).mT)
        ctx.save_for_backward(L, B)
        ctx.gram, ctx.probes = gram, probes  # the kernel's blocks serve the gradient again
        ctx.gp, ctx.plan, ctx.x, ctx.d, ctx.scales = gp, plan, x, d, scales
        flat = B.mT.reshape(-1)  # B is column-major: a view
        return d * torch.log(L.diagonal()).sum() + 0.5 * torch.dot(flat, flat)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        L, B = ctx.saved_tensors
        n, d, k = L.shape[0], ctx.d, B.shape[1]
        gp, gram = ctx.gp, ctx.gram
        ctx.gram = None
        # dc needs A in the factor's dtype; the rest of the gradient takes it in the gradient dtype.
        gc = torch.linalg.solve_triangular(L.mT, B, upper=True) * g if ctx.needs_input_grad[3] else None
        if ctx.probes:
            # (no subnormal check of L: no product of its entries is formed in float32 here)
            dtype = gp.gradient_dtype(n, *ctx.scales)
            Z = gp._step_operand(("probes", n, gp.trace_probes, dtype, L.device), None,
                                 lambda _: _rademacher(n, gp.trace_probes, dtype, L.device))
            P = Z.shape[1]
            Lw = L if dtype == L.dtype else gp._buffer("factor", (n, n), dtype, L.device).copy_(L)
            # tr(K_y^-1 dK) = tr(L^-1 dK L^-T) ~ mean_p u_p^T dK u_p with u_p = L^-T z_p for fixed
            # Rademacher probes z_p: W becomes the low-rank 1/2 (D U U^T / P - A A^T), no inverse is
            # formed, and A = L^-T B and U share one back-substitution, in place in one buffer.
            AU = gp._buffer("AU", (k + P, n), dtype, L.device).mT
            AU[:, :k].copy_(B)
            AU[:, k:].copy_(Z)
            torch.linalg.solve_triangular(Lw.mT, AU, upper=True, out=AU)
            del Lw
            A, U = AU[:, :k], AU[:, k:]
            w = 0.5 * d / P
            weights = torch.full((k + P,), w, dtype=dtype, device=L.device)
            weights[:k] = -0.5
            left = AU * weights  # [-A / 2, w U]: one pass
            grads = ctx.plan.gradient(ctx.x, lambda s, e: left[s:e] @ AU[:e].mT, gram=gram)
            # (torch's cascade sums: float32 to ~1e-8 of the sum; vector_norm's float32 is off by 1e-5)
            g_noise = w * U.square().sum().double() - 0.5 * A.square().sum().double()
            out = [g * v.to(L.dtype) for v in [g_noise] + grads]
            return (None, None, None, gc, None, *out)
        dtype = gp.gradient_dtype(n, *ctx.scales, factor=L)
        if gram is not None and gram.element_size() < torch.empty((), dtype=dtype).element_size():
            gram = None  # kept in float32, but the factor's tiny entries ask for float64: recomputed
        Lw = L if dtype == L.dtype else gp._buffer("factor", (n, n), dtype, L.device).copy_(L)
        A = torch.linalg.solve_triangular(Lw.mT, B.to(dtype), upper=True)
        # L is row-major: L^T is the column-major upper factor that LAPACK inverts without a copy
        Kinv = torch.cholesky_inverse(Lw.mT, upper=True)
        del Lw
        # W = d(-log p)/dK_y = 1/2 (D K_y^-1 - A A^T), formed block by block on the lower triangle only:
        # A A^T then costs half a full product and W never exists whole.
        grads = ctx.plan.gradient(
            ctx.x, lambda s, e: torch.addmm(Kinv[s:e, :e], A[s:e], A[:e].mT, beta=0.5 * d, alpha=-0.5),
            gram=gram)
        del gram
        g_noise = 0.5 * d * Kinv.diagonal().sum(dtype=torch.float64) - 0.5 * A.square().sum(dtype=torch.float64)
        out = [g * v.to(L.dtype) for v in [g_noise] + grads]
        return (None, None, None, gc, None, *out)


def _column_major(t: Tensor) -> Tensor:
    """``t`` ``(N, K)`` stored column by column, as LAPACK takes right-hand sides: a triangular solve
    then skips its copy (3.5 of 17 ms at N = 2,000, K = 512)."""
    return t.mT.contiguous().mT


def _tiny_fraction(L: Tensor, stride: int = 7) -> float:
    """Fraction of the lower-triangle entries of ``L`` below 1e-20 of its largest diagonal entry,
    estimated on every ``stride``-th row and column (a strided sample of a lower-triangular matrix
    is lower triangular)."""
    sample = L[::stride, ::stride]
    lower = torch.ones_like(sample, dtype=torch.bool).tril_()
    tiny = (sample.abs() < 1e-20 * float(L.diagonal().max())) & lower
    return float(tiny.sum()) / max(int(lower.sum()), 1)


def available_bytes(device: torch.device) -> float:
    """Free memory of ``device``: the GPU's free memory, or MemAvailable of /proc/meminfo on the CPU."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 8e9


class FastLikelihood:
    """The likelihood and factorisation machinery of :class:`~viewgp.latent_gp.LatentGP` (see the module
    docstring for what the model provides)."""

    def _cholesky(self, A: Tensor) -> Tensor:
        """Lower Cholesky factor of the symmetric ``A`` (not modified), with the bounded jitter retry."""
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        return self._factor_with_jitter(lambda j: A if j == 0 else A + j * eye, in_place=False)

    def _factor_with_jitter(self, build: Callable[[float], Tensor], in_place: bool, check: bool = True,
                            clean: bool = True) -> Tensor:
        """Cholesky of ``build(j)`` (the matrix with ``j`` added to its diagonal): first ``j = 0``, then
        ``jitter`` times the mean diagonal, 10x larger at each retry. ``in_place``: ``build`` returns a
        fresh matrix (its lower triangle suffices) that is overwritten by its factor: by LAPACK
        directly where :mod:`viewgp.lapack` finds it, else by torch when a second N x N buffer does
        not fit. ``check=False`` skips the pass over the matrix for NaN/inf (the caller has checked
        the hyper-parameters instead); ``clean=False`` may leave the entries above the diagonal of an
        in-place factor as they were (for a factor that only triangular routines read)."""
        A = build(0.0)
        if check and not bool(torch.isfinite(A).all()):
            raise ValueError(
                f"the {A.shape[-1]}x{A.shape[-1]} kernel matrix has NaN or inf entries: check the kernel "
                f"hyper-parameters ({self.hyperparameters()})"
            )
        scale = float(A.diagonal().abs().mean()) or 1.0
        jitter = self.jitter * scale
        for attempt in range(self.max_jitter_tries + 1):
            if attempt:
                A = build(jitter)
                jitter *= 10
            L = info = None
            if in_place:
                code = cholesky_lower_(A, clean=clean)  # LAPACK where A lies: none of torch's copies (viewgp.lapack)
                if code is not None:
                    L, info = A, torch.tensor(code)
                elif 2 * A.numel() * A.element_size() > 0.5 * available_bytes(A.device):
                    # No second buffer fits. The row-major lower triangle is the upper one of the
                    # column-major A^T, which torch factorises where it lies (then cleans it through
                    # copies); in place on A itself it would copy A to column-major first.
                    At = A.mT
                    try:
                        _, info = torch.linalg.cholesky_ex(At, upper=True,
                                                           out=(At, torch.empty((), dtype=torch.int32, device=A.device)))
                        L = A
                    except RuntimeError:  # a backend that refuses the aliased output: factorise into a copy
                        pass
            if L is None:
                L, info = torch.linalg.cholesky_ex(A)
            if not bool(info.any()):
                if not check and not bool(torch.isfinite(L.diagonal()).all()):
                    raise ValueError(f"the {A.shape[-1]}x{A.shape[-1]} kernel matrix has NaN or inf entries: check "
                                     f"the kernel hyper-parameters ({self.hyperparameters()})")
                return L
            del L
        raise NotPSDError(
            f"the {A.shape[-1]}x{A.shape[-1]} kernel matrix plus noise is not positive definite even with "
            f"jitter {jitter / 10:.1e} after {self.max_jitter_tries} tries; raise the noise "
            f"(now {float(self.noise.detach()):.3g}) or check for a kernel that is not positive definite"
        )

    def _buffer(self, name: str, shape: tuple, dtype: torch.dtype, device) -> Tensor:
        """An uninitialised ``shape`` tensor; during :meth:`fit` the same memory at every likelihood
        evaluation. (A fresh N x N buffer is paid for in page faults when first written: at N = 5,000,
        zeroing the untouched upper half of the kernel matrix took 100 ms, a third of its Cholesky.)"""
        cache = getattr(self, "_step_cache", None)
        key = ("buffer", name, tuple(shape), dtype, torch.device(device))
        if cache is not None and key in cache:
            return cache[key]
        buf = torch.empty(shape, dtype=dtype, device=device)
        if cache is not None:
            cache[key] = buf
        return buf

    def _step_operand(self, key, t: Optional[Tensor], make: Callable[[Optional[Tensor]], Tensor]) -> Tensor:
        """``make(t)``; during :meth:`fit` kept between likelihood evaluations under ``key`` (and ``t``'s
        identity: storage, shape, strides, dtype and version), e.g. the residuals in column-major order
        or the fixed Hutchinson probes."""
        cache = getattr(self, "_step_cache", None)  # a dict while fit() runs, else None
        if cache is None:
            return make(t)
        # Keyed by storage address; holding t keeps that storage alive, so no other tensor can take it.
        ident = None if t is None else (t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, t.device, t._version)
        hit = cache.get(key)
        if hit is not None and hit[0] == ident:
            return hit[2]
        value = make(t)
        cache[key] = (ident, t, value)
        return value

    def _plan(self) -> Optional[FusedGram]:
        return FusedGram.from_kernel(self.kernel) if self.fused else None

    def _gram_cholesky(self, x: Tensor, plan: FusedGram, noise: float, keep: Optional[torch.dtype] = None,
                       clean: bool = True):
        """Cholesky factor of ``K(x, x) + noise I`` built by ``plan`` and factorised in place. ``keep``
        (a dtype): return ``(L, K_y)`` with a copy of ``K_y`` in that dtype (lower triangle written)
        for the gradient's blocks, ``None`` unless it fits beside the factor and the gradient's N x N
        buffer. ``clean``: see :meth:`_factor_with_jitter`."""
        hyper = [float(v.detach()) for v in plan.hyperparameters()] + [noise]
        if not all(math.isfinite(v) and v > 0 for v in hyper):
            raise ValueError(f"kernel hyper-parameters must be finite and positive, got {self.hyperparameters()}")
        n = x.shape[0]
        copy_bytes = 0 if keep is None else n * n * torch.empty((), dtype=keep).element_size()
        kept: list[Optional[Tensor]] = [None]

        def build(j: float) -> Tensor:
            fits = 2 * n * n * x.element_size() + copy_bytes <= 0.5 * available_bytes(self._device)
            if keep is not None and j == 0 and fits:  # (the copy is without the noise: the gradient's is s^2)
                kept[0] = self._buffer("gram-copy", (n, n), keep, x.device)
            return plan.matrix(x, add_diagonal=noise + j, lower_only=True,
                               out=self._buffer("gram", (n, n), x.dtype, x.device), copy=kept[0] if j == 0 else None)

        L = self._factor_with_jitter(build, in_place=True, check=False, clean=clean)
        return L if keep is None else (L, kept[0])

    def gradient_dtype(self, n: int, outputscale: float, noise: float, factor: Optional[Tensor] = None) -> torch.dtype:
        """Dtype of ``K_y^-1`` in the likelihood gradient at ``n`` frames (fused kernels).

        ``"auto"`` takes float32 from N = 1024 on when its rounding is harmless: the inverse computed
        from a float32 copy of ``L`` has relative error about ``eps32 cond(L) <= eps32 sqrt(1 + N s^2 /
        s_n^2)``, so float32 is used when that bound is at most 1e-3 (else float64, as below N = 1024,
        where the float64 inverse is cheap). In float32 the inverse costs about one float64 Cholesky,
        in float64 about two, unless the Cholesky ``factor`` (when given) has many entries below
        1e-20 of its diagonal: a run much longer than its lengthscales, whose far-apart frames are
        uncorrelated. Their products in the float32 inverse underflow into subnormal numbers, whose
        arithmetic is many times slower (measured: 1.7 s against 0.46 s in float64 at N = 3,000),
        so such factors keep float64.
        """
        if self.gradient_precision == "float32":
            return torch.float32
        if self.gradient_precision == "float64" or n < _FLOAT32_MIN_N or self._dtype != torch.float64:
            return self._dtype
        bound = torch.finfo(torch.float32).eps * math.sqrt(1.0 + n * outputscale / max(noise, 1e-300))
        if bound > 1e-3 or (factor is not None and _tiny_fraction(factor) > 1e-3):
            return self._dtype
        return torch.float32

    def trace_method(self, n: int) -> str:
        """How the likelihood gradient's trace term is computed at ``n`` frames (fused kernels).

        The exact gradient needs ``K_y^-1``: 2/3 n^3 flops besides the Cholesky's 1/3 n^3, so a
        value-and-gradient step cannot come within 2x of one Cholesky. ``"auto"`` (the default)
        takes the Hutchinson estimate ``tr(L^-1 dK L^-T) ~ mean_p u_p^T dK u_p``, ``u_p = L^-T z_p``
        for ``trace_probes`` fixed Rademacher probes (``n^2 P`` flops, in the back-substitution the
        data term needs anyway) from ``HUTCHINSON_MIN_N`` frames on; below it the exact inverse
        costs milliseconds. Values are always exact. Measured on the phone runs of
        ``benchmarks/latent_gp.py`` (D = 512, P = 64): gradient error 0.2-0.3% of the exact
        gradient at N = 500-2,000 (the earlier two-sided estimate ``z^T K_y^-1 dK z``: 2-2.5%);
        L-BFGS fits on all of 1,600 / 3,000 frames reach outputscale 0.514 / 0.567 against the
        exact gradient's 0.513 / 0.538 (a flat direction: held-out MSE equal to 0.002%) in 0.8 /
        4.2 s against 2.7 / 14.5 s; subset fits of 10,000 frames give the same mean predictive
        variance to 0.4%.
        """
        if self.gradient_trace != "auto":
            return self.gradient_trace
        return "hutchinson" if n >= HUTCHINSON_MIN_N else "exact"

    def _K(self, x1: Tensor, x2: Tensor) -> Tensor:
        plan = self._plan()
        if plan is not None and not torch.is_grad_enabled():
            return plan.matrix(x1, x2)
        return self.kernel(x1, x2).to_dense()

    def _Ky(self, x: Tensor) -> Tensor:
        return self._K(x, x) + self.noise * torch.eye(x.shape[0], dtype=x.dtype, device=x.device)

    def neg_log_marginal_likelihood(self, x: Tensor, c: Tensor, d: int) -> Tensor:
        """``-log p(Z)`` at the current hyper-parameters, differentiable in them, for validated poses
        ``x (N, P)`` and residuals given by any ``c`` with ``c c^T = R R^T`` (``R`` itself or
        ``residual_factor_``); ``d`` = D, the number of latent dimensions."""
        n = x.shape[0]
        const = 0.5 * n * d * math.log(2 * math.pi)
        plan = self._plan()
        if plan is not None:
            hyper = plan.hyperparameters()
            if not all(bool(torch.isfinite(h)) for h in hyper + [self.noise]):
                return sum(hyper) * math.nan
            return _FusedNLL.apply(self, plan, x, c, d, self.noise, *hyper) + const
        Ky = self._Ky(x)
        if not bool(torch.isfinite(Ky).all()):
            # The likelihood at NaN/inf hyper-parameters is NaN: fit() then keeps its best parameters.
            return Ky.sum() * math.nan
        L = self._cholesky(Ky.detach())
        return _GaussianNLL.apply(Ky, L, c, d) + const

    @staticmethod
    def _nll_from_factor(L: Tensor, c: Tensor, d: int) -> float:
        n = L.shape[0]
        quad = torch.linalg.solve_triangular(L, c, upper=False).pow(2).sum()
        return float(d * torch.log(L.diagonal()).sum() + 0.5 * quad + 0.5 * n * d * math.log(2 * math.pi))
