"""Precision chosen by what the hardware does: bfloat16 only where it is native (capability mocked)."""

import json

import pytest
import torch

from generative import precision as P


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """Every test decides anew: no cached choice, no oneDNN cap from the environment."""
    P._auto.cache_clear()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    yield
    P._auto.cache_clear()


def _cpu(monkeypatch, flags):
    monkeypatch.setattr(P, "cpu_flags", lambda: None if flags is None else set(flags))

    def no_timing(*a, **k):
        raise AssertionError("the flags decide; no timing expected")

    if flags is not None:
        monkeypatch.setattr(P, "_time_conv", no_timing)


AVX2_EPYC = ["fpu", "sse4_2", "avx", "avx2", "fma", "f16c"]  # the AVX2-only CPU of the issue
ZEN4 = AVX2_EPYC + ["avx512f", "avx512bw", "avx512_bf16"]
SAPPHIRE_RAPIDS = AVX2_EPYC + ["avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
SKYLAKE_X = AVX2_EPYC + ["avx512f", "avx512bw", "avx512vl"]  # AVX-512 without bfloat16
NEOVERSE_V1 = ["fp", "asimd", "sve", "bf16"]  # Arm with the BF16 extension


@pytest.mark.parametrize("flags,expected,word", [
    (AVX2_EPYC, "fp32", "AVX2"), (SKYLAKE_X, "fp32", "AVX512F"), (ZEN4, "bf16", "AVX512_BF16"),
    (SAPPHIRE_RAPIDS, "bf16", "AMX_BF16"), (NEOVERSE_V1, "bf16", "BF16")])
def test_auto_on_a_cpu_follows_its_flags(monkeypatch, flags, expected, word):
    _cpu(monkeypatch, flags)
    p = P.choose_precision("auto", "cpu")
    assert (p.name, p.requested, p.bf16) == (expected, "auto", expected == "bf16")
    assert word in p.reason
    assert p.to_dict() == {"precision": expected, "requested": "auto", "reason": p.reason}


def test_a_onednn_cap_below_bfloat16_means_fp32(monkeypatch):
    _cpu(monkeypatch, ZEN4)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    p = P.choose_precision("auto", "cpu")
    assert p.name == "fp32" and "capped at AVX2" in p.reason
    P._auto.cache_clear()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert P.choose_precision("auto", "cpu").name == "bf16"


@pytest.mark.parametrize("bf16_s,expected", [(0.5, "bf16"), (0.9, "fp32"), (30.0, "fp32")])
def test_unknown_flags_fall_back_to_timing_a_convolution_once(monkeypatch, bf16_s, expected):
    _cpu(monkeypatch, None)
    calls = []

    def timed(bf16, device, reps=3):
        calls.append(bf16)
        return bf16_s if bf16 else 1.0

    monkeypatch.setattr(P, "_time_conv", timed)
    p = P.choose_precision("auto", "cpu")
    assert p.name == expected and "timed a 3x3 convolution" in p.reason and "cannot be read" in p.reason
    assert P.choose_precision("auto", "cpu") == p and sorted(calls) == [False, True]  # once per process


def test_the_real_timing_fallback_measures_both_precisions():
    fp32, bf16 = P._time_conv(False, torch.device("cpu"), reps=1), P._time_conv(True, torch.device("cpu"), reps=1)
    assert 0 < fp32 < 10 and 0 < bf16 < 60


@pytest.mark.parametrize("native,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_asks_the_device(monkeypatch, native, expected):
    seen = {}

    def supported(including_emulation=True):
        seen["emulation"] = including_emulation
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Test GPU")
    p = P.choose_precision("auto", "cuda")
    assert p.name == expected and "Test GPU" in p.reason
    assert seen["emulation"] is False  # emulated bfloat16 does not count


def test_forced_precisions_and_bad_values(monkeypatch):
    _cpu(monkeypatch, AVX2_EPYC)
    assert P.choose_precision("fp32").to_dict() == {"precision": "fp32", "requested": "fp32", "reason": "requested"}
    forced = P.choose_precision("bf16")
    assert forced.name == "bf16" and "emulated" in forced.reason  # allowed, and says what it costs
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        P.choose_precision("fp16")


def test_autocast_context():
    a = torch.randn(4, 4)
    with P.Precision("bf16", "bf16", "requested").autocast("cpu"):
        assert (a @ a).dtype == torch.bfloat16
    with P.Precision("fp32", "auto", "x").autocast("cpu"):
        assert (a @ a).dtype == torch.float32


def test_cli_choices_are_the_library_s():
    from sequences.cli.options import PRECISION_CHOICES

    assert PRECISION_CHOICES == P.PRECISIONS


def test_pixel_std_maps_decode_in_float32_unless_asked(monkeypatch):
    from generative.latents import frames
    seen = []
    monkeypatch.setattr(frames, "decode_frames", lambda b, z, bs, progress=False, bf16=False, desc="": seen.append(bf16)
                        or __import__("numpy").zeros((len(z), 4, 4, 3), "uint8"))
    frames.pixel_std_maps(None, torch.zeros(2, 3, 5).numpy())
    frames.pixel_std_maps(None, torch.zeros(2, 3, 5).numpy(), bf16=True)
    assert seen == [False, True]


def test_pipeline_records_the_precision_and_decodes_samples_in_it(monkeypatch, tmp_path):
    from test_pipeline_e2e import TinyBackbone

    from generative.latents import frames
    from sequences.pipeline import PipelineConfig, latents, run_pipeline
    from sequences.synthetic import phone_run
    from viewgp.keyframes import parse_keyframes

    _cpu(monkeypatch, AVX2_EPYC)
    seen = []
    real = frames.pixel_std_maps
    monkeypatch.setattr(latents, "pixel_std_maps", lambda *a, bf16=False, **kw: seen.append(bf16) or real(*a, bf16=bf16, **kw))
    run = phone_run(n_frames=20, size=16, seed=0)
    run = run.with_observed(parse_keyframes("every:5", len(run)))
    cfg = PipelineConfig(methods=("view",), n_samples=2, progress=False, media=False, detail=False,
                         pixel_baselines=False)
    m = run_pipeline(run, TinyBackbone(), str(tmp_path), cfg)
    assert m["precision"]["precision"] == "fp32" and "no bfloat16" in m["precision"]["reason"] and seen == [False]
    assert json.loads((tmp_path / "metrics.json").read_text())["precision"]["requested"] == "auto"
    P._auto.cache_clear()
    _cpu(monkeypatch, ZEN4)
    m = run_pipeline(run, TinyBackbone(), str(tmp_path), cfg)
    assert m["precision"]["precision"] == "bf16" and seen == [False, True]


def test_training_log_says_which_precision_and_why(monkeypatch, tmp_path):
    from generative.training.loop import TrainConfig, train

    _cpu(monkeypatch, AVX2_EPYC)
    cfg = TrainConfig(variant="pioneer", resolution=8, synthetic=16, channel_base=64, max_channels=16, min_channels=8,
                      images_per_phase=16, total_images=16, batch_size=8, out_dir=str(tmp_path / "run"), progress=False,
                      checkpoint_every=10**9, sample_every=0, precision="auto", log_every=1)
    train(cfg)
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[0]["precision"] == "fp32" and lines[0]["requested"] == "auto"
    assert "no bfloat16" in lines[0]["reason"] and all(r["precision"] == "fp32" for r in lines[1:])


def test_reconstruction_recipe_decides_by_capability():
    from generative.training.recipes import recipe_fields

    assert recipe_fields("reconstruction")["precision"] == "auto"
    assert recipe_fields("paper")["precision"] == "fp32"
