"""What a pipeline run shows a person: side-by-side panels, strips, videos, uncertainty maps, plots,
and ``metrics.json``.

Frames are uint8 ``(N, H, W, 3)``; videos and strips are upscaled (nearest neighbour, pixels stay
exact) to at least ``display_size`` pixels so small model outputs stay viewable; metrics are computed
elsewhere (:mod:`sequences.evaluate`) on the frames as they are.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from generative.fileio import atomic_write_json

__all__ = [
    "upscale_for_display",
    "with_header",
    "std_to_rgb",
    "pose_kernel_matrices",
    "write_frame_outputs",
    "write_plots",
    "write_metrics",
]


def upscale_for_display(frames: np.ndarray, min_size: int) -> np.ndarray:
    """Nearest-neighbour upscale ``(N, h, w, C)`` frames by the smallest integer factor making
    ``min(h, w) >= min_size`` (small model outputs stay viewable in a video player; pixels stay exact)."""
    h, w = frames.shape[1:3]
    k = max(1, -(-int(min_size) // max(1, min(h, w))))
    return frames if k == 1 else frames.repeat(k, axis=1).repeat(k, axis=2)


def with_header(side: np.ndarray, labels: Sequence[str], height: int = 18) -> np.ndarray:
    """Prepend a white bar naming each of the equally wide panels of side-by-side frames ``(N, H, W, 3)``."""
    import cv2

    n, _, w = side.shape[:3]
    bar = np.full((height, w, 3), 255, np.uint8)
    pw = w // max(1, len(labels))
    for i, text in enumerate(labels):
        cv2.putText(bar, text, (i * pw + 3, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([np.broadcast_to(bar, (n,) + bar.shape), side], axis=1)


def std_to_rgb(std: np.ndarray) -> np.ndarray:
    """Per-pixel std maps ``(M, r, r)`` -> uint8 heat-map frames, one colour scale for the whole run."""
    import cv2

    top = max(float(std.max()), 1e-6)
    gray = np.clip(std / top * 255.0, 0, 255).astype(np.uint8)
    return np.stack([cv2.applyColorMap(g, cv2.COLORMAP_INFERNO)[..., ::-1] for g in gray])


def pose_kernel_matrices(poses: Tensor) -> dict[str, np.ndarray]:
    """Translation and orientation kernel matrices over the frames, lengthscales by the median heuristic."""
    from viewgp.hyperparameters import median_distance
    from viewgp.kernels import OrientationKernel, TranslationKernel

    out = {}
    for name, k in (("translation", TranslationKernel()), ("orientation", OrientationKernel())):
        with torch.no_grad():
            k = k.to(torch.float64)
            cols = k.active_dims.tolist()
            k.lengthscale = median_distance(poses[:, cols])
            out[f"{name} kernel"] = k(poses, poses).to_dense().numpy()
    return out


def write_frame_outputs(
    out_dir: str,
    head: str,
    decoded: Mapping[str, np.ndarray],
    truth: Optional[np.ndarray],
    recon: Optional[np.ndarray],
    std: Optional[np.ndarray],
    fps: float,
    display_size: int,
) -> list[str]:
    """Videos and strips of a run; returns the comparison's panel labels, left to right.

    Writes ``interpolated.mp4`` (method ``head``), ``uncertainty.mp4`` (when ``std`` maps are given),
    ``comparison.mp4`` (ground truth | per-frame reconstruction | every method | uncertainty, with a
    header naming them), ``comparison_strip.png`` (every 10th row of it) and ``strip_<method>.png``.
    ``decoded`` may hold ``"independent"`` (per-frame encodings): it gets a strip but no panel.
    """
    from sequences.video import write_strip, write_video

    show = lambda frames: upscale_for_display(frames, display_size)  # noqa: E731
    write_video(os.path.join(out_dir, "interpolated.mp4"), show(decoded[head]), fps)
    panels = ([truth] if truth is not None else []) + ([recon] if recon is not None else [])
    labels = (["ground truth"] if truth is not None else []) + (["per-frame"] if recon is not None else [])
    for m, frames in decoded.items():
        if m != "independent":
            panels.append(frames)
            labels.append(m)
    if std is not None:
        heat = std_to_rgb(std)
        write_video(os.path.join(out_dir, "uncertainty.mp4"), show(heat), fps)
        panels.append(heat)
        labels.append("uncertainty")
    side = show(np.concatenate(panels, axis=2))
    write_video(os.path.join(out_dir, "comparison.mp4"), with_header(side, labels), fps)
    step = max(1, len(side) // 10)
    strip = np.concatenate(list(side[::step]), axis=0)[None]  # every 10th row stacked, one header on top
    write_strip(os.path.join(out_dir, "comparison_strip.png"), with_header(strip, labels))
    for m, frames in decoded.items():
        write_strip(os.path.join(out_dir, f"strip_{m}.png"), show(frames[::step]))
    return labels


def write_plots(
    out_dir: str,
    times: np.ndarray,
    predictions: Mapping[str, tuple[np.ndarray, Optional[np.ndarray]]],
    observed: np.ndarray,
    encoded: Optional[np.ndarray],
    poses: Tensor,
) -> None:
    """``latent_trajectories.png`` (a few latent dimensions against time, 2-sigma bands) and
    ``kernel_matrices.png`` (pose kernels over the frames)."""
    from sequences.plots import plot_kernel_matrices, plot_latent_trajectories

    plot_latent_trajectories(os.path.join(out_dir, "latent_trajectories.png"), times, predictions, observed, encoded)
    plot_kernel_matrices(os.path.join(out_dir, "kernel_matrices.png"), pose_kernel_matrices(poses), times)


def _finite_or_none(x: Any) -> Any:
    """Metrics as strict JSON: NaN and inf (not JSON) become ``null``; numpy scalars become floats."""
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_metrics(path: str, metrics: dict) -> None:
    """``metrics.json``, written atomically as strict JSON (see :func:`_finite_or_none`)."""
    atomic_write_json(path, _finite_or_none(metrics))
