"""GPyTorch kernels on camera poses.

Inputs are flat pose features ``(..., N, 12)`` = vec(R) row-major (columns 0-8) + t (9-11), or
``(..., N, 13)`` with a timestamp in column 12 (see :func:`viewgp.poses.pose_features`). Each kernel
reads its own columns through GPyTorch's ``active_dims`` (set by default), so factors compose with
``*`` on the same input; pass ``active_dims`` to feed narrower inputs. All kernels are unscaled
(``k(x, x) = 1``); wrap them in ``gpytorch.kernels.ScaleKernel`` for an output scale.

The math behind the view kernel (thesis eq. 3.9)::

    tr(I - R^T R') = 4 sin^2(theta / 2)          theta = angle of the relative rotation R^T R'
    ||R - R'||_F^2 = 2 tr(I - R^T R')
    k(R, R') = exp(-tr(I - R^T R') / (2 l^2)) = exp(-||vec R - vec R'||^2 / (4 l^2))

so it is a squared-exponential kernel on vec(R) in R^9, positive definite for every lengthscale, and
for rotations about one axis it equals the standard periodic kernel ``exp(-2 sin^2(dtheta/2) / l^2)``.
It is computed from ``3 - vec(R) . vec(R')`` (one matmul), never through arccos.

Sources of each class:

* :class:`OrientationKernel` ``form="se"``: thesis eq. 3.9 (Publication V's view kernel).
* ``form="exp"``: the original face-run code, ``exp(-sqrt(tr(I - R^T R')) / (2 l^2))`` (fixed
  ``s^2 = 13.8156, l = 1.0975, noise = 1.4`` there).
* ``form="ard"``: the original chairs code, ``exp(-0.5 tr(L - R L R'^T))``, ``L = diag(l_1, l_2, l_3)``.
* :class:`TranslationKernel`, :class:`TemporalKernel`: RBF / Matern on t and on time.
* :class:`ViewKernel`: orientation x translation [x time]; a product of PD kernels is PD, and the SE(3)
  heat kernel is exactly the product of the SO(3) and R^3 heat kernels.
* Baselines: :class:`EulerPeriodicKernel` (separable periodic on Euler angles, chart dependent),
  :class:`QuaternionSEKernel` (breaks on q ~ -q), :class:`GeodesicSEKernel` (NOT positive definite),
  :class:`GPPVAEViewKernel` (GPPVAE's learned free-form view covariance: no unseen views).
* Beyond the paper: :class:`SO3HeatKernel` / :class:`SO3MaternKernel` by the character expansion
  (matches GeometricKernels' SpecialOrthogonal(3)).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from gpytorch.constraints import Positive
from gpytorch.kernels import Kernel, MaternKernel, RBFKernel
from torch import Tensor

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


def _rotations(x: Tensor) -> Tensor:
    """``(..., N, 9)`` columns -> ``(..., N, 3, 3)``."""
    return x.reshape(x.shape[:-1] + (3, 3))


def _trace_distance(x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
    """``tr(I - R^T R') = 3 - vec(R) . vec(R')`` for vec(R) inputs ``(..., N, 9)``, clamped at 0."""
    if diag:
        return (3.0 - (x1 * x2).sum(-1)).clamp_min(0)
    return (3.0 - x1 @ x2.transpose(-1, -2)).clamp_min(0)


class _SafeSqrt(torch.autograd.Function):
    """sqrt with gradient 0 (not inf) at 0: the exponential form is not differentiable in the input
    at zero distance, but the lengthscale gradient must stay finite."""

    @staticmethod
    def forward(ctx, x):
        y = x.clamp_min(0).sqrt()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return torch.where(y > 0, g / (2 * y.clamp_min(1e-300)), torch.zeros_like(g))


class OrientationKernel(Kernel):
    """View kernel on SO(3) (thesis eq. 3.9) and the two variants of the original code.

    Args:
        form: ``"se"`` ``exp(-tr(I - R^T R') / (2 l^2))``; ``"exp"`` ``exp(-sqrt(tr(I - R^T R')) / (2 l^2))``;
            ``"ard"`` ``exp(-0.5 tr(L - R L R'^T))`` with positive ``L = diag(ard_scales)`` (3 values;
            initialised to exp(2.63) as in the chairs code). ``ard`` has no lengthscale.
    """

    def __init__(self, form: str = "se", active_dims: Optional[Sequence[int]] = ROT_DIMS, **kwargs):
        if form not in ("se", "exp", "ard"):
            raise ValueError(f"OrientationKernel form must be 'se', 'exp' or 'ard', got {form!r}")
        self.has_lengthscale = form != "ard"
        super().__init__(active_dims=active_dims, **kwargs)
        self.form = form
        if form == "ard":
            init = torch.full((*self.batch_shape, 3), math.exp(2.63))
            self.register_parameter("raw_ard_scales", torch.nn.Parameter(torch.zeros_like(init)))
            self.register_constraint("raw_ard_scales", Positive())
            self.ard_scales = init

    @property
    def ard_scales(self) -> Tensor:
        return self.raw_ard_scales_constraint.transform(self.raw_ard_scales)

    @ard_scales.setter
    def ard_scales(self, value) -> None:
        value = torch.as_tensor(value, dtype=self.raw_ard_scales.dtype, device=self.raw_ard_scales.device)
        self.initialize(raw_ard_scales=self.raw_ard_scales_constraint.inverse_transform(value.expand_as(self.raw_ard_scales)))

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params) -> Tensor:
        if last_dim_is_batch:
            raise RuntimeError("OrientationKernel does not support last_dim_is_batch")
        if self.form == "ard":
            L = self.ard_scales  # (*batch, 3)
            # tr(L - R L R'^T) = sum_j L_j - sum_{a,j} R_aj L_j R'_aj : a weighted vec(R).vec(R').
            # vec(R) is row-major, so column j of R sits at positions j, j+3, j+6.
            w = L.unsqueeze(-2).expand(*L.shape[:-1], 3, 3).reshape(*L.shape[:-1], 1, 9)
            s = L.sum(-1)[..., None, None]
            a = x1 * w
            if diag:
                d = s[..., 0] - (a * x2).sum(-1)
            else:
                d = s - a @ x2.transpose(-1, -2)
            return torch.exp(-0.5 * d.clamp_min(0))
        tr = _trace_distance(x1, x2, diag)
        ls = self.lengthscale if not diag else self.lengthscale[..., 0]
        if self.form == "se":
            return torch.exp(-tr / (2 * ls**2))
        return torch.exp(-_SafeSqrt.apply(tr) / (2 * ls**2))


def _euclidean(kind: str, active_dims, ard: bool, batch_shape=torch.Size()):
    dims = len(active_dims) if ard else None
    if kind == "rbf":
        return RBFKernel(active_dims=active_dims, ard_num_dims=dims, batch_shape=batch_shape)
    nus = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}
    if kind not in nus:
        raise ValueError(f"unknown kernel kind {kind!r}; use one of 'rbf', {', '.join(repr(k) for k in nus)}")
    return MaternKernel(nu=nus[kind], active_dims=active_dims, ard_num_dims=dims, batch_shape=batch_shape)


def TranslationKernel(kind: str = "rbf", active_dims: Sequence[int] = TRANS_DIMS, ard: bool = False, **kwargs) -> Kernel:
    """RBF or Matern (1/2, 3/2, 5/2) kernel on the camera centre t (columns 9-11)."""
    return _euclidean(kind, tuple(active_dims), ard, **kwargs)


def TemporalKernel(kind: str = "matern32", active_dims: Sequence[int] = (TIME_DIM,), **kwargs) -> Kernel:
    """RBF or Matern kernel on the timestamp column 12."""
    return _euclidean(kind, tuple(active_dims), False, **kwargs)


class ViewKernel(Kernel):
    """Orientation x translation [x time] on ``(N, 12|13)`` pose features.

    The factors are sub-modules ``orientation``, ``translation`` and ``temporal`` (``None`` if absent),
    so their hyper-parameters are reported as e.g. ``orientation.lengthscale``.
    """

    def __init__(self, orientation: str = "se", translation: Optional[str] = "rbf", temporal: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.orientation = OrientationKernel(form=orientation)
        self.translation = TranslationKernel(translation) if translation else None
        self.temporal = TemporalKernel(temporal) if temporal else None

    @property
    def factors(self) -> list[Kernel]:
        return [k for k in (self.orientation, self.translation, self.temporal) if k is not None]

    def forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        out = None
        for k in self.factors:
            v = k(x1, x2, diag=diag, **params)
            v = v if isinstance(v, Tensor) else v.to_dense()
            out = v if out is None else out * v
        return out


class _AngleKernel(Kernel):
    """Base for the kernels computed from relative rotations (columns 0-8)."""

    has_lengthscale = True

    def __init__(self, active_dims: Optional[Sequence[int]] = ROT_DIMS, **kwargs):
        super().__init__(active_dims=active_dims, **kwargs)

    def _pairs(self, x1: Tensor, x2: Tensor, diag: bool) -> tuple[Tensor, Tensor]:
        R1, R2 = _rotations(x1), _rotations(x2)
        if diag:
            return R1, R2
        return R1.unsqueeze(-3), R2.unsqueeze(-4)


class EulerPeriodicKernel(_AngleKernel):
    """Baseline: separable periodic kernel on Euler angles, ``prod_i exp(-2 sin^2((a_i - a'_i)/2) / l^2)``.

    Depends on the chosen chart (axis order) and is distorted near gimbal lock; it coincides with the
    view kernel only for rotations about one axis.
    """

    def __init__(self, order: str = "xyz", **kwargs):
        super().__init__(**kwargs)
        self.order = order

    def forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        a1 = matrix_to_euler(_rotations(x1), self.order)
        a2 = matrix_to_euler(_rotations(x2), self.order)
        d = (a1 - a2) if diag else (a1.unsqueeze(-2) - a2.unsqueeze(-3))
        ls = self.lengthscale[..., 0] if diag else self.lengthscale
        return torch.exp(-2 * torch.sin(d / 2).pow(2).sum(-1) / ls.pow(2))


class QuaternionSEKernel(_AngleKernel):
    """Baseline: SE kernel on unit quaternions ``exp(-||q - q'||^2 / (2 l^2))`` (canonical ``w >= 0``).

    Not a function on SO(3): q and -q are one rotation, and the canonical sign flips across ``w = 0``,
    so nearby rotations can be far apart.
    """

    def forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        q1 = matrix_to_quat(_rotations(x1))
        q2 = matrix_to_quat(_rotations(x2))
        if diag:
            d2 = (q1 - q2).pow(2).sum(-1)
            return torch.exp(-d2 / (2 * self.lengthscale[..., 0] ** 2))
        d2 = (q1.unsqueeze(-2) - q2.unsqueeze(-3)).pow(2).sum(-1)
        return torch.exp(-d2 / (2 * self.lengthscale**2))


def _abs_quat_dot(x1: Tensor, x2: Tensor, diag: bool) -> Tensor:
    """``|q . q'| = cos(theta/2)`` of the relative rotation, sign-free, from vec(R) inputs."""
    q1 = matrix_to_quat(_rotations(x1))
    q2 = matrix_to_quat(_rotations(x2))
    w = (q1 * q2).sum(-1) if diag else q1 @ q2.transpose(-1, -2)
    return w.abs().clamp(max=1.0)


class GeodesicSEKernel(_AngleKernel):
    """Baseline ONLY: ``exp(-theta^2 / (2 l^2))`` with theta the geodesic angle. NOT positive definite.

    A Gaussian of the geodesic distance is PD for all lengthscales only on flat spaces (Feragen et al.,
    CVPR 2015); on 200 random rotations the minimum eigenvalue is about -0.02 at l = 1 and about -1.7 at
    l = 2. Exposed only to reproduce the comparison.
    """

    def forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        w = _abs_quat_dot(x1, x2, diag)
        theta = 2 * torch.acos(w.clamp(max=1 - 1e-15))
        ls = self.lengthscale[..., 0] if diag else self.lengthscale
        return torch.exp(-theta**2 / (2 * ls**2))


def _chebyshev_u_even(w: Tensor, n_terms: int) -> Tensor:
    """``U_{2l}(w)`` for l = 0..n_terms-1, stacked in the last dim, by the three-term recurrence."""
    out = []
    u_prev, u = torch.ones_like(w), 2 * w  # U_0, U_1
    out.append(u_prev)
    for k in range(2, 2 * n_terms - 1 + 1):
        u_prev, u = u, 2 * w * u - u_prev
        if k % 2 == 0:
            out.append(u)
    return torch.stack(out[:n_terms], -1)


class SO3HeatKernel(_AngleKernel):
    """Heat (diffusion) kernel on SO(3) by its character expansion (normalised, ``k(x, x) = 1``).

    ``k = sum_l a_l (2l+1) chi_l(theta) / sum_l a_l (2l+1)^2`` with ``chi_l = U_2l(|q.q'|)``
    (Chebyshev of the second kind: sign-free, no arccos), ``lambda_l = l(l+1)``, and
    ``a_l = exp(-l_s^2 lambda_l / 2)``. Positive definite by construction (non-negative spectrum).
    """

    def __init__(self, num_terms: int = 20, **kwargs):
        super().__init__(**kwargs)
        self.num_terms = num_terms

    def _coefficients(self, ls: Tensor) -> Tensor:
        l = torch.arange(self.num_terms, dtype=ls.dtype, device=ls.device)
        lam = l * (l + 1)
        return torch.exp(-(ls**2) * lam / 2)

    def forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        w = _abs_quat_dot(x1, x2, diag)
        chi = _chebyshev_u_even(w, self.num_terms)  # (..., N[, M], L)
        # lengthscale is (*batch, 1, 1): one more trailing dim broadcasts it against the term axis.
        ls = self.lengthscale if diag else self.lengthscale.unsqueeze(-1)
        a = self._coefficients(ls)
        dim = 2 * torch.arange(self.num_terms, dtype=w.dtype, device=w.device) + 1
        return (a * dim * chi).sum(-1) / (a * dim**2).sum(-1)


class SO3MaternKernel(SO3HeatKernel):
    """Matern kernel on SO(3): the character expansion with ``a_l = (2 nu / l_s^2 + lambda_l)^(-nu - 3/2)``."""

    def __init__(self, nu: float = 2.5, num_terms: int = 20, **kwargs):
        super().__init__(num_terms=num_terms, **kwargs)
        self.nu = nu

    def _coefficients(self, ls: Tensor) -> Tensor:
        l = torch.arange(self.num_terms, dtype=ls.dtype, device=ls.device)
        lam = l * (l + 1)
        return (2 * self.nu / ls**2 + lam) ** (-self.nu - 1.5)


class GPPVAEViewKernel(Kernel):
    """GPPVAE's learned free-form view covariance (Casale et al. 2018), the comparison baseline.

    Reads an integer view id from one column (``active_dims=(c,)``) and returns ``W_i . W_j`` of
    row-normalised learned view embeddings ``W`` ``(num_views, rank)``. Only ids seen in training get a
    trained embedding: it cannot predict genuinely new viewpoints.
    """

    def __init__(self, num_views: int, rank: Optional[int] = None, active_dims: Sequence[int] = (0,), **kwargs):
        super().__init__(active_dims=active_dims, **kwargs)
        rank = rank or num_views
        self.num_views = num_views
        g = torch.Generator().manual_seed(0)
        init = torch.eye(num_views, rank) + 1e-3 * torch.randn(num_views, rank, generator=g)
        self.register_parameter("embedding", torch.nn.Parameter(init))

    def _rows(self, x: Tensor) -> Tensor:
        ids = x[..., 0].round().long()
        if bool(((ids < 0) | (ids >= self.num_views)).any()):
            bad = ids[(ids < 0) | (ids >= self.num_views)][0].item()
            raise ValueError(
                f"GPPVAEViewKernel: view id {bad} is outside the {self.num_views} views it was built with; "
                "a free-form view kernel cannot predict views absent from training"
            )
        W = self.embedding / self.embedding.norm(dim=-1, keepdim=True)
        return W[ids]

    def forward(self, x1, x2, diag=False, last_dim_is_batch=False, **params):
        a, b = self._rows(x1), self._rows(x2)
        return (a * b).sum(-1) if diag else a @ b.transpose(-1, -2)


KERNEL_NAMES = ("view", "orientation", "time", "euler", "quaternion", "geodesic", "so3_heat", "so3_matern")


def make_kernel(name: str, **kwargs) -> Kernel:
    """A pose kernel by name (for the pipeline and the command line); ``kwargs`` go to the class.

    ``view``: orientation x translation; ``orientation``: SO(3) only; ``time``: a temporal kernel on
    the timestamp column only; ``euler``, ``quaternion``, ``geodesic``: baselines; ``so3_heat``,
    ``so3_matern``: character-expansion kernels.
    """
    makers = {
        "view": ViewKernel,
        "orientation": OrientationKernel,
        "time": TemporalKernel,
        "euler": EulerPeriodicKernel,
        "quaternion": QuaternionSEKernel,
        "geodesic": GeodesicSEKernel,
        "so3_heat": SO3HeatKernel,
        "so3_matern": SO3MaternKernel,
    }
    if name not in makers:
        raise ValueError(f"unknown kernel {name!r}; known kernels: {', '.join(KERNEL_NAMES)}")
    return makers[name](**kwargs)
