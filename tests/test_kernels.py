import math

import gpytorch
import numpy as np
import pytest
import torch
from gpytorch.kernels import ScaleKernel
from scipy.spatial.transform import Rotation

from viewgp import kernels as K
from viewgp import poses as P


def _poses(n, seed=0, with_time=False):
    g = torch.Generator().manual_seed(seed)
    R = P.random_rotations(n, g)
    T = torch.randn(n, 3, generator=g, dtype=torch.float64)
    t = torch.sort(torch.rand(n, generator=g, dtype=torch.float64) * 10).values if with_time else None
    return P.pose_features(R, T, t)


def _f64(v):
    # GPyTorch's setters turn a Python float into a float32 tensor first: pass float64 tensors.
    return torch.as_tensor(v, dtype=torch.float64)


def _dense(k, x1, x2=None):
    x2 = x1 if x2 is None else x2
    return k(x1, x2).to_dense().detach()


def _set_lengthscales(k, ls):
    for m in k.modules():
        if getattr(m, "has_lengthscale", False):
            m.lengthscale = _f64(ls)


def _rel_angles(x1, x2):
    R1 = x1[:, :9].reshape(-1, 3, 3).numpy()
    R2 = x2[:, :9].reshape(-1, 3, 3).numpy()
    a = Rotation.from_matrix(np.repeat(R1, len(R2), 0))
    b = Rotation.from_matrix(np.tile(R2, (len(R1), 1, 1)))
    return (a.inv() * b).magnitude().reshape(len(R1), len(R2))


def _rel_trace(x1, x2):
    """tr(I - R1^T R2) = 4 sin^2(theta/2) from scipy's relative quaternion (vector part = sin(theta/2))."""
    R1 = x1[:, :9].reshape(-1, 3, 3).numpy()
    R2 = x2[:, :9].reshape(-1, 3, 3).numpy()
    a = Rotation.from_matrix(np.repeat(R1, len(R2), 0))
    b = Rotation.from_matrix(np.tile(R2, (len(R1), 1, 1)))
    s = np.linalg.norm((a.inv() * b).as_quat()[:, :3], axis=1)
    return (4 * s**2).reshape(len(R1), len(R2))


@pytest.mark.parametrize("ls", [0.4, 1.0, 2.5])
def test_orientation_se_and_exp_match_closed_form(ls):
    x = _poses(40, 1)
    tr = _rel_trace(x, x)
    k = K.OrientationKernel().double()
    k.lengthscale = _f64(ls)
    np.testing.assert_allclose(_dense(k, x).numpy(), np.exp(-tr / (2 * ls**2)), atol=1e-10)
    ke = K.OrientationKernel(form="exp").double()
    ke.lengthscale = _f64(ls)
    np.testing.assert_allclose(_dense(ke, x).numpy(), np.exp(-np.sqrt(tr) / (2 * ls**2)), atol=1e-7)


def test_orientation_ard_matches_formula():
    x = _poses(25, 2)
    k = K.OrientationKernel(form="ard").double()
    k.ard_scales = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)
    M = _dense(k, x).numpy()
    R = x[:, :9].reshape(-1, 3, 3).numpy()
    L = np.diag([0.5, 2.0, 7.0])
    ref = np.array([[np.exp(-0.5 * np.trace(L - a @ L @ b.T)) for b in R] for a in R])
    np.testing.assert_allclose(M, ref, atol=1e-12)


def test_translation_temporal_and_view_product():
    x = _poses(30, 3, with_time=True)
    view = K.ViewKernel(translation="matern52", temporal="matern32").double()
    view.orientation.lengthscale = _f64(0.7)
    view.translation.lengthscale = _f64(1.3)
    view.temporal.lengthscale = _f64(2.0)
    prod = _dense(view.orientation, x) * _dense(view.translation, x) * _dense(view.temporal, x)
    assert torch.allclose(_dense(view, x), prod, atol=1e-14)
    # Each factor reads only its own columns.
    d = torch.cdist(x[:, 9:12], x[:, 9:12]).numpy() / 1.3
    m52 = (1 + math.sqrt(5) * d + 5 * d**2 / 3) * np.exp(-math.sqrt(5) * d)
    np.testing.assert_allclose(_dense(view.translation, x).numpy(), m52, atol=1e-12)
    dt = np.abs(x[:, 12:13].numpy() - x[:, 12].numpy()[None]) / 2.0
    np.testing.assert_allclose(_dense(view.temporal, x).numpy(), (1 + math.sqrt(3) * dt) * np.exp(-math.sqrt(3) * dt), atol=1e-12)


