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

from generative.data import square_resize
from generative.frames import decode_frames, encode_frames, invert_observed, pixel_std_maps
from sequences.evaluate import frame_errors, lpips_distance, method_metrics
from sequences.report import write_frame_outputs, write_metrics, write_plots
from sequences.views import azimuth_sweep  # noqa: F401  (re-exported: the CLI builds novel-view queries here)
from viewgp.keyframes import parse_keyframes  # noqa: F401  (re-exported for the CLI)
from viewgp.predict import BASELINES, Prediction, predict_latents

__all__ = ["PipelineConfig", "run_pipeline", "parse_keyframes", "azimuth_sweep"]


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
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(config.seed)
    obs = _observed_mask(run)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    z_all = _latents(run, backbone, obs, out_dir, config)
    timings["encode_s"] = time.perf_counter() - t0
    target = run if query is None else query
    poses_q, times_q = target.pose_features(with_time=True), np.asarray(target.timestamps, np.float64)
    truth = None
    if target.frames is not None:
        truth = np.stack([square_resize(np.asarray(f), backbone.resolution) for f in target.frames[:]])
    preds = _predict(run, obs, z_all, poses_q, times_q, backbone.latent_geometry, config, query is not None, timings)

    t0 = time.perf_counter()
    decoded = {m: decode_frames(backbone, p.mean, config.batch_size) for m, p in preds.items()}
    recon = have = None
    if query is None:  # per-frame reconstructions where a latent exists (inverted backbones: keyframes only)
        have = ~np.isnan(z_all.reshape(len(z_all), -1)).any(1)
        recon = np.zeros((len(z_all), backbone.resolution, backbone.resolution, 3), np.uint8)
        recon[have] = decode_frames(backbone, z_all[have], config.batch_size)
    head = config.methods[0]
    std = None
    if preds[head].samples is not None:
        std, _ = pixel_std_maps(backbone, preds[head].samples, config.batch_size)
    timings["decode_s"] = time.perf_counter() - t0

    labels = write_frame_outputs(out_dir, head, decoded, truth, recon, std, config.fps, config.display_size)
    trajectories = {m: (p.mean, p.var) for m, p in preds.items() if m != "independent"}
    write_plots(out_dir, times_q, trajectories or {"per-frame": (z_all, None)},
                obs if query is None else np.zeros(len(times_q), bool), z_all if query is None else None, poses_q)

    held = ~obs if query is None else np.ones(len(times_q), bool)
    lpips, reason = lpips_distance(config.lpips_weights, config.device)
    metrics: dict[str, Any] = {
        "n_frames": int(len(times_q)),
        "n_observed": int(obs.sum()),
        "observed": obs.tolist() if query is None else None,
        "backbone": {"kind": backbone.kind, "resolution": int(backbone.resolution)},
        "panels": labels,
        "methods": {},
        "timings": timings,
        "lpips": "alexnet v0.1" if lpips is not None else f"unavailable: {reason}",
    }
    for m, frames in decoded.items():
        metrics["methods"][m] = {"hyperparameters": preds[m].hyperparameters, "fit_seconds": preds[m].fit_seconds,
                                 **method_metrics(frames, truth, held, preds[m].var, lpips)}
    if recon is not None and truth is not None:
        metrics["per_frame_reconstruction_mse"] = float(np.mean(np.asarray(frame_errors(recon, truth)["mse"])[have]))
    write_metrics(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics


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
    if getattr(backbone, "has_encoder", False) and config.inversion is None:
        return encode_frames(backbone, run.frames, config.batch_size, config.progress, config.cache_dir)
    return invert_observed(backbone, run.frames, obs, config.cache_dir or out_dir, config.inversion,
                           config.perceptual_weights, config.device, config.progress)


def _predict(run, obs, z_all, poses_q, times_q, geometry, config: PipelineConfig, novel: bool,
             timings: dict) -> dict[str, Prediction]:
    """Every method of ``config`` fitted on the observed frames, predicted at the query poses; the
    headline method (``methods[0]``) also draws posterior samples."""
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
