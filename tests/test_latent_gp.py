import copy
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
    gp = LatentGP(kernel=k, mean=mean, noise=0.3, optimizer=None).fit(x, z)
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
    gp = LatentGP(kernel=_kernel(), noise=0.3, optimizer=None).fit(x, z)
    Ky = gp.kernel(x, x).to_dense().detach().numpy() + 0.3 * np.eye(12)
    r = z.numpy() - z.numpy().mean(0)
    quad = np.trace(r.T @ np.linalg.solve(Ky, r))
    ref = -0.5 * 40 * np.linalg.slogdet(Ky)[1] - 0.5 * quad - 0.5 * 12 * 40 * math.log(2 * math.pi)
    assert gp.log_marginal_likelihood().item() == pytest.approx(ref, rel=1e-12)
    assert gp.log_marginal_likelihood(x, z).item() == pytest.approx(ref, rel=1e-12)
    gp.optimizer, gp.steps = "adam", 3  # configured after construction, as scikit-learn allows
    gp.fit(x, z)
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
    gp = LatentGP(kernel=k, mean="zero", noise=0.1, steps=150, lr=0.05).fit(x, z)
    hp = gp.hyperparameters()
    ls = hp["base_kernel.lengthscale"]
    assert abs(ls - 0.7) / 0.7 < 0.15, ls
    assert gp.history_[-1] < gp.history_[0]
    assert hp["outputscale"] == pytest.approx(2.0, rel=0.3)


def test_samples_match_posterior_covariance_and_are_reproducible():
    x, z, xq = _data(15, 4, 3, seed=4)
    gp = LatentGP(kernel=_kernel(), noise=0.1, optimizer=None).fit(x, z)
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
    gp = LatentGP(kernel=geo, noise=5.0, learn_noise=False, max_jitter_tries=2, optimizer=None)
    gp.fit(x, torch.randn(20, 2, generator=g, dtype=torch.float64))
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
    gp = LatentGP(kernel=ScaleKernel(RBFKernel()).double(), noise=0.5, optimizer="adam", steps=10)

    def poison(step, value):
        if step == 2:
            with torch.no_grad():
                gp.kernel.raw_outputscale.fill_(float("nan"))

    with pytest.warns(RuntimeWarning, match="non-finite loss at step 3"):
        gp.fit(x, z, callback=poison)
    assert len(gp.history_) == 3
    assert math.isfinite(gp.hyperparameters()["outputscale"])
    assert gp.log_marginal_likelihood().item() == pytest.approx(-min(gp.history_) * 80, rel=1e-12)
    assert bool(torch.isfinite(gp.predict(x)[0]).all())


def test_duplicates_variance_shape_and_sphere():
    x, z, xq = _data(10, 3, 8, seed=6)
    xd = torch.cat([x, x[:3]])
    zd = torch.cat([z, z[:3] + 0.01])
    gp = LatentGP(kernel=_kernel(), noise=0.05, optimizer=None).fit(xd, zd)
    _, v_train = gp.predict(x)
    far = x.clone()
    far[:, 9:12] += 50.0  # far away in translation: prior variance
    _, v_far = gp.predict(far)
    assert bool((v_train < v_far).all())
    assert torch.allclose(v_far, torch.full_like(v_far, 1.7), atol=1e-6)
    zs = torch.nn.functional.normalize(torch.randn(10, 18, 8, dtype=torch.float64), dim=-1)
    gps = LatentGP(kernel=_kernel(), noise=0.05, latent_geometry="sphere", optimizer=None).fit(x, zs)
    m, v = gps.predict(xq)
    assert m.shape == (3, 18, 8) and v.shape == (3,)
    assert torch.allclose(m.norm(dim=-1), torch.ones(3, 18, dtype=torch.float64), atol=1e-12)
    s = gps.sample(xq, 2)
    assert s.shape == (2, 3, 18, 8)
    assert torch.allclose(s.norm(dim=-1), torch.ones(2, 3, 18, dtype=torch.float64), atol=1e-12)


