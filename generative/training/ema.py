"""Exponential moving average of decoder weights (thesis eq. 3.1); the EMA copy is evaluated and shipped."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ema_update"]


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float = 0.999) -> None:
    """``p_ema <- decay * p_ema + (1 - decay) * p`` for every parameter; buffers (e.g. spectral-norm
    ``u`` vectors) are copied from ``model``, whose power iteration keeps them current.

    ``ema`` and ``model`` must have the same architecture (same parameter and buffer names).
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
    params = dict(model.named_parameters())
    for name, p_ema in ema.named_parameters():
        p_ema.lerp_(params[name].detach(), 1.0 - decay)
    buffers = dict(model.named_buffers())
    for name, b_ema in ema.named_buffers():
        b_ema.copy_(buffers[name])
