"""Errors of predicted frames against the truth: per-frame MSE / PSNR, LPIPS, and smoothness.

Frames are uint8 ``(N, H, W, 3)`` stacks; errors are on the [0, 1] intensity scale.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import numpy as np
import torch

__all__ = ["frame_errors", "delta_smoothness", "lpips_distance", "method_metrics"]


def frame_errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, list[float]]:
    """Per-frame MSE (images scaled to [0, 1]) and PSNR (dB) between uint8 frame stacks."""
    a = pred.astype(np.float64) / 255.0
    b = truth.astype(np.float64) / 255.0
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-12))
    return {"mse": mse.tolist(), "psnr": psnr.tolist()}


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


def method_metrics(
    frames: np.ndarray,
    truth: Optional[np.ndarray],
    held: np.ndarray,
    var: Optional[np.ndarray] = None,
    lpips: Optional[Callable] = None,
) -> dict[str, Any]:
    """The scores of one method's frames ``(M, r, r, 3)``: smoothness, and with ``truth`` per-frame
    MSE / PSNR (and LPIPS) over all frames and over the ``held`` ``(M,)`` out ones; with the latent
    posterior variance ``var`` ``(M,)``, its mean sd at observed and held-out frames."""
    entry: dict[str, Any] = {"delta_smoothness_rmse": delta_smoothness(frames)}
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
    if var is not None:
        entry["posterior_sd_observed"] = float(np.sqrt(var[~held]).mean()) if (~held).any() else None
        entry["posterior_sd_held_out"] = float(np.sqrt(var[held]).mean()) if held.any() else None
    return entry
