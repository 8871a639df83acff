"""Pose kernels: closed forms against independent numpy/scipy references, positive definiteness,
invariances, GPyTorch integration (diag, batches, dtypes, gradients, ExactGP)."""

import math

import gpytorch
import numpy as np
import pytest
import torch
from gpytorch.kernels import ScaleKernel
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from viewgp import kernels as K
from viewgp import poses as P

LENGTHSCALES = (0.4, 1.0, 2.5)


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


def _scipy_rotations(x):
    return Rotation.from_matrix(x[:, :9].reshape(-1, 3, 3).numpy())


def _relative(x1, x2):
    """scipy Rotation of R1^T R2 for every pair (row-major over (len(x1), len(x2)))."""
    R1 = x1[:, :9].reshape(-1, 3, 3).numpy()
    R2 = x2[:, :9].reshape(-1, 3, 3).numpy()
    a = Rotation.from_matrix(np.repeat(R1, len(R2), 0))
    b = Rotation.from_matrix(np.tile(R2, (len(R1), 1, 1)))
    return a.inv() * b


def _rel_angles(x1, x2):
    return _relative(x1, x2).magnitude().reshape(len(x1), len(x2))


def _rel_trace(x1, x2):
    """tr(I - R1^T R2) = 4 sin^2(theta/2) = 4 ||vector part of the relative quaternion||^2 (scipy)."""
    v = _relative(x1, x2).as_quat()[:, :3]
    return (4 * (v**2).sum(1)).reshape(len(x1), len(x2))


@pytest.fixture(scope="module")
def pts():
    """Two sets of random poses: the kernels are checked on K(x, x) and K(x, y)."""
    return _poses(30, 1, with_time=True), _poses(17, 2, with_time=True)


# ---------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("ls", LENGTHSCALES)
def test_orientation_se_and_exp_match_closed_form(pts, ls):
    for a, b in ((pts[0], pts[0]), pts):
        tr = _rel_trace(a, b)
        k = K.OrientationKernel().double()
        k.lengthscale = _f64(ls)
        np.testing.assert_allclose(_dense(k, a, b).numpy(), np.exp(-tr / (2 * ls**2)), rtol=0, atol=1e-10)
        ke = K.OrientationKernel(form="exp").double()
        ke.lengthscale = _f64(ls)
        np.testing.assert_allclose(_dense(ke, a, b).numpy(), np.exp(-np.sqrt(tr) / (2 * ls**2)), rtol=0, atol=1e-10)


@pytest.mark.parametrize("L", [(0.5, 2.0, 7.0), (math.exp(2.63),) * 3, (3.0, 0.1, 1.0)])
def test_orientation_ard_matches_formula(pts, L):
    k = K.OrientationKernel(form="ard").double()
    k.ard_scales = torch.tensor(L, dtype=torch.float64)
    assert torch.allclose(k.ard_scales, torch.tensor(L, dtype=torch.float64))
    Lm = np.diag(L)
    for a, b in ((pts[0], pts[0]), pts):
        Ra, Rb = a[:, :9].reshape(-1, 3, 3).numpy(), b[:, :9].reshape(-1, 3, 3).numpy()
        ref = np.array([[np.exp(-0.5 * np.trace(Lm - r @ Lm @ s.T)) for s in Rb] for r in Ra])
        np.testing.assert_allclose(_dense(k, a, b).numpy(), ref, rtol=0, atol=1e-10)


def test_orientation_ard_default_is_chairs_init_and_isotropic_equals_se(pts):
    k = K.OrientationKernel(form="ard").double()
    assert torch.allclose(k.ard_scales, torch.full((3,), math.exp(2.63), dtype=torch.float64))
    k.ard_scales = torch.full((3,), 1 / 0.8**2, dtype=torch.float64)
    se = K.OrientationKernel().double()
    se.lengthscale = _f64(0.8)
    assert torch.allclose(_dense(k, *pts), _dense(se, *pts), atol=1e-12)


def _euclid_ref(kind, r):
    if kind == "rbf":
        return np.exp(-(r**2) / 2)
    if kind == "matern12":
        return np.exp(-r)
    if kind == "matern32":
        return (1 + math.sqrt(3) * r) * np.exp(-math.sqrt(3) * r)
    return (1 + math.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-math.sqrt(5) * r)


