import json
import os
import socket

import numpy as np
import pytest
import torch

from generative.images.datasets import IndexStream, SyntheticImageDataset, stack_images
from generative.backbones.pioneer import PioneerAutoencoder
from generative.training.buffer import SamplePool
from generative.training.distributed import DistContext
from generative.training.ema import ema_update
from generative.training.loop import AGETrainer, TrainConfig, train
from generative.training.losses import empirical_kl, encoder_kl_term, kl_margin, latent_cosine_loss, reconstruction_l1
from generative.training.schedule import DEFAULT_BATCH_SIZES, ProgressiveSchedule, fade_images

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


# ------------------------------------------------------------------------------ losses
def test_empirical_kl_matches_closed_form():
    z = torch.tensor([[0.0, 1.0, 2.0], [2.0, 3.0, 2.5], [1.0, -1.0, 3.0], [1.0, 1.0, 0.5]], dtype=torch.float64)
    zn = z.numpy()
    mu, var = zn.mean(0), zn.var(0)  # biased variance
    expected = np.mean((var + mu**2) / 2 - np.log(var) / 2 - 0.5)
    assert empirical_kl(z).item() == pytest.approx(expected, rel=1e-12)
    # the KL of N(mu, v) to N(0, 1) per dimension, e.g. N(0, 4): (4 - log 4 - 1) / 2
    g = torch.Generator().manual_seed(0)
    big = torch.randn(100_000, 8, generator=g, dtype=torch.float64) * torch.tensor([1.0] * 7 + [2.0], dtype=torch.float64)
    per_dim_last = (4 - np.log(4) - 1) / 2
    assert empirical_kl(big).item() == pytest.approx(per_dim_last / 8, abs=2e-3)


def test_empirical_kl_is_zero_for_standard_normal_samples():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(100_000, 8, generator=g, dtype=torch.float64)
    assert abs(empirical_kl(z).item()) < 1e-3
    with pytest.raises(ValueError, match="at least 2"):
        empirical_kl(torch.zeros(1, 8))


def test_margin_clips_only_below_minus_m():
    gap = torch.tensor([-0.3, -0.05, -0.01, 0.2])
    assert torch.allclose(kl_margin(gap, 0.05), torch.tensor([-0.05, -0.05, -0.01, 0.2]))
    assert torch.equal(kl_margin(gap, 0.0), gap)
    real, fake = torch.tensor(2.0, requires_grad=True), torch.tensor(5.0, requires_grad=True)
    term = encoder_kl_term(real, fake, 0.1, 0.05)  # 0.1 * (2 - 5) = -0.3 -> clipped at -0.05
    assert term.item() == pytest.approx(-0.05)
    term.backward()
    assert real.grad.item() == 0.0 and fake.grad.item() == 0.0  # no push once the gap is wide enough
    assert encoder_kl_term(torch.tensor(2.0), torch.tensor(2.2), 0.1, 0.05).item() == pytest.approx(-0.02)


def test_latent_cosine_loss_forms():
    z = torch.nn.functional.normalize(torch.randn(5, 16), dim=1)
    assert latent_cosine_loss(z, z).item() == pytest.approx(2 - 1 / 16)  # code form: cos / D
    assert latent_cosine_loss(z, z, "thesis").item() == pytest.approx(0.0, abs=1e-6)
    assert latent_cosine_loss(z, -z, "thesis").item() == pytest.approx(2.0)
    assert reconstruction_l1(torch.zeros(2, 3), torch.ones(2, 3)).item() == 1.0
    with pytest.raises(ValueError, match="latent loss form"):
        latent_cosine_loss(z, z, "l2")


# ------------------------------------------------------------------------------ EMA / pool / schedule
def test_ema_update_formula():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    a.register_buffer("u", torch.zeros(2))
    b.register_buffer("u", torch.ones(2))
    old = a.weight.detach().clone()
    ema_update(a, b, decay=0.9)
    assert torch.allclose(a.weight, 0.9 * old + 0.1 * b.weight)
    assert torch.equal(a.u, b.u)  # buffers are copied


def test_sample_pool_fills_then_swaps_and_resumes():
    pool = SamplePool(capacity=4, seed=3)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 4
    state = pool.state_dict()
    new = torch.arange(10.0, 18.0).view(8, 1, 1, 1)
    out = pool.query(new)
    swapped = (out != new).flatten()
    assert 0 < swapped.sum() < 8  # probability 0.5 each
    assert set(out[swapped].flatten().tolist()) <= set(range(4)) | set(range(10, 18))
    clone = SamplePool(capacity=1)
    clone.load_state_dict(state)
    assert torch.equal(clone.query(new), out)  # same contents + generator state -> same answer
    pool.reset()
    assert len(pool) == 0


