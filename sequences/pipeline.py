"""The main job: encode a camera run -> fit a latent GP over poses -> predict -> decode.

A :class:`~sequences.run.CameraRun` is encoded frame by frame into the latent space of a
:class:`generative.backbone.Backbone`; a :class:`viewgp.latent_gp.LatentGP` whose kernel knows camera
geometry is fitted to the latents of the *observed* frames and predicts a latent (mean, variance and
joint samples) at every requested pose; the backbone decodes the posterior mean into frames and
posterior samples into per-pixel standard-deviation maps.

Methods (``method=``) share one code path so they are compared on equal terms:

* GP kernels by name (see :func:`viewgp.kernels.make_kernel`): ``view`` (orientation x translation,
  the default), ``orientation``, ``time`` (a temporal kernel only), ``euler``, ``quaternion`` ...
* ``linear``: interpolation in latent space between the nearest observed frames in time (SLERP on
  the sphere for sphere latents), the usual baseline.
* ``nearest``: the latent of the nearest observed frame in pose space (novel-view baseline).
* ``independent``: per-frame encodings as they are (only defined where frames were observed).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from viewgp.hyperparameters import init_hyperparameters, median_distance, set_median_lengthscales

BASELINES = ("linear", "nearest", "independent")


# ----------------------------------------------------------------------------------------- encoding
def _frames_to_model(frames: np.ndarray, resolution: int) -> Tensor:
    """uint8 ``(B, H, W, 3)`` frames -> ``(B, 3, r, r)`` float in [-1, 1] (centre crop + area resize)."""
    from generative.backbone import to_model_images
    from generative.data import square_resize

    return to_model_images(np.stack([square_resize(np.asarray(f), resolution) for f in frames]))


def _fingerprint(backbone, frames) -> str:
    """Key of an encoding cache entry: the backbone's weights and the frames' pixels."""
    h = hashlib.sha1()
    h.update(str(getattr(backbone, "kind", type(backbone).__name__)).encode())
    for name, t in sorted(backbone.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes()[:4096])
        h.update(str(tuple(t.shape)).encode())
    n = len(frames)
    h.update(str((n,) + tuple(frames.shape[1:])).encode())
    for i in range(n):
        h.update(np.ascontiguousarray(frames[i]).tobytes())
    return h.hexdigest()[:16]


def encode_frames(
    backbone,
    frames,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = True,
    cache_dir: Optional[str] = None,
) -> np.ndarray:
    """Encode frames into latents ``(N, *latent_shape)`` float32.

    ``frames`` is a uint8 ``(N, H, W, 3)`` array or a lazy frame source. With ``cache_dir``, the result
    is stored under a key made from the backbone weights and the pixels, so a second call is free.
    """
    if not getattr(backbone, "has_encoder", False):
        raise ValueError(
            f"backbone of kind {getattr(backbone, 'kind', '?')!r} has no encoder; use optimization-based inversion"
        )
    cache_path = None
    if cache_dir is not None:
        key = _fingerprint(backbone, frames)
        cache_path = os.path.join(cache_dir, f"latents-{key}.npy")
        if os.path.exists(cache_path):
            return np.load(cache_path)
    from tqdm.auto import tqdm

    n = len(frames)
    out = []
    with torch.no_grad():
        for s in tqdm(range(0, n, batch_size), desc="encode", unit="batch", disable=not progress):
            batch = np.asarray(frames[s : s + batch_size])
            x = _frames_to_model(batch, backbone.resolution).to(device)
            out.append(backbone.encode(x).float().cpu().numpy())
    z = np.concatenate(out, 0) if out else np.zeros((0,) + tuple(backbone.latent_shape), np.float32)
    if cache_path is not None:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = cache_path + ".tmp.npy"
        np.save(tmp, z)
        os.replace(tmp, cache_path)
    return z


def decode_latents(
    backbone, z, batch_size: int = 32, device: str | torch.device = "cpu", progress: bool = False
) -> np.ndarray:
    """Decode latents ``(N, *latent_shape)`` into uint8 frames ``(N, r, r, 3)``."""
    from tqdm.auto import tqdm

    from generative.backbone import to_uint8

    z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
    out = []
    with torch.no_grad():
        for s in tqdm(range(0, z.shape[0], batch_size), desc="decode", unit="batch", disable=not progress):
            out.append(to_uint8(backbone.decode(z[s : s + batch_size].to(device))))
    return np.concatenate(out, 0)


def pixel_std_maps(
    backbone, samples, batch_size: int = 32, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Decode posterior samples ``(S, M, *latent_shape)``; return (per-pixel std ``(M, r, r)`` in [0, 1]
    units of the image range, decoded sample frames uint8 ``(S, M, r, r, 3)``)."""
    samples = np.asarray(samples)
    S, M = samples.shape[:2]
    frames = decode_latents(backbone, samples.reshape((S * M,) + samples.shape[2:]), batch_size, device)
    frames = frames.reshape((S, M) + frames.shape[1:])
    std = (frames.astype(np.float64) / 255.0).std(axis=0).mean(axis=-1)  # std over samples, mean over RGB
    return std, frames


