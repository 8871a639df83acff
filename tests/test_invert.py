"""Optimization-based inversion (generative/latents/invert.py) on small decoders we build here."""

import numpy as np
import pytest
import torch

from generative.latents.invert import (
    InversionConfig,
    invert,
    invert_frames,
    latent_noise_strength,
    learning_rate,
    load_frame_latent,
    noise_regularization,
    normalize_noises,
)
from tests.decoders import LinearDecoder


def test_schedule_matches_the_projector():
    assert learning_rate(0.0, 0.1) == 0.0
    assert learning_rate(0.5, 0.1) == pytest.approx(0.1)
    assert learning_rate(0.025, 0.1) == pytest.approx(0.05)  # half-way up the 5% ramp
    # cosine ramp-down over the last 25%: at t = 0.875 the ramp is 0.5 -> 0.5 - 0.5 cos(pi/2) = 0.5
    assert learning_rate(0.875, 0.1) == pytest.approx(0.05)
    assert latent_noise_strength(0.0, 2.0) == pytest.approx(0.1)
    assert latent_noise_strength(0.375, 2.0) == pytest.approx(0.1 * 0.25)
    assert latent_noise_strength(0.8, 2.0) == 0.0


def test_noise_regularization_separates_white_from_structured_noise():
    g = torch.Generator().manual_seed(0)
    white = [torch.randn(2, 1, 32, 32, generator=g), torch.randn(2, 1, 16, 16, generator=g)]
    smooth = [torch.nn.functional.avg_pool2d(torch.randn(2, 1, 34, 34, generator=g), 3, 1)[..., :32, :32]]
    normalize_noises(smooth)
    w, s = noise_regularization(white), noise_regularization(smooth)
    assert w.shape == (2,) and float(w.max()) < 0.02 and float(s.min()) > 0.2
    # the formula: squared mean of the product with the map rolled by one pixel, both axes, over the pyramid
    n = white[1]
    ref = 0.0
    while True:
        ref = ref + (n * n.roll(1, 3)).mean((1, 2, 3)) ** 2 + (n * n.roll(1, 2)).mean((1, 2, 3)) ** 2
        if n.shape[2] <= 8:
            break
        n = torch.nn.functional.avg_pool2d(n, 2)
    assert torch.allclose(noise_regularization([white[1]]), ref)
    normalize_noises(white)
    assert torch.allclose(white[0].mean((1, 2, 3)), torch.zeros(2), atol=1e-6)
    assert torch.allclose(white[0].std((1, 2, 3)), torch.ones(2), atol=1e-5)


def test_inversion_recovers_a_known_latent():
    dec = LinearDecoder()
    g = torch.Generator().manual_seed(1)
    z_true = torch.randn(3, 16, generator=g) * 0.8
    with torch.no_grad():
        target = dec.decode(z_true)
    cfg = InversionConfig(steps=200, lr=0.1)
    start = ((dec.decode(torch.zeros(3, 16)) - target) ** 2).mean()
    r = invert(dec, target, cfg)
    assert r.latents.shape == (3, 16) and r.images.shape == target.shape
    assert float(r.losses.mean()) < 0.1 * float(start)  # image MSE falls by > 90%
    assert r.history[-1] < r.history[0]


def test_encoder_initialised_refinement_stays_on_the_sphere():
    from generative.backbones.pioneer import PioneerAutoencoder, PioneerConfig

    torch.manual_seed(0)
    model = PioneerAutoencoder(PioneerConfig(variant="balanced", resolution=16, channel_base=64, max_channels=16)).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        z0 = model.encode(x)
        start = ((model.decode(z0) - x) ** 2).mean((1, 2, 3))
    r = invert(model, x, InversionConfig(steps=20, lr=0.02, init="encoder", latent_noise=0.0))
    assert torch.allclose(r.latents.norm(dim=1), torch.ones(2), atol=1e-5)
    assert bool((r.losses < start).all())
    with pytest.raises(ValueError, match="no encoder"):
        invert(LinearDecoder(), torch.zeros(1, 3, 16, 16), InversionConfig(steps=1, init="encoder"))


