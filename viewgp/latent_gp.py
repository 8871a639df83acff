"""Exact GP regression of latent codes on camera poses, one Cholesky for all latent dimensions.

The model of the thesis (eqs. 3.11-3.14): every latent dimension is an independent GP over poses with
the SAME kernel and noise,

    z_d(P) ~ GP(m_d, k(P, P')),     z_obs[i, d] = z_d(P_i) + eps,   eps ~ N(0, s_n^2),

so with ``K_y = K + s_n^2 I`` (N x N) and ``R = Z - m`` (N x D) the log marginal likelihood summed over
dimensions is

    log p(Z) = -D/2 log|K_y| - 1/2 tr(R^T K_y^-1 R) - N D / 2 log(2 pi),

computed from one Cholesky ``K_y = L L^T``: ``log|K_y| = 2 sum log L_ii`` and
``tr(R^T K_y^-1 R) = ||L^-1 R||_F^2``. When D > N the Gram matrix ``S = R R^T`` is formed once and
``tr(K_y^-1 S)`` replaces the D-column solve, so an optimisation step costs O(N^3), independent of D.

GPyTorch provides the kernels and constraints; the likelihood is written here because GPyTorch's
batch-independent multi-output models factorise one N x N matrix per output dimension (about 1000x
slower at N = 300, D = 512; see ``benchmarks/latent_gp.py``).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from gpytorch.constraints import GreaterThan
from torch import Tensor, nn

__all__ = ["LatentGP", "NotPSDError"]


class NotPSDError(ValueError):
    """The kernel matrix plus noise stayed singular after the bounded jitter retries."""


def _check_finite(x: Tensor, name: str) -> None:
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise ValueError(f"{name}: non-finite value (NaN or inf) in row {i} ({int(bad.sum())} rows in all)")


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
        jitter, max_jitter_tries: diagonal jitter added when the Cholesky fails, multiplied by 10 at each
            of at most ``max_jitter_tries`` retries before :class:`NotPSDError` is raised.
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
        self._train: Optional[dict] = None

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
        out = {"noise": float(self.noise)}
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

    def _poses(self, poses, name: str = "poses") -> Tensor:
        x = torch.as_tensor(poses).to(dtype=self._dtype, device=self._device)
        if x.dim() != 2:
            raise ValueError(f"{name}: expected a (N, P) matrix of pose features, got shape {tuple(x.shape)}")
        _check_finite(x, name)
        if self._train is not None and x.shape[1] != self._train["x"].shape[1]:
            raise ValueError(f"{name}: {x.shape[1]} pose columns but the GP was fitted on {self._train['x'].shape[1]}")
        return x

    def _latents(self, latents, n: int) -> tuple[Tensor, tuple]:
        z = torch.as_tensor(latents).to(dtype=self._dtype, device=self._device)
        if z.dim() < 2 or z.shape[0] != n:
            raise ValueError(f"latents: expected shape (N, D) or (N, *latent_shape) with N = {n}, got {tuple(z.shape)}")
        _check_finite(z, "latents")
        return z.reshape(n, -1), tuple(z.shape[1:])

    # ---------------------------------------------------------------- linear algebra
    def _cholesky(self, A: Tensor) -> Tensor:
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
            f"(now {float(self.noise):.3g}) or check for a kernel that is not positive definite"
        )

    def _K(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.kernel(x1, x2).to_dense()

    def _Kdiag(self, x: Tensor) -> Tensor:
        return self.kernel(x, x, diag=True)

    def _neg_mll(self, x: Tensor, r: Tensor, gram: Optional[Tensor]) -> Tensor:
        n, d = r.shape
        Ky = self._K(x, x) + self.noise * torch.eye(n, dtype=x.dtype, device=x.device)
        L = self._cholesky(Ky)
        logdet = 2 * torch.log(L.diagonal()).sum()
        if gram is not None:
            # tr(K^-1 S) via two triangular solves of N x N: independent of D.
            A = torch.linalg.solve_triangular(L, gram, upper=False)
            quad = torch.linalg.solve_triangular(L, A.transpose(0, 1), upper=False).diagonal().sum()
        else:
            quad = torch.linalg.solve_triangular(L, r, upper=False).pow(2).sum()
        return 0.5 * d * logdet + 0.5 * quad + 0.5 * n * d * math.log(2 * math.pi)

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
        """
        x = self._poses(poses)
        z, shape = self._latents(latents, x.shape[0])
        mean = z.mean(0) if self.mean_mode == "constant" else torch.zeros(z.shape[1], dtype=z.dtype, device=z.device)
        r = z - mean
        gram = r @ r.T if r.shape[1] > r.shape[0] else None
        self.history_ = []
        if optimize and steps > 0:
            params = [p for n, p in self.named_parameters() if n != "raw_noise" or self.learn_noise]
            opt = torch.optim.Adam(params, lr=lr)
            best = (float("inf"), None)
            from tqdm.auto import tqdm

            bar = tqdm(range(steps), desc="fit GP", disable=not progress)
            for step in bar:
                opt.zero_grad()
                loss = self._neg_mll(x, r, gram)
                value = float(loss.detach()) / r.numel()
                if not math.isfinite(value):
                    break
                if value < best[0]:
                    best = (value, {k: v.detach().clone() for k, v in self.state_dict().items()})
                loss.backward()
                opt.step()
                self.history_.append(value)
                if callback is not None:
                    callback(step, value)
                bar.set_postfix(nll=f"{value:.4f}")
            with torch.no_grad():
                final = float(self._neg_mll(x, r, gram)) / r.numel()
            if not (math.isfinite(final) and final <= best[0]) and best[1] is not None:
                self.load_state_dict(best[1])
        self._factorize(x, z, mean, shape)
        return self

    def _factorize(self, x: Tensor, z: Tensor, mean: Tensor, shape: tuple) -> None:
        with torch.no_grad():
            n = x.shape[0]
            Ky = self._K(x, x) + self.noise * torch.eye(n, dtype=x.dtype, device=x.device)
            L = self._cholesky(Ky)
            alpha = torch.cholesky_solve(z - mean, L)
        self._train = {"x": x, "L": L, "alpha": alpha, "mean": mean, "shape": shape}

    def log_marginal_likelihood(self, poses=None, latents=None) -> Tensor:
        """Log marginal likelihood summed over latent dimensions (differentiable)."""
        if poses is None or latents is None:
            if self._train is None:
                raise RuntimeError("call fit() first or pass poses and latents")
            x = self._train["x"]
            r = (self._train["L"] @ (self._train["L"].T @ self._train["alpha"])).detach()
            # Reconstructing R from alpha loses nothing: R = K_y alpha with the fitted K_y.
        else:
            x = self._poses(poses)
            z, _ = self._latents(latents, x.shape[0])
            mean = z.mean(0) if self.mean_mode == "constant" else torch.zeros_like(z[0])
            r = z - mean
        return -self._neg_mll(x, r, None)

    def _require_fit(self) -> dict:
        if self._train is None:
            raise RuntimeError("LatentGP is not fitted: call fit(poses, latents) first")
        return self._train

    def _project(self, z: Tensor) -> Tensor:
        if self.latent_geometry != "sphere":
            return z
        return z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def _posterior(self, xq: Tensor) -> tuple[Tensor, Tensor]:
        """Flat posterior mean ``(M, D)`` and ``V = L^-1 K(X, xq)`` ``(N, M)`` (cov = K(xq, xq) - V^T V)."""
        tr = self._require_fit()
        Kq = self._K(xq, tr["x"])
        return tr["mean"] + Kq @ tr["alpha"], torch.linalg.solve_triangular(tr["L"], Kq.T, upper=False)

    def predict(self, poses, full_cov: bool = False, include_noise: bool = False) -> tuple[Tensor, Tensor]:
        """Posterior at ``poses`` ``(M, P)``.

        Returns:
            mean ``(M, *latent_shape)`` and the posterior variance ``(M,)`` of the latent function,
            shared by every dimension (``(M, M)`` covariance with ``full_cov=True``); ``include_noise``
            adds ``s_n^2``.
        """
        xq = self._poses(poses)
        with torch.no_grad():
            mean, V = self._posterior(xq)
            if full_cov:
                cov = self._K(xq, xq) - V.T @ V
                if include_noise:
                    cov = cov + self.noise * torch.eye(xq.shape[0], dtype=cov.dtype, device=cov.device)
                out2 = cov
            else:
                var = (self._Kdiag(xq) - V.pow(2).sum(0)).clamp_min(0)
                out2 = var + self.noise if include_noise else var
            mean = self._project(mean.reshape((-1,) + self._train["shape"]))
        return mean, out2.detach()

    def sample(self, poses, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """Joint posterior samples over the frames ``(n, M, *latent_shape)`` (one Cholesky for all dims)."""
        xq = self._poses(poses)
        with torch.no_grad():
            mean, V = self._posterior(xq)
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
            eps = torch.randn((n, m, d), generator=generator, dtype=mean.dtype, device="cpu").to(mean.device)
            s = mean + torch.einsum("ij,sjd->sid", Ls, eps)
            return self._project(s.reshape((n, m) + self._train["shape"]))