def test_bad_inputs_raise_clear_errors():
    x, z, _ = _data(8, 0, 3, seed=7)
    gp = LatentGP(kernel=_kernel(), steps=1)
    zn = z.clone()
    zn[5, 1] = float("nan")
    with pytest.raises(ValueError, match="row 5"):
        gp.fit(x, zn)
    with pytest.raises(ValueError, match="N = 8"):
        gp.fit(x, z[:4])
    xn = x.clone()
    xn[3, 10] = float("inf")
    with pytest.raises(ValueError, match="poses: non-finite .* row 3"):
        gp.fit(xn, z)
    with pytest.raises(ValueError, match="pose features"):
        gp.fit(x[:, 0], z)
    with pytest.raises(RuntimeError, match="not fitted"):
        gp.predict(x)
    gp.optimizer = None
    gp.fit(x, z)
    with pytest.raises(ValueError, match="13 pose columns"):
        gp.predict(torch.zeros(2, 13, dtype=torch.float64))
    with pytest.raises(ValueError, match="number of samples"):
        gp.sample(x, -1)
    # Refitting on other data replaces the fitted pose width instead of rejecting it.
    x13 = torch.cat([x, torch.arange(8, dtype=torch.float64)[:, None]], 1)
    assert gp.fit(x13, z).predict(x13)[0].shape == (8, 3)
    # A kernel matrix that is not positive definite (geodesic SE at l = 2) with tiny noise: the
    # bounded jitter retry gives up with a clear error instead of returning garbage.
    geo = GeodesicSEKernel().double()
    geo.lengthscale = f64(2.0)
    bad = LatentGP(kernel=geo, noise=1e-6, learn_noise=False, max_jitter_tries=3, optimizer=None)
    xr = P.pose_features(P.random_rotations(200, torch.Generator().manual_seed(0)))
    with pytest.raises(NotPSDError, match="not positive definite .* raise the noise"):
        bad.fit(xr, torch.randn(200, 2, dtype=torch.float64))
    # Duplicate poses are fine: the noise term keeps K + s^2 I positive definite.
    dup = LatentGP(kernel=ScaleKernel(RBFKernel()).double(), noise=1e-6, learn_noise=False, optimizer=None)
    dup.fit(torch.zeros(5, 12, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64))


def test_fixed_hyperparameters_and_state_dict_round_trip():
    x, z, xq = _data(20, 5, 4, seed=8)
    k = ScaleKernel(OrientationKernel(form="exp")).double()
    k.outputscale = f64(13.8156)
    k.base_kernel.lengthscale = f64(1.0975)
    gp = LatentGP(kernel=k, noise=1.4, learn_noise=False, optimizer=None).fit(x, z)
    hp = gp.hyperparameters()
    assert hp["noise"] == pytest.approx(1.4) and hp["outputscale"] == pytest.approx(13.8156)
    assert hp["base_kernel.lengthscale"] == pytest.approx(1.0975)
    gp2 = LatentGP(kernel=ScaleKernel(OrientationKernel(form="exp")).double(), optimizer=None)
    gp2.load_state_dict(gp.state_dict())
    gp2.fit(x, z)
    assert torch.equal(gp.predict(xq)[0], gp2.predict(xq)[0])
    # learn_noise=False keeps the noise through optimisation.
    gp.optimizer, gp.steps = "auto", 5
    gp.fit(x, z)
    assert gp.hyperparameters()["noise"] == pytest.approx(1.4)


# ------------------------------------------------------------------------------------ configuration
# scikit-learn style: how to fit is given to the constructor, fit() takes the data.
@pytest.mark.parametrize("name,value", [
    ("optimizer", "sgd"), ("optimizer", "LBFGS"),
    ("subset", "half"), ("subset", 1), ("subset", [3]), ("subset", [0, -1]), ("subset", True),
    ("subset", np.array([True, False, True])),
    ("steps", -1), ("steps", 2.5), ("steps", "10"),
    ("lr", 0.0), ("lr", -0.1), ("lr", float("nan")),
    ("seed", 1.5), ("seed", None),
])
def test_constructor_rejects_bad_fit_options_naming_the_argument(name, value):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        LatentGP(**{name: value})


def test_constructor_stores_the_fit_options_unchanged():
    idx = [0, 3, 5]
    gp = LatentGP(optimizer="lbfgs", steps=7, lr=0.5, subset=idx, seed=4)
    assert (gp.optimizer, gp.steps, gp.lr, gp.seed) == ("lbfgs", 7, 0.5, 4) and gp.subset is idx
    assert gp.optimizer_ is None and gp.subset_ is None  # fitted state only after fit()
    defaults = LatentGP()
    options = (defaults.optimizer, defaults.steps, defaults.lr, defaults.subset, defaults.seed)
    assert options == ("auto", None, None, "auto", 0)


