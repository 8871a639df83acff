"""generative.latents.edit: slerp/lerp, prior samples, reconstruction and attribute arithmetic on toy backbones."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from generative.latents import edit
class LinearBackbone(nn.Module):
    """A linear toy backbone: encode = (normalised) A x, decode = tanh-free B z, so every edit can be
    computed by hand exactly. 4 px images, latent_shape (6,) or (2, 3)."""

    kind = "toy_linear"
    resolution = 4
    has_encoder = True

    def __init__(self, geometry: str = "sphere", latent_shape=(6,), seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.latent_geometry = geometry
        self.latent_shape = tuple(latent_shape)
        d = math.prod(self.latent_shape)
        self.A = nn.Parameter(torch.randn(d, 48, generator=g) / 7)
        self.B = nn.Parameter(torch.randn(48, d, generator=g) / 3)

    def encode(self, x):
        z = x.reshape(len(x), -1) @ self.A.T
        if self.latent_geometry == "sphere":
            z = F.normalize(z, dim=1)
        return z.reshape((len(x),) + self.latent_shape)

    def decode(self, z):
        return (z.reshape(len(z), -1) @ self.B.T).reshape(len(z), 3, 4, 4)


def _images(n, seed=0):
    return torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------------- slerp
def test_slerp_endpoints_unit_norm_and_constant_speed():
    g = torch.Generator().manual_seed(1)
    z0, z1 = torch.randn(3, 10, generator=g, dtype=torch.float64), 2.5 * torch.randn(3, 10, generator=g, dtype=torch.float64)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]
    path = edit.slerp(z0, z1, t)  # (11, 3, 10)
    assert path.shape == (11, 3, 10)
    torch.testing.assert_close(path[0], F.normalize(z0, dim=1))
    torch.testing.assert_close(path[-1], F.normalize(z1, dim=1))
    torch.testing.assert_close(path.norm(dim=-1), torch.ones(11, 3, dtype=torch.float64))
    omega = edit.angle_between(z0, z1)  # (3,)
    steps = edit.angle_between(path[:-1], path[1:])  # (10, 3)
    torch.testing.assert_close(steps, (omega / 10).expand(10, 3))
    # the angle from the start grows linearly in t
    torch.testing.assert_close(edit.angle_between(z0.expand(11, 3, 10), path), t * omega)
    # the path stays in the plane of z0 and z1: it is orthogonal to anything orthogonal to both
    q, _ = torch.linalg.qr(torch.stack([z0[0], z1[0]], 1))
    resid = path[:, 0] - (path[:, 0] @ q) @ q.T
    assert resid.abs().max() < 1e-12


def test_slerp_scalar_t_nearly_identical_and_antipodal():
    a = torch.tensor([1.0, 0.0, 0.0])
    b = torch.tensor([0.0, 1.0, 0.0])
    mid = edit.slerp(a, b, 0.5)
    torch.testing.assert_close(mid, torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2))
    same = edit.slerp(a, a + 1e-9, 0.3)
    assert torch.isfinite(same).all()
    torch.testing.assert_close(same, a)
    with pytest.raises(ValueError, match="antipodal"):
        edit.slerp(a, -a, 0.5)
    with pytest.raises(ValueError, match="non-zero"):
        edit.slerp(a, torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="same shape"):
        edit.slerp(a, torch.ones(4), 0.5)


def test_lerp_and_interpolate_choose_by_geometry():
    sphere, eucl = LinearBackbone("sphere"), LinearBackbone("euclidean")
    g = torch.Generator().manual_seed(2)
    z0, z1 = torch.randn(6, generator=g), torch.randn(6, generator=g)
    ps = edit.interpolate(sphere, z0, z1, 5)
    pe = edit.interpolate(eucl, z0, z1, 5)
    assert ps.shape == pe.shape == (5, 6)
    torch.testing.assert_close(ps, edit.slerp(z0, z1, torch.linspace(0, 1, 5)))
    torch.testing.assert_close(pe, torch.stack([z0 + t * (z1 - z0) for t in torch.linspace(0, 1, 5)]))
    torch.testing.assert_close(ps.norm(dim=1), torch.ones(5))
    batch = edit.interpolate(sphere, torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g), 4)
    assert batch.shape == (4, 2, 6)
    with pytest.raises(ValueError, match="at least 2 steps"):
        edit.interpolate(sphere, z0, z1, 1)
    with pytest.raises(ValueError, match=r"shape \(B, 6\)"):
        edit.interpolate(sphere, torch.randn(5), torch.randn(5), 3)


def test_interpolation_grid_corners_and_rows():
    bb = LinearBackbone("sphere", latent_shape=(2, 3))
    corners = edit.sample_latents(bb, 4, torch.Generator().manual_seed(3))
    grid = edit.interpolation_grid(bb, corners, rows=4, cols=5)
    assert grid.shape == (4, 5, 2, 3)
    for (i, j), k in {(0, 0): 0, (0, 4): 1, (3, 0): 2, (3, 4): 3}.items():
        torch.testing.assert_close(grid[i, j], corners[k])
    flat = grid.reshape(4, 5, 6)
    torch.testing.assert_close(flat.norm(dim=-1), torch.ones(4, 5))
    # every row is the slerp between its two edge latents
    for i in range(4):
        torch.testing.assert_close(flat[i], edit.slerp(flat[i, 0], flat[i, -1], torch.linspace(0, 1, 5)))
    with pytest.raises(ValueError, match="4 corner"):
        edit.interpolation_grid(bb, corners[:3])


# ---------------------------------------------------------------------------------- samples, passes
def test_random_latents_follow_the_geometry_and_seed():
    sphere = LinearBackbone("sphere", latent_shape=(2, 3))
    z = edit.sample_latents(sphere, 50, torch.Generator().manual_seed(0))
    assert z.shape == (50, 2, 3)
    torch.testing.assert_close(z.reshape(50, -1).norm(dim=1), torch.ones(50))
    torch.testing.assert_close(z, edit.sample_latents(sphere, 50, torch.Generator().manual_seed(0)))
    ze = edit.sample_latents(LinearBackbone("euclidean"), 4000, torch.Generator().manual_seed(0))
    assert abs(ze.mean().item()) < 0.05 and abs(ze.std().item() - 1) < 0.05
    assert ze.norm(dim=1).std() > 0.1  # not projected
    imgs = edit.random_samples(sphere, 7, torch.Generator().manual_seed(1), batch_size=3)
    assert imgs.shape == (7, 3, 4, 4)
    torch.testing.assert_close(imgs, sphere.decode(edit.sample_latents(sphere, 7, torch.Generator().manual_seed(1))))


def test_reconstruct_is_batched_decode_of_encode():
    bb = LinearBackbone("sphere")
    x = _images(7)
    rec = edit.reconstruct(bb, x, batch_size=3)
    with torch.no_grad():
        torch.testing.assert_close(rec, bb.decode(bb.encode(x)))
    torch.testing.assert_close(rec, edit.reconstruct(bb, x, batch_size=16))
    with pytest.raises(ValueError, match=r"\(B, 3, 4, 4\)"):
        edit.reconstruct(bb, torch.zeros(2, 3, 8, 8))
    bb.has_encoder = False
    with pytest.raises(ValueError, match="needs an encoder"):
        edit.reconstruct(bb, x)


# ------------------------------------------------------------------------------- attribute vectors
def test_attribute_vector_is_the_mean_latent_difference():
    bb = LinearBackbone("sphere")
    xa, xb = _images(5, seed=1), _images(3, seed=2)
    v = edit.attribute_vector(bb, xa, xb, batch_size=2)
    with torch.no_grad():
        expected = bb.encode(xa).mean(0) - bb.encode(xb).mean(0)
    assert v.shape == (6,)
    torch.testing.assert_close(v, expected)
    with pytest.raises(ValueError, match="images_without is empty"):
        edit.attribute_vector(bb, xa, xa[:0])


@pytest.mark.parametrize("geometry", ["sphere", "euclidean"])
def test_apply_attribute_is_z_plus_lambda_v(geometry):
    bb = LinearBackbone(geometry)
    x = _images(4, seed=3)
    v = torch.linspace(-1, 1, 6)
    lambdas = [-2.0, -0.5, 0.0, 1.0, 2.0]
    out = edit.apply_attribute(bb, x, v, lambdas, batch_size=3)
    assert out.shape == (5, 4, 3, 4, 4)
    with torch.no_grad():
        z = bb.encode(x)
        for k, lam in enumerate(lambdas):
            ze = z + lam * v
            if geometry == "sphere":
                ze = ze / ze.norm(dim=1, keepdim=True)
            torch.testing.assert_close(out[k], bb.decode(ze))
    torch.testing.assert_close(out[2], edit.reconstruct(bb, x))  # lambda = 0


def test_edit_latents_shapes_and_errors():
    z = edit.project_latents(torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(4)), "sphere")
    v = torch.randn(2, 4, generator=torch.Generator().manual_seed(5))
    e = edit.edit_latents(z, v, [0.0, 1.0], "sphere")
    assert e.shape == (2, 3, 2, 4)
    torch.testing.assert_close(e[0], z)
    torch.testing.assert_close(e.reshape(2, 3, 8).norm(dim=-1), torch.ones(2, 3))
    with pytest.raises(ValueError, match="does not match"):
        edit.edit_latents(z, torch.randn(8), [1.0], "sphere")
    with pytest.raises(ValueError, match="finite"):
        edit.edit_latents(z, v, [float("nan")], "sphere")
    with pytest.raises(ValueError, match="latent geometry"):
        edit.edit_latents(z, v, [1.0], "hyperbolic")
