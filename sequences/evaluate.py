"""Errors of predicted frames against the truth: per-frame MSE / PSNR, LPIPS, and smoothness.

Frames are uint8 ``(N, H, W, 3)`` stacks; errors are on the [0, 1] intensity scale.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import numpy as np
import torch

__all__ = ["PIXEL_BASELINES", "pixel_calibration", "psnr_of", "frame_errors", "delta_smoothness", "lpips_distance", "method_metrics", "pixel_baselines"]

#: Methods that use no backbone at all: what a user could do without us (keys of :func:`pixel_baselines`).
PIXEL_BASELINES = ("px-nearest-time", "px-nearest-pose", "px-blend", "px-blend-pose", "px-flow", "px-gp")


def psnr_of(mse: float) -> float:
    """PSNR (dB) of a mean squared error on the [0, 1] scale (capped at 120 dB for identical frames)."""
    return float(10 * np.log10(1.0 / max(float(mse), 1e-12)))


def _frame_mse(pred: np.ndarray, truth: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Per-frame MSE on the [0, 1] scale of uint8 stacks ``(N, H, W, 3)``: squared differences summed
    exactly in integers (no float64 copies of whole stacks), a chunk of frames at a time."""
    if pred.shape != truth.shape:
        raise ValueError(f"frames of shape {pred.shape} cannot be scored against ground truth of shape {truth.shape}")
    n, per = len(pred), int(np.prod(pred.shape[1:]))
    out = np.empty(n, np.float64)
    for s in range(0, n, chunk):
        d = pred[s : s + chunk].astype(np.int32) - truth[s : s + chunk].astype(np.int32)
        out[s : s + chunk] = np.square(d, out=d).reshape(len(d), -1).sum(1, dtype=np.int64)
    return out / (per * 255.0**2)


def frame_errors(pred: np.ndarray, truth: np.ndarray, ssim: bool = False) -> dict[str, list[float]]:
    """Per-frame MSE (images scaled to [0, 1]), PSNR (dB) and, with ``ssim``, SSIM (Gaussian window,
    :func:`generative.metrics.ssim`) between uint8 frame stacks ``(N, H, W, 3)``."""
    mse = _frame_mse(pred, truth)
    psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-12))
    out = {"mse": mse.tolist(), "psnr": psnr.tolist()}
    if ssim:
        from generative.metrics import ssim_uint8

        out["ssim"] = ssim_uint8(pred, truth).tolist()
    return out


def delta_smoothness(frames: np.ndarray, delta: int = 5, distance=None) -> Optional[float]:
    """'LPIPS-delta' of the view-aware paper: mean distance between generated frames ``delta`` apart
    (``None`` for runs of at most ``delta`` frames).

    ``distance`` maps two uint8 stacks to per-pair distances; the default is RMSE in [0, 1] units
    (pass an LPIPS callable for the paper's metric).
    """
    if len(frames) <= delta:
        return None
    a, b = frames[:-delta], frames[delta:]
    if distance is None:
        d = np.sqrt(_frame_mse(a, b))
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


def method_metrics(
    frames: np.ndarray,
    truth: Optional[np.ndarray],
    held: np.ndarray,
    var: Optional[np.ndarray] = None,
    lpips: Optional[Callable] = None,
) -> dict[str, Any]:
    """The scores of one method's frames ``(M, r, r, 3)``: smoothness, and with ``truth`` per-frame
    MSE / PSNR / SSIM (and LPIPS) over all frames and over the ``held`` ``(M,)`` out ones; with the latent
    posterior variance ``var`` ``(M,)``, its mean sd at observed and held-out frames."""
    entry: dict[str, Any] = {"delta_smoothness_rmse": delta_smoothness(frames)}
    if lpips is not None:
        entry["delta_smoothness_lpips"] = delta_smoothness(frames, distance=lpips)
    if truth is not None:
        err = frame_errors(frames, truth, ssim=True)
        entry["per_frame"] = err
        entry["mse_all"] = float(np.mean(err["mse"]))
        entry["ssim_all"] = float(np.mean(err["ssim"]))
        if held.any():
            entry["mse_held_out"] = float(np.mean(np.asarray(err["mse"])[held]))
            entry["ssim_held_out"] = float(np.mean(np.asarray(err["ssim"])[held]))
            # PSNR of the mean held-out MSE: a mean of per-frame PSNRs is dominated by frames that happen
            # to equal a keyframe (a standstill gives 120 dB), not by the frames that are hard.
            entry["psnr_held_out"] = psnr_of(entry["mse_held_out"])
        if lpips is not None:
            d = lpips(frames, truth)
            entry["per_frame"]["lpips"] = d.tolist()
            entry["lpips_all"] = float(d.mean())
            if held.any():
                entry["lpips_held_out"] = float(d[held].mean())
    if var is not None:
        entry["posterior_sd_observed"] = float(np.sqrt(var[~held]).mean()) if (~held).any() else None
        entry["posterior_sd_held_out"] = float(np.sqrt(var[held]).mean()) if held.any() else None
    return entry


