"""The pipeline's scoring step: ``metrics.json`` from a finished :class:`~sequences.pipeline.state.PipelineState`
(every method against the truth, pixel and latent calibration, the headline's sd ablation). The
measures themselves are in :mod:`sequences.pipeline.evaluate`.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from sequences.capture.video import video_codec
from sequences.pipeline.baselines import PIXEL_BASELINES
from sequences.pipeline.evaluate import frame_errors, lpips_distance, method_metrics, pixel_calibration
from sequences.pipeline.latents import DIAGNOSTICS
from sequences.pipeline.state import PipelineState
from viewgp.predict import BASELINES

__all__ = ["score_methods", "method_kind"]


def score_methods(state: PipelineState) -> dict[str, Any]:
    """The metrics of the run: its description (sizes, backbone, panels, timings, precision, video) and,
    timed as ``metrics_s``, every method's scores and calibration (see :func:`_scores`)."""
    obs = state.obs
    metrics = {"n_frames": int(len(state.times_q)), "n_observed": int(obs.sum()),
               "observed": obs.tolist() if not state.novel else None,
               "backbone": {"kind": state.backbone.kind, "resolution": int(state.backbone.resolution),
                            "adaptation": state.adaptation},
               "output_size": int(state.size), "headline": state.headline, "panels": state.panel_labels(),
               "timings": state.timings,
               "precision": state.precision.to_dict() | {"used_for": "posterior samples and adaptation (scored frames: fp32)"},
               "video": {"codec": video_codec(), "fps": round(state.fps, 6)}}
    with state.timed("metrics_s"):
        metrics |= _scores(state)
        held, truth = state.held, state.truth
        warp = f"{state.head}+warp"  # the sd map built up part by part is the warp's (the fused one is made from it)
        if truth is not None and state.ablation and held.any():  # nothing held out (all observed): nothing to calibrate
            rows = dict(zip(state.ablation, _parallel_map(
                lambda sd: pixel_calibration(state.outputs[warp], truth, sd, held), list(state.ablation.values()))))
            if state.dofs.get(warp) is not None:  # the warp's own calibration: its sd map with t intervals
                rows[f"+ Student-t ({state.dofs[warp]:g} keyframes)"] = metrics["methods"][warp]["calibration"]
            metrics["calibration_ablation"] = {"method": warp, **rows}
        if not state.novel:
            metrics["latent_calibration"] = _latent_calibration(state.preds, state.latents, held)
    return metrics


def _scores(state: PipelineState) -> dict[str, Any]:
    """``metrics.json``'s scores: every method's entry (:func:`~sequences.pipeline.evaluate.method_metrics`,
    with its kind and fitted hyper-parameters), LPIPS availability and the per-frame reconstruction error
    (over the frames that have a latent; an inverted backbone's per-frame panel is not scored as a
    method). Calibration of each sd map is Student-t with its ``dofs`` entry (``None``: Gaussian)."""
    outputs, preds, truth, held, have = state.outputs | state.diagnostics, state.preds, state.truth, state.held, state.have
    lpips, reason = lpips_distance(state.config.lpips_weights, state.config.device)
    out: dict[str, Any] = {"lpips": "alexnet v0.1" if lpips is not None else f"unavailable: {reason}", "methods": {}}
    if have is not None and truth is not None:
        out["per_frame_reconstruction_mse"] = float(np.mean(np.asarray(frame_errors(outputs["per-frame"], truth)["mse"])[have]))

    def score(m: str) -> dict[str, Any]:
        pred = preds.get(m.split("+")[0])
        entry = {"kind": method_kind(m), "hyperparameters": pred.hyperparameters if pred else {},
                 "fit_seconds": pred.fit_seconds if pred else 0.0}
        entry |= method_metrics(outputs[m], truth, held, pred.var if pred else None, lpips)
        if truth is not None and m in state.sd_maps:
            entry["calibration"] = pixel_calibration(outputs[m], truth, state.sd_maps[m], held, state.dofs.get(m))
        return entry

    # inverted backbones: reconstructions at the keyframes only, not scored as a method
    names = [m for m in outputs if not (m == "per-frame" and not have.all())]
    out["methods"] = dict(zip(names, _parallel_map(score, names, "score methods" if state.config.progress else None)))
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


def method_kind(method: str) -> str:
    """What a method row is, as the table's ``kind`` column says it."""
    if method in DIAGNOSTICS:
        return DIAGNOSTICS[method]
    if method in PIXEL_BASELINES:
        return "pixel baseline (no backbone)"
    if method.endswith("+warp"):
        return "latent GP + keyframes warped along the decoded motion"
    if method.endswith("+fuse"):
        return "latent GP: warped keyframes and decoded frame fused per pixel by their variances"
    if method.endswith("+detail"):
        return "latent GP + GP-interpolated keyframe residuals"
    if method == "per-frame":
        return "per-frame reconstruction (every frame encoded)"
    return "latent baseline" if method in BASELINES else "latent GP"
