"""GPyTorch kernels on camera poses.

Inputs are flat pose features ``(..., N, 12)`` = vec(R) row-major (columns 0-8) + t (9-11), or
``(..., N, 13)`` with a timestamp in column 12 (see :func:`viewgp.poses.pose_features`). Each kernel
reads its own columns through GPyTorch's ``active_dims`` (set by default), so factors compose with
``*`` on the same input; pass ``active_dims`` to feed narrower inputs (e.g. ``active_dims=range(9)``
on ``(N, 9)`` rotations, ``active_dims=None`` for inputs holding exactly the kernel's columns). All
kernels are unscaled (``k(x, x) = 1``); wrap them in ``gpytorch.kernels.ScaleKernel`` for an output
scale. All hyper-parameters are constrained positive by default; as in GPyTorch, every constructor takes
``lengthscale_constraint=`` / ``lengthscale_prior=`` (and the ARD orientation kernel ``ard_scales_constraint=``
/ ``ard_scales_prior=``). Float32 and float64, batch shapes, ``diag=True`` and gradients are supported.

Every kernel with a lengthscale says in which distance it is measured (class attribute
``lengthscale_distance``): ``"euclidean"`` (translation, time), ``"chordal"`` (``||vec R - vec R'||``,
the SE orientation kernel) or ``"geodesic"`` (the rotation angle theta); :mod:`viewgp.hyperparameters`
converts data-driven distances with it.

The math behind the view kernel (thesis eq. 3.9)::

    tr(I - R^T R') = 4 sin^2(theta / 2)          theta = angle of the relative rotation R^T R'
    ||R - R'||_F^2 = 2 tr(I - R^T R')
    k(R, R') = exp(-tr(I - R^T R') / (2 l^2)) = exp(-||vec R - vec R'||^2 / (4 l^2))

so it is a squared-exponential kernel on vec(R) in R^9, positive definite for every lengthscale, and
for rotations about one axis (``tr(I - R^T R') = 2 - 2 cos(a - a')  = 4 sin^2((a - a')/2)``) it equals
the standard periodic kernel ``exp(-2 sin^2((a - a')/2) / l^2)``. It is computed from
``tr(I - R^T R') = 3 - vec(R) . vec(R')`` (one matmul), never through arccos. The same trace gives
``cos(theta) = 1 - tr(I - R^T R') / 2``, from which the SO(3) heat and Matern kernels are evaluated.

Where each class comes from:

* :class:`OrientationKernel` ``form="se"``: thesis eq. 3.9 (Publication V's view kernel).
* ``form="exp"``: the original face-run code (``eval.py``), ``exp(-sqrt(tr(I - R^T R')) / (2 l^2))``
  (with fixed ``s^2 = 13.8156, l = 1.0975, noise = 1.4`` there).
* ``form="ard"``: the original chairs code (``gppvae/vmod.py``), ``exp(-0.5 tr(L - R L R'^T))``.
* :class:`TranslationKernel`, :class:`TemporalKernel`: GPyTorch's RBF / Matern on t and on time.
* :class:`ViewKernel`: orientation x translation [x time] (thesis 3.4).
* Baselines of Publication V: :class:`EulerPeriodicKernel` (separable periodic on Euler angles,
  ``eval.py --kernel_mode euler``), :class:`QuaternionSEKernel` (``quat``), :class:`GeodesicSEKernel`
  (the v1 figure's "geodesic"; NOT positive definite), :class:`GPPVAEViewKernel` (GPPVAE's learned
  free-form view covariance, Casale et al. 2018).
* Beyond the paper: :class:`SO3HeatKernel` / :class:`SO3MaternKernel` by the character expansion
  (the kernels of GeometricKernels' ``SpecialOrthogonal(3)``, in closed form).
"""

from __future__ import annotations

import copy
import math
from typing import Optional, Sequence

import torch
from gpytorch.constraints import Interval, Positive
from gpytorch.kernels import Kernel, MaternKernel, RBFKernel
from gpytorch.priors import Prior
from linear_operator import to_dense
from torch import Tensor
from torch.autograd.function import once_differentiable

from viewgp.poses import ROT_DIMS, TIME_DIM, TRANS_DIMS, matrix_to_euler, matrix_to_quat

__all__ = [
    "OrientationKernel",
    "TranslationKernel",
    "TemporalKernel",
    "ViewKernel",
    "EulerPeriodicKernel",
    "QuaternionSEKernel",
    "GeodesicSEKernel",
    "SO3HeatKernel",
    "SO3MaternKernel",
    "GPPVAEViewKernel",
    "make_kernel",
    "KERNEL_NAMES",
]