def test_heat_kernel_matches_character_sum_reference():
    x = _poses(40, 4)
    k = K.SO3HeatKernel().double()
    k.lengthscale = _f64(0.8)
    th = np.clip(_rel_angles(x, x), 1e-7, None)
    l = np.arange(20)
    a = np.exp(-(0.8**2) * l * (l + 1) / 2)
    chi = np.sin((l + 0.5) * th[..., None]) / np.sin(th[..., None] / 2)
    ref = (a * (2 * l + 1) * chi).sum(-1) / (a * (2 * l + 1) ** 2).sum()
    np.testing.assert_allclose(_dense(k, x).numpy(), ref, atol=1e-8)
    km = K.SO3MaternKernel(nu=1.5).double()
    km.lengthscale = _f64(0.8)
    am = (2 * 1.5 / 0.8**2 + l * (l + 1)) ** (-3.0)
    refm = (am * (2 * l + 1) * chi).sum(-1) / (am * (2 * l + 1) ** 2).sum()
    np.testing.assert_allclose(_dense(km, x).numpy(), refm, atol=1e-8)


def test_euler_and_quaternion_baselines_match_formulas():
    x = _poses(20, 5)
    R = x[:, :9].reshape(-1, 3, 3).numpy()
    e = Rotation.from_matrix(R).as_euler("xyz")
    k = K.EulerPeriodicKernel().double()
    k.lengthscale = _f64(0.9)
    ref = np.exp(-2 * (np.sin((e[:, None] - e[None]) / 2) ** 2).sum(-1) / 0.81)
    np.testing.assert_allclose(_dense(k, x).numpy(), ref, atol=1e-12)
    q = Rotation.from_matrix(R).as_quat(canonical=True)
    kq = K.QuaternionSEKernel().double()
    kq.lengthscale = _f64(0.6)
    ref = np.exp(-((q[:, None] - q[None]) ** 2).sum(-1) / (2 * 0.36))
    np.testing.assert_allclose(_dense(kq, x).numpy(), ref, atol=1e-12)


PD_KERNELS = {
    "se": lambda: K.OrientationKernel(),
    "exp": lambda: K.OrientationKernel(form="exp"),
    "ard": lambda: K.OrientationKernel(form="ard"),
    "view": lambda: K.ViewKernel(temporal="matern32"),
    "heat": lambda: K.SO3HeatKernel(),
    "matern": lambda: K.SO3MaternKernel(nu=2.5),
    "translation": lambda: K.TranslationKernel("matern12"),
}


@pytest.mark.parametrize("name", sorted(PD_KERNELS))
def test_pd_kernels_have_nonnegative_spectrum(name):
    x = _poses(500, 6, with_time=True)
    for ls in (0.3, 1.0, 2.0):
        k = PD_KERNELS[name]().double()
        _set_lengthscales(k, ls)
        if name == "ard":
            k.ard_scales = torch.full((3,), 1 / ls**2, dtype=torch.float64)
        assert torch.linalg.eigvalsh(_dense(k, x)).min() >= -1e-8, (name, ls)


def test_geodesic_se_is_not_positive_definite():
    x = _poses(200, 7)
    k = K.GeodesicSEKernel().double()
    mins = {}
    for ls in (1.0, 2.0):
        k.lengthscale = _f64(ls)
        mins[ls] = float(torch.linalg.eigvalsh(_dense(k, x)).min())
    assert mins[1.0] < -1e-3 and mins[2.0] < -0.5, mins


@pytest.mark.parametrize("make", [lambda: K.OrientationKernel(), lambda: K.OrientationKernel(form="exp"), lambda: K.SO3HeatKernel(), lambda: K.GeodesicSEKernel()])
def test_left_invariance(make):
    x = _poses(30, 8)
    Q = P.random_rotations(1, torch.Generator().manual_seed(9))[0]
    R = x[:, :9].reshape(-1, 3, 3)
    y = x.clone()
    y[:, :9] = (Q @ R).reshape(-1, 9)
    k = make().double()
    assert torch.allclose(_dense(k, x), _dense(k, y), atol=1e-10)


def test_orientation_equals_periodic_kernel_about_one_axis():
    ang = torch.linspace(-math.pi, math.pi, 25, dtype=torch.float64)
    R = P.so3_exp(torch.stack([torch.zeros_like(ang), torch.zeros_like(ang), ang], -1))
    x = P.pose_features(R)
    for ls in (0.5, 1.0, 1.7):
        k = K.OrientationKernel().double()
        k.lengthscale = _f64(ls)
        d = ang[:, None] - ang[None]
        periodic = torch.exp(-2 * torch.sin(d / 2) ** 2 / ls**2)
        assert torch.allclose(_dense(k, x), periodic, atol=1e-12)
        # GPyTorch's PeriodicKernel (period 2 pi) does not square its lengthscale: l_g = l^2.
        pk = gpytorch.kernels.PeriodicKernel().double()
        pk.period_length = 2 * math.pi
        pk.lengthscale = _f64(ls**2)
        assert torch.allclose(_dense(pk, ang[:, None]), periodic, atol=1e-12)


