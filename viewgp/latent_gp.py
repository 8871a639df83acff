"""Exact GP regression of latent codes on camera poses, one Cholesky for all latent dimensions.

The model of the thesis (eqs. 3.11-3.14): every latent dimension is an independent GP over poses with
the SAME kernel and noise,

    z_d(P) ~ GP(m_d, k(P, P')),     z_obs[i, d] = z_d(P_i) + eps,   eps ~ N(0, s_n^2),

so with ``K_y = K + s_n^2 I`` (N x N) and ``R = Z - m`` (N x D) the log marginal likelihood summed over
dimensions is

    log p(Z) = -D/2 log|K_y| - 1/2 tr(R^T K_y^-1 R) - N D / 2 log(2 pi),

computed from one Cholesky ``K_y = L L^T``: ``log|K_y| = 2 sum log L_ii`` and
``tr(R^T K_y^-1 R) = tr(C^T K_y^-1 C)`` for any ``C`` with ``C C^T = R R^T``. When D > N, fit() takes
``C = T^T`` from one QR factorisation ``R^T = Q T`` (N x N, exact, rank deficiency included), so an
optimisation step costs O(N^3) whatever D is. The gradient is written out rather than left to autograd
through the Cholesky (about 1.5x faster):

    d(-log p) / dK_y = 1/2 (D K_y^-1 - A A^T),    A = K_y^-1 C,

and GPyTorch's kernel graph carries it on to the hyper-parameters.

GPyTorch provides the kernels and constraints; the likelihood is written here because GPyTorch's
batch-independent multi-output models factorise one N x N matrix per output dimension (about 1000x
slower at N = 300, D = 512; see ``benchmarks/latent_gp.py``).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Optional

import torch
from gpytorch.constraints import GreaterThan
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from viewgp.sphere import project_to_sphere

__all__ = ["LatentGP", "NotPSDError"]


class NotPSDError(ValueError):
    """The kernel matrix plus noise stayed singular after the bounded jitter retries."""


def _check_finite(x: Tensor, name: str) -> None:
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise ValueError(f"{name}: non-finite value (NaN or inf) in row {i} ({int(bad.sum())} rows in all)")


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


class LatentGP(nn.Module):
    """GP over ``(N, D)`` latents indexed by poses, hyper-parameters shared across the D dimensions.

    Args:
        kernel: any GPyTorch kernel on the pose features; default ``ScaleKernel(ViewKernel())``.
        mean: ``"constant"``: per-dimension empirical mean of the training latents (the mean removal of
            the original code); ``"zero"``: no mean.
        noise: initial noise variance ``s_n^2``.
        learn_noise: optimise the noise in :meth:`fit` (else keep it fixed).
        latent_geometry: ``"sphere"`` projects predicted means and samples back onto the unit sphere
            (last dimension) before returning them; variances stay those of the ambient space.
        jitter, max_jitter_tries: when a Cholesky fails, ``jitter`` times the mean diagonal is added to
            the diagonal and multiplied by 10 at each of at most ``max_jitter_tries`` retries before
            :class:`NotPSDError` is raised (the same retry serves the posterior covariance in
            :meth:`sample`, which then falls back to clipping eigenvalues at 1e-5 of the largest).
        dtype, device: of the hyper-parameters and of every computation (float64 by default).

    The noise is constrained by ``GreaterThan(1e-8)`` so near-noise-free interpolation stays
    expressible; the constant mean is not a parameter but recomputed from the latents by :meth:`fit`.

    Fitted state (scikit-learn style, set by :meth:`fit`; ``None`` before):

    * ``train_poses_`` ``(N, P)``: the pose features fitted on;
    * ``mean_`` ``(D,)``: the per-dimension prior mean (empirical, or zeros);
    * ``cholesky_`` ``(N, N)``: lower Cholesky factor of ``K_y = K + s_n^2 I`` (retry jitter included);
    * ``alpha_`` ``(N, D)``: ``K_y^-1 (Z - mean_)``, so the posterior mean is ``mean_ + K(x, X) alpha_``;
    * ``residual_factor_`` ``(N, min(N, D))``: ``C`` with ``C C^T = R R^T`` (the likelihood's data term);
    * ``latent_shape_``: the shape of one latent (``(D,)`` or e.g. ``(18, 512)``), restored on output.
    """

    def __init__(
        self,
        kernel=None,
        mean: str = "constant",
        noise: float = 0.1,
        learn_noise: bool = True,
        latent_geometry: str = "euclidean",
        dtype: torch.dtype = torch.float64,
        device=None,
        jitter: float = 1e-8,
        max_jitter_tries: int = 5,
    ):
        super().__init__()
        if kernel is None:
            from gpytorch.kernels import ScaleKernel

            from viewgp.kernels import ViewKernel

            kernel = ScaleKernel(ViewKernel())
        if mean not in ("constant", "zero"):
            raise ValueError(f"mean must be 'constant' or 'zero', got {mean!r}")
        if latent_geometry not in ("euclidean", "sphere"):
            raise ValueError(f"latent_geometry must be 'euclidean' or 'sphere', got {latent_geometry!r}")
        self.kernel = kernel
        self.mean_mode = mean
        self.learn_noise = learn_noise
        self.latent_geometry = latent_geometry
        self.jitter = jitter
        self.max_jitter_tries = max_jitter_tries
        self.raw_noise = nn.Parameter(torch.zeros(()))
        self.noise_constraint = GreaterThan(1e-8)
        self.to(dtype=dtype, device=device)
        self.noise = noise
        self.history_: list[float] = []
        self.train_poses_: Optional[Tensor] = None
        self.mean_: Optional[Tensor] = None
        self.cholesky_: Optional[Tensor] = None
        self.alpha_: Optional[Tensor] = None
        self.residual_factor_: Optional[Tensor] = None
        self.latent_shape_: Optional[tuple] = None

    # ---------------------------------------------------------------- hyper-parameters
    @property
    def noise(self) -> Tensor:
        """Noise variance ``s_n^2``."""
        return self.noise_constraint.transform(self.raw_noise)

    @noise.setter
    def noise(self, value) -> None:
        v = torch.as_tensor(value, dtype=self.raw_noise.dtype, device=self.raw_noise.device)
        with torch.no_grad():
            self.raw_noise.copy_(self.noise_constraint.inverse_transform(v.clamp_min(1.0001e-8)))

    def hyperparameters(self) -> dict:
        """Plain-float hyper-parameters: noise, output scales and lengthscales by sub-module name."""
        out = {"noise": float(self.noise.detach())}
        for name, m in self.kernel.named_modules():
            prefix = f"{name}." if name else ""
            if hasattr(m, "raw_outputscale"):
                out[f"{prefix}outputscale"] = float(m.outputscale.detach().reshape(-1)[0])
            if getattr(m, "has_lengthscale", False) and getattr(m, "raw_lengthscale", None) is not None:
                ls = m.lengthscale.detach().reshape(-1)
                out[f"{prefix}lengthscale"] = [float(v) for v in ls] if ls.numel() > 1 else float(ls[0])
            if hasattr(m, "raw_ard_scales"):
                out[f"{prefix}ard_scales"] = [float(v) for v in m.ard_scales.detach().reshape(-1)]
        return out

    # ---------------------------------------------------------------- inputs
    @property
    def _dtype(self) -> torch.dtype:
        return self.raw_noise.dtype

    @property
    def _device(self) -> torch.device:
        return self.raw_noise.device

    @property
    def is_fitted(self) -> bool:
        return self.cholesky_ is not None

    def as_poses(self, poses, name: str = "poses", new_data: bool = False) -> Tensor:
        """``poses`` as a validated ``(N, P)`` tensor of the GP's dtype and device (finite; after
        :meth:`fit`, with the fitted number of columns unless ``new_data``)."""
        x = torch.as_tensor(poses).to(dtype=self._dtype, device=self._device)
        if x.dim() != 2:
            raise ValueError(f"{name}: expected a (N, P) matrix of pose features, got shape {tuple(x.shape)}")
        _check_finite(x, name)
        if not new_data and self.is_fitted and x.shape[1] != self.train_poses_.shape[1]:
            raise ValueError(f"{name}: {x.shape[1]} pose columns but the GP was fitted on {self.train_poses_.shape[1]}")
        return x

    def _latents(self, latents, n: int) -> tuple[Tensor, tuple]:
        z = torch.as_tensor(latents).to(dtype=self._dtype, device=self._device)
        if z.dim() < 2 or z.shape[0] != n:
            raise ValueError(f"latents: expected shape (N, D) or (N, *latent_shape) with N = {n}, got {tuple(z.shape)}")
        _check_finite(z, "latents")
        return z.reshape(n, -1), tuple(z.shape[1:])

    # ---------------------------------------------------------------- linear algebra
    def _cholesky(self, A: Tensor) -> Tensor:
        if not bool(torch.isfinite(A).all()):
            raise ValueError(
                f"the {A.shape[-1]}x{A.shape[-1]} kernel matrix has NaN or inf entries: check the kernel "
                f"hyper-parameters ({self.hyperparameters()})"
            )
        L, info = torch.linalg.cholesky_ex(A)
        if not bool(info.any()):
            return L
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        scale = float(A.diagonal().abs().mean()) or 1.0
        jitter = self.jitter * scale
        for _ in range(self.max_jitter_tries):
            L, info = torch.linalg.cholesky_ex(A + jitter * eye)
            if not bool(info.any()):
                return L
            jitter *= 10
        raise NotPSDError(
            f"the {A.shape[-1]}x{A.shape[-1]} kernel matrix plus noise is not positive definite even with "
            f"jitter {jitter / 10:.1e} after {self.max_jitter_tries} tries; raise the noise "
            f"(now {float(self.noise.detach()):.3g}) or check for a kernel that is not positive definite"
        )

    def _K(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.kernel(x1, x2).to_dense()

    def kernel_diag(self, x: Tensor) -> Tensor:
        """Prior variances ``k(x_i, x_i)`` ``(N,)`` of validated poses ``x``."""
        return self.kernel(x, x, diag=True)

    def _Ky(self, x: Tensor) -> Tensor:
        return self._K(x, x) + self.noise * torch.eye(x.shape[0], dtype=x.dtype, device=x.device)

    def neg_log_marginal_likelihood(self, x: Tensor, c: Tensor, d: int) -> Tensor:
        """``-log p(Z)`` at the current hyper-parameters, differentiable in them, for validated poses
        ``x (N, P)`` and residuals given by any ``c`` with ``c c^T = R R^T`` (``R`` itself or
        ``residual_factor_``); ``d`` = D, the number of latent dimensions."""
        Ky = self._Ky(x)
        if not bool(torch.isfinite(Ky).all()):
            # The likelihood at NaN/inf hyper-parameters is NaN: fit() then keeps its best parameters.
            return Ky.sum() * math.nan
        L = self._cholesky(Ky.detach())
        n = x.shape[0]
        return _GaussianNLL.apply(Ky, L, c, d) + 0.5 * n * d * math.log(2 * math.pi)

    @staticmethod
    def _nll_from_factor(L: Tensor, c: Tensor, d: int) -> float:
        n = L.shape[0]
        quad = torch.linalg.solve_triangular(L, c, upper=False).pow(2).sum()
        return float(d * torch.log(L.diagonal()).sum() + 0.5 * quad + 0.5 * n * d * math.log(2 * math.pi))

    def _residuals(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Per-dimension mean ``(D,)`` (empirical for ``mean="constant"``) and residuals ``(N, D)``."""
        mean = z.mean(0) if self.mean_mode == "constant" else torch.zeros_like(z[0])
        return mean, z - mean

    @staticmethod
    def _factor(r: Tensor) -> Tensor:
        """``C`` with ``C C^T = R R^T`` and min(N, D) columns: the likelihood then costs O(N^3) for any D."""
        if r.shape[1] <= r.shape[0]:
            return r
        return torch.linalg.qr(r.transpose(0, 1), mode="r")[1].transpose(0, 1)

    # ---------------------------------------------------------------- public API
    def fit(
        self,
        poses,
        latents,
        steps: int = 100,
        lr: float = 0.05,
        optimize: bool = True,
        progress: bool = False,
        callback: Optional[Callable[[int, float], None]] = None,
    ) -> "LatentGP":
        """Type-II maximum likelihood (Adam on the negative log marginal likelihood), then cache the
        factorisation for prediction.

        Args:
            poses: ``(N, P)`` pose features (e.g. ``(N, 12)`` or ``(N, 13)``).
            latents: ``(N, D)`` or ``(N, *latent_shape)``; the shape is restored on output.
            steps, lr: Adam steps and learning rate; ``optimize=False`` keeps the current
                hyper-parameters (e.g. fixed values of the paper) and only factorises.
            progress: tqdm bar; callback: called as ``callback(step, nll_per_value)`` after each step.

        ``history_`` holds the negative log marginal likelihood per latent value (divided by N D) at
        the start of every step. If the loss turns non-finite or the kernel matrix stops being positive
        definite, optimisation stops with a warning; in any case the best parameters seen are kept.
        """
        x = self.as_poses(poses, new_data=True)
        z, shape = self._latents(latents, x.shape[0])
        mean, r = self._residuals(z.detach())
        c = self._factor(r)
        n, d = r.shape
        self.history_ = []
        best = (math.inf, None)
        if optimize and steps > 0:
            params = [p for name, p in self.named_parameters() if name != "raw_noise" or self.learn_noise]
            opt = torch.optim.Adam(params, lr=lr)
            from tqdm.auto import tqdm

            bar = tqdm(range(steps), desc="fit GP", disable=not progress)
            for step in bar:
                opt.zero_grad()
                try:
                    loss = self.neg_log_marginal_likelihood(x, c, d)
                except NotPSDError as e:
                    warnings.warn(f"LatentGP.fit: stopped at step {step}: {e}", RuntimeWarning, stacklevel=2)
                    break
                value = float(loss.detach()) / (n * d)
                if not math.isfinite(value):
                    warnings.warn(f"LatentGP.fit: non-finite loss at step {step}; keeping the best parameters",
                                  RuntimeWarning, stacklevel=2)
                    break
                if value < best[0]:
                    best = (value, {k: v.detach().clone() for k, v in self.state_dict().items()})
                loss.backward()
                opt.step()
                self.history_.append(value)
                if callback is not None:
                    callback(step, value)
                bar.set_postfix(nll=f"{value:.4f}")
        try:
            L = self._factorize(x, r, mean, c, shape)
            final = self._nll_from_factor(L, c, d) / (n * d)
        except ValueError:  # NotPSDError or a non-finite kernel matrix at the last parameters
            if best[1] is None:
                raise
            final = math.inf
        if best[1] is not None and not (math.isfinite(final) and final <= best[0]):
            self.load_state_dict(best[1])
            self._factorize(x, r, mean, c, shape)
        return self

    def _factorize(self, x: Tensor, r: Tensor, mean: Tensor, c: Tensor, shape: tuple) -> Tensor:
        with torch.no_grad():
            L = self._cholesky(self._Ky(x))
            alpha = torch.cholesky_solve(r, L)
        self.train_poses_, self.cholesky_, self.alpha_, self.mean_ = x, L, alpha, mean
        self.residual_factor_, self.latent_shape_ = c, shape
        return L

    def log_marginal_likelihood(self, poses=None, latents=None) -> Tensor:
        """Log marginal likelihood summed over latent dimensions, differentiable in the hyper-parameters
        (and in ``latents`` when they require grad). Without arguments: on the data given to :meth:`fit`,
        at the current hyper-parameters."""
        if poses is None and latents is None:
            self._require_fit()
            return -self.neg_log_marginal_likelihood(self.train_poses_, self.residual_factor_, self.alpha_.shape[1])
        if poses is None or latents is None:
            raise ValueError("pass both poses and latents, or neither (then the fitted data are used)")
        x = self.as_poses(poses)
        z, _ = self._latents(latents, x.shape[0])
        _, r = self._residuals(z)
        return -self.neg_log_marginal_likelihood(x, r, r.shape[1])

    def _require_fit(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("LatentGP is not fitted: call fit(poses, latents) first")

    def project(self, z: Tensor) -> Tensor:
        """Latents ``(..., D)`` onto the unit sphere for ``latent_geometry="sphere"`` (else unchanged)."""
        return project_to_sphere(z) if self.latent_geometry == "sphere" else z

    def posterior(self, xq: Tensor) -> tuple[Tensor, Tensor]:
        """Flat, unprojected posterior mean ``(M, D)`` at validated poses ``xq`` and ``V = L^-1 K(X, xq)``
        ``(N, M)``, so the posterior covariance of the latent function is ``K(xq, xq) - V^T V``."""
        self._require_fit()
        Kq = self._K(xq, self.train_poses_)
        return self.mean_ + Kq @ self.alpha_, torch.linalg.solve_triangular(self.cholesky_, Kq.T, upper=False)

    def predict(self, poses, full_cov: bool = False, include_noise: bool = False) -> tuple[Tensor, Tensor]:
        """Posterior at ``poses`` ``(M, P)``.

        Returns:
            mean ``(M, *latent_shape)`` and the posterior variance ``(M,)`` of the latent function,
            shared by every dimension (``(M, M)`` covariance with ``full_cov=True``); ``include_noise``
            adds ``s_n^2``.
        """
        xq = self.as_poses(poses)
        with torch.no_grad():
            mean, V = self.posterior(xq)
            if full_cov:
                cov = self._K(xq, xq) - V.T @ V
                if include_noise:
                    cov = cov + self.noise * torch.eye(xq.shape[0], dtype=cov.dtype, device=cov.device)
                out2 = cov
            else:
                var = (self.kernel_diag(xq) - V.pow(2).sum(0)).clamp_min(0)
                out2 = var + self.noise if include_noise else var
            mean = self.project(mean.reshape((-1,) + self.latent_shape_))
        return mean, out2.detach()

    def loo(self) -> tuple[Tensor, Tensor]:
        """Closed-form leave-one-out predictions at the fitted frames (Rasmussen & Williams eq. 5.12):
        frame ``i`` predicted from all the others has mean ``y_i - [K_y^-1 r]_i / [K_y^-1]_ii`` ``(N, D)``
        (flat, unprojected; the prior mean ``mean_`` held fixed) and the predictive variance of an
        *observation* ``1 / [K_y^-1]_ii`` ``(N,)``;
        from the one Cholesky factor, no refit."""
        self._require_fit()
        with torch.no_grad():
            inv_diag = torch.cholesky_inverse(self.cholesky_).diagonal()
            r = self._Ky(self.train_poses_) @ self.alpha_  # Z - mean
            return self.mean_ + r - self.alpha_ / inv_diag[:, None], 1.0 / inv_diag

    def loo_scale(self) -> float:
        """The variance scale ``c^2`` that calibrates the leave-one-out predictions of the fitted frames:
        the mean over frames and dimensions of ``(y - mu_loo)^2 / var_loo`` ``= alpha^2 / [K_y^-1]_ii``
        (about 1 for a well-specified model). Multiply predictive variances by it; it is chosen from the
        observed frames alone."""
        self._require_fit()
        with torch.no_grad():
            inv_diag = torch.cholesky_inverse(self.cholesky_).diagonal()
            return float((self.alpha_.pow(2) / inv_diag[:, None]).mean())

    def sample(self, poses, n: int, generator: Optional[torch.Generator] = None, scale: float = 1.0,
               include_noise: bool = False) -> Tensor:
        """Joint posterior samples of the latent function over the frames ``(n, M, *latent_shape)``:
        ``mean + L* eps`` with ``L*`` the Cholesky factor of the ``(M, M)`` posterior covariance, one
        for all dimensions (projected to the sphere for ``latent_geometry="sphere"``).

        ``include_noise`` adds independent observation noise (samples of a new *observation* rather than
        of the function); ``scale`` multiplies the deviations from the mean (e.g. ``sqrt(loo_scale())``)."""
        if int(n) != n or n < 0:
            raise ValueError(f"n: expected a non-negative number of samples, got {n!r}")
        n = int(n)
        xq = self.as_poses(poses)
        with torch.no_grad():
            mean, V = self.posterior(xq)
            cov = self._K(xq, xq) - V.T @ V
            cov = 0.5 * (cov + cov.T)
            try:
                Ls = self._cholesky(cov)
            except NotPSDError:
                # Posterior covariances are often numerically rank deficient: clip the spectrum as the
                # original code does (eigenvalues below 1e-5 of the largest -> 1e-5 of it).
                w, Q = torch.linalg.eigh(cov)
                w = w.clamp_min(1e-5 * float(w.max().clamp_min(1e-300)))
                Ls = Q * w.sqrt()
            m, d = mean.shape
            # Draw on the generator's device so a seeded CPU generator gives the same samples everywhere.
            gen_device = generator.device if generator is not None else mean.device
            eps = torch.randn((n, m, d), generator=generator, dtype=mean.dtype, device=gen_device).to(mean.device)
            dev = torch.einsum("ij,sjd->sid", Ls, eps)
            if include_noise:
                e2 = torch.randn((n, m, d), generator=generator, dtype=mean.dtype, device=gen_device).to(mean.device)
                dev = dev + self.noise.detach().sqrt() * e2
            s = mean + float(scale) * dev
            return self.project(s.reshape((n, m) + self.latent_shape_))