@pytest.mark.parametrize("kind", K.EUCLIDEAN_KINDS)
def test_translation_and_temporal_match_formulas(pts, kind):
    a, b = pts
    for ls in LENGTHSCALES:
        k = K.TranslationKernel(kind).double()
        k.lengthscale = _f64(ls)
        r = cdist(a[:, 9:12].numpy(), b[:, 9:12].numpy()) / ls
        np.testing.assert_allclose(_dense(k, a, b).numpy(), _euclid_ref(kind, r), rtol=0, atol=1e-10)
        kt = K.TemporalKernel(kind).double()
        kt.lengthscale = _f64(ls)
        r = np.abs(a[:, 12:13].numpy() - b[:, 12].numpy()[None]) / ls
        np.testing.assert_allclose(_dense(kt, a, b).numpy(), _euclid_ref(kind, r), rtol=0, atol=1e-10)
    # ARD: one lengthscale per axis.
    k = K.TranslationKernel(kind, ard=True).double()
    ls3 = np.array([0.5, 1.0, 3.0])
    k.lengthscale = _f64(ls3)
    r = cdist(a[:, 9:12].numpy() / ls3, b[:, 9:12].numpy() / ls3)
    np.testing.assert_allclose(_dense(k, a, b).numpy(), _euclid_ref(kind, r), rtol=0, atol=1e-10)


@pytest.mark.parametrize("ls", LENGTHSCALES)
def test_baselines_match_formulas(pts, ls):
    a, b = pts
    ea, eb = _scipy_rotations(a).as_euler("xyz"), _scipy_rotations(b).as_euler("xyz")
    k = K.EulerPeriodicKernel().double()
    k.lengthscale = _f64(ls)
    ref = np.exp(-2 * (np.sin((ea[:, None] - eb[None]) / 2) ** 2).sum(-1) / ls**2)
    np.testing.assert_allclose(_dense(k, a, b).numpy(), ref, rtol=0, atol=1e-10)

    qa = _scipy_rotations(a).as_quat(canonical=True)
    qb = _scipy_rotations(b).as_quat(canonical=True)
    kq = K.QuaternionSEKernel().double()
    kq.lengthscale = _f64(ls)
    ref = np.exp(-((qa[:, None] - qb[None]) ** 2).sum(-1) / (2 * ls**2))
    np.testing.assert_allclose(_dense(kq, a, b).numpy(), ref, rtol=0, atol=1e-10)

    kg = K.GeodesicSEKernel().double()
    kg.lengthscale = _f64(ls)
    for u, v in ((a, a), (a, b)):
        ref = np.exp(-_rel_angles(u, v) ** 2 / (2 * ls**2))
        np.testing.assert_allclose(_dense(kg, u, v).numpy(), ref, rtol=0, atol=1e-10)


def _character_sum(theta, coeffs):
    """sum_l a_l (2l+1) chi_l(theta) / sum_l a_l (2l+1)^2, chi_l = sin((l+1/2) theta) / sin(theta/2)."""
    l = np.arange(len(coeffs))
    th = np.clip(theta, 1e-7, None)[..., None]  # chi_l -> 2l+1 at 0; 1e-7 is exact to ~1e-12
    chi = np.sin((l + 0.5) * th) / np.sin(th / 2)
    return (coeffs * (2 * l + 1) * chi).sum(-1) / (coeffs * (2 * l + 1) ** 2).sum()


@pytest.mark.parametrize("ls", (0.3, 0.8, 2.0))
def test_heat_and_matern_match_character_sum_reference(pts, ls):
    a, b = pts
    theta = _rel_angles(a, b)
    for terms in (20, 7):
        l = np.arange(terms)
        k = K.SO3HeatKernel(num_terms=terms).double()
        k.lengthscale = _f64(ls)
        ref = _character_sum(theta, np.exp(-(ls**2) * l * (l + 1) / 2))
        np.testing.assert_allclose(_dense(k, a, b).numpy(), ref, rtol=0, atol=1e-8)
        for nu in (0.5, 1.5, 2.5):
            km = K.SO3MaternKernel(nu=nu, num_terms=terms).double()
            km.lengthscale = _f64(ls)
            ref = _character_sum(theta, (2 * nu / ls**2 + l * (l + 1)) ** (-nu - 1.5))
            np.testing.assert_allclose(_dense(km, a, b).numpy(), ref, rtol=0, atol=1e-8)


