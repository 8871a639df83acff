"""The pipeline's scoring step: ``metrics.json``'s scores, accumulated a chunk of targets at a time
(:class:`Scorer`: every method against the truth, pixel and latent calibration, the headline's sd
ablation). The measures themselves are in :mod:`sequences.pipeline.evaluate`.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from generative.metrics import ssim_uint8
from sequences.capture.video import video_codec
from sequences.pipeline.baselines import PIXEL_BASELINES
from sequences.pipeline.evaluate import delta_distances, frame_errors, lpips_distance, pixel_calibration_parts, psnr_of
from sequences.pipeline.latents import DIAGNOSTICS
from sequences.pipeline.state import PipelineState, score_rows
from viewgp.calibration import merge_parts, summary_of
from viewgp.predict import BASELINES

__all__ = ["Scorer", "method_kind"]

#: LPIPS-delta and the RMSE-delta smoothness compare frames this many apart (the view-aware paper's).
DELTA = 5


class Scorer:
    """``metrics.json``'s scores, a chunk of targets at a time (:meth:`add` after each chunk's outputs,
    :meth:`finish` at the end): per-frame MSE / PSNR of every method at every target, SSIM, LPIPS and
    the calibration's sums at the targets of :func:`~sequences.pipeline.state.score_rows`, the smoothness over pairs of frames ``DELTA`` apart (across
    chunk borders too), the calibration's sums of every sd map and of the headline's sd ablation.
    What comes out does not depend on the chunk size."""

    def __init__(self, state: PipelineState) -> None:
        self.lpips, self.lpips_reason = lpips_distance(state.config.lpips_weights, state.config.device)
        self.rows = score_rows(state.n_targets, state.config.score_frames)
        self.scores: dict[str, dict[str, Any]] = {}
        self.tails: dict[str, np.ndarray] = {}  # the last DELTA frames of each method, for pairs across chunks
        self.ablation: dict[str, Optional[dict]] = {}
        self.recon: list[float] = []  # per-frame reconstruction MSE where a latent exists (inverted backbones)
        self.have: list[bool] = []  # frames with a reconstruction, where per-frame is scored as a method

    def add(self, state: PipelineState) -> None:
        """Score one chunk's outputs (``state`` from :meth:`PipelineState.chunk`), timed as ``metrics_s``."""
        with state.timed("metrics_s"):
            outputs, truth, held = state.outputs | state.diagnostics, state.truth, state.held
            encoded = state.every_frame_encoded
            if state.have is not None and truth is not None:
                if encoded:  # per-frame is scored as a method: its MSE is taken from there in finish()
                    self.have += state.have.tolist()
                else:
                    self.recon += np.asarray(frame_errors(outputs["per-frame"], truth)["mse"])[state.have].tolist()
            # inverted backbones: reconstructions at the keyframes only, not scored as a method
            names = [m for m in outputs if not (m == "per-frame" and not encoded)]
            found = _parallel_map(lambda m: self._chunk(state, m, outputs[m]), names,
                                  "score methods" if state.config.progress and len(names) > 1 else None)
            for m, part in zip(names, found):
                self._merge(m, part)
            warp = f"{state.head}+warp"  # the sd map built up part by part is the warp's (the fused one is made from it)
            rows = state.scored_rows()  # the ablation's maps exist at these targets only
            if truth is not None and state.ablation and held[rows].any():
                parts = _parallel_map(lambda sd: pixel_calibration_parts(state.outputs[warp][rows], truth[rows], sd,
                                                                         held[rows]), list(state.ablation.values()))
                for row, part in zip(state.ablation, parts):
                    self.ablation[row] = merge_parts(self.ablation.get(row), part)

    def _chunk(self, state: PipelineState, m: str, frames: np.ndarray) -> dict[str, Any]:
        truth, held, lpips = state.truth, state.held, self.lpips
        rows = state.scored_rows()
        tail = self.tails.get(m, frames[:0])
        ext = np.concatenate([tail, frames]) if len(tail) else frames
        pairs = max(len(ext) - DELTA, 0)  # every pair (i, i + DELTA) with its second frame in this chunk
        first = state.start - len(tail) + np.arange(pairs)  # the pairs' first targets
        out: dict[str, Any] = {"tail": ext[-DELTA:].copy(), "delta_rmse": delta_distances(ext, DELTA).tolist()}
        if lpips is not None:
            out["delta_lpips"] = delta_distances(ext, DELTA, lpips, first=np.flatnonzero(self.rows[first])).tolist()
        if truth is not None:
            err = frame_errors(frames, truth)
            out["mse"], out["psnr"] = err["mse"], err["psnr"]
            out["ssim"] = _at_rows(len(frames), rows, ssim_uint8(frames[rows], truth[rows]) if len(rows) else [])
            if lpips is not None:
                out["lpips"] = _at_rows(len(frames), rows, lpips(frames[rows], truth[rows]) if len(rows) else [])
            out["held"] = held.tolist()
            if m in state.sd_maps:
                out["calibration"] = pixel_calibration_parts(frames[rows], truth[rows], state.sd_maps[m][rows], held[rows],
                                                             state.dofs.get(m))
                out["dof"] = state.dofs.get(m)
        return out

    def _merge(self, m: str, part: dict[str, Any]) -> None:
        self.tails[m] = part.pop("tail")
        into = self.scores.setdefault(m, {})
        for key, value in part.items():
            if key == "calibration":
                into[key] = merge_parts(into.get(key), value) if value is not None else into.get(key)
            elif key == "dof":
                into[key] = value
            else:
                into.setdefault(key, []).extend(value)

    def finish(self, state: PipelineState) -> dict[str, Any]:
        """The metrics of the run (``state``: the whole run's, after every chunk): its description (sizes,
        backbone, panels, timings, precision, video) and every method's scores and calibration, the
        headline's sd ablation and the latents' calibration."""
        obs, held = state.obs, state.held
        metrics = {"n_frames": int(state.n_targets), "n_observed": int(obs.sum()),
                   "observed": obs.tolist() if not state.novel else None,
                   "backbone": {"kind": state.backbone.kind, "resolution": int(state.backbone.resolution),
                                "adaptation": state.adaptation},
                   "output_size": int(state.size), "headline": state.headline, "panels": state.panel_labels(),
                   "timings": state.timings,
                   "precision": state.precision.to_dict() | {"used_for": "posterior samples and adaptation (scored frames: fp32)"},
                   "video": {"codec": video_codec(), "fps": round(state.fps, 6)},
                   "lpips": "alexnet v0.1" if self.lpips is not None else f"unavailable: {self.lpips_reason}",
                   "scored_frames": {"mse": int(state.n_targets), "ssim_lpips_calibration": int(self.rows.sum())}}
        if self.have and "mse" in self.scores.get("per-frame", {}):
            self.recon = np.asarray(self.scores["per-frame"]["mse"])[np.asarray(self.have, bool)].tolist()
        if self.recon:
            metrics["per_frame_reconstruction_mse"] = float(np.mean(self.recon))
        metrics["methods"] = {m: self._entry(state, m, sc) for m, sc in self.scores.items()}
        warp = f"{state.head}+warp"
        if self.ablation:
            rows = {row: summary_of(part) if part is not None else None for row, part in self.ablation.items()}
            if state.dofs.get(warp) is not None:  # the warp's own calibration: its sd map with t intervals
                rows[f"+ Student-t ({state.dofs[warp]:g} keyframes)"] = metrics["methods"][warp]["calibration"]
            metrics["calibration_ablation"] = {"method": warp, **rows}
        if not state.novel:
            metrics["latent_calibration"] = _latent_calibration(state.preds, state.latents, held)
        return metrics

    def _entry(self, state: PipelineState, m: str, sc: dict[str, Any]) -> dict[str, Any]:
        """One method's entry: kind, fitted hyper-parameters, smoothness, per-frame and mean errors over
        all and held-out frames, posterior sd, calibration."""
        pred, held = state.preds.get(m.split("+")[0]), state.held
        entry = {"kind": method_kind(m), "hyperparameters": pred.hyperparameters if pred else {},
                 "fit_seconds": pred.fit_seconds if pred else 0.0,
                 "delta_smoothness_rmse": float(np.mean(sc["delta_rmse"])) if sc["delta_rmse"] else None}
        if self.lpips is not None:
            entry["delta_smoothness_lpips"] = float(np.mean(sc["delta_lpips"])) if sc["delta_lpips"] else None
        if "mse" in sc:
            mse, h = np.asarray(sc["mse"]), np.asarray(sc["held"], bool)
            ssim = np.asarray([np.nan if v is None else v for v in sc["ssim"]], np.float64)
            entry["per_frame"] = {"mse": sc["mse"], "psnr": sc["psnr"], "ssim": sc["ssim"]}
            entry["mse_all"] = float(mse.mean())
            entry["ssim_all"] = float(np.nanmean(ssim))
            if h.any():
                entry["mse_held_out"] = float(mse[h].mean())
                entry["ssim_held_out"] = _nanmean(ssim[h])
                # PSNR of the mean held-out MSE: a mean of per-frame PSNRs is dominated by frames that happen
                # to equal a keyframe (a standstill gives 120 dB), not by the frames that are hard.
                entry["psnr_held_out"] = psnr_of(entry["mse_held_out"])
            if "lpips" in sc:
                d = np.asarray([np.nan if v is None else v for v in sc["lpips"]], np.float64)
                entry["per_frame"]["lpips"] = sc["lpips"]
                entry["lpips_all"] = float(np.nanmean(d))
                if h.any():
                    entry["lpips_held_out"] = _nanmean(d[h])
        var = pred.var if pred else None
        if var is not None:
            entry["posterior_sd_observed"] = float(np.sqrt(var[~held]).mean()) if (~held).any() else None
            entry["posterior_sd_held_out"] = float(np.sqrt(var[held]).mean()) if held.any() else None
        if sc.get("calibration") is not None:
            entry["calibration"] = summary_of(sc["calibration"], sc.get("dof"))
        return entry


def _at_rows(n: int, rows: np.ndarray, values) -> list:
    """``n`` values, ``values`` at ``rows`` and ``None`` (not scored) elsewhere."""
    out: list = [None] * n
    for r, v in zip(rows, np.asarray(values, np.float64).tolist()):
        out[int(r)] = v
    return out


def _nanmean(x: np.ndarray) -> Optional[float]:
    """The mean of the values that were scored, ``None`` where none was."""
    return float(np.nanmean(x)) if np.isfinite(x).any() else None


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
