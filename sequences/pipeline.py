"""The main job: encode a camera run -> fit a latent GP over poses -> predict -> decode -> report.

A :class:`~sequences.run.CameraRun` is encoded frame by frame into the latent space of a backbone
(:mod:`generative.frames`; inverted at the keyframes for backbones without an encoder); latent
predictors (:mod:`viewgp.predict`: GP methods by kernel name and the latent baselines) are fitted to
the latents of the *observed* frames and predict at every requested pose; the backbone decodes the
posterior means into frames and posterior samples into per-pixel standard-deviation maps;
:mod:`sequences.report` writes the videos, strips and plots, :mod:`sequences.evaluate` scores every
method against the truth where there is one, and everything lands in ``metrics.json``.

This module only orchestrates; each step lives where its kind of work lives.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from generative.detail import add_detail
from generative.images.geometry import square_resize_frames
from generative.frames import decode_frames, encode_frames, frames_to_model, invert_observed, pixel_std_maps
from generative.precision import choose_precision
from generative.uncertainty import combine_sd, reconstruction_variance
from sequences.evaluate import PIXEL_BASELINES, frame_errors, lpips_distance, method_metrics, pixel_baselines, pixel_calibration
from sequences.plots import plot_reliability
from sequences.report import write_frame_outputs, write_html, write_metrics, write_plots
from sequences.video import video_codec
from sequences.views import azimuth_sweep  # noqa: F401  (re-exported: the CLI builds novel-view queries here)
from viewgp.keyframes import parse_keyframes  # noqa: F401  (re-exported for the CLI)
from viewgp.predict import BASELINES, Prediction, predict_latents

__all__ = ["PipelineConfig", "run_pipeline", "output_size", "parse_keyframes", "azimuth_sweep"]


@dataclass
class PipelineConfig:
    """What to fit and what to write. ``methods[0]`` is the headline method (decoded with uncertainty
    and, with ``detail``, given the keyframes' native-resolution detail)."""

    methods: Sequence[str] = ("view", "linear")
    n_samples: int = 8
    fit_steps: Optional[int] = None
    fixed: Optional[dict] = None
    batch_size: int = 128
    fps: Optional[float] = None  # frame rate of the videos; None: the run's own (CameraRun.frame_rate), else 30
    device: str = "cpu"
    seed: int = 0
    progress: bool = True
    cache_dir: Optional[str] = None
    bayes: Optional[dict] = None  # NUTS settings (num_samples, warmup_steps, num_chains): integrate hyper-parameters out
    inversion: Any = None  # generative.invert.InversionConfig: invert frames instead of encoding them
    perceptual_weights: Optional[str] = None  # folder with VGG16 LPIPS weights for the inversion loss
    display_size: int = 256  # videos and strips are upscaled (nearest) to at least this many pixels
    lpips_weights: Optional[str] = None  # folder with LPIPS weights; None: the torch hub cache, if present
    output_size: Optional[int] = 256  # short side of the output (centre square); None: the run's own
    detail: bool = True  # add the keyframes' residual detail to the headline method (generative.detail)
    pixel_baselines: bool = True  # also score nearest / blended / GP-interpolated keyframe pixels
    adapt_steps: int = 0  # fine-tune the backbone on the observed frames first (generative.adapt)
    media: bool = True  # write videos, strips and plots (False: metrics.json only, for batch evaluations)
    # Also score the headline's warp driven by the held-out frames themselves (not methods: they see the
    # truth): "per-frame+warp" (flow from each frame's own reconstruction, i.e. a perfect latent prediction)
    # and "truth+warp" (flow from the true frame at the backbone's resolution, i.e. a perfect decoder too).
    diagnostics: bool = False
    # "auto": bfloat16 for posterior samples and adaptation only where the device computes it natively
    # (generative.precision); "fp32" / "bf16" force one. Scored predictions are always decoded in float32.
    precision: str = "auto"


def run_pipeline(run, backbone, out_dir: str, config: PipelineConfig = PipelineConfig(), query=None) -> dict:
    """Encode ``run``, fit on its observed frames, predict, decode and write everything to ``out_dir``.

    Without ``query`` the prediction targets are the run's own frames (smoothing where all frames are
    observed, interpolation where some are masked out); with a ``query`` run (poses only, or with
    ground-truth frames) the targets are its poses (novel views). Every method is scored at the output
    size (:func:`output_size`). Returns the metrics dict that is also written to ``metrics.json``.
    """
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(config.seed)
    obs = _observed_mask(run)
    timings: dict[str, float] = {}
    precision = choose_precision(config.precision, config.device)
    size = output_size(run, config.output_size)
    keyframes = square_resize_frames(run.frames[np.flatnonzero(obs)], size)
    backbone, adapt_info = _adapted(backbone, keyframes, config, timings, precision.bf16)

    t0 = time.perf_counter()
    z_all = _latents(run, backbone, obs, out_dir, config)
    timings["encode_s"] = time.perf_counter() - t0
    target = run if query is None else query
    poses_q, times_q = target.pose_features(with_time=True), np.asarray(target.timestamps, np.float64)
    truth = None if target.frames is None else square_resize_frames(target.frames, size)  # read in chunks
    preds = _predict(run, obs, z_all, poses_q, times_q, backbone.latent_geometry, config, query is not None, timings)

    t0 = time.perf_counter()
    head = config.methods[0]
    outputs, sd_maps, have, ablation = _decode(backbone, run, obs, z_all, preds, head, keyframes, poses_q, size, config,
                                               query is None, precision.bf16, timings)
    timings["decode_s"] = time.perf_counter() - t0  # all of it: means, samples, detail layers
    # Student-t degrees of freedom of each sd map: a latent method's, also for its detail layers
    # (their variances are scaled from the same keyframes).
    dofs = {m: preds[m.split("+")[0]].dof for m in sd_maps}
    if config.pixel_baselines:
        t0 = time.perf_counter()
        found = _pixel_baselines(run, obs, keyframes, poses_q, times_q, head, config, query is not None)
        outputs |= {name: frames for name, (frames, _, _) in found.items()}
        sd_maps |= {name: np.broadcast_to(np.sqrt(var)[:, None, None], (len(var), size, size))
                    for name, (_, var, _) in found.items() if var is not None}
        dofs |= {name: dof for name, (_, var, dof) in found.items() if var is not None}
        timings["pixel_baselines_s"] = time.perf_counter() - t0
    panels = ({"ground truth": truth} if truth is not None else {}) | outputs
    headline = f"{head}+warp" if f"{head}+warp" in outputs else head
    std = sd_maps.get(headline)
    fps = float(config.fps or run.frame_rate or 30.0)
    labels = [k for k in panels if k != "independent"]
    if config.media:
        t0 = time.perf_counter()
        labels = write_frame_outputs(out_dir, {k: panels[k] for k in labels}, headline, std,
                                     obs if query is None else None, fps, config.display_size, progress=config.progress)
        timings["videos_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        trajectories = {m: (p.mean, p.var) for m, p in preds.items() if m != "independent"}
        write_plots(out_dir, times_q, trajectories or {"per-frame": (z_all, None)},
                    obs if query is None else np.zeros(len(times_q), bool), z_all if query is None else None, poses_q)
        timings["plots_s"] = time.perf_counter() - t0

    metrics = {"n_frames": int(len(times_q)), "n_observed": int(obs.sum()), "observed": obs.tolist() if query is None else None,
               "backbone": {"kind": backbone.kind, "resolution": int(backbone.resolution), "adaptation": adapt_info},
               "output_size": int(size), "headline": headline, "panels": labels, "timings": timings,
               "precision": precision.to_dict() | {"used_for": "posterior samples and adaptation (scored frames: fp32)"},
               "video": {"codec": video_codec(), "fps": round(fps, 6)}}
    held = ~obs if query is None else np.ones(len(times_q), bool)
    if config.diagnostics and query is None and truth is not None and have is not None and have.all():
        outputs = outputs | _warp_diagnostics(run, obs, keyframes, outputs["per-frame"], truth, backbone.resolution,
                                              size, config)
    t0 = time.perf_counter()
    metrics |= _scores(outputs, preds, truth, held, have, sd_maps, dofs, config)
    if truth is not None and ablation and held.any():  # nothing held out (all frames observed): nothing to calibrate
        rows = dict(zip(ablation, _parallel_map(lambda sd: pixel_calibration(outputs[headline], truth, sd, held),
                                                list(ablation.values()))))
        if dofs.get(headline) is not None:  # the headline's own calibration: its sd map with t intervals
            rows[f"+ Student-t ({dofs[headline]:g} keyframes)"] = metrics["methods"][headline]["calibration"]
        metrics["calibration_ablation"] = {"method": headline, **rows}
    if query is None:
        metrics["latent_calibration"] = _latent_calibration(preds, z_all, held)
    timings["metrics_s"] = time.perf_counter() - t0
    if config.media:
        t0 = time.perf_counter()
        _write_report(out_dir, metrics)
        timings["report_s"] = time.perf_counter() - t0
    write_metrics(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics


def _write_report(out_dir: str, metrics: dict) -> None:
    """The reliability diagram and ``report.html``."""
    curves = {m: e["calibration"]["reliability"] for m, e in metrics["methods"].items() if e.get("calibration")}
    ablation = metrics.get("calibration_ablation")
    if ablation:
        curves[f"{ablation['method']} (latent function only: before)"] = ablation["latent function only (before)"]["reliability"]
    if curves:
        plot_reliability(os.path.join(out_dir, "reliability.png"), curves)
    write_html(out_dir, metrics)


def _pixel_baselines(run, obs, keyframes, poses_q, times_q, head: str, config: PipelineConfig,
                     novel: bool) -> dict[str, tuple[np.ndarray, Optional[np.ndarray]]]:
    """The no-backbone methods of :func:`sequences.evaluate.pixel_baselines` on the keyframes' pixels
    (the pixel GP with the headline's kernel): ``{name: (frames, predictive variance or None)}``."""
    poses_obs = run.pose_features(with_time=True)[torch.from_numpy(obs)]
    kernel = head if head not in BASELINES else "view"
    return pixel_baselines(keyframes, np.asarray(run.timestamps)[obs], poses_obs, times_q, poses_q, kernel,
                           device=config.device, novel=novel)


def _scores(outputs, preds, truth, held, have, sd_maps, dofs, config: PipelineConfig) -> dict[str, Any]:
    """``metrics.json``'s scores: every method's entry (:func:`sequences.evaluate.method_metrics`, with its
    kind and fitted hyper-parameters), LPIPS availability and the per-frame reconstruction error (over the
    frames that have a latent; an inverted backbone's per-frame panel is not scored as a method).
    Calibration of each sd map is Student-t with its ``dofs`` entry (``None``: Gaussian)."""
    lpips, reason = lpips_distance(config.lpips_weights, config.device)
    out: dict[str, Any] = {"lpips": "alexnet v0.1" if lpips is not None else f"unavailable: {reason}", "methods": {}}
    if have is not None and truth is not None:
        out["per_frame_reconstruction_mse"] = float(np.mean(np.asarray(frame_errors(outputs["per-frame"], truth)["mse"])[have]))
    def score(m: str) -> dict[str, Any]:
        pred = preds.get(m.split("+")[0])
        entry = {"kind": _kind(m), "hyperparameters": pred.hyperparameters if pred else {},
                 "fit_seconds": pred.fit_seconds if pred else 0.0}
        entry |= method_metrics(outputs[m], truth, held, pred.var if pred else None, lpips)
        if truth is not None and m in sd_maps:
            entry["calibration"] = pixel_calibration(outputs[m], truth, sd_maps[m], held, dofs.get(m))
        return entry

    # inverted backbones: reconstructions at the keyframes only, not scored as a method
    names = [m for m in outputs if not (m == "per-frame" and not have.all())]
    out["methods"] = dict(zip(names, _parallel_map(score, names, "score methods" if config.progress else None)))
    return out


def _parallel_map(fn, items: Sequence, progress: Optional[str] = None) -> list:
    """``[fn(x) for x in items]`` on one thread per core: the scores are numpy and OpenCV work that
    releases the GIL (the demo's 10 methods scored in about half the time on 2 cores). ``progress``:
    the label of a bar that counts finished items."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    workers = max(1, min(len(items), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(items), desc=progress, unit="method", disable=progress is None) as bar:
        futures = [pool.submit(fn, x) for x in items]
        for f in futures:
            f.add_done_callback(lambda _: bar.update(1))
        return [f.result() for f in futures]


def _latent_calibration(preds, z_all, held) -> dict[str, Optional[dict]]:
    """Calibration of every GP method's predictive distribution of the held-out frames' *latents*
    (their encodings), per latent value."""
    from viewgp.calibration import calibration_summary

    out = {}
    have = ~np.isnan(z_all.reshape(len(z_all), -1)).any(1) & held
    for m, p in preds.items():
        if p.predictive_var is None or not have.any():
            continue
        err = (z_all[have] - p.mean[have]).reshape(int(have.sum()), -1)
        out[m] = calibration_summary(err, np.sqrt(p.predictive_var[have])[:, None], p.dof)
    return out


def output_size(run, requested: Optional[int]) -> int:
    """The side of the square output frames: ``requested`` (the short side), never more than the
    run's own short side; ``None`` or 0: the run's own short side."""
    h, w = np.asarray(run.frames[0]).shape[:2]
    own = min(h, w)
    return own if not requested else min(int(requested), own)


def _kind(method: str) -> str:
    if method in DIAGNOSTICS:
        return DIAGNOSTICS[method]
    if method in PIXEL_BASELINES:
        return "pixel baseline (no backbone)"
    if method.endswith("+warp"):
        return "latent GP + keyframes warped along the decoded motion"
    if method.endswith("+detail"):
        return "latent GP + GP-interpolated keyframe residuals"
    if method == "per-frame":
        return "per-frame reconstruction (every frame encoded)"
    return "latent baseline" if method in BASELINES else "latent GP"


def _observed_mask(run) -> np.ndarray:
    obs = np.asarray(run.observed, bool)
    if obs.sum() < 1:
        raise ValueError("the camera run has no observed frames to fit on")
    if run.frames is None:
        raise ValueError("the camera run has no frames to encode")
    return obs


def _latents(run, backbone, obs: np.ndarray, out_dir: str, config: PipelineConfig) -> np.ndarray:
    """Latents ``(N, *latent_shape)`` of the run's frames: encoded, or inverted at the observed frames
    (NaN rows elsewhere) for backbones without an encoder or when ``config.inversion`` asks for it."""
    if backbone.has_encoder and config.inversion is None:
        return encode_frames(backbone, run.frames, config.batch_size, config.progress, config.cache_dir)
    return invert_observed(backbone, run.frames, obs, config.cache_dir or out_dir, config.inversion,
                           config.perceptual_weights, config.device, config.progress)


def _predict(run, obs, z_all, poses_q, times_q, geometry, config: PipelineConfig, novel: bool,
             timings: dict) -> dict[str, Prediction]:
    """Every method of ``config`` fitted on the observed frames, predicted at the query poses; the
    headline method (``methods[0]``) also draws ``config.n_samples`` calibrated posterior samples (its
    per-pixel sd maps; the other methods' are carried over to first order, see :func:`_rescaled_sd`)."""
    poses_obs = run.pose_features(with_time=True)[torch.from_numpy(obs)]
    times_obs = np.asarray(run.timestamps)[obs]
    preds: dict[str, Prediction] = {}
    for i, method in enumerate(config.methods):
        if method == "independent" and novel:
            continue
        t0 = time.perf_counter()
        kwargs = {}
        if method not in BASELINES:
            kwargs = dict(n_samples=config.n_samples if i == 0 else 0, steps=config.fit_steps, fixed=config.fixed,
                          seed=config.seed, bayes=config.bayes, device=config.device)
        preds[method] = predict_latents(method, poses_obs, times_obs, z_all[obs], poses_q, times_q, geometry, **kwargs)
        timings[f"{method}_s"] = time.perf_counter() - t0
    return preds


def _adapted(backbone, keyframes: np.ndarray, config: PipelineConfig, timings: dict, bf16: bool):
    """The backbone fine-tuned on the observed frames when ``config.adapt_steps`` asks for it."""
    if not config.adapt_steps:
        return backbone, None
    from generative.adapt import adapt

    t0 = time.perf_counter()
    x = frames_to_model(keyframes, backbone.resolution)
    adapted, losses = adapt(backbone, x, config.adapt_steps, seed=config.seed, progress=config.progress, bf16=bf16)
    timings["adapt_s"] = time.perf_counter() - t0
    return adapted, {"steps": int(config.adapt_steps), "frames": int(len(keyframes)),
                     "l1_first": losses[0], "l1_last": losses[-1]}


def _decode(backbone, run, obs, z_all, preds, head, keyframes, poses_q, size, config, own_frames: bool, bf16: bool,
            timings: dict):
    """Every method's frames at the output size (decoded, upsampled; the headline method also with the
    keyframes' detail) and the per-frame reconstruction (``"per-frame"``, for the run's own frames);
    per-pixel sd maps ``(M, S, S)`` of every method with uncertainty (:mod:`generative.uncertainty`);
    which frames have a reconstruction (``None`` for novel views); and the headline's sd built up one
    principled part at a time (``ablation``: label -> sd map). Samples are decoded under bfloat16
    autocast with ``bf16``; everything that is scored in float32. ``timings`` gets the phases' seconds."""
    t0 = time.perf_counter()
    outputs: dict[str, np.ndarray] = {}
    have = None
    if own_frames:  # per-frame reconstructions where a latent exists (inverted backbones: keyframes only)
        have = ~np.isnan(z_all.reshape(len(z_all), -1)).any(1)
        recon = np.zeros((len(z_all), backbone.resolution, backbone.resolution, 3), np.uint8)
        recon[have] = decode_frames(backbone, z_all[have], config.batch_size, config.progress, desc="decode per-frame")
        outputs["per-frame"] = square_resize_frames(recon, size)
    # The keyframes' reconstructions: already decoded above for the run's own frames.
    recon_obs = recon[obs] if own_frames else decode_frames(backbone, z_all[obs], config.batch_size)
    recon_var = reconstruction_variance(keyframes, square_resize_frames(recon_obs, size))
    decoded = {m: decode_frames(backbone, p.mean, config.batch_size, config.progress, desc=f"decode {m}")
               for m, p in preds.items()}
    timings["decode_means_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    head_sd = None
    if preds[head].samples is not None:
        head_sd = pixel_std_maps(backbone, preds[head].samples, config.batch_size, bf16=bf16,
                                 progress=config.progress)[0]
    timings["decode_samples_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    latent_sd = {m: _rescaled_sd(head_sd, preds[head], p) for m, p in preds.items()
                 if head_sd is not None and p.predictive_var is not None}
    sd_maps = {m: combine_sd(v, recon_var, size) for m, v in latent_sd.items()}
    ablation: dict[str, np.ndarray] = {}
    model = preds[head].model
    if config.detail and model is not None:
        detailed, res_var, spread = _detail(backbone, run, obs, head, model, decoded[head], keyframes, poses_q, size,
                                            config, own_frames)
        outputs.update({f"{head}+{name}": frames for name, frames in detailed.items()})
        if head_sd is not None:
            sd_maps[f"{head}+detail"] = combine_sd(head_sd, res_var, size)
            sd_maps[f"{head}+warp"] = combine_sd(head_sd, res_var + spread, size)
            ablation = _ablation(head_sd, preds[head], res_var, spread, size)
    for m, frames in decoded.items():
        outputs[m] = square_resize_frames(frames, size)
    timings["detail_s"] = time.perf_counter() - t0  # the detail layers (warp, residual GP) and the sd maps
    return outputs, sd_maps, have, ablation


def _rescaled_sd(head_sd: np.ndarray, head: Prediction, pred: Prediction, var: Optional[np.ndarray] = None) -> np.ndarray:
    """The headline's decoded sample spread ``(M, r, r)`` carried to another latent predictive variance
    (``pred``'s calibrated one, or ``var``) to first order: times ``sd_latent / sd_latent(head)`` per frame,
    which is exact for a linear decoder and saves decoding samples for every method and variant."""
    target = pred.predictive_var if var is None else var
    ratio = np.sqrt(np.maximum(target, 0) / np.maximum(head.predictive_var, 1e-300))
    return head_sd * ratio[:, None, None]


def _ablation(head_sd, pred: Prediction, res_var, spread, size) -> dict[str, np.ndarray]:
    """The headline's (warp) sd map with its parts added one at a time: the latent function's posterior
    alone (what the pipeline showed before), + observation noise, + the residual detail's variance, +
    the warped neighbours' spread, + the leave-one-out scale (the full map). The latent parts are the
    decoded sample spread rescaled to first order (:func:`_rescaled_sd`)."""
    function = _rescaled_sd(head_sd, pred, pred, pred.var)
    noisy = _rescaled_sd(head_sd, pred, pred, pred.var + pred.noise)
    return {"latent function only (before)": combine_sd(function, None, size),
            "+ observation noise": combine_sd(noisy, None, size),
            "+ residual detail variance": combine_sd(noisy, res_var, size),
            "+ warped neighbours' spread": combine_sd(noisy, res_var + spread, size),
            "+ leave-one-out scale": combine_sd(head_sd, res_var + spread, size)}


DIAGNOSTICS = {
    "per-frame+warp": "diagnostic (sees the held-out frame): warp with flow from its own reconstruction",
    "truth+warp": "diagnostic (sees the held-out frame): warp with flow from the true frame",
}


def _warp_diagnostics(run, obs, keyframes, per_frame, truth, resolution: int, size: int, config) -> dict:
    """The headline's warp driven by what a perfect latent prediction (``per_frame``, every frame's own
    reconstruction at the output size) and a perfect decoder (``truth`` seen at the backbone's
    ``resolution``) would give: how much of the warp's error is the latent prediction's and how much the
    decoder's (rows ``per-frame+warp`` and ``truth+warp``)."""
    from generative.detail import warp_detail
    from viewgp.predict import time_neighbours

    idx, w = time_neighbours(np.asarray(run.timestamps)[obs], np.asarray(run.timestamps))
    out = {}
    for name, decoded in (("per-frame+warp", per_frame), ("truth+warp", square_resize_frames(truth, resolution))):
        out[name], _ = warp_detail(keyframes, decoded[obs], decoded, idx, w, size, progress=config.progress)
    return out


def _detail(backbone, run, obs, method, model, decoded_q, keyframes, poses_q, size, config, own_frames: bool):
    """The headline method at the output size with the keyframes' detail, both constructions of
    :mod:`generative.detail`: ``"warp"`` (keyframe pixels moved along the decoded motion; neighbours in
    time for the run's own frames, in pose for novel views) and ``"detail"`` (GP-interpolated residuals).
    Returns the frames by name, the residual layer's predictive variance and the warped neighbours'
    spread (both ``(M, S, S)``)."""
    from generative.detail import warp_detail
    from viewgp.predict import pose_neighbours, time_neighbours

    poses_obs = run.pose_features(with_time=True)[torch.from_numpy(obs)]
    z_obs_post, _ = model.predict(poses_obs)
    decoded_obs = decode_frames(backbone, z_obs_post.cpu().numpy(), config.batch_size)
    if own_frames:
        idx, w = time_neighbours(np.asarray(run.timestamps)[obs], np.asarray(run.timestamps))
    else:
        idx, w = pose_neighbours(poses_obs, poses_q)
    warped, spread = warp_detail(keyframes, decoded_obs, decoded_q, idx, w, size, progress=config.progress)
    residual, var = add_detail(method, poses_obs, keyframes, decoded_obs, poses_q, decoded_q, size)
    return {"warp": warped, "detail": residual}, var, spread