def test_bad_inputs_are_clear():
    with pytest.raises(ValueError, match="space"):
        InversionConfig(space="z")
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
        invert(LinearDecoder(), torch.zeros(1, 3, 32, 32), InversionConfig(steps=1))


def test_invert_frames_writes_per_frame_files_and_resumes(tmp_path, monkeypatch):
    import generative.latents.invert as inv

    dec = LinearDecoder()
    frames = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    cfg = InversionConfig(steps=5, batch_size=2)
    z = invert_frames(dec, frames, tmp_path, cfg, progress=False)
    assert z.shape == (5, 16) and len(list(tmp_path.glob("frame_*.pt"))) == 5
    # a killed run: frame 3 never written; the rerun inverts only that frame and gives the same latents
    (tmp_path / "frame_000003.pt").unlink()
    calls = []
    real = inv.invert
    monkeypatch.setattr(inv, "invert", lambda *a, **k: calls.append(a[1].shape[0]) or real(*a, **k))
    z2 = invert_frames(dec, frames, tmp_path, cfg, progress=False)
    assert calls == [1] and torch.allclose(z, z2, atol=1e-5)  # independent of the batch it ran in
    # keyframes only, and a corrupt file is named
    z3 = invert_frames(dec, frames, tmp_path, cfg, indices=[0, 4], progress=False)
    assert torch.equal(z3, z[[0, 4]])
    (tmp_path / "frame_000001.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="frame_000001.pt"):
        load_frame_latent(tmp_path / "frame_000001.pt")


def test_stylegan2_inversion_of_a_generated_image_cuts_the_error_by_90_percent():
    from generative.backbones.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    torch.manual_seed(0)
    gen = StyleGAN2Generator(StyleGAN2Config(resolution=32, style_dim=64, n_mlp=2, max_channels=32)).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        w_true = gen.sample_w(1, g)
        target = gen.decode(w_true)  # stored noise maps: the image is exactly reachable
    w_mean, _ = gen.mean_latent(2000)
    with torch.no_grad():
        start = float(((gen.decode(w_mean[None]) - target) ** 2).mean())
    for space in ("w", "wplus"):
        r = invert(gen, target, InversionConfig(space=space, steps=150, n_mean_latent=2000, optimize_noise=False))
        assert r.latents.shape == (1, gen.n_styles, 64)  # always returned as W+
        assert float(r.losses[0]) < 0.1 * start, space
    # with noise maps optimised too, the maps stay standardised and the regulariser is in the loss
    r = invert(gen, target, InversionConfig(steps=20, n_mean_latent=2000))
    assert len(r.noises) == gen.num_layers
    assert all(abs(float(n.mean())) < 1e-4 and abs(float(n.std()) - 1) < 1e-3 for n in r.noises)


def test_cli_invert_images_resumes_and_refuses_mixed_settings(tmp_path, capsys):
    import cv2

    from generative.backbones.stylegan2 import StyleGAN2Config, StyleGAN2Generator
    from sequences.cli import main

    torch.manual_seed(0)
    gen = StyleGAN2Generator(StyleGAN2Config(resolution=32, style_dim=32, n_mlp=2, max_channels=16)).eval()
    ckpt = tmp_path / "g.pt"
    gen.save_rosinality(ckpt)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        cv2.imwrite(str(imgs / f"{k}.png"), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    out = tmp_path / "lat.pt"
    args = ["invert", "--generator", str(ckpt), "--images", str(imgs), "--steps", "3", "--out", str(out), "--quiet"]
    assert main(args) == 0
    saved = torch.load(out, weights_only=True)
    assert saved["latents"].shape == (3, gen.n_styles, 32) and saved["names"] == ["0.png", "1.png", "2.png"]
    assert main(args) == 0  # everything cached: same result
    assert torch.equal(torch.load(out, weights_only=True)["latents"], saved["latents"])
    capsys.readouterr()
    assert main(args[:-5] + ["--steps", "4", "--out", str(out), "--quiet"]) == 1
    assert "other settings" in capsys.readouterr().err
    assert main(["invert", "--generator", str(tmp_path / "none.pt"), "--images", str(imgs), "--out", str(out)]) == 1
    assert "none.pt" in capsys.readouterr().err
