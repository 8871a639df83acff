import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation, Slerp

from viewgp import poses as P


@pytest.fixture
def rots():
    return P.random_rotations(300, torch.Generator().manual_seed(0))


def test_quaternion_round_trip_and_scipy_agreement(rots):
    q = P.matrix_to_quat(rots)
    assert torch.allclose(P.quat_to_matrix(q), rots, atol=1e-13)
    assert bool((q[:, 3] >= 0).all())
    ref = Rotation.from_matrix(rots.numpy()).as_quat(canonical=True)  # xyzw
    np.testing.assert_allclose(q.numpy(), ref, atol=1e-13)
    qw = P.matrix_to_quat(rots, scalar_first=True)
    np.testing.assert_allclose(qw.numpy(), ref[:, [3, 0, 1, 2]], atol=1e-13)
    np.testing.assert_allclose(P.quat_to_matrix(qw, scalar_first=True).numpy(), rots.numpy(), atol=1e-13)


def test_quaternion_sign_and_scale_do_not_matter(rots):
    q = P.matrix_to_quat(rots)
    assert torch.allclose(P.quat_to_matrix(-3.0 * q), rots, atol=1e-13)


def test_matrix_to_quat_near_pi_rotations():
    # Rotations by pi exercise the non-trace branches of the conversion.
    axes = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]], dtype=torch.float64)
    axes = axes / axes.norm(dim=1, keepdim=True)
    R = P.so3_exp(axes * math.pi)
    q = P.matrix_to_quat(R)
    assert torch.allclose(P.quat_to_matrix(q), R, atol=1e-12)
    assert torch.allclose(P.geodesic_angle(torch.eye(3, dtype=torch.float64), R), torch.full((4,), math.pi, dtype=torch.float64))


def test_geodesic_angle_and_trace_identity(rots):
    a, b = rots[:-1], rots[1:]
    ang = P.geodesic_angle(a, b)
    ref = (Rotation.from_matrix(a.numpy()).inv() * Rotation.from_matrix(b.numpy())).magnitude()
    np.testing.assert_allclose(ang.numpy(), ref, atol=1e-12)
    tr = P.relative_trace(a, b)
    assert torch.allclose(tr, 4 * torch.sin(ang / 2) ** 2, atol=1e-12)
    assert torch.allclose((a - b).pow(2).sum(dim=(-1, -2)), 2 * tr, atol=1e-12)


def test_so3_exp_log(rots):
    rv = P.so3_log(rots)
    np.testing.assert_allclose(rv.numpy(), Rotation.from_matrix(rots.numpy()).as_rotvec(), atol=1e-12)
    assert torch.allclose(P.so3_exp(rv), rots, atol=1e-12)
    tiny = torch.tensor([[1e-9, -2e-9, 3e-9]], dtype=torch.float64)
    assert torch.allclose(P.so3_log(P.so3_exp(tiny)), tiny, atol=1e-15)


@pytest.mark.parametrize("order", ["xyz", "zyx", "yxz", "zxy", "XYZ", "ZYX", "YZX"])
def test_euler_matches_scipy(rots, order):
    e = P.matrix_to_euler(rots, order)
    ref = Rotation.from_matrix(rots.numpy()).as_euler(order)
    np.testing.assert_allclose(e.numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(P.euler_to_matrix(torch.from_numpy(ref), order).numpy(),
                               Rotation.from_euler(order, ref).as_matrix(), atol=1e-12)


def test_euler_rejects_proper_euler_orders():
    with pytest.raises(ValueError, match="Tait-Bryan"):
        P.euler_to_matrix(torch.zeros(3), "zxz")
    with pytest.raises(ValueError, match="three letters"):
        P.matrix_to_euler(torch.eye(3), "xY z")


def test_validation_names_the_bad_index(rots):
    bad = rots.clone()
    bad[7] = bad[7] * 1.05
    with pytest.raises(ValueError, match="index 7 is not orthonormal"):
        P.validate_rotations(bad)
    refl = rots.clone()
    refl[3] = -refl[3]
    with pytest.raises(ValueError, match="index 3 has determinant"):
        P.validate_rotations(refl)
    nan = rots.clone()
    nan[11, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="index 11"):
        P.validate_rotations(nan)
    with pytest.raises(ValueError, match=r"\(N, 3, 3\)"):
        P.validate_rotations(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="zero-norm quaternion at index 1"):
        P.quat_to_matrix(torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, 0.0]]))


def test_project_to_so3_is_nearest_rotation(rots):
    g = torch.Generator().manual_seed(1)
    noisy = rots + 1e-3 * torch.randn(rots.shape, generator=g, dtype=torch.float64)
    proj = P.project_to_so3(noisy)
    P.validate_rotations(proj, atol=1e-12)
    assert (proj - rots).abs().max() < 5e-3
    assert torch.allclose(P.project_to_so3(rots), rots, atol=1e-12)
    # A reflection is mapped to a proper rotation, not left with det -1.
    assert torch.linalg.det(P.project_to_so3(-rots[:5])).min() > 0.999