# ------------------------------------------------------------------------------------ latent methods
def _normalize(z: np.ndarray) -> np.ndarray:
    return z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def _slerp_np(a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """SLERP between unit vectors ``a, b`` ``(M, ..., d)`` at fractions ``u`` ``(M,)``."""
    a, b = _normalize(a), _normalize(b)
    u = u.reshape((-1,) + (1,) * (a.ndim - 1))
    dot = np.clip((a * b).sum(-1, keepdims=True), -1.0, 1.0)
    om = np.arccos(dot)
    so = np.sin(om)
    near = so < 1e-6
    w0 = np.where(near, 1 - u, np.sin((1 - u) * om) / np.where(near, 1, so))
    w1 = np.where(near, u, np.sin(u * om) / np.where(near, 1, so))
    return _normalize(w0 * a + w1 * b)


def linear_interpolation(
    times_obs: np.ndarray, z_obs: np.ndarray, times_query: np.ndarray, geometry: str = "euclidean"
) -> np.ndarray:
    """Latents at ``times_query`` interpolated between the observed frames around each query time.

    Linear in R^D, SLERP for ``geometry='sphere'``; the end latents are held outside the observed range.
    """
    times_obs = np.asarray(times_obs, np.float64)
    order = np.argsort(times_obs)
    t, z = times_obs[order], np.asarray(z_obs)[order]
    tq = np.clip(np.asarray(times_query, np.float64), t[0], t[-1])
    if len(t) == 1:
        return np.repeat(z[:1], len(tq), 0)
    hi = np.clip(np.searchsorted(t, tq, side="right"), 1, len(t) - 1)
    lo = hi - 1
    u = np.clip((tq - t[lo]) / np.maximum(t[hi] - t[lo], 1e-300), 0.0, 1.0)
    if geometry == "sphere":
        return _slerp_np(z[lo], z[hi], u)
    u = u.reshape((-1,) + (1,) * (z.ndim - 1))
    return (1 - u) * z[lo] + u * z[hi]


def nearest_view(poses_obs: Tensor, z_obs: np.ndarray, poses_query: Tensor) -> np.ndarray:
    """Latent of the observed frame nearest in pose (chordal rotation distance + translation distance)."""
    d = torch.cdist(poses_query[:, :12], poses_obs[:, :12])
    return np.asarray(z_obs)[d.argmin(dim=1).numpy()]


@dataclass
class Prediction:
    """Posterior at the query frames. ``var`` is ``None`` for methods without uncertainty."""

    method: str
    mean: np.ndarray  # (M, *latent_shape)
    var: Optional[np.ndarray] = None  # (M,)
    samples: Optional[np.ndarray] = None  # (S, M, *latent_shape)
    hyperparameters: dict = field(default_factory=dict)
    fit_seconds: float = 0.0


def _default_fit_steps(n_obs: int) -> int:
    return 0 if n_obs < 6 else 150


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
) -> Prediction:
    """Fit a :class:`~viewgp.latent_gp.LatentGP` with kernel ``method`` on the observed frames and
    predict at ``poses_query`` (flat pose features with a time column, ``(M, 13)``).

    With few observations (fewer than 6, e.g. the first and last frame only) type-II ML is not
    identifiable, so hyper-parameters are set from the data instead: output scale from the spread of the
    observed latents and lengthscales by the median heuristic over *all* poses (query poses are known even
    where frames are missing). ``fixed`` overrides any of them (``outputscale``, ``noise``, and
    lengthscales by kernel attribute path, e.g. ``{"orientation.lengthscale": 1.0975}``).
    """
    from gpytorch.kernels import ScaleKernel

    from viewgp.kernels import make_kernel
    from viewgp.latent_gp import LatentGP

    z_obs = np.asarray(z_obs, np.float64)
    n = z_obs.shape[0]
    flat = torch.from_numpy(z_obs.reshape(n, -1))
    kernel = ScaleKernel(make_kernel(method))
    gp = LatentGP(kernel=kernel, latent_geometry=geometry)
    init_hyperparameters(gp, poses_obs, poses_query, flat)
    if fixed:
        _set_hyperparameters(gp, fixed)
    steps = _default_fit_steps(n) if steps is None else steps
    t0 = time.perf_counter()
    gp.fit(poses_obs, torch.from_numpy(z_obs), steps=steps, optimize=steps > 0 and not fixed, progress=progress)
    fit_s = time.perf_counter() - t0
    mean, var = gp.predict(poses_query)
    samples = None
    if n_samples > 0:
        g = torch.Generator().manual_seed(seed)
        samples = gp.sample(poses_query, n_samples, generator=g).numpy()
    return Prediction(method, mean.numpy(), var.numpy(), samples, gp.hyperparameters(), fit_s)


