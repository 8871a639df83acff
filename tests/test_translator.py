"""CycleGAN translator pair (generative/aging/translator.py, generative/aging/cyclegan.py): shapes, losses, pool, training, exact resume."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from generative.training.buffer import SamplePool
from generative.aging.cyclegan import CycleGANTrainer, cycle_loss, lsgan_loss
from generative.aging.translator import PatchDiscriminator, ResnetGenerator, TranslatorConfig, patchgan_receptive_field

torch.set_num_threads(1)

TINY = dict(gen_width=4, n_res_blocks=1, disc_width=4, disc_layers=2)


def _batch(step: int, size: int = 32, b: int = 1, domain: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * domain + step)
    return torch.rand(b, 3, size, size, generator=g) * 2 - 1


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _all_tensors(trainer: CycleGANTrainer) -> dict:
    out = {}
    for name in ("g_ab", "g_ba", "d_a", "d_b"):
        for k, v in getattr(trainer, name).state_dict().items():
            out[f"{name}.{k}"] = v
    return out


# ------------------------------------------------------------------------------ shapes
def test_generator_and_discriminator_shapes():
    x = _batch(0, size=32, b=2)
    g = ResnetGenerator(3, width=4, n_blocks=2)
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0
    # 7x7 conv to w, two stride-2 convs to 4w, residual trunk at 4w
    assert g.net[1].out_channels == 4 and g.net[1].kernel_size == (7, 7)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in g.modules()) == 2
    d = PatchDiscriminator(3, width=4, n_layers=3)
    assert d(x).shape == (2, 1, 2, 2)  # 32 -> 16 -> 8 -> 4 -> 3 -> 2
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.zeros(1, 3, 30, 30))


def test_patchgan_receptive_field_is_70_and_matches_gradient_support():
    assert patchgan_receptive_field(3) == 70
    # Independent check on a 1-layer PatchGAN (receptive field 16): without the (global) instance
    # norm, one output score depends on exactly a 16x16 input patch.
    assert patchgan_receptive_field(1) == 16
    d = PatchDiscriminator(1, width=2, n_layers=1)
    for i, m in enumerate(d.net):
        if isinstance(m, nn.InstanceNorm2d):
            d.net[i] = nn.Identity()
    with torch.no_grad():
        for p in d.parameters():
            p.copy_(p.abs() + 0.1)  # positive weights: no accidental cancellation in the gradient
    x = torch.ones(1, 1, 48, 48, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero()
    cols = (x.grad[0, 0].abs().sum(0) > 0).nonzero()
    assert int(rows.max() - rows.min() + 1) == 16
    assert int(cols.max() - cols.min() + 1) == 16


# ------------------------------------------------------------------------------ losses
class _Shift(nn.Module):
    def __init__(self, delta: float) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.delta


def test_cycle_loss_zero_for_identity_translators_and_matches_formula():
    a, b = _batch(0), _batch(1, domain=1)
    ident = nn.Identity()
    la, lb = cycle_loss(a, b, ident, ident, lambda_cycle=10.0)
    assert float(la) == 0.0 and float(lb) == 0.0
    # each translator adds 0.1, so a round trip is off by 0.2 everywhere: 10 * 0.2 = 2
    la, lb = cycle_loss(a, b, _Shift(0.1), _Shift(0.1), lambda_cycle=10.0)
    assert float(la) == pytest.approx(2.0, abs=1e-5) and float(lb) == pytest.approx(2.0, abs=1e-5)


def test_lsgan_loss_formula():
    pred = torch.tensor([[0.0, 0.5], [3.0, -1.0]])
    assert float(lsgan_loss(pred, True)) == pytest.approx((1 + 0.25 + 4 + 4) / 4)
    assert float(lsgan_loss(pred, False)) == pytest.approx((0 + 0.25 + 9 + 1) / 4)


# ------------------------------------------------------------------------------ image pool
def test_image_pool_fills_to_50_then_returns_new_or_stored():
    trainer = CycleGANTrainer(TranslatorConfig(**TINY))
    assert trainer.pool_a.capacity == 50 and trainer.pool_a.swap_prob == 0.5
    pool = SamplePool(50, swap_prob=0.5, seed=3)
    stored = set()
    for i in range(50):  # filling: every image is returned as is and kept
        img = torch.full((1, 3, 4, 4), float(i))
        assert torch.equal(pool.query(img), img)
        stored.add(i)
    assert len(pool) == 50
    swaps = 0
    for i in range(50, 250):
        out = float(pool.query(torch.full((1, 3, 4, 4), float(i)))[0, 0, 0, 0])
        if out == i:
            continue
        assert out in stored  # a stored image comes back, and the new one takes its place
        stored.remove(out)
        stored.add(i)
        swaps += 1
        assert sorted(float(v) for v in pool.images[:, 0, 0, 0]) == sorted(stored)
    assert len(pool) == 50
    assert 70 <= swaps <= 130  # p = 0.5 over 200 draws (about 4 standard deviations)


# ------------------------------------------------------------------------------ training
def test_training_steps_lower_cycle_loss_on_fixed_batch():
    trainer = CycleGANTrainer(TranslatorConfig(gen_width=8, n_res_blocks=1, disc_width=8, disc_layers=2), seed=0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    a = torch.stack([xx, yy, xx * yy])[None] * 0.8
    b = torch.stack([yy, -xx, (xx + yy) / 2])[None] * 0.8
    cyc = []
    for _ in range(25):
        losses = trainer.train_step(a, b)
        assert set(losses) == {"g_total", "g_adv_ab", "g_adv_ba", "cycle_a", "cycle_b", "d_a", "d_b"}
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
        cyc.append(losses["cycle_a"] + losses["cycle_b"])
    assert sum(cyc[-5:]) / 5 < 0.8 * sum(cyc[:5]) / 5
    assert trainer.step == 25
    assert trainer.translate(a, "ab").shape == a.shape
    assert trainer.translate(b, "ba").shape == b.shape


def test_state_round_trip_is_bit_exact():
    cfg = TranslatorConfig(**TINY, pool_size=2)
    t1 = CycleGANTrainer(cfg, seed=0)
    for i in range(3):
        t1.train_step(_batch(i), _batch(i, domain=1))
    state = _roundtrip(t1.state_dict())
    t2 = CycleGANTrainer(cfg, seed=7)
    t2.load_state_dict(state)
    w1, w2 = _all_tensors(t1), _all_tensors(t2)
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert torch.equal(t1.pool_b.images[: len(t1.pool_b)], t2.pool_b.images[: len(t2.pool_b)])
    x = _batch(9)
    assert torch.equal(t1.translate(x, "ab"), t2.translate(x, "ab"))
    assert torch.equal(t1.translate(x, "ba"), t2.translate(x, "ba"))
    t3 = CycleGANTrainer.from_state_dict(state)
    assert t3.step == 3 and torch.equal(t3.translate(x, "ba"), t1.translate(x, "ba"))


def test_resume_continues_exactly():
    cfg = TranslatorConfig(**TINY, pool_size=2)  # a small pool so swaps (pool RNG) happen before and after
    k, m = 3, 3
    fresh = CycleGANTrainer(cfg, seed=0)
    for i in range(k + m):
        fresh.train_step(_batch(i), _batch(i, domain=1))

    first = CycleGANTrainer(cfg, seed=0)
    for i in range(k):
        first.train_step(_batch(i), _batch(i, domain=1))
    state = _roundtrip(first.state_dict())
    resumed = CycleGANTrainer(cfg, seed=123)
    resumed.load_state_dict(state)
    for i in range(k, k + m):
        resumed.train_step(_batch(i), _batch(i, domain=1))

    w_fresh, w_resumed = _all_tensors(fresh), _all_tensors(resumed)
    assert all(torch.equal(w_fresh[k_], w_resumed[k_]) for k_ in w_fresh)
    for name in ("pool_a", "pool_b"):
        assert torch.equal(getattr(fresh, name).images, getattr(resumed, name).images)
    assert resumed.step == fresh.step == k + m


def test_bad_inputs_raise_clear_errors():
    trainer = CycleGANTrainer(TranslatorConfig(**TINY))
    with pytest.raises(ValueError, match="direction"):
        trainer.translate(_batch(0), "xy")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        trainer.train_step(torch.zeros(1, 1, 32, 32), _batch(0))
    with pytest.raises(ValueError, match="multiples of 4"):
        trainer.translate(torch.zeros(1, 3, 30, 32))
    other = CycleGANTrainer(TranslatorConfig(**{**TINY, "n_res_blocks": 2}))
    with pytest.raises(ValueError, match="checkpoint was written for"):
        trainer.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="n_res_blocks"):
        TranslatorConfig(n_res_blocks=-1)


def test_default_sizes_match_published_cyclegan():
    # The PyTorch CycleGAN prints "Total number of parameters: 11.378 M" for resnet_9blocks and
    # "2.765 M" for the n_layers=3 PatchGAN; a 256 px image gives a 30x30 grid of patch scores.
    g, d = ResnetGenerator(), PatchDiscriminator()
    assert sum(p.numel() for p in g.parameters()) == 11_378_179
    assert sum(p.numel() for p in d.parameters()) == 2_764_737
    with torch.no_grad():
        assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)