Dims = Optional[Sequence[int]]


# ----------------------------------------------------------------------------------------- helpers
def _check_columns(x: Tensor, expected: int, kernel: Kernel) -> None:
    if x.shape[-1] != expected:
        raise ValueError(
            f"{type(kernel).__name__}: expected {expected} input columns after active_dims, got {x.shape[-1]} "
            f"(input shape {tuple(x.shape)}); feed pose features (N, 12|13) with the default active_dims, "
            f"or pass active_dims selecting the {expected} columns"
        )


def _no_last_dim_batch(kernel: Kernel, last_dim_is_batch: bool) -> None:
    if last_dim_is_batch:
        raise RuntimeError(f"{type(kernel).__name__} does not support last_dim_is_batch")


def _zero_self_distance(d: Tensor, x1: Tensor, x2: Tensor) -> Tensor:
    """Set the diagonal of a pairwise distance to exactly 0 when ``x1`` and ``x2`` are the same points.

    ``3 - vec(R).vec(R)`` is a few ulps away from 0; the ``exp`` form's sqrt would turn that into a
    1e-8 error of k(x, x). GPyTorch's own distances make the same correction.
    """
    if d.shape[-1] != d.shape[-2] or not torch.equal(x1, x2):
        return d
    eye = torch.eye(d.shape[-1], dtype=torch.bool, device=d.device)
    return d.masked_fill(eye, 0.0)


