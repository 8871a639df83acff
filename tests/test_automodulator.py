"""Automodulator: AdaIN statistics, per-block mixing, layer-mixing loss, robust loss, training and checkpoints."""

import math

import pytest
import torch

import generative
from generative.backbones.automodulator import AutomodulatorAutoencoder, AutomodulatorConfig
from generative.backbones.checkpoint import read_checkpoint
from generative.images.datasets import SyntheticImageDataset, stack_images
from generative.backbones.layers import AdaIN
from generative.training.automodulator_loop import (
    AutomodulatorTrainer,
    automodulator_kl_term,
    layer_mixing_loss,
    mixed_latents,
)
from generative.training.distributed import DistContext
from generative.training.loop import TrainConfig, train
from generative.training.robust_loss import AdaptiveRobustLoss, adaptive_nll, log_partition, rho

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
TINY = dict(resolution=16, latent_dim=16, channel_base=64, max_channels=8)


def tiny(seed: int = 0, **kw) -> AutomodulatorAutoencoder:
    torch.manual_seed(seed)
    return AutomodulatorAutoencoder(AutomodulatorConfig(**{**TINY, **kw})).eval()


# ------------------------------------------------------------------------------ AdaIN and mixing
def test_adain_output_has_target_channel_mean_and_std():
    torch.manual_seed(0)
    layer = AdaIN(6, 10)
    x = torch.randn(3, 6, 8, 8) * 5 + 2
    z = torch.randn(3, 10)
    y = layer(x, z)
    scale, shift = layer.style(z)
    torch.testing.assert_close(y.mean(dim=(2, 3)), shift, atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(2, 3), unbiased=False), scale.abs(), atol=1e-4, rtol=1e-4)


def test_decode_mixed_with_one_latent_everywhere_equals_decode():
    m = tiny()
    z = m.sample_prior(3, generator=torch.Generator().manual_seed(1))
    assert m.num_blocks() == 3 and m.block_scales() == ["coarse", "coarse", "intermediate"]
    torch.testing.assert_close(m.decode_mixed([z] * 3), m.decode(z), atol=0, rtol=0)
    torch.testing.assert_close(m.mix_at(z, z, 1), m.decode(z), atol=0, rtol=0)


def test_changing_only_the_fine_latent_keeps_coarse_features():
    m = tiny(resolution=32)
    g = torch.Generator().manual_seed(2)
    z, z2 = m.sample_prior(2, generator=g), m.sample_prior(2, generator=g)
    dec = m.decoder_ema
    # blocks 0-1 (4, 8 px) are coarse: their features depend only on the coarse latent
    f1 = dec.features([z, z, z, z], 2)
    f2 = dec.features([z, z, z2, z2], 2)
    torch.testing.assert_close(f1, f2, atol=0, rtol=0)
    # ... while the image does change
    a, b = m.mix(z, z, None), m.mix(z, z2, None)
    assert (a - b).abs().max() > 1e-4
    # 'fine' has no blocks at 32 px: giving it has no effect
    torch.testing.assert_close(m.scale_latents({"coarse": z, "intermediate": z2, "fine": z})[0], z)


def test_conditional_sampling_keeps_the_fixed_scale():
    m = tiny()
    x = stack_images(SyntheticImageDataset(2, 16, seed=0), range(2))
    out = m.sample_conditional(x, keep=("coarse",), n=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 3, 16, 16)
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-5  # the intermediate block is drawn anew
    full = m.sample_conditional(x, keep=("coarse", "intermediate"), n=2)
    torch.testing.assert_close(full[:, 0], m.reconstruct(x), atol=1e-5, rtol=0)  # batch-size rounding only


def test_bad_mixing_specs_raise_clear_errors():
    m = tiny()
    z = m.sample_prior(2)
    with pytest.raises(ValueError, match="unknown mixing scale 'medium'"):
        m.scale_latents({"medium": z})
    with pytest.raises(ValueError, match="one latent per decoder block: 3"):
        m.decode_mixed([z, z])
    with pytest.raises(ValueError, match="cut_block must be an integer in 0 ... 3"):
        m.mix_at(z, z, 4)
    with pytest.raises(ValueError, match="different batch sizes"):
        m.scale_latents({"coarse": z, "intermediate": z[:1]})
    with pytest.raises(ValueError, match="encodes 16x16"):
        m.mix_images(coarse=torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="unknown mixing scale"):
        m.mix_images(texture=torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="neither a scale name"):
        m.sample_conditional(torch.zeros(1, 3, 16, 16), keep=(7,))
    with pytest.raises(ValueError, match="give z_fine"):
        tiny(resolution=128, channel_base=256, max_channels=4).mix(z, z)


