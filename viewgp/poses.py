"""Camera orientations and poses: conversions, validation, interpolation, IMU integration.

Conventions (used everywhere in viewgp):

* Rotations are ``(N, 3, 3)`` matrices. A pose ``(R, t)`` is **camera-to-world**: a point ``x_c`` in
  camera coordinates maps to ``R @ x_c + t`` in the world; ``t`` is the camera centre.
* Unit quaternions default to **xyzw** (scalar last), the order of TUM files, ARKit, ROS and scipy.
  Every quaternion function takes ``scalar_first=True`` for the **wxyz** order (EuRoC, COLMAP).
  Returned quaternions are canonical: ``w >= 0``.
* Flat pose features, the input of the kernels in :mod:`viewgp.kernels`, are ``(N, 12)``:
  ``vec(R)`` row-major (9) followed by ``t`` (3), optionally followed by a timestamp column ``(N, 13)``.

All functions are batched torch, differentiable where it makes sense, and keep the input dtype
(float64 is recommended for GP work).

Comparing two estimates of one trajectory (e.g. structure from motion against a reference model,
which agree only up to a similarity): :func:`umeyama` and :func:`align_poses`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from viewgp import sphere

__all__ = [
    "ROT_DIMS",
    "TRANS_DIMS",
    "TIME_DIM",
    "as_rotations",
    "skew",
    "so3_exp",
    "so3_log",
    "quat_to_matrix",
    "matrix_to_quat",
    "validate_rotations",
    "check_finite",
    "project_to_so3",
    "geodesic_angle",
    "relative_trace",
    "slerp",
    "interpolate_poses",
    "euler_to_matrix",
    "matrix_to_euler",
    "integrate_gyroscope",
    "random_rotations",
    "pose_features",
    "split_pose_features",
    "umeyama",
    "PoseAlignment",
    "align_poses",
]

#: Columns of the flat pose features holding vec(R), t and the optional timestamp.
ROT_DIMS = tuple(range(0, 9))
TRANS_DIMS = (9, 10, 11)
TIME_DIM = 12


def _as_float_tensor(x, name: str) -> Tensor:
    t = torch.as_tensor(x)
    if not torch.is_floating_point(t):
        t = t.to(torch.float64)
    return t


def check_finite(x: Tensor, name: str) -> None:
    """Raise ``ValueError`` naming the first row of ``x`` (leading dim) with a NaN or infinity."""
    if x.numel() == 0:
        return
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1) if x.dim() > 1 else x.reshape(-1, 1)).all(dim=1)
    if bool(bad.any()):
        idx = int(torch.nonzero(bad)[0])
        raise ValueError(f"{name}: non-finite value (NaN or inf) at index {idx} ({int(bad.sum())} rows in all)")


def as_rotations(R, name: str = "rotations") -> Tensor:
    """Coerce to a float ``(N, 3, 3)`` tensor (a single ``(3, 3)`` becomes ``(1, 3, 3)``)."""
    R = _as_float_tensor(R, name)
    if R.dim() == 2:
        R = R.unsqueeze(0)
    if R.dim() != 3 or R.shape[-2:] != (3, 3):
        raise ValueError(f"{name}: expected shape (N, 3, 3), got {tuple(R.shape)}")
    return R


def skew(v: Tensor) -> Tensor:
    """Cross-product matrices ``(..., 3, 3)`` of vectors ``(..., 3)``: ``skew(a) @ b == a x b``."""
    z = torch.zeros_like(v[..., 0])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return torch.stack(
        [torch.stack([z, -w, y], -1), torch.stack([w, z, -x], -1), torch.stack([-y, x, z], -1)], -2
    )


def so3_exp(rotvec: Tensor) -> Tensor:
    """Rodrigues' formula: rotation vectors ``(..., 3)`` (axis * angle, radians) -> ``(..., 3, 3)``."""
    rotvec = _as_float_tensor(rotvec, "rotvec")
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True).unsqueeze(-1)
    theta = theta2.clamp_min(0).sqrt()
    small = theta < 1e-4
    # Taylor series near zero keeps the map smooth and differentiable at the identity.
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1 - theta2 / 6 + theta2**2 / 120, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - theta2 / 24 + theta2**2 / 720, (1 - torch.cos(safe)) / (safe * safe))
    K = skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(K)
    return eye + a * K + b * (K @ K)


