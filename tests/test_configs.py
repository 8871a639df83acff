"""Config dicts are strict (unknown keys refused by name, missing keys default) and training variants
come from the trainer registry."""

import subprocess
import sys
from pathlib import Path

import pytest

from generative.backbones.automodulator import AutomodulatorAutoencoder, AutomodulatorConfig
from generative.backbones.pioneer import PioneerAutoencoder, PioneerConfig
from generative.training.automodulator_loop import AutomodulatorLosses, AutomodulatorTrainer
from generative.training.loop import AGETrainer, TrainConfig, _merge_resumed
from generative.training.registry import registered_variants, trainer_entry
from generative.aging.training import TranslatorTrainConfig
from generative.aging.translator import TranslatorConfig


def test_train_config_from_dict_refuses_unknown_keys_by_name():
    d = TrainConfig(synthetic=4).to_dict()
    assert TrainConfig.from_dict(d) == TrainConfig(synthetic=4)
    with pytest.raises(ValueError, match="unknown TrainConfig fields: bogus_knob, lr_typo"):
        TrainConfig.from_dict({**d, "bogus_knob": 1, "lr_typo": 0.1})


def test_train_config_from_an_older_checkpoint_takes_defaults_for_new_fields():
    d = TrainConfig(synthetic=4, resolution=8).to_dict()
    for newer in ("precision", "channels_last", "decoder_recon_weight"):
        del d[newer]
    c = TrainConfig.from_dict(d)
    assert (c.precision, c.channels_last, c.decoder_recon_weight) == ("fp32", False, 0.0)


def test_resume_merge_refuses_an_unknown_stored_key_and_keeps_run_fields():
    stored = TrainConfig(synthetic=4, resolution=8, seed=3).to_dict()
    given = TrainConfig(synthetic=4, resolution=8, out_dir="elsewhere", seed=9)
    merged = _merge_resumed(stored, given)
    assert merged.out_dir == "elsewhere" and merged.seed == 3
    with pytest.raises(ValueError, match="unknown TrainConfig fields: retired_option"):
        _merge_resumed({**stored, "retired_option": True}, given)


def test_other_configs_are_strict_with_their_own_wording():
    with pytest.raises(ValueError, match="unknown automodulator loss settings: typo .*known: .*image_loss"):
        AutomodulatorLosses.from_dict({"typo": 1})
    with pytest.raises(ValueError, match="unknown translator config keys: width"):
        TranslatorConfig.from_dict({"width": 3})
    with pytest.raises(ValueError, match="unknown TranslatorTrainConfig fields: step"):
        TranslatorTrainConfig.from_dict({"pairs": [("a", "b")], "step": 3})
    with pytest.raises(ValueError, match="unknown PioneerConfig fields: depth"):
        PioneerConfig.from_dict({"depth": 3})


def test_variants_come_from_the_registry():
    assert registered_variants()[:3] == ["pioneer", "balanced", "automodulator"]
    for variant in ("pioneer", "balanced"):
        e = trainer_entry(variant)
        assert (e.model_class, e.trainer_class, e.losses_class) == (PioneerAutoencoder, AGETrainer, None)
        assert e.make_config(resolution=8) == PioneerConfig(variant=variant, resolution=8)
    e = trainer_entry("automodulator")
    assert (e.model_class, e.trainer_class, e.losses_class) == (AutomodulatorAutoencoder, AutomodulatorTrainer, AutomodulatorLosses)
    assert e.make_config(resolution=8) == AutomodulatorConfig(resolution=8)
    assert TrainConfig(synthetic=1, variant="pioneer").adam_betas() == (0.0, 0.99)
    assert TrainConfig(synthetic=1, variant="balanced").adam_betas() == (0.0, 0.9)
    assert TrainConfig(synthetic=1, variant="automodulator").adam_betas() == (0.0, 0.99)
    with pytest.raises(ValueError, match="unknown training variant 'stylegan'; known variants: pioneer, balanced, automodulator"):
        TrainConfig(synthetic=1, variant="stylegan")


def test_importing_the_loop_alone_registers_every_builtin_trainer():
    code = "import generative.training.loop as l; from generative.training.registry import registered_variants as r; print(r())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert "automodulator" in out and "balanced" in out