def test_schedule_phases_alpha_and_defaults():
    s = ProgressiveSchedule(32, 1000, variant="balanced")
    assert s.at(0).phase == 0 and s.at(0).alpha == 1.0 and not s.at(0).stabilising
    assert s.at(999).phase == 0 and s.at(999).stabilising
    a = s.at(1250)
    assert (a.phase, a.resolution, a.alpha, a.fading) == (1, 8, 0.5, True)
    assert s.at(1500).alpha == 1.0 and s.at(1500).stabilising
    assert s.at(10**6).phase == 3  # training continues at the last resolution
    assert [s.at(p * 1000).batch_size for p in range(4)] == [128, 128, 128, 64]
    assert s.at(3000).lr == 5e-4 and s.at(3000).margin == 0.05
    assert ProgressiveSchedule(64, 10, variant="balanced").at(40).lr == 1e-3
    assert ProgressiveSchedule(32, 10, variant="pioneer").at(0).margin == 0.0
    assert DEFAULT_BATCH_SIZES[512] == 4
    v = ProgressiveSchedule(8, {4: 100, 8: 60}, batch_sizes=16, margins={8: 0.02})
    assert v.growth_images == 160 and v.at(100).phase == 1 and v.at(115).alpha == pytest.approx(0.5)
    assert v.at(0).batch_size == 16 and v.at(100).margin == 0.02 and v.at(0).margin == 0.05
    with pytest.raises(ValueError, match="no length for 8 px"):
        ProgressiveSchedule(8, {4: 100})


def test_fade_images_blends_with_coarser_copy():
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(fade_images(x, 1.0), x)
    coarse = fade_images(x, 0.0)
    assert torch.allclose(coarse, torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 2), scale_factor=2))
    assert torch.allclose(fade_images(x, 0.25), 0.25 * x + 0.75 * coarse)


def test_index_stream_resumes_and_splits_ranks():
    ds = SyntheticImageDataset(10, 8)
    full = IndexStream(ds, seed=5).indices(0)
    head = [next(full) for _ in range(27)]
    tail = IndexStream(ds, seed=5).indices(13)
    assert [next(tail) for _ in range(14)] == head[13:]
    assert sorted(head[:10]) == list(range(10))  # one epoch is a permutation
    r0 = IndexStream(ds, rank=0, world_size=2, seed=5).indices(0)
    r1 = IndexStream(ds, rank=1, world_size=2, seed=5).indices(0)
    assert sorted([next(r0) for _ in range(5)] + [next(r1) for _ in range(5)]) == list(range(10))


# ------------------------------------------------------------------------------ training
def test_training_lowers_reconstruction_loss_at_16px():
    # KL weight 0 isolates the reconstruction path of the AGE step (the encoder learns to invert the frozen
    # decoder through L1; the decoder learns the latent cycle). With the KL game on, 30 steps on a fixed
    # batch are dominated by the adversarial terms; full training is covered by the 32 px example.
    torch.manual_seed(0)
    cfg = TrainConfig(variant="pioneer", resolution=16, synthetic=16, latent_dim=32, channel_base=256, max_channels=32,
                      lr=1e-3, margin=0.0, decoder_updates=1, kl_weight=0.0)
    model = PioneerAutoencoder(cfg.model_config())
    trainer = AGETrainer(model, cfg, CPU)
    x = stack_images(SyntheticImageDataset(16, 16, seed=0), range(16))
    ps = cfg.schedule().at(10**7)  # phase 2 (16 px), stabilising
    assert ps.resolution == 16
    trainer.set_phase(ps)

    def recon_error() -> float:
        with torch.no_grad():
            return reconstruction_l1(model.decoder(model.encoder(x, 2), 2), x).item()

    before = recon_error()
    for _ in range(30):
        trainer.train_step(x, ps)
    assert recon_error() < 0.85 * before


