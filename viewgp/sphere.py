"""The unit sphere: directions, angles and SLERP, written once for latents and quaternions alike.

Sphere latents (Pioneer, automodulator: ``(..., D)`` on the unit sphere) are interpolated along great
circles; :func:`viewgp.poses.slerp` is the same arc for unit quaternions after picking the short way
round (``q`` and ``-q`` are one rotation).
"""

from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["project_to_sphere", "unit_angle", "angle_between", "slerp"]


def project_to_sphere(z: Tensor, eps: float = 1e-12) -> Tensor:
    """``z / |z|`` along the last dimension (zero vectors stay zero)."""
    return z / z.norm(dim=-1, keepdim=True).clamp_min(eps)


def unit_angle(z0: Tensor, z1: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Unit endpoints ``(..., D)``, their dot product and angle (both ``(..., 1)``)."""
    n0, n1 = z0.norm(dim=-1, keepdim=True), z1.norm(dim=-1, keepdim=True)
    if bool((n0 == 0).any() or (n1 == 0).any()):
        raise ValueError("latent vectors must be non-zero to have a direction")
    a, b = z0 / n0, z1 / n1
    dot = (a * b).sum(-1, keepdim=True)
    # atan2 of the perpendicular component keeps the angle accurate near 0 and pi (acos does not).
    return a, b, dot, torch.atan2((b - dot * a).norm(dim=-1, keepdim=True), dot)


def angle_between(z0: Tensor, z1: Tensor) -> Tensor:
    """Angle in radians between ``(..., D)`` vectors, shape ``(...)``."""
    return unit_angle(torch.as_tensor(z0), torch.as_tensor(z1))[3][..., 0]


def slerp(z0: Tensor, z1: Tensor, t: Union[float, Tensor]) -> Tensor:
    """Spherical linear interpolation on the unit sphere between ``(..., D)`` vectors.

    The endpoints are normalised first, so the result always has unit norm; ``t`` = 0 gives
    ``z0 / |z0|``, ``t`` = 1 gives ``z1 / |z1|``, and the angle moves at constant speed in ``t``.
    ``t`` broadcasts against ``z0.shape[:-1]`` (e.g. ``t`` of shape ``(T, 1)`` with ``(B, D)`` endpoints
    gives ``(T, B, D)``); ``t`` outside [0, 1] continues along the same great circle. Antipodal
    endpoints have no unique great circle: ``ValueError``.
    """
    z0, z1 = torch.as_tensor(z0), torch.as_tensor(z1)
    if z0.shape != z1.shape:
        raise ValueError(f"slerp endpoints must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    a, b, dot, omega = unit_angle(z0, z1)
    sin_omega = torch.sin(omega)
    tiny = 1e-6 if a.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-12
    antipodal = (sin_omega < tiny) & (dot < 0)
    if bool(antipodal.any()):
        idx = torch.nonzero(antipodal.reshape(-1)).reshape(-1)[0].item()
        raise ValueError(f"slerp endpoints at flat index {idx} are antipodal; the great circle between them is not unique")
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)[..., None]
    near = sin_omega < tiny  # (almost) identical endpoints: the chord is the arc
    safe_sin = torch.where(near, torch.ones_like(sin_omega), sin_omega)
    w0 = torch.where(near, 1 - t, torch.sin((1 - t) * omega) / safe_sin)
    w1 = torch.where(near, t, torch.sin(t * omega) / safe_sin)
    return F.normalize(w0 * a + w1 * b, dim=-1)
