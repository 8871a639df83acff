"""Exponential moving average of decoder weights (thesis eq. 3.1); the EMA copy is evaluated and shipped."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ema_update", "warmed_up_decay"]


def warmed_up_decay(decay: float, step: int) -> float:
    """The decay to use at update ``step`` (0-based): ``min(decay, (1 + step) / (10 + step))``.

    A fixed decay of 0.999 from the first step keeps ~74% of the *initial* weights after 300 updates, so
    an export of a short run decodes flat grey. The warm-up (TensorFlow's ``ExponentialMovingAverage``
    with ``num_updates``) averages over roughly the updates made so far and reaches ``decay`` after
    ``(10 decay - 1) / (1 - decay)`` updates (890 for 0.99, 1790 for 0.995, 8990 for 0.999); from there
    on it *is* the configured decay, so long runs are unchanged. It depends only on the step counter, so
    a resumed run continues exactly.
    """
    return min(float(decay), (1.0 + step) / (10.0 + step))


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
