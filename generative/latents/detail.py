"""The native-resolution detail layer: decoded predictions at the output size, plus the keyframes'
residual detail predicted at the query frames by the same GP.

The backbone works at its own, small resolution (64 px for the bundled one); a user's frames are
720p to 4K. At an output size ``S`` (centre square crops, ``S x S``):

* the decoded prediction ``D(z*_q)`` of every query frame is upsampled to ``S`` (bilinear);
* at every keyframe ``k`` the residual ``r_k = x_k - up(D(z*_k))`` (its pixels at ``S`` minus its own
  upsampled *posterior* decode) is what the backbone could not say;
* the residuals are interpolated to the query poses by a GP of the same kernel, its hyper-parameters
  fitted to the residuals once (:func:`fit_detail`, :class:`viewgp.predict.ResidualGP`), and
  added chunk by chunk of queries (:func:`add_detail`): ``up(D(z*_q)) + r_q``.

So an observed frame comes back exactly (its residual is reproduced), frames between keyframes get the
keyframes' detail blended by pose similarity, and the residual's posterior variance (per pixel) joins
the uncertainty map.

:func:`warp_detail` is the other construction: the keyframes' own pixels, *moved* along the motion the
decoded frames show (dense optical flow from the decoded query frame to each decoded neighbouring
keyframe, both at the output size) and blended with the neighbours' weights. A blend of unmoved pixels
(the residual layer, and every pixel baseline) leaves a double image wherever the camera moved;
warped keyframes line up with the query first. An observed frame warps onto itself (zero flow between
identical decodes) and comes back exactly.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from torch import Tensor

from generative.images.geometry import square_resize_frames

__all__ = ["FLOW_SIZE", "resize_maps", "fit_detail", "add_detail", "optical_flow", "resize_flow", "warp_image", "warp_detail"]


def resize_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """Float maps ``(M, h, w)`` (e.g. per-pixel sd) resized to ``(M, size, size)`` (bilinear)."""
    import cv2

    return np.stack([cv2.resize(m.astype(np.float32), (int(size), int(size)), interpolation=cv2.INTER_LINEAR)
                     for m in maps])


def fit_detail(method: str, poses_obs: Tensor, keyframes: np.ndarray, decoded_obs: np.ndarray,
               poses_query: Tensor, size: Optional[int] = None):
    """The residual GP of the keyframes' detail (keyframe pixels minus their decoded posterior mean),
    fitted once for every chunk of queries (:class:`viewgp.predict.ResidualGP`).

    Args:
        method: the GP kernel by name (the headline method's).
        poses_obs ``(N, P)``, keyframes uint8 ``(N, S, S, 3)``: observed frames at the output size.
        decoded_obs uint8 ``(N, r, r, 3)``: the decoded posterior mean at the observed poses.
        poses_query ``(M, P)``: every query pose (start values only).
        size: output size ``S`` (default: the keyframes').
    """
    import torch

    from viewgp.predict import ResidualGP

    s = int(size or keyframes.shape[1])
    residual = keyframes.astype(np.float32)  # one float copy of the keyframes, changed in place
    residual -= square_resize_frames(decoded_obs, s)
    residual /= 255.0
    return ResidualGP.fit(method, poses_obs, torch.from_numpy(residual.reshape(len(residual), -1)), poses_query)


def add_detail(model, poses_query: Tensor, decoded_query: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames at the output size with the keyframes' residual detail from the fitted ``model``
    (:func:`fit_detail`).

    Args:
        poses_query ``(M, P)``, decoded_query uint8 ``(M, r, r, 3)``: the decoded prediction.
        size: output size ``S``.
    Returns:
        frames uint8 ``(M, S, S, 3)`` and the residual's predictive variance ``(M, S, S)`` (mean over RGB
        of the per-channel variance; [0, 1] units).
    """
    s, m = int(size), len(decoded_query)
    frames = np.empty((m, s, s, 3), np.uint8)
    var_rgb = np.empty((m, s, s), np.float32)

    def consume(a: int, b: int, mean: np.ndarray, var: np.ndarray) -> None:
        """Query frames ``a:b`` from their chunk of the residual GP (no float stack of all queries)."""
        up = square_resize_frames(decoded_query[a:b], s).astype(np.float32)
        up /= 255.0
        up += mean.reshape(up.shape)
        np.clip(up, 0.0, 1.0, out=up)
        up *= 255.0
        frames[a:b] = np.round(up, out=up)
        var_rgb[a:b] = var.reshape(b - a, s, s)

    model.predict(poses_query, consume, channels=3)
    return frames, var_rgb


def optical_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` float32 from uint8 RGB image ``a`` to ``b`` (OpenCV's DIS, medium
    preset, on grey levels): pixel ``(x, y)`` of ``a`` is seen at ``(x, y) + flow[y, x]`` in ``b``."""
    import cv2

    grey = [cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY) for x in (a, b)]
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(grey[0], grey[1], None)


def warp_image(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` ``(H, W, C)`` sampled along ``flow`` (bilinear, edges replicated): ``out[y, x] =
    image[(y, x) + flow[y, x]]``, float32."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    f = flow.astype(np.float32)
    return cv2.remap(image.astype(np.float32), gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def flow_interpolation(keyframes: np.ndarray, neighbours: np.ndarray, weights: np.ndarray,
                       progress: bool = False) -> np.ndarray:
    """Classical optical-flow frame interpolation, no model: each query frame made from its two
    keyframes ``k0, k1`` at ``t`` (the second neighbour's weight) with dense flow both ways (OpenCV's
    DIS), the flows from the query time approximated under linear motion (Super SloMo's
    ``F_t0 = -(1-t) t F_01 + t^2 F_10``, ``F_t1 = (1-t)^2 F_01 - t (1-t) F_10``), both keyframes
    backward-warped along them and blended ``(1-t) I_0 + t I_1`` (what ffmpeg's ``minterpolate`` does
    with its own motion estimation).

    Args:
        keyframes uint8 ``(N, S, S, 3)``; neighbours ``(M, 2)`` indices into them and weights ``(M, 2)``
            summing to 1 (:func:`viewgp.predict.time_neighbours`, or the two keyframes nearest in pose
            with :func:`~viewgp.predict.pose_neighbours`' weights); one column: the keyframe itself.
    Returns:
        uint8 ``(M, S, S, 3)``; a query at a keyframe (``t`` 0 or 1) is that keyframe exactly.
    """
    from tqdm.auto import tqdm

    out = np.empty((len(neighbours),) + keyframes.shape[1:], np.uint8)
    flows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # each keyframe pair serves many queries
    for q in tqdm(range(len(neighbours)), desc="px-flow", unit="frame", disable=not progress):
        k0, k1 = (int(neighbours[q, 0]), int(neighbours[q, -1]))
        t = float(weights[q, -1]) if neighbours.shape[1] > 1 else 0.0
        if k0 == k1 or t <= 0.0 or t >= 1.0:
            out[q] = keyframes[k1 if t >= 1.0 else k0]
            continue
        if (k0, k1) not in flows:
            if len(flows) >= 16:  # queries come in time order: a pair's flows are not needed again
                flows.clear()  # (a long run holds a handful, never 2 MB x every pair)
            flows[(k0, k1)] = (optical_flow(keyframes[k0], keyframes[k1]), optical_flow(keyframes[k1], keyframes[k0]))
        f01, f10 = flows[(k0, k1)]
        ft0 = -(1 - t) * t * f01 + t * t * f10
        ft1 = (1 - t) ** 2 * f01 - t * (1 - t) * f10
        blend = (1 - t) * warp_image(keyframes[k0], ft0) + t * warp_image(keyframes[k1], ft1)
        out[q] = np.clip(np.round(blend), 0, 255).astype(np.uint8)
    return out


#: The warp's flows between decoded frames are measured at no more than this size and resized to the
#: output size: a decode holds no detail finer than the backbone's resolution (64 px for the bundled
#: one), so DIS on it upsampled to 256 px spent 4x the time on interpolated pixels.
FLOW_SIZE = 128


def resize_flow(flow: np.ndarray, size: int) -> np.ndarray:
    """A dense flow ``(h, w, 2)`` measured on frames resized to ``h x w`` as the flow of the same frames at
    ``size x size`` (bilinear, vectors scaled with the frame)."""
    import cv2

    h, w = flow.shape[:2]
    if (h, w) == (size, size):
        return flow
    out = cv2.resize(flow, (int(size), int(size)), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= size / w
    out[..., 1] *= size / h
    return out


def warp_detail(
    keyframes: np.ndarray,
    decoded_obs: np.ndarray,
    decoded_query: np.ndarray,
    neighbours: np.ndarray,
    weights: np.ndarray,
    size: Optional[int] = None,
    progress: bool = False,
    flow_size: Optional[int] = FLOW_SIZE,
) -> np.ndarray:
    """Query frames made of warped keyframe pixels (``progress``: a bar over the query frames).

    Args:
        keyframes uint8 ``(N, S, S, 3)``: observed frames at the output size.
        decoded_obs uint8 ``(N, r, r, 3)`` / decoded_query ``(M, r, r, 3)``: decoded posterior means at
            the observed and the query poses (upsampled to ``S`` here).
        neighbours ``(M, K)`` indices into the keyframes, weights ``(M, K)`` summing to 1 (e.g.
            :func:`viewgp.predict.time_neighbours` or :func:`~viewgp.predict.pose_neighbours`).
        flow_size: the decoded frames' size for the flows (:data:`FLOW_SIZE`; at most ``S``; ``None``: ``S``).
    Returns:
        uint8 ``(M, S, S, 3)`` and the spread of the warped neighbours around their blend ``(M, S, S)``
        (``sum_k w_k (warp_k - blend)^2``, mean over RGB, [0, 1] units): the variance of the mixture
        over which neighbour is right, large where they disagree (occlusions, flow errors, ghosts).
    """
    s = int(size or keyframes.shape[1])
    f = s if flow_size is None else min(s, int(flow_size))
    used = np.unique(np.asarray(neighbours)[np.asarray(weights) > 0])  # a chunk of queries needs a few keyframes
    up_obs = dict(zip(used.tolist(), square_resize_frames(decoded_obs[used], f)))
    up_q = square_resize_frames(decoded_query, f)
    out = np.empty((len(up_q), s, s, 3), np.uint8)
    spread = np.zeros((len(up_q), s, s), np.float32)
    from tqdm.auto import tqdm

    for q in tqdm(range(len(up_q)), desc="warp keyframes", unit="frame", disable=not progress):
        acc = np.zeros((s, s, 3), np.float32)
        warped = [(float(w), warp_image(keyframes[k], resize_flow(optical_flow(up_q[q], up_obs[k]), s)))
                  for k, w in zip(neighbours[q], weights[q]) if w > 0]
        for w, image in warped:
            acc += w * image
        for w, image in warped:
            spread[q] += w * (((image - acc) / 255.0) ** 2).mean(-1)
        out[q] = np.clip(np.round(acc), 0, 255).astype(np.uint8)
    return out, spread
