"""Kernel hyper-parameter options: the distance each lengthscale is measured in (and the data-driven
start it gives), and GPyTorch-style constraints and priors passed to every kernel constructor."""

import math

import gpytorch
import pytest
import torch
from gpytorch.constraints import Interval
from gpytorch.priors import GammaPrior

from viewgp.hyperparameters import lengthscale_from_median, lengthscale_modules
from viewgp.kernels import (
    EulerPeriodicKernel,
    GeodesicSEKernel,
    OrientationKernel,
    QuaternionSEKernel,
    SO3HeatKernel,
    SO3MaternKernel,
    TemporalKernel,
    TranslationKernel,
    ViewKernel,
)

DISTANCES = {
    OrientationKernel: "chordal",
    EulerPeriodicKernel: "geodesic",
    QuaternionSEKernel: "geodesic",
    GeodesicSEKernel: "geodesic",
    SO3HeatKernel: "geodesic",
    SO3MaternKernel: "geodesic",
    TranslationKernel: "euclidean",
    TemporalKernel: "euclidean",
}


def _previous_rule(kernel, median):
    """lengthscale_from_median as it was written before kernels declared their distance."""
    if kernel.active_dims.numel() != 9:
        return median
    if isinstance(kernel, OrientationKernel):
        return median / math.sqrt(2.0)
    return 2.0 * math.asin(min(1.0, median / (2.0 * math.sqrt(2.0))))


@pytest.mark.parametrize("cls", list(DISTANCES), ids=lambda c: c.__name__)
def test_every_lengthscale_kernel_declares_its_distance_and_the_start_is_unchanged(cls):
    assert cls.lengthscale_distance == DISTANCES[cls]
    kernels = [cls()] + ([cls(form="exp")] if cls is OrientationKernel else [])
    for k in kernels:
        for median in (0.05, 0.7, 2.0, 3.5):  # 3.5 > 2 sqrt 2: the angle saturates at pi
            assert lengthscale_from_median(k, median) == _previous_rule(k, median)


def test_view_kernel_factors_and_plain_gpytorch_kernels():
    view = ViewKernel(orientation="heat", translation="matern32", temporal="rbf")
    found = {name: lengthscale_from_median(m, 1.0) for name, m in lengthscale_modules(view)}
    assert found == {"orientation": 2.0 * math.asin(1.0 / (2.0 * math.sqrt(2.0))), "translation": 1.0, "temporal": 1.0}
    assert lengthscale_from_median(gpytorch.kernels.RBFKernel(active_dims=(9, 10, 11)), 0.3) == 0.3

    class Odd(TranslationKernel):
        lengthscale_distance = "manhattan"

    with pytest.raises(ValueError, match="Odd.lengthscale_distance is 'manhattan'"):
        lengthscale_from_median(Odd(), 1.0)


def _pushed_out(kernel, name="raw_lengthscale"):
    with torch.no_grad():
        getattr(kernel, name).fill_(50.0)  # far beyond the upper bound when untransformed
    return kernel


def _bounded(values, lo, hi):
    return bool(((values >= lo) & (values <= hi)).all())


@pytest.mark.parametrize(
    "make",
    [OrientationKernel, lambda **kw: OrientationKernel(form="exp", **kw), TranslationKernel, TemporalKernel, SO3HeatKernel,
     SO3MaternKernel, EulerPeriodicKernel, QuaternionSEKernel, GeodesicSEKernel],
)
def test_a_passed_interval_bounds_the_lengthscale(make):
    c = Interval(0.2, 0.5)
    k = make(lengthscale_constraint=c)
    assert k.raw_lengthscale_constraint is c
    assert _bounded(_pushed_out(k).lengthscale, 0.2, 0.5)
    with torch.no_grad():
        k.raw_lengthscale.fill_(-50.0)
    assert _bounded(k.lengthscale, 0.2, 0.5)


def test_view_kernel_gives_each_factor_its_own_copy_of_the_constraint_and_prior():
    c, prior = Interval(0.2, 0.5), GammaPrior(2.0, 4.0)
    view = ViewKernel(orientation="se", translation="rbf", temporal="matern12", lengthscale_constraint=c, lengthscale_prior=prior)
    constraints = [f.raw_lengthscale_constraint for f in view.factors]
    assert len(constraints) == 3 and len({id(x) for x in constraints}) == 3
    for f in view.factors:
        assert isinstance(f.raw_lengthscale_constraint, Interval)
        assert _bounded(_pushed_out(f).lengthscale, 0.2, 0.5)
        assert isinstance(f.lengthscale_prior, GammaPrior)
    priors = [name for name, *_ in view.named_priors()]
    assert priors == ["orientation.lengthscale_prior", "translation.lengthscale_prior", "temporal.lengthscale_prior"]
    # heat / Matern orientation factors take them as well; the ARD form has no lengthscale
    heat = ViewKernel(orientation="matern32", lengthscale_constraint=Interval(0.1, 0.3))
    assert _bounded(_pushed_out(heat.orientation).lengthscale, 0.1, 0.3)
    assert not ViewKernel(orientation="ard", lengthscale_constraint=c).orientation.has_lengthscale


def test_priors_are_registered_as_in_gpytorch():
    k = OrientationKernel(lengthscale_prior=GammaPrior(2.0, 4.0))
    (name, _module, prior, closure, _setting), = list(k.named_priors())
    assert name == "lengthscale_prior" and torch.equal(closure(k), k.lengthscale)
    with pytest.raises(TypeError, match="Expected gpytorch.priors.Prior"):
        SO3HeatKernel(lengthscale_prior=0.5)


def test_ard_orientation_scales_take_a_constraint_and_a_prior():
    default = OrientationKernel(form="ard")
    assert torch.allclose(default.ard_scales, torch.full((3,), math.exp(2.63)))
    k = OrientationKernel(form="ard", ard_scales_constraint=Interval(1.0, 20.0), ard_scales_prior=GammaPrior(3.0, 0.2))
    assert torch.allclose(k.ard_scales, torch.full((3,), math.exp(2.63)))  # the usual start, inside the bounds
    assert _bounded(_pushed_out(k, "raw_ard_scales").ard_scales, 1.0, 20.0)
    (name, _module, _prior, closure, setting), = list(k.named_priors())
    assert name == "ard_scales_prior"
    setting(k, torch.tensor([2.0, 3.0, 4.0]))
    assert torch.allclose(closure(k), torch.tensor([2.0, 3.0, 4.0]))
    narrow = OrientationKernel(form="ard", ard_scales_constraint=Interval(0.5, 2.0))  # exp(2.63) not allowed
    assert _bounded(narrow.ard_scales, 0.5, 2.0) and torch.isfinite(narrow.raw_ard_scales).all()
    with pytest.raises(TypeError, match="Expected gpytorch.priors.Prior"):
        OrientationKernel(form="ard", ard_scales_prior="gamma")