def pixel_baselines(
    keyframes: np.ndarray,
    times_obs: np.ndarray,
    poses_obs: torch.Tensor,
    times_query: np.ndarray,
    poses_query: torch.Tensor,
    kernel: str = "view",
    steps: Optional[int] = None,
    device: str | torch.device = "cpu",
    novel: bool = False,
) -> dict[str, tuple[np.ndarray, Optional[np.ndarray], Optional[float]]]:
    """Frames predicted from the keyframes' pixels alone (no backbone), ``{name: (frames, var, dof)}``.

    * ``px-nearest-time``: the keyframe nearest in time; ``px-nearest-pose``: nearest in pose;
    * ``px-blend``: linear blend in time of the two neighbouring keyframes; for ``novel`` views (query
      poses with no place in the run's time) instead ``px-blend-pose``: the two keyframes nearest in
      pose, blended by inverse distance, and no time-based method;
    * ``px-flow``: classical optical-flow frame interpolation between the same two keyframes
      (:func:`generative.detail.flow_interpolation`: DIS flow both ways, linear-motion intermediate
      flows, both keyframes warped and blended; for novel views the two nearest in pose, ``t`` from
      the pose distances);
    * ``px-gp``: the same :class:`~viewgp.latent_gp.LatentGP` and kernel as the latent GP, on the
      flattened pixels (one Cholesky for all ``S x S x 3`` values); ``var`` is its calibrated
      predictive variance ``(M,)`` per value and ``dof`` that of its Student-t
      (:attr:`viewgp.predict.Prediction.dof`); ``None`` for the other methods.

    Args:
        keyframes: uint8 ``(N, S, S, 3)``; poses ``(N, 13)`` / ``(M, 13)`` pose features with time.
    Returns:
        uint8 frames ``(M, S, S, 3)`` per method.
    """
    from generative.detail import flow_interpolation
    from viewgp.predict import (gp_predict, linear_interpolation, nearest_in_time, nearest_view, pose_neighbours,
                                time_neighbours)

    shape = keyframes.shape[1:]
    flat = keyframes.reshape(len(keyframes), -1).astype(np.float64) / 255.0

    def frames(values: np.ndarray) -> np.ndarray:
        return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8).reshape((-1,) + shape)

    def chunked(blend) -> np.ndarray:
        """``frames(blend(s, e))`` for queries ``s:e``, a chunk at a time: never a float64 stack of all
        query frames (1.6 GB per 1,000 frames at 256 px)."""
        m = len(times_query)
        out = np.empty((m,) + shape, np.uint8)
        for s in range(0, m, 64):
            out[s : s + 64] = frames(blend(s, min(s + 64, m)))
        return out

    out: dict[str, tuple[np.ndarray, Optional[np.ndarray], Optional[float]]] = {}
    if not novel:  # the nearest keyframe's own pixels (indexing only: no float copy)
        out["px-nearest-time"] = (nearest_in_time(times_obs, keyframes, times_query), None, None)
    out["px-nearest-pose"] = (nearest_view(poses_obs, keyframes, poses_query), None, None)
    if novel:
        idx, w = pose_neighbours(poses_obs, poses_query)
        out["px-blend-pose"] = (chunked(lambda s, e: np.einsum("mk,mkd->md", w[s:e], flat[idx[s:e]])), None, None)
    else:
        out["px-blend"] = (chunked(lambda s, e: linear_interpolation(times_obs, flat, times_query[s:e])), None, None)
    # Classical flow interpolation between the two keyframes around each query (in time; in pose for
    # novel views, which have no place in the run's time).
    idx, w = pose_neighbours(poses_obs, poses_query) if novel else time_neighbours(times_obs, times_query)
    out["px-flow"] = (flow_interpolation(keyframes, idx, w), None, None)
    # Adam from the median-heuristic start, as the latent GPs had it: on pixels, full type-II ML (which
    # L-BFGS reaches) drives the lengthscales to zero, since raw pixels of moving frames barely correlate,
    # and then predicts the mean image (demo run: held-out MSE 0.0245 vs 0.0161 with Adam's 150 steps).
    gp = gp_predict(kernel, poses_obs, flat, poses_query, steps=steps, device=device, optimizer="adam", subset=None)
    out["px-gp"] = (chunked(lambda s, e: gp.mean[s:e]), gp.predictive_var, gp.dof)
    return out


def pixel_calibration(frames: np.ndarray, truth: np.ndarray, sd: np.ndarray, held: np.ndarray,
                      dof: Optional[float] = None) -> Optional[dict]:
    """Calibration of per-pixel predictive sd over the ``held`` ``(M,)`` out frames
    (:func:`viewgp.calibration.calibration_summary`, Student-t with ``dof`` or Gaussian): ``frames``,
    ``truth`` uint8 ``(M, S, S, 3)``, ``sd`` ``(M, S, S)`` on the [0, 1] scale (one sd for the three
    channels). ``None`` without held-out frames."""
    from viewgp.calibration import calibration_summary

    if not held.any():
        return None
    idx = np.flatnonzero(held)
    return calibration_summary(_HeldOutError(frames, truth, idx), sd[idx][..., None], dof)  # one sd for RGB


class _HeldOutError:
    """``(frames - truth) / 255`` of the frames ``idx``, made a slice of frames at a time when the
    calibration's accumulation asks for it (float32, as a whole stack would be: 0.7 GB per 1,000
    frames at 256 px, never held at once)."""

    def __init__(self, frames: np.ndarray, truth: np.ndarray, idx: np.ndarray) -> None:
        self.frames, self.truth, self.idx = frames, truth, idx
        self.shape = (len(idx),) + tuple(frames.shape[1:])

    def __getitem__(self, rows: slice) -> np.ndarray:
        i = self.idx[rows]
        return (self.frames[i].astype(np.float32) - self.truth[i].astype(np.float32)) / 255.0