def so3_log(R: Tensor) -> Tensor:
    """Rotation vectors ``(..., 3)`` of rotations ``(..., 3, 3)``; angles in ``[0, pi]``.

    Computed through the quaternion, which is accurate at every angle including ``pi``.
    """
    q = matrix_to_quat(R)  # xyzw, w >= 0
    v, w = q[..., :3], q[..., 3]
    n = v.norm(dim=-1)
    angle = 2 * torch.atan2(n, w)
    small = n < 1e-8
    scale = torch.where(small, 2.0 / w.clamp_min(1e-12), angle / torch.where(small, torch.ones_like(n), n))
    return v * scale.unsqueeze(-1)


def quat_to_matrix(q, scalar_first: bool = False) -> Tensor:
    """Unit quaternions ``(..., 4)`` -> rotation matrices ``(..., 3, 3)``.

    ``scalar_first=False`` reads xyzw, ``True`` reads wxyz. Inputs are normalised; a zero or
    non-finite quaternion raises ``ValueError`` naming its index.
    """
    q = _as_float_tensor(q, "quaternions")
    if q.shape[-1] != 4:
        raise ValueError(f"quaternions: last dimension must be 4, got shape {tuple(q.shape)}")
    flat = q.reshape(-1, 4)
    check_finite(flat, "quaternions")
    norms = flat.norm(dim=-1)
    if bool((norms < 1e-12).any()):
        idx = int(torch.nonzero(norms < 1e-12)[0])
        raise ValueError(f"quaternions: zero-norm quaternion at index {idx}")
    q = q / q.norm(dim=-1, keepdim=True)
    if scalar_first:
        w, x, y, z = q.unbind(-1)
    else:
        x, y, z, w = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        -1,
    )
    return R.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(R, scalar_first: bool = False) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> canonical unit quaternions ``(..., 4)`` with ``w >= 0``.

    Uses the numerically stable branch selection (largest diagonal term), so no branch divides by a
    small number. Output order xyzw, or wxyz with ``scalar_first=True``.
    """
    R = _as_float_tensor(R, "rotations")
    m = R.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    tr = m00 + m11 + m22
    # Four candidate (unnormalised) quaternions, each exact when its denominator is largest.
    cands = torch.stack(
        [
            torch.stack([m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1], 1 + tr], -1),
            torch.stack([1 + m00 - m11 - m22, m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 2, 1] - m[:, 1, 2]], -1),
            torch.stack([m[:, 0, 1] + m[:, 1, 0], 1 - m00 + m11 - m22, m[:, 1, 2] + m[:, 2, 1], m[:, 0, 2] - m[:, 2, 0]], -1),
            torch.stack([m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 - m00 - m11 + m22, m[:, 1, 0] - m[:, 0, 1]], -1),
        ],
        1,
    )  # (B, 4 candidates, xyzw)
    choice = torch.stack([tr, m00, m11, m22], -1).argmax(-1)
    q = cands[torch.arange(m.shape[0]), choice]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, 3:4] < 0, -q, q)
    if scalar_first:
        q = q[:, [3, 0, 1, 2]]
    return q.reshape(R.shape[:-2] + (4,))


def validate_rotations(R, name: str = "rotations", atol: float = 1e-4) -> Tensor:
    """Check that ``R`` is a batch of proper rotations and return it as ``(N, 3, 3)``.

    Raises ``ValueError`` naming the first bad index when a matrix is non-finite, not orthonormal
    (``max |R^T R - I| > atol``) or a reflection (``det < 0``).
    """
    R = as_rotations(R, name)
    check_finite(R, name)
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    err = (R.transpose(-1, -2) @ R - eye).abs().amax(dim=(-1, -2))
    bad = err > atol
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"{name}: matrix at index {i} is not orthonormal (max |R^T R - I| = {float(err[i]):.3g} > {atol}); "
            f"{int(bad.sum())} bad matrices in all. Use viewgp.poses.project_to_so3 to re-orthonormalise."
        )
    det = torch.linalg.det(R)
    bad = det < 0
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise ValueError(f"{name}: matrix at index {i} has determinant {float(det[i]):.3g} (a reflection, not a rotation)")
    return R


def project_to_so3(M) -> Tensor:
    """Nearest rotations (Frobenius norm) to matrices ``(..., 3, 3)``, by SVD with the det sign fixed."""
    M = _as_float_tensor(M, "matrices")
    U, _, Vh = torch.linalg.svd(M)
    d = torch.sign(torch.linalg.det(U @ Vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return U @ D @ Vh


def relative_trace(R1: Tensor, R2: Tensor) -> Tensor:
    """``tr(I - R1^T R2) = 4 sin^2(theta / 2)`` for broadcastable rotation batches ``(..., 3, 3)``.

    Computed as ``3 - vec(R1) . vec(R2)``, no arccos involved.
    """
    return 3.0 - (R1 * R2).sum(dim=(-1, -2))


def geodesic_angle(R1, R2) -> Tensor:
    """Relative rotation angle ``theta`` in ``[0, pi]`` between rotation batches ``(..., 3, 3)``."""
    R1 = _as_float_tensor(R1, "R1")
    R2 = _as_float_tensor(R2, "R2")
    # Through the quaternion of R1^T R2: accurate near 0 and near pi (arccos of the trace is not).
    q = matrix_to_quat(R1.transpose(-1, -2) @ R2)
    return 2 * torch.atan2(q[..., :3].norm(dim=-1), q[..., 3])


def _quat_mul(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of xyzw quaternions."""
    ax, ay, az, aw = a.unbind(-1)
    bx, by, bz, bw = b.unbind(-1)
    return torch.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        -1,
    )


