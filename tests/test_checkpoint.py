import os
import random

import numpy as np
import pytest
import torch

import generative
from generative.backbones.registry import registered_kinds
from generative.backbones.checkpoint import (
    CheckpointError,
    CheckpointManager,
    capture_rng_state,
    read_checkpoint,
    restore_rng_state,
    write_checkpoint,
)
from generative.backbones.pioneer import PioneerAutoencoder, PioneerConfig
from generative.training.loop import TrainConfig, train


def tiny(variant="balanced", seed=0) -> PioneerAutoencoder:
    torch.manual_seed(seed)
    m = PioneerAutoencoder(PioneerConfig(variant=variant, resolution=8, latent_dim=16, channel_base=64, max_channels=8))
    for _ in range(3):  # move the spectral-norm u vectors away from their initial values
        m.decoder(m.sample_prior(2), 1)
        m.encoder(torch.randn(2, 3, 8, 8), 1)
    return m


def save(m: PioneerAutoencoder, path) -> None:
    p = m.payload()
    write_checkpoint(path, p["kind"], p["config"], p["model_state"], p["phase"], p["alpha"])


@pytest.mark.parametrize("variant", ["pioneer", "balanced"])
def test_checkpoint_round_trip_is_bit_exact(tmp_path, variant):
    m = tiny(variant)
    save(m, tmp_path / "m.pt")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # atomic write left no temp file
    back = generative.load(tmp_path / "m.pt")
    assert not back.training and back.kind == m.kind
    sd, sd2 = m.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    m.eval()
    assert torch.equal(m.decode(m.encode(x)), back.decode(back.encode(x)))


def test_safetensors_export_restores_the_inference_model(tmp_path):
    m = tiny("balanced").eval()
    m.export(tmp_path / "model.safetensors")
    back = generative.load(tmp_path / "model.safetensors")
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    assert torch.equal(m.encode(x), back.encode(x))
    z = m.sample_prior(3)
    assert torch.equal(m.decode(z), back.decode(z))
    assert torch.equal(back.decoder.blocks[1][0].parametrizations.weight.original,
                       m.decoder_ema.blocks[1][0].parametrizations.weight.original)
    assert back.resolution == 8
    assert generative.load(tmp_path / "model.safetensors", resolution=4).decode(z).shape == (3, 3, 4, 4)


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        generative.load(tmp_path / "nothere.pt")
    m = tiny()
    save(m, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    for cut in (64, len(data) // 100, len(data) // 2, len(data) - 10):  # early cuts fail as EINVAL seeks
        (tmp_path / "trunc.pt").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"trunc\.pt: .*truncated"):
            generative.load(tmp_path / "trunc.pt")
    for seed in range(20):  # junk bytes break torch.load in many different ways
        (tmp_path / "noise.bin").write_bytes(np.random.default_rng(seed).bytes(300))
        with pytest.raises(CheckpointError, match="noise.bin"):
            generative.load(tmp_path / "noise.bin")
    with pytest.raises(CheckpointError, match="noise.bin"):
        generative.load(tmp_path / "noise.bin")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        generative.load(tmp_path / "empty.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a viewgp checkpoint"):
        generative.load(tmp_path / "foreign.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        generative.load(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="no 16x16 resolution; it has 4, 8"):
        generative.load(tmp_path / "good.pt", resolution=16)


def test_unknown_and_wrong_kinds(tmp_path):
    m = tiny()
    p = m.payload()
    write_checkpoint(tmp_path / "odd.pt", "hologram", p["config"], p["model_state"])
    with pytest.raises(ValueError, match="unknown backbone kind 'hologram'; known kinds: .*balanced_pioneer.*pioneer"):
        generative.load(tmp_path / "odd.pt")
    write_checkpoint(tmp_path / "auto.pt", "automodulator", {}, {})
    with pytest.raises(CheckpointError, match="holds a 'automodulator' model, not a Pioneer model"):
        PioneerAutoencoder.from_checkpoint(tmp_path / "auto.pt")
    write_checkpoint(tmp_path / "mismatch.pt", "pioneer", p["config"], p["model_state"])  # balanced config
    with pytest.raises(CheckpointError, match="does not match"):
        generative.load(tmp_path / "mismatch.pt")
    assert {"pioneer", "balanced_pioneer"} <= set(registered_kinds())


def test_checkpoint_manager_keeps_last_k_and_latest(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck", keep=2)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        mgr.latest()
    m = tiny()
    p = m.payload()
    for n in (10, 20, 30):
        mgr.save(n, kind=p["kind"], config=p["config"], model_state=p["model_state"])
    assert [c.name for c in mgr.checkpoints()] == ["ckpt_000000000020.pt", "ckpt_000000000030.pt"]
    assert mgr.latest().name == "ckpt_000000000030.pt"
    assert read_checkpoint(mgr.latest())["kind"] == "balanced_pioneer"


def test_rng_state_round_trip():
    state = capture_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def _cfg(out, total):
    # 8 px, 16 images per phase, batch 4: phase 0 = steps 1-4 (pool in use), phase 1 fades in over steps 5-6
    return TrainConfig(variant="balanced", resolution=8, out_dir=str(out), synthetic=10, latent_dim=16, channel_base=64,
                       max_channels=8, images_per_phase=16, batch_size=4, total_images=total, progress=False,
                       checkpoint_every=10**9, sample_every=0, log_every=2)


def test_resume_continues_exactly(tmp_path):
    straight = train(_cfg(tmp_path / "a", 24))  # 6 steps
    train(_cfg(tmp_path / "b", 12))  # 3 steps, final checkpoint
    resumed = train(_cfg(tmp_path / "b", 24), resume=True)  # + 3 steps
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    ca = read_checkpoint(CheckpointManager(tmp_path / "a" / "checkpoints").latest())
    cb = read_checkpoint(CheckpointManager(tmp_path / "b" / "checkpoints").latest())
    assert ca["training"]["samples"] == cb["training"]["samples"] == 24
    opt_a, opt_b = ca["training"]["optimizer_encoder"]["state"], cb["training"]["optimizer_encoder"]["state"]
    assert all(torch.equal(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"]) for i in opt_a)
    assert torch.equal(ca["training"]["ranks"][0]["pool"]["generator"], cb["training"]["ranks"][0]["pool"]["generator"])


def test_resume_rejects_other_models_and_exports(tmp_path):
    train(_cfg(tmp_path / "r", 8))
    other = _cfg(tmp_path / "r", 16)
    other.resolution = 16
    with pytest.raises(ValueError, match="resolution=8"):
        train(other, resume=True)
    with pytest.raises(CheckpointError, match="weights only"):
        train(_cfg(tmp_path / "r", 16), resume=tmp_path / "r" / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        train(_cfg(tmp_path / "empty", 16), resume=True)
