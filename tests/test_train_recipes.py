"""``viewgp train`` recipes and options, the EMA warm-up (early exports are the trained decoder), resuming
checkpoints written before the warm-up existed, and the time estimate."""

import pytest
import torch

from generative.backbones.checkpoint import CheckpointManager, read_checkpoint, write_checkpoint
from generative.training.ema import warmed_up_decay
from generative.training.loop import TrainConfig, eta_seconds, format_duration, reconstruction_check, train
from generative.training.recipes import RECIPES, recipe_fields
from sequences import cli
from sequences.cli import train as cli_train


def _tiny(out, total, **kw):
    cfg = dict(variant="balanced", resolution=8, out_dir=str(out), synthetic=12, latent_dim=16, channel_base=64,
               max_channels=8, images_per_phase=16, batch_size=4, total_images=total, progress=False,
               checkpoint_every=10**9, sample_every=0, log_every=1)
    return TrainConfig(**(cfg | kw))


def test_warm_up_reaches_the_configured_decay_and_stays_there():
    assert warmed_up_decay(0.999, 0) == pytest.approx(0.1)  # the first update mostly copies the decoder
    assert warmed_up_decay(0.995, 1790) == 0.995  # reached after (10 d - 1) / (1 - d) updates ...
    assert warmed_up_decay(0.995, 1789) < 0.995
    assert warmed_up_decay(0.995, 7000) == 0.995  # ... so a long run resumed with the warm-up is unchanged
    assert warmed_up_decay(0.99, 10**6) == 0.99


def _distance(a, b):
    return sum((pa - pb).pow(2).sum() for pa, pb in zip(a.parameters(), b.parameters())).sqrt().item()


@pytest.mark.parametrize("warmup", [False, True])
def test_an_early_export_is_the_trained_decoder_only_with_the_warm_up(tmp_path, warmup):
    model = train(_tiny(tmp_path, 32, ema_decay=0.999, ema_warmup=warmup))  # 8 steps
    torch.manual_seed(0)  # train() seeds with config.seed = 0 before building the model: the initial weights
    init = type(model)(model.config)
    to_trained, to_init = _distance(model.decoder_ema, model.decoder), _distance(model.decoder_ema, init.decoder_ema)
    if warmup:
        assert to_trained < to_init  # the EMA follows the training
    else:
        assert to_init < to_trained  # 0.999 from the first step: still ~99% the initial weights


def test_old_checkpoints_without_the_warm_up_key_resume(tmp_path):
    train(_tiny(tmp_path, 12))
    manager = CheckpointManager(tmp_path / "checkpoints")
    payload = read_checkpoint(manager.latest())
    del payload["training"]["config"]["ema_warmup"]  # as written before the field existed
    write_checkpoint(manager.latest(), payload["kind"], payload["config"], payload["model"], payload["phase"],
                     payload["alpha"], payload["training"])
    stale = manager.directory / ".ckpt_000000000016.pt.ab12cd34.tmp"  # a kill mid-checkpoint
    stale.write_bytes(b"half")
    model = train(_tiny(tmp_path, 24), resume=True)
    assert model.resolution == 8 and not stale.exists()


def test_recipes_and_options_make_the_config(tmp_path):
    parser = cli.build_parser()
    base = ["train", "balanced", "--synthetic", "8", "--resolution", "8", "--out", str(tmp_path)]
    paper = cli_train._train_config(parser.parse_args(base))
    assert (paper.kl_weight, paper.decoder_updates, paper.ema_decay, paper.adam_betas()) == (0.1, 2, 0.999, (0.0, 0.9))
    rec = cli_train._train_config(parser.parse_args(base + ["--recipe", "reconstruction"]))
    assert {k: getattr(rec, k) for k in RECIPES["reconstruction"]} == recipe_fields("reconstruction")
    mixed = cli_train._train_config(parser.parse_args(base + ["--recipe", "reconstruction", "--ema-decay", "0.99",
                                                              "--betas", "0,0.9", "--precision", "fp32", "--no-channels-last"]))
    assert (mixed.ema_decay, mixed.betas, mixed.precision, mixed.channels_last, mixed.kl_weight) == (0.99, (0.0, 0.9), "fp32", False, 0.0)
    with pytest.raises(ValueError, match="unknown training recipe"):
        recipe_fields("fast")


def test_cli_train_prints_the_plan_and_the_export_check(tmp_path, capsys):
    args = ["train", "balanced", "--recipe", "reconstruction", "--precision", "fp32", "--synthetic", "8", "--resolution", "4",
            "--out", str(tmp_path / "r"), "--latent-dim", "8", "--channel-base", "32", "--max-channels", "8",
            "--batch-size", "4", "--images-per-phase", "16", "--quiet"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "reconstruction recipe" in out and "16 images" in out
    assert "export check on 8 training images: reconstruction RMSE" in out and "mean image" in out


def test_eta_counts_later_phases_as_slower():
    cfg = _tiny("unused", None, images_per_phase=100)
    schedule = cfg.schedule()  # 4 px then 8 px, 100 images each
    assert eta_seconds(schedule, 0, 200, 10.0, 4) == pytest.approx((100 + 100 * 2) / 10.0)
    assert eta_seconds(schedule, 150, 200, 10.0, 8) == pytest.approx(5.0)
    assert eta_seconds(schedule, 200, 200, 10.0, 8) == 0.0
    assert (format_duration(95), format_duration(4000)) == ("1m35s", "1h06m")


def test_reconstruction_check_scores_against_the_mean_image(tmp_path):
    cfg = _tiny(tmp_path, 8)
    check = reconstruction_check(train(cfg), cfg)
    assert check["images"] == 12 and 0 < check["rmse_mean_image"] < 1 and 0 < check["rmse"] < 1
