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

The model lives here; its speed (the likelihood's autograd functions, in-place factors, float32 and
Hutchinson gradient terms, step buffers) lives in :mod:`viewgp.likelihood`, which :class:`LatentGP`
inherits as one small interface. Long runs (thousands of frames):

* ``ScaleKernel(ViewKernel(...))`` kernels are evaluated and differentiated by
  :class:`viewgp.fused.FusedGram` (one buffer, no autograd graph of N x N temporaries); ``K_y`` is
  factorised in place by LAPACK (:mod:`viewgp.lapack`) and every solve is a triangular solve. From
  1,024 frames on the gradient's trace term is estimated from fixed probes solved in the same
  float32 back-substitution as the data term (``gradient_trace="auto"``, see
  :meth:`LatentGP.trace_method`), so no ``K_y^-1`` is formed; below, ``K_y^-1`` is exact (float32
  where that is accurate enough, ``gradient_precision="auto"``, see :meth:`LatentGP.gradient_dtype`).
  While ``fit`` runs, the step's buffers are kept between evaluations.
* ``LatentGP(subset=...)`` fits the hyper-parameters on a subset of frames (stratified in time and
  pose, :mod:`viewgp.subset`), then solves once on all frames; ``optimizer="lbfgs"`` (quasi-Newton
  with a strong-Wolfe line search) converges in far fewer evaluations than Adam.
* ``solver="inducing"`` replaces the exact solve on all frames by a FITC approximation with inducing
  frames chosen to cover the run in kernel correlation (:mod:`viewgp.inducing`), O(N M^2) time and
  O(N M) memory; ``solver="auto"`` takes it only when the exact N x N factor does not fit in memory.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from typing import Callable, Optional

import torch
from gpytorch.constraints import GreaterThan
from torch import Tensor, nn

from viewgp import likelihood
from viewgp.likelihood import FastLikelihood, NotPSDError
from viewgp.sphere import project_to_sphere

__all__ = ["LatentGP", "NotPSDError", "default_fit_steps"]

# Queries per block in predict(): bounds the (block, N) cross-covariance and its solve.
_PREDICT_BLOCK = 2048
#: Columns (latent or pixel values) per block of the solve and the leave-one-out sums: (N, D) temporaries
#: of a GP on whole frames of pixels (D = 196,608 at 256 px) would be 1.6 GB each per 1,000 frames.
_SOLVE_COLUMNS = 8192
# L-BFGS's tolerance_change when the gradient's trace term is estimated (see LatentGP._lbfgs_tolerance).
LBFGS_ESTIMATED_TOLERANCE = 1e-6
# optimizer="auto" compares L-BFGS with the Adam schedule by leave-one-out error up to this many frames.
AUTO_COMPARE_MAX_FRAMES = 512


def default_fit_steps(n_obs: int) -> int:
    """Type-II ML steps (the most L-BFGS iterations, or Adam steps) for ``n_obs`` observations: none
    below 6 (not identifiable; the data-driven start values stay), else 150."""
    return 0 if n_obs < 6 else 150


def _check_fit_options(optimizer, steps, lr, subset, seed) -> None:
    """One clear ``ValueError`` naming the first bad fit option (see :class:`LatentGP`); the subset's
    indices are checked against the number of frames by :meth:`LatentGP.fit`."""
    if optimizer not in (None, "auto", "adam", "lbfgs"):
        raise ValueError(f"optimizer must be None, 'auto', 'adam' or 'lbfgs', got {optimizer!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0):
        raise ValueError(f"steps must be None or a non-negative integer, got {steps!r}")
    bad_lr = isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0)
    if lr is not None and bad_lr:
        raise ValueError(f"lr must be None or a positive number, got {lr!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if subset is None:
        return
    if isinstance(subset, str):
        if subset != "auto":
            raise ValueError(f"subset must be None, 'auto', a number of frames or indices, got {subset!r}")
    elif isinstance(subset, numbers.Real) and not isinstance(subset, bool):
        if not (math.isfinite(subset) and subset >= 2):
            raise ValueError(f"subset: need at least 2 frames, got {subset}")
    else:
        try:
            idx = torch.as_tensor(subset).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"subset must be None, 'auto', a number of frames or indices, got {subset!r}") from None
        if idx.dtype == torch.bool:
            raise ValueError("subset: expected frame indices or a number of frames, got a boolean mask")
        if idx.numel() < 2 or int(idx.min()) < 0:
            raise ValueError(f"subset: expected at least 2 non-negative frame indices, got {idx.numel()}")


