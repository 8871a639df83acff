import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from generative.backbones.layers import (
    AdaIN,
    Blur,
    EqualConv2d,
    EqualLinear,
    NoiseInjection,
    PixelNorm,
    adain,
    downsample,
    frozen_spectral_norm,
    minibatch_stddev,
    set_spectral_norm_frozen,
    spectral_norm,
    spectral_norm_modules,
    upsample,
)


def test_equal_conv_applies_he_scale_at_run_time():
    torch.manual_seed(0)
    conv = EqualConv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 5, 5)
    expected = F.conv2d(x, conv.weight * math.sqrt(2.0 / (4 * 9)), conv.bias, padding=1)
    assert torch.allclose(conv(x), expected, atol=1e-6)
    assert conv.weight.std().item() == pytest.approx(1.0, abs=0.15)  # stored N(0, 1)


def test_equal_linear_lr_mul():
    torch.manual_seed(0)
    lin = EqualLinear(8, 3, bias_init=1.0, lr_mul=0.01)
    x = torch.randn(5, 8)
    # effective weight = stored * (sqrt(2) * lr_mul / sqrt(8)); stored was drawn N(0,1) / lr_mul
    expected = F.linear(x, lin.weight * math.sqrt(2.0) * 0.01 / math.sqrt(8), lin.bias * 0.01)
    assert torch.allclose(lin(x), expected, atol=1e-6)
    assert torch.allclose(lin.bias * 0.01, torch.ones(3))  # effective initial bias


def test_pixel_norm_gives_unit_rms_per_pixel():
    x = torch.randn(3, 7, 4, 4) * 5
    y = PixelNorm()(x)
    assert torch.allclose(y.pow(2).mean(dim=1), torch.ones(3, 4, 4), atol=1e-5)


def _largest_singular_value(module: nn.Module) -> float:
    return torch.linalg.matrix_norm(module.weight.detach().flatten(1), ord=2).item()


def test_spectral_norm_bounds_largest_singular_value_and_stores_u():
    torch.manual_seed(0)
    conv = spectral_norm(nn.Conv2d(8, 16, 3, padding=1))
    with torch.no_grad():
        conv.parametrizations.weight.original.mul_(7.0)  # far from unit norm
    for _ in range(60):  # power iterations run on every training forward
        conv(torch.randn(1, 8, 4, 4))
    s = _largest_singular_value(conv)
    assert s <= 1 + 1e-3
    assert s >= 1 - 1e-3
    keys = conv.state_dict().keys()
    assert "parametrizations.weight.0.u" in keys  # u is saved with the weights


def test_spectral_norm_frozen_and_eval_do_not_update_u():
    torch.manual_seed(0)
    lin = spectral_norm(nn.Linear(6, 5))
    u0 = lin.parametrizations.weight[0].u.clone()
    lin.eval()
    for _ in range(5):
        lin(torch.randn(2, 6))
    assert torch.equal(lin.parametrizations.weight[0].u, u0)
    lin.train()
    set_spectral_norm_frozen(lin, True)
    lin(torch.randn(2, 6))
    assert torch.equal(lin.parametrizations.weight[0].u, u0)
    set_spectral_norm_frozen(lin, False)
    with frozen_spectral_norm(lin):
        lin(torch.randn(2, 6))
    assert torch.equal(lin.parametrizations.weight[0].u, u0)
    assert spectral_norm_modules(lin)[0].frozen is False  # the context restored the flag
    lin(torch.randn(2, 6))
    assert not torch.equal(lin.parametrizations.weight[0].u, u0)


def test_spectral_norm_gradient_flows_to_raw_weight():
    lin = spectral_norm(nn.Linear(4, 3))
    lin(torch.randn(2, 4)).sum().backward()
    assert lin.parametrizations.weight.original.grad is not None


def test_blur_keeps_constants_and_shape():
    blur = Blur(3)
    x = torch.ones(1, 3, 6, 6)
    y = blur(x)
    assert y.shape == x.shape
    assert torch.allclose(y[..., 1:-1, 1:-1], torch.ones(1, 3, 4, 4))
    impulse = torch.zeros(1, 3, 5, 5)
    impulse[..., 2, 2] = 1
    k = blur(impulse)[0, 0, 1:4, 1:4]
    assert torch.allclose(k, torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)


def test_noise_injection_starts_as_identity_and_scales_per_channel():
    layer = NoiseInjection(2)
    x = torch.randn(3, 2, 4, 4)
    assert torch.equal(layer(x), x)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.0, 2.0]).view(1, 2, 1, 1))
    noise = torch.randn(3, 1, 4, 4)
    y = layer(x, noise=noise)
    assert torch.equal(y[:, 0], x[:, 0])
    assert torch.allclose(y[:, 1], x[:, 1] + 2 * noise[:, 0])


def test_adain_sets_target_mean_and_std():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8) * 4 + 2
    scale = torch.tensor([[0.5, 2.0, 1.0], [3.0, 1.0, 0.1]])
    shift = torch.tensor([[1.0, -1.0, 0.0], [0.5, 2.0, -3.0]])
    y = adain(x, scale, shift)
    assert torch.allclose(y.mean(dim=(2, 3)), shift, atol=1e-5)
    assert torch.allclose(y.std(dim=(2, 3), unbiased=False), scale, atol=1e-4)
    layer = AdaIN(3, 5)
    z = torch.randn(2, 5)
    s, m = layer.style(z)
    out = layer(x, z)
    assert torch.allclose(out.mean(dim=(2, 3)), m, atol=1e-5)
    assert torch.allclose(out.std(dim=(2, 3), unbiased=False), s.abs(), atol=1e-4)
    fresh = AdaIN(3, 5)
    with torch.no_grad():
        fresh.affine.weight.zero_()
    s0, m0 = fresh.style(z)
    assert torch.allclose(s0, torch.ones(2, 3)) and torch.allclose(m0, torch.zeros(2, 3))


def test_minibatch_stddev_appends_group_std():
    x = torch.zeros(4, 2, 3, 3)
    x[0] += 1.0  # group members are samples i and i + 2 (group size 2 -> groups {0, 2}, {1, 3})
    y = minibatch_stddev(x, group_size=2)
    assert y.shape == (4, 3, 3, 3)
    assert torch.allclose(y[0, 2], torch.full((3, 3), 0.5), atol=1e-4)  # std of {1, 0} is 0.5
    assert torch.allclose(y[2, 2], torch.full((3, 3), 0.5), atol=1e-4)
    assert torch.allclose(y[1, 2], torch.zeros(3, 3), atol=1e-3)
    with pytest.raises(ValueError, match="divisible"):
        minibatch_stddev(torch.zeros(6, 1, 2, 2), group_size=4)


def test_up_and_down_sampling():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert upsample(x).shape == (1, 1, 8, 8)
    assert torch.equal(downsample(upsample(x)), x)
    assert downsample(x)[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4