# ------------------------------------------------------------------------------ losses
def test_layer_mixing_loss_zero_for_identity_pair_positive_otherwise():
    m = tiny()
    dec = m.decoder
    g = torch.Generator().manual_seed(3)
    z_a, z_b = m.sample_prior(4, generator=g), m.sample_prior(4, generator=g)
    cut = 2
    image = dec(mixed_latents(z_a, z_b, 4, cut, 3), 2, noise=False)

    def features(z, k):
        return dec.features(z, k, noise=False)

    # identity pair: an encoder that recovers exactly the latent of the blocks before the cut
    def ideal_encoder(img):
        assert torch.equal(img, image)
        return z_a.clone()

    assert layer_mixing_loss(features, z_a, ideal_encoder(image), cut).item() == 0.0
    z_hat = m.encoder(image, 2)  # an untrained encoder
    loss = layer_mixing_loss(features, z_a, z_hat, cut)
    assert loss.item() > 1e-6
    torch.testing.assert_close(loss, ((features(z_hat, cut) - features(z_a, cut)) ** 2).mean())


def test_two_sided_kl_clamp():
    kr, kf = torch.tensor(3.0), torch.tensor(1.0)
    assert automodulator_kl_term(kr, kf, 0.1, 0.05).item() == pytest.approx(0.025)  # capped at M/2
    assert automodulator_kl_term(kf, kr, 0.1, 0.05).item() == pytest.approx(-0.05)  # floored at -M
    assert automodulator_kl_term(kr, kf, 0.1, 0.0).item() == pytest.approx(0.2)