def test_unit_diagonal(pts):
    x = pts[0]
    for name in K.KERNEL_NAMES:
        k = K.make_kernel(name).double()
        _set_lengthscales(k, 0.7)
        assert torch.allclose(k(x, diag=True), torch.ones(len(x), dtype=torch.float64), atol=1e-12), name


# ------------------------------------------------------------------------ positive definiteness
PD_KERNELS = {
    "orientation se": lambda ls: K.OrientationKernel(),
    "orientation exp": lambda ls: K.OrientationKernel(form="exp"),
    "orientation ard (L=I/l^2)": lambda ls: K.OrientationKernel(form="ard"),
    "orientation ard (L=(.2,1,5)/l^2)": lambda ls: K.OrientationKernel(form="ard"),
    "translation rbf": lambda ls: K.TranslationKernel("rbf"),
    "translation matern12": lambda ls: K.TranslationKernel("matern12"),
    "translation matern32": lambda ls: K.TranslationKernel("matern32"),
    "translation matern52": lambda ls: K.TranslationKernel("matern52"),
    "view se*rbf*matern32(t)": lambda ls: K.ViewKernel(temporal="matern32"),
    "so3 heat": lambda ls: K.SO3HeatKernel(),
    "so3 matern12": lambda ls: K.SO3MaternKernel(nu=0.5),
    "so3 matern52": lambda ls: K.SO3MaternKernel(nu=2.5),
    "euler periodic": lambda ls: K.EulerPeriodicKernel(),
    # PD through its feature map q(R); its fault is the jump of the canonical sign, not definiteness.
    "quaternion SE": lambda ls: K.QuaternionSEKernel(),
}


def _make_pd(name, ls):
    k = PD_KERNELS[name](ls).double()
    _set_lengthscales(k, ls)
    if "(L=I/l^2)" in name:
        k.ard_scales = torch.full((3,), 1 / ls**2, dtype=torch.float64)
    elif "ard" in name:
        k.ard_scales = torch.tensor([0.2, 1.0, 5.0], dtype=torch.float64) / ls**2
    return k


def _min_eig(M):
    return float(torch.linalg.eigvalsh(M).min())


def min_eigenvalue_table(n=500, seed=6, lengthscales=(0.3, 1.0, 2.0)):
    """{kernel name: [min eigenvalue at each lengthscale]} over n random poses (for the report)."""
    x = _poses(n, seed, with_time=True)
    table = {}
    for name in PD_KERNELS:
        table[name] = [_min_eig(_dense(_make_pd(name, ls), x)) for ls in lengthscales]
    g = K.GeodesicSEKernel().double()
    table["geodesic SE (NOT PD)"] = []
    for ls in lengthscales:
        g.lengthscale = _f64(ls)
        table["geodesic SE (NOT PD)"].append(_min_eig(_dense(g, x)))
    return table


@pytest.mark.parametrize("name", list(PD_KERNELS))
def test_pd_kernels_have_nonnegative_spectrum(name):
    x = _poses(500, 6, with_time=True)
    for ls in (0.3, 1.0, 2.0):
        ev = _min_eig(_dense(_make_pd(name, ls), x))
        assert ev >= -1e-8, (name, ls, ev)


def test_geodesic_se_is_not_positive_definite():
    x = _poses(200, 7)
    k = K.GeodesicSEKernel().double()
    mins = {}
    for ls in (1.0, 2.0):
        k.lengthscale = _f64(ls)
        mins[ls] = _min_eig(_dense(k, x))
    assert mins[1.0] < -1e-3 and mins[2.0] < -0.5, mins
    with pytest.raises(torch.linalg.LinAlgError):  # what a GP with it runs into
        torch.linalg.cholesky(_dense(k, x) + 1e-6 * torch.eye(200, dtype=torch.float64))