def test_decoder_reconstruction_term_trains_the_decoder_on_pixels():
    # With only the generator-side match_x on (no KL, no latent cycle), a decoder update is pure
    # reconstruction from the encoder's detached codes: the decoder alone must lower the pixel error.
    torch.manual_seed(0)
    cfg = TrainConfig(variant="balanced", resolution=16, synthetic=16, latent_dim=32, channel_base=256, max_channels=32,
                      lr=1e-3, margin=0.0, decoder_updates=1, kl_weight=0.0, recon_weight=0.0, latent_weight=0.0,
                      decoder_recon_weight=1.0)
    model = PioneerAutoencoder(cfg.model_config())
    trainer = AGETrainer(model, cfg, CPU)
    x = stack_images(SyntheticImageDataset(16, 16, seed=0), range(16))
    ps = cfg.schedule().at(10**7)
    trainer.set_phase(ps)
    enc_before = [p.detach().clone() for p in model.encoder.parameters()]
    with torch.no_grad():
        z = model.encoder(x, 2)
        before = reconstruction_l1(model.decoder(z, 2), x).item()
    for _ in range(30):
        trainer.train_step(x, ps)
    with torch.no_grad():
        after = reconstruction_l1(model.decoder(z, 2), x).item()
    assert after < 0.95 * before  # and the decoder moved only through this term (all other weights are 0)
    # the encoder saw zero loss weights: its weights only move through Adam on zero gradients (not at all)
    assert all(torch.equal(a, p) for a, p in zip(enc_before, model.encoder.parameters()))


def _tiny_run(out, total, **kw):
    cfg = dict(variant="balanced", resolution=8, out_dir=str(out), synthetic=12, latent_dim=16, channel_base=64,
               max_channels=8, images_per_phase=16, batch_size=4, total_images=total, progress=False,
               checkpoint_every=10**9, sample_every=0, log_every=1)
    cfg.update(kw)
    return TrainConfig(**cfg)


def test_train_writes_outputs_and_refuses_to_overwrite(tmp_path):
    model = train(_tiny_run(tmp_path / "run", 24, sample_every=8))
    assert model.phase == 1 and not model.training
    for name in ("model.safetensors", "metrics.jsonl", "train_config.json", "samples/latest.png", "checkpoints/latest"):
        assert (tmp_path / "run" / name).exists(), name
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 7 and '"resolution": 8' in lines[-1]
    start = json.loads(lines[0])  # the start record: which precision this run trains in, and why
    assert start["event"] == "start" and start["precision"] == "fp32" and start["reason"] == "requested"
    assert json.loads(lines[-1])["precision"] == "fp32"
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(_tiny_run(tmp_path / "run", 24))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from generative.training.distributed import shutdown_distributed

    try:
        model = train(_tiny_run(out, 16, resolution=4, images_per_phase=64))  # 2 steps x 2 ranks x batch 4
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        shutdown_distributed()


