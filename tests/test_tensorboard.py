"""TensorBoard event files of the trainers (generative/training/tensorboard.py), read back with TensorBoard's
own event reader: the scalars equal metrics.jsonl, grids are images, resumed runs continue one stream
without stepping back, and a missing package is one line (or an error where it was asked for)."""

import json
import sys

import cv2
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from generative.gp_prior_ae import GPPriorAE, fit_gp, pretrain, train_joint
from generative.training import tensorboard as tb
from generative.training.loop import LOSS_NAMES, train
from generative.aging.training import TranslatorTrainConfig, train_translator
from tests.test_training import _tiny_run


def _read(folder) -> EventAccumulator:
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})  # 0: keep every event
    ea.Reload()
    return ea


def _steps(ea: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in ea.Scalars(tag)]


def _starts(folder) -> list[int]:
    """The purge steps of every start (SessionLog.START events) in a run's event files."""
    out = []
    for f in sorted(folder.glob("events.out.tfevents.*")):
        out += [e.step for e in EventFileLoader(str(f)).Load() if e.HasField("session_log") and e.session_log.status == 1]
    return sorted(out)


def test_train_writes_scalars_and_grids_and_resumes_continue_the_stream(tmp_path):
    run = tmp_path / "run"
    train(_tiny_run(run, 24, sample_every=8, checkpoint_every=8))  # batch 4: steps at 4, 8, ..., 24 images
    ea = _read(run / "tensorboard")
    assert {f"loss/{k}" for k in LOSS_NAMES} | {"train/lr", "train/images_per_s", "train/alpha", "recon/psnr_db"} <= set(
        ea.Tags()["scalars"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][1:]  # after "start"
    assert _steps(ea, "loss/l1") == [r["samples"] for r in records] == [4, 8, 12, 16, 20, 24]  # images seen as step
    for name in ("l1", "kl_real", "latent", "loss_g"):  # metrics.jsonl rounds to 6 decimals
        np.testing.assert_allclose([e.value for e in ea.Scalars(f"loss/{name}")], [r[name] for r in records], atol=1e-6)
    assert [e.value for e in ea.Scalars("train/lr")] == pytest.approx([r["lr"] for r in records])
    assert [e.value for e in ea.Scalars("train/alpha")] == pytest.approx([r["alpha"] for r in records], abs=1e-4)
    assert all(e.value > 0 for e in ea.Scalars("train/images_per_s"))
    grids = ea.Images("samples/real_recon_random")
    assert {g.step for g in grids} == {8, 16, 24} and grids[-1].step == 24
    # 8 per row (real, reconstruction, 2 rows of samples), each upsampled to 32 px, 1 px gaps
    assert (grids[-1].width, grids[-1].height) == (8 * 32 + 9, 4 * 32 + 5)
    picture = cv2.imdecode(np.frombuffer(grids[-1].encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (133, 265, 3) and picture.std() > 1  # a PNG with content, not a blank
    psnr = ea.Scalars("recon/psnr_db")
    assert [e.step for e in psnr] == [g.step for g in grids] and all(0 < e.value < 100 for e in psnr)

    # a crash after the checkpoint at 16 images: the run restarts from it; what the first start wrote after
    # 16 images (20, 24) is hidden, not shown twice or out of order
    train(_tiny_run(run, 32, sample_every=8, checkpoint_every=8), resume=run / "checkpoints" / "ckpt_000000000016.pt")
    # and a plain resume from the newest checkpoint (32) to 40 images
    train(_tiny_run(run, 40, sample_every=8, checkpoint_every=8), resume=True)
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 3  # one folder, a file per start
    assert _starts(run / "tensorboard") == [1, 17, 33]  # each start purges what follows its checkpoint
    ea = _read(run / "tensorboard")
    for tag in ("loss/l1", "train/lr", "train/images_per_s"):
        assert _steps(ea, tag) == list(range(4, 41, 4)), tag  # every step once, increasing
    assert [e.step for e in ea.Scalars("recon/psnr_db")] == sorted(e.step for e in ea.Scalars("recon/psnr_db"))
    assert max(g.step for g in ea.Images("samples/real_recon_random")) == 40


def test_missing_tensorboard_is_one_line_and_training_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    monkeypatch.setattr(tb, "_warned", False)
    assert not tb.tensorboard_available()
    train(_tiny_run(tmp_path / "a", 8))
    train(_tiny_run(tmp_path / "b", 8))
    err = capsys.readouterr().err
    assert err.splitlines().count(tb.MISSING_MESSAGE) == 1  # once per process, on a line of its own
    assert (tmp_path / "a" / "metrics.jsonl").exists() and (tmp_path / "a" / "model.safetensors").exists()
    assert not (tmp_path / "a" / "tensorboard").exists()
    with pytest.raises(tb.TensorBoardUnavailable, match=r"pip install 'viewgp\[tensorboard\]'"):
        train(_tiny_run(tmp_path / "c", 8, tensorboard=True))  # asked for explicitly: an error, not a warning

    from sequences.cli import main

    args = ["train", "balanced", "--synthetic", "8", "--resolution", "4", "--latent-dim", "8", "--channel-base", "32",
            "--max-channels", "8", "--batch-size", "4", "--quiet", "--out", str(tmp_path / "cli"), "--tensorboard"]
    assert main(args) == 2
    assert "--tensorboard: TensorBoard is not installed" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()  # stopped before training


def test_cli_log_every_and_no_tensorboard(tmp_path):
    from sequences.cli import main

    common = ["train", "balanced", "--synthetic", "8", "--resolution", "4", "--latent-dim", "8", "--channel-base", "32",
              "--max-channels", "8", "--batch-size", "4", "--images-per-phase", "8", "--total-images", "24", "--quiet"]
    assert main(common + ["--out", str(tmp_path / "a"), "--log-every", "2"]) == 0
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()][1:]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert _steps(_read(tmp_path / "a" / "tensorboard"), "loss/l1") == [8, 16, 24]
    assert main(common + ["--out", str(tmp_path / "b"), "--no-tensorboard"]) == 0
    assert (tmp_path / "b" / "metrics.jsonl").exists() and not (tmp_path / "b" / "tensorboard").exists()


def _folder(path, seed: int, n: int = 4, size: int = 16):
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(path / f"{i}.png"), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return path


def test_translator_writes_losses_grids_and_cycle_psnr_and_resumes(tmp_path):
    a, b = _folder(tmp_path / "a", 0), _folder(tmp_path / "b", 1)
    tiny = dict(gen_width=4, n_res_blocks=1, disc_width=4, disc_layers=2)

    def cfg(steps):
        return TranslatorTrainConfig(pairs=[(a, b)], out_dir=str(tmp_path / "t"), steps=steps, batch_size=2, image_size=16,
                                     model=tiny, checkpoint_every=2, sample_every=2, log_every=1, progress=False)

    train_translator(cfg(4))
    train_translator(cfg(6), resume=True)
    ea = _read(tmp_path / "t" / "tensorboard")
    records = [json.loads(line) for line in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert _steps(ea, "loss/g_total") == [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([e.value for e in ea.Scalars("loss/cycle_a")], [r["cycle_a"] for r in records], atol=1e-6)
    assert all(e.value == pytest.approx(2e-4) for e in ea.Scalars("train/lr"))  # CycleGAN's constant rate
    rates = {e.step: e.value for e in ea.Scalars("train/images_per_s")}
    steps_per_s = {e.step: e.value for e in ea.Scalars("train/steps_per_s")}
    assert all(rates[s] == pytest.approx(4 * steps_per_s[s]) for s in rates)  # 2 A + 2 B images per step
    assert _starts(tmp_path / "t" / "tensorboard") == [1, 5]
    assert {g.step for g in ea.Images("samples/a_ab_b_ba")} == {2, 4, 6}
    assert {e.step for e in ea.Scalars("recon/cycle_psnr_a_db")} == {2, 4, 6}
    assert all(0 < e.value < 100 for e in ea.Scalars("recon/cycle_psnr_b_db"))


def test_gp_prior_ae_stages_share_one_step_axis(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 16, 16, generator=g) * 2 - 1
    objects, views = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), torch.tensor([0, 1, 2, 3] * 2)
    model = GPPriorAE(2, "free", num_views=4, resolution=16, latent_dim=4, channels=8)
    with tb.EventLog(tmp_path / "tensorboard") as events:
        pre = pretrain(model, images, objects, views, steps=6, lr=1e-2, events=events, log_every=2, image_every=3)
        fit_gp(model, images, objects, views, steps=4, events=events, log_every=2)
        train_joint(model, images, objects, views, steps=4, events=events, log_every=2, image_every=4)
    ea = _read(tmp_path / "tensorboard")
    assert _steps(ea, "pretrain/loss") == [1, 3, 5]
    np.testing.assert_allclose([e.value for e in ea.Scalars("pretrain/loss")], [pre[1], pre[3], pre[5]], rtol=1e-6)
    assert _steps(ea, "gp_fit/nll") == [7, 9] and _steps(ea, "joint/loss") == [11, 13]  # continuing, never back
    assert [e.value for e in ea.Scalars("joint/lr_networks")] == pytest.approx([2e-4] * 2)
    assert [e.value for e in ea.Scalars("joint/lr_gp")] == pytest.approx([1e-3] * 2)
    assert all(e.value > 0 for e in ea.Scalars("pretrain/images_per_s"))
    assert [i.step for i in ea.Images("pretrain/real_recon")] == [2, 5] and [i.step for i in ea.Images("joint/real_recon")] == [13]
    assert [e.step for e in ea.Scalars("joint/recon_psnr_db")] == [13]
