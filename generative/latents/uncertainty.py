"""Per-pixel predictive sd of decoded predictions, from its principled parts.

The predicted frame's error has three sources, each with its own variance term, added per pixel:

* the latent prediction: decoded posterior samples (:func:`generative.latents.frames.pixel_std_maps`) of an
  *observation* (function + noise, scaled by the GP's leave-one-out scale; see
  :class:`viewgp.predict.Prediction`), upsampled to the output size;
* the backbone itself: what decode(encode(x)) misses, measured at the keyframes (where it can be
  compared with the frame) as a per-pixel mean squared error and carried to every query frame
  (:func:`reconstruction_variance`);
* or, for the detail layers, the residual GP's predictive variance instead (the residuals *are* the
  reconstruction error, predicted at the query).

The result is the *scale* of the predictive distribution: its variance terms are scaled from the
keyframes, so intervals are Student-t with the keyframe count as degrees of freedom
(:mod:`viewgp.calibration`, :attr:`viewgp.predict.Prediction.dof`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from viewgp.calibration import shrunk_variance

from generative.latents.detail import resize_maps

__all__ = ["reconstruction_variance", "combine_sd", "rescaled_sd", "sd_ablation", "fuse_by_variance"]


def reconstruction_variance(keyframes: np.ndarray, reconstructed: np.ndarray, blur: float = 2.0) -> np.ndarray:
    """``(S, S)`` per-pixel variance of the backbone's reconstruction error over the keyframes.

    Args:
        keyframes, reconstructed: uint8 ``(N, S, S, 3)`` at the output size (the reconstructions
            upsampled); squared errors on the [0, 1] scale, averaged over keyframes and channels,
            smoothed (Gaussian, ``blur`` pixels) so the estimate generalises to nearby pixels, then
            shrunk towards its frame mean (:func:`viewgp.calibration.shrunk_variance`).
    """
    import cv2

    err = ((keyframes.astype(np.float32) - reconstructed.astype(np.float32)) / 255.0) ** 2
    var = err.mean(axis=(0, 3))
    var = cv2.GaussianBlur(var, (0, 0), blur) if blur > 0 else var
    return shrunk_variance(var, len(keyframes)).astype(np.float32)


def combine_sd(latent_sd: Optional[np.ndarray], extra_var: Optional[np.ndarray], size: int) -> np.ndarray:
    """``sqrt(up(latent_sd)^2 + extra_var)`` at ``size``: ``latent_sd`` ``(M, r, r)`` (decoded samples),
    ``extra_var`` ``(S, S)`` or ``(M, S, S)``; either may be ``None``. Returns float32 ``(M, S, S)``."""
    if latent_sd is None and extra_var is None:
        raise ValueError("combine_sd needs a latent sd map, an extra variance, or both")
    # float32, 16 frames at a time into the output: these maps are (M, S, S) per method (a long run's
    # chunk: 247 x 256 x 256), and whole-stack temporaries cost more in page faults than in arithmetic
    m = len(latent_sd) if latent_sd is not None else len(extra_var)
    extra = None if extra_var is None else np.asarray(extra_var, np.float32)
    out = np.empty((m, int(size), int(size)), np.float32)
    for s in range(0, m, 16):
        block = out[s : s + 16]
        if latent_sd is None:
            block[:] = 0.0
        else:
            block[:] = resize_maps(latent_sd[s : s + 16], size)
            np.square(block, out=block)
        if extra is not None:
            block += extra if extra.ndim == 2 else extra[s : s + 16]
        np.sqrt(block, out=block)
    return out


def rescaled_sd(head_sd: np.ndarray, head_var: np.ndarray, target_var: np.ndarray) -> np.ndarray:
    """A decoded sample spread ``(M, r, r)`` (drawn at latent predictive variances ``head_var`` ``(M,)``)
    carried to other latent variances ``target_var`` ``(M,)`` to first order: times
    ``sqrt(target_var / head_var)`` per frame, which is exact for a linear decoder and saves decoding
    samples for every method and variant."""
    ratio = np.sqrt(np.maximum(target_var, 0) / np.maximum(head_var, 1e-300))
    return head_sd * ratio[:, None, None]


def sd_ablation(head_sd: np.ndarray, head_var: np.ndarray, var: np.ndarray, noise, res_var: np.ndarray,
                spread: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """The headline's (warp) sd map ``(M, size, size)`` with its parts added one at a time: the latent
    function's posterior alone (``var``, what the pipeline showed before), + observation ``noise``, + the
    residual detail's variance ``res_var``, + the warped neighbours' ``spread``, + the leave-one-out scale
    (the full map: ``head_sd``, drawn at the calibrated ``head_var``). The latent parts are the decoded
    sample spread rescaled to first order (:func:`rescaled_sd`)."""
    function = rescaled_sd(head_sd, head_var, var)
    noisy = rescaled_sd(head_sd, head_var, var + noise)
    return {"latent function only (before)": combine_sd(function, None, size),
            "+ observation noise": combine_sd(noisy, None, size),
            "+ residual detail variance": combine_sd(noisy, res_var, size),
            "+ warped neighbours' spread": combine_sd(noisy, res_var + spread, size),
            "+ leave-one-out scale": combine_sd(head_sd, res_var + spread, size)}


def fuse_by_variance(a: np.ndarray, sd_a: np.ndarray, b: np.ndarray, sd_b: np.ndarray,
                     keep_a: Optional[np.ndarray] = None, chunk: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Two predictions of the same frames fused per pixel by their predictive variances: ``w a + (1 - w) b``
    with ``w = sd_b^2 / (sd_a^2 + sd_b^2)`` (the inverse-variance weights), so each pixel follows the
    prediction that is surer there (e.g. warped keyframe pixels where the neighbours agree, the decoded
    frame where they disagree or the motion is large).

    The two errors are not independent (both follow the same latent prediction), so the fused sd is the
    conservative one of fully correlated errors, ``w sd_a + (1 - w) sd_b``, not ``1 / sqrt(1/sd_a^2 + 1/sd_b^2)``.

    Args: uint8 frames ``a``, ``b`` ``(M, S, S, 3)``; their sd maps ``(M, S, S)`` ([0, 1] units); ``keep_a``
        ``(M,)`` bool: frames where ``a`` is taken as it is (e.g. observed frames, which the warp returns exactly).
    Returns the fused uint8 frames ``(M, S, S, 3)`` and sd ``(M, S, S)`` float32 (``chunk`` frames at a time:
    no float copy of all frames, and temporaries small enough to stay in cache).
    """
    if a.shape != b.shape or sd_a.shape != sd_b.shape or sd_a.shape != a.shape[:3]:
        raise ValueError(f"fuse_by_variance: frames {a.shape} / {b.shape} and sd maps {sd_a.shape} / {sd_b.shape} "
                         "must describe the same (M, S, S) frames")
    out = np.empty_like(a)
    sd = np.empty(sd_a.shape, np.float32)
    for s in range(0, len(a), chunk):
        e = s + chunk
        va, vb = np.square(sd_a[s:e], dtype=np.float32), np.square(sd_b[s:e], dtype=np.float32)
        total = va + vb
        # where neither has any variance (both exact, e.g. at a keyframe) take a: the warp returns keyframes exactly
        w = np.divide(vb, total, out=np.ones_like(vb), where=total > 0)
        if keep_a is not None:
            w[np.asarray(keep_a, bool)[s:e]] = 1.0
        fused = w[..., None] * a[s:e]
        fused += (1 - w)[..., None] * b[s:e]
        np.round(fused, out=fused)
        out[s:e] = np.clip(fused, 0, 255, out=fused)
        sd[s:e] = w * sd_a[s:e] + (1 - w) * sd_b[s:e]
    return out, sd
