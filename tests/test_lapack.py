"""viewgp.lapack: LAPACK's Cholesky in place on torch buffers, and LatentGP's use of it and its fallbacks."""

import math

import pytest
import torch

import viewgp.likelihood as likelihood
from viewgp import lapack
from viewgp.latent_gp import LatentGP

needs_lapack = pytest.mark.skipif(not lapack.available(torch.float64),
                                  reason="no potrf found in this torch build's CPU library")


def _spd(n, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n + 3, dtype=torch.float64, generator=g)
    return (X @ X.mT / n + 0.1 * torch.eye(n, dtype=torch.float64)).to(dtype)


@needs_lapack
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_factor_in_place_equals_torch_and_reads_only_the_lower_triangle(dtype, tol):
    K = _spd(50, dtype)
    A = K.tril()
    A[torch.ones_like(A, dtype=torch.bool).triu(1)] = math.nan  # entries above the diagonal are never read
    ptr = A.data_ptr()
    assert lapack.cholesky_lower_(A) == 0
    assert A.data_ptr() == ptr and torch.equal(A, A.tril())  # in place, zeros above the diagonal
    torch.testing.assert_close(A, torch.linalg.cholesky(K), rtol=0, atol=tol)


@needs_lapack
def test_info_names_the_first_minor_that_is_not_positive_definite():
    K = _spd(20)
    K[7, 7] = -1.0
    assert lapack.cholesky_lower_(K.clone()) == 8  # LAPACK counts from 1
    assert lapack.cholesky_lower_(torch.zeros(0, 0, dtype=torch.float64)) == 0


def test_what_it_cannot_factorise_is_left_alone():
    K = _spd(10)
    for A in (K.float().half(), K.mT.contiguous()[:, :9], K[::2, ::2], K.clone().requires_grad_(), K[None]):
        before = A.detach().clone()
        assert lapack.cholesky_lower_(A) is None
        assert torch.equal(A.detach(), before)
    assert not lapack.available(torch.float16)


def _fit(x, z):
    from gpytorch.kernels import ScaleKernel

    from viewgp.kernels import ViewKernel

    gp = LatentGP(kernel=ScaleKernel(ViewKernel()).double(), noise=0.05)
    gp.zero_grad()
    loss = -gp.log_marginal_likelihood(x, z)
    loss.backward()
    return float(loss), torch.cat([p.grad.reshape(-1) for p in gp.parameters()])


@pytest.mark.parametrize("memory", ["plenty", "short"])
def test_latent_gp_gives_the_same_likelihood_and_gradient_without_it(monkeypatch, memory):
    """Without LAPACK from torch's library: torch's Cholesky into a new buffer, or, when a second N x N
    buffer does not fit, in place on the column-major view."""
    from viewgp import poses as P

    g = torch.Generator().manual_seed(3)
    n = 60
    t = torch.linspace(0, 6, n, dtype=torch.float64)
    rv = torch.stack([0.3 * torch.sin(t), 0.2 * t, 0.1 * torch.cos(t)], -1)
    x = P.pose_features(P.so3_exp(rv), torch.stack([t, torch.sin(t), 0 * t], -1), t)
    z = torch.randn(n, 5, dtype=torch.float64, generator=g)
    ref = _fit(x, z)
    monkeypatch.setattr(likelihood, "cholesky_lower_", lambda A, clean=True: None)
    if memory == "short":
        monkeypatch.setattr(likelihood, "available_bytes", lambda device: 3 * n * n * 8)
    calls = []
    real = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda A, **kw: calls.append(kw.get("upper", False)) or real(A, **kw))
    value, grad = _fit(x, z)
    assert calls and all(calls) == (memory == "short")  # the column-major upper view only when memory is short
    assert value == pytest.approx(ref[0], rel=1e-12)
    torch.testing.assert_close(grad, ref[1], rtol=1e-9, atol=1e-9)


@needs_lapack
def test_an_unclean_factor_serves_the_triangular_routines_the_gradient_uses():
    """clean=False leaves what lay above the diagonal (NaN here); torch's triangular solves and
    cholesky_inverse read only their triangle, so they give what the clean factor gives."""
    K = _spd(40)
    A = K.tril()
    A[torch.ones_like(A, dtype=torch.bool).triu(1)] = math.nan
    assert lapack.cholesky_lower_(A, clean=False) == 0
    assert bool(A.triu(1).isnan()[torch.ones_like(A, dtype=torch.bool).triu(1)].all())
    L = torch.linalg.cholesky(K)
    b = torch.randn(40, 3, dtype=torch.float64).mT.contiguous().mT
    torch.testing.assert_close(torch.linalg.solve_triangular(A, b, upper=False),
                               torch.linalg.solve_triangular(L, b, upper=False))
    torch.testing.assert_close(torch.linalg.solve_triangular(A.mT, b, upper=True),
                               torch.linalg.solve_triangular(L.mT, b, upper=True))
    A32 = A.float()
    torch.testing.assert_close(torch.cholesky_inverse(A32.mT, upper=True).tril(), torch.cholesky_inverse(L.float()).tril(),
                               rtol=1e-4, atol=1e-4)