def test_optimizer_none_keeps_the_hyperparameters_exactly_and_only_solves():
    x, z, xq = _data(20, 4, 3, seed=10)
    gp = LatentGP(kernel=_kernel(), noise=0.2, optimizer=None)
    before = {k: v.clone() for k, v in gp.state_dict().items()}
    gp.fit(x, z)
    after = gp.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert gp.optimizer_ is None and gp.history_ == [] and gp.subset_ is None and gp.is_fitted
    # the same as steps=0 with an optimiser
    same = LatentGP(kernel=_kernel(), noise=0.2, optimizer="adam", steps=0).fit(x, z)
    assert same.optimizer_ is None and torch.equal(same.predict(xq)[0], gp.predict(xq)[0])


def test_adam_options_reach_the_optimiser():
    # Reference: torch's Adam on the public likelihood per latent value, lr and steps as configured,
    # keeping the best parameters seen (fit() also keeps the last ones when they are no worse).
    x, z, _ = _data(14, 0, 3, seed=11)
    steps, lr = 6, 0.03
    gp = LatentGP(kernel=_kernel(), noise=0.2, optimizer="adam", steps=steps, lr=lr, subset=None).fit(x, z)
    ref = LatentGP(kernel=_kernel(), noise=0.2)
    opt = torch.optim.Adam(ref.parameters(), lr=lr)
    values, states = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = -ref.log_marginal_likelihood(x, z) / z.numel()
        values.append(float(loss.detach()))
        states.append(copy.deepcopy(ref.state_dict()))
        loss.backward()
        opt.step()
    assert gp.optimizer_ == "adam" and gp.history_ == pytest.approx(values, rel=1e-12)
    last = float(-ref.log_marginal_likelihood(x, z).detach() / z.numel())
    if last > min(values):
        ref.load_state_dict(states[values.index(min(values))])
    assert gp.hyperparameters() == pytest.approx(ref.hyperparameters(), rel=1e-10)
    # another learning rate: another result
    other = LatentGP(kernel=_kernel(), noise=0.2, optimizer="adam", steps=steps, lr=0.01, subset=None).fit(x, z)
    assert other.hyperparameters()["noise"] != pytest.approx(gp.hyperparameters()["noise"], rel=1e-6)


def test_seeded_subset_fits_are_reproducible_and_the_seed_picks_the_subset():
    from viewgp.subset import stratified_subset

    x, z, _ = _data(40, 0, 2, seed=12)
    x = torch.cat([x, torch.linspace(0, 1, 40, dtype=torch.float64)[:, None]], 1)  # (N, 13) with times

    def fit(seed):
        return LatentGP(kernel=_kernel(), noise=0.2, optimizer="lbfgs", steps=4, subset=12, seed=seed).fit(x, z)

    a, b, c = fit(3), fit(3), fit(4)
    expected = stratified_subset(x, 12, LatentGP(kernel=_kernel(), noise=0.2).correlation(x), seed=3)
    assert torch.equal(a.subset_, expected) and torch.equal(b.subset_, expected)
    assert a.hyperparameters() == b.hyperparameters() and a.history_ == b.history_
    assert c.subset_.shape == (12,) and not torch.equal(c.subset_, a.subset_)
    # indices given as a numpy array work with the default optimiser (no comparison: not "auto")
    idx = np.arange(0, 40, 3)
    d = LatentGP(kernel=_kernel(), noise=0.2, steps=3, subset=idx).fit(x, z)
    assert d.optimizer_ == "lbfgs" and d.loo_errors_ is None and d.subset_.tolist() == idx.tolist()


def test_the_kernel_passed_in_is_left_untouched():
    x, z, _ = _data(15, 0, 3, seed=13)
    k = _kernel()
    before = {n: v.clone() for n, v in k.state_dict().items()}
    gp = LatentGP(kernel=k, noise=0.2, optimizer="adam", steps=5, subset=None).fit(x, z)
    assert gp.kernel is not k
    assert all(torch.equal(v, k.state_dict()[n]) for n, v in before.items())
    assert gp.hyperparameters()["outputscale"] != pytest.approx(1.7, rel=1e-6)  # the copy was fitted
