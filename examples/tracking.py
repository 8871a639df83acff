"""Tracked 2D feature positions as a function of camera pose (reproduction 8(c), "feature tracking").

Corners are detected in the first frame (``cv2.goodFeaturesToTrack``) and followed frame to frame by
pyramidal Lucas-Kanade (``cv2.calcOpticalFlowPyrLK``). A track survives a step only if LK succeeds
forwards *and* backwards and the backward-tracked point lands within ``fb_threshold`` pixels of where
it started (forward-backward consistency, Kalal et al. 2010); once lost it stays lost, because a
re-acquired point would be a different physical feature.

The tracks valid in every frame become "latents" ``(N, 2K)`` (x, y of every track, in pixels) for
:func:`viewgp.predict.predict_latents`, so the GP kernels and the baselines are compared exactly as
on image latents: fit on observed frames, predict the held-out ones, score in pixels.

It lives beside its only users, ``examples/feature_tracking.py`` (reproduction 8(c)) and
``tests/test_tracking.py``: the pipeline does not track features, so it is not part of the installed packages.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

METHODS = ("view", "time", "euler", "quaternion", "linear", "nearest")

# LK settings: a 21 px window with 3 pyramid levels handles the few-pixel inter-frame motion of a
# hand-held run at 64-256 px; the stricter termination keeps sub-pixel accuracy for the FB check.
_LK = dict(winSize=(21, 21), maxLevel=3, criteria=(3, 50, 0.001))  # 3 = COUNT | EPS


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    f = np.ascontiguousarray(frame)
    if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB frame (H, W, 3), got dtype {f.dtype} and shape {f.shape}")
    return cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)


def track_features(
    frames,
    max_corners: int = 200,
    quality: float = 0.01,
    min_distance: float = 5,
    fb_threshold: float = 1.0,
    border: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Track corners of frame 0 through a video.

    Args:
        frames: uint8 RGB ``(N, H, W, 3)`` (an array or anything indexable by frame).
        max_corners, quality, min_distance: ``cv2.goodFeaturesToTrack`` settings for frame 0.
        fb_threshold: largest forward-backward error (pixels) for a step to count as tracked.
        border: corners are detected, and tracks kept, only this many pixels or more inside the image;
            default half the LK window (10 px). Where the window hangs over the edge LK drifts by up to
            a pixel while staying forward-backward consistent, so the FB check alone does not catch it.
    Returns:
        ``tracks`` ``(N, K, 2)`` float64 pixel positions (x, y; NaN once a track is lost) and ``valid``
        ``(N, K)`` bool; ``valid[:, k]`` is True up to the last frame where track ``k`` held.
    """
    import cv2

    n = len(frames)
    if n == 0:
        raise ValueError("track_features: no frames")
    if fb_threshold <= 0:
        raise ValueError(f"track_features: fb_threshold must be positive, got {fb_threshold}")
    prev = _gray(np.asarray(frames[0]))
    h, w = prev.shape
    b = _LK["winSize"][0] // 2 if border is None else int(border)
    if b < 0 or 2 * b >= min(h, w):
        raise ValueError(f"track_features: border {b} px leaves nothing of a {w}x{h} frame")
    region = np.zeros((h, w), np.uint8)
    region[b : h - b, b : w - b] = 255  # spend max_corners on corners that can be tracked accurately
    corners = cv2.goodFeaturesToTrack(prev, maxCorners=int(max_corners), qualityLevel=float(quality),
                                      minDistance=float(min_distance), mask=region)
    k = 0 if corners is None else len(corners)
    tracks = np.full((n, k, 2), np.nan)
    valid = np.zeros((n, k), dtype=bool)
    if k == 0:
        return tracks, valid
    tracks[0] = corners.reshape(k, 2)
    valid[0] = True
    for i in range(1, n):
        cur = _gray(np.asarray(frames[i]))
        alive = np.flatnonzero(valid[i - 1])
        if alive.size:
            p0 = tracks[i - 1, alive].astype(np.float32).reshape(-1, 1, 2)
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **_LK)
            back, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, **_LK)
            p1, back = p1.reshape(-1, 2).astype(np.float64), back.reshape(-1, 2).astype(np.float64)
            fb = np.linalg.norm(back - tracks[i - 1, alive], axis=1)
            inside = (p1[:, 0] >= b) & (p1[:, 0] <= w - 1 - b) & (p1[:, 1] >= b) & (p1[:, 1] <= h - 1 - b)
            ok = st1.ravel().astype(bool) & st2.ravel().astype(bool) & (fb < fb_threshold) & inside
            tracks[i, alive[ok]] = p1[ok]
            valid[i, alive[ok]] = True
        prev = cur
    return tracks, valid


