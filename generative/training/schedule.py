"""Progressive growing: which phase, fade-in alpha, batch size, learning rate and KL margin apply after
a given number of training images.

Phase ``p`` trains at ``4 * 2**p`` px and lasts ``images_per_phase`` images (the paper: 2.4M; one number
or a ``{resolution: images}`` mapping, since low-resolution steps are much cheaper). The
first ``fade_fraction`` (one half) of every phase after the first is the fade-in: ``alpha`` rises
linearly from 0 to 1, blending both the new network layers and the training images; the rest is the
stabilisation part. After the last phase training continues at the final resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "default_images_per_phase",
    "default_learning_rates",
    "default_margins",
    "PhaseState",
    "ProgressiveSchedule",
    "fade_images",
]

# Per-GPU batch size by resolution (SPEC 3; the original 1-GPU tables).
DEFAULT_BATCH_SIZES = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 32, 256: 16, 512: 4, 1024: 1}


def default_images_per_phase(resolution: int) -> int:
    """Training images per phase for a target ``resolution``: short enough for one GPU (or, at 32 px,
    a CPU) to finish; the paper used 2.4M for every target."""
    if resolution <= 32:
        return 200_000
    if resolution <= 64:
        return 600_000
    if resolution <= 128:
        return 1_200_000
    return 2_400_000


def default_learning_rates(variant: str) -> dict[int, float]:
    """Adam learning rate by resolution: Pioneer 1e-3 throughout; Balanced 5e-4 up to 32 px, then 1e-3."""
    if variant == "pioneer":
        return {r: 1e-3 for r in DEFAULT_BATCH_SIZES}
    return {r: (5e-4 if r <= 32 else 1e-3) for r in DEFAULT_BATCH_SIZES}


def default_margins(variant: str) -> dict[int, float]:
    """Balanced Pioneer KL margin M by resolution (code scale; notes/backbones.md 2.3 celebaHQ row):
    0.05 up to 32 px, 0.02 at 64-128 px, 0.04 from 256 px. Pioneer has no margin (0)."""
    if variant == "pioneer":
        return {r: 0.0 for r in DEFAULT_BATCH_SIZES}
    return {r: (0.05 if r <= 32 else 0.02 if r <= 128 else 0.04) for r in DEFAULT_BATCH_SIZES}


@dataclass(frozen=True)
class PhaseState:
    phase: int
    resolution: int
    alpha: float  # fade-in weight of the newest block (1 outside the fade-in)
    samples_in_phase: int
    stabilising: bool  # second part of a phase (and everything after the last phase)
    batch_size: int
    lr: float
    margin: float

    @property
    def fading(self) -> bool:
        return self.phase > 0 and self.alpha < 1.0


def _per_resolution(value: Union[None, int, float, Mapping[int, float]], default: Mapping[int, float]) -> dict[int, float]:
    if value is None:
        return dict(default)
    if isinstance(value, Mapping):
        out = dict(default)
        out.update({int(k): v for k, v in value.items()})
        return out
    return {r: value for r in default}


class ProgressiveSchedule:
    """Maps the number of training images seen so far to a :class:`PhaseState`.

    ``batch_sizes``, ``learning_rates`` and ``margins`` are either one value for every resolution or a
    ``{resolution: value}`` mapping (missing resolutions keep the defaults).
    """

    def __init__(
        self,
        max_resolution: int,
        images_per_phase: Union[int, Mapping[int, int]],
        variant: str = "balanced",
        batch_sizes: Union[None, int, Mapping[int, int]] = None,
        learning_rates: Union[None, float, Mapping[int, float]] = None,
        margins: Union[None, float, Mapping[int, float]] = None,
        fade_fraction: float = 0.5,
    ) -> None:
        if not 0.0 < fade_fraction <= 1.0:
            raise ValueError(f"fade_fraction must be in (0, 1], got {fade_fraction}")
        self.resolutions = []
        r = 4
        while r <= max_resolution:
            self.resolutions.append(r)
            r *= 2
        if not self.resolutions or self.resolutions[-1] != max_resolution:
            raise ValueError(f"max_resolution must be a power of two >= 4, got {max_resolution}")
        self.max_phase = len(self.resolutions) - 1
        if isinstance(images_per_phase, Mapping):
            missing = [r for r in self.resolutions if r not in {int(k) for k in images_per_phase}]
            if missing:
                raise ValueError(f"images_per_phase has no length for {', '.join(f'{r} px' for r in missing)}")
            lengths = {int(k): int(v) for k, v in images_per_phase.items()}
            self.phase_lengths = [lengths[r] for r in self.resolutions]
        else:
            self.phase_lengths = [int(images_per_phase)] * len(self.resolutions)
        if min(self.phase_lengths) < 1:
            raise ValueError(f"images per phase must be >= 1, got {self.phase_lengths}")
        self.phase_starts = [sum(self.phase_lengths[:p]) for p in range(len(self.phase_lengths))]
        self.fade_fraction = float(fade_fraction)
        self.batch_sizes = {k: int(v) for k, v in _per_resolution(batch_sizes, DEFAULT_BATCH_SIZES).items()}
        self.learning_rates = _per_resolution(learning_rates, default_learning_rates(variant))
        self.margins = _per_resolution(margins, default_margins(variant))
        for r in self.resolutions:
            if self.batch_sizes[r] < 2:
                raise ValueError(f"batch size at {r} px must be >= 2 (the empirical KL needs a batch), got {self.batch_sizes[r]}")

    @property
    def growth_images(self) -> int:
        """Images until the last phase starts plus one full last phase."""
        return sum(self.phase_lengths)

    def at(self, samples: int) -> PhaseState:
        phase = max(p for p, start in enumerate(self.phase_starts) if start <= max(samples, 0))
        in_phase = samples - self.phase_starts[phase]
        fade_len = self.fade_fraction * self.phase_lengths[phase]
        alpha = 1.0 if phase == 0 else min(1.0, in_phase / fade_len)
        res = self.resolutions[phase]
        return PhaseState(
            phase=phase,
            resolution=res,
            alpha=float(alpha),
            samples_in_phase=int(in_phase),
            stabilising=in_phase >= fade_len,
            batch_size=self.batch_sizes[res],
            lr=float(self.learning_rates[res]),
            margin=float(self.margins[res]),
        )

    def describe(self) -> str:
        return "\n".join(
            f"{r:>5} px  {n:>9} images  batch {self.batch_sizes[r]:>4}  lr {self.learning_rates[r]:.0e}  margin {self.margins[r]:.3f}"
            for r, n in zip(self.resolutions, self.phase_lengths)
        )


def fade_images(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Blend training images during a fade-in: ``alpha x + (1 - alpha) up(down(x))`` for ``(B, 3, H, W)``
    (the previous resolution's detail level, nearest-upsampled back), so the data grows with the nets."""
    if alpha >= 1.0:
        return x
    coarse = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    return alpha * x + (1.0 - alpha) * coarse
