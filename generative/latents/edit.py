"""Latent-space uses of a backbone (thesis 2.3.1): random samples, reconstruction, interpolation,
attribute vectors, and batched decoding of per-block (style-mixed) latents. The basics (encode, decode,
sample, project, lerp) are :mod:`generative.backbones.codec`'s, re-exported here as part of the editing API.

Every function takes any object that satisfies the :class:`generative.backbones.registry.Backbone` protocol.
Latents are ``(B, *latent_shape)``; images ``(B, 3, H, W)`` float in [-1, 1]. For a backbone whose
``latent_geometry`` is ``'sphere'`` the latent of one image is the whole ``prod(latent_shape)``-vector,
which has unit L2 norm; ``'euclidean'`` latents are unconstrained. Batched helpers run the backbone
on its own device under ``torch.no_grad`` and return float32 tensors on the CPU.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

from viewgp.sphere import angle_between, slerp  # noqa: F401  (re-exported: part of the editing API)

from generative.backbones.codec import (GEOMETRIES, _check_images, _check_latents, _latent_shape,  # noqa: F401
                                        decode_latents, decode_mixed_batched, encode_images, latent_geometry, lerp,
                                        project_latents, random_samples, reconstruct, sample_latents)
from generative.backbones.registry import Backbone

__all__ = [
    "GEOMETRIES",
    "latent_geometry",
    "project_latents",
    "sample_latents",
    "random_samples",
    "encode_images",
    "decode_latents",
    "decode_mixed_batched",
    "reconstruct",
    "slerp",
    "lerp",
    "angle_between",
    "interpolate",
    "interpolation_grid",
    "attribute_vector",
    "edit_latents",
    "apply_attribute",
]

# Thesis 2.3.1: "the scale was found to be well-behaved in the range [-2.0, 2.0]".
DEFAULT_LAMBDAS = (-2.0, -1.0, 0.0, 1.0, 2.0)


# ------------------------------------------------------------------------------------- interpolation
def interpolate(backbone: Backbone, z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """``steps`` latents from ``z0`` to ``z1`` (both ends included), by slerp for sphere latents and
    lerp for euclidean ones. ``z0``, ``z1``: ``latent_shape`` or ``(B, *latent_shape)``; returns
    ``(steps, *z0.shape)``."""
    if int(steps) < 2:
        raise ValueError(f"interpolation needs at least 2 steps, got {steps}")
    shape = _latent_shape(backbone)
    z0, z1 = torch.as_tensor(z0), torch.as_tensor(z1)
    single = tuple(z0.shape) == shape
    z0 = _check_latents(backbone, z0[None] if single else z0, "z0")
    z1 = _check_latents(backbone, z1[None] if single else z1, "z1")
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    t = torch.linspace(0, 1, int(steps), dtype=z0.dtype, device=z0.device)[:, None]
    a, b = z0.reshape(len(z0), -1), z1.reshape(len(z1), -1)
    path = slerp(a, b, t) if latent_geometry(backbone) == "sphere" else lerp(a, b, t)
    path = path.reshape((int(steps),) + tuple(z0.shape))
    return path[:, 0] if single else path


def interpolation_grid(backbone: Backbone, corners: Tensor, rows: int = 8, cols: int = 8) -> Tensor:
    """A ``(rows, cols, *latent_shape)`` grid spanned by four corner latents ``(4, *latent_shape)``
    ordered top-left, top-right, bottom-left, bottom-right (the layout of the original Pioneer
    ``evaluate.py``): the left and right edges interpolate down their columns, then every row
    interpolates from its left to its right edge (slerp on the sphere, lerp otherwise)."""
    corners = _check_latents(backbone, corners, "corners")
    if len(corners) != 4:
        raise ValueError(f"an interpolation grid needs 4 corner latents, got {len(corners)}")
    left = interpolate(backbone, corners[0], corners[2], rows)  # (rows, *S)
    right = interpolate(backbone, corners[1], corners[3], rows)
    return interpolate(backbone, left, right, cols).transpose(0, 1).contiguous()


# -------------------------------------------------------------------------------- attribute vectors
def attribute_vector(backbone: Backbone, images_with: Tensor, images_without: Tensor, batch_size: int = 16) -> Tensor:
    """The latent direction of an attribute (thesis 2.3.1): mean latent of images that have it minus
    mean latent of images that do not. Images ``(N, 3, r, r)`` in [-1, 1]; returns ``latent_shape``."""
    for name, imgs in (("images_with", images_with), ("images_without", images_without)):
        if len(imgs) == 0:
            raise ValueError(f"{name} is empty; an attribute vector needs exemplars on both sides")
    z_with = encode_images(backbone, _check_images(backbone, images_with, "images_with"), batch_size)
    z_without = encode_images(backbone, _check_images(backbone, images_without, "images_without"), batch_size)
    return z_with.mean(0) - z_without.mean(0)


def _lambdas(lambdas: Union[float, Sequence[float], Tensor]) -> Tensor:
    lam = torch.as_tensor(lambdas, dtype=torch.float32).reshape(-1)
    if lam.numel() == 0:
        raise ValueError("at least one attribute scale lambda is needed")
    if not bool(torch.isfinite(lam).all()):
        raise ValueError(f"attribute scales must be finite, got {lam.tolist()}")
    return lam


def edit_latents(z: Tensor, v: Tensor, lambdas: Union[float, Sequence[float], Tensor], geometry: str) -> Tensor:
    """``z + lambda v`` for every lambda: ``(B, *S)`` latents and a ``S``-shaped vector -> ``(L, B, *S)``,
    re-projected onto the unit sphere for sphere geometry."""
    z = torch.as_tensor(z)
    v = torch.as_tensor(v, dtype=z.dtype, device=z.device)
    if tuple(v.shape) != tuple(z.shape[1:]):
        raise ValueError(f"attribute vector shape {tuple(v.shape)} does not match latents {tuple(z.shape[1:])}")
    lam = _lambdas(lambdas).to(z)
    edited = z[None] + lam.reshape((-1,) + (1,) * z.ndim) * v
    flat = edited.reshape((-1,) + tuple(z.shape[1:]))
    return project_latents(flat, geometry).reshape(edited.shape)


def apply_attribute(
    backbone,
    images: Tensor,
    v: Tensor,
    lambdas: Union[float, Sequence[float], Tensor] = DEFAULT_LAMBDAS,
    batch_size: int = 16,
) -> Tensor:
    """Edit images along an attribute vector: ``decode(project(encode(x) + lambda v))``.

    ``images`` ``(B, 3, r, r)`` in [-1, 1], ``v`` of ``latent_shape``; returns ``(L, B, 3, r, r)``
    (lambda = 0 is the plain reconstruction). The thesis found lambda in [-2, 2] well-behaved on faces;
    the useful range is found empirically per attribute and model.
    """
    z = encode_images(backbone, images, batch_size)
    edited = edit_latents(z, v, lambdas, latent_geometry(backbone))
    L, B = edited.shape[:2]
    out = decode_latents(backbone, edited.reshape((L * B,) + tuple(z.shape[1:])), batch_size)
    return out.reshape(L, B, *out.shape[1:])