# ---------------------------------------------------------------------------------- invariances
INVARIANT = {
    "se": lambda: K.OrientationKernel(),
    "exp": lambda: K.OrientationKernel(form="exp"),
    "ard": lambda: K.OrientationKernel(form="ard"),
    "heat": lambda: K.SO3HeatKernel(),
    "matern": lambda: K.SO3MaternKernel(nu=1.5),
    "geodesic": lambda: K.GeodesicSEKernel(),
    "view": lambda: K.ViewKernel(),
}


def _rotate_left(x, Q):
    y = x.clone()
    y[:, :9] = (Q @ x[:, :9].reshape(-1, 3, 3)).reshape(-1, 9)
    return y


@pytest.mark.parametrize("name", list(INVARIANT))
def test_invariance_to_common_left_rotation(name):
    x = _poses(30, 8)
    Q = P.random_rotations(1, torch.Generator().manual_seed(9))[0]
    k = INVARIANT[name]().double()
    if name == "ard":
        k.ard_scales = torch.tensor([0.3, 2.0, 9.0], dtype=torch.float64)
    assert torch.allclose(_dense(k, x), _dense(k, _rotate_left(x, Q)), atol=1e-10)


def test_euler_kernel_depends_on_the_chart():
    x = _poses(30, 8)
    Q = P.random_rotations(1, torch.Generator().manual_seed(9))[0]
    k = K.EulerPeriodicKernel().double()
    assert (_dense(k, x) - _dense(k, _rotate_left(x, Q))).abs().max() > 1e-2
    assert (_dense(k, x) - _dense(K.EulerPeriodicKernel(order="zyx").double(), x)).abs().max() > 1e-2


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_orientation_equals_periodic_kernel_about_one_axis(axis):
    ang = torch.linspace(-math.pi, math.pi, 25, dtype=torch.float64)
    rotvec = torch.zeros(25, 3, dtype=torch.float64)
    rotvec[:, axis] = ang
    x = P.pose_features(P.so3_exp(rotvec))
    d = ang[:, None] - ang[None]
    for ls in (0.5, 1.0, 1.7):
        k = K.OrientationKernel().double()
        k.lengthscale = _f64(ls)
        periodic = torch.exp(-2 * torch.sin(d / 2) ** 2 / ls**2)
        assert torch.allclose(_dense(k, x), periodic, atol=1e-12)
        # GPyTorch's PeriodicKernel, exp(-2 sin^2(pi |a - a'| / p) / l_g), does not square its
        # lengthscale: with period 2 pi it matches for l_g = l^2.
        pk = gpytorch.kernels.PeriodicKernel().double()
        pk.period_length = _f64(2 * math.pi)
        pk.lengthscale = _f64(ls**2)
        assert torch.allclose(_dense(pk, ang[:, None]), periodic, atol=1e-12)


def test_quaternion_sign_breaks_quaternion_kernel_but_not_heat():
    # Rotations by pi - 1e-3 and -(pi - 1e-3) about z are 2e-3 apart, but their canonical quaternions
    # (w >= 0) are nearly opposite: q ~ -q' for almost the same rotation.
    Ra = P.so3_exp(torch.tensor([[0, 0, math.pi - 1e-3]], dtype=torch.float64))
    Rb = P.so3_exp(torch.tensor([[0, 0, -(math.pi - 1e-3)]], dtype=torch.float64))
    qa, qb = P.matrix_to_quat(Ra), P.matrix_to_quat(Rb)
    assert float((qa * qb).sum()) < -0.99
    xa, xb = P.pose_features(Ra), P.pose_features(Rb)
    kq = K.QuaternionSEKernel().double()
    kq.lengthscale = _f64(0.5)
    assert float(_dense(kq, xa, xb)) < 1e-3
    for k in (K.SO3HeatKernel(), K.OrientationKernel(), K.GeodesicSEKernel()):
        k = k.double()
        k.lengthscale = _f64(0.5)
        assert float(_dense(k, xa, xb)) > 0.99
    # Flipping the sign of a quaternion gives the same matrix, hence the same heat kernel value.
    x = _poses(10, 10)
    q = P.matrix_to_quat(x[:, :9].reshape(-1, 3, 3))
    flipped = P.pose_features(P.quat_to_matrix(-q))
    heat = K.SO3HeatKernel().double()
    assert torch.allclose(_dense(heat, x), _dense(heat, flipped), atol=1e-12)