def _set_hyperparameters(gp, fixed: dict) -> None:
    """Set ``outputscale``, ``noise`` and lengthscales given as ``"<submodule>.lengthscale"``."""
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


def predict_latents(
    method: str,
    poses_obs: Tensor,
    times_obs: np.ndarray,
    z_obs: np.ndarray,
    poses_query: Tensor,
    times_query: np.ndarray,
    geometry: str = "euclidean",
    **gp_kwargs: Any,
) -> Prediction:
    """One entry point for GP kernels and baselines (see the module docstring)."""
    t0 = time.perf_counter()
    if method == "linear":
        return Prediction(method, linear_interpolation(times_obs, z_obs, times_query, geometry), fit_seconds=time.perf_counter() - t0)
    if method == "nearest":
        return Prediction(method, nearest_view(poses_obs, z_obs, poses_query), fit_seconds=time.perf_counter() - t0)
    if method == "independent":
        if len(times_obs) != len(times_query) or not np.allclose(times_obs, times_query):
            raise ValueError("method 'independent' is only defined where every query frame was encoded")
        return Prediction(method, np.asarray(z_obs))
    bayes = gp_kwargs.pop("bayes", None)
    if bayes is not None:
        return gp_predict_nuts(method, poses_obs, z_obs, poses_query, geometry=geometry, **gp_kwargs, **bayes)
    return gp_predict(method, poses_obs, z_obs, poses_query, geometry=geometry, **gp_kwargs)


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
    progress: bool = False,
    **_unused: Any,
) -> Prediction:
    """:func:`gp_predict` with hyper-parameters integrated out by NUTS (:mod:`viewgp.bayes`).

    The prediction is the mixture over hyper-parameter samples; ``n_samples`` latent samples are drawn
    from each frame's marginal (mean, variance), which is all the per-pixel std maps need.
    """
    from viewgp.bayes import gp_predict_bayes

    n = np.asarray(z_obs).shape[0]
    t0 = time.perf_counter()
    mean, var, summary = gp_predict_bayes(method, poses_obs, z_obs, poses_query, geometry=geometry,
                                          num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains,
                                          seed=seed, ml_steps=_default_fit_steps(n) if steps is None else steps,
                                          progress=progress)
    samples = None
    if n_samples > 0:
        rng = np.random.default_rng(seed)
        sd = np.sqrt(var).reshape((1, -1) + (1,) * (mean.ndim - 1))
        samples = mean[None] + sd * rng.standard_normal((n_samples,) + mean.shape)
        if geometry == "sphere":
            samples = _normalize(samples)
    return Prediction(method, mean, var, samples, {"bayes": summary}, time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------- metrics
def frame_errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, list[float]]:
    """Per-frame MSE (images scaled to [0, 1]) and PSNR (dB) between uint8 frame stacks."""
    a = pred.astype(np.float64) / 255.0
    b = truth.astype(np.float64) / 255.0
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-12))
    return {"mse": mse.tolist(), "psnr": psnr.tolist()}


