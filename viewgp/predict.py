"""Latent predictors behind one signature: GP methods by kernel name and the usual baselines.

Everything here works on plain arrays of any width D (latent codes, or flattened pixels for the
pixel-space GP baseline): no image code. Methods (``method=``) share one code path so they are
compared on equal terms:

* GP kernels by name (see :func:`viewgp.kernels.make_kernel`): ``view`` (orientation x translation,
  the default), ``orientation``, ``time`` (a temporal kernel only), ``euler``, ``quaternion`` ...;
  hyper-parameters by type-II maximum likelihood, or integrated out by NUTS (``bayes=``).
* ``linear``: interpolation between the nearest observed frames in time (SLERP on the sphere for
  sphere latents), the usual baseline.
* ``linear-pose``: interpolation between the two observed frames nearest in pose, by inverse distance
  (SLERP on the sphere): the linear baseline for unordered views.
* ``nearest``: the latent of the nearest observed frame in pose space (novel-view baseline).
* ``independent``: per-frame encodings as they are (only defined where frames were observed).

:func:`build_gp` is the one place where a kernel, a :class:`~viewgp.latent_gp.LatentGP` and its
data-driven starting hyper-parameters are put together.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from viewgp.calibration import shrunk_variance
from viewgp.hyperparameters import init_hyperparameters
from viewgp.latent_gp import LatentGP, default_fit_steps
from viewgp.sphere import project_to_sphere, slerp

__all__ = [
    "BASELINES",
    "Prediction",
    "build_gp",
    "set_hyperparameters",
    "scale_dof",
    "default_fit_steps",
    "gp_predict",
    "gp_predict_nuts",
    "linear_interpolation",
    "time_neighbours",
    "pose_neighbours",
    "nearest_view",
    "pose_interpolation",
    "nearest_in_time",
    "predict_latents",
    "predict_residuals",
    "ResidualGP",
    "PIXEL_FIT_FRAMES",
]

BASELINES = ("linear", "linear-pose", "nearest", "independent")
#: Above this many observed frames the leave-one-out variance scale is not computed (it costs an extra
#: O(N^3) inverse diagonal; at 4,000 frames about the time of the fit itself).
LOO_MAX_FRAMES = 4000


@dataclass
class Prediction:
    """Posterior at the query frames. ``var`` is ``None`` for methods without uncertainty.

    ``var`` is the posterior variance of the latent function (shared by every dimension);
    ``noise`` the fitted observation-noise variance ``s_n^2``; ``loo_scale`` the closed-form
    leave-one-out variance scale ``c^2`` (:meth:`LatentGP.loo_scale`). :attr:`predictive_var` is the
    calibrated variance of an observation, ``c^2 (var + s_n^2)``; ``samples`` (with ``calibrated``, the
    default) are draws of observations from it. ``dof``: the scale was estimated from that many frames,
    so the predictive distribution is Student-t with ``dof`` degrees of freedom and scale
    ``sqrt(predictive_var)`` (:mod:`viewgp.calibration`; ``None``: Gaussian)."""

    method: str
    mean: np.ndarray  # (M, *latent_shape)
    var: Optional[np.ndarray] = None  # (M,)
    samples: Optional[np.ndarray] = None  # (S, M, *latent_shape)
    hyperparameters: dict = field(default_factory=dict)
    fit_seconds: float = 0.0
    noise: Optional[float] = None
    model: Optional[LatentGP] = field(default=None, repr=False)  # the fitted GP (GP methods)
    loo_scale: float = 1.0
    dof: Optional[float] = None

    @property
    def predictive_var(self) -> Optional[np.ndarray]:
        """``(M,)`` calibrated variance of an observation at each query (``None`` without uncertainty)."""
        if self.var is None:
            return None
        return self.loo_scale * (self.var + (self.noise or 0.0))

    def at(self, poses_query: Tensor) -> "Prediction":
        """The fitted GP's posterior at other query poses ``(M', P)`` (mean and variance; no samples):
        what a long run's chunks ask of a model fitted once (GP methods only)."""
        from dataclasses import replace

        if self.model is None:
            raise ValueError(f"{self.method}: no fitted GP to predict at new poses")
        mean, var = self.model.predict(poses_query)
        return replace(self, mean=mean.cpu().numpy(), var=var.cpu().numpy(), samples=None)

    def rows(self, rows: slice) -> "Prediction":
        """The prediction at the query frames ``rows`` only (mean, variance and samples sliced; the
        fitted model and its hyper-parameters shared)."""
        from dataclasses import replace

        return replace(self, mean=self.mean[rows], var=None if self.var is None else self.var[rows],
                       samples=None if self.samples is None else self.samples[:, rows])


