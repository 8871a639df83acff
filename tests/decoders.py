"""Small decoder-only backbones shared by tests (no encoder: they must be inverted)."""

import torch
from torch import nn


class LinearDecoder(nn.Module):
    """A fixed random map from a ``dim``-d Euclidean latent to 16 px images (tanh)."""

    resolution = 16
    latent_geometry = "euclidean"
    has_encoder = False

    def __init__(self, dim: int = 16, kind: str = "linear-test"):
        super().__init__()
        self.kind = kind
        self.latent_shape = (dim,)
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(3 * 16 * 16, dim, generator=g) / dim**0.5)

    def decode(self, z):
        return torch.tanh(z @ self.w.T).reshape(-1, 3, 16, 16)

    def fingerprint(self) -> str:
        from generative.backbones.registry import weights_fingerprint

        return weights_fingerprint(self)