def test_quaternion_sign_breaks_quaternion_kernel_but_not_heat():
    x = _poses(10, 10)
    R = x[:, :9].reshape(-1, 3, 3)
    q = P.matrix_to_quat(R)
    # Same rotations; the heat kernel uses |q . q'| so it cannot tell them apart.
    heat = K.SO3HeatKernel().double()
    assert torch.allclose(_dense(heat, x).diagonal(), torch.ones(10, dtype=torch.float64), atol=1e-12)
    w = (q[:, None] * (-q)[None]).sum(-1).abs()
    assert torch.allclose(w.diagonal(), torch.ones(10, dtype=torch.float64))
    kq = K.QuaternionSEKernel().double()
    kq.lengthscale = _f64(0.5)
    # A rotation just past w = 0 flips its canonical sign: the quaternion kernel sees a far point.
    Ra = P.so3_exp(torch.tensor([[0, 0, math.pi - 1e-3]], dtype=torch.float64))
    Rb = P.so3_exp(torch.tensor([[0, 0, -(math.pi - 1e-3)]], dtype=torch.float64))
    xa, xb = P.pose_features(Ra), P.pose_features(Rb)
    assert float(_dense(kq, xa, xb)) < 1e-3
    assert float(_dense(heat, xa, xb)) > 0.99


@pytest.mark.parametrize("name", K.KERNEL_NAMES)
def test_diag_and_batch_shapes(name):
    x = _poses(12, 11, with_time=True)
    k = K.make_kernel(name).double()
    full = _dense(k, x)
    diag = k(x, x, diag=True).detach()
    assert torch.allclose(diag, full.diagonal(), atol=1e-12)
    xb = torch.stack([x, _poses(12, 12, with_time=True)])
    assert _dense(k, xb).shape == (2, 12, 12)


def test_gradcheck_lengthscales_and_ard_scales():
    x = _poses(6, 13)
    cases = [
        (K.OrientationKernel(), "raw_lengthscale"),
        (K.OrientationKernel(form="exp"), "raw_lengthscale"),
        (K.SO3HeatKernel(), "raw_lengthscale"),
        (K.SO3MaternKernel(nu=1.5), "raw_lengthscale"),
        (K.OrientationKernel(form="ard"), "raw_ard_scales"),
    ]
    for k, name in cases:
        k = k.double()
        raw0 = getattr(k, name).detach().clone().requires_grad_(True)

        def f(raw, k=k, name=name):
            with gpytorch.settings.lazily_evaluate_kernels(False):
                return torch.func.functional_call(k, {name: raw}, (x, x)).to_dense()

        assert torch.autograd.gradcheck(f, (raw0,)), name


def test_kernel_inside_stock_exact_gp():
    torch.manual_seed(0)
    x = _poses(60, 14)
    kernel = ScaleKernel(K.ViewKernel()).double()
    with torch.no_grad():
        kernel.base_kernel.orientation.lengthscale = _f64(0.6)
        Kx = _dense(kernel, x) + 1e-2 * torch.eye(60, dtype=torch.float64)
    y = torch.linalg.cholesky(Kx) @ torch.randn(60, dtype=torch.float64)

    class GP(gpytorch.models.ExactGP):
        def __init__(self, x, y, lik):
            super().__init__(x, y, lik)
            self.mean = gpytorch.means.ConstantMean()
            self.cov = ScaleKernel(K.ViewKernel())

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean(x), self.cov(x))

    lik = gpytorch.likelihoods.GaussianLikelihood()
    model = GP(x, y, lik).double()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = -mll(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.05
    model.eval()
    with torch.no_grad():
        pred = lik(model(x[:5]))
    assert pred.mean.shape == (5,)


def test_factory_and_gppvae_errors():
    with pytest.raises(ValueError, match="known kernels: view"):
        K.make_kernel("spline")
    with pytest.raises(ValueError, match="form must be"):
        K.OrientationKernel(form="geodesic")
    k = K.GPPVAEViewKernel(num_views=4)
    ids = torch.tensor([[0.0], [1.0], [3.0]])
    M = _dense(k, ids)
    assert torch.allclose(M.diagonal(), torch.ones(3), atol=1e-6)
    assert torch.linalg.eigvalsh(M).min() > -1e-6
    with pytest.raises(ValueError, match="view id 7 .* cannot predict views absent from training"):
        k(torch.tensor([[7.0]]), ids).to_dense()