def scale_dof(n_obs: int) -> Optional[float]:
    """Degrees of freedom of the predictive distribution when the variance is scaled by the
    leave-one-out scale of ``n_obs`` observed frames: ``n_obs`` (Student-t; see
    :mod:`viewgp.calibration`), or ``None`` where no such scale is computed (one frame, or more than
    ``LOO_MAX_FRAMES``: the ML scale, Gaussian)."""
    return float(n_obs) if 1 < n_obs <= LOO_MAX_FRAMES else None


def set_hyperparameters(gp: LatentGP, fixed: dict) -> None:
    """Set ``outputscale``, ``noise`` and lengthscales given as ``"<submodule>.lengthscale"`` (the
    sub-module path inside the ``ScaleKernel``, e.g. ``"orientation.lengthscale"``)."""
    mods = dict(gp.kernel.base_kernel.named_modules())
    with torch.no_grad():
        for key, value in fixed.items():
            if key == "outputscale":
                gp.kernel.outputscale = value
            elif key == "noise":
                gp.noise = value
            else:
                owner, _, attr = key.rpartition(".")
                if owner not in mods or not hasattr(mods[owner], attr):
                    raise ValueError(f"unknown hyper-parameter {key!r}; known sub-kernels: {sorted(k for k in mods if k)}")
                setattr(mods[owner], attr, value)


def build_gp(
    method: str,
    poses_obs: Tensor,
    poses_query: Tensor,
    z_flat: Tensor,
    geometry: str = "euclidean",
    fixed: Optional[dict] = None,
    device: str | torch.device | None = None,
    **gp_options: Any,
) -> LatentGP:
    """A :class:`LatentGP` with kernel ``ScaleKernel(make_kernel(method))`` and data-driven starting
    hyper-parameters (see :func:`viewgp.hyperparameters.init_hyperparameters`; ``fixed`` overrides any).

    Args:
        poses_obs ``(N, P)`` and poses_query ``(M, P)``: pose features (the lengthscales' median
        heuristic uses both: query poses are known even where frames are missing);
        z_flat ``(N, D)``: the observed values (their spread sets the output scale).
        gp_options: further :class:`LatentGP` arguments (``optimizer=``, ``steps=``, ``subset=``,
            ``solver=``, ``max_inducing=``, ``gradient_precision=``, ...).
    """
    from gpytorch.kernels import ScaleKernel

    from viewgp.kernels import make_kernel

    gp = LatentGP(kernel=ScaleKernel(make_kernel(method)), latent_geometry=geometry, device=device, **gp_options)
    init_hyperparameters(gp, poses_obs.cpu(), poses_query.cpu(), z_flat.cpu())
    if fixed:
        set_hyperparameters(gp, fixed)
    return gp


def _flat(z_obs) -> tuple[np.ndarray, Tensor]:
    z = np.asarray(z_obs)  # float32 stays (the GP makes its own float64 copy: one, not two)
    if z.dtype not in (np.float32, np.float64):
        z = z.astype(np.float64)
    return z, torch.from_numpy(z.reshape(z.shape[0], -1))