def test_robust_loss_special_cases():
    x = torch.linspace(-5, 5, 41, dtype=torch.float64)
    c = 1.3
    s = (x / c) ** 2
    torch.testing.assert_close(rho(x, 2.0, c), s / 2)
    torch.testing.assert_close(rho(x, 1.0, c), torch.sqrt(s + 1) - 1)
    torch.testing.assert_close(rho(x, 0.0, c), torch.log(0.5 * s + 1))
    torch.testing.assert_close(rho(x, -2.0, c), 2 * s / (s + 4))
    torch.testing.assert_close(rho(x, float("-inf"), c), 1 - torch.exp(-s / 2))
    # continuity at the limits
    torch.testing.assert_close(rho(x, 2.0 - 1e-4, c), s / 2, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(rho(x, 1e-4, c), torch.log(0.5 * s + 1), atol=2e-3, rtol=1e-3)


def test_log_partition_matches_closed_forms_and_quadrature():
    from scipy.integrate import quad
    from scipy.special import k1

    lz = lambda a: float(log_partition(torch.tensor(a, dtype=torch.float64)))  # noqa: E731
    assert lz(2.0) == pytest.approx(0.5 * math.log(2 * math.pi), abs=1e-8)
    assert lz(0.0) == pytest.approx(math.log(math.pi * math.sqrt(2)), abs=1e-8)
    assert lz(1.0) == pytest.approx(math.log(2 * math.e * k1(1.0)), abs=1e-8)
    for a in (0.0123, 0.77, 1.5031, 1.999):
        v, _ = quad(lambda t: math.exp(-float(rho(torch.tensor(t, dtype=torch.float64), a))), 0, math.inf, limit=200)
        assert lz(a) == pytest.approx(math.log(2 * v), abs=1e-6)


def test_adaptive_robust_loss_is_a_normalised_density_and_learns_scale():
    # NLL at alpha=2, c: exactly the Gaussian NLL with std c
    x = torch.randn(50, dtype=torch.float64)
    c = torch.tensor(0.7, dtype=torch.float64)
    gauss = 0.5 * (x / c) ** 2 + torch.log(c) + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(adaptive_nll(x, torch.tensor(2.0, dtype=torch.float64), c), gauss)
    # fitting per-element scales to residuals of std 0.1 shrinks them below 1
    torch.manual_seed(0)
    loss = AdaptiveRobustLoss((3, 4, 4))
    opt = torch.optim.Adam(loss.parameters(), lr=0.05)
    for _ in range(100):
        r = 0.1 * torch.randn(16, 3, 4, 4)
        opt.zero_grad()
        loss(r).backward()
        opt.step()
    assert loss.scale().max() < 0.5
    big = AdaptiveRobustLoss((3, 8, 8))
    big.load_upsampled(loss)
    torch.testing.assert_close(big.scale()[:, ::2, ::2], loss.scale())


# ------------------------------------------------------------------------------ training and checkpoints
def test_training_steps_lower_the_loss_on_a_fixed_batch():
    # KL weight 0 isolates the reconstruction path, as the Pioneer test does
    torch.manual_seed(0)
    cfg = TrainConfig(variant="automodulator", synthetic=16, lr=1e-3, margin=0.0, decoder_updates=1, kl_weight=0.0,
                      automodulator=dict(image_loss="l1"), **TINY)
    model = AutomodulatorAutoencoder(cfg.model_config())
    trainer = AutomodulatorTrainer(model, cfg, CPU)
    x = stack_images(SyntheticImageDataset(16, 16, seed=0), range(16))
    ps = cfg.schedule().at(10**7)
    assert ps.resolution == 16
    trainer.set_phase(ps)

    def recon() -> float:
        with torch.no_grad():
            return (model.decoder(model.encoder(x, 2), 2, noise=False) - x).abs().mean().item()

    before = recon()
    for _ in range(25):
        losses = trainer.train_step(x, ps)
    assert torch.isfinite(losses).all() and losses[-1] > 0  # layer-mixing term active
    assert recon() < 0.85 * before


def test_decoder_reconstruction_term_trains_only_the_decoder():
    # every other weight 0: a decoder update is pure L1 reconstruction from the encoder's detached codes
    torch.manual_seed(0)
    cfg = TrainConfig(variant="automodulator", synthetic=16, lr=1e-3, margin=0.0, decoder_updates=1, kl_weight=0.0,
                      recon_weight=0.0, latent_weight=0.0, decoder_recon_weight=1.0,
                      automodulator=dict(image_loss="l1", layer_mixing=False), **TINY)
    model = AutomodulatorAutoencoder(cfg.model_config())
    trainer = AutomodulatorTrainer(model, cfg, CPU)
    x = stack_images(SyntheticImageDataset(16, 16, seed=0), range(16))
    ps = cfg.schedule().at(10**7)
    trainer.set_phase(ps)
    enc_before = [p.detach().clone() for p in model.encoder.parameters()]
    with torch.no_grad():
        z = model.encoder(x, 2)
        before = (model.decoder(z, 2, noise=False) - x).abs().mean().item()
    for _ in range(25):
        trainer.train_step(x, ps)
    with torch.no_grad():
        after = (model.decoder(z, 2, noise=False) - x).abs().mean().item()
    assert after < 0.9 * before
    assert all(torch.equal(a, p) for a, p in zip(enc_before, model.encoder.parameters()))


def _run(out, total, **kw):
    cfg = dict(variant="automodulator", resolution=8, out_dir=str(out), synthetic=12, latent_dim=16, channel_base=64,
               max_channels=8, images_per_phase=16, batch_size=4, total_images=total, progress=False,
               checkpoint_every=16, sample_every=0, log_every=1)
    cfg.update(kw)
    return TrainConfig(**cfg)


def test_checkpoint_round_trip_and_exact_resume(tmp_path):
    full = train(_run(tmp_path / "full", 32))
    train(_run(tmp_path / "part", 16))  # stops after the 16-image checkpoint
    resumed = train(_run(tmp_path / "part", 32), resume=True)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    # robust-loss parameters travel with the checkpoint
    ck = read_checkpoint(sorted((tmp_path / "full" / "checkpoints").glob("ckpt_*.pt"))[-1])
    assert "robust_loss" in ck["training"]["trainer"]
    # inference export and generative.load: bit-exact decoding
    loaded = generative.load(tmp_path / "full" / "model.safetensors")
    assert isinstance(loaded, AutomodulatorAutoencoder) and loaded.kind == "automodulator"
    z = full.sample_prior(2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.decode(z), full.decode(z))
    assert torch.equal(loaded.mix_at(z, z.flip(0), 1), full.mix_at(z, z.flip(0), 1))
    with pytest.raises(ValueError, match="unknown automodulator loss settings"):
        _run(tmp_path / "x", 8, automodulator=dict(layer_mixng=False))


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from generative.training.distributed import shutdown_distributed

    try:  # 8 px: the second step is in phase 1, where style mixing and the layer-mixing loss are active
        model = train(_run(out, 16, images_per_phase=8, checkpoint_every=10**9))
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        shutdown_distributed()


def test_ddp_two_processes_keep_weights_in_sync(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fork: the children inherit the imported modules (a spawned child re-imports torch, seconds on a busy CPU)
    mp.start_processes(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k  # decoder gradients all-reduced by hand: identical updates
    ck = read_checkpoint(sorted((tmp_path / "checkpoints").glob("ckpt_*.pt"))[-1])
    assert ck["training"]["world_size"] == 2 and ck["training"]["trainer"]["robust_ready"] == [True, True]


# ------------------------------------------------------------------------------ flip invariance (thesis 3.3)
def _orientation_decoder(zs):
    """A scale-separated toy decoder on latents ``[sign, image...]``: block 0's sign sets the orientation,
    the last block's image part the content (unflattened to (B, 3, 4, 4))."""
    content = zs[-1][:, 1:].reshape(-1, 3, 4, 4)
    return torch.where(zs[0][:, :1, None, None] > 0, content, content.flip(3))


def test_flip_invariance_loss_zero_for_an_equivariant_pair_positive_otherwise():
    from generative.training.automodulator_loop import flip_invariance_loss, mirrored_batch

    torch.manual_seed(0)
    x = mirrored_batch(torch.randn(6, 3, 4, 4))
    x_in, x_mirror = x[:3], x[3:]
    assert torch.equal(x_mirror, x_in.flip(3))
    l1 = lambda rec, tgt: (rec - tgt).abs().mean()  # noqa: E731
    ones = torch.ones(3, 1)
    # equivariant encoder: the orientation goes to the sign, the (unflipped) content to the rest, so the
    # codes of an image and its mirror are interchangeable on the content block
    z_in, z_mirror = torch.cat([ones, x_in.flatten(1)], 1), torch.cat([-ones, x_in.flatten(1)], 1)
    assert flip_invariance_loss(_orientation_decoder, l1, x_in, x_mirror, z_in, z_mirror, 1, 3).item() == 0.0
    # a naive encoder stores the mirrored content in the mirror's code: swapping the late blocks flips it
    z_naive = torch.cat([-ones, x_mirror.flatten(1)], 1)
    loss = flip_invariance_loss(_orientation_decoder, l1, x_in, x_mirror, z_in, z_naive, 1, 3)
    # G(z_in | z_naive) = mirrored content in x_in's orientation = x_mirror (wrong); G(z_naive | z_in) = x_mirror (right)
    expected = (x_mirror - x_in).abs().mean()
    torch.testing.assert_close(loss, expected)
    assert loss.item() > 0.1
    with pytest.raises(ValueError, match="cut block must be in 1 ... 3"):
        flip_invariance_loss(_orientation_decoder, l1, x_in, x_mirror, z_in, z_mirror, 0, 3)


def test_flip_invariance_off_leaves_training_unchanged_and_on_trains_adain():
    x = stack_images(SyntheticImageDataset(8, 16, seed=0), range(8))

    def run(flip, steps=3):
        torch.manual_seed(0)
        cfg = TrainConfig(variant="automodulator", synthetic=8, lr=1e-3, margin=0.0, decoder_updates=1,
                          automodulator=dict(image_loss="l1", flip_invariance_block=flip), **TINY)  # fmt: skip
        model = AutomodulatorAutoencoder(cfg.model_config())
        trainer = AutomodulatorTrainer(model, cfg, CPU)
        ps = cfg.schedule().at(10**7)
        trainer.set_phase(ps)
        losses = [trainer.train_step(x, ps) for _ in range(steps)]
        return model, trainer, torch.stack(losses)

    off, tr_off, loss_off = run(None)
    assert tr_off.opt_a is None and (loss_off[:, tr_off.loss_names.index("flip")] == 0).all()
    # configured from block 3 (a 32 px phase): inactive at 16 px, bit-identical to switched off
    late, _, loss_late = run(3)
    assert torch.equal(loss_late, loss_off)
    for (k, a), b in zip(off.state_dict().items(), late.state_dict().values()):
        assert torch.equal(a, b), k
    # active from block 1: the flip term is the encoder's image term, and AdaIN maps move in the encoder step
    on, tr_on, loss_on = run(1, steps=1)
    i_flip = tr_on.loss_names.index("flip")
    assert loss_on[0, i_flip] > 0 and loss_on[0, i_flip] == loss_on[0, tr_on.loss_names.index("image")]
    assert len(tr_on.opt_a.state) == len(tr_on.adain_params) > 0  # every AdaIN map got an encoder-step update
    assert "optimizer_adain" in tr_on.extra_state()
    with pytest.raises(ValueError, match="flip_invariance_block must be None"):
        run(0)
