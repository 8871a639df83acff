"""StyleGAN2 generator: rosinality checkpoint loading checked against an independent forward pass."""

import math

import pytest
import torch
import torch.nn.functional as F

import generative
from generative.backbones.checkpoint import CheckpointError
from generative.backbones.stylegan2 import StyleGAN2Generator, n_styles_for


# ------------------------------------------------------------------ a rosinality g_ema, written by hand
def rosinality_channels(r, cm, cap=512):
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
    return min(cap, table[r])


def blur_kernel(scale):
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum() * scale


def random_g_ema(size, style_dim, n_mlp=8, cm=2, cap=512, seed=0):
    """Key names and shapes of rosinality's Generator(size, style_dim, n_mlp, channel_multiplier=cm)."""
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, s=1.0, m=0.0):
        return torch.randn(*shape, generator=g) * s + m

    sd = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = rn(style_dim, style_dim, s=100.0)  # stored / lr_mul (0.01)
        sd[f"style.{i}.bias"] = rn(style_dim, s=5.0)

    def styled(prefix, cin, cout, up):
        sd[f"{prefix}.conv.weight"] = rn(1, cout, cin, 3, 3)
        sd[f"{prefix}.conv.modulation.weight"] = rn(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = rn(cin, s=0.3, m=1.0)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = blur_kernel(4.0)
        sd[f"{prefix}.noise.weight"] = rn(1, s=0.3)
        sd[f"{prefix}.activate.bias"] = rn(cout, s=0.2)

    def to_rgb(prefix, cin, up):
        if up:
            sd[f"{prefix}.upsample.kernel"] = blur_kernel(4.0)
        sd[f"{prefix}.conv.weight"] = rn(1, 3, cin, 1, 1)
        sd[f"{prefix}.conv.modulation.weight"] = rn(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = rn(cin, s=0.3, m=1.0)
        sd[f"{prefix}.bias"] = rn(1, 3, 1, 1, s=0.1)

    c4 = rosinality_channels(4, cm, cap)
    sd["input.input"] = rn(1, c4, 4, 4)
    styled("conv1", c4, c4, False)
    to_rgb("to_rgb1", c4, False)
    log_size = int(math.log2(size))
    cin = c4
    for k, lr in enumerate(range(3, log_size + 1)):
        cout = rosinality_channels(2**lr, cm, cap)
        styled(f"convs.{2 * k}", cin, cout, True)
        styled(f"convs.{2 * k + 1}", cout, cout, False)
        to_rgb(f"to_rgbs.{k}", cout, True)
        cin = cout
    for i in range((log_size - 2) * 2 + 1):
        s = 2 ** ((i + 5) // 2)
        sd[f"noises.noise_{i}"] = rn(1, 1, s, s)
    return sd


# ------------------------------------------------------------------ independent reference forward pass
def fir(x, pad0, pad1):
    """Separable [1,3,3,1]/8 * 2 filter per axis (= the 4x4 kernel x 4) after padding, by shifted sums."""
    taps = [0.25, 0.75, 0.75, 0.25]
    x = F.pad(x, (pad0, pad1, pad0, pad1))
    n = x.shape[-1] - 3
    x = sum(t * x[..., j : j + n] for j, t in enumerate(taps))
    return sum(t * x[..., j : j + n, :] for j, t in enumerate(taps))


def zero_insert(x, trailing):
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, 2 * h - (0 if trailing else 1), 2 * w - (0 if trailing else 1))
    out[..., ::2, ::2] = x
    return out


def reference_decode(sd, wplus, lr_mlp=0.01):
    """Per-sample loop with each sample's own modulated/demodulated weights; transposed convs as
    zero insertion + conv with the flipped kernel."""
    images = []
    log_size = len([k for k in sd if k.startswith("to_rgbs.") and k.endswith("conv.weight")]) + 2
    n_layers = (log_size - 2) * 2 + 1
    for b in range(wplus.shape[0]):
        ws = wplus[b]

        def style(prefix, i):
            mw = sd[f"{prefix}.conv.modulation.weight"]
            return mw @ ws[i] / math.sqrt(mw.shape[1]) + sd[f"{prefix}.conv.modulation.bias"]

        def styled(x, prefix, i, up, layer):
            w = sd[f"{prefix}.conv.weight"][0]
            w = w / math.sqrt(w[0].numel()) * style(prefix, i)[None, :, None, None]
            w = w / torch.sqrt((w**2).sum((1, 2, 3), keepdim=True) + 1e-8)
            if up:
                out = F.conv2d(F.pad(zero_insert(x, False), (2, 2, 2, 2)), torch.flip(w, (2, 3)))
                out = fir(out, 1, 1)
            else:
                out = F.conv2d(x, w, padding=1)
            out = out + sd[f"{prefix}.noise.weight"] * sd[f"noises.noise_{layer}"]
            out = out + sd[f"{prefix}.activate.bias"][None, :, None, None]
            return torch.where(out >= 0, out, 0.2 * out) * math.sqrt(2)

        def rgb(x, prefix, i):
            w = sd[f"{prefix}.conv.weight"][0, :, :, 0, 0]
            w = w / math.sqrt(w.shape[1]) * style(prefix, i)[None, :]
            return torch.einsum("oc,bchw->bohw", w, x) + sd[f"{prefix}.bias"]

        x = sd["input.input"]
        x = styled(x, "conv1", 0, False, 0)
        img = rgb(x, "to_rgb1", 1)
        for k in range(log_size - 2):
            x = styled(x, f"convs.{2 * k}", 2 * k + 1, True, 2 * k + 1)
            x = styled(x, f"convs.{2 * k + 1}", 2 * k + 2, False, 2 * k + 2)
            img = rgb(x, f"to_rgbs.{k}", 2 * k + 3) + fir(zero_insert(img, True), 2, 1)
        assert 2 * (log_size - 2) + 1 == n_layers
        images.append(img)
    return torch.cat(images)


def reference_mapping(sd, z, n_mlp, lr_mlp=0.01):
    x = z / torch.sqrt((z**2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        w = sd[f"style.{i}.weight"]
        x = x @ (w * lr_mlp / math.sqrt(w.shape[1])).T + sd[f"style.{i}.bias"] * lr_mlp
        x = torch.where(x >= 0, x, 0.2 * x) * math.sqrt(2)
    return x


SMALL = dict(size=32, style_dim=24, n_mlp=3, cap=16)


def write_rosinality(tmp_path, sd, latent_avg=None, name="g.pt", **extra):
    path = tmp_path / name
    obj = {"g_ema": sd, **extra}
    if latent_avg is not None:
        obj["latent_avg"] = latent_avg
    torch.save(obj, path)
    return path


# ------------------------------------------------------------------ tests
def test_loaded_checkpoint_matches_independent_forward(tmp_path):
    sd = random_g_ema(**SMALL)
    avg = torch.randn(24)
    g = StyleGAN2Generator.from_rosinality(write_rosinality(tmp_path, sd, avg))
    assert (g.resolution, g.style_dim, g.config.n_mlp, g.n_styles, g.latent_shape) == (32, 24, 3, 8, (8, 24))
    assert torch.equal(g.latent_avg, avg)
    torch.manual_seed(1)
    z = torch.randn(3, 24)
    with torch.no_grad():
        w = g.mapping(z)
    torch.testing.assert_close(w, reference_mapping(sd, z, 3), rtol=1e-5, atol=1e-4)
    wplus = w[:, None] + 0.5 * torch.randn(3, 8, 24)  # distinct rows: every style index is checked
    with torch.no_grad():
        ours = g.decode(wplus)
    ref = reference_decode(sd, wplus)
    assert ours.shape == (3, 3, 32, 32)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    # each style row matters: changing style 5 alone changes the image
    w2 = wplus.clone()
    w2[:, 5] += 1.0
    assert not torch.allclose(g.decode(w2), ours)


def test_full_width_32px_generator_matches_reference(tmp_path):
    """The real layout (512-d styles, 8 mapping layers, 512 channels) with a training-checkpoint dict
    (pickled argparse options, no latent_avg)."""
    import argparse

    sd = random_g_ema(32, 512, seed=3)
    path = write_rosinality(tmp_path, sd, g={}, args=argparse.Namespace(size=32, latent=512))
    g = StyleGAN2Generator.from_rosinality(path, resolution=32, n_mean_latent=64)
    assert g.config.to_dict() == dict(resolution=32, style_dim=512, n_mlp=8, channel_multiplier=2, lr_mlp=0.01, max_channels=512)
    # latent_avg estimated from 64 seeded draws
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(g.latent_avg, reference_mapping(sd, torch.randn(64, 512, generator=gen), 8).mean(0), rtol=1e-4, atol=1e-4)
    wplus = torch.randn(1, 8, 512, generator=gen)
    with torch.no_grad():
        ref = reference_decode(sd, wplus)
        torch.testing.assert_close(g.decode(wplus), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_channel_multiplier_inferred_at_64px(tmp_path):
    sd = random_g_ema(64, 16, n_mlp=2, cm=1, cap=512)  # 512 up to 32 px, 256 at 64 px
    sd = {k: v for k, v in sd.items() if not k.endswith("kernel")}  # exporters may omit the FIR constants
    g = StyleGAN2Generator.from_rosinality(write_rosinality(tmp_path, sd, torch.zeros(16)))
    assert (g.resolution, g.config.channel_multiplier, g.config.channels(64)) == (64, 1, 256)
    with pytest.raises(ValueError, match="channel_multiplier 1"):
        StyleGAN2Generator.from_rosinality(tmp_path / "g.pt", channel_multiplier=2)


def test_channel_multiplier_3_widens_64px_beyond_512_as_rosinality_does(tmp_path):
    """rosinality's table caps nothing above 32 px: multiplier 3 gives 768 channels at 64 px."""
    sd = random_g_ema(64, 16, n_mlp=2, cm=3, cap=10**9, seed=5)
    assert sd["convs.6.conv.weight"].shape[1] == 768  # the first 64 px conv
    g = StyleGAN2Generator.from_rosinality(write_rosinality(tmp_path, sd, torch.zeros(16)))
    assert (g.config.channel_multiplier, g.config.channels(32), g.config.channels(64)) == (3, 512, 768)
    wplus = torch.randn(1, n_styles_for(64), 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = reference_decode(sd, wplus)
        torch.testing.assert_close(g.decode(wplus), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


@pytest.mark.parametrize("res", [32, 64, 128, 256, 512, 1024])
def test_style_and_noise_counts_per_resolution(res):
    with torch.device("meta"):  # layout only, nothing allocated
        g = StyleGAN2Generator(res)
    log = int(math.log2(res))
    assert g.n_styles == n_styles_for(res) == 2 * log - 2
    assert g.latent_shape == (2 * log - 2, 512)
    assert g.num_layers == len(g.const_noise()) == 2 * log - 3
    assert [n.shape[-1] for n in g.const_noise()] == [4] + [2**r for r in range(3, log + 1) for _ in range(2)]
    widths = [g.config.channels(2**r) for r in range(2, log + 1)]
    assert widths == [rosinality_channels(2**r, 2) for r in range(2, log + 1)]
    sd = g.rosinality_state_dict()
    assert len([k for k in sd if k.startswith("convs.") and k.endswith("conv.weight")]) == 2 * (log - 2)
    assert sd["input.input"].shape == (1, 512, 4, 4) and sd["style.8.weight"].shape == (512, 512)
    if res == 1024:
        assert g.n_styles == 18 and sd["to_rgbs.7.conv.weight"].shape == (1, 3, 32, 1, 1)
        assert sd["noises.noise_16"].shape == (1, 1, 1024, 1024)
    if res == 32:
        assert g.n_styles == 8


def test_w_and_wplus_decode_agree_and_truncation(tmp_path):
    torch.manual_seed(0)  # w must not depend on which tests ran before
    g = StyleGAN2Generator.from_rosinality(write_rosinality(tmp_path, random_g_ema(**SMALL), torch.randn(24)))
    w = torch.randn(2, 24)
    with torch.no_grad():
        a = g.decode(w)
        b = g.decode(w[:, None, :].repeat(1, g.n_styles, 1))
        assert torch.equal(a, b)
        # truncation 0 decodes latent_avg whatever w is; 0.5 is halfway in W
        avg = g.decode(g.latent_avg[None].expand(2, -1))
        torch.testing.assert_close(g.decode(w, truncation=0.0), avg)
        torch.testing.assert_close(g.decode(w, truncation=0.5), g.decode(0.5 * (w + g.latent_avg)), rtol=1e-5, atol=1e-5)  # float32 rounding of two ways to halve
    with pytest.raises(ValueError, match=r"W \(B, 24\) or W\+ \(B, 8, 24\)"):
        g.decode(torch.randn(2, 7, 24))
    with pytest.raises(TypeError, match="inversion"):
        g.encode(torch.zeros(1, 3, 32, 32))


def test_noise_modes_and_gradients(tmp_path):
    g = StyleGAN2Generator.from_rosinality(write_rosinality(tmp_path, random_g_ema(**SMALL), torch.zeros(24)))
    w = torch.randn(2, 24)
    with torch.no_grad():
        const = g.decode(w)
        assert torch.equal(const, g.decode(w, noise=g.const_noise()))
        assert not torch.allclose(const, g.decode(w, noise_mode="none"))
        r1 = g.decode(w, noise_mode="random", generator=torch.Generator().manual_seed(5))
        r2 = g.decode(w, noise_mode="random", generator=torch.Generator().manual_seed(5))
        assert torch.equal(r1, r2) and not torch.allclose(r1, const)
    noises = [n.requires_grad_(True) for n in g.make_noise(2, generator=torch.Generator().manual_seed(0))]
    assert [tuple(n.shape) for n in noises] == [(2, 1, s, s) for s in (4, 8, 8, 16, 16, 32, 32)]
    wp = w[:, None].repeat(1, 8, 1).requires_grad_(True)
    g.decode(wp, noise=noises).square().mean().backward()
    assert wp.grad.abs().sum(-1).gt(0).all()  # every style of every sample gets a gradient
    assert all(n.grad is not None and n.grad.abs().sum() > 0 for n in noises)
    with pytest.raises(ValueError, match="7 noise maps"):
        g.decode(w, noise=noises[:3])
    mean, std = g.mean_latent(500, seed=2)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        ws = g.mapping(torch.randn(500, 24, generator=gen))
    torch.testing.assert_close(mean, ws.mean(0))
    assert std == pytest.approx(float(((ws - ws.mean(0)) ** 2).sum() / 500) ** 0.5, rel=1e-5)


def test_own_export_and_rosinality_save_round_trip_bit_exact(tmp_path):
    g = StyleGAN2Generator.from_rosinality(write_rosinality(tmp_path, random_g_ema(**SMALL), torch.randn(24)))
    w = torch.randn(2, 8, 24)
    with torch.no_grad():
        before = g.decode(w)
    g.export(tmp_path / "ours.safetensors")
    h = generative.load(tmp_path / "ours.safetensors")
    assert isinstance(h, StyleGAN2Generator) and isinstance(h, generative.Backbone) and not h.training
    assert h.config == g.config and h.kind == "stylegan2" and h.latent_geometry == "euclidean" and not h.has_encoder
    with torch.no_grad():
        assert torch.equal(h.decode(w), before)
    g.save_rosinality(tmp_path / "again.pt")
    k = StyleGAN2Generator.from_rosinality(tmp_path / "again.pt")
    assert all(torch.equal(a, b) for a, b in zip(k.state_dict().values(), g.state_dict().values()))
    with pytest.raises(ValueError, match="32x32 images only"):
        generative.load(tmp_path / "ours.safetensors", resolution=16)


def test_missing_file_and_wrong_keys_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        StyleGAN2Generator.from_rosinality(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        generative.load(tmp_path / "nope.safetensors")
    sd = random_g_ema(**SMALL)
    del sd["convs.3.noise.weight"]
    sd["convs.3.noise.strength"] = torch.zeros(1)
    sd["to_rgbs.1.conv.modulation.weight"] = torch.zeros(5, 24)
    with pytest.raises(CheckpointError) as e:
        StyleGAN2Generator.from_rosinality(write_rosinality(tmp_path, sd))
    msg = str(e.value)
    assert "missing keys: convs.3.noise.weight" in msg and "unexpected keys: convs.3.noise.strength" in msg
    assert "to_rgbs.1.conv.modulation.weight (5, 24) (expected (16, 24))" in msg and "g.pt" in msg
    torch.save({"g": {}, "d": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no 'g_ema'"):
        StyleGAN2Generator.from_rosinality(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        StyleGAN2Generator.from_rosinality(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="holds a 32 px generator"):
        StyleGAN2Generator.from_rosinality(write_rosinality(tmp_path, random_g_ema(**SMALL), name="ok.pt"), resolution=64)