def test_ddp_two_processes_on_cpu_keep_weights_in_sync(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # gradients were all-reduced: identical updates
    ckpt = torch.load(tmp_path / "checkpoints" / (tmp_path / "checkpoints" / "latest").read_text().strip(), weights_only=True)
    assert ckpt["training"]["samples"] == 16 and ckpt["training"]["world_size"] == 2
    assert len(ckpt["training"]["ranks"]) == 2  # per-rank RNG and pool state, for exact resume


def test_cli_train_and_resume_errors(tmp_path, capsys):
    from sequences.cli import main

    out = tmp_path / "cli"
    common = ["train", "balanced", "--synthetic", "8", "--resolution", "4", "--out", str(out), "--latent-dim", "8",
              "--channel-base", "32", "--max-channels", "8", "--batch-size", "4", "--quiet"]
    assert main(common + ["--resume"]) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err
    assert main(common + ["--images-per-phase", "8", "--total-images", "8"]) == 0
    assert (out / "model.safetensors").exists()
    assert main(common + ["--total-images", "16", "--resume"]) == 0
    assert (out / "checkpoints" / "ckpt_000000000016.pt").exists()
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 not really a zip")
    assert main(common + ["--resume", str(tmp_path / "bad.pt")]) == 1
    assert "bad.pt" in capsys.readouterr().err


def test_bf16_channels_last_step_trains(tmp_path):
    """The CPU recipe of the bundled backbone: bfloat16 autocast, NHWC, KL game off (no generated batch)."""
    import torch

    from generative.backbones.pioneer import PioneerAutoencoder
    from generative.training.distributed import init_distributed
    from generative.training.loop import AGETrainer, TrainConfig

    torch.manual_seed(0)
    cfg = TrainConfig(variant="pioneer", resolution=8, synthetic=8, channel_base=64, max_channels=16, min_channels=8,
                      images_per_phase=64, batch_size=8, kl_weight=0.0, decoder_recon_weight=1.0, decoder_updates=1,
                      precision="bf16", channels_last=True, out_dir=str(tmp_path))
    model = PioneerAutoencoder(cfg.model_config()).to(memory_format=torch.channels_last)
    assert model.config.channels(8) == 8  # min_channels reaches the model
    trainer = AGETrainer(model, cfg, init_distributed("cpu"))
    ps = cfg.schedule().at(10**6)
    trainer.set_phase(ps)
    x = (torch.rand(8, 3, 8, 8) * 2 - 1).contiguous(memory_format=torch.channels_last)
    with cfg.autocast(torch.device("cpu")):
        first = trainer.train_step(x, ps)
        for _ in range(30):
            last = trainer.train_step(x, ps)
    assert torch.isfinite(last).all()
    assert float(last[2]) == 0.0  # kl_fake: no generated batch was encoded
    assert float(last[0]) < 0.8 * float(first[0])  # reconstruction L1 falls
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(synthetic=8, precision="fp16")


def test_init_from_starts_a_grown_model_after_growth_and_refuses_other_architectures(tmp_path):
    from generative.backbones.checkpoint import CheckpointError
    from generative.backbones.pioneer import PioneerAutoencoder

    first = train(_tiny_run(tmp_path / "first", 32))  # grown to 8 px, faded in (alpha 1 from 24 images)
    export = tmp_path / "first" / "model.safetensors"
    start = PioneerAutoencoder.from_checkpoint(export)
    cfg = _tiny_run(tmp_path / "ft", 40, init_from=str(export), photos=None)
    model = train(cfg)  # growth = 2 phases x 16 images: 8 more images (2 steps) at 8 px
    records = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "start" and records[0]["samples"] == 32
    steps = [r for r in records[1:]]
    assert [r["samples"] for r in steps] == [36, 40] and all(r["resolution"] == 8 for r in steps)
    assert any(not torch.equal(a, b) for a, b in zip(start.encoder.parameters(), model.encoder.parameters()))
    still = train(_tiny_run(tmp_path / "lr0", 40, init_from=str(export), lr=0.0))  # steps that cannot move weights
    for a, b in zip(list(start.encoder.parameters()) + list(start.decoder_ema.parameters()),
                    list(still.encoder.parameters()) + list(still.decoder_ema.parameters())):
        assert torch.equal(a, b)  # so training began from the export's weights, not a fresh network
    assert first.phase == 1
    with pytest.raises(CheckpointError, match="architecture differs.*max_channels=8 vs 16"):
        train(_tiny_run(tmp_path / "wide", 40, init_from=str(export), max_channels=16))
    with pytest.raises(ValueError, match="must exceed the schedule's growth"):
        train(_tiny_run(tmp_path / "short", 32, init_from=str(export)))
    train(_tiny_run(tmp_path / "half", 12, resolution=8))  # stops during growth: not fully grown
    with pytest.raises(CheckpointError, match="fully grown"):
        train(_tiny_run(tmp_path / "ft2", 40, init_from=str(tmp_path / "half" / "model.safetensors")))


def test_cli_trains_on_photo_crops_from_given_weights(tmp_path, capsys):
    import cv2

    from sequences.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(photos / f"{i}.jpg"), rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))
    common = ["train", "balanced", "--batch-size", "4", "--images-per-phase", "8", "--quiet"]
    size = ["--resolution", "4", "--latent-dim", "8", "--channel-base", "32", "--max-channels", "8", "--min-channels", "4"]
    assert main(common + size + ["--synthetic", "8", "--out", str(tmp_path / "a"), "--total-images", "8"]) == 0
    export = tmp_path / "a" / "model.safetensors"
    # the network size comes from the weights (no size options given) ...
    assert main(common + ["--photos", str(photos), "--photo-crops", "3", "--init-from", str(export),
                          "--out", str(tmp_path / "b"), "--total-images", "16"]) == 0
    records = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["samples"] == 8 and records[-1]["samples"] == 16
    # ... and a size option that contradicts them is refused with both values named
    assert main(common + ["--photos", str(photos), "--init-from", str(export), "--max-channels", "16",
                          "--out", str(tmp_path / "w"), "--total-images", "16"]) == 1
    assert "max_channels=8 vs 16" in capsys.readouterr().err
    assert main(common + ["--out", str(tmp_path / "c")]) == 2
    assert "needs --data DIR, --photos DIR or --synthetic N" in capsys.readouterr().err
