import math

import gpytorch
import numpy as np
import pytest
import torch
from gpytorch.kernels import RBFKernel, ScaleKernel

from viewgp import poses as P
from viewgp.kernels import GeodesicSEKernel, OrientationKernel, ViewKernel
from viewgp.latent_gp import LatentGP, NotPSDError


def f64(v):
    return torch.as_tensor(v, dtype=torch.float64)


def _data(n, m, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = P.random_rotations(n + m, g)
    T = torch.randn(n + m, 3, generator=g, dtype=torch.float64)
    x = P.pose_features(R, T)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x[:n], z, x[n:]


def _kernel():
    k = ScaleKernel(ViewKernel()).double()
    k.outputscale = f64(1.7)
    k.base_kernel.orientation.lengthscale = f64(0.8)
    k.base_kernel.translation.lengthscale = f64(1.3)
    return k


@pytest.mark.parametrize("mean", ["constant", "zero"])
def test_posterior_equals_dense_solve(mean):
    x, z, xq = _data(30, 11, 7)
    k = _kernel()
    gp = LatentGP(kernel=k, mean=mean, noise=0.3).fit(x, z, optimize=False)
    mu, var = gp.predict(xq)
    _, cov = gp.predict(xq, full_cov=True)
    Kf = k(torch.cat([x, xq]), torch.cat([x, xq])).to_dense().detach().numpy()
    Kxx, Kqx, Kqq = Kf[:30, :30] + 0.3 * np.eye(30), Kf[30:, :30], Kf[30:, 30:]
    m0 = z.numpy().mean(0) if mean == "constant" else np.zeros(7)
    ref_mu = m0 + Kqx @ np.linalg.solve(Kxx, z.numpy() - m0)
    ref_cov = Kqq - Kqx @ np.linalg.solve(Kxx, Kqx.T)
    np.testing.assert_allclose(mu.numpy(), ref_mu, atol=1e-8)
    np.testing.assert_allclose(var.numpy(), np.diag(ref_cov), atol=1e-8)
    np.testing.assert_allclose(cov.numpy(), ref_cov, atol=1e-8)
    _, var_n = gp.predict(xq, include_noise=True)
    np.testing.assert_allclose(var_n.numpy(), np.diag(ref_cov) + 0.3, atol=1e-8)


@pytest.mark.parametrize("mean", ["constant", "zero"])
def test_log_marginal_likelihood_equals_sum_of_gpytorch_exact_mlls(mean):
    x, z, _ = _data(25, 0, 5, seed=1)
    z = z + torch.arange(5, dtype=torch.float64)  # a non-zero mean per dimension
    k = _kernel()
    gp = LatentGP(kernel=k, mean=mean, noise=0.2)
    ours = gp.log_marginal_likelihood(x, z).item()

    class GP(gpytorch.models.ExactGP):
        def __init__(self, x, y, lik):
            super().__init__(x, y, lik)
            self.mean = gpytorch.means.ConstantMean()
            self.cov = k

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean(x), self.cov(x))

    total = 0.0
    with gpytorch.settings.max_cholesky_size(10**5), torch.no_grad():
        for d in range(5):
            noise_floor = gpytorch.constraints.GreaterThan(1e-8)  # gpytorch's default 1e-4 floor is fine too
            lik = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=noise_floor).double()
            lik.noise = f64(0.2)
            c = z[:, d].mean() if mean == "constant" else f64(0.0)
            model = GP(x, z[:, d], lik).double()
            model.mean.constant = c  # our constant mean is the empirical one, fixed (set in float64)
            model.train()
            mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
            total += float(mll(model(x), z[:, d])) * x.shape[0]  # gpytorch divides by N
    assert ours == pytest.approx(total, abs=1e-8)


def test_many_dims_likelihood_matches_dense_reference():
    # D > N: fit() replaces R by its N x N QR factor; the likelihood and its history must not change.
    x, z, _ = _data(12, 0, 40, seed=2)
    z = z + 3.0
    gp = LatentGP(kernel=_kernel(), noise=0.3).fit(x, z, optimize=False)
    Ky = gp.kernel(x, x).to_dense().detach().numpy() + 0.3 * np.eye(12)
    r = z.numpy() - z.numpy().mean(0)
    quad = np.trace(r.T @ np.linalg.solve(Ky, r))
    ref = -0.5 * 40 * np.linalg.slogdet(Ky)[1] - 0.5 * quad - 0.5 * 12 * 40 * math.log(2 * math.pi)
    assert gp.log_marginal_likelihood().item() == pytest.approx(ref, rel=1e-12)
    assert gp.log_marginal_likelihood(x, z).item() == pytest.approx(ref, rel=1e-12)
    gp.fit(x, z, steps=3, optimizer="adam")
    assert gp.history_[0] == pytest.approx(-ref / (12 * 40), rel=1e-12)
    assert len(gp.history_) == 3 and gp.history_[-1] < gp.history_[0]