def _trace_distance(x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
    """``tr(I - R^T R') = 3 - vec(R) . vec(R')`` for vec(R) inputs ``(..., N, 9)``, clamped to [0, 4].

    Returns ``(..., N, M)``, or ``(..., N)`` with ``diag=True``.
    """
    if diag:
        d = 3.0 - (x1 * x2).sum(-1)
    else:
        d = _zero_self_distance(3.0 - x1 @ x2.transpose(-1, -2), x1, x2)
    return d.clamp(0.0, 4.0)


def _safe_sqrt(d: Tensor) -> Tensor:
    """sqrt of a non-negative tensor with gradient 0 (not inf or NaN) where ``d == 0``.

    The double ``where`` keeps the masked branch's NaN gradient out of the chain rule.
    """
    pos = d > 0
    return torch.where(pos, torch.where(pos, d, torch.ones_like(d)).sqrt(), torch.zeros_like(d))


def _lengthscale(kernel: Kernel, diag: bool) -> Tensor:
    """The ``(*batch, 1, 1)`` lengthscale, or ``(*batch, 1)`` to broadcast against a diagonal."""
    ls = kernel.lengthscale
    return ls[..., 0] if diag else ls


def _rotations(x: Tensor) -> Tensor:
    """``(..., N, 9)`` vec(R) columns -> ``(..., N, 3, 3)``."""
    return x.reshape(x.shape[:-1] + (3, 3))


class _PoseKernel(Kernel):
    """Kernel whose ``__call__`` names a missing input column instead of failing in ``index_select``."""

    def __call__(
        self, x1: Tensor, x2: Optional[Tensor] = None, diag: bool = False, last_dim_is_batch: bool = False, **params
    ):
        if self.active_dims is not None and self.active_dims.numel():
            need = int(self.active_dims.max()) + 1
            for x in (x1, x2):
                width = (x.shape[-1] if x.dim() > 1 else 1) if torch.is_tensor(x) else need
                if width < need:
                    raise ValueError(
                        f"{type(self).__name__}: reads input column {need - 1} (active_dims "
                        f"{self.active_dims.tolist()}) but the input has {width} columns (shape "
                        f"{tuple(x.shape)}); pose features are (N, 12) = vec(R) + t, or (N, 13) with times"
                    )
        return super().__call__(x1, x2, diag=diag, last_dim_is_batch=last_dim_is_batch, **params)


# ------------------------------------------------------------------------------- orientation kernel
class OrientationKernel(_PoseKernel):
    """View kernel on SO(3), thesis eq. 3.9, and the two variants of the original code.

    Input: ``(..., N, 12|13)`` pose features (reads columns 0-8, vec(R) row-major), or other widths
    with ``active_dims``. Output ``(..., N, M)``, ``k(x, x) = 1``.

    Args:
        form: ``"se"`` (default, thesis eq. 3.9) ``exp(-tr(I - R^T R') / (2 l^2))``;
            ``"exp"`` (face-run code) ``exp(-sqrt(tr(I - R^T R')) / (2 l^2))``, a Matern-1/2-type
            (Laplacian) kernel of the chordal distance, PD; not differentiable in the input at zero
            distance, so its sqrt has gradient 0 there (the lengthscale gradient stays finite);
            ``"ard"`` (chairs code) ``exp(-0.5 tr(L - R L R'^T))`` with ``L = diag(ard_scales)``,
            three positive weights (no lengthscale). The chairs code wrote ``L = diag(exp(ell))`` with
            ``ell`` initialised to 2.63; here the positive diagonal is the parameter itself
            (``ard_scales``, initialised to ``exp(2.63) ~ 13.87``). Since
            ``tr(L - R L R'^T) = sum_j L_j (1 - r_j . r'_j)`` with ``r_j`` the j-th column of R (the
            camera's j-th axis in the world), ``L_j`` weights disagreement of camera axis j; it is 0
            for ``R = R'``, and ``L = I / l^2`` gives back ``form="se"``.
        active_dims: the 9 vec(R) columns (default 0-8).
        ard_scales_constraint, ard_scales_prior: of ``ard_scales`` (``form="ard"`` only; default
            ``Positive()`` and none). They start at ``exp(2.63)`` if the constraint allows it.
        lengthscale_constraint, lengthscale_prior, batch_shape, ...: GPyTorch's ``Kernel`` arguments.

    The lengthscale is measured in the chordal distance ``||vec R - vec R'|| = 2 sqrt(2) sin(theta / 2)``
    (``exp(-d^2 / (4 l^2))`` for ``"se"``).
    """

    lengthscale_distance = "chordal"

    def __init__(
        self,
        form: str = "se",
        active_dims: Dims = ROT_DIMS,
        ard_scales_constraint: Optional[Interval] = None,
        ard_scales_prior: Optional[Prior] = None,
        **kwargs,
    ):
        if form not in ("se", "exp", "ard"):
            raise ValueError(f"OrientationKernel form must be 'se', 'exp' or 'ard', got {form!r}")
        self.has_lengthscale = form != "ard"
        super().__init__(active_dims=active_dims, **kwargs)
        self.form = form
        if form == "ard":
            constraint = Positive() if ard_scales_constraint is None else ard_scales_constraint
            self.register_parameter("raw_ard_scales", torch.nn.Parameter(torch.zeros(*self.batch_shape, 3)))
            self.register_constraint("raw_ard_scales", constraint)
            if ard_scales_prior is not None:
                if not isinstance(ard_scales_prior, Prior):
                    raise TypeError(f"Expected gpytorch.priors.Prior but got {type(ard_scales_prior).__name__}")
                self.register_prior(
                    "ard_scales_prior", ard_scales_prior, lambda m: m.ard_scales, lambda m, v: m._set_ard_scales(v)
                )
            # the chairs code's start, where the constraint allows it (else the constraint's own start)
            if constraint.initial_value is None and constraint.check(torch.tensor(math.exp(2.63))):
                self.ard_scales = math.exp(2.63)

    @property
    def ard_scales(self) -> Tensor:
        """``(*batch_shape, 3)`` positive diagonal of L (``form="ard"`` only)."""
        return self.raw_ard_scales_constraint.transform(self.raw_ard_scales)

    @ard_scales.setter
    def ard_scales(self, value) -> None:
        self._set_ard_scales(value)

    def _set_ard_scales(self, value) -> None:
        raw = self.raw_ard_scales
        value = torch.as_tensor(value, dtype=raw.dtype, device=raw.device).expand_as(raw)
        self.initialize(raw_ard_scales=self.raw_ard_scales_constraint.inverse_transform(value))

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params) -> Tensor:
        _no_last_dim_batch(self, last_dim_is_batch)
        _check_columns(x1, 9, self)
        _check_columns(x2, 9, self)
        if self.form == "ard":
            return torch.exp(-0.5 * self._ard_distance(x1, x2, diag))
        tr = _trace_distance(x1, x2, diag)
        ls = _lengthscale(self, diag)
        if self.form == "se":
            return torch.exp(-tr / (2 * ls**2))
        return torch.exp(-_safe_sqrt(tr) / (2 * ls**2))

    def _ard_distance(self, x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
        """``tr(L - R L R'^T) = sum_j L_j - sum_{a,j} R_aj L_j R'_aj``: a weighted vec(R) . vec(R')."""
        L = self.ard_scales  # (*batch, 3)
        # vec(R) is row-major, so column j of R sits at positions j, j+3, j+6: tile L three times.
        w = torch.cat([L, L, L], -1).unsqueeze(-2)  # (*batch, 1, 9)
        total = L.sum(-1, keepdim=True)  # (*batch, 1)
        a = x1 * w
        if diag:
            d = total - (a * x2).sum(-1)
        else:
            d = _zero_self_distance(total.unsqueeze(-1) - a @ x2.transpose(-1, -2), x1, x2)
        return d.clamp_min(0.0)


# --------------------------------------------------------------------------- Euclidean factors
_MATERN_NU = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}
EUCLIDEAN_KINDS = ("rbf", *_MATERN_NU)


