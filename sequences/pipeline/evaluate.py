"""Errors of predicted frames against the truth: per-frame MSE / PSNR, LPIPS, and smoothness.

Frames are uint8 ``(N, H, W, 3)`` stacks; errors are on the [0, 1] intensity scale.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import numpy as np
import torch

__all__ = ["pixel_calibration", "pixel_calibration_parts", "psnr_of", "frame_errors", "delta_distances", "delta_smoothness", "lpips_distance"]

def psnr_of(mse: float) -> float:
    """PSNR (dB) of a mean squared error on the [0, 1] scale (capped at 120 dB for identical frames)."""
    return float(10 * np.log10(1.0 / max(float(mse), 1e-12)))


def _pair_mse(a: np.ndarray, b: np.ndarray) -> float:
    """MSE on the [0, 1] scale of two uint8 frames of the same shape: OpenCV's sum of squared
    differences, accumulated in float64 (equal to the integer sum to float64 rounding), without numpy's
    int32 copies; as one row, which its vectorised loop takes (a column of single values was 50x
    slower: 0.8 ms a 256 px frame)."""
    import cv2

    return cv2.norm(np.ascontiguousarray(a).reshape(1, -1), np.ascontiguousarray(b).reshape(1, -1),
                    cv2.NORM_L2SQR) / (a.size * 255.0**2)


def _frame_mse(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-frame MSE on the [0, 1] scale of uint8 stacks ``(N, H, W, 3)``, a frame at a time (no float
    copies of whole stacks)."""
    if pred.shape != truth.shape:
        raise ValueError(f"frames of shape {pred.shape} cannot be scored against ground truth of shape {truth.shape}")
    return np.array([_pair_mse(p, t) for p, t in zip(pred, truth)], np.float64)


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


def delta_distances(frames: np.ndarray, delta: int = 5, distance=None, first=None) -> np.ndarray:
    """Distances between frames ``delta`` apart: of the pairs ``(i, i + delta)`` for every ``i`` (or the
    ``first`` given), ``(P,)`` float64. ``distance`` maps two uint8 stacks to per-pair distances; the
    default is RMSE in [0, 1] units."""
    first = np.arange(max(len(frames) - delta, 0)) if first is None else np.asarray(first, np.int64)
    if len(first) == 0:
        return np.zeros(0)
    if distance is None:  # pair by pair: no copies of the two stacks
        return np.sqrt(np.array([_pair_mse(frames[i], frames[i + delta]) for i in first], np.float64))
    return np.asarray(distance(frames[first], frames[first + delta]), np.float64)


def delta_smoothness(frames: np.ndarray, delta: int = 5, distance=None) -> Optional[float]:
    """'LPIPS-delta' of the view-aware paper: mean distance between generated frames ``delta`` apart
    (``None`` for runs of at most ``delta`` frames).

    ``distance`` maps two uint8 stacks to per-pair distances; the default is RMSE in [0, 1] units
    (pass an LPIPS callable for the paper's metric).
    """
    d = delta_distances(frames, delta, distance)
    return float(np.mean(d)) if len(d) else None


def lpips_distance(weights_dir: Optional[str] = None, device: str | torch.device = "cpu"):
    """An LPIPS (AlexNet, v0.1) distance between uint8 frame stacks, or ``None`` with the reason.

    Weights come from ``weights_dir`` (``alexnet-owt-7be5be79.pth`` and the ``lpips`` package's
    ``alex.pth``) or, without it, from the torch hub cache; nothing is downloaded. Returns
    ``(distance, None)`` or ``(None, reason)``; a ``weights_dir`` given but lacking the files raises.
    """
    from generative.backbones.registry import to_model_images
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


def pixel_calibration(frames: np.ndarray, truth: np.ndarray, sd: np.ndarray, held: np.ndarray,
                      dof: Optional[float] = None) -> Optional[dict]:
    """Calibration of per-pixel predictive sd over the ``held`` ``(M,)`` out frames
    (:func:`viewgp.calibration.calibration_summary`, Student-t with ``dof`` or Gaussian): ``frames``,
    ``truth`` uint8 ``(M, S, S, 3)``, ``sd`` ``(M, S, S)`` on the [0, 1] scale (one sd for the three
    channels). ``None`` without held-out frames."""
    from viewgp.calibration import summary_of

    parts = pixel_calibration_parts(frames, truth, sd, held, dof)
    return None if parts is None else summary_of(parts, dof)


def pixel_calibration_parts(frames: np.ndarray, truth: np.ndarray, sd: np.ndarray, held: np.ndarray,
                            dof: Optional[float] = None) -> Optional[dict]:
    """:func:`pixel_calibration`'s sums for one chunk of frames (:func:`viewgp.calibration.merge_parts`
    adds chunks); ``None`` without held-out frames."""
    from viewgp.calibration import calibration_parts

    if not held.any():
        return None
    idx = np.flatnonzero(held)
    return calibration_parts(_HeldOutError(frames, truth, idx), sd[idx][..., None], dof)  # one sd for RGB


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