# ------------------------------------------------------------------- GPyTorch integration
ALL_KERNELS = {
    **{name: (lambda name=name: K.make_kernel(name)) for name in K.KERNEL_NAMES},
    "view_full": lambda: K.ViewKernel(translation="matern52", temporal="rbf"),
    "view_heat": lambda: K.ViewKernel(orientation="heat", translation="matern32"),
    "ard": lambda: K.OrientationKernel(form="ard"),
    "exp": lambda: K.OrientationKernel(form="exp"),
    "translation_ard": lambda: K.TranslationKernel("matern12", ard=True),
    "gppvae": lambda: K.GPPVAEViewKernel(num_views=5, active_dims=(12,)),
}


def _id_poses(n, seed):
    x = _poses(n, seed, with_time=True)
    x[:, 12] = torch.arange(n, dtype=torch.float64) % 5  # view ids for the GPPVAE kernel
    return x


@pytest.mark.parametrize("name", list(ALL_KERNELS))
def test_diag_batches_and_float32(name):
    x, y = _id_poses(12, 11), _id_poses(12, 12)
    k = ALL_KERNELS[name]().double()
    full = _dense(k, x)
    assert torch.allclose(k(x, diag=True).detach(), full.diagonal(), atol=1e-12)
    assert torch.allclose(k(x, y, diag=True).detach(), _dense(k, x, y).diagonal(), atol=1e-12)
    xb = torch.stack([x, y])
    batch = _dense(k, xb)
    assert batch.shape == (2, 12, 12)
    assert torch.allclose(batch[1], _dense(k, y), atol=1e-12)
    assert k(xb, diag=True).shape == (2, 12)
    k32 = ALL_KERNELS[name]().float()
    out32 = _dense(k32, x.float())
    assert out32.dtype == torch.float32
    assert torch.allclose(out32.double(), full, atol=1e-4)


@pytest.mark.parametrize("name", ["orientation", "so3_heat", "euler", "geodesic", "ard", "view_full"])
def test_batched_hyperparameters(name):
    x = torch.stack([_poses(9, 20, with_time=True), _poses(9, 21, with_time=True)])
    make = ALL_KERNELS[name]
    kwargs = {"batch_shape": torch.Size([2])}
    if name == "ard":
        k = K.OrientationKernel(form="ard", **kwargs).double()
        k.ard_scales = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 4.0]], dtype=torch.float64)
        singles = [K.OrientationKernel(form="ard").double() for _ in range(2)]
        for i, s in enumerate(singles):
            s.ard_scales = k.ard_scales[i].detach()
    else:
        if name == "view_full":
            k = K.ViewKernel(translation="matern52", temporal="rbf", **kwargs).double()
        else:
            k = K.make_kernel(name, **kwargs).double()
        singles = [make().double() for _ in range(2)]
        per_batch = _f64([0.6, 1.4])
        for m in k.modules():
            if getattr(m, "has_lengthscale", False):
                m.lengthscale = per_batch.reshape(2, 1, 1).expand_as(m.lengthscale)
        for i in range(2):
            _set_lengthscales(singles[i], float(per_batch[i]))
    out = _dense(k, x)
    assert out.shape == (2, 9, 9)
    for i in range(2):
        assert torch.allclose(out[i], _dense(singles[i], x[i]), atol=1e-12)
        assert torch.allclose(k(x, diag=True)[i].detach(), out[i].diagonal(), atol=1e-12)