class _EuclideanKernel(_PoseKernel):
    """RBF or Matern kernel on some columns, evaluated by GPyTorch's own ``RBFKernel`` / ``MaternKernel``
    code (so the formulas and their fast paths are GPyTorch's), with the parameters kept flat on this
    module (``raw_lengthscale``) next to its ``active_dims``."""

    has_lengthscale = True
    lengthscale_distance = "euclidean"

    def __init__(self, kind: str, active_dims: Dims, width: int, ard: bool = False, **kwargs):
        if kind not in EUCLIDEAN_KINDS:
            raise ValueError(f"unknown kernel kind {kind!r}; use one of {', '.join(repr(k) for k in EUCLIDEAN_KINDS)}")
        n = len(active_dims) if active_dims is not None else width
        super().__init__(active_dims=active_dims, ard_num_dims=n if ard else None, **kwargs)
        self.kind = kind
        self.width = n
        self.nu = _MATERN_NU.get(kind)  # read by MaternKernel.forward

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        _check_columns(x1, self.width, self)
        _check_columns(x2, self.width, self)
        impl = RBFKernel.forward if self.kind == "rbf" else MaternKernel.forward
        out = impl(self, x1, x2, diag=diag, **params)
        if not diag and out.shape[-1] == out.shape[-2] and torch.equal(x1, x2):
            # GPyTorch zeroes self-distances only for inputs without gradient; the lengthscale division
            # gives them one, and sqrt(rounding noise) then lowers k(x, x) (by ~1e-3 for Matern-1/2 in
            # float32). k(x, x) = 1 exactly, and its lengthscale gradient is 0.
            eye = torch.eye(out.shape[-1], dtype=torch.bool, device=out.device)
            out = out.masked_fill(eye, 1.0)
        return out


class TranslationKernel(_EuclideanKernel):
    """RBF or Matern (1/2, 3/2, 5/2) kernel on the camera centre t (columns 9-11).

    ``kind``: ``"rbf"`` ``exp(-r^2 / 2)``, ``"matern12"`` ``exp(-r)``, ``"matern32"``
    ``(1 + sqrt3 r) exp(-sqrt3 r)``, ``"matern52"`` ``(1 + sqrt5 r + 5 r^2 / 3) exp(-sqrt5 r)`` with
    ``r = ||t - t'|| / l``; one lengthscale, or one per axis with ``ard=True``.
    """

    def __init__(self, kind: str = "rbf", active_dims: Dims = TRANS_DIMS, ard: bool = False, **kwargs):
        super().__init__(kind, active_dims, width=3, ard=ard, **kwargs)


class TemporalKernel(_EuclideanKernel):
    """RBF or Matern kernel (``kind`` as in :class:`TranslationKernel`) on the timestamp column 12."""

    def __init__(self, kind: str = "matern32", active_dims: Dims = (TIME_DIM,), **kwargs):
        super().__init__(kind, active_dims, width=1, ard=False, **kwargs)