def gp_predict(
    method: str,
    poses_obs: Tensor,
    z_obs: np.ndarray,
    poses_query: Tensor,
    geometry: str = "euclidean",
    n_samples: int = 0,
    steps: Optional[int] = None,
    fixed: Optional[dict] = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    calibrated: bool = True,
    optimizer: str = "auto",
    subset="auto",
    solver: str = "auto",
    predict: bool = True,
    **gp_options: Any,
) -> Prediction:
    """Fit a GP with kernel ``method`` on the observed frames and predict at ``poses_query``.

    Args:
        poses_obs ``(N, 13)``, z_obs ``(N, *latent_shape)``, poses_query ``(M, 13)``.
        steps: type-II ML steps, or the most L-BFGS iterations (default :func:`default_fit_steps`);
            with ``fixed`` hyper-parameters nothing is optimised.
        n_samples: joint posterior samples over the query frames (seeded by ``seed``): of observations,
            scaled by the leave-one-out scale, with ``calibrated``; of the latent function otherwise.
        optimizer, subset: of :class:`LatentGP` (default: ``"auto"``, L-BFGS, compared with the Adam
            schedule by leave-one-out error up to 512 frames; on all frames up to 1,500, on a
            stratified subset beyond; the solve always uses all frames).
        solver: ``"exact"``, ``"inducing"`` or ``"auto"`` (exact while it fits in memory), and
            ``gp_options`` further :class:`LatentGP` arguments (see :func:`build_gp`).
        predict: ``False``: fit only (``poses_query`` give the start values); the prediction has no
            rows, and :meth:`Prediction.at` predicts at any chunk of poses later.
    """
    z, flat = _flat(z_obs)
    gp = build_gp(method, poses_obs, poses_query, flat, geometry, fixed, device, solver=solver,
                  optimizer=None if fixed else optimizer, steps=steps, subset=subset, seed=seed, **gp_options)
    t0 = time.perf_counter()
    gp.fit(poses_obs, torch.from_numpy(z), progress=progress)
    fit_s = time.perf_counter() - t0
    if predict:
        mean, var = gp.predict(poses_query)
    else:  # no rows: Prediction.at predicts later
        mean, var = torch.zeros((0,) + tuple(z.shape[1:]), dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    # The closed-form LOO scale needs diag(K_y^-1): one more O(N^3) pass, affordable while the exact
    # factor exists and N is moderate; longer runs (and the inducing solver) keep the ML scale.
    dof = scale_dof(len(z)) if gp.cholesky_ is not None else None
    c2 = gp.loo_scale() if dof is not None else 1.0
    samples = None
    if n_samples > 0 and predict:
        g = torch.Generator().manual_seed(seed)
        samples = gp.sample(poses_query, n_samples, generator=g, scale=math.sqrt(c2) if calibrated else 1.0,
                            include_noise=calibrated).cpu().numpy()
    return Prediction(method, mean.cpu().numpy(), var.cpu().numpy(), samples, gp.hyperparameters(), fit_s,
                      float(gp.noise.detach()), gp, c2, dof)


def gp_predict_nuts(
    method: str,
    poses_obs: Tensor,
    z_obs: np.ndarray,
    poses_query: Tensor,
    geometry: str = "euclidean",
    n_samples: int = 0,
    steps: Optional[int] = None,
    seed: int = 0,
    num_samples: int = 200,
    warmup_steps: int = 200,
    num_chains: int = 2,
    max_predict_samples: int = 50,
    progress: bool = False,
    **_unused: Any,
) -> Prediction:
    """:func:`gp_predict` with hyper-parameters integrated out by NUTS (:mod:`viewgp.bayes`), the
    data-driven values of :func:`build_gp` serving as prior medians.

    The prediction is the mixture over hyper-parameter samples; ``n_samples`` latent samples are drawn
    from each frame's marginal (mean, variance), which is all the per-pixel std maps need.
    """
    from viewgp.bayes import nuts_latent_gp

    z, flat = _flat(z_obs)
    t0 = time.perf_counter()
    gp = build_gp(method, poses_obs, poses_query, flat, geometry)
    ml_steps = default_fit_steps(len(z)) if steps is None else steps
    res = nuts_latent_gp(gp, poses_obs, torch.from_numpy(z), num_samples=num_samples, warmup_steps=warmup_steps,
                         num_chains=num_chains, seed=seed, ml_steps=ml_steps, progress=progress)
    mean_t, var_t = res.predict(poses_query, max_samples=max_predict_samples)
    mean, var = mean_t.numpy(), var_t.numpy()
    samples = None
    if n_samples > 0:
        rng = np.random.default_rng(seed)
        sd = np.sqrt(var).reshape((1, -1) + (1,) * (mean.ndim - 1))
        samples = mean[None] + sd * rng.standard_normal((n_samples,) + mean.shape)
        if geometry == "sphere":
            samples = project_to_sphere(torch.from_numpy(samples)).numpy()
    return Prediction(method, mean, var, samples, {"bayes": res.summary()}, time.perf_counter() - t0,
                      float(gp.noise.detach()), gp)


def time_neighbours(times_obs: np.ndarray, times_query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every query time the two observed frames around it and their linear weights.

    Returns ``(index (M, 2), weight (M, 2))``: indices into ``times_obs`` (any order), weights summing
    to 1; outside the observed range the end frame gets all the weight.
    """
    times_obs = np.asarray(times_obs, np.float64)
    order = np.argsort(times_obs, kind="stable")
    t = times_obs[order]
    tq = np.clip(np.asarray(times_query, np.float64), t[0], t[-1])
    if len(t) == 1:
        zeros = np.zeros(len(tq), int)
        return np.stack([order[zeros]] * 2, 1), np.stack([np.ones(len(tq)), np.zeros(len(tq))], 1)
    hi = np.clip(np.searchsorted(t, tq, side="right"), 1, len(t) - 1)
    lo = hi - 1
    u = np.clip((tq - t[lo]) / np.maximum(t[hi] - t[lo], 1e-300), 0.0, 1.0)
    return np.stack([order[lo], order[hi]], 1), np.stack([1 - u, u], 1)


def pose_neighbours(poses_obs: Tensor, poses_query: Tensor, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` observed frames nearest in pose (chordal rotation + translation distance) to every
    query and inverse-distance weights summing to 1 (an exact match takes all the weight).
    Returns ``(index (M, k), weight (M, k))``."""
    d = torch.cdist(poses_query[:, :12], poses_obs[:, :12]).cpu().numpy()
    k = min(int(k), d.shape[1])
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    dist = np.take_along_axis(d, idx, 1)
    w = 1.0 / np.maximum(dist, 1e-12)
    exact = dist <= 1e-12
    w = np.where(exact.any(1, keepdims=True), exact.astype(np.float64), w)
    return idx, w / w.sum(1, keepdims=True)


def linear_interpolation(
    times_obs: np.ndarray, z_obs: np.ndarray, times_query: np.ndarray, geometry: str = "euclidean"
) -> np.ndarray:
    """Latents at ``times_query`` interpolated between the observed frames around each query time
    (:func:`time_neighbours`).

    Linear in R^D, SLERP for ``geometry='sphere'``; the end latents are held outside the observed range.
    Returns ``(M, *latent_shape)`` in the dtype of ``z_obs``.
    """
    z = np.asarray(z_obs)
    idx, w = time_neighbours(times_obs, times_query)
    lo, hi, u = idx[:, 0], idx[:, 1], w[:, 1]
    if geometry == "sphere":
        a, b = torch.from_numpy(z[lo]).double(), torch.from_numpy(z[hi]).double()  # float64: the one SLERP, accurate
        u_t = torch.from_numpy(u).reshape((-1,) + (1,) * (z.ndim - 2))
        return slerp(a, b, u_t).numpy().astype(z.dtype)
    u = u.reshape((-1,) + (1,) * (z.ndim - 1))
    return (1 - u) * z[lo] + u * z[hi]


def pose_interpolation(poses_obs: Tensor, z_obs: np.ndarray, poses_query: Tensor, geometry: str = "euclidean") -> np.ndarray:
    """Latents interpolated between the two observed frames nearest in pose to each query
    (:func:`pose_neighbours` weights; SLERP for ``geometry='sphere'``), ``(M, *latent_shape)``."""
    z = np.asarray(z_obs)
    idx, w = pose_neighbours(poses_obs, poses_query, k=2)
    if idx.shape[1] < 2:
        return z[idx[:, 0]]
    u = w[:, 1]
    if geometry == "sphere":
        a, b = torch.from_numpy(z[idx[:, 0]]).double(), torch.from_numpy(z[idx[:, 1]]).double()
        return slerp(a, b, torch.from_numpy(u).reshape((-1,) + (1,) * (z.ndim - 2))).numpy().astype(z.dtype)
    u = u.reshape((-1,) + (1,) * (z.ndim - 1))
    return (1 - u) * z[idx[:, 0]] + u * z[idx[:, 1]]


def nearest_view(poses_obs: Tensor, z_obs: np.ndarray, poses_query: Tensor) -> np.ndarray:
    """Latent of the observed frame nearest in pose (chordal rotation distance + translation distance)."""
    d = torch.cdist(poses_query[:, :12], poses_obs[:, :12])
    return np.asarray(z_obs)[d.argmin(dim=1).cpu().numpy()]


def nearest_in_time(times_obs: np.ndarray, z_obs: np.ndarray, times_query: np.ndarray) -> np.ndarray:
    """Value of the observed frame nearest in time (ties: the earlier frame)."""
    t = np.asarray(times_obs, np.float64)
    d = np.abs(np.asarray(times_query, np.float64)[:, None] - t[None, :])
    return np.asarray(z_obs)[d.argmin(axis=1)]


def predict_residuals(
    method: str,
    poses_obs: Tensor,
    residuals: Tensor,
    poses_query: Tensor,
    steps: Optional[int] = None,
    relative_noise: Optional[float] = None,
    chunk: int = 32,
    device: str | torch.device | None = None,
    consume: Optional[Callable[[int, int, np.ndarray, np.ndarray], None]] = None,
) -> tuple[Optional[np.ndarray], Optional[np.ndarray], dict]:
    """Interpolate per-frame residuals ``(N, D)`` (e.g. keyframe pixels minus their decoded
    prediction) to ``poses_query`` ``(M, P)`` with a GP of kernel ``method``.

    Residual detail is far rougher than the latent trajectory, so the GP's hyper-parameters are fitted
    to the residuals themselves (type-II ML, :func:`build_gp`): the latent GP's long lengthscales and
    near-zero noise make the keyframes nearly collinear, and interpolating residuals with them rings
    (measured on the demo run: held-out MSE 0.0223 vs 0.0153). The mean is the posterior mean at the
    fitted noise: noise-free keyframes give a tiny fitted noise and come back almost exactly (demo run:
    keyframe MSE 5e-5, 43 dB), noisy ones are smoothed. ``relative_noise`` (times the output scale)
    instead forces the noise down for the mean, so every observed residual is reproduced exactly.

    The variance is that of an observation (function + noise) scaled per dimension by the closed-form
    leave-one-out scale ``c_d^2 = mean_i alpha_id^2 / [K_y^-1]_ii`` (:meth:`LatentGP.loo_scale`, per
    dimension, shrunk towards their mean by :func:`viewgp.calibration.shrunk_variance`): large where
    residuals are large, and right on the keyframes left out one at a time.
    Queries are processed ``chunk`` at a time, so D can be a whole high-resolution frame.

    Returns:
        mean ``(M, D)`` and variance ``(M, D)`` (float32 numpy arrays) and the fitted hyper-parameters;
        with ``consume`` (not with ``relative_noise``), each chunk's ``consume(s, e, mean, var)``
        instead of the two arrays (``None``), so neither ``(M, D)`` array is ever held: at 256 px
        they are 0.8 GB each per 1,000 query frames.
    """
    if consume is not None and relative_noise is not None:
        raise ValueError("predict_residuals: consume takes the mean and variance of one fit; not with relative_noise")
    r = torch.as_tensor(residuals, dtype=torch.float64)
    r = r.reshape(r.shape[0], -1)
    model = ResidualGP.fit(method, poses_obs, r, poses_query, steps, device)
    m, d = poses_query.shape[0], r.shape[1]
    stored = None
    if consume is None:
        stored = (np.empty((m, d), np.float32), np.empty((m, d), np.float32))

        def consume(s: int, e: int, mean: np.ndarray, var: np.ndarray) -> None:
            stored[0][s:e], stored[1][s:e] = mean, var

    if relative_noise is None:  # mean and variance of the same fit: one prediction per chunk
        model.predict(poses_query, consume, chunk)
        return (*(stored or (None, None)), model.hyperparameters)
    mean, var = stored
    for s in range(0, m, chunk):
        _, v = model.gp.predict(poses_query[s : s + chunk])
        var[s : s + chunk] = model.observation_var(v)
    gp = model.gp
    gp.noise = relative_noise * float(gp.kernel.outputscale.detach())
    gp.optimizer = None  # the solve at the lowered noise, nothing optimised
    gp.fit(poses_obs, r)
    for s in range(0, m, chunk):
        mu, _ = gp.predict(poses_query[s : s + chunk])
        mean[s : s + chunk] = mu.cpu().numpy()
    return mean, var, model.hyperparameters


#: Hyper-parameters of GPs on whole frames of pixels (the residual detail, the px-gp baseline) are fitted
#: on at most this many observed frames, stratified in time and pose (the solve uses them all): with
#: D = 196,608 values a frame at 256 px, 150 Adam steps on 1,000 keyframes took 37 s on 2 cores, on
#: 256 of them a tenth of that.
PIXEL_FIT_FRAMES = 256


def pixel_fit_subset(n_obs: int) -> Optional[int]:
    """The ``subset`` of a pixel GP's fit for ``n_obs`` observed frames: all (``None``) up to
    :data:`PIXEL_FIT_FRAMES`, else that many."""
    return None if n_obs <= PIXEL_FIT_FRAMES else PIXEL_FIT_FRAMES


@dataclass
class ResidualGP:
    """The residual GP of :func:`predict_residuals`, fitted once on the keyframes' residuals and then
    asked for its mean and calibrated per-dimension variance at any chunk of query poses (a long run's
    chunks share one fit). ``scale`` ``(D,)``: the shrunk per-dimension leave-one-out scale."""

    gp: LatentGP
    noise: float
    scale: Tensor
    hyperparameters: dict

    @classmethod
    def fit(cls, method: str, poses_obs: Tensor, residuals, poses_query: Tensor, steps: Optional[int] = None,
            device: str | torch.device | None = None) -> "ResidualGP":
        """Fit to residuals ``(N, D)`` at ``poses_obs`` ``(N, P)``; ``poses_query`` ``(M, P)`` (all the
        queries there will be) enter only the data-driven start values (:func:`build_gp`)."""
        r = torch.as_tensor(residuals)  # float32 or float64; the GP makes its own float64 copy
        r = r.reshape(r.shape[0], -1)
        # Adam, the schedule its tables were measured with (on all frames of such runs); the means in
        # float32: a whole frame of pixels per keyframe (values in [-1, 1], rounded to 1/255 on output)
        gp = build_gp(method, poses_obs, poses_query, r, device=device, optimizer="adam", steps=steps,
                      subset=pixel_fit_subset(r.shape[0]), mean_dtype=torch.float32)
        gp.fit(poses_obs, r)
        c2 = gp.loo_scale(per_dimension=True)  # (D,) per-dimension LOO scale c_d^2
        scale = torch.from_numpy(shrunk_variance(c2.cpu().numpy(), r.shape[0])).to(c2)
        return cls(gp, float(gp.noise.detach()), scale, gp.hyperparameters())

    def observation_var(self, v: Tensor, channels: int = 1) -> np.ndarray:
        """``(m, D / channels)`` calibrated variance of an observation from the latent function's ``(m,)``,
        averaged over each run of ``channels`` consecutive values (e.g. 3: per pixel of RGB frames)."""
        scale = self.scale if channels == 1 else self.scale.reshape(-1, channels).mean(1)
        return ((v[:, None] + self.noise) * scale[None, :]).cpu().numpy()

    def predict(self, poses_query: Tensor, consume: Callable[[int, int, np.ndarray, np.ndarray], None],
                chunk: int = 32, channels: int = 1, block: int = 256) -> None:
        """``consume(s, e, mean, var)`` (float32 ``(e - s, D)`` and ``(e - s, D / channels)``, see
        :meth:`observation_var`) for queries ``s:e``, ``chunk`` at a time; the means are computed
        ``block`` queries at a time (each product reads all of ``alpha_``: 0.8 GB at 1,000 keyframes
        of 256 px)."""
        m = poses_query.shape[0]
        for b in range(0, m, block):
            mu, v = self.gp.predict(poses_query[b : b + block])
            mu = mu.cpu().numpy().astype(np.float32, copy=False)
            var = self.observation_var(v, channels).astype(np.float32, copy=False)
            for s in range(0, len(mu), chunk):
                consume(b + s, b + min(s + chunk, len(mu)), mu[s : s + chunk], var[s : s + chunk])


def predict_latents(
    method: str,
    poses_obs: Tensor,
    times_obs: np.ndarray,
    z_obs: np.ndarray,
    poses_query: Tensor,
    times_query: np.ndarray,
    geometry: str = "euclidean",
    bayes: Optional[dict] = None,
    **gp_kwargs: Any,
) -> Prediction:
    """One entry point for GP kernels and baselines (see the module docstring).

    ``gp_kwargs`` go to :func:`gp_predict` (or, with ``bayes`` NUTS settings, to :func:`gp_predict_nuts`)."""
    t0 = time.perf_counter()
    if method == "linear":
        return Prediction(method, linear_interpolation(times_obs, z_obs, times_query, geometry),
                          fit_seconds=time.perf_counter() - t0)
    if method == "nearest":
        return Prediction(method, nearest_view(poses_obs, z_obs, poses_query), fit_seconds=time.perf_counter() - t0)
    if method == "linear-pose":
        return Prediction(method, pose_interpolation(poses_obs, z_obs, poses_query, geometry),
                          fit_seconds=time.perf_counter() - t0)
    if method == "independent":
        if len(times_obs) != len(times_query) or not np.allclose(times_obs, times_query):
            raise ValueError("method 'independent' is only defined where every query frame was encoded")
        return Prediction(method, np.asarray(z_obs))
    if bayes is not None:
        return gp_predict_nuts(method, poses_obs, z_obs, poses_query, geometry=geometry, **gp_kwargs, **bayes)
    return gp_predict(method, poses_obs, z_obs, poses_query, geometry=geometry, **gp_kwargs)