def test_view_kernel_is_product_of_factors_and_uses_time_column():
    x = _poses(30, 3, with_time=True)
    view = K.ViewKernel(translation="matern52", temporal="matern32").double()
    view.orientation.lengthscale = _f64(0.7)
    view.translation.lengthscale = _f64(1.3)
    view.temporal.lengthscale = _f64(2.0)
    assert [type(f) for f in view.factors] == [K.OrientationKernel, K.TranslationKernel, K.TemporalKernel]
    prod = _dense(view.orientation, x) * _dense(view.translation, x) * _dense(view.temporal, x)
    assert torch.allclose(_dense(view, x), prod, atol=1e-14)
    dt = np.abs(x[:, 12:13].numpy() - x[:, 12].numpy()[None]) / 2.0
    np.testing.assert_allclose(_dense(view.temporal, x).numpy(), _euclid_ref("matern32", dt), atol=1e-12)
    # Shifting the time column changes only the temporal factor.
    y = x.clone()
    y[:, 12] = y[:, 12] * 3
    others = _dense(view.orientation, y) * _dense(view.translation, y)
    assert torch.allclose(others, prod / _dense(view.temporal, x), atol=1e-12)
    assert not torch.allclose(_dense(view, y), _dense(view, x))
    # Without a temporal factor the 12-column input suffices; with one, a clear error names column 12.
    plain = K.ViewKernel().double()
    assert torch.allclose(_dense(plain, x[:, :12]), _dense(plain, x), atol=1e-14)
    with pytest.raises(ValueError, match="column 12"):
        _dense(view, x[:, :12])
    # The SE(3) heat kernel: SO(3) heat x R^3 RBF.
    heat = K.ViewKernel(orientation="heat").double()
    se3 = _dense(K.SO3HeatKernel().double(), x) * _dense(K.TranslationKernel().double(), x)
    assert torch.allclose(_dense(heat, x), se3, atol=1e-14)


def test_narrow_inputs_with_active_dims():
    x = _poses(10, 4, with_time=True)
    rot, trans, time = x[:, :9], x[:, 9:12], x[:, 12:]
    pairs = [
        (K.OrientationKernel(), K.OrientationKernel(active_dims=None), rot),
        (K.SO3HeatKernel(), K.SO3HeatKernel(active_dims=range(9)), rot),
        (K.TranslationKernel("matern32"), K.TranslationKernel("matern32", active_dims=(0, 1, 2)), trans),
        (K.TemporalKernel(), K.TemporalKernel(active_dims=None), time),
    ]
    for full, narrow, cols in pairs:
        assert torch.allclose(_dense(full.double(), x), _dense(narrow.double(), cols), atol=1e-14)
    with pytest.raises(ValueError, match="expected 9 input columns"):
        K.OrientationKernel(active_dims=None).double()(x, x).to_dense()


def _raw_param_fn(k, name, x1, x2):
    def f(raw):
        with gpytorch.settings.lazily_evaluate_kernels(False):
            return torch.func.functional_call(k, {name: raw}, (x1, x2)).to_dense()

    return f


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: K.OrientationKernel(), "raw_lengthscale"),
        (lambda: K.OrientationKernel(form="exp"), "raw_lengthscale"),
        (lambda: K.OrientationKernel(form="ard"), "raw_ard_scales"),
        (lambda: K.SO3HeatKernel(), "raw_lengthscale"),
        (lambda: K.SO3MaternKernel(nu=1.5), "raw_lengthscale"),
    ],
)
def test_gradcheck_hyperparameters(make, name):
    x = _poses(5, 13)
    k = make().double()
    if name == "raw_ard_scales":
        k.ard_scales = torch.tensor([0.4, 1.0, 2.0], dtype=torch.float64)
    raw = getattr(k, name).detach().clone().requires_grad_(True)
    # Includes zero distances (x vs x): the exp form's safe sqrt keeps the gradient finite there.
    assert torch.autograd.gradcheck(_raw_param_fn(k, name, x, x), (raw,))


@pytest.mark.parametrize(
    "make",
    [
        lambda: K.OrientationKernel(),
        lambda: K.OrientationKernel(form="ard"),
        lambda: K.SO3HeatKernel(),
        lambda: K.TranslationKernel("matern52"),
        lambda: K.ViewKernel(temporal="rbf"),
    ],
)
def test_gradcheck_inputs(make):
    # Distinct point sets: the kernels are smooth in the inputs away from zero distance.
    x1, x2 = _poses(4, 14, with_time=True), _poses(3, 15, with_time=True)
    k = make().double()
    if isinstance(k, K.OrientationKernel) and k.form == "ard":
        k.ard_scales = torch.tensor([0.4, 1.0, 2.0], dtype=torch.float64)

    def f(a, b):
        with gpytorch.settings.lazily_evaluate_kernels(False):
            return k(a, b).to_dense()

    assert torch.autograd.gradcheck(f, (x1.clone().requires_grad_(True), x2.clone().requires_grad_(True)))