def delta_smoothness(frames: np.ndarray, delta: int = 5, distance=None) -> float:
    """'LPIPS-delta' of the view-aware paper: mean distance between generated frames ``delta`` apart.

    ``distance`` maps two uint8 stacks to per-pair distances; the default is RMSE in [0, 1] units
    (pass an LPIPS callable for the paper's metric).
    """
    if len(frames) <= delta:
        return float("nan")
    a, b = frames[:-delta], frames[delta:]
    if distance is None:
        d = np.sqrt((((a.astype(np.float64) - b.astype(np.float64)) / 255.0) ** 2).reshape(len(a), -1).mean(1))
    else:
        d = np.asarray(distance(a, b), np.float64)
    return float(np.mean(d))


def lpips_distance(weights_dir: Optional[str] = None, device: str | torch.device = "cpu"):
    """An LPIPS (AlexNet, v0.1) distance between uint8 frame stacks, or ``None`` with the reason.

    Weights come from ``weights_dir`` (``alexnet-owt-7be5be79.pth`` and the ``lpips`` package's
    ``alex.pth``) or, without it, from the torch hub cache; nothing is downloaded. Returns
    ``(distance, None)`` or ``(None, reason)``; a ``weights_dir`` given but lacking the files raises.
    """
    from generative.backbone import to_model_images
    from generative.metrics import LPIPS, WeightsNotFoundError, hub_checkpoint_dir

    folder = weights_dir or str(hub_checkpoint_dir())
    try:
        net = LPIPS("alex", os.path.join(folder, "alexnet-owt-7be5be79.pth"), os.path.join(folder, "alex.pth"), device)
    except WeightsNotFoundError as exc:
        if weights_dir is not None:
            raise
        return None, f"no LPIPS weights ({exc})"

    def distance(a: np.ndarray, b: np.ndarray, batch: int = 64) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(a), batch):
                x0, x1 = (to_model_images(np.ascontiguousarray(v[s : s + batch]), device) for v in (a, b))
                if x0.shape[-1] < net.min_size:  # AlexNet's slices need >= 31 px: upsample small frames
                    size = (net.min_size + 1, net.min_size + 1)
                    x0, x1 = (torch.nn.functional.interpolate(v, size, mode="bilinear", align_corners=False) for v in (x0, x1))
                out.append(net(x0, x1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    return distance, None


def upscale_for_display(frames: np.ndarray, min_size: int) -> np.ndarray:
    """Nearest-neighbour upscale ``(N, h, w, C)`` frames by the smallest integer factor making
    ``min(h, w) >= min_size`` (small model outputs stay viewable in a video player; pixels stay exact)."""
    h, w = frames.shape[1:3]
    k = max(1, -(-int(min_size) // max(1, min(h, w))))
    return frames if k == 1 else frames.repeat(k, axis=1).repeat(k, axis=2)


def write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=float)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ orchestration
def parse_keyframes(spec: str, n: int, poses: Optional[Tensor] = None) -> np.ndarray:
    """Observed-frame mask ``(n,)`` from ``'every:K'`` (every K-th frame and the last), ``'ends'``
    (first and last frame only), ``'all'``, or ``'greedy:K'``: K frames (first and last included)
    chosen one by one where the view-aware GP's posterior variance is largest (needs ``poses``,
    ``(n, 13)`` pose features; see :func:`viewgp.keyframes.greedy_keyframes`)."""
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


def greedy_view_keyframes(poses: Tensor, k: int, method: str = "view") -> list[int]:
    """``k`` keyframes of a run with pose features ``(N, 13)``: first and last, then greedily where the
    GP (kernel ``method``, lengthscales by the median heuristic) is least certain."""
    from viewgp.kernels import make_kernel
    from viewgp.keyframes import greedy_keyframes

    kernel = make_kernel(method).to(torch.float64)
    set_median_lengthscales(kernel, poses)
    n = poses.shape[0]
    initial = [0, n - 1] if k >= 2 and n >= 2 else [0]
    return greedy_keyframes(kernel, poses.to(torch.float64), k, initial=initial)


@dataclass
class PipelineConfig:
    """What to fit and what to write. ``methods[0]`` is the headline method (decoded with uncertainty)."""

    methods: Sequence[str] = ("view", "linear")
    n_samples: int = 8
    fit_steps: Optional[int] = None
    fixed: Optional[dict] = None
    batch_size: int = 32
    fps: float = 10.0
    device: str = "cpu"
    seed: int = 0
    progress: bool = True
    cache_dir: Optional[str] = None
    bayes: Optional[dict] = None  # NUTS settings (num_samples, warmup_steps, num_chains): integrate hyper-parameters out
    inversion: Any = None  # generative.invert.InversionConfig: invert frames instead of encoding them
    perceptual_weights: Optional[str] = None  # folder with VGG16 LPIPS weights for the inversion loss
    display_size: int = 128  # videos and strips are upscaled (nearest) to at least this many pixels
    lpips_weights: Optional[str] = None  # folder with LPIPS weights; None: the torch hub cache, if present


def run_pipeline(run, backbone, out_dir: str, config: PipelineConfig = PipelineConfig(), query=None) -> dict:
    """Encode ``run``, fit on its observed frames, predict, decode and write everything to ``out_dir``.

    Without ``query`` the prediction targets are the run's own frames (smoothing where all frames are
    observed, interpolation where some are masked out); with a ``query`` run (poses only, or with
    ground-truth frames) the targets are its poses (novel views). Returns the metrics dict that is also
    written to ``metrics.json``.
    """
    from generative.data import square_resize
    from sequences.plots import plot_kernel_matrices, plot_latent_trajectories
    from sequences.video import write_strip, write_video

    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(config.seed)
    timings: dict[str, float] = {}
    obs = np.asarray(run.observed, bool)
    if obs.sum() < 1:
        raise ValueError("the camera run has no observed frames to fit on")
    if run.frames is None:
        raise ValueError("the camera run has no frames to encode")

    t0 = time.perf_counter()
    if getattr(backbone, "has_encoder", False) and config.inversion is None:
        z_all = encode_frames(backbone, run.frames, config.batch_size, config.device, config.progress, config.cache_dir)
    else:
        z_all = _invert_observed(backbone, run.frames, obs, out_dir, config)
    timings["encode_s"] = time.perf_counter() - t0
    geometry = backbone.latent_geometry
    poses_obs = run.pose_features(with_time=True)[torch.from_numpy(obs)]
    times_obs = np.asarray(run.timestamps)[obs]
    target = run if query is None else query
    poses_q = target.pose_features(with_time=True)
    times_q = np.asarray(target.timestamps, np.float64)
    truth = None
    if target.frames is not None:
        truth = np.stack([square_resize(np.asarray(f), backbone.resolution) for f in target.frames[:]])

    preds: dict[str, Prediction] = {}
    for i, method in enumerate(config.methods):
        t0 = time.perf_counter()
        kwargs = {}
        if method not in BASELINES:
            kwargs = dict(
                n_samples=config.n_samples if i == 0 else 0,
                steps=config.fit_steps,
                fixed=config.fixed,
                seed=config.seed,
                bayes=config.bayes,
                device=config.device,
            )
        if method == "independent" and query is not None:
            continue
        preds[method] = predict_latents(method, poses_obs, times_obs, z_all[obs], poses_q, times_q, geometry, **kwargs)
        timings[f"{method}_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    decoded = {m: decode_latents(backbone, p.mean, config.batch_size, config.device) for m, p in preds.items()}
    recon = None
    if query is None:  # per-frame reconstructions where a latent exists (inverted backbones: keyframes only)
        have = ~np.isnan(z_all.reshape(len(z_all), -1)).any(1)
        recon = np.zeros((len(z_all), backbone.resolution, backbone.resolution, 3), np.uint8)
        recon[have] = decode_latents(backbone, z_all[have], config.batch_size, config.device)
    head = config.methods[0]
    std = None
    if preds[head].samples is not None:
        std, _ = pixel_std_maps(backbone, preds[head].samples, config.batch_size, config.device)
    timings["decode_s"] = time.perf_counter() - t0

    # -------- files (videos and strips upscaled for viewing; metrics use the model-resolution frames)
    show = lambda frames: upscale_for_display(frames, config.display_size)  # noqa: E731
    write_video(os.path.join(out_dir, "interpolated.mp4"), show(decoded[head]), config.fps)
    panels = ([truth] if truth is not None else []) + ([recon] if recon is not None else [])
    panels += [decoded[m] for m in preds if m != "independent"]
    labels = (["ground truth"] if truth is not None else []) + (["per-frame"] if recon is not None else [])
    labels += [m for m in preds if m != "independent"]
    if std is not None:
        heat = _std_to_rgb(std)
        write_video(os.path.join(out_dir, "uncertainty.mp4"), show(heat), config.fps)
        panels.append(heat)
        labels.append("uncertainty")
    side = show(np.concatenate(panels, axis=2))
    write_video(os.path.join(out_dir, "comparison.mp4"), _with_header(side, labels), config.fps)
    step = max(1, len(side) // 10)
    strip = np.concatenate(list(side[::step]), axis=0)[None]  # every 10th row stacked, one header on top
    write_strip(os.path.join(out_dir, "comparison_strip.png"), _with_header(strip, labels))
    for m, frames in decoded.items():
        write_strip(os.path.join(out_dir, f"strip_{m}.png"), show(frames[::step]))

    plot_latent_trajectories(
        os.path.join(out_dir, "latent_trajectories.png"),
        times_q,
        {m: (p.mean, p.var) for m, p in preds.items() if m != "independent"} or {"per-frame": (z_all, None)},
        obs if query is None else np.zeros(len(times_q), bool),
        z_all if query is None else None,
    )
    plot_kernel_matrices(os.path.join(out_dir, "kernel_matrices.png"), _pose_kernel_matrices(poses_q), times_q)

    metrics: dict[str, Any] = {
        "n_frames": int(len(times_q)),
        "n_observed": int(obs.sum()),
        "observed": obs.tolist() if query is None else None,
        "backbone": {"kind": backbone.kind, "resolution": int(backbone.resolution)},
        "panels": labels,
        "methods": {},
        "timings": timings,
    }
    held = ~obs if query is None else np.ones(len(times_q), bool)
    lpips, reason = lpips_distance(config.lpips_weights, config.device)
    metrics["lpips"] = "alexnet v0.1" if lpips is not None else f"unavailable: {reason}"
    for m, frames in decoded.items():
        entry: dict[str, Any] = {"hyperparameters": preds[m].hyperparameters, "fit_seconds": preds[m].fit_seconds}
        entry["delta_smoothness_rmse"] = delta_smoothness(frames)
        if lpips is not None:
            entry["delta_smoothness_lpips"] = delta_smoothness(frames, distance=lpips)
        if truth is not None:
            err = frame_errors(frames, truth)
            entry["per_frame"] = err
            entry["mse_all"] = float(np.mean(err["mse"]))
            if held.any():
                entry["mse_held_out"] = float(np.mean(np.asarray(err["mse"])[held]))
                entry["psnr_held_out"] = float(np.mean(np.asarray(err["psnr"])[held]))
            if lpips is not None:
                d = lpips(frames, truth)
                entry["per_frame"]["lpips"] = d.tolist()
                entry["lpips_all"] = float(d.mean())
                if held.any():
                    entry["lpips_held_out"] = float(d[held].mean())
        if preds[m].var is not None:
            v = preds[m].var
            entry["posterior_sd_observed"] = float(np.sqrt(v[~held]).mean()) if (~held).any() else None
            entry["posterior_sd_held_out"] = float(np.sqrt(v[held]).mean()) if held.any() else None
        metrics["methods"][m] = entry
    if recon is not None and truth is not None:
        metrics["per_frame_reconstruction_mse"] = float(np.mean(np.asarray(frame_errors(recon, truth)["mse"])[have]))
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics


def _invert_observed(backbone, frames, observed: np.ndarray, out_dir: str, config: PipelineConfig) -> np.ndarray:
    """Latents of the observed frames by optimization-based inversion (NaN rows elsewhere).

    Per-frame results go to ``<cache_dir or out_dir>/inversion-<key>`` as they finish (the key covers
    the backbone weights, the frames and the inversion settings), so an interrupted run resumes
    without redoing finished frames and a changed setting never reuses stale results.
    """
    from dataclasses import asdict

    from generative.invert import InversionConfig, PerceptualLoss, invert_frames

    inv = config.inversion or InversionConfig()
    perceptual = None
    if config.perceptual_weights:
        perceptual = PerceptualLoss(config.perceptual_weights, inv.perceptual_size, device=config.device)
    settings = json.dumps([asdict(inv), config.perceptual_weights], sort_keys=True)
    key = hashlib.sha1((_fingerprint(backbone, frames) + settings).encode()).hexdigest()[:16]
    folder = os.path.join(config.cache_dir or out_dir, f"inversion-{key}")
    idx = np.flatnonzero(observed)
    lat = invert_frames(backbone, frames, folder, inv, perceptual, indices=idx, device=config.device,
                        progress=config.progress).numpy()
    z = np.full((len(observed),) + lat.shape[1:], np.nan, np.float32)
    z[idx] = lat
    return z


def _with_header(side: np.ndarray, labels: Sequence[str], height: int = 18) -> np.ndarray:
    """Prepend a white bar naming each of the equally wide panels of side-by-side frames ``(N, H, W, 3)``."""
    import cv2

    n, _, w = side.shape[:3]
    bar = np.full((height, w, 3), 255, np.uint8)
    pw = w // max(1, len(labels))
    for i, text in enumerate(labels):
        cv2.putText(bar, text, (i * pw + 3, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([np.broadcast_to(bar, (n,) + bar.shape), side], axis=1)


def _std_to_rgb(std: np.ndarray) -> np.ndarray:
    """Per-pixel std maps ``(M, r, r)`` -> uint8 heat-map frames, one colour scale for the whole run."""
    import cv2

    top = max(float(std.max()), 1e-6)
    gray = np.clip(std / top * 255.0, 0, 255).astype(np.uint8)
    return np.stack([cv2.applyColorMap(g, cv2.COLORMAP_INFERNO)[..., ::-1] for g in gray])


def _pose_kernel_matrices(poses: Tensor) -> dict[str, np.ndarray]:
    """Translation and orientation kernel matrices over the frames, lengthscales by the median heuristic."""
    from viewgp.kernels import OrientationKernel, TranslationKernel

    out = {}
    for name, k in (("translation", TranslationKernel()), ("orientation", OrientationKernel())):
        with torch.no_grad():
            k = k.to(torch.float64)
            cols = k.active_dims.tolist()
            k.lengthscale = median_distance(poses[:, cols])
            out[f"{name} kernel"] = k(poses, poses).to_dense().numpy()
    return out


def azimuth_sweep(run, azimuths_deg: Sequence[float]):
    """Query poses on a circle around the run's look-at centre (novel views).

    The centre is the least-squares point closest to every optical axis of the run; the circle lies at
    the run's mean distance and mean elevation about the world up direction (the normal of the plane of
    the camera centres when they lie in one, else the mean of the cameras' -y axes). Returns a pose-only :class:`~sequences.run.CameraRun` with one pose per azimuth.
    """
    from sequences.run import CameraRun
    from sequences.synthetic import look_at

    R = np.asarray(run.rotations, np.float64)
    C = np.asarray(run.translations, np.float64)
    d = R[:, :, 2]  # optical axes in the world
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, v in zip(C, d):
        P_ = np.eye(3) - np.outer(v, v)
        A += P_
        b += P_ @ c
    if np.linalg.cond(A) > 1e8:
        raise ValueError("cannot find a look-at centre: the run's optical axes are (nearly) parallel")
    centre = np.linalg.solve(A, b)
    up = -R[:, :, 1].mean(0)  # cameras are held roughly upright: image "up" is -y
    up /= np.linalg.norm(up)
    if len(C) >= 3:
        # Cameras circling at one elevation lie in a plane whose normal is the true up direction;
        # the mean -y axis is tilted by the elevation, so prefer the plane normal when there is one.
        _, sv, vt = np.linalg.svd(C - C.mean(0))
        if sv[1] > 1e-6 * max(sv[0], 1e-12) and sv[2] < 0.05 * sv[1]:
            up = vt[2] * np.sign(vt[2] @ up or 1.0)
    rel = C - centre
    dist = float(np.linalg.norm(rel, axis=1).mean())
    elev = float(np.mean(np.arcsin(np.clip(rel @ up / np.linalg.norm(rel, axis=1), -1, 1))))
    e1 = rel[0] - (rel[0] @ up) * up
    if np.linalg.norm(e1) < 1e-9:
        raise ValueError("cannot sweep azimuths: the first camera sits on the up axis through the centre")
    e1 = e1 / np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    az = np.deg2rad(np.asarray(azimuths_deg, np.float64))
    eyes = centre + dist * (np.cos(elev) * (np.cos(az)[:, None] * e1 + np.sin(az)[:, None] * e2) + np.sin(elev) * up)
    rots = np.stack([look_at(e, centre, up) for e in eyes])
    return CameraRun(frames=None, timestamps=np.arange(len(az), dtype=np.float64), rotations=rots, translations=eyes,
                     metadata={"query": "azimuth_sweep", "centre": centre.tolist(), "distance": dist})
