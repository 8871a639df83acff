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
           "calibration_summary", "calibration_parts", "merge_parts", "summary_of", "shrunk_variance"]

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
    """``max(sd, 1e-12)`` as float64, unbroadcast but with the errors' number of dimensions, after
    checking it is finite, non-negative and broadcasts to the errors' ``shape``."""
    s = np.asarray(sd, np.float64)
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise ValueError("predictive sd must be finite and non-negative")
    if np.broadcast_shapes(s.shape, shape) != tuple(shape):
        raise ValueError(f"predictive sd of shape {s.shape} does not broadcast to the errors' {tuple(shape)}")
    return np.maximum(s, 1e-12).reshape((1,) * (len(shape) - s.ndim) + s.shape)


#: Values per chunk of the accumulation: a few MB of float64, reused from the heap instead of whole
#: frame stacks (hundreds of MB per temporary, each paid again in page faults).
_CHUNK_VALUES = 1 << 20


def _accumulate(err, sd, levels: Sequence[float], dof: Optional[float]) -> dict:
    """One pass over ``|err| / max(sd, 1e-12)`` in chunks along the first axis (``err``: an array, or
    any object with ``shape`` whose slices along the first axis are arrays), the sd broadcast
    inside each division (never materialised at the errors' size): the number of values, their count
    inside each level's interval (each ratio placed once among the sorted half-widths, so ``ratio <= h``
    exactly as a comparison would say), the sums of ``e^2``, ``(e / sd)^2`` and, for Student-t,
    ``log1p((e / sd)^2 / dof)``; and the mean log sd and rms sd over the unbroadcast sd (broadcasting
    repeats every entry equally often, so the means are the same)."""
    if not (hasattr(err, "shape") and hasattr(err, "__getitem__")):
        err = np.asarray(err)
    if len(err.shape) == 0:
        err = np.asarray(err).reshape(1)
    size = int(np.prod(err.shape))
    s = _checked_sd(sd, tuple(err.shape))
    widths = np.array([interval_half_width(p, dof) for p in levels])
    order = np.argsort(widths, kind="stable")
    ordered = widths[order]
    student = dof is not None and math.isfinite(dof)
    counts = np.zeros(len(levels) + 1, np.int64)
    sq_e = sq_r = log_t = 0.0
    per_row = max(int(np.prod(err.shape[1:])), 1)
    step = max(1, _CHUNK_VALUES // per_row)
    for i in range(0, err.shape[0], step):
        e = np.abs(np.asarray(err[i : i + step], np.float64))  # a fresh float64 chunk, reused below
        flat = e.reshape(-1)
        sq_e += float(np.dot(flat, flat))
        np.divide(e, s if s.shape[0] == 1 else s[i : i + step], out=e)
        sq_r += float(np.dot(flat, flat))
        counts += np.bincount(np.searchsorted(ordered, flat, side="left"), minlength=len(levels) + 1)
        if student:
            np.square(flat, out=flat)
            flat /= dof
            log_t += float(np.sum(np.log1p(flat, out=flat)))
    inside = np.empty(len(levels), np.int64)
    inside[order] = np.cumsum(counts)[: len(levels)]  # ratio <= ordered[j]: ratios placed at or before j
    return {"n": size, "inside": dict(zip((float(p) for p in levels), inside)), "sq_e": sq_e, "sq_r": sq_r,
            "log_t": log_t, "mean_log_sd": float(np.mean(np.log(s))), "rms_sd": float(np.sqrt(np.mean(np.square(s))))}


def _nlpd_of(acc: dict, dof: Optional[float]) -> float:
    n = max(acc["n"], 1)
    if dof is None or not math.isfinite(dof):
        return float(0.5 * math.log(2 * math.pi) + acc["mean_log_sd"] + 0.5 * acc["sq_r"] / n)
    from scipy.special import gammaln

    const = gammaln((dof + 1) / 2) - gammaln(dof / 2) - 0.5 * math.log(dof * math.pi)
    return float(-const + acc["mean_log_sd"] + 0.5 * (dof + 1) * acc["log_t"] / n)


def _fraction(count: int, n: int) -> float:
    return float(count / n) if n else float("nan")


def coverage(err, sd, levels: Sequence[float] = LEVELS, dof: Optional[float] = None) -> dict[float, float]:
    """Fraction of values inside their central ``p`` interval, for every ``p`` in ``levels`` (Gaussian,
    or Student-t with ``dof`` degrees of freedom)."""
    acc = _accumulate(err, sd, levels, dof)
    return {p: _fraction(c, acc["n"]) for p, c in acc["inside"].items()}


def nlpd(err, sd, dof: Optional[float] = None) -> float:
    """Mean negative log density of the errors under ``N(0, sd^2)``, or under the Student-t with
    ``dof`` degrees of freedom and scale ``sd``."""
    return _nlpd_of(_accumulate(err, sd, (), dof), dof)


def calibration_summary(err, sd, dof: Optional[float] = None) -> dict:
    """Everything the reports show: ``coverage_50 / _90 / _95``, ``nlpd``, ``sd_ratio``, ``rms_z``, the
    reliability curve (``reliability``: expected level -> observed coverage) and ``dof`` (``None``:
    Gaussian intervals; else Student-t). ``sd`` broadcasts to ``err`` (e.g. ``(M, S, S, 1)`` against
    ``(M, S, S, 3)``); one pass in chunks of frames, however many there are."""
    return summary_of(calibration_parts(err, sd, dof), dof)


#: Every level a summary reports: the coverage levels, then the reliability curve's others.
SUMMARY_LEVELS = tuple(LEVELS) + tuple(p for p in RELIABILITY_LEVELS if p not in LEVELS)


def calibration_parts(err, sd, dof: Optional[float] = None) -> dict:
    """The sums :func:`calibration_summary` is made of, for one part of the errors (e.g. one chunk of a
    long run's frames): add parts with :func:`merge_parts`, then :func:`summary_of`."""
    return _accumulate(err, sd, SUMMARY_LEVELS, dof)


def merge_parts(a: Optional[dict], b: dict) -> dict:
    """Two parts' sums as one (``a`` may be ``None``): counts and sums add; the sd means are weighted
    by the values behind them (every chunk broadcasts its sd over the channels alike)."""
    if a is None:
        return b
    n = a["n"] + b["n"]
    wa, wb = (a["n"] / n, b["n"] / n) if n else (0.5, 0.5)
    return {"n": n, "inside": {p: a["inside"][p] + b["inside"][p] for p in a["inside"]},
            "sq_e": a["sq_e"] + b["sq_e"], "sq_r": a["sq_r"] + b["sq_r"], "log_t": a["log_t"] + b["log_t"],
            "mean_log_sd": wa * a["mean_log_sd"] + wb * b["mean_log_sd"],
            "rms_sd": math.sqrt(wa * a["rms_sd"] ** 2 + wb * b["rms_sd"] ** 2)}


def summary_of(acc: dict, dof: Optional[float] = None) -> dict:
    """:func:`calibration_summary` of accumulated parts."""
    n = acc["n"]
    cov = {p: _fraction(c, n) for p, c in acc["inside"].items()}
    return {
        **{f"coverage_{round(100 * p)}": cov[float(p)] for p in LEVELS},
        "nlpd": _nlpd_of(acc, dof),
        "sd_ratio": float(math.sqrt(acc["sq_e"] / max(n, 1)) / max(acc["rms_sd"], 1e-300)),
        "rms_z": float(math.sqrt(acc["sq_r"] / n)) if n else float("nan"),
        "dof": None if dof is None or not math.isfinite(dof) else float(dof),
        "reliability": {str(p): cov[float(p)] for p in RELIABILITY_LEVELS},
    }