# ---------------------------------------------------------------------------------- pose kernel
class ViewKernel(_PoseKernel):
    """Pose kernel: orientation x translation [x time] on ``(..., N, 12|13)`` pose features.

    The product of positive-definite kernels is positive definite (Schur product theorem), so every
    combination here is PD. The SE(3) heat kernel is exactly such a product: with the left-invariant
    metric ``|omega|^2 + |v|^2`` SE(3) is isometric to SO(3) x R^3, so its heat kernel is the SO(3) heat
    kernel (``orientation="heat"``) times the R^3 one (``translation="rbf"``); the default SE
    orientation factor is its chordal counterpart.

    The factors are sub-modules ``orientation``, ``translation`` and ``temporal`` (``None`` if absent),
    so their hyper-parameters are reported as e.g. ``orientation.lengthscale``. The product is formed
    densely (GPyTorch's ``ProductKernel`` would build a ``MulLinearOperator``, whose products go through
    root decompositions).

    Args:
        orientation: ``"se"``, ``"exp"``, ``"ard"`` (:class:`OrientationKernel` forms), ``"heat"``
            (:class:`SO3HeatKernel`) or ``"matern12"|"matern32"|"matern52"`` (:class:`SO3MaternKernel`).
        translation: ``"rbf"``, ``"matern12"``, ``"matern32"``, ``"matern52"`` or ``None``.
        temporal: ``None`` or a kind as for translation, on the time column (input ``(N, 13)``).
        batch_shape: passed to every factor.
        lengthscale_constraint, lengthscale_prior: given to every factor with a lengthscale (each gets
            its own copy); the view kernel itself has no lengthscale.
    """

    def __init__(
        self,
        orientation: str = "se",
        translation: Optional[str] = "rbf",
        temporal: Optional[str] = None,
        batch_shape: torch.Size = torch.Size([]),
        lengthscale_constraint: Optional[Interval] = None,
        lengthscale_prior: Optional[Prior] = None,
        **kwargs,
    ):
        super().__init__(batch_shape=batch_shape, **kwargs)

        def factor_kwargs() -> dict:
            out = {"batch_shape": batch_shape}
            if lengthscale_constraint is not None:
                out["lengthscale_constraint"] = copy.deepcopy(lengthscale_constraint)
            if lengthscale_prior is not None:
                out["lengthscale_prior"] = copy.deepcopy(lengthscale_prior)
            return out

        self.orientation = _orientation_factor(orientation, **factor_kwargs())
        self.translation = TranslationKernel(translation, **factor_kwargs()) if translation else None
        self.temporal = TemporalKernel(temporal, **factor_kwargs()) if temporal else None

    @property
    def factors(self) -> list[Kernel]:
        return [k for k in (self.orientation, self.translation, self.temporal) if k is not None]

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params) -> Tensor:
        _no_last_dim_batch(self, last_dim_is_batch)
        out = None
        for k in self.factors:
            v = to_dense(k(x1, x2, diag=diag, **params))
            out = v if out is None else out * v
        return out


def _orientation_factor(name: str, **kwargs) -> Kernel:
    if name in ("se", "exp", "ard"):
        return OrientationKernel(form=name, **kwargs)
    if name == "heat":
        return SO3HeatKernel(**kwargs)
    if name in _MATERN_NU:
        return SO3MaternKernel(nu=_MATERN_NU[name], **kwargs)
    raise ValueError(
        f"unknown orientation kernel {name!r}; use 'se', 'exp', 'ard', 'heat', 'matern12', 'matern32' or 'matern52'"
    )


# ------------------------------------------------------------------------- rotation-only baselines
class _RotationKernel(_PoseKernel):
    """Base for kernels of the rotation alone (columns 0-8) with one lengthscale; subclasses declare
    its ``lengthscale_distance``."""

    has_lengthscale = True

    def __init__(self, active_dims: Dims = ROT_DIMS, **kwargs):
        super().__init__(active_dims=active_dims, **kwargs)

    def _prepare(self, x1: Tensor, x2: Tensor, diag: bool, last_dim_is_batch: bool) -> Tensor:
        """Check the inputs; return the lengthscale shaped to broadcast against the output."""
        _no_last_dim_batch(self, last_dim_is_batch)
        _check_columns(x1, 9, self)
        _check_columns(x2, 9, self)
        return _lengthscale(self, diag)


class EulerPeriodicKernel(_RotationKernel):
    """Baseline: separable periodic kernel on Euler angles ``prod_i exp(-2 sin^2((a_i - a'_i)/2) / l^2)``.

    Angles from :func:`viewgp.poses.matrix_to_euler` with ``order`` (scipy semantics). PD (a product of
    periodic kernels on the angle chart), but it depends on the chart (axis order), is not invariant to
    a common rotation of the poses and is distorted near gimbal lock; it coincides with the view kernel
    only for rotations about one axis.
    """

    lengthscale_distance = "geodesic"  # per-axis angle differences: the lengthscale is an angle

    def __init__(self, order: str = "xyz", **kwargs):
        matrix_to_euler(torch.eye(3, dtype=torch.float64), order)  # ValueError for a bad order, now
        super().__init__(**kwargs)
        self.order = order

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params) -> Tensor:
        ls = self._prepare(x1, x2, diag, last_dim_is_batch)
        a1 = matrix_to_euler(_rotations(x1), self.order)
        a2 = matrix_to_euler(_rotations(x2), self.order)
        d = (a1 - a2) if diag else (a1.unsqueeze(-2) - a2.unsqueeze(-3))
        return torch.exp(-2 * torch.sin(d / 2).pow(2).sum(-1) / ls**2)


