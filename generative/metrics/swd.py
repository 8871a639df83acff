"""Sliced Wasserstein distance between point sets, and PGGAN's multi-scale SWD between image sets
(Laplacian-pyramid patch descriptors, Karras et al. 2018).

Ours, because no maintained package computes PGGAN's image SWD: the metric is the pyramid, the patch
descriptors and their per-channel normalisation, which exist only in PGGAN's TensorFlow research code
(tests/test_metrics.py checks the pyramid against OpenCV's ``pyrDown`` / ``pyrUp``). The point-set part
is 20 lines; POT's ``ot.sliced_wasserstein_distance`` would add a large dependency and draw other
directions (other values for the same seed), so the exact 1-D distances (checked against SciPy's
``wasserstein_distance``) stay here too.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from generative.metrics.batches import Images, iter_batches

__all__ = ["sliced_wasserstein", "laplacian_pyramid", "swd_images"]


def _generator(seed: Union[int, torch.Generator, None]) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


def _wasserstein_1d(pa: Tensor, pb: Tensor, p: int) -> Tensor:
    """Per-column p-Wasserstein^p between empirical 1-D distributions ``(Na, K)``, ``(Nb, K)``: the
    integral over u in (0, 1) of |Fa^-1(u) - Fb^-1(u)|^p, exact for any Na, Nb."""
    pa, pb = pa.sort(0).values, pb.sort(0).values
    na, nb = len(pa), len(pb)
    if na == nb:
        return (pa - pb).abs().pow(p).mean(0)
    u = torch.unique(torch.cat([torch.arange(1, na + 1, dtype=torch.float64) / na, torch.arange(1, nb + 1, dtype=torch.float64) / nb]))
    widths = torch.diff(u, prepend=u.new_zeros(1))
    mid = u - widths / 2  # strictly inside each constant piece of both quantile functions
    ia = (mid * na).floor().long().clamp_(max=na - 1).to(pa.device)
    ib = (mid * nb).floor().long().clamp_(max=nb - 1).to(pb.device)
    return ((pa[ia] - pb[ib]).abs().pow(p) * widths.to(pa)[:, None]).sum(0)


def sliced_wasserstein(
    a: Tensor,
    b: Tensor,
    n_directions: int = 128,
    repeats: int = 4,
    p: int = 1,
    seed: Union[int, torch.Generator, None] = 0,
) -> float:
    """Sliced Wasserstein distance between point sets ``a (Na, D)`` and ``b (Nb, D)``.

    ``repeats`` batches of ``n_directions`` random unit directions; along each, the exact 1-D
    p-Wasserstein distance of the projections, raised to p, averaged over all directions, and the p-th
    root taken (for p = 1 this is PGGAN's ``sliced_wasserstein``: the mean absolute difference of sorted
    projections). Unequal set sizes are handled exactly. Seeded.
    """
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"point sets must be (Na, D) and (Nb, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) == 0 or len(b) == 0:
        raise ValueError("sliced Wasserstein distance needs non-empty point sets")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    g = _generator(seed)
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    a, b = a.to(dtype), b.to(a.device, dtype)
    total = []
    for _ in range(int(repeats)):
        dirs = torch.randn(a.shape[1], int(n_directions), generator=g, dtype=torch.float64)
        dirs = (dirs / dirs.norm(dim=0, keepdim=True)).to(a.device, dtype)
        total.append(_wasserstein_1d(a @ dirs, b @ dirs, p))
    return float(torch.cat(total).double().mean() ** (1.0 / p))


_GAUSS5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x: Tensor, gain: float = 1.0) -> Tensor:
    k = (torch.outer(_GAUSS5, _GAUSS5) * gain).to(x).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=x.shape[1])


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """Laplacian pyramid of ``(B, C, H, W)`` images as in PGGAN's SWD (cv2.pyrDown / pyrUp with
    mirror borders): ``levels`` tensors at H, H/2, ...; all but the last are band-pass, the last is
    the Gaussian low-pass residual."""
    pyr = [x.float()]
    for _ in range(1, int(levels)):
        down = _blur(pyr[-1])[:, :, ::2, ::2]
        up = torch.zeros_like(pyr[-1])
        up[:, :, ::2, ::2] = down
        pyr[-1] = pyr[-1] - _blur(up, gain=4.0)
        pyr.append(down)
    return pyr


def _patches(level: Tensor, size: int, per_image: int, g: torch.Generator) -> Tensor:
    """``per_image`` random ``size x size`` patches of each image: ``(B * per_image, C, size, size)``."""
    B, C, H, W = level.shape
    ys = torch.randint(0, H - size + 1, (B, per_image), generator=g)
    xs = torch.randint(0, W - size + 1, (B, per_image), generator=g)
    off = torch.arange(size)
    rows = (ys[..., None] + off).to(level.device)  # (B, P, size)
    cols = (xs[..., None] + off).to(level.device)
    bi = torch.arange(B, device=level.device)[:, None, None, None, None]
    ci = torch.arange(C, device=level.device)[None, None, :, None, None]
    out = level[bi, ci, rows[:, :, None, :, None], cols[:, :, None, None, :]]  # (B, P, C, size, size)
    return out.reshape(B * per_image, C, size, size)


def _pyramid_levels(resolution: int, min_resolution: int) -> int:
    levels, r = 0, resolution
    while r >= min_resolution:
        levels, r = levels + 1, r // 2
    return levels


def _descriptors(images: Images, batch_size: int, patch: int, per_image: int, min_res: int, seed) -> tuple[list[Tensor], int]:
    g = _generator(seed)
    per_level: Optional[list[list[Tensor]]] = None
    res = None
    for b in iter_batches(images, batch_size):
        if b.ndim != 4 or b.shape[2] != b.shape[3]:
            raise ValueError(f"SWD expects square (B, C, H, H) images, got {tuple(b.shape)}")
        if res is None:
            res = int(b.shape[2])
            levels = _pyramid_levels(res, min_res)
            if levels == 0 or min_res < patch:
                raise ValueError(f"SWD needs images of at least {max(min_res, patch)} px (min_resolution >= patch), got {res}")
            per_level = [[] for _ in range(levels)]
        elif b.shape[2] != res:
            raise ValueError(f"all images must have the same size, got {res} and {b.shape[2]}")
        for k, lvl in enumerate(laplacian_pyramid(b, len(per_level))):
            per_level[k].append(_patches(lvl, patch, per_image, g).cpu())
    if per_level is None:
        raise ValueError("SWD: no images")
    out = []
    for chunks in per_level:
        d = torch.cat(chunks)
        # PGGAN normalises each set's descriptors per colour channel before comparing.
        d = (d - d.mean((0, 2, 3), keepdim=True)) / d.std((0, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-8)
        out.append(d.reshape(len(d), -1))
    return out, res


def swd_images(
    images_a: Images,
    images_b: Images,
    patch: int = 7,
    patches_per_image: int = 128,
    n_directions: int = 128,
    repeats: int = 4,
    min_resolution: int = 16,
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """PGGAN's sliced Wasserstein distance between two image sets (Karras et al. 2018).

    Each image's Laplacian pyramid (levels down to ``min_resolution`` px) gives
    ``patches_per_image`` random ``patch x patch`` descriptors per level; descriptors are normalised
    per colour channel within each set; per level the SWD of the two descriptor sets is computed
    with ``repeats x n_directions`` random directions. Returns ``{resolution: SWD x 1e3, ...,
    'mean': average over levels}`` (PGGAN reports SWD x 10^3). Patch positions come from ``seed``
    and are drawn the same way for both sets, so identical sets score exactly 0.
    """
    da, res = _descriptors(images_a, batch_size, patch, patches_per_image, min_resolution, seed)
    db, res_b = _descriptors(images_b, batch_size, patch, patches_per_image, min_resolution, seed)
    if res != res_b:
        raise ValueError(f"both image sets must have the same resolution, got {res} and {res_b}")
    out = {}
    for k, (a, b) in enumerate(zip(da, db)):
        out[res >> k] = 1e3 * sliced_wasserstein(a, b, n_directions, repeats, seed=int(seed) + 1 + k)
    out["mean"] = float(np.mean(list(out.values())))
    return out
