"""Is the predicted uncertainty right? Coverage, predictive log density and reliability of Gaussian
predictions, for latents, pixels or feature tracks alike.

A prediction is ``N(mean, sd^2)`` per value; what is scored is the error ``e = truth - mean`` against
``sd``. The central ``p`` interval is ``|e| <= z_p sd`` with ``z_p = Phi^-1((1 + p) / 2)``; a calibrated
predictor covers a fraction ``p`` of held-out values at every ``p`` (the reliability diagram plots
observed against expected coverage). The mean negative log predictive density (NLPD) rewards sharp
and right uncertainty together. ``sd_ratio = rms(e) / rms(sd)`` says by how much the spread is too
small (> 1: over-confident) or too large; ``rms_z = rms(e / sd)``, the factor the sd itself is off by
(the criterion of the leave-one-out scale: 1 when calibrated), is the finer of the two, since
``sd_ratio`` pools errors and sds separately (a large error where the sd is small is hidden by a
small error where it is large).

**Student-t predictions.** A variance scale estimated from ``n`` frames (the leave-one-out scale ``c^2``
of :class:`viewgp.predict.Prediction`) is itself uncertain; under the Jeffreys prior on ``c^2``, with the
frame as the unit (a frame's dimensions and pixels share one error), the predictive distribution is
Student-t with ``dof = n`` degrees of freedom and scale ``sd`` (Gelman et al., *Bayesian Data Analysis*,
section 3.2). Every function here takes ``dof`` (``None``: Gaussian): intervals are then
``|e| <= t_{dof, (1 + p) / 2} sd`` and the density is the t density. With 2 keyframes the 95% interval
is 2.2 times the Gaussian one, with 12 1.11 times, with 100 1.01 times.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

__all__ = ["LEVELS", "RELIABILITY_LEVELS", "PRIOR_FRAMES", "normal_quantile", "interval_half_width", "coverage", "nlpd",
           "calibration_summary", "shrunk_variance"]

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


def interval_half_width(p: float, dof: Optional[float] = None) -> float:
    """Half-width of the central ``p`` interval in units of the sd: ``Phi^-1((1 + p) / 2)``, or the
    Student-t quantile ``t_dof^-1((1 + p) / 2)`` for a finite ``dof``."""
    if dof is None or not math.isfinite(dof):
        return normal_quantile((1 + p) / 2)
    if dof <= 0:
        raise ValueError(f"dof must be positive, got {dof}")
    from scipy.special import stdtrit

    return float(stdtrit(dof, (1 + p) / 2))


def _checked_sd(sd, shape: tuple) -> np.ndarray:
    """``max(sd, 1e-12)`` as float64, unbroadcast, after checking it is finite, non-negative and
    broadcasts to the errors' ``shape``."""
    s = np.asarray(sd, np.float64)
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise ValueError("predictive sd must be finite and non-negative")
    if np.broadcast_shapes(s.shape, shape) != tuple(shape):
        raise ValueError(f"predictive sd of shape {s.shape} does not broadcast to the errors' {tuple(shape)}")
    return np.maximum(s, 1e-12)


def _ratio(err, sd, own: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(``|err| / max(sd, 1e-12)`` flat float64, the checked unbroadcast sd). The sd is broadcast
    inside the division, never materialised at the errors' size (one sd per RGB pixel is a third of it).
    Means over the unbroadcast sd equal means over the broadcast one: broadcasting repeats every entry
    equally often. ``own``: ``err`` is the caller's float64 scratch copy, overwritten (no new copy)."""
    e = np.asarray(err, np.float64)
    e = np.abs(e, out=e) if own else np.abs(e)
    s = _checked_sd(sd, e.shape)
    np.divide(e, s, out=e)
    return e.reshape(-1), s


def _coverage_of_ratio(ratio: np.ndarray, levels: Sequence[float], dof: Optional[float]) -> dict[float, float]:
    """Coverage at every level from ``|e| / sd`` in one pass: each ratio is placed among the sorted
    half-widths once (``ratio <= h`` exactly as a comparison would say), then counts accumulate."""
    widths = np.array([interval_half_width(p, dof) for p in levels])
    order = np.argsort(widths, kind="stable")
    slot = np.searchsorted(widths[order], ratio, side="left")  # number of half-widths below the ratio
    inside = np.cumsum(np.bincount(slot, minlength=len(levels) + 1))[: len(levels)]  # ratio <= widths[order][j]
    n = max(ratio.size, 1)
    out = np.empty(len(levels))
    out[order] = inside / n
    return {float(p): float(v) for p, v in zip(levels, out)} if ratio.size else {float(p): float("nan") for p in levels}


def coverage(err, sd, levels: Sequence[float] = LEVELS, dof: Optional[float] = None) -> dict[float, float]:
    """Fraction of values inside their central ``p`` interval, for every ``p`` in ``levels`` (Gaussian,
    or Student-t with ``dof`` degrees of freedom)."""
    return _coverage_of_ratio(_ratio(err, sd)[0], levels, dof)


def _nlpd_of(ratio: np.ndarray, mean_log_sd: float, dof: Optional[float]) -> float:
    if dof is None or not math.isfinite(dof):
        return float(0.5 * math.log(2 * math.pi) + mean_log_sd + 0.5 * np.dot(ratio, ratio) / max(ratio.size, 1))
    from scipy.special import gammaln

    const = gammaln((dof + 1) / 2) - gammaln(dof / 2) - 0.5 * math.log(dof * math.pi)
    return float(-const + mean_log_sd + 0.5 * (dof + 1) * np.mean(np.log1p(np.square(ratio) / dof)))


def nlpd(err, sd, dof: Optional[float] = None) -> float:
    """Mean negative log density of the errors under ``N(0, sd^2)``, or under the Student-t with
    ``dof`` degrees of freedom and scale ``sd``."""
    ratio, s = _ratio(err, sd)
    return _nlpd_of(ratio, float(np.mean(np.log(s))), dof)


def calibration_summary(err, sd, dof: Optional[float] = None) -> dict:
    """Everything the reports show: ``coverage_50 / _90 / _95``, ``nlpd``, ``sd_ratio``, ``rms_z``, the
    reliability curve (``reliability``: expected level -> observed coverage) and ``dof`` (``None``:
    Gaussian intervals; else Student-t)."""
    e = np.abs(np.asarray(err, np.float64)).reshape(-1)
    n = max(e.size, 1)
    rms_e = np.sqrt(np.dot(e, e) / n)  # sums of squares as BLAS dot products: one pass, no temporaries
    ratio, s = _ratio(e.reshape(np.shape(err)), sd, own=True)
    rms_s = np.sqrt(np.mean(np.square(s)))
    levels = tuple(LEVELS) + tuple(p for p in RELIABILITY_LEVELS if p not in LEVELS)
    cov = _coverage_of_ratio(ratio, levels, dof)
    return {
        **{f"coverage_{round(100 * p)}": cov[float(p)] for p in LEVELS},
        "nlpd": _nlpd_of(ratio, float(np.mean(np.log(s))), dof),
        "sd_ratio": float(rms_e / max(rms_s, 1e-300)),
        "rms_z": float(np.sqrt(np.dot(ratio, ratio) / n)) if ratio.size else float("nan"),
        "dof": None if dof is None or not math.isfinite(dof) else float(dof),
        "reliability": {str(p): cov[float(p)] for p in RELIABILITY_LEVELS},
    }
