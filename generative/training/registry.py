"""Which model and trainer :func:`generative.training.loop.train` builds for a ``TrainConfig.variant``.

Each trainer module registers its variants (``register_trainer``) when it is imported, and importing
:mod:`generative.training` imports every built-in one, so the loop looks a variant up here instead of
importing the trainers (which import the loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["TrainerEntry", "register_trainer", "trainer_entry", "registered_variants"]


@dataclass(frozen=True)
class TrainerEntry:
    """One variant: ``model_class(make_config(**widths))`` trained by ``trainer_class(model, config, ctx)``.

    ``make_config`` takes the width fields of ``TrainConfig`` (``resolution``, ``latent_dim``,
    ``channel_base``, ``max_channels``, ``min_channels``) and returns the model config;
    ``losses_class`` is the dataclass (with ``from_dict`` / ``to_dict``) of the variant's own loss
    settings, held in ``TrainConfig.automodulator``, or ``None`` if it has none; ``adam_betas`` are
    the default Adam betas of the variant.
    """

    model_class: type
    trainer_class: type
    make_config: Callable[..., object]
    losses_class: Optional[type] = None
    adam_betas: tuple = (0.0, 0.9)


_TRAINERS: dict[str, TrainerEntry] = {}


def register_trainer(variant: str, entry: TrainerEntry) -> None:
    """Make ``variant`` trainable; a variant registered twice must get the same classes."""
    existing = _TRAINERS.get(variant)
    if existing is not None and existing.trainer_class.__qualname__ != entry.trainer_class.__qualname__:
        raise ValueError(f"training variant '{variant}' is already registered to {existing.trainer_class.__qualname__}")
    _TRAINERS[variant] = entry


def registered_variants() -> list[str]:
    """Every variant a training run can take, in registration order."""
    return list(_TRAINERS)


def trainer_entry(variant: str) -> TrainerEntry:
    """The registered entry of ``variant``; ``ValueError`` listing the known variants otherwise."""
    try:
        return _TRAINERS[variant]
    except KeyError:
        known = ", ".join(_TRAINERS) or "none (import generative.training)"
        raise ValueError(f"unknown training variant '{variant}'; known variants: {known}") from None