class QuaternionSEKernel(_RotationKernel):
    """Baseline: SE kernel on unit quaternions ``exp(-||q - q'||^2 / (2 l^2))``, q canonical (``w >= 0``).

    Not a function on SO(3): q and -q are the same rotation, so a sign convention must pick one, and
    the canonical sign flips across ``w = 0`` (rotation angle pi): two nearby rotations on either side
    get ``||q - q'|| ~ 2`` and almost zero covariance. ``||q - q'||^2 = 2 - 2 q . q'`` (one matmul).
    """

    # ||q - q'|| = 2 sin(theta / 4) away from the sign flip: an angle scale, started like the angle kernels
    lengthscale_distance = "geodesic"

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params) -> Tensor:
        ls = self._prepare(x1, x2, diag, last_dim_is_batch)
        q1 = matrix_to_quat(_rotations(x1))
        q2 = matrix_to_quat(_rotations(x2))
        if diag:
            d2 = (q1 - q2).pow(2).sum(-1)
        else:
            d2 = _zero_self_distance(2.0 - 2.0 * q1 @ q2.transpose(-1, -2), x1, x2).clamp_min(0.0)
        return torch.exp(-d2 / (2 * ls**2))


class GeodesicSEKernel(_RotationKernel):
    """Baseline ONLY: ``exp(-theta^2 / (2 l^2))``, theta the relative rotation angle. NOT positive definite.

    A Gaussian of the geodesic distance is positive definite for every lengthscale only on flat spaces
    (Feragen, Lauze & Hauberg, CVPR 2015), and SO(3) is curved: on 200 random rotations the smallest
    eigenvalue of its kernel matrix is about -0.02 at l = 1 and about -1.7 at l = 2, so a GP with it can
    have a negative "variance" and its Cholesky can fail. It is exposed only to reproduce the comparison
    of Publication V; use :class:`OrientationKernel` or :class:`SO3HeatKernel` instead.

    theta = 2 atan2(sin(theta/2), cos(theta/2)) with ``sin(theta/2) = sqrt(tr(I - R^T R')) / 2`` and
    ``cos(theta/2) = |q . q'|``: accurate at 0 and at pi, unlike arccos of the trace.
    """

    lengthscale_distance = "geodesic"

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params) -> Tensor:
        ls = self._prepare(x1, x2, diag, last_dim_is_batch)
        q1 = matrix_to_quat(_rotations(x1))
        q2 = matrix_to_quat(_rotations(x2))
        cos_half = ((q1 * q2).sum(-1) if diag else q1 @ q2.transpose(-1, -2)).abs()
        sin_half = _safe_sqrt(_trace_distance(x1, x2, diag)) / 2
        theta = 2 * torch.atan2(sin_half, cos_half)
        return torch.exp(-theta**2 / (2 * ls**2))