def test_kernel_inside_stock_exact_gp():
    torch.manual_seed(0)
    x = _poses(60, 14, with_time=True)
    truth = ScaleKernel(K.ViewKernel(temporal="matern32")).double()
    with torch.no_grad():
        truth.base_kernel.orientation.lengthscale = _f64(0.6)
        truth.base_kernel.translation.lengthscale = _f64(2.0)
        truth.base_kernel.temporal.lengthscale = _f64(3.0)
        Ky = _dense(truth, x) + 1e-2 * torch.eye(60, dtype=torch.float64)
    y = torch.linalg.cholesky(Ky) @ torch.randn(60, dtype=torch.float64)

    class GP(gpytorch.models.ExactGP):
        def __init__(self, x, y, lik):
            super().__init__(x, y, lik)
            self.mean = gpytorch.means.ConstantMean()
            self.cov = ScaleKernel(K.ViewKernel(temporal="matern32"))

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
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), grads
    assert "cov.base_kernel.temporal.raw_lengthscale" in grads
    model.eval()
    with torch.no_grad():
        pred = lik(model(x[:5]))
    assert pred.mean.shape == (5,) and (pred.variance > 0).all()


# ------------------------------------------------------------------------------- errors, GPPVAE
def test_factory_and_constructor_errors():
    names = "view, orientation, time, euler, quaternion, geodesic, so3_heat, so3_matern"
    with pytest.raises(ValueError, match=f"known kernels: {names}"):
        K.make_kernel("spline")
    assert isinstance(K.make_kernel("view", temporal="rbf").temporal, K.TemporalKernel)
    with pytest.raises(ValueError, match="form must be"):
        K.OrientationKernel(form="geodesic")
    with pytest.raises(ValueError, match="unknown kernel kind 'matern72'"):
        K.TranslationKernel("matern72")
    with pytest.raises(ValueError, match="unknown orientation kernel"):
        K.ViewKernel(orientation="quaternion")
    with pytest.raises(ValueError, match="Tait-Bryan"):
        K.EulerPeriodicKernel(order="xyx")
    with pytest.raises(ValueError, match="nu must be positive"):
        K.SO3MaternKernel(nu=0)
    with pytest.raises(ValueError, match="reads input column 11"):
        K.TranslationKernel()(torch.zeros(4, 9, dtype=torch.float64))


def test_gppvae_view_kernel():
    k = K.GPPVAEViewKernel(num_views=4).double()
    ids = torch.tensor([[0.0], [1.0], [3.0], [1.0]], dtype=torch.float64)
    M = _dense(k, ids)
    W = k.embedding.detach() / k.embedding.detach().norm(dim=-1, keepdim=True)
    assert torch.allclose(M, W[[0, 1, 3, 1]] @ W[[0, 1, 3, 1]].T, atol=1e-14)
    assert torch.allclose(M.diagonal(), torch.ones(4, dtype=torch.float64), atol=1e-12)
    assert _min_eig(M) > -1e-10
    with pytest.raises(ValueError, match="view id 7 .* cannot predict views absent from training"):
        k(torch.tensor([[7.0]], dtype=torch.float64), ids).to_dense()
    with pytest.raises(ValueError, match="view id 1.5 is not an integer"):
        k(torch.tensor([[1.5]], dtype=torch.float64)).to_dense()
    # Training on views {0, 1, 3} never touches the embedding row of the unseen view 2.
    loss = k(ids, ids).to_dense().pow(2).sum()
    loss.backward()
    assert k.embedding.grad[2].abs().max() == 0 and k.embedding.grad[[0, 1, 3]].abs().max() > 0
    low = K.GPPVAEViewKernel(num_views=6, rank=2).double()
    assert torch.linalg.matrix_rank(_dense(low, torch.arange(6.0, dtype=torch.float64)[:, None])) == 2


if __name__ == "__main__":
    torch.set_num_threads(1)
    rows = min_eigenvalue_table()
    print(f"{'kernel':36s} {'l=0.3':>10s} {'l=1':>10s} {'l=2':>10s}   (500 random poses, float64)")
    for name, vals in rows.items():
        print(f"{name:36s} " + " ".join(f"{v:10.3e}" for v in vals))