def _check_finite(x: Tensor, name: str) -> None:
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise ValueError(f"{name}: non-finite value (NaN or inf) in row {i} ({int(bad.sum())} rows in all)")


class LatentGP(FastLikelihood, nn.Module):
    """GP over ``(N, D)`` latents indexed by poses, hyper-parameters shared across the D dimensions.

    scikit-learn style: the configuration, how to fit included, is given here and stored under the
    arguments' own names (``optimizer``, ``steps``, ...); :meth:`fit` takes the data; the fitted state
    ends in ``_``::

        gp = LatentGP(optimizer="adam", steps=100, subset=None).fit(poses, latents)
        mean, var = gp.predict(query_poses)

    Args:
        kernel: any GPyTorch kernel on the pose features; default ``ScaleKernel(ViewKernel())``. It is
            copied: the object passed in is left as it was, the fitted kernel is :attr:`kernel`.
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
        fused: evaluate ``ScaleKernel(ViewKernel)`` kernels with :class:`~viewgp.fused.FusedGram`
            (same values, far less memory and elementwise work at large N); other kernels always
            go through their GPyTorch graph.
        gradient_precision: dtype of ``K_y^-1`` in the likelihood gradient of fused kernels:
            ``"float64"``, ``"float32"`` or ``"auto"`` (see :meth:`gradient_dtype`). Values, the
            Cholesky factor and predictions stay in ``dtype``.
        gradient_trace, trace_probes: the gradient's ``tr(K_y^-1 dK)`` term for fused kernels:
            ``"exact"`` (from ``K_y^-1``), ``"hutchinson"`` (``trace_probes`` fixed Rademacher probes
            solved with the Cholesky factor: no inverse) or ``"auto"`` (the default: the estimate from
            ``HUTCHINSON_MIN_N`` frames on, see :meth:`trace_method`). The estimate finds the optimum
            up to its bias along flat directions (at N = 3,000, D = 512: outputscale 0.567 against
            0.538, the same held-out error to 0.002%); L-BFGS then stops on changes of 1e-6 per
            value (``LBFGS_ESTIMATED_TOLERANCE``).
        solver: how :meth:`fit` solves on all frames: ``"exact"`` (one Cholesky), ``"inducing"``
            (FITC with at most ``max_inducing`` inducing frames, see :mod:`viewgp.inducing`) or
            ``"auto"`` (exact when its N x N factors fit in memory).
        max_inducing, inducing_tol: the inducing frames are added greedily until every frame has
            kernel correlation >= ``1 - inducing_tol`` with one of them, or ``max_inducing`` are chosen.
        mean_dtype: of the fitted ``alpha_`` and ``mean_`` and so of posterior means (default: ``dtype``).
            ``torch.float32`` halves the memory and time of the means of a GP on whole frames of pixels
            (1,000 frames x 196,608 values at 256 px: 0.8 GB instead of 1.6); the factor, the
            variances and the likelihood stay in ``dtype``.
        optimizer: how :meth:`fit` finds the hyper-parameters (type-II maximum likelihood):
            ``"auto"`` (the default): L-BFGS, and on fits of at most ``AUTO_COMPARE_MAX_FRAMES``
            frames (all of them fitted) also ``steps`` Adam steps from the same start, keeping the one
            whose closed-form leave-one-out error on the fitted frames (:meth:`loo_error`) is lower.
            With few frames the likelihood is flat and its converged optimum can interpolate
            noise-free with short lengthscales; the early-stopped Adam schedule then predicts better
            (measured on 8(c)). ``optimizer_`` says which was kept, ``loo_errors_`` both errors.
            ``"adam"``; ``"lbfgs"`` (quasi-Newton with a strong-Wolfe line search; it stops when the
            gradient or the change of the loss vanishes, typically after 15-40 evaluations where Adam
            takes its full ``steps``); ``None``: no optimisation, :meth:`fit` keeps the current
            hyper-parameters (e.g. fixed values of the paper) and only solves.
        steps: Adam steps, or the most L-BFGS iterations (default :func:`default_fit_steps` of the
            number of frames N: 150, none below 6); 0 optimises nothing, as ``optimizer=None``.
        lr: Adam's learning rate (default 0.05) or L-BFGS's initial step (default 1).
        subset: frames to fit the hyper-parameters on: ``"auto"`` (the default:
            :func:`viewgp.subset.auto_subset_size` frames, all up to 1,500), ``None`` (all), a number of
            frames (chosen by :func:`viewgp.subset.stratified_subset`, seeded by ``seed``), or explicit
            indices. The solve for prediction always uses all frames.
        seed: of the stratified subset.

    The default fit options are the fast path the pipeline uses (:func:`viewgp.predict.gp_predict`):
    L-BFGS on a stratified subset of at most ``auto_subset_size(N)`` frames (all up to 1,500),
    compared with the Adam schedule on fits of up to 512 frames; at N = 10,000 fit + predict take
    seconds. ``optimizer="adam", subset=None`` is the plain full-data Adam schedule (minutes at that
    N). Bad values of the fit options raise a ``ValueError`` naming the argument here (the subset's
    indices are checked against the frames in :meth:`fit`).

    ``history_`` holds the negative log marginal likelihood per latent value (divided by m D, on the
    fitted frames) at every evaluation. If the loss turns non-finite or the kernel matrix stops being
    positive definite, Adam stops with a warning and L-BFGS backtracks; in any case the best
    parameters seen are kept.

    The noise is constrained by ``GreaterThan(1e-8)`` so near-noise-free interpolation stays
    expressible; the constant mean is not a parameter but recomputed from the latents by :meth:`fit`.

    Fitted state (scikit-learn style, set by :meth:`fit`; ``None`` before):

    * ``train_poses_`` ``(N, P)``: the pose features fitted on (as a rule ``(N, 13)``);
    * ``mean_`` ``(D,)``: the per-dimension prior mean (empirical, or zeros);
    * ``cholesky_`` ``(N, N)``: lower Cholesky factor of ``K_y = K + s_n^2 I`` (retry jitter included);
    * ``alpha_`` ``(N, D)``: ``K_y^-1 (Z - mean_)``, so the posterior mean is ``mean_ + K(x, X) alpha_``;
    * ``residual_factor_`` ``(N, min(N, D))``: ``C`` with ``C C^T = R R^T`` (the likelihood's data term;
      after a fit on a subset with D > N made when first asked for, from ``cholesky_`` and ``alpha_``);
    * ``latent_shape_``: the shape of one latent (``(D,)`` or e.g. ``(18, 512)``), restored on output;
    * ``subset_`` ``(m,)``: indices of the frames the hyper-parameters were fitted on (``None``: all);
    * ``optimizer_``: the optimiser whose hyper-parameters were kept (``None``: none ran);
      ``loo_errors_``: with ``optimizer="auto"`` the leave-one-out error of each candidate, else ``None``;
    * ``inducing_`` (``solver="inducing"`` only, else ``None``): the fitted
      :class:`~viewgp.inducing.InducingPosterior`; ``cholesky_`` is then ``None`` and ``alpha_`` is
      ``(M, D)`` on the inducing frames ``inducing_.poses``.
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
        fused: bool = True,
        gradient_precision: str = "auto",
        gradient_trace: str = "auto",
        trace_probes: int = 64,
        solver: str = "exact",
        max_inducing: int = 4096,
        inducing_tol: float = 1e-3,
        mean_dtype: Optional[torch.dtype] = None,
        optimizer: Optional[str] = "auto",
        steps: Optional[int] = None,
        lr: Optional[float] = None,
        subset="auto",
        seed: int = 0,
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
        if gradient_precision not in ("auto", "float32", "float64"):
            raise ValueError(f"gradient_precision must be 'auto', 'float32' or 'float64', got {gradient_precision!r}")
        if gradient_trace not in ("auto", "exact", "hutchinson"):
            raise ValueError(f"gradient_trace must be 'auto', 'exact' or 'hutchinson', got {gradient_trace!r}")
        if int(trace_probes) < 1:
            raise ValueError(f"trace_probes must be at least 1, got {trace_probes}")
        if solver not in ("exact", "inducing", "auto"):
            raise ValueError(f"solver must be 'exact', 'inducing' or 'auto', got {solver!r}")
        _check_fit_options(optimizer, steps, lr, subset, seed)
        # scikit-learn style: the kernel passed in is left untouched (fit() and .to() change the copy's
        # hyper-parameters, dtype and device); the fitted one is ``self.kernel``.
        self.kernel = copy.deepcopy(kernel)
        self.fused = fused
        self.gradient_precision = gradient_precision
        self.gradient_trace = gradient_trace
        self.trace_probes = int(trace_probes)
        self.solver = solver
        self.max_inducing = int(max_inducing)
        self.inducing_tol = float(inducing_tol)
        self.mean_dtype = mean_dtype
        self.mean_mode = mean
        self.learn_noise = learn_noise
        self.latent_geometry = latent_geometry
        self.jitter = jitter
        self.max_jitter_tries = max_jitter_tries
        # How fit() runs, stored unchanged (scikit-learn convention; fit() validates them again).
        self.optimizer = optimizer
        self.steps = steps
        self.lr = lr
        self.subset = subset
        self.seed = seed
        self.raw_noise = nn.Parameter(torch.zeros(()))
        self.noise_constraint = GreaterThan(1e-8)
        self.to(dtype=dtype, device=device)
        self.noise = noise
        self.history_: list[float] = []
        self.train_poses_: Optional[Tensor] = None
        self.mean_: Optional[Tensor] = None
        self.cholesky_: Optional[Tensor] = None
        self.alpha_: Optional[Tensor] = None
        self._residual_factor: Optional[Tensor] = None
        self.latent_shape_: Optional[tuple] = None
        self.subset_: Optional[Tensor] = None
        self.optimizer_: Optional[str] = None
        self.loo_errors_: Optional[dict] = None
        self.inducing_ = None

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
        return self.alpha_ is not None

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

    def _latents(self, latents, n: int) -> tuple[Tensor, tuple, bool]:
        """``(N, D)`` latents in the GP's dtype and device, the shape of one, and whether that is a copy
        (which :meth:`fit` may then change in place)."""
        given = torch.as_tensor(latents)
        z = given.to(dtype=self._dtype, device=self._device)
        if z.dim() < 2 or z.shape[0] != n:
            raise ValueError(f"latents: expected shape (N, D) or (N, *latent_shape) with N = {n}, got {tuple(z.shape)}")
        _check_finite(z, "latents")
        return z.reshape(n, -1), tuple(z.shape[1:]), z.data_ptr() != given.data_ptr()

    def kernel_diag(self, x: Tensor) -> Tensor:
        """Prior variances ``k(x_i, x_i)`` ``(N,)`` of validated poses ``x``."""
        return self.kernel(x, x, diag=True)

    def _residuals(self, z: Tensor, in_place: bool = False) -> tuple[Tensor, Tensor]:
        """Per-dimension mean ``(D,)`` (empirical for ``mean="constant"``) and residuals ``(N, D)``
        (``in_place``: ``z`` itself, changed; a whole frame of pixels per row is 1.6 GB per copy)."""
        mean = z.mean(0) if self.mean_mode == "constant" else torch.zeros_like(z[0])
        return mean, (z.sub_(mean) if in_place else z - mean)

    @staticmethod
    def _factor(r: Tensor) -> Tensor:
        """``C`` with ``C C^T = R R^T`` and min(N, D) columns: the likelihood then costs O(N^3) for any D."""
        if r.shape[1] <= r.shape[0]:
            return r
        return torch.linalg.qr(r.transpose(0, 1), mode="r")[1].transpose(0, 1)

    @property
    def residual_factor_(self) -> Optional[Tensor]:
        if self._residual_factor is None and self.cholesky_ is not None:
            # R = K_y alpha = L (L^T alpha): with a whole frame of pixels per row (D = 196,608) the QR of R
            # costs seconds and a copy of R, so a fit whose likelihood never needed it leaves it to here
            with torch.no_grad():
                r = self.cholesky_ @ (self.cholesky_.mT @ self._alpha())
            self._residual_factor = self._factor(r)
        return self._residual_factor

    @residual_factor_.setter
    def residual_factor_(self, value: Optional[Tensor]) -> None:
        self._residual_factor = value

    # ---------------------------------------------------------------- public API
    def fit(self, poses, latents, progress: bool = False,
            callback: Optional[Callable[[int, float], None]] = None) -> "LatentGP":
        """Type-II maximum likelihood of the hyper-parameters as configured (``optimizer``, ``steps``,
        ``lr``, ``subset``, ``seed``; see :class:`LatentGP`), then cache the solve on all frames for
        prediction. With ``optimizer=None`` (or ``steps=0``) only the solve, at the current
        hyper-parameters.

        Args:
            poses: ``(N, P)`` pose features, as a rule ``(N, 13)`` from
                :func:`viewgp.poses.pose_features` (rotation, translation, time; ``(N, 12)`` without
                times).
            latents: ``(N, D)`` or ``(N, *latent_shape)``; the shape is restored on output.
            progress: tqdm bar (a line per evaluation for L-BFGS); callback: called as
                ``callback(step, nll_per_value)`` after each step (each likelihood evaluation for L-BFGS).

        Returns ``self``, fitted (see the fitted state in :class:`LatentGP`).
        """
        return self._fit(poses, latents, optimizer=self.optimizer, steps=self.steps, lr=self.lr,
                         subset=self.subset, seed=self.seed, progress=progress, callback=callback)

    def _fit(self, poses, latents, *, optimizer, steps=None, lr=None, subset=None, seed=0, progress=False,
             callback=None) -> "LatentGP":
        """:meth:`fit` with the fit options given here rather than the constructor's (for
        ``optimizer="auto"``'s candidates and for :mod:`viewgp.bayes`, which fits a GP it did not
        configure without changing its configuration)."""
        _check_fit_options(optimizer, steps, lr, subset, seed)
        if steps is None:
            steps = default_fit_steps(len(poses))
        if optimizer == "auto":
            return self._fit_auto(poses, latents, steps, lr, progress, callback, subset, seed)
        optimize = optimizer is not None and steps > 0
        self.optimizer_, self.loo_errors_ = (optimizer if optimize else None), None
        x = self.as_poses(poses, new_data=True)
        z, shape, copied = self._latents(latents, x.shape[0])
        mean, r = self._residuals(z.detach(), in_place=copied)
        del z
        idx = self._subset_indices(x, subset, seed) if optimize else None
        xs, rs = (x, r) if idx is None else (x[idx], r[idx])
        cs = self._factor(rs)
        d = r.shape[1]
        self.history_ = []
        best = (math.inf, None)
        if optimize:
            params = [p for name, p in self.named_parameters() if name != "raw_noise" or self.learn_noise]
            run = self._adam if optimizer == "adam" else self._lbfgs
            self._step_cache = {}  # FastLikelihood keeps a step's operands and buffers here while fit() runs
            try:
                best = run(params, xs, cs, d, steps, lr, progress, callback)
            finally:
                self._step_cache = None  # the kept operands live for one fit only
        solved_as_fitted = idx is None and self._resolve_solver(x.shape[0]) == "exact"
        if not solved_as_fitted and best[1] is not None:
            # The solve below is not the likelihood that was optimised (it is on all frames, or by
            # inducing points): compare the last parameters with the best on the fitted frames now.
            try:
                with torch.no_grad():
                    final = float(self.neg_log_marginal_likelihood(xs, cs, d)) / (xs.shape[0] * d)
            except ValueError:
                final = math.inf
            if not (math.isfinite(final) and final <= best[0]):
                self.load_state_dict(best[1])
            best = (math.inf, None)
        c = cs if idx is None else None  # all frames' factor only when asked for (residual_factor_)
        if c is None and self._resolve_solver(x.shape[0]) == "inducing":
            c = self._factor(r)  # no exact factor to make it from later
        try:
            L = self._factorize(x, r, mean, c, shape)
            # compared below only with the best of a full-data optimisation (c is then its factor)
            final = math.inf if L is None or best[1] is None else self._nll_from_factor(L, c, d) / (x.shape[0] * d)
        except ValueError:  # NotPSDError or a non-finite kernel matrix at the last parameters
            if best[1] is None:
                raise
            final = math.inf
        if best[1] is not None and not (math.isfinite(final) and final <= best[0]):
            self.load_state_dict(best[1])
            self._factorize(x, r, mean, c, shape)
        self.subset_ = idx
        return self

    def _fit_auto(self, poses, latents, steps, lr, progress, callback, subset, seed) -> "LatentGP":
        """``optimizer="auto"``: see :class:`LatentGP`."""
        args = dict(steps=steps, lr=lr, progress=progress, callback=callback, subset=subset, seed=seed)
        n = self.as_poses(poses, new_data=True).shape[0]
        small = n <= AUTO_COMPARE_MAX_FRAMES and (subset is None or isinstance(subset, str))  # str: "auto"
        if not (steps > 0 and small):
            return self._fit(poses, latents, optimizer="lbfgs", **args)
        start = copy.deepcopy(self.state_dict())
        self._fit(poses, latents, optimizer="lbfgs", **args)
        fitted = {"lbfgs": (self.loo_error(), copy.deepcopy(self.state_dict()), self.history_)}
        self.load_state_dict(start)
        self._fit(poses, latents, optimizer="adam", **args)
        fitted["adam"] = (self.loo_error(), None, self.history_)
        errors = {k: v[0] for k, v in fitted.items()}
        if errors["lbfgs"] <= errors["adam"]:  # ties go to the converged optimum
            self.load_state_dict(fitted["lbfgs"][1])
            self._fit(poses, latents, optimizer=None)  # the solve at the kept hyper-parameters
            self.optimizer_, self.history_ = "lbfgs", fitted["lbfgs"][2]
        self.loo_errors_ = errors
        return self

    def _subset_indices(self, x: Tensor, subset, seed: int) -> Optional[Tensor]:
        from viewgp.subset import auto_subset_size, stratified_subset

        n = x.shape[0]
        if subset is None:
            return None
        if isinstance(subset, str):  # "auto" (checked by _check_fit_options)
            subset = auto_subset_size(n)
        if isinstance(subset, numbers.Real) and not isinstance(subset, bool):
            m = int(subset)  # at least 2 (checked by _check_fit_options)
            return None if m >= n else stratified_subset(x, m, self.correlation(x), seed=seed)
        idx = torch.as_tensor(subset, dtype=torch.long, device=x.device).reshape(-1)
        if idx.numel() < 2 or int(idx.min()) < 0 or int(idx.max()) >= n:
            raise ValueError(f"subset: expected at least 2 frame indices in [0, {n}), got {idx.numel()}")
        return idx

    def correlation(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """``rows(idx)`` -> ``(len(idx), N)`` prior correlations of frames ``x[idx]`` with all of ``x``
        (for :func:`viewgp.subset.kernel_cover`)."""
        sd = self.kernel_diag(x).detach().clamp_min(1e-300).sqrt()

        def rows(idx: Tensor) -> Tensor:
            with torch.no_grad():
                return self._K(x[idx], x) / (sd[idx, None] * sd[None, :])

        return rows

    def _evaluate(self, x: Tensor, c: Tensor, d: int, best: list) -> tuple[Tensor, float]:
        """Loss per latent value and its float; updates ``best = [value, state]``."""
        loss = self.neg_log_marginal_likelihood(x, c, d) / (x.shape[0] * d)
        value = float(loss.detach())
        if math.isfinite(value) and value < best[0]:
            best[:] = [value, {k: v.detach().clone() for k, v in self.state_dict().items()}]
        return loss, value

    def _adam(self, params, x, c, d, steps, lr, progress, callback) -> tuple[float, Optional[dict]]:
        opt = torch.optim.Adam(params, lr=0.05 if lr is None else lr)
        from tqdm.auto import tqdm

        best = [math.inf, None]
        bar = tqdm(range(steps), desc="fit GP", disable=not progress)
        for step in bar:
            opt.zero_grad()
            try:
                loss, value = self._evaluate(x, c, d, best)
            except ValueError as e:  # NotPSDError, or a kernel matrix with NaN/inf entries
                warnings.warn(f"LatentGP.fit: stopped at step {step}: {e}", RuntimeWarning, stacklevel=4)
                break
            if not math.isfinite(value):
                warnings.warn(f"LatentGP.fit: non-finite loss at step {step}; keeping the best parameters",
                              RuntimeWarning, stacklevel=4)
                break
            loss.backward()
            opt.step()
            self.history_.append(value)
            if callback is not None:
                callback(step, value)
            bar.set_postfix(nll=f"{value:.4f}")
        return best[0], best[1]

    def _lbfgs(self, params, x, c, d, steps, lr, progress, callback) -> tuple[float, Optional[dict]]:
        best = [math.inf, None]
        failures = []

        def closure() -> Tensor:
            opt.zero_grad()
            try:
                loss, value = self._evaluate(x, c, d, best)
            except ValueError as e:  # NotPSDError, or a kernel matrix with NaN/inf entries
                loss, value = None, math.nan
                failures.append(str(e))
            if not math.isfinite(value):
                if best[1] is None:
                    raise _Stop(failures[-1] if failures else "non-finite loss at the starting parameters")
                # A large finite value with zero gradient makes the line search backtrack (inf or NaN
                # would poison its cubic interpolation).
                return torch.tensor(1e6 * (1.0 + abs(best[0])), dtype=self._dtype)
            loss.backward()
            self.history_.append(value)
            if callback is not None:
                callback(len(self.history_) - 1, value)
            if progress:
                print(f"fit GP (L-BFGS) evaluation {len(self.history_)}: nll {value:.6f}", flush=True)
            return loss.detach()

        # After a failed evaluation the line search has shrunk its step, and L-BFGS may stop on the
        # tiny change that follows: start it afresh from the best point, at most twice.
        for attempt in range(3):
            seen = len(failures)
            opt = torch.optim.LBFGS(params, lr=1.0 if lr is None else lr, max_iter=steps, max_eval=2 * steps,
                                    tolerance_grad=1e-6, tolerance_change=self._lbfgs_tolerance(x.shape[0]), history_size=20,
                                    line_search_fn="strong_wolfe")
            try:
                opt.step(closure)
            except _Stop as e:
                warnings.warn(f"LatentGP.fit: L-BFGS stopped at the start: {e}", RuntimeWarning, stacklevel=4)
                break
            if len(failures) == seen or len(self.history_) >= 2 * steps:
                break
            self.load_state_dict(best[1])
        if failures:
            warnings.warn(f"LatentGP.fit: {len(failures)} L-BFGS evaluations were not positive definite or not "
                          "finite and were backtracked from", RuntimeWarning, stacklevel=4)
        return best[0], best[1]

    def _lbfgs_tolerance(self, n: int) -> float:
        """L-BFGS's ``tolerance_change`` on the loss (per latent value) and the step: 1e-9 with exact
        gradients; with the Hutchinson estimate the fixed probes' bias moves the optimum by more
        than such changes, so 1e-6 (measured at N = 1,600: 13 evaluations, held-out MSE 9.32010e-4;
        at 1e-9 26 evaluations, 9.32007e-4)."""
        return LBFGS_ESTIMATED_TOLERANCE if self._plan() is not None and self.trace_method(n) == "hutchinson" else 1e-9

    def _resolve_solver(self, n: int) -> str:
        if self.solver != "auto":
            return self.solver
        return "exact" if 3 * 8 * n * n <= 0.8 * likelihood.available_bytes(self._device) else "inducing"

    def _factorize(self, x: Tensor, r: Tensor, mean: Tensor, c: Tensor, shape: tuple) -> Optional[Tensor]:
        """Solve on all frames; returns the exact Cholesky factor (``None`` for the inducing solver)."""
        # the means (alpha_, mean_) in mean_dtype, everything else in the GP's dtype
        dtype = self.mean_dtype or r.dtype
        self.train_poses_, self.mean_, self.residual_factor_, self.latent_shape_ = x, mean.to(dtype), c, shape
        if self._resolve_solver(x.shape[0]) == "inducing":
            from viewgp.inducing import fit_inducing
            from viewgp.subset import kernel_cover

            index = kernel_cover(self.correlation(x), x.shape[0], self.max_inducing, tol=self.inducing_tol,
                                 device=x.device)
            self.inducing_, alpha = fit_inducing(self, x, r, index)
            self.alpha_, self.cholesky_ = alpha.to(dtype), None
            return None
        with torch.no_grad():
            plan = self._plan()
            L = self._gram_cholesky(x, plan, float(self.noise)) if plan is not None else self._cholesky(self._Ky(x))
            # a block of columns at a time into alpha: with a whole frame of pixels per row (D = 196,608
            # at 256 px, 1,000 keyframes) each (N, D) float64 copy is 1.6 GB
            alpha = torch.empty(r.shape, dtype=dtype, device=r.device)
            for s in range(0, r.shape[1], _SOLVE_COLUMNS):
                y = torch.linalg.solve_triangular(L, r[:, s : s + _SOLVE_COLUMNS], upper=False)
                alpha[:, s : s + _SOLVE_COLUMNS] = torch.linalg.solve_triangular(L.mT, y, upper=True, out=y)
        self.cholesky_, self.alpha_, self.inducing_ = L, alpha, None
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
        z, _, _ = self._latents(latents, x.shape[0])
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
        ``(N, M)``, so the posterior covariance of the latent function is ``K(xq, xq) - V^T V``
        (exact solver only; see :meth:`posterior_terms`)."""
        mean, V, W = self.posterior_terms(xq)
        if W is not None:
            raise RuntimeError("posterior(): the inducing solver's covariance is K - V^T V + W^T W; use posterior_terms")
        return mean, V

    def posterior_terms(self, xq: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """Flat, unprojected posterior mean ``(M, D)`` at validated poses ``xq`` and ``V``, ``W`` with
        posterior covariance ``K(xq, xq) - V^T V (+ W^T W)``: ``V = L^-1 K(X, xq)`` and ``W = None`` for
        the exact solver, the FITC terms of :mod:`viewgp.inducing` for the inducing one."""
        self._require_fit()
        if self.inducing_ is not None:
            from viewgp.inducing import inducing_posterior_terms

            return inducing_posterior_terms(self, self.inducing_, self.alpha_, self.mean_, xq)
        Kq = self._K(xq, self.train_poses_)
        # V^T = Kq L^-T: a right-sided solve reads Kq as it is laid out (no transposed copy).
        Vt = torch.linalg.solve_triangular(self.cholesky_.mT, Kq, upper=True, left=False)
        return self.mean_ + Kq.to(self.alpha_.dtype) @ self.alpha_, Vt.mT, None

    def _covariance(self, xq: Tensor, V: Tensor, W: Optional[Tensor]) -> Tensor:
        cov = self._K(xq, xq) - V.T @ V
        return cov if W is None else cov + W.T @ W

    def predict(self, poses, full_cov: bool = False, include_noise: bool = False) -> tuple[Tensor, Tensor]:
        """Posterior at ``poses`` ``(M, P)``.

        Returns:
            mean ``(M, *latent_shape)`` and the posterior variance ``(M,)`` of the latent function,
            shared by every dimension (``(M, M)`` covariance with ``full_cov=True``); ``include_noise``
            adds ``s_n^2``. Without ``full_cov`` the queries are processed 2,048 at a time, so memory
            stays O(N x 2048) beyond the fitted factor.
        """
        xq = self.as_poses(poses)
        with torch.no_grad():
            if full_cov:
                mean, V, W = self.posterior_terms(xq)
                out2 = self._covariance(xq, V, W)
                if include_noise:
                    out2.diagonal().add_(self.noise)
            else:
                means, variances = [], []
                for s in range(0, xq.shape[0], _PREDICT_BLOCK):
                    xb = xq[s : s + _PREDICT_BLOCK]
                    m, V, W = self.posterior_terms(xb)
                    var = self.kernel_diag(xb) - V.square().sum(0)
                    if W is not None:
                        var = var + W.square().sum(0)
                    means.append(m)
                    variances.append(var.clamp_min(0))
                mean = torch.cat(means) if len(means) != 1 else means[0]
                out2 = torch.cat(variances) if len(variances) != 1 else variances[0]
                if include_noise:
                    out2 = out2 + self.noise
            mean = self.project(mean.reshape((-1,) + self.latent_shape_))
        return mean, out2.detach()

    def _alpha(self, columns: slice = slice(None)) -> Tensor:
        """``alpha_[:, columns]`` in the GP's ``dtype`` (it may be stored in ``mean_dtype``)."""
        return self.alpha_[:, columns].to(self._dtype)

    def _loo_precision(self) -> Tensor:
        """``[K_y^-1]_ii`` ``(N,)`` of the fitted frames, from the one Cholesky factor (no refit)."""
        self._require_fit()
        return torch.cholesky_inverse(self.cholesky_).diagonal()

    def loo(self) -> tuple[Tensor, Tensor]:
        """Closed-form leave-one-out predictions at the fitted frames (Rasmussen & Williams eq. 5.12):
        frame ``i`` predicted from all the others has mean ``y_i - [K_y^-1 r]_i / [K_y^-1]_ii`` ``(N, D)``
        (flat, unprojected; the prior mean ``mean_`` held fixed) and the predictive variance of an
        *observation* ``1 / [K_y^-1]_ii`` ``(N,)``;
        from the one Cholesky factor, no refit."""
        with torch.no_grad():
            inv_diag = self._loo_precision()
            alpha = self._alpha()
            r = self._Ky(self.train_poses_) @ alpha  # Z - mean
            return self.mean_.to(r.dtype) + r - alpha / inv_diag[:, None], 1.0 / inv_diag

    def loo_error(self) -> float:
        """Mean squared leave-one-out error of the fitted frames over frames and dimensions,
        ``mean((alpha / [K_y^-1]_ii)^2)`` (closed form, as :meth:`loo`)."""
        with torch.no_grad():
            return float((self._alpha() / self._loo_precision()[:, None]).pow(2).mean())

    def loo_scale(self, per_dimension: bool = False):
        """The variance scale ``c^2`` that calibrates the leave-one-out predictions of the fitted frames:
        the mean over frames and dimensions of ``(y - mu_loo)^2 / var_loo`` ``= alpha^2 / [K_y^-1]_ii``
        (about 1 for a well-specified model). Multiply predictive variances by it; it is chosen from the
        observed frames alone. ``per_dimension``: the mean over frames only, ``(D,)`` tensor ``c_d^2``."""
        with torch.no_grad():
            precision = self._loo_precision()[:, None]
            d = self.alpha_.shape[1]
            out = torch.empty(d, dtype=precision.dtype, device=precision.device)
            for s in range(0, d, _SOLVE_COLUMNS):  # a block of columns at a time: no (N, D) temporaries
                out[s : s + _SOLVE_COLUMNS] = (self._alpha(slice(s, s + _SOLVE_COLUMNS)).square() / precision).mean(0)
            return out if per_dimension else float(out.mean())

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
            mean, V, W = self.posterior_terms(xq)
            cov = self._covariance(xq, V, W)
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


class _Stop(Exception):
    """L-BFGS cannot start: the loss at the starting parameters is not finite."""
