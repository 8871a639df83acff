"""Scale-specific style mixing with a backbone that decodes one latent per resolution block (an
automodulator; thesis 3.3, 4.3).

Scales name groups of decoder blocks: ``coarse`` = the 4-8 px blocks, ``intermediate`` = 16-64 px,
``fine`` = 128 px and up (``backbone.block_scales()`` gives the scale of every block). Latents are
``(B, D)`` CPU tensors; images ``(B, 3, r, r)`` in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor

from generative.backbones.codec import decode_mixed_batched, encode_images, sample_latents

__all__ = ["SCALES", "is_automodulator", "blocks_by_scale", "fill_scales", "per_block", "mixing_grid", "conditional_latents"]

SCALES = ("coarse", "intermediate", "fine")


def is_automodulator(backbone) -> bool:
    """Whether ``backbone`` decodes per-block latents (``decode_mixed`` and ``block_scales``)."""
    return hasattr(backbone, "decode_mixed") and hasattr(backbone, "block_scales")


def blocks_by_scale(backbone) -> dict[str, list[int]]:
    """``{scale: block indices}`` at the backbone's resolution, e.g. 32 px: coarse [0, 1], intermediate
    [2], fine []."""
    scales = list(backbone.block_scales())
    return {s: [p for p, name in enumerate(scales) if name == s] for s in SCALES}


def fill_scales(given: dict) -> dict:
    """Complete ``{scale: value}`` over all three scales: a missing scale takes the value of the nearest
    coarser scale given, or (for scales coarser than every given one) the coarsest given value."""
    if not given:
        raise ValueError("give an image for at least one scale: --coarse, --intermediate or --fine")
    out, last = {}, given[next(s for s in SCALES if s in given)]
    for s in SCALES:
        last = given.get(s, last)
        out[s] = last
    return out


def per_block(backbone, by_scale: dict) -> list:
    """``by_scale`` values (one per scale) laid out as one entry per decoder block."""
    return [by_scale[s] for s in backbone.block_scales()]


def mixing_grid(backbone, x_rows: Tensor, x_cols: Tensor, cut: int, batch_size: int = 16) -> Tensor:
    """The style-mixing grid as ``((R + 1) * (C + 1), 3, r, r)`` images, row-major: a blank (white) corner,
    the column sources, then per row its source and the mixes ``blocks < cut from row, rest from column``.
    ``x_rows (R, 3, r, r)``, ``x_cols (C, 3, r, r)`` in [-1, 1]."""
    za, zb = encode_images(backbone, x_rows, batch_size), encode_images(backbone, x_cols, batch_size)
    n_r, n_c, nb = len(za), len(zb), len(backbone.block_scales())
    a = za.repeat_interleave(n_c, dim=0)  # row i, column j at i * C + j
    b = zb.repeat(n_r, 1)
    cells = decode_mixed_batched(backbone, [a] * cut + [b] * (nb - cut), batch_size).reshape(n_r, n_c, *x_rows.shape[1:])
    corner = torch.ones(1, *x_rows.shape[1:])
    rows = [torch.cat([corner, x_cols])] + [torch.cat([x_rows[i : i + 1], cells[i]]) for i in range(n_r)]
    return torch.cat(rows)


def conditional_latents(backbone, fixed: dict, n: int, generator: torch.Generator) -> list[Tensor]:
    """Per-block latents ``(n, D)`` (CPU) for conditional sampling: blocks of the scales in
    ``fixed = {scale: (1, D) latent}`` use that latent in every sample, the others fresh prior draws (one
    per sample and block)."""
    out = []
    for s in backbone.block_scales():
        out.append(fixed[s].expand(n, -1).clone() if s in fixed else sample_latents(backbone, n, generator))
    return out
