import pytest
import torch
from torch import nn

from generative.backbones.registry import Backbone, to_model_images, to_uint8
from generative.backbones.layers import EqualConv2d, PixelNorm, spectral_norm_modules, upsample
from generative.backbones.pioneer import PioneerAutoencoder, PioneerConfig

TINY = dict(resolution=16, latent_dim=24, channel_base=128, max_channels=16)


def tiny(variant: str, seed: int = 0) -> PioneerAutoencoder:
    torch.manual_seed(seed)
    return PioneerAutoencoder(PioneerConfig(variant=variant, **TINY))


def test_default_channel_widths_match_the_paper():
    cfg = PioneerConfig(resolution=1024)
    widths = [cfg.channels(4 * 2**p) for p in range(9)]
    assert widths == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    assert cfg.max_phase == 8


@pytest.mark.parametrize("variant", ["pioneer", "balanced"])
def test_shapes_at_every_phase_and_fade(variant):
    m = tiny(variant)
    z = m.sample_prior(3)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    for phase in range(m.config.max_phase + 1):
        r = 4 * 2**phase
        for alpha in (0.0, 0.5, 1.0):
            x = m.decoder(z, phase, alpha)
            assert x.shape == (3, 3, r, r)
            code = m.encoder(x, phase, alpha)
            assert code.shape == (3, 24)
            assert torch.allclose(code.norm(dim=1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("variant", ["pioneer", "balanced"])
def test_fade_in_endpoints_are_the_previous_resolution(variant):
    m = tiny(variant).eval()  # eval: spectral-norm u stays fixed between the calls
    z = m.sample_prior(2)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    for phase in (1, 2):
        # alpha = 0: the new block is invisible; the output is the previous phase's, upsampled
        assert torch.allclose(m.decoder(z, phase, 0.0), upsample(m.decoder(z, phase - 1, 1.0)), atol=1e-6)
    assert torch.allclose(m.encoder(x, 2, 0.0), m.encoder(torch.nn.functional.avg_pool2d(x, 2), 1, 1.0), atol=1e-6)


def test_variants_use_their_regularisers():
    p, b = tiny("pioneer"), tiny("balanced")
    assert any(isinstance(mod, EqualConv2d) for mod in p.decoder.modules())
    assert any(isinstance(mod, PixelNorm) for mod in p.decoder.modules())
    assert not spectral_norm_modules(p.decoder)
    assert spectral_norm_modules(p.encoder) and spectral_norm_modules(b.encoder)
    assert spectral_norm_modules(b.decoder)
    assert not any(isinstance(mod, (PixelNorm, EqualConv2d)) for mod in b.decoder.modules())
    assert (p.kind, b.kind) == ("pioneer", "balanced_pioneer")


def test_encoder_ends_with_a_linear_conv_before_normalisation():
    # thesis errata: no LReLU between the last 4x4 conv and the L2 normalisation
    last = tiny("pioneer").encoder.blocks[0]
    assert isinstance(last[-1], nn.Conv2d)
    assert last[-1].kernel_size == (4, 4) and last[-1].padding == (0, 0)


def test_backbone_protocol_encode_decode():
    m = tiny("balanced").eval()
    assert isinstance(m, Backbone)
    assert m.resolution == 16 and m.latent_shape == (24,) and m.latent_geometry == "sphere" and m.has_encoder
    frames = (torch.rand(2, 16, 16, 3) * 255).to(torch.uint8).numpy()
    x = to_model_images(frames)
    assert x.shape == (2, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert (to_uint8(x) == frames).all()
    z = m.encode(x)
    assert z.shape == (2, 24)
    assert m.decode(z).shape == (2, 3, 16, 16)
    assert m.decode(z, resolution=8).shape == (2, 3, 8, 8)
    u = [p.u.clone() for p in spectral_norm_modules(m)]
    m.train()
    m.decode(m.encode(x))  # encode/decode never advance the power iteration, even in train mode
    assert all(torch.equal(a, p.u) for a, p in zip(u, spectral_norm_modules(m)))


def test_resolution_errors_are_clear():
    m = tiny("pioneer")
    with pytest.raises(ValueError, match=r"no 32x32 resolution; it has 4, 8, 16"):
        m.decode(m.sample_prior(1), resolution=32)
    with pytest.raises(ValueError, match="encodes 16x16"):
        m.encode(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="no 12x12"):
        m.encode(torch.zeros(1, 3, 12, 12))
    with pytest.raises(ValueError, match=r"latents \(B, 24\)"):
        m.decode(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="no 32x32"):
        m.set_resolution(32)
    m.set_resolution(8)
    assert m.resolution == 8 and m.encode(torch.zeros(2, 3, 8, 8)).shape == (2, 24)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown Pioneer variant"):
        PioneerConfig(variant="stylegan")
    with pytest.raises(ValueError, match="no 48x48"):
        PioneerConfig(resolution=48)
    with pytest.raises(ValueError, match="unknown PioneerConfig fields"):
        PioneerConfig.from_dict({"resolution": 16, "depth": 3})