def slerp(q0, q1, u, scalar_first: bool = False) -> Tensor:
    """Spherical linear interpolation of unit quaternions along the shortest arc.

    Args:
        q0, q1: ``(..., 4)`` quaternions (broadcastable).
        u: ``(...)`` interpolation fractions; 0 gives ``q0``, 1 gives ``q1``.
    Returns:
        ``(..., 4)`` unit quaternions in the same order as the inputs.
    """
    q0 = _as_float_tensor(q0, "q0")
    q1 = _as_float_tensor(q1, "q1").to(q0.dtype)
    q0, q1 = torch.broadcast_tensors(q0, q1)
    q1 = torch.where((q0 * q1).sum(-1, keepdim=True) < 0, -q1, q1)  # q and -q are one rotation: the short way
    return sphere.slerp(q0, q1, torch.as_tensor(u, dtype=q0.dtype, device=q0.device))


def interpolate_poses(
    times, rotations, translations, query_times, extrapolate: bool = False
) -> tuple[Tensor, Tensor]:
    """Poses at arbitrary ``query_times``: SLERP for rotations, linear for translations.

    Args:
        times: ``(N,)`` strictly increasing pose timestamps (seconds).
        rotations: ``(N, 3, 3)``; translations: ``(N, 3)``.
        query_times: ``(M,)`` timestamps.
        extrapolate: if False (default), a query outside ``[times[0], times[-1]]`` raises ``ValueError``;
            if True, the end poses are held constant outside the range.
    Returns:
        ``(M, 3, 3)`` rotations and ``(M, 3)`` translations.
    """
    times = _as_float_tensor(times, "times").to(torch.float64)
    R = as_rotations(rotations).to(torch.float64)
    T = _as_float_tensor(translations, "translations").to(torch.float64)
    tq = _as_float_tensor(query_times, "query_times").to(torch.float64).reshape(-1)
    n = times.shape[0]
    if R.shape[0] != n or T.shape != (n, 3):
        raise ValueError(f"interpolate_poses: {n} times but rotations {tuple(R.shape)}, translations {tuple(T.shape)}")
    if n == 0:
        raise ValueError("interpolate_poses: no poses given")
    check_finite(times, "times")
    check_finite(tq, "query_times")
    if n > 1:
        d = times[1:] - times[:-1]
        if bool((d <= 0).any()):
            i = int(torch.nonzero(d <= 0)[0]) + 1
            raise ValueError(f"interpolate_poses: timestamps must be strictly increasing; index {i} ({float(times[i])}) <= previous")
    outside = (tq < times[0]) | (tq > times[-1])
    if bool(outside.any()) and not extrapolate:
        i = int(torch.nonzero(outside)[0])
        raise ValueError(
            f"interpolate_poses: query time {float(tq[i])} (index {i}) is outside the pose range "
            f"[{float(times[0])}, {float(times[-1])}]; {int(outside.sum())} of {tq.numel()} queries outside"
        )
    if n == 1:
        return R.expand(tq.numel(), 3, 3).clone(), T.expand(tq.numel(), 3).clone()
    tc = tq.clamp(times[0], times[-1])
    hi = torch.searchsorted(times, tc, right=False).clamp(1, n - 1)
    lo = hi - 1
    u = ((tc - times[lo]) / (times[hi] - times[lo])).clamp(0, 1)
    q = matrix_to_quat(R)
    Rq = quat_to_matrix(slerp(q[lo], q[hi], u))
    Tq = T[lo] + u.unsqueeze(-1) * (T[hi] - T[lo])
    return Rq, Tq


