"""Greedy maximum-variance keyframes (viewgp/keyframes.py)."""

import numpy as np
import pytest
import torch
from gpytorch.kernels import RBFKernel

from viewgp.keyframes import greedy_keyframes


def _posterior_var(K, obs, noise):
    """Dense reference: GP posterior variance of every frame given noisy observations at ``obs``."""
    if not obs:
        return np.diag(K).copy()
    Koo = K[np.ix_(obs, obs)] + noise * np.diag(np.diag(K)[obs])
    Kxo = K[:, obs]
    return np.diag(K) - np.einsum("ij,jk,ik->i", Kxo, np.linalg.inv(Koo), Kxo)


def test_each_choice_is_the_frame_of_largest_posterior_variance():
    g = torch.Generator().manual_seed(0)
    x = torch.sort(torch.rand(40, 1, generator=g, dtype=torch.float64) * 10, dim=0).values
    k = RBFKernel().to(torch.float64)
    k.lengthscale = torch.tensor(0.8, dtype=torch.float64)
    noise = 1e-3
    chosen = greedy_keyframes(k, x, 8, noise=noise, initial=[0, 39])
    K = k(x, x).to_dense().detach().numpy()
    assert chosen[:2] == [0, 39] and len(set(chosen)) == 8
    for step in range(2, 8):
        var = _posterior_var(K, chosen[:step], noise)
        var[chosen[:step]] = -np.inf
        assert chosen[step] == int(np.argmax(var))


def test_keyframes_fill_the_largest_gap_first_and_errors():
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0], [11.0], [20.0]], dtype=torch.float64)
    k = RBFKernel().to(torch.float64)
    k.lengthscale = torch.tensor(1.0, dtype=torch.float64)
    # with frames 0..3 observed, the isolated ones (10/11, 20) are the most uncertain
    chosen = greedy_keyframes(k, x, 6, initial=[0, 1, 2, 3])
    assert set(chosen[4:]) <= {4, 5, 6} and 6 in chosen[4:]
    with pytest.raises(ValueError, match="k must lie"):
        greedy_keyframes(k, x, 0)
    with pytest.raises(ValueError, match="distinct"):
        greedy_keyframes(k, x, 3, initial=[1, 1])