def test_fit_recovers_known_lengthscale():
    g = torch.Generator().manual_seed(3)
    n, d = 200, 32
    x = P.pose_features(P.random_rotations(n, g))
    true = OrientationKernel().double()
    true.lengthscale = f64(0.7)
    Kt = 2.0 * true(x, x).to_dense().detach() + 0.01 * torch.eye(n, dtype=torch.float64)
    z = torch.linalg.cholesky(Kt) @ torch.randn(n, d, generator=g, dtype=torch.float64)
    k = ScaleKernel(OrientationKernel()).double()
    k.base_kernel.lengthscale = f64(1.5)
    gp = LatentGP(kernel=k, mean="zero", noise=0.1).fit(x, z, steps=150, lr=0.05)
    hp = gp.hyperparameters()
    ls = hp["base_kernel.lengthscale"]
    assert abs(ls - 0.7) / 0.7 < 0.15, ls
    assert gp.history_[-1] < gp.history_[0]
    assert hp["outputscale"] == pytest.approx(2.0, rel=0.3)


def test_samples_match_posterior_covariance_and_are_reproducible():
    x, z, xq = _data(15, 4, 3, seed=4)
    gp = LatentGP(kernel=_kernel(), noise=0.1).fit(x, z, optimize=False)
    mu, cov = gp.predict(xq, full_cov=True)
    s = gp.sample(xq, 4000, generator=torch.Generator().manual_seed(0))
    assert s.shape == (4000, 4, 3)
    emp_mean = s.mean(0)
    assert torch.allclose(emp_mean, mu, atol=0.08)
    c = s[:, :, 0] - s[:, :, 0].mean(0)
    emp_cov = c.T @ c / (len(c) - 1)
    assert torch.allclose(emp_cov, cov, atol=0.08 * float(cov.diagonal().max()) + 1e-3)
    s2 = gp.sample(xq, 4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, s2)


def test_sample_falls_back_to_clipped_spectrum_for_an_indefinite_posterior():
    # The geodesic SE kernel is not PD at l = 2: the posterior covariance has negative eigenvalues that
    # no bounded jitter fixes, so sample() clips the spectrum (at 1e-5 of the largest eigenvalue).
    geo = GeodesicSEKernel().double()
    geo.lengthscale = f64(2.0)
    g = torch.Generator().manual_seed(0)
    x, xq = P.pose_features(P.random_rotations(20, g)), P.pose_features(P.random_rotations(80, g))
    gp = LatentGP(kernel=geo, noise=5.0, learn_noise=False, max_jitter_tries=2)
    gp.fit(x, torch.randn(20, 2, generator=g, dtype=torch.float64), optimize=False)
    _, cov = gp.predict(xq, full_cov=True)
    w, Q = torch.linalg.eigh(cov)
    assert float(w[0]) < -0.1
    clipped = (Q * w.clamp_min(1e-5 * w.max())) @ Q.T
    s = gp.sample(xq, 3000, generator=torch.Generator().manual_seed(1))
    c = s[:, :, 0] - s[:, :, 0].mean(0)
    emp = c.T @ c / (len(c) - 1)
    assert torch.allclose(emp, clipped, atol=0.1 * float(clipped.diagonal().max()))


def test_mll_gradcheck():
    x, z, _ = _data(6, 0, 3, seed=5)
    k = ScaleKernel(RBFKernel()).double()
    gp = LatentGP(kernel=k, noise=0.3)
    names = ["raw_noise", "kernel.raw_outputscale", "kernel.base_kernel.raw_lengthscale"]
    params = dict(gp.named_parameters())
    raws = tuple(params[n].detach().clone().requires_grad_(True) for n in names)

    def f(*r):
        # Evaluate the likelihood with the raw parameters swapped for gradcheck's inputs.
        with torch.nn.utils.stateless._reparametrize_module(gp, dict(zip(names, r))):
            return gp.log_marginal_likelihood(x, z)

    assert torch.autograd.gradcheck(f, raws)
    # ... and with respect to the latents (e.g. for training an encoder under the GP prior).
    zg = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: gp.log_marginal_likelihood(x, v), (zg,))


def test_nan_step_restores_best_parameters():
    x, z, _ = _data(20, 0, 4, seed=9)
    gp = LatentGP(kernel=ScaleKernel(RBFKernel()).double(), noise=0.5)

    def poison(step, value):
        if step == 2:
            with torch.no_grad():
                gp.kernel.raw_outputscale.fill_(float("nan"))

    with pytest.warns(RuntimeWarning, match="non-finite loss at step 3"):
        gp.fit(x, z, steps=10, callback=poison, optimizer="adam")
    assert len(gp.history_) == 3
    assert math.isfinite(gp.hyperparameters()["outputscale"])
    assert gp.log_marginal_likelihood().item() == pytest.approx(-min(gp.history_) * 80, rel=1e-12)
    assert bool(torch.isfinite(gp.predict(x)[0]).all())