def _axis_rotation(axis: int, angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == 1:
        rows = [[c, z, s], [z, o, z], [-s, z, c]]
    else:
        rows = [[c, -s, z], [s, c, z], [z, z, o]]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def _parse_euler_order(order: str) -> tuple[list[int], bool]:
    if len(order) != 3 or not (order.islower() or order.isupper()):
        raise ValueError(f"Euler order must be three letters, all lower (extrinsic) or all upper (intrinsic); got {order!r}")
    axes = ["xyz".index(c) for c in order.lower() if c in "xyz"] if set(order.lower()) <= set("xyz") else []
    if len(axes) != 3 or len(set(axes)) != 3:
        raise ValueError(f"Euler order {order!r} is not a Tait-Bryan order (a permutation of x, y, z)")
    return axes, order.isupper()


def euler_to_matrix(angles, order: str = "xyz") -> Tensor:
    """Tait-Bryan angles ``(..., 3)`` (radians) -> rotations ``(..., 3, 3)``.

    Same semantics as scipy's ``Rotation.from_euler``: lower-case ``order`` is extrinsic (rotations
    about fixed axes, first letter first), upper-case intrinsic.
    """
    angles = _as_float_tensor(angles, "angles")
    axes, intrinsic = _parse_euler_order(order)
    mats = [_axis_rotation(a, angles[..., i]) for i, a in enumerate(axes)]
    if intrinsic:
        return mats[0] @ mats[1] @ mats[2]
    return mats[2] @ mats[1] @ mats[0]


def matrix_to_euler(R, order: str = "xyz") -> Tensor:
    """Rotations ``(..., 3, 3)`` -> Tait-Bryan angles ``(..., 3)``, inverse of :func:`euler_to_matrix`.

    The middle angle lies in ``[-pi/2, pi/2]``; the others in ``(-pi, pi]``. The representation is
    chart-dependent and singular at gimbal lock (middle angle +-pi/2), which is why it only serves the
    Euler baseline kernel.
    """
    R = _as_float_tensor(R, "rotations")
    axes, intrinsic = _parse_euler_order(order)
    if intrinsic:
        # Intrinsic ABC equals extrinsic cba with the angles reversed.
        return matrix_to_euler(R, order.lower()[::-1]).flip(-1)
    i, j, k = axes
    e = 1.0 if (j - i) % 3 == 1 else -1.0  # parity of the axis permutation
    beta = torch.asin((-e * R[..., k, i]).clamp(-1.0, 1.0))
    alpha = torch.atan2(e * R[..., k, j], R[..., k, k])
    gamma = torch.atan2(e * R[..., j, i], R[..., i, i])
    return torch.stack([alpha, beta, gamma], -1)


def integrate_gyroscope(times, omega, R0=None) -> Tensor:
    """Orientations from gyroscope samples by integrating body-frame angular velocity.

    ``R_{k+1} = R_k exp([w_k dt]_x)`` with the trapezoidal rate ``w_k = (omega_k + omega_{k+1}) / 2``,
    exact for constant angular velocity.

    Args:
        times: ``(N,)`` strictly increasing timestamps (seconds).
        omega: ``(N, 3)`` angular velocity in the sensor (body) frame, rad/s.
        R0: optional ``(3, 3)`` initial orientation (default identity).
    Returns:
        ``(N, 3, 3)`` orientations (body-to-world) at ``times``.
    """
    times = _as_float_tensor(times, "times").to(torch.float64).reshape(-1)
    omega = _as_float_tensor(omega, "omega").to(torch.float64)
    if omega.dim() != 2 or omega.shape[1] != 3 or omega.shape[0] != times.shape[0]:
        raise ValueError(f"integrate_gyroscope: expected omega (N, 3) with N = {times.shape[0]}, got {tuple(omega.shape)}")
    check_finite(times, "gyroscope times")
    check_finite(omega, "gyroscope samples")
    dt = times[1:] - times[:-1]
    if bool((dt <= 0).any()):
        i = int(torch.nonzero(dt <= 0)[0]) + 1
        raise ValueError(f"integrate_gyroscope: timestamps must be strictly increasing (index {i})")
    R = torch.eye(3, dtype=torch.float64) if R0 is None else validate_rotations(R0, "R0")[0].to(torch.float64)
    steps = so3_exp(0.5 * (omega[1:] + omega[:-1]) * dt.unsqueeze(-1))
    out = [R]
    for k in range(steps.shape[0]):
        R = R @ steps[k]
        out.append(R)
    # Re-orthonormalise once at the end: the product of many exps drifts at the 1e-15 level only.
    return project_to_so3(torch.stack(out))


def random_rotations(n: int, generator: Optional[torch.Generator] = None, dtype=torch.float64) -> Tensor:
    """``n`` rotations uniform (Haar) on SO(3): normalised Gaussian quaternions. ``(n, 3, 3)``."""
    q = torch.randn(n, 4, generator=generator, dtype=dtype)
    return quat_to_matrix(q)


def pose_features(rotations, translations=None, times=None) -> Tensor:
    """Flat pose features for the kernels: ``(N, 12)`` = vec(R) row-major + t, or ``(N, 13)`` with times.

    Validates the rotations (clear ``ValueError`` naming a bad index). ``translations`` defaults to zeros.
    The output is float64.
    """
    R = validate_rotations(rotations).to(torch.float64)
    n = R.shape[0]
    if translations is None:
        T = torch.zeros(n, 3, dtype=torch.float64)
    else:
        T = _as_float_tensor(translations, "translations").to(torch.float64).reshape(-1, 3)
        if T.shape[0] != n:
            raise ValueError(f"pose_features: {n} rotations but {T.shape[0]} translations")
        check_finite(T, "translations")
    cols = [R.reshape(n, 9), T]
    if times is not None:
        tt = _as_float_tensor(times, "times").to(torch.float64).reshape(-1, 1)
        if tt.shape[0] != n:
            raise ValueError(f"pose_features: {n} rotations but {tt.shape[0]} timestamps")
        check_finite(tt, "times")
        cols.append(tt)
    return torch.cat(cols, dim=1)


def split_pose_features(x: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """Inverse of :func:`pose_features`: ``(..., 12|13)`` -> rotations ``(..., 3, 3)``, t ``(..., 3)``, times or None."""
    if x.shape[-1] not in (12, 13):
        raise ValueError(f"pose features must have 12 or 13 columns, got {x.shape[-1]}")
    R = x[..., :9].reshape(x.shape[:-1] + (3, 3))
    t = x[..., 9:12]
    times = x[..., 12] if x.shape[-1] == 13 else None
    return R, t, times


def umeyama(src, dst, with_scale: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """The similarity ``x -> s R x + t`` that best maps points ``src`` onto ``dst`` (least squares).

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point patterns".
    ``src``, ``dst``: ``(N, 3)`` corresponding points, ``N >= 3``, not all on one line (else the rotation
    about that line is undetermined: ``ValueError``). ``with_scale=False`` fixes ``s = 1`` (a rigid motion).
    Returns ``(s, R, t)``: scale ``()``, rotation ``(3, 3)`` (det +1), translation ``(3,)``, float64.
    """
    X = _as_float_tensor(src, "src").to(torch.float64)
    Y = _as_float_tensor(dst, "dst").to(torch.float64)
    if X.ndim != 2 or X.shape[-1] != 3 or X.shape != Y.shape:
        raise ValueError(f"umeyama: expected two (N, 3) point sets of one shape, got {tuple(X.shape)} and {tuple(Y.shape)}")
    check_finite(X, "src")
    check_finite(Y, "dst")
    n = X.shape[0]
    if n < 3:
        raise ValueError(f"umeyama: need at least 3 corresponding points, got {n}")
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    var_x = (Xc * Xc).sum() / n
    cov = Yc.T @ Xc / n
    U, D, Vh = torch.linalg.svd(cov)
    # Rank < 2: the points lie on a line (or coincide), and any rotation about it fits as well.
    if not bool(D[1] > 1e-9 * D[0]) or not bool(var_x > 0):
        raise ValueError(f"umeyama: the {n} points are (nearly) collinear or coincide; a rotation is not determined")
    S = torch.ones(3, dtype=torch.float64)
    if torch.linalg.det(U) * torch.linalg.det(Vh) < 0:  # the best orthogonal map is a reflection: flip the weakest axis
        S[2] = -1.0
    R = U @ torch.diag(S) @ Vh
    s = (D * S).sum() / var_x if with_scale else torch.tensor(1.0, dtype=torch.float64)
    t = my - s * R @ mx
    return s, R, t


@dataclass(frozen=True)
class PoseAlignment:
    """An estimated trajectory aligned onto a reference one by a similarity, and what is left over.

    Attributes:
        scale, rotation, translation: the similarity ``x -> scale * rotation @ x + translation``
            (``()``, ``(3, 3)``, ``(3,)``) taking estimated world coordinates to reference ones.
        rotation_errors_deg: ``(N,)`` angle between each aligned camera orientation and the reference one.
        centre_errors: ``(N,)`` distance between each aligned camera centre and the reference one, in
            reference units.
        extent: the capture's extent, the largest distance between two reference camera centres.
    """

    scale: Tensor
    rotation: Tensor
    translation: Tensor
    rotation_errors_deg: Tensor
    centre_errors: Tensor
    extent: float

    @property
    def relative_centre_errors(self) -> Tensor:
        """``(N,)`` centre errors as fractions of :attr:`extent`."""
        return self.centre_errors / self.extent

    def summary(self) -> dict:
        """Median and largest errors (degrees; fractions of the extent) and the pose count, as floats."""
        rot, rel = self.rotation_errors_deg, self.relative_centre_errors
        return {"poses": int(rot.shape[0]), "rotation_median_deg": float(rot.median()), "rotation_max_deg": float(rot.max()),
                "centre_median_rel": float(rel.median()), "centre_max_rel": float(rel.max()),
                "extent": float(self.extent), "scale": float(self.scale)}


def align_poses(rotations, translations, ref_rotations, ref_translations, with_scale: bool = True) -> PoseAlignment:
    """Align camera-to-world poses onto reference poses of the same cameras and measure the errors.

    Structure from motion recovers a trajectory only up to a similarity (its world frame and unit are
    arbitrary), so the camera centres are aligned with :func:`umeyama` first; the same similarity
    rotates the orientations. Args: estimated rotations ``(N, 3, 3)`` and centres ``(N, 3)``, and the
    reference ones of the same ``N`` cameras in the same order (``N >= 3``, centres not on one line).
    ``with_scale=False`` for trajectories known in the same unit. Returns a :class:`PoseAlignment`.
    """
    R_est = validate_rotations(rotations, "rotations").to(torch.float64)
    R_ref = validate_rotations(ref_rotations, "ref_rotations").to(torch.float64)
    C_est = _as_float_tensor(translations, "translations").to(torch.float64).reshape(-1, 3)
    C_ref = _as_float_tensor(ref_translations, "ref_translations").to(torch.float64).reshape(-1, 3)
    if not (R_est.shape[0] == R_ref.shape[0] == C_est.shape[0] == C_ref.shape[0]):
        raise ValueError(f"align_poses: pose counts disagree ({R_est.shape[0]} rotations, {C_est.shape[0]} centres, "
                         f"{R_ref.shape[0]} reference rotations, {C_ref.shape[0]} reference centres)")
    s, R, t = umeyama(C_est, C_ref, with_scale=with_scale)
    C_aligned = s * C_est @ R.T + t
    # The camera-to-world orientation of the aligned camera is R @ R_est (the scale does not rotate).
    rot_err = torch.rad2deg(geodesic_angle(R @ R_est, R_ref))
    centre_err = (C_aligned - C_ref).norm(dim=-1)
    extent = float(torch.cdist(C_ref, C_ref).max())
    return PoseAlignment(s, R, t, rot_err, centre_err, extent)