def complete_tracks(tracks: np.ndarray, valid: np.ndarray, min_length: Optional[int] = None) -> np.ndarray:
    """The tracks valid in every frame: ``(N, K, 2)``, ``(N, K)`` -> ``(N, K', 2)``.

    ``min_length`` (frames) keeps instead the tracks valid over their first ``min_length`` frames and
    truncates the result to those frames (``(min_length, K', 2)``). Raises ``ValueError`` when no track
    survives, since a regression on zero outputs would silently score nothing.
    """
    tracks, valid = np.asarray(tracks, np.float64), np.asarray(valid, bool)
    if tracks.ndim != 3 or tracks.shape[2] != 2 or valid.shape != tracks.shape[:2]:
        raise ValueError(f"expected tracks (N, K, 2) and valid (N, K), got {tracks.shape} and {valid.shape}")
    n = tracks.shape[0]
    length = n if min_length is None else int(min_length)
    if not 1 <= length <= n:
        raise ValueError(f"complete_tracks: min_length must be in [1, {n}], got {min_length}")
    keep = valid[:length].all(axis=0)
    if not keep.any():
        raise ValueError(
            f"complete_tracks: none of the {tracks.shape[1]} tracks is valid in all {length} frames "
            "(more corners, a looser fb_threshold or a shorter run may help)"
        )
    return tracks[:length, keep]


def random_observed(n: int, fraction: float, seed: int = 0) -> np.ndarray:
    """An ``(n,)`` bool mask with ``round(fraction * n)`` (at least 2) frames observed at random."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    m = np.zeros(n, dtype=bool)
    m[np.random.default_rng(seed).choice(n, size=max(2, round(fraction * n)), replace=False)] = True
    return m


def tracking_table(
    run,
    observed: Optional[np.ndarray] = None,
    keyframes_every: int = 5,
    methods: Sequence[str] = METHODS,
    tracks: Optional[np.ndarray] = None,
    **gp_kwargs: Any,
) -> list[dict]:
    """Predict tracked feature positions in held-out frames from the observed ones, per method.

    Args:
        run: a :class:`~sequences.run.CameraRun` with frames (tracked here unless ``tracks`` is given).
        observed: ``(N,)`` bool mask of observed frames; default every ``keyframes_every``-th frame.
        methods: GP kernel names for :func:`viewgp.kernels.make_kernel` and/or ``linear``, ``nearest``.
        tracks: complete tracks ``(N, K, 2)`` (from :func:`complete_tracks`) to reuse across protocols.
        gp_kwargs: passed to :func:`viewgp.predict.gp_predict` (``steps=``, ``seed=``, ...).
    Returns:
        one dict per method: ``method``, ``rmse_px`` (root mean squared 2D endpoint error over the
        held-out frames and tracks), ``mean_sd_px`` (mean posterior sd of one coordinate over held-out
        frames; None for baselines), ``fit_s``, ``n_tracks``, ``n_obs``, ``n_heldout``; GP methods also
        ``calibration`` (:func:`viewgp.calibration.calibration_summary` of the held-out coordinates under
        the calibrated predictive sd: latent function + noise, leave-one-out scale) and
        ``calibration_before`` (under the sd of the latent function alone).
    """
    from viewgp.predict import predict_latents

    if tracks is None:
        tracks = complete_tracks(*track_features(run.frames))
    tracks = np.asarray(tracks, np.float64)
    n, k = tracks.shape[:2]
    if n != len(run):
        raise ValueError(f"tracks cover {n} frames but the run has {len(run)}")
    obs = run.keyframes(every=keyframes_every) if observed is None else np.asarray(observed, bool)
    if obs.shape != (n,):
        raise ValueError(f"observed: expected an ({n},) bool mask, got shape {obs.shape}")
    held = ~obs
    if obs.sum() < 2 or not held.any():
        raise ValueError(f"need at least 2 observed and 1 held-out frame, got {int(obs.sum())} and {int(held.sum())}")
    poses = run.pose_features(with_time=True)
    times = np.asarray(run.timestamps, np.float64)
    z = tracks.reshape(n, 2 * k)  # pixels as they are: the GP's constant mean centres them per coordinate
    obs_t, held_t = _torch_index(obs), _torch_index(held)
    rows = []
    for method in methods:
        pred = predict_latents(method, poses[obs_t], times[obs], z[obs], poses[held_t], times[held], **gp_kwargs)
        err = (np.asarray(pred.mean).reshape(-1, k, 2) - tracks[held])
        row = dict(
            method=method,
            rmse_px=float(np.sqrt((err ** 2).sum(-1).mean())),
            mean_sd_px=None if pred.var is None else float(np.sqrt(np.asarray(pred.var)).mean()),
            fit_s=float(pred.fit_seconds),
            n_tracks=int(k), n_obs=int(obs.sum()), n_heldout=int(held.sum()),
        )
        if pred.var is not None:
            from viewgp.calibration import calibration_summary

            flat = err.reshape(len(err), -1)
            row["calibration"] = calibration_summary(flat, np.sqrt(pred.predictive_var)[:, None], pred.dof)
            row["calibration_before"] = calibration_summary(flat, np.sqrt(np.asarray(pred.var))[:, None])
        rows.append(row)
    return rows


def _torch_index(mask: np.ndarray):
    """A numpy bool mask as a torch index (torch tensors do not take numpy bool arrays everywhere)."""
    import torch

    return torch.from_numpy(np.flatnonzero(mask))
