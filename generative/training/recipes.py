"""Named training recipes: presets of :class:`~generative.training.loop.TrainConfig` fields.

A recipe fixes the losses, optimiser and EMA; the network size, schedule and data stay the caller's.
``viewgp train --recipe NAME`` applies one and lets individual options override any of its fields.

* ``paper``: the published settings (Pioneer, Publication I; Balanced Pioneer, Publication II): the KL
  game at weight 0.1, Adam betas (0, 0.99) for Pioneer / (0, 0.9) for Balanced, two decoder updates per
  encoder update, the decoder trained only through the latent cycle (no pixel loss), EMA 0.999. Measured:
  a 32 px Balanced Pioneer on rendered turntables (``examples/train_pioneer_32px.py``, 64-channel nets)
  reached a held-out RMSE of 0.1035 against 0.141 for the mean image after an hour on 2 CPU cores; it
  needs GPU-length runs (millions of images) to reconstruct well.
* ``reconstruction``: what trains in a short CPU run: the KL game off, AGE's generator-side L1
  reconstruction on (``decoder_recon_weight=1``), Adam betas (0.5, 0.99), lr 1e-3, one decoder update,
  EMA 0.995, channels-last activations and ``precision="auto"``: bfloat16 autocast where the device
  computes it natively (2.3x the float32 images/s on AVX512-BF16 and AMX CPUs), float32 elsewhere, where
  bfloat16 is emulated and many times slower (``benchmarks/training_precision.py``; docs/performance.md). Measured: the same 32 px turntable setting
  reached 0.079 against 0.141 for the mean image in 26 min on one CPU thread (with the KL game at 0.02);
  the bundled default backbone was trained with it; and a 16 px run of ``viewgp train balanced --recipe
  reconstruction`` on 12,000 procedural images (32-channel nets, docs/backbones.md) reached a held-out RMSE of 0.159
  against 0.237 for the mean image in 75 s on one CPU thread.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RECIPES", "recipe_fields"]

#: Recipe name -> the TrainConfig fields it sets (``betas=None``: the variant's published betas).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": dict(kl_weight=0.1, betas=None, lr=None, decoder_updates=2, decoder_recon_weight=0.0,
                  ema_decay=0.999, precision="fp32", channels_last=False),
    "reconstruction": dict(kl_weight=0.0, betas=(0.5, 0.99), lr=1e-3, decoder_updates=1, decoder_recon_weight=1.0,
                           ema_decay=0.995, precision="auto", channels_last=True),
}


def recipe_fields(name: str) -> dict[str, Any]:
    """The fields recipe ``name`` sets (a copy); ``ValueError`` listing the recipes for an unknown one."""
    if name not in RECIPES:
        raise ValueError(f"unknown training recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])
