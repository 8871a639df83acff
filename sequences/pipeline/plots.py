"""PNG plots of a pipeline run: latent trajectories with 2-sigma bands, and pose kernel matrices."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from generative.images.fileio import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"), suffix=".png")


def plot_latent_trajectories(
    path: str,
    times: np.ndarray,
    predictions: Mapping[str, tuple[np.ndarray, Optional[np.ndarray]]],
    observed: np.ndarray,
    encoded: Optional[np.ndarray] = None,
    dims: Sequence[int] = (0, 1, 2, 3),
) -> None:
    """A few latent dimensions against time, one panel each.

    Args:
        times: ``(M,)`` frame times.
        predictions: method name -> (mean ``(M, D)``, variance ``(M,)`` or None); a variance draws the
            posterior mean +- 2 standard deviations as a band.
        observed: ``(M,)`` bool, frames whose encodings the methods were fitted on.
        encoded: optional ``(M, D)`` per-frame encodings (drawn as dots; filled where observed).
    """
    plt = _pyplot()
    dims = [d for d in dims if d < next(iter(predictions.values()))[0].reshape(len(times), -1).shape[1]]
    fig, axes = plt.subplots(len(dims), 1, figsize=(8, 1.9 * len(dims)), sharex=True, squeeze=False)
    for ax, d in zip(axes[:, 0], dims):
        for name, (mean, var) in predictions.items():
            m = mean.reshape(len(times), -1)[:, d]
            (line,) = ax.plot(times, m, lw=1.4, label=name)
            if var is not None:
                s = 2 * np.sqrt(np.maximum(var, 0))
                ax.fill_between(times, m - s, m + s, color=line.get_color(), alpha=0.18, lw=0)
        if encoded is not None:
            e = encoded.reshape(len(times), -1)[:, d]
            ax.scatter(times[~observed], e[~observed], s=6, facecolors="none", edgecolors="k", lw=0.5, label="encoded (held out)")
            ax.scatter(times[observed], e[observed], s=10, c="k", label="encoded (observed)")
        ax.set_ylabel(f"z[{d}]")
    axes[0, 0].legend(fontsize=7, ncol=3, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle("Latent trajectories (bands: posterior mean +- 2 sd)", fontsize=10)
    _save(fig, path)
    plt.close(fig)


def plot_kernel_matrices(path: str, matrices: Mapping[str, np.ndarray], times: Optional[np.ndarray] = None) -> None:
    """Side-by-side heat maps of kernel matrices over the frames of a run (as in the thesis Fig. 2.2)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.6 * len(matrices), 3.4), squeeze=False)
    for ax, (name, K) in zip(axes[0], matrices.items()):
        extent = None if times is None else (times[0], times[-1], times[-1], times[0])
        im = ax.imshow(K, cmap="viridis", extent=extent, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if times is not None:
            ax.set_xlabel("time (s)")
    _save(fig, path)
    plt.close(fig)


def plot_reliability(path: str, curves: Mapping[str, Mapping[str, float]]) -> None:
    """Reliability diagram: observed against expected coverage of central predictive intervals, one
    line per method (``curves[method]`` maps the level, as a string, to the observed coverage); the
    diagonal is perfect calibration, below it over-confidence."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated")
    for name, curve in curves.items():
        points = sorted((float(level), observed) for level, observed in curve.items())
        ax.plot([p for p, _ in points], [o for _, o in points], marker="o", ms=3, lw=1.4, label=name)
    ax.set_xlabel("expected coverage (central interval)")
    ax.set_ylabel("observed coverage, held-out values")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Reliability of the predictive uncertainty", fontsize=9)
    _save(fig, path)
    plt.close(fig)
