"""Is the predicted uncertainty right? Coverage, predictive log density and reliability of Gaussian
predictions, for latents, pixels or feature tracks alike.

A prediction is ``N(mean, sd^2)`` per value; what is scored is the error ``e = truth - mean`` against
``sd``. The central ``p`` interval is ``|e| <= z_p sd`` with ``z_p = Phi^-1((1 + p) / 2)``; a calibrated
predictor covers a fraction ``p`` of held-out values at every ``p`` (the reliability diagram plots
observed against expected coverage). The mean negative log predictive density (NLPD) rewards sharp
and right uncertainty together. ``sd_ratio = rms(e) / rms(sd)`` says by how much the spread is too
small (> 1: over-confident) or too large.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["LEVELS", "RELIABILITY_LEVELS", "PRIOR_FRAMES", "normal_quantile", "coverage", "nlpd", "calibration_summary",
           "shrunk_variance"]

#: Central interval levels reported everywhere.
LEVELS = (0.5, 0.9, 0.95)
#: Levels of the reliability diagram.
RELIABILITY_LEVELS = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2))


#: Pseudo-frames of the pooled value in :func:`shrunk_variance`.
PRIOR_FRAMES = 2.0


def shrunk_variance(per_unit, n: int, prior_frames: float = PRIOR_FRAMES) -> np.ndarray:
    """Per-unit variances (pixels, dimensions), each a mean of ``n`` squared errors, shrunk towards
    their pooled mean: ``(n v + n0 mean(v)) / (n + n0)``.

    The posterior mean of a variance under a conjugate (inverse-gamma) prior centred on the pooled
    value with ``n0 = prior_frames`` pseudo-observations. From a few keyframes a per-pixel variance is
    often exactly 0 (a background the decoder gets right in every keyframe), and a query frame in
    which something moves there then has errors at sd 0: unbounded log density, lost coverage.
    """
    v = np.asarray(per_unit, np.float64)
    return (n * v + prior_frames * v.mean()) / (n + prior_frames)


def normal_quantile(p: float) -> float:
    """``Phi^-1(p)`` of the standard normal (``scipy.special.ndtri``)."""
    from scipy.special import ndtri

    return float(ndtri(p))


def _pair(err, sd) -> tuple[np.ndarray, np.ndarray]:
    e = np.abs(np.asarray(err, np.float64))
    s = np.broadcast_to(np.asarray(sd, np.float64), e.shape)
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise ValueError("predictive sd must be finite and non-negative")
    return e.reshape(-1), np.maximum(s.reshape(-1), 1e-12)


def coverage(err, sd, levels: Sequence[float] = LEVELS) -> dict[float, float]:
    """Fraction of values inside their central ``p`` interval, for every ``p`` in ``levels``."""
    e, s = _pair(err, sd)
    ratio = e / s
    return {float(p): float(np.mean(ratio <= normal_quantile((1 + p) / 2))) for p in levels}


def nlpd(err, sd) -> float:
    """Mean negative log density of the errors under ``N(0, sd^2)``."""
    e, s = _pair(err, sd)
    return float(np.mean(0.5 * math.log(2 * math.pi) + np.log(s) + 0.5 * (e / s) ** 2))


def calibration_summary(err, sd) -> dict:
    """Everything the reports show: ``coverage_50 / _90 / _95``, ``nlpd``, ``sd_ratio`` and the
    reliability curve (``reliability``: expected level -> observed coverage)."""
    e, s = _pair(err, sd)
    cov = coverage(e, s, LEVELS)
    return {
        **{f"coverage_{round(100 * p)}": v for p, v in cov.items()},
        "nlpd": nlpd(e, s),
        "sd_ratio": float(np.sqrt(np.mean(e**2)) / max(np.sqrt(np.mean(s**2)), 1e-300)),
        "reliability": {str(p): v for p, v in coverage(e, s, RELIABILITY_LEVELS).items()},
    }
