"""What the commands write and say: keyframes from a saved run's mask, the every:K note, novel-view query
times, reconstruct's RMSE scale, and the inversion work folder's settings record."""

import json
import os

import numpy as np
import pytest
import torch

from sequences import cli
from tests.test_cli_corpus import _good_run
from tests.test_pipeline_e2e import TinyBackbone


@pytest.fixture
def tiny(monkeypatch):
    import generative.backbones.registry as gb

    monkeypatch.setattr(gb, "load_backbone", lambda spec, device: TinyBackbone())


def test_interpolate_run_uses_the_saved_mask_unless_keyframes_are_given(tmp_path, tiny, capsys):
    run = _good_run()
    mask = np.zeros(len(run), bool)
    mask[[0, 5, 11]] = True
    run.with_observed(mask).save(tmp_path / "run")
    base = ["interpolate", "--run", str(tmp_path / "run"), "--method", "view", "--samples", "0", "--quiet"]
    assert cli.main(base + ["--out", str(tmp_path / "a")]) == 0
    assert "the 3 observed frames saved in" in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["observed"] == mask.tolist()
    assert cli.main(base + ["--keyframes", "every:5", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "keyframes every:5: 4 of 12 frames (the last frame is always kept)" in out  # 0, 5, 10 and 11
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["n_observed"] == 4


def test_novel_view_query_times_span_the_run():
    from sequences.pipeline.views import azimuth_sweep

    run = _good_run()
    query = azimuth_sweep(run, np.arange(0, 360, 5))
    t = np.asarray(query.timestamps)
    assert len(t) == 72 and t[0] == run.timestamps[0] and t[-1] == pytest.approx(run.timestamps[-1])
    assert (np.diff(t) > 0).all()  # a time-based baseline moves through the run instead of freezing at its end


def test_reconstruct_uses_the_bundled_backbone_and_reports_rmse_on_the_unit_scale(tmp_path, capsys, monkeypatch):
    from sequences.cli import backbones

    from generative.images.imageio import write_image

    seen = []

    def load(path, device):
        seen.append(path)
        return TinyBackbone()

    monkeypatch.setattr(backbones, "load_backbone", load)
    images = tmp_path / "in"
    for i in range(3):
        write_image(images / f"{i}.png", np.full((16, 16, 3), 60 * i, np.uint8))
    assert cli.main(["reconstruct", "--images", str(images), "--out", str(tmp_path / "o")]) == 0
    assert seen == [None]  # no --backbone: the bundled default
    line = capsys.readouterr().out
    rmse = float(line.split("RMSE ")[1].split()[0])
    from generative.backbones.registry import to_model_images, to_uint8

    x = to_model_images(np.stack([np.full((16, 16, 3), 60 * i, np.uint8) for i in range(3)]))
    with torch.no_grad():
        rec = to_model_images(to_uint8(TinyBackbone().decode(TinyBackbone().encode(x))))
    per_image = ((x - rec) / 2).pow(2).flatten(1).mean(1).sqrt().mean().item()  # [0, 1] units
    assert rmse == pytest.approx(per_image, abs=2e-3) and "mean image" in line


def test_inversion_settings_record_is_written_once_and_rebuilt_when_unreadable(tmp_path):
    from sequences.cli.invert import _claim

    work = tmp_path / "out.pt.frames"
    settings = {"config": {"steps": 3}, "generator": "g.pt", "source": ["a.png"], "vgg": False}
    _claim(work, settings)
    record = work / "settings.json"
    stamp = record.stat().st_mtime_ns
    os.utime(record, ns=(stamp - 10**9, stamp - 10**9))
    _claim(work, settings)  # same settings: not rewritten (a kill at start-up cannot damage it)
    assert record.stat().st_mtime_ns == stamp - 10**9
    torch.save({"latent": torch.zeros(2), "loss": 0.1, "config": {"steps": 3}}, work / "frame_000000.pt")
    record.write_text('{"config": {"ste')  # as an in-place write killed half-way left it
    _claim(work, settings)  # the finished frame was made with these settings: kept, record rebuilt
    assert json.loads(record.read_text()) == settings and (work / "frame_000000.pt").exists()
    with pytest.raises(ValueError, match="other settings"):
        _claim(work, settings | {"config": {"steps": 4}})
    record.write_text("")
    with pytest.raises(ValueError, match="unreadable"):
        _claim(work, settings | {"config": {"steps": 4}})
