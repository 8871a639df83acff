"""The no-backbone baselines: frames predicted from the keyframes' pixels alone (nearest keyframe in
time or pose, blends of the two neighbours, classical optical-flow interpolation, a GP on the flattened
pixels), and the pipeline step that adds them to a run's outputs. A new baseline is one more entry in
:func:`pixel_baselines` and its name in :data:`PIXEL_BASELINES`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["PIXEL_BASELINES", "fit_pixel_gp", "pixel_baselines", "fit_pixel_baselines", "add_pixel_baselines"]

#: Methods that use no backbone at all: what a user could do without us (keys of :func:`pixel_baselines`).
PIXEL_BASELINES = ("px-nearest-time", "px-nearest-pose", "px-blend", "px-blend-pose", "px-flow", "px-gp")


def fit_pixel_gp(keyframes: np.ndarray, poses_obs: torch.Tensor, poses_query: torch.Tensor, kernel: str = "view",
                 steps: Optional[int] = None, device: str | torch.device = "cpu"):
    """The ``px-gp`` baseline fitted once on the keyframes' flattened pixels ``(N, S*S*3)`` (the same
    :class:`~viewgp.latent_gp.LatentGP` and kernel as the latent GP; one Cholesky for all values); a
    :class:`viewgp.predict.Prediction` without rows, asked at each chunk of ``poses_query`` by
    :func:`pixel_baselines`."""
    from viewgp.predict import gp_predict, pixel_fit_subset

    flat = keyframes.reshape(len(keyframes), -1).astype(np.float32)
    flat /= 255.0
    # Adam from the median-heuristic start, as the latent GPs had it: on pixels, full type-II ML (which
    # L-BFGS reaches) drives the lengthscales to zero, since raw pixels of moving frames barely correlate,
    # and then predicts the mean image (demo run: held-out MSE 0.0245 vs 0.0161 with Adam's 150 steps).
    return gp_predict(kernel, poses_obs, flat, poses_query, steps=steps, device=device, optimizer="adam",
                      subset=pixel_fit_subset(len(flat)), predict=False, mean_dtype=torch.float32)


def pixel_baselines(
    keyframes: np.ndarray,
    times_obs: np.ndarray,
    poses_obs: torch.Tensor,
    times_query: np.ndarray,
    poses_query: torch.Tensor,
    pixel_gp=None,
    novel: bool = False,
) -> dict[str, tuple[np.ndarray, Optional[np.ndarray], Optional[float]]]:
    """Frames predicted from the keyframes' pixels alone (no backbone), ``{name: (frames, var, dof)}``.

    * ``px-nearest-time``: the keyframe nearest in time; ``px-nearest-pose``: nearest in pose;
    * ``px-blend``: linear blend in time of the two neighbouring keyframes; for ``novel`` views (query
      poses with no place in the run's time) instead ``px-blend-pose``: the two keyframes nearest in
      pose, blended by inverse distance, and no time-based method;
    * ``px-flow``: classical optical-flow frame interpolation between the same two keyframes
      (:func:`generative.latents.detail.flow_interpolation`: DIS flow both ways, linear-motion intermediate
      flows, both keyframes warped and blended; for novel views the two nearest in pose, ``t`` from
      the pose distances);
    * ``px-gp``: ``pixel_gp`` (:func:`fit_pixel_gp`) at the query poses; ``var`` is its calibrated
      predictive variance ``(M,)`` per value and ``dof`` that of its Student-t
      (:attr:`viewgp.predict.Prediction.dof`); ``None`` for the other methods.

    Args:
        keyframes: uint8 ``(N, S, S, 3)``; poses ``(N, 13)`` / ``(M, 13)`` pose features with time.
    Returns:
        uint8 frames ``(M, S, S, 3)`` per method.
    """
    from generative.latents.detail import flow_interpolation
    from viewgp.predict import nearest_in_time, nearest_view, pose_neighbours, time_neighbours

    shape = keyframes.shape[1:]
    flat = keyframes.reshape(len(keyframes), -1)

    def frames(values: np.ndarray) -> np.ndarray:
        """uint8 frames of float values in [0, 1] (changed in place: they are a block's own)."""
        np.clip(values, 0.0, 1.0, out=values)
        values *= 255.0
        return np.round(values, out=values).astype(np.uint8).reshape((-1,) + shape)

    def chunked(blend) -> np.ndarray:
        """``frames(blend(s, e))`` for queries ``s:e``, 16 at a time: never a float stack of all query
        frames (1.6 GB per 1,000 frames at 256 px), and blocks small enough to stay in cache."""
        m = len(times_query)
        out = np.empty((m,) + shape, np.uint8)
        for s in range(0, m, 16):
            out[s : s + 16] = frames(blend(s, min(s + 16, m)))
        return out

    def pixels(idx: np.ndarray) -> np.ndarray:
        return flat[idx].astype(np.float64) / 255.0

    out: dict[str, tuple[np.ndarray, Optional[np.ndarray], Optional[float]]] = {}
    if not novel:  # the nearest keyframe's own pixels (indexing only: no float copy)
        out["px-nearest-time"] = (nearest_in_time(times_obs, keyframes, times_query), None, None)
    out["px-nearest-pose"] = (nearest_view(poses_obs, keyframes, poses_query), None, None)
    if novel:
        idx, w = pose_neighbours(poses_obs, poses_query)
        out["px-blend-pose"] = (chunked(lambda s, e: np.einsum("mk,mkd->md", w[s:e], pixels(idx[s:e]))), None, None)
    else:
        idx, w = time_neighbours(times_obs, times_query)  # linear_interpolation's, on a chunk's pixels only
        out["px-blend"] = (chunked(lambda s, e: (1 - w[s:e, 1:]) * pixels(idx[s:e, 0]) + w[s:e, 1:] * pixels(idx[s:e, 1])),
                           None, None)
    # Classical flow interpolation between the two keyframes around each query (in time; in pose for
    # novel views, which have no place in the run's time).
    idx, w = pose_neighbours(poses_obs, poses_query) if novel else time_neighbours(times_obs, times_query)
    out["px-flow"] = (flow_interpolation(keyframes, idx, w), None, None)
    if pixel_gp is not None:
        # the queries (a chunk of the run's targets) in one product over the fitted values, which it
        # reads whole (0.8 GB at 1,000 keyframes of 256 px): few large products, not many small ones
        p = pixel_gp.at(poses_query)
        mean = p.mean.reshape(len(p.mean), -1)
        out["px-gp"] = (chunked(lambda s, e: mean[s:e]), p.predictive_var, pixel_gp.dof)
    return out


def fit_pixel_baselines(state) -> None:
    """The baselines that are fitted once for every chunk (``px-gp``, with the headline's kernel;
    ``"view"`` when the headline is a latent baseline), before the first chunk's frames exist."""
    from viewgp.predict import BASELINES

    kernel = state.head if state.head not in BASELINES else "view"
    with state.timed("pixel_baselines_s"):
        state.pixel_models["px-gp"] = fit_pixel_gp(state.keyframes, state.poses_obs, state.all_poses_q, kernel,
                                                   device=state.config.device)


def add_pixel_baselines(state) -> None:
    """The no-backbone methods of :func:`pixel_baselines` on the keyframes' pixels at this chunk's
    targets (the pixel GP as :func:`fit_pixel_baselines` fitted it), added to the state's outputs with
    their sd maps and Student-t degrees of freedom."""
    with state.timed("pixel_baselines_s"):
        found = pixel_baselines(state.keyframes, state.times_obs, state.poses_obs, state.times_q, state.poses_q,
                                state.pixel_models["px-gp"], novel=state.novel)
        size = state.size
        state.outputs |= {name: frames for name, (frames, _, _) in found.items()}
        state.sd_maps |= {name: np.broadcast_to(np.sqrt(var)[:, None, None], (len(var), size, size))
                          for name, (_, var, _) in found.items() if var is not None}
        state.dofs |= {name: dof for name, (_, var, dof) in found.items() if var is not None}
