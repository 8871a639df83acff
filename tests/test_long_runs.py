"""Long runs: fused view-kernel Gram and gradient, float32 gradients, L-BFGS, subset fits, the
inducing-point solver and chunked prediction (all small and on the CPU; speed is in benchmarks/)."""

import math
import warnings

import numpy as np
import pytest
import torch
from gpytorch.kernels import RBFKernel, ScaleKernel

import viewgp.latent_gp as latent_gp
import viewgp.likelihood as likelihood
from viewgp import poses as P
from viewgp.fused import FusedGram
from viewgp.kernels import OrientationKernel, ViewKernel
from viewgp.latent_gp import LatentGP, NotPSDError
from viewgp.predict import build_gp, gp_predict
from viewgp.subset import auto_subset_size, kernel_cover, stratified_subset

FACTORS = [("rbf", None), ("matern32", "matern32"), ("matern52", "matern12"), ("matern12", "rbf")]


def _poses(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = P.random_rotations(n, g)
    T = torch.randn(n, 3, generator=g, dtype=torch.float64) + 5.0  # off-centre: the norm expansion must hold
    t = torch.rand(n, generator=g, dtype=torch.float64) * 10
    return P.pose_features(R, T, t)


def _kernel(translation="rbf", temporal=None):
    k = ScaleKernel(ViewKernel(translation=translation, temporal=temporal)).double()
    k.outputscale = 1.7
    k.base_kernel.orientation.lengthscale = 0.8
    k.base_kernel.translation.lengthscale = 1.3
    if temporal:
        k.base_kernel.temporal.lengthscale = 2.0
    return k


def _trajectory(n, d=8, seed=0, noise=0.05):
    """A smooth camera path (poses a function of time) and smooth latents of the pose plus noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 10, n, dtype=torch.float64)
    rv = torch.stack([0.3 * torch.sin(0.7 * t), 0.9 * torch.sin(0.3 * t), 0.1 * torch.cos(t)], -1)
    T = torch.stack([0.3 * t, torch.sin(0.5 * t), torch.zeros_like(t)], -1)
    x = P.pose_features(P.so3_exp(rv), T, t)
    W = torch.randn(12, d, generator=g, dtype=torch.float64)
    z = torch.sin(x[:, :12] @ W) + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, z


def _gp(**kw):
    return LatentGP(kernel=_kernel(), noise=0.05, **kw)


# ------------------------------------------------------------------------------------ fused Gram
@pytest.mark.parametrize("translation,temporal", FACTORS)
def test_fused_matrix_equals_the_gpytorch_kernel(translation, temporal):
    x, xq = _poses(40), _poses(7, seed=1)
    k = _kernel(translation, temporal)
    plan = FusedGram.from_kernel(k)
    assert plan is not None
    plan.block = 16  # several blocks, including a partial one
    with torch.no_grad():
        ref, ref_q = k(x, x).to_dense(), k(xq, x).to_dense()
    torch.testing.assert_close(plan.matrix(x), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(plan.matrix(xq, x), ref_q, rtol=1e-12, atol=1e-12)
    low = plan.matrix(x, add_diagonal=0.3, lower_only=True)
    torch.testing.assert_close(torch.tril(low), torch.tril(ref) + 0.3 * torch.eye(40, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert torch.equal(plan.matrix(x).diagonal(), ref.diagonal())  # k(x, x) = s^2 exactly


def test_fused_matrix_has_no_subnormal_entries_and_writes_into_a_given_buffer():
    x = _poses(30)
    x[15:, 9:12] += 200.0  # two groups 200 lengthscales apart: their correlation is far below 1e-300
    plan = FusedGram.from_kernel(_kernel())
    K = plan.matrix(x)
    tiny = K.abs() < 1e-300 * 1.7
    assert bool(tiny.any()) and bool((K[tiny] == 0).all())  # exactly 0, never a (slow) subnormal number
    out = torch.full((30, 30), 7.0, dtype=torch.float64)
    plan.block = 8
    assert plan.matrix(x, lower_only=True, out=out) is out
    # Exact where the code writes values rather than computing them: the diagonal (s^2) and the zeros.
    assert torch.equal(out.diagonal(), K.diagonal())
    lower = torch.ones(30, 30, dtype=torch.bool).tril()
    assert torch.equal(out[lower] == 0, K[lower] == 0)
    # Elsewhere the exponent is one matrix product, which BLAS rounds differently with the blocking
    # (and the CPU: AVX2 vs AVX-512 kernels): not bitwise. Its rounding error is bounded by a few eps
    # times the sum of the absolute terms of each dot product, |left| @ |right|^T (large here: the
    # two groups lie 200 units apart), and the relative error of exp(.) is that absolute error.
    scale, ls = plan._floats()
    centre = x.mean(0)
    terms = plan._quadratic(x, centre, ls, scale, True).abs() @ plan._quadratic(x, centre, ls, scale, False).abs().mT
    eps = torch.finfo(torch.float64).eps
    assert bool(((out - K).abs() <= 16 * eps * terms * K.abs())[lower].all())
    assert float(16 * eps * terms.max()) < 1e-9  # and still tight enough to catch any real error
    assert all(bool((out[s:s + 8, s + 8:] == 7.0).all()) for s in range(0, 30, 8))  # right of the blocks: not written
    with pytest.raises(ValueError, match="out"):
        plan.matrix(x, out=torch.empty(30, 29, dtype=torch.float64))


def test_kernels_not_covered_fall_back_to_their_gpytorch_graph():
    assert FusedGram.from_kernel(ScaleKernel(ViewKernel(orientation="exp"))) is None
    assert FusedGram.from_kernel(ScaleKernel(ViewKernel(orientation="heat"))) is None
    assert FusedGram.from_kernel(ScaleKernel(OrientationKernel())) is None
    assert FusedGram.from_kernel(ScaleKernel(RBFKernel())) is None
    assert FusedGram.from_kernel(ViewKernel()) is None  # no output scale
    ard = ScaleKernel(ViewKernel())
    ard.base_kernel.translation = type(ard.base_kernel.translation)(ard=True)
    assert FusedGram.from_kernel(ard) is None
    x, z = _trajectory(30)
    gp = LatentGP(kernel=ScaleKernel(ViewKernel(orientation="exp")).double(), steps=3).fit(x, z)
    assert gp.predict(x)[0].shape == z.shape


@pytest.mark.parametrize("translation,temporal", FACTORS)
def test_fused_likelihood_and_gradient_equal_autograd_through_gpytorch(translation, temporal):
    x = _poses(60)
    z = torch.randn(60, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = {}
    for fused, precision in [(False, "float64"), (True, "float64"), (True, "float32")]:
        gp = LatentGP(kernel=_kernel(translation, temporal), noise=0.1, fused=fused, gradient_precision=precision)
        loss = -gp.log_marginal_likelihood(x, z)
        loss.backward()
        out[(fused, precision)] = (loss.detach(), torch.cat([p.grad.reshape(-1) for p in gp.parameters()]))
    ref_v, ref_g = out[(False, "float64")]
    v, gr = out[(True, "float64")]
    torch.testing.assert_close(v, ref_v, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(gr, ref_g, rtol=1e-9, atol=1e-9)
    v32, g32 = out[(True, "float32")]
    assert torch.equal(v32, v)  # the value is always float64
    assert float((g32 - ref_g).abs().max() / ref_g.abs().max()) < 1e-4


@pytest.mark.parametrize("translation,temporal", FACTORS)
def test_fused_gradient_from_the_kept_kernel_blocks_equals_recomputing_them(translation, temporal):
    x = _poses(70)
    plan = FusedGram.from_kernel(_kernel(translation, temporal))
    plan.block = 16  # several blocks, the last one short
    W = torch.randn(70, 70, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    W = W + W.mT
    K = plan.matrix(x, add_diagonal=0.3, lower_only=True)
    lower = K.tril().clone()
    recomputed = plan.gradient(x, W)
    reused = plan.gradient(x, W, gram=K)
    torch.testing.assert_close(torch.stack(reused), torch.stack(recomputed), rtol=1e-12, atol=1e-12)
    assert torch.equal(K.tril(), lower)  # read, not overwritten (the noise stays out of the gradient)
    gp = LatentGP(kernel=_kernel(translation, temporal), noise=0.3)
    L, kept = gp._gram_cholesky(x, plan, 0.3, keep=torch.float64)
    # a copy (L took the built matrix's place), without the noise: the gradient's diagonal is s^2
    assert kept is not None and torch.equal(kept.tril(-1), lower.tril(-1))
    assert torch.equal(kept.diagonal(), torch.full((70,), plan._floats()[0], dtype=torch.float64))  # s^2
    torch.testing.assert_close(L, torch.linalg.cholesky(lower + lower.tril(-1).mT), rtol=0, atol=1e-12)
    # kept in float32 for a float32 gradient: the same as converting the float64 blocks one by one
    _, kept32 = gp._gram_cholesky(x, plan, 0.3, keep=torch.float32)
    assert kept32.dtype == torch.float32 and torch.equal(kept32.tril(-1), lower.tril(-1).float())
    W32 = W.float()
    torch.testing.assert_close(torch.stack(plan.gradient(x, W32, gram=kept32)), torch.stack(plan.gradient(x, W32, gram=K)),
                               rtol=0, atol=0)


def test_step_operands_and_buffers_are_kept_while_fit_runs_only():
    gp = _gp(gradient_trace="hutchinson", trace_probes=8)
    c = torch.randn(30, 4, dtype=torch.float64)
    make = likelihood._column_major
    outside = gp._step_operand("c", c.detach(), make)
    assert gp._step_operand("c", c.detach(), make) is not outside  # outside fit() nothing is kept
    assert gp._buffer("B", (4, 30), torch.float64, "cpu") is not gp._buffer("B", (4, 30), torch.float64, "cpu")
    gp._step_cache = {}  # as fit() sets it
    cf = gp._step_operand("c", c.detach(), make)
    assert torch.equal(cf, c) and cf.mT.is_contiguous()  # column-major, as LAPACK takes right-hand sides
    assert gp._step_operand("c", c.detach(), make) is cf  # a new detached view of the same residuals: kept
    c.mul_(2.0)  # changed in place: made again
    cf2 = gp._step_operand("c", c.detach(), make)
    assert cf2 is not cf and torch.equal(cf2, c)
    assert gp._step_operand("c", c[:20].detach(), make).shape == (20, 4)
    buf = gp._buffer("B", (4, 30), torch.float64, "cpu")
    assert gp._buffer("B", (4, 30), torch.float64, "cpu") is buf  # the same memory at every evaluation
    assert gp._buffer("B", (4, 20), torch.float64, "cpu") is not buf and gp._buffer("B", (4, 30), torch.float32, "cpu") is not buf
    x, z = _trajectory(40)
    seen = []
    real = LatentGP._buffer

    def spy(self, name, shape, dtype, device):
        out = real(self, name, shape, dtype, device)
        seen.append((name, out.data_ptr()))
        return out

    fresh = _gp(gradient_trace="hutchinson", trace_probes=8, steps=5, optimizer="lbfgs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LatentGP, "_buffer", spy)
        fresh.fit(x, z)
    during = {}
    for name, ptr in seen[:-1]:  # the last: the solve on all frames after the fit, not kept
        during.setdefault(name, set()).add(ptr)
    assert {"gram", "B", "AU"} <= set(during) and all(len(p) == 1 for p in during.values())
    assert len(fresh.history_) > 2 and fresh._step_cache is None  # freed with the fit
    # kept memory does not change results: the same fit without the cache
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LatentGP, "_buffer", lambda self, name, shape, dtype, device: torch.empty(shape, dtype=dtype, device=device))
        again = _gp(gradient_trace="hutchinson", trace_probes=8, steps=5, optimizer="lbfgs").fit(x, z)
    assert again.history_ == fresh.history_


def test_kernel_blocks_are_not_kept_when_memory_is_short(monkeypatch):
    x, z = _trajectory(40)
    gp = _gp()
    plan = gp._plan()
    monkeypatch.setattr(likelihood, "available_bytes", lambda device: 5 * 40 * 40 * 8)  # factor + copy + W do not fit in half
    L, kept = gp._gram_cholesky(x, plan, 0.05, keep=torch.float64)
    assert kept is None
    loss = -gp.log_marginal_likelihood(x, z)
    loss.backward()
    g_short = torch.cat([p.grad.reshape(-1) for p in gp.parameters()])
    monkeypatch.undo()
    gp.zero_grad()
    (-gp.log_marginal_likelihood(x, z)).backward()
    g = torch.cat([p.grad.reshape(-1) for p in gp.parameters()])
    torch.testing.assert_close(g_short, g, rtol=1e-10, atol=1e-10)


def test_fused_gradient_with_respect_to_latents():
    x = _poses(25)
    z = torch.randn(25, 4, dtype=torch.float64, requires_grad=True)
    grads = []
    for fused in (False, True):
        gp = LatentGP(kernel=_kernel(), noise=0.2, fused=fused)
        (g,) = torch.autograd.grad(gp.log_marginal_likelihood(x, z), z)
        grads.append(g)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-10)


def test_gradient_dtype_rule():
    gp = _gp()
    assert gp.gradient_dtype(500, 1.0, 1e-2) == torch.float64  # small N: the float64 inverse is cheap
    assert gp.gradient_dtype(5000, 1.0, 1e-2) == torch.float32  # bound 6e-8 sqrt(5e5) = 8e-5
    assert gp.gradient_dtype(5000, 1.0, 1e-8) == torch.float64  # bound 8e-2: too coarse
    assert _gp(gradient_precision="float32").gradient_dtype(10, 1.0, 1e-8) == torch.float32
    assert _gp(gradient_precision="float64").gradient_dtype(10**5, 1.0, 1.0) == torch.float64
    with pytest.raises(ValueError, match="gradient_precision"):
        _gp(gradient_precision="half")
    # A run much longer than its lengthscale: far-apart frames uncorrelated, tiny Cholesky entries,
    # whose float32 products would be subnormal (slow): float64.
    t = torch.arange(300, dtype=torch.float64)
    banded = torch.linalg.cholesky(torch.exp(-(t[:, None] - t[None, :]) ** 2 / 50) + 1e-2 * torch.eye(300, dtype=torch.float64))
    dense = torch.linalg.cholesky(torch.exp(-(t[:, None] - t[None, :]) ** 2 / 5e5) + 1e-2 * torch.eye(300, dtype=torch.float64))
    assert likelihood._tiny_fraction(banded) > 0.5 and likelihood._tiny_fraction(dense) == 0.0
    assert gp.gradient_dtype(5000, 1.0, 1e-2, factor=banded) == torch.float64
    assert gp.gradient_dtype(5000, 1.0, 1e-2, factor=dense) == torch.float32


# ------------------------------------------------------------------------------------ optimiser
def test_lbfgs_converges_from_either_side_where_adam_stops_short():
    x, z = _trajectory(80, d=6)
    finals = []
    for factor in (0.5, 2.0):
        gp = _gp(optimizer="lbfgs", steps=100)
        gp.kernel.base_kernel.orientation.lengthscale = 0.8 * factor
        gp.kernel.base_kernel.translation.lengthscale = 1.3 * factor
        gp.fit(x, z)
        finals.append((gp.history_[-1], len(gp.history_), gp.hyperparameters()))
        adam = _gp(optimizer="adam", steps=30)
        adam.kernel.base_kernel.orientation.lengthscale = 0.8 * factor
        adam.kernel.base_kernel.translation.lengthscale = 1.3 * factor
        adam.fit(x, z)
        assert gp.log_marginal_likelihood() >= adam.log_marginal_likelihood() - 1e-9
    (v1, n1, h1), (v2, n2, h2) = finals
    assert abs(v1 - v2) < 1e-6 and n1 < 100 and n2 < 100
    for key in ("noise", "outputscale"):
        assert h1[key] == pytest.approx(h2[key], rel=1e-3)


def test_float32_gradients_reach_the_float64_optimum():
    x, z = _trajectory(120, d=6, seed=1)
    fits = [_gp(gradient_precision=p, optimizer="lbfgs").fit(x, z) for p in ("float64", "float32")]
    h64, h32 = (gp.hyperparameters() for gp in fits)
    # The orientation lengthscale is not identified here (the pose is a function of time and the
    # translation explains the latents): compare what is, the likelihood and the predictions.
    for key in ("noise", "outputscale", "base_kernel.translation.lengthscale"):
        assert h32[key] == pytest.approx(h64[key], rel=2e-3), key
    assert float(fits[1].log_marginal_likelihood()) == pytest.approx(float(fits[0].log_marginal_likelihood()), rel=1e-7)
    torch.testing.assert_close(fits[1].predict(x)[0], fits[0].predict(x)[0], rtol=0, atol=1e-3)


def test_lbfgs_backtracks_from_failed_evaluations_and_keeps_the_best(monkeypatch):
    x, z = _trajectory(40, d=3)
    gp = _gp(optimizer="lbfgs", steps=30)
    real = LatentGP.neg_log_marginal_likelihood
    calls = []

    def flaky(self, *args):
        calls.append(1)
        if len(calls) in (2, 3):
            raise NotPSDError("simulated")
        return real(self, *args)

    monkeypatch.setattr(LatentGP, "neg_log_marginal_likelihood", flaky)
    with pytest.warns(RuntimeWarning, match="backtracked"):
        gp.fit(x, z)
    assert gp.is_fitted and len(gp.history_) > 3
    assert min(gp.history_) <= gp.history_[0]


def test_lbfgs_that_cannot_start_warns_and_keeps_the_start(monkeypatch):
    x, z = _trajectory(30, d=3)
    gp = _gp(optimizer="lbfgs")
    before = gp.hyperparameters()

    def broken(self, *args):
        raise NotPSDError("simulated")

    monkeypatch.setattr(LatentGP, "neg_log_marginal_likelihood", broken)
    with pytest.warns(RuntimeWarning, match="stopped at the start"):
        gp.fit(x, z)
    assert gp.hyperparameters() == before and gp.is_fitted


def test_bad_optimizer_and_subset_arguments():
    x, z = _trajectory(20, d=2)
    with pytest.raises(ValueError, match="optimizer"):
        _gp(optimizer="sgd")
    with pytest.raises(ValueError, match="subset"):
        _gp(subset="half")
    with pytest.raises(ValueError, match="subset"):
        _gp(subset=1)
    with pytest.raises(ValueError, match="subset"):  # indices are checked against the frames in fit()
        _gp(subset=[0, 25]).fit(x, z)
    with pytest.raises(ValueError, match="solver"):
        LatentGP(solver="fast")


def test_median_distance_of_a_long_run_uses_evenly_spaced_frames():
    from viewgp.hyperparameters import median_distance

    x = torch.linspace(0, 1, 5001, dtype=torch.float64)[:, None]
    assert median_distance(x, max_points=5001) == pytest.approx(median_distance(x, max_points=500), rel=0.01)
    assert median_distance(x[:100]) == median_distance(x[:100], max_points=10**6)  # short runs: all pairs


# ------------------------------------------------------------------------------------ subsets
def test_auto_subset_size():
    assert auto_subset_size(300) == 300
    assert auto_subset_size(1500) == 1500
    assert auto_subset_size(2000) == 1040
    assert auto_subset_size(5000) == 1100
    assert auto_subset_size(10000) == 1200
    assert auto_subset_size(10**6) == 2000


def test_stratified_subset_covers_time_and_rare_poses():
    n = 400
    x, _ = _trajectory(n)
    x[123, :9] = P.so3_exp(torch.tensor([[3.0, 0.0, 0.0]], dtype=torch.float64)).reshape(9)  # one odd view
    gp = _gp()
    idx = stratified_subset(x, 40, gp.correlation(x), seed=0)
    assert idx.shape == (40,) and torch.equal(idx, torch.unique(idx))
    assert 123 in idx.tolist()  # the rarely seen view is in the pose half
    # every one of the 20 time strata contributes a frame
    assert set((idx * 20 // n).tolist()) == set(range(20))
    assert torch.equal(idx, stratified_subset(x, 40, gp.correlation(x), seed=0))  # seeded
    assert not torch.equal(idx, stratified_subset(x, 40, gp.correlation(x), seed=1))
    # time only, and a shuffled run: strata follow the time column, not the row order
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    idx_t = stratified_subset(x[perm], 20, seed=0)
    assert set((x[perm][idx_t, 12] * 2 // 1).long().tolist()) == set(range(20))
    assert torch.equal(stratified_subset(x, 500), torch.arange(n))


def test_kernel_cover_stops_at_the_tolerance_and_skips_duplicates():
    x, _ = _trajectory(200)
    x = torch.cat([x, x[:10]])  # duplicated frames
    gp = _gp()
    corr = gp.correlation(x)
    full = kernel_cover(corr, x.shape[0], 1000)
    assert len(full) == 200  # duplicates of chosen frames are never chosen
    loose = kernel_cover(corr, x.shape[0], 1000, tol=0.05)
    assert 1 < len(loose) < 200
    c = corr(loose).max(0).values
    assert float(c.min()) >= 0.95 - 1e-12


def test_fit_on_a_subset_solves_on_all_frames():
    x, z = _trajectory(150, d=4)
    gp = _gp(optimizer="lbfgs", subset=50).fit(x, z)
    assert gp.subset_.shape == (50,) and gp.alpha_.shape == (150, 4) and gp.cholesky_.shape == (150, 150)
    ref = _gp(optimizer=None)
    ref.load_state_dict(gp.state_dict())
    ref.fit(x, z)
    assert ref.subset_ is None
    torch.testing.assert_close(gp.predict(x)[0], ref.predict(x)[0])
    full = _gp(optimizer="lbfgs").fit(x, z)
    assert full.subset_ is None
    held = _gp(optimizer="lbfgs", subset=[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110]).fit(x, z)
    assert held.subset_.tolist()[:3] == [0, 10, 20]
    assert _gp(subset="auto", steps=2).fit(x, z).subset_ is None  # 150 frames: all of them


def test_subset_fit_makes_the_full_residual_factor_only_when_asked_and_it_is_right():
    """A fit on a subset with more values than frames (whole frames of pixels) skips the QR of all
    frames' residuals; ``residual_factor_`` then made from the factor and ``alpha_`` is the same
    likelihood's data term (C C^T = R R^T) and the log likelihood equals the one from the data."""
    x, z = _trajectory(40, d=64)
    gp = _gp(optimizer="lbfgs", subset=20).fit(x, z)
    assert gp._residual_factor is None
    c = gp.residual_factor_
    r = z - z.mean(0)
    assert c.shape == (40, 40)
    torch.testing.assert_close(c @ c.T, r @ r.T, rtol=1e-9, atol=1e-9)
    assert float(gp.log_marginal_likelihood()) == pytest.approx(float(gp.log_marginal_likelihood(x, z)), rel=1e-9)


def test_float32_means_of_a_pixel_gp_match_float64_and_leave_the_input_alone():
    """``mean_dtype=torch.float32`` keeps ``alpha_`` and ``mean_`` in float32 (half the memory of a GP
    on whole frames) and predicts the same means to float32 rounding, the same variances exactly; the
    latents given are never changed (the residuals are made in place only in the GP's own copy)."""
    x, z = _trajectory(60, d=300)
    z32 = z.float()
    before = z32.clone()
    a = _gp(optimizer=None).fit(x, z32)
    b = _gp(optimizer=None, mean_dtype=torch.float32).fit(x, z32)
    assert torch.equal(z32, before)
    assert b.alpha_.dtype == torch.float32 and b.mean_.dtype == torch.float32 and a.alpha_.dtype == torch.float64
    (ma, va), (mb, vb) = a.predict(x[::3] + 0.01), b.predict(x[::3] + 0.01)
    assert mb.dtype == torch.float32 and torch.equal(va, vb)
    assert float((ma - mb.double()).abs().max()) < 1e-5 * float(ma.abs().max())
    assert a.loo_scale() == pytest.approx(b.loo_scale(), rel=1e-5)
    torch.testing.assert_close(a.loo_scale(per_dimension=True), b.loo_scale(per_dimension=True), rtol=1e-5, atol=0)
    # the inducing solver (what solver="auto" takes when the exact factor does not fit) predicts with them too
    c = _gp(optimizer=None, solver="inducing", mean_dtype=torch.float32).fit(x, z32)
    d = _gp(optimizer=None, solver="inducing").fit(x, z32)
    assert c.alpha_.dtype == torch.float32
    assert float((c.predict(x[::3] + 0.01)[0].double() - d.predict(x[::3] + 0.01)[0]).abs().max()) < 1e-5 * float(ma.abs().max())


# ------------------------------------------------------------------------------------ inducing points
def test_inducing_solver_with_every_frame_equals_the_exact_posterior():
    x, z = _trajectory(60, d=5)
    xq = _trajectory(119)[0][1::2]  # poses between the training frames
    exact = _gp(optimizer=None).fit(x, z)
    sparse = _gp(solver="inducing", max_inducing=1000, inducing_tol=0.0, optimizer=None).fit(x, z)
    assert sparse.cholesky_ is None and sparse.inducing_.index.shape == (60,)
    m_e, v_e = exact.predict(xq)
    m_s, v_s = sparse.predict(xq)
    torch.testing.assert_close(m_s, m_e, rtol=0, atol=1e-4)
    torch.testing.assert_close(v_s, v_e, rtol=0, atol=1e-4)
    _, c_e = exact.predict(xq, full_cov=True)
    _, c_s = sparse.predict(xq, full_cov=True, include_noise=True)
    torch.testing.assert_close(c_s - 0.05 * torch.eye(59, dtype=torch.float64), c_e, rtol=0, atol=1e-4)
    assert sparse.sample(xq, 3, generator=torch.Generator().manual_seed(0)).shape == (3, 59, 5)
    with pytest.raises(RuntimeError, match="posterior_terms"):
        sparse.posterior(xq)


def test_inducing_solver_with_few_frames_stays_close():
    x, z = _trajectory(300, d=4, noise=0.1)
    exact = _gp(optimizer="lbfgs", subset=100).fit(x, z)
    sparse = _gp(solver="inducing", max_inducing=75, optimizer=None)
    sparse.load_state_dict(exact.state_dict())
    sparse.fit(x, z)
    assert len(sparse.inducing_.index) == 75
    m_e, v_e = exact.predict(x)
    m_s, v_s = sparse.predict(x)
    rel = float((m_s - m_e).norm() / (m_e - exact.mean_).norm())
    assert rel < 0.05, rel
    assert float((v_s - v_e).abs().max()) < 0.05 * float(exact.noise)


def test_solver_auto_takes_exact_while_it_fits_in_memory(monkeypatch):
    x, z = _trajectory(40, d=2)
    assert _gp(solver="auto", optimizer=None).fit(x, z).cholesky_ is not None
    monkeypatch.setattr(likelihood, "available_bytes", lambda device: 1000.0)
    gp = _gp(solver="auto", optimizer=None).fit(x, z)
    assert gp.cholesky_ is None and gp.inducing_ is not None
    assert likelihood.available_bytes.__name__ == "<lambda>"


def test_available_bytes_on_the_cpu():
    monkeypatch_free = likelihood.available_bytes(torch.device("cpu"))
    assert monkeypatch_free > 0


# ------------------------------------------------------------------------------------ prediction
@pytest.mark.parametrize("solver", ["exact", "inducing"])
def test_predict_in_blocks_equals_one_block(monkeypatch, solver):
    x, z = _trajectory(50, d=3)
    xq = _trajectory(23, seed=4)[0]
    gp = _gp(solver=solver, max_inducing=20, optimizer=None).fit(x, z)
    m1, v1 = gp.predict(xq)
    monkeypatch.setattr(latent_gp, "_PREDICT_BLOCK", 5)
    m2, v2 = gp.predict(xq, include_noise=True)
    torch.testing.assert_close(m2, m1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v2 - 0.05, v1, rtol=1e-12, atol=1e-12)


def test_gp_predict_passes_the_long_run_options_and_device():
    x, z = _trajectory(90, d=4)
    obs = torch.arange(90) % 3 != 1
    pred = gp_predict("view", x[obs], z[obs].numpy(), x, optimizer="adam", steps=5, subset=30, solver="inducing",
                      max_inducing=20, device=torch.device("cpu"))
    gp = pred.model
    assert len(gp.history_) == 5 and gp.subset_.shape == (30,) and len(gp.inducing_.index) == 20
    assert pred.mean.shape == (90, 4) and pred.var.shape == (90,)
    default = gp_predict("view", x[obs], z[obs].numpy(), x, device="cpu")
    assert default.model.subset_ is None and default.model.cholesky_ is not None  # 60 frames: exact, all
    gp2 = build_gp("view", x[obs], x, z[obs], solver="inducing", max_inducing=10, gradient_precision="float64")
    assert gp2.solver == "inducing" and gp2.max_inducing == 10 and gp2.gradient_precision == "float64"


def test_long_run_paths_keep_float64_on_the_requested_device():
    x, z = _trajectory(40, d=2)
    for solver in ("exact", "inducing"):
        gp = LatentGP(kernel=_kernel(), device="cpu", solver=solver, max_inducing=15, steps=3,
                      optimizer="lbfgs").fit(x, z)
        mean, var = gp.predict(x)
        assert mean.dtype == var.dtype == torch.float64 and mean.device.type == "cpu"
        assert math.isfinite(gp.history_[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(gp.predict(x[:5])[0].numpy(), gp.predict(x)[0][:5].numpy(), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------ optimizer="auto"
def test_auto_optimizer_keeps_the_candidate_with_the_lower_leave_one_out_error():
    x, z = _trajectory(40, d=6, seed=3, noise=0.01)
    auto = _gp(optimizer="auto", steps=60).fit(x, z)
    assert set(auto.loo_errors_) == {"lbfgs", "adam"}
    kept = min(auto.loo_errors_, key=auto.loo_errors_.get)
    assert auto.optimizer_ == kept
    assert auto.loo_error() == pytest.approx(auto.loo_errors_[kept], rel=1e-9)
    # The kept candidate is exactly the one its optimiser alone gives (same start, same steps).
    alone = _gp(optimizer=kept, steps=60).fit(x, z)
    assert auto.hyperparameters() == pytest.approx(alone.hyperparameters(), rel=1e-9)
    assert torch.allclose(auto.predict(x[:5])[0], alone.predict(x[:5])[0], atol=1e-10)


def test_auto_optimizer_is_lbfgs_alone_past_the_comparison_size(monkeypatch):
    monkeypatch.setattr(latent_gp, "AUTO_COMPARE_MAX_FRAMES", 30)
    x, z = _trajectory(40, d=6, seed=3)
    gp = _gp(optimizer="auto", steps=60).fit(x, z)
    assert gp.optimizer_ == "lbfgs" and gp.loo_errors_ is None
    assert gp.hyperparameters() == pytest.approx(_gp(optimizer="lbfgs", steps=60).fit(x, z).hyperparameters())


# ------------------------------------------------------------------------------------ Hutchinson trace
def _step_gradient(gp, x, z):
    c = z - z.mean(0)
    gp.zero_grad()
    value = gp.neg_log_marginal_likelihood(x, c, c.shape[1])
    value.backward()
    return float(value.detach()), torch.stack([p.grad.reshape(()) for _, p in gp.named_parameters()])


def test_hutchinson_trace_estimates_the_exact_gradient_with_the_exact_value():
    x, z = _trajectory(300, d=16, seed=4)
    exact = _gp()
    v_exact, g_exact = _step_gradient(exact, x, z)
    errors = []
    for probes in (16, 256):
        est = _gp(gradient_trace="hutchinson", trace_probes=probes)
        assert est.trace_method(300) == "hutchinson"
        v, g = _step_gradient(est, x, z)
        assert v == pytest.approx(v_exact, rel=1e-12)  # only the gradient's trace term is estimated
        errors.append(float((g - g_exact).norm() / g_exact.norm()))
        # Fixed probes: the same estimate at every evaluation.
        assert torch.equal(_step_gradient(est, x, z)[1], g)
    assert errors[1] < 0.01 and errors[1] < errors[0]


def test_hutchinson_fit_predicts_as_the_exact_fit_and_auto_switches_by_size(monkeypatch):
    x, z = _trajectory(200, d=16, seed=5, noise=0.05)
    held = torch.arange(200) % 5 == 2
    fits = {m: _gp(gradient_trace=m, trace_probes=128, optimizer="lbfgs", steps=60).fit(x[~held], z[~held])
            for m in ("exact", "hutchinson")}
    mse = {m: float((gp.predict(x[held])[0] - z[held]).pow(2).mean()) for m, gp in fits.items()}
    assert mse["hutchinson"] == pytest.approx(mse["exact"], rel=0.005)
    monkeypatch.setattr(likelihood, "HUTCHINSON_MIN_N", 100)
    auto = _gp(gradient_trace="auto")
    assert auto.trace_method(99) == "exact" and auto.trace_method(100) == "hutchinson"
    with pytest.raises(ValueError, match="gradient_trace"):
        _gp(gradient_trace="stochastic")
