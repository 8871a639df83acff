"""Test-time adaptation: fine-tune a backbone on one run's observed frames before encoding it.

A backbone trained on other footage reconstructs a new scene imperfectly; the observed (key) frames
of the run are the only pixels of that scene we may learn from (the frames the run is scored on are
never shown). :func:`adapt` minimises the L1 reconstruction error ``|D(E(x)) - x|`` (AGE's image
term) over the observed frames with Adam, updating exactly the weights ``encode`` and ``decode`` use
(for our autoencoders: the encoder and the EMA decoder), on a copy of the backbone.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor

__all__ = ["adapt"]


def adapt(
    backbone,
    images: Tensor,
    steps: int,
    lr: float = 1e-4,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    flip: bool = True,
    bf16: bool = False,
) -> tuple[object, list[float]]:
    """A copy of ``backbone`` fine-tuned for ``steps`` Adam steps on ``images`` ``(N, 3, r, r)`` in
    [-1, 1]; returns ``(adapted backbone in eval mode, per-step L1 losses)``.

    Batches of ``batch_size`` are drawn with replacement from a seeded generator (random horizontal
    flips with ``flip``). ``steps = 0`` returns an unchanged copy. ``bf16``: forward passes under
    bfloat16 autocast (weights and optimizer stay float32; see :mod:`generative.precision` for where
    that is faster).
    """
    if not getattr(backbone, "has_encoder", False):
        raise ValueError(f"test-time adaptation needs an encoder; this backbone (kind '{getattr(backbone, 'kind', '?')}') has none")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"adaptation steps must be a non-negative integer, got {steps!r}")
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"adaptation needs a batch of images (N, 3, r, r), got {tuple(images.shape)}")
    model = copy.deepcopy(backbone).eval()
    device = next(model.parameters()).device
    images = images.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.99))
    g = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    from tqdm.auto import tqdm

    bar = tqdm(range(int(steps)), desc="adapt backbone", unit="step", disable=not progress)
    with torch.enable_grad():
        for _ in bar:
            idx = torch.randint(0, images.shape[0], (min(batch_size, images.shape[0]),), generator=g)
            x = images[idx.to(device)]
            if flip:
                mirror = (torch.rand(x.shape[0], generator=g) < 0.5).to(device)
                x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = (model.decode(model.encode(x)).float() - x).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(l1=f"{losses[-1]:.4f}")
    for p in params:
        p.grad = None
    return model.eval(), losses