# ----------------------------------------------------------------- SO(3) heat and Matern kernels
class SO3HeatKernel(_RotationKernel):
    """Heat (diffusion) kernel on SO(3) by its character expansion, normalised to ``k(x, x) = 1``.

    ``k = sum_{l<L} a_l (2l+1) chi_l(theta) / sum_{l<L} a_l (2l+1)^2`` with ``a_l = exp(-l_s^2 lambda_l / 2)``,
    ``lambda_l = l(l+1)`` (Laplacian eigenvalues), ``L = num_terms`` (20, as GeometricKernels), and the
    characters ``chi_l(theta) = sin((l+1/2) theta) / sin(theta/2) = U_2l(w)``, ``w = |q.q'| = cos(theta/2)``
    (Chebyshev of the second kind). Positive definite by construction: it is a sum of characters
    (PD functions on the group) with non-negative weights.

    The characters are computed by the Chebyshev three-term recurrence taken two degrees at a time,
    ``U_{2l+2}(w) = 2 (2w^2 - 1) U_2l(w) - U_{2l-2}(w)``, and ``2w^2 - 1 = cos(theta) = 1 - tr(I - R^T R')/2``
    is read straight off the trace: one matmul, no quaternions, no arccos, no sign ambiguity, exact at
    theta = 0 (``U_2l(1) = 2l + 1``) and stable up to theta = pi; the gradient pass recomputes the
    recurrence, so memory is O(N M) for any ``num_terms``. Equals GeometricKernels'
    ``MaternGeometricKernel(SpecialOrthogonal(3))`` with ``nu=inf`` (to 1e-6, measured in the notes).
    """

    lengthscale_distance = "geodesic"  # the Laplacian eigenvalues are those of the angle metric

    def __init__(self, num_terms: int = 20, **kwargs):
        if int(num_terms) < 1:
            raise ValueError(f"num_terms must be >= 1, got {num_terms}")
        super().__init__(**kwargs)
        self.num_terms = int(num_terms)

    def spectrum(self, ls: Tensor) -> Tensor:
        """Unnormalised weights ``a_l``, shape ``ls.shape + (num_terms,)``."""
        lam = self._laplacian_eigenvalues(ls)
        return torch.exp(-(ls.unsqueeze(-1) ** 2) * lam / 2)

    def _laplacian_eigenvalues(self, like: Tensor) -> Tensor:
        l = torch.arange(self.num_terms, dtype=like.dtype, device=like.device)
        return l * (l + 1)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params) -> Tensor:
        ls = self._prepare(x1, x2, diag, last_dim_is_batch)
        cos_theta = 1.0 - _trace_distance(x1, x2, diag) / 2
        a = self.spectrum(ls)
        dims = 2 * torch.arange(self.num_terms, dtype=a.dtype, device=a.device) + 1
        coef = a * dims / (a * dims**2).sum(-1, keepdim=True)  # (*batch, 1[, 1], L)
        return _CharacterSum.apply(cos_theta, coef)


def _characters(cos_theta: Tensor, num_terms: int, derivative: bool):
    """Yield ``(l, chi_l, d chi_l / d cos_theta or None)`` for l = 0..num_terms-1.

    ``chi_{l+1} = 2 c chi_l - chi_{l-1}`` from ``chi_{-1} = -1, chi_0 = 1`` (so ``chi_1 = 2c + 1``), and
    its derivative ``chi'_{l+1} = 2 chi_l + 2 c chi'_l - chi'_{l-1}``.
    """
    two_c = 2 * cos_theta
    prev, cur = -torch.ones_like(cos_theta), torch.ones_like(cos_theta)
    dprev = dcur = torch.zeros_like(cos_theta) if derivative else None
    for l in range(num_terms):
        yield l, cur, dcur
        if derivative:
            dprev, dcur = dcur, 2 * cur + two_c * dcur - dprev
        prev, cur = cur, two_c * cur - prev


class _CharacterSum(torch.autograd.Function):
    """``sum_l coef_l chi_l(theta)`` from ``cos(theta)`` ``(..., N, M)`` and ``coef`` ``(..., L)``.

    Autograd through the recurrence would keep all L character matrices; the backward pass here
    recomputes them, so memory stays O(N M) whatever the number of terms.
    """

    @staticmethod
    def forward(ctx, cos_theta: Tensor, coef: Tensor) -> Tensor:
        ctx.save_for_backward(cos_theta, coef)
        out = None
        for l, chi, _ in _characters(cos_theta, coef.shape[-1], derivative=False):
            term = coef[..., l] * chi
            out = term if out is None else out + term
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        cos_theta, coef = ctx.saved_tensors
        need_c, need_coef = ctx.needs_input_grad
        slope = 0.0  # d out / d cos_theta
        grads_coef = []
        for l, chi, dchi in _characters(cos_theta, coef.shape[-1], derivative=need_c):
            if need_c:
                slope = slope + coef[..., l] * dchi
            if need_coef:
                grads_coef.append((grad * chi).sum_to_size(coef[..., l].shape))
        grad_c = (grad * slope).sum_to_size(cos_theta.shape) if need_c else None
        grad_coef = torch.stack(grads_coef, -1) if need_coef else None
        return grad_c, grad_coef