def test_slerp_endpoints_and_constant_speed():
    g = torch.Generator().manual_seed(2)
    q0, q1 = P.matrix_to_quat(P.random_rotations(2, g))
    u = torch.linspace(0, 1, 11, dtype=torch.float64)
    qs = P.slerp(q0.expand(11, 4), q1.expand(11, 4), u)
    R = P.quat_to_matrix(qs)
    assert torch.allclose(R[0], P.quat_to_matrix(q0), atol=1e-12)
    assert torch.allclose(R[-1], P.quat_to_matrix(q1), atol=1e-12)
    steps = P.geodesic_angle(R[:-1], R[1:])
    assert torch.allclose(steps, steps.mean().expand_as(steps), atol=1e-10)
    # The shortest arc is taken even when the quaternions have opposite signs.
    assert torch.allclose(P.quat_to_matrix(P.slerp(q0, -q1, 0.5)), P.quat_to_matrix(P.slerp(q0, q1, 0.5)), atol=1e-12)


def test_interpolate_poses_matches_scipy(rots):
    g = torch.Generator().manual_seed(3)
    t = torch.cumsum(0.01 + torch.rand(300, generator=g, dtype=torch.float64), 0)
    T = torch.randn(300, 3, generator=g, dtype=torch.float64)
    tq = t[0] + (t[-1] - t[0]) * torch.rand(400, generator=g, dtype=torch.float64)
    Rq, Tq = P.interpolate_poses(t, rots, T, tq)
    ref = Slerp(t.numpy(), Rotation.from_matrix(rots.numpy()))(tq.numpy()).as_matrix()
    np.testing.assert_allclose(Rq.numpy(), ref, atol=1e-10)
    for k in range(3):
        np.testing.assert_allclose(Tq[:, k].numpy(), np.interp(tq.numpy(), t.numpy(), T[:, k].numpy()), atol=1e-12)
    # At the knots the poses are returned unchanged.
    Rk, Tk = P.interpolate_poses(t, rots, T, t)
    assert torch.allclose(Rk, rots, atol=1e-12) and torch.allclose(Tk, T, atol=1e-12)


def test_interpolate_poses_errors_and_extrapolation(rots):
    t = torch.arange(5, dtype=torch.float64)
    T = torch.zeros(5, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="outside the pose range"):
        P.interpolate_poses(t, rots[:5], T, torch.tensor([-1.0, 2.0]))
    Rq, _ = P.interpolate_poses(t, rots[:5], T, torch.tensor([-1.0, 9.0]), extrapolate=True)
    assert torch.allclose(Rq[0], rots[0]) and torch.allclose(Rq[1], rots[4])
    with pytest.raises(ValueError, match="strictly increasing; index 2"):
        P.interpolate_poses(torch.tensor([0.0, 1.0, 1.0, 2.0, 3.0]), rots[:5], T, torch.tensor([0.5]))


def test_gyroscope_integration_constant_rate():
    w = torch.tensor([0.4, -0.3, 1.1], dtype=torch.float64)
    t = torch.linspace(0, 3, 301, dtype=torch.float64)
    R = P.integrate_gyroscope(t, w.expand(301, 3))
    expected = P.so3_exp(t[:, None] * w)  # constant body rate: R(t) = exp(t [w]x)
    assert torch.allclose(R, expected, atol=1e-12)
    R0 = P.random_rotations(1, torch.Generator().manual_seed(4))[0]
    assert torch.allclose(P.integrate_gyroscope(t, w.expand(301, 3), R0), R0 @ expected, atol=1e-12)


def test_gyroscope_integration_recovers_varying_rotation():
    # Body-frame rate of R(t) = exp(t a) exp(sin(t) b) integrated from samples recovers R(t).
    a = torch.tensor([0.0, 0.0, 0.7], dtype=torch.float64)
    b = torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0, 2, 4001, dtype=torch.float64)
    R = P.so3_exp(t[:, None] * a) @ P.so3_exp(torch.sin(t)[:, None] * b)
    dR = torch.gradient(R, spacing=(t,), dim=0)[0]
    W = R.transpose(-1, -2) @ dR
    omega = torch.stack([W[:, 2, 1], W[:, 0, 2], W[:, 1, 0]], -1)
    Ri = P.integrate_gyroscope(t, omega, R[0])
    assert P.geodesic_angle(Ri, R).max() < 1e-4


def test_pose_features_layout_and_split(rots):
    T = torch.randn(300, 3, dtype=torch.float64)
    times = torch.arange(300, dtype=torch.float64)
    x = P.pose_features(rots, T, times)
    assert x.shape == (300, 13) and x.dtype == torch.float64
    assert torch.equal(x[:, list(P.ROT_DIMS)], rots.reshape(300, 9))
    assert torch.equal(x[:, list(P.TRANS_DIMS)], T)
    assert torch.equal(x[:, P.TIME_DIM], times)
    R2, T2, t2 = P.split_pose_features(x)
    assert torch.equal(R2, rots) and torch.equal(T2, T) and torch.equal(t2, times)
    assert P.pose_features(rots).shape == (300, 12)
    with pytest.raises(ValueError, match="300 rotations but 2 translations"):
        P.pose_features(rots, T[:2])
    bad_t = T.clone()
    bad_t[9, 1] = float("inf")
    with pytest.raises(ValueError, match="index 9"):
        P.pose_features(rots, bad_t)


def test_gradients_flow_through_conversions():
    rv = torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: P.matrix_to_quat(P.so3_exp(v)), (rv,))
    assert torch.autograd.gradcheck(lambda v: P.relative_trace(P.so3_exp(v), torch.eye(3, dtype=torch.float64)), (rv,))