def test_duplicates_variance_shape_and_sphere():
    x, z, xq = _data(10, 3, 8, seed=6)
    xd = torch.cat([x, x[:3]])
    zd = torch.cat([z, z[:3] + 0.01])
    gp = LatentGP(kernel=_kernel(), noise=0.05).fit(xd, zd, optimize=False)
    _, v_train = gp.predict(x)
    far = x.clone()
    far[:, 9:12] += 50.0  # far away in translation: prior variance
    _, v_far = gp.predict(far)
    assert bool((v_train < v_far).all())
    assert torch.allclose(v_far, torch.full_like(v_far, 1.7), atol=1e-6)
    zs = torch.nn.functional.normalize(torch.randn(10, 18, 8, dtype=torch.float64), dim=-1)
    gps = LatentGP(kernel=_kernel(), noise=0.05, latent_geometry="sphere").fit(x, zs, optimize=False)
    m, v = gps.predict(xq)
    assert m.shape == (3, 18, 8) and v.shape == (3,)
    assert torch.allclose(m.norm(dim=-1), torch.ones(3, 18, dtype=torch.float64), atol=1e-12)
    s = gps.sample(xq, 2)
    assert s.shape == (2, 3, 18, 8)
    assert torch.allclose(s.norm(dim=-1), torch.ones(2, 3, 18, dtype=torch.float64), atol=1e-12)


def test_bad_inputs_raise_clear_errors():
    x, z, _ = _data(8, 0, 3, seed=7)
    gp = LatentGP(kernel=_kernel())
    zn = z.clone()
    zn[5, 1] = float("nan")
    with pytest.raises(ValueError, match="row 5"):
        gp.fit(x, zn, steps=1)
    with pytest.raises(ValueError, match="N = 8"):
        gp.fit(x, z[:4], steps=1)
    xn = x.clone()
    xn[3, 10] = float("inf")
    with pytest.raises(ValueError, match="poses: non-finite .* row 3"):
        gp.fit(xn, z, steps=1)
    with pytest.raises(ValueError, match="pose features"):
        gp.fit(x[:, 0], z, steps=1)
    with pytest.raises(RuntimeError, match="not fitted"):
        gp.predict(x)
    gp.fit(x, z, optimize=False)
    with pytest.raises(ValueError, match="13 pose columns"):
        gp.predict(torch.zeros(2, 13, dtype=torch.float64))
    with pytest.raises(ValueError, match="number of samples"):
        gp.sample(x, -1)
    # Refitting on other data replaces the fitted pose width instead of rejecting it.
    x13 = torch.cat([x, torch.arange(8, dtype=torch.float64)[:, None]], 1)
    assert gp.fit(x13, z, optimize=False).predict(x13)[0].shape == (8, 3)
    # A kernel matrix that is not positive definite (geodesic SE at l = 2) with tiny noise: the
    # bounded jitter retry gives up with a clear error instead of returning garbage.
    geo = GeodesicSEKernel().double()
    geo.lengthscale = f64(2.0)
    bad = LatentGP(kernel=geo, noise=1e-6, learn_noise=False, max_jitter_tries=3)
    xr = P.pose_features(P.random_rotations(200, torch.Generator().manual_seed(0)))
    with pytest.raises(NotPSDError, match="not positive definite .* raise the noise"):
        bad.fit(xr, torch.randn(200, 2, dtype=torch.float64), optimize=False)
    # Duplicate poses are fine: the noise term keeps K + s^2 I positive definite.
    dup = LatentGP(kernel=ScaleKernel(RBFKernel()).double(), noise=1e-6, learn_noise=False)
    dup.fit(torch.zeros(5, 12, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64), optimize=False)


def test_fixed_hyperparameters_and_state_dict_round_trip():
    x, z, xq = _data(20, 5, 4, seed=8)
    k = ScaleKernel(OrientationKernel(form="exp")).double()
    k.outputscale = f64(13.8156)
    k.base_kernel.lengthscale = f64(1.0975)
    gp = LatentGP(kernel=k, noise=1.4, learn_noise=False).fit(x, z, optimize=False)
    hp = gp.hyperparameters()
    assert hp["noise"] == pytest.approx(1.4) and hp["outputscale"] == pytest.approx(13.8156)
    assert hp["base_kernel.lengthscale"] == pytest.approx(1.0975)
    gp2 = LatentGP(kernel=ScaleKernel(OrientationKernel(form="exp")).double())
    gp2.load_state_dict(gp.state_dict())
    gp2.fit(x, z, optimize=False)
    assert torch.equal(gp.predict(xq)[0], gp2.predict(xq)[0])
    # learn_noise=False keeps the noise through optimisation.
    gp.fit(x, z, steps=5)
    assert gp.hyperparameters()["noise"] == pytest.approx(1.4)