class SO3MaternKernel(SO3HeatKernel):
    """Matern kernel on SO(3): :class:`SO3HeatKernel`'s expansion with ``a_l = (2 nu / l_s^2 + lambda_l)^(-nu - 3/2)``.

    ``nu > 0`` (any value; 1/2, 3/2, 5/2 are the usual ones; ``nu -> inf`` gives the heat kernel).
    """

    def __init__(self, nu: float = 2.5, num_terms: int = 20, **kwargs):
        if not float(nu) > 0:
            raise ValueError(f"SO3MaternKernel: nu must be positive, got {nu}")
        super().__init__(num_terms=num_terms, **kwargs)
        self.nu = float(nu)

    def spectrum(self, ls: Tensor) -> Tensor:
        lam = self._laplacian_eigenvalues(ls)
        return (2 * self.nu / ls.unsqueeze(-1) ** 2 + lam) ** (-self.nu - 1.5)


# ------------------------------------------------------------------------------ GPPVAE baseline
class GPPVAEViewKernel(_PoseKernel):
    """GPPVAE's learned free-form view covariance (Casale et al., NeurIPS 2018), a comparison baseline.

    Reads an integer view id (stored as a float) from one column, chosen with ``active_dims=(c,)``
    (default: column 0 of a one-column id input), and returns ``K_ij = w_i . w_j`` with ``w`` the rows
    of the learned embedding ``W`` ``(num_views, rank)`` normalised to unit length (so ``k(x, x) = 1``,
    and K is PSD of rank <= ``rank``). As in GPPVAE, ``rank`` defaults to ``num_views`` (full rank) and
    ``W`` starts at ``I + 1e-3 noise``.

    It uses no pose geometry: a view's covariance with the others is whatever its embedding row
    learned, so it cannot predict views absent from training (their rows are never trained and keep
    their initial, arbitrary values). An id outside ``[0, num_views)`` or not an integer raises
    ``ValueError``.
    """

    def __init__(self, num_views: int, rank: Optional[int] = None, active_dims: Dims = (0,), **kwargs):
        if int(num_views) < 1:
            raise ValueError(f"GPPVAEViewKernel: num_views must be >= 1, got {num_views}")
        super().__init__(active_dims=active_dims, **kwargs)
        self.num_views = int(num_views)
        rank = self.num_views if rank is None else int(rank)
        if rank < 1:
            raise ValueError(f"GPPVAEViewKernel: rank must be >= 1, got {rank}")
        g = torch.Generator().manual_seed(0)
        init = torch.eye(self.num_views, rank) + 1e-3 * torch.randn(self.num_views, rank, generator=g)
        self.register_parameter("embedding", torch.nn.Parameter(init))

    def _rows(self, x: Tensor) -> Tensor:
        _check_columns(x, 1, self)
        v = x[..., 0]
        ids = v.round()
        bad = (ids < 0) | (ids >= self.num_views) | ((v - ids).abs() > 1e-6)
        if bool(bad.any()):
            val = float(v[bad].reshape(-1)[0])
            raise ValueError(
                f"GPPVAEViewKernel: view id {val:g} is not an integer in [0, {self.num_views}); a free-form view "
                "kernel only knows the views it was built with and cannot predict views absent from training"
            )
        W = self.embedding / self.embedding.norm(dim=-1, keepdim=True)
        return W[ids.long()].to(x.dtype)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params) -> Tensor:
        _no_last_dim_batch(self, last_dim_is_batch)
        a, b = self._rows(x1), self._rows(x2)
        return (a * b).sum(-1) if diag else a @ b.transpose(-1, -2)


# ------------------------------------------------------------------------------------- factory
_MAKERS = {
    "view": ViewKernel,
    "orientation": OrientationKernel,
    "time": TemporalKernel,
    "euler": EulerPeriodicKernel,
    "quaternion": QuaternionSEKernel,
    "geodesic": GeodesicSEKernel,
    "so3_heat": SO3HeatKernel,
    "so3_matern": SO3MaternKernel,
}
KERNEL_NAMES = tuple(_MAKERS)


def make_kernel(name: str, **kwargs) -> Kernel:
    """A pose kernel by name (for the pipeline and the command line); ``kwargs`` go to the class.

    ``view``: :class:`ViewKernel` (orientation x translation [x time]); ``orientation``: SO(3) only
    (:class:`OrientationKernel`); ``time``: :class:`TemporalKernel` on the timestamp column only;
    ``euler``, ``quaternion``, ``geodesic``: baselines; ``so3_heat``, ``so3_matern``: character-expansion
    kernels. Unknown names raise ``ValueError`` listing the known ones.
    """
    if name not in _MAKERS:
        raise ValueError(f"unknown kernel {name!r}; known kernels: {', '.join(KERNEL_NAMES)}")
    return _MAKERS[name](**kwargs)
