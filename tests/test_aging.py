"""Face aging: translator folder training (resume, init), domains and labels, the greedy re-use rule,
chaining order and direction, evaluation and the `viewgp train translator` / `viewgp age` commands."""

import cv2
import pytest
import torch

from generative.aging.chain import (
    AgingChain,
    AgingConfig,
    age_domain,
    aging_strip,
    choose_reused,
    evaluate_chain,
    read_age_labels,
    split_domains,
    stage_score,
    train_aging,
)
from generative.backbones.checkpoint import CheckpointError
from generative.aging.synthetic_faces import make_face_dataset
from generative.aging.training import TranslatorTrainConfig, train_translator
from generative.aging.translator import load_translator
from sequences import cli

TINY = dict(gen_width=4, n_res_blocks=1, disc_width=4, disc_layers=2)  # 16 px: 3 layers leave a 1x1 map
CENTRES = (15, 25, 35)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """4 identities x 6 ages at 16 px in the domains 15, 25, 35 (8 images each) + labels.csv."""
    root = tmp_path_factory.mktemp("faces")
    return make_face_dataset(root, 4, [12, 18, 22, 28, 32, 38], size=16)


def _tcfg(faces, out, steps, **kw):
    d = faces.parent
    return TranslatorTrainConfig(pairs=[(d / "age_15", d / "age_25")], out_dir=str(out), steps=steps, batch_size=2,
                                 image_size=16, model=TINY, checkpoint_every=2, sample_every=2, log_every=1,
                                 progress=False, **kw)  # fmt: skip


# ------------------------------------------------------------------------------ translator runs
def test_translator_run_resumes_bit_exactly(faces, tmp_path):
    straight = train_translator(_tcfg(faces, tmp_path / "a", 4))
    train_translator(_tcfg(faces, tmp_path / "b", 2))  # an interrupted run: stops after 2 steps
    resumed = train_translator(_tcfg(faces, tmp_path / "b", 4), resume=True)
    assert resumed.step == straight.step == 4
    for net in ("g_ab", "g_ba", "d_a", "d_b"):
        sa, sb = getattr(straight, net).state_dict(), getattr(resumed, net).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    t = load_translator(tmp_path / "b" / "translator.pt")
    assert all(torch.equal(v, resumed.g_ab.state_dict()[k]) for k, v in t.g_ab.state_dict().items())
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and (tmp_path / "b" / "samples" / "latest.png").is_file()
    with pytest.raises(FileExistsError, match="resume"):
        train_translator(_tcfg(faces, tmp_path / "b", 6))


def test_translator_init_from_run_and_joint_pairs(faces, tmp_path):
    first = train_translator(_tcfg(faces, tmp_path / "first", 2))
    d = faces.parent
    cfg = _tcfg(faces, tmp_path / "joint", 1, init=str(tmp_path / "first"))
    cfg.pairs = [(str(d / "age_15"), str(d / "age_25")), (str(d / "age_25"), str(d / "age_35"))]
    before = {k: v.clone() for k, v in first.g_ab.state_dict().items()}
    joint = train_translator(cfg)
    # started from the first run's weights (moved by one step of two updates, not from a fresh init)
    fresh = train_translator(_tcfg(faces, tmp_path / "fresh", 1, seed=5))
    dist_init = sum((joint.g_ab.state_dict()[k] - before[k]).abs().sum() for k in before)
    dist_fresh = sum((fresh.g_ab.state_dict()[k] - before[k]).abs().sum() for k in before)
    assert dist_init < 0.2 * dist_fresh
    assert joint.step == 1 and joint.opt_g.state_dict()["state"][0]["step"] == 2 + 2  # Adam state carried over


def test_translator_bad_inputs(faces, tmp_path):
    with pytest.raises(ValueError, match="pairs"):
        TranslatorTrainConfig(pairs=[], out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="too small for a PatchGAN with 3"):
        TranslatorTrainConfig(pairs=[("a", "b")], image_size=16)
    with pytest.raises(ValueError, match="multiple of 4"):
        TranslatorTrainConfig(pairs=[("a", "b")], image_size=18)
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = _tcfg(faces, tmp_path / "r", 1)
    cfg.pairs = [(str(empty), str(faces.parent / "age_25"))]
    with pytest.raises(ValueError, match="no images"):
        train_translator(cfg)
    with pytest.raises(FileNotFoundError, match="translator file not found"):
        load_translator(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_translator(bad)


# ------------------------------------------------------------------------------ domains and labels
def test_age_domains_have_open_outer_bins():
    assert [age_domain(a) for a in (2, 19.9, 20, 29.9, 30, 59.9, 60, 95)] == [15, 15, 25, 25, 35, 55, 65, 65]
    with pytest.raises(ValueError, match="finite"):
        age_domain(float("nan"))


def test_labels_and_split(faces, tmp_path):
    rows = read_age_labels(faces)
    assert len(rows) == 24 and all(p.is_file() for p, _ in rows)
    split = split_domains(rows, CENTRES, val_fraction=0.25, seed=0)
    for c in CENTRES:
        tr, va = split["train"][c], split["val"][c]
        assert len(tr) == 6 and len(va) == 2 and not {p for p, _ in tr} & {p for p, _ in va}
        assert all(age_domain(a, CENTRES) == c for _, a in tr + va)
    # bad inputs
    with pytest.raises(ValueError, match=r"\[35\] have fewer than 2"):
        split_domains([r for r in rows if r[1] < 30], CENTRES)
    bad = tmp_path / "labels.csv"
    bad.write_text("file,years\nx.png,3\n")
    with pytest.raises(ValueError, match="'file' and 'age'"):
        read_age_labels(bad)
    bad.write_text(f"file,age\n{rows[0][0]},nan\n")
    with pytest.raises(ValueError, match="line 2.*not finite"):
        read_age_labels(bad)
    bad.write_text("file,age\nmissing.png,30\n")
    with pytest.raises(ValueError, match="line 2.*does not exist"):
        read_age_labels(bad)
    with pytest.raises(FileNotFoundError, match="labels file not found"):
        read_age_labels(tmp_path / "none.csv")


# ------------------------------------------------------------------------------ the greedy rule
def test_choose_reused_and_stage_score_with_fixed_ages():
    target = torch.tensor([35.0, 35.0])
    s_reused = stage_score(torch.tensor([33.0, 35.0]), target)  # 1 year short
    s_fresh = stage_score(torch.tensor([30.0, 30.0]), target)  # 5 years short
    assert (s_reused, s_fresh) == (1.0, 5.0)
    assert choose_reused(s_reused, s_fresh)  # better: re-use
    assert not choose_reused(s_fresh, s_reused)  # worse: the fresh one
    assert choose_reused(2.0, 2.0)  # "no worse" keeps the re-used one
    assert choose_reused(2.5, 2.0, tolerance=1.0) and not choose_reused(3.5, 2.0, tolerance=1.0)


class TranslatorTagEstimator:
    """Stub estimator: a fixed age per input image, keyed by the translator file that made it (recorded by
    a patched load_translator), so every translator gets a known score."""

    def __init__(self, ages):
        self.ages = ages  # {translator file name or "real": age}
        self.source = "real"

    def __call__(self, x):
        return torch.full((x.shape[0],), float(self.ages.get(self.source, self.ages["real"])))


def test_train_aging_picks_reused_when_better_and_fresh_otherwise(faces, tmp_path, monkeypatch):
    import generative.aging.chain as aging

    real_load = aging.load_translator

    def run(ages, name):
        est = TranslatorTagEstimator(ages)

        def tagged_load(path, *a, **k):
            t = real_load(path, *a, **k)
            translate = t.translate

            def tagging(x, direction="ab"):
                est.source = f"{path.parent.name}"
                return translate(x, direction)

            t.translate = tagging
            return t

        monkeypatch.setattr(aging, "load_translator", tagged_load)

        def call(x):  # a batch counts as translated only right after a translator made it
            out = est(x)
            est.source = "real"
            return out

        cfg = AgingConfig(out_dir=str(tmp_path / name), centres=CENTRES, val_fraction=0.25, image_size=16, steps=2,
                          retrain_steps=1, batch_size=2, model=TINY, progress=False)  # fmt: skip
        return train_aging(cfg, read_age_labels(faces), call, log=lambda s: None)

    # target = mean age of real 35-domain images = 30 for every real batch; re-used lands on 30, fresh on 20
    res = run({"real": 30, "reuse_25_35": 30, "fresh_25_35": 20}, "better")
    assert res["selection"][0]["chosen"] == "reused"
    assert res["chain"].stages == ["reuse_25_35/translator.pt"] * 2  # the re-used one serves both stages
    assert res["separate"].stages == ["fresh_15_25/translator.pt", "fresh_25_35/translator.pt"]
    res = run({"real": 30, "reuse_25_35": 45, "fresh_25_35": 31}, "worse")
    assert res["selection"][0]["chosen"] == "fresh"
    assert res["chain"].stages == ["fresh_15_25/translator.pt", "fresh_25_35/translator.pt"]
    # the losing candidate is still evaluated, so the table shows what re-use would have given
    cand = AgingChain.load(tmp_path / "worse" / "chain_reuse_candidates.json")
    assert cand.stages == ["fresh_15_25/translator.pt", "reuse_25_35/translator.pt"]
    assert [r["translator"] for r in res["evaluation"]["re-use candidate"]] == cand.stages
    assert res["evaluation"]["re-use candidate"][1]["direct_age"] == 45.0
    assert (tmp_path / "worse" / "evaluation.txt").is_file() and (tmp_path / "worse" / "domains" / "val" / "age_35").is_dir()
    assert AgingChain.load(tmp_path / "better").stages == ["reuse_25_35/translator.pt"] * 2


# ------------------------------------------------------------------------------ chaining
class AddTranslator:
    """Fake translator: ``ab`` adds ``step``, ``ba`` subtracts it; logs (name, direction) per call."""

    image_size = 4

    def __init__(self, name, step, log):
        self.name, self.step, self.log = name, step, log

    def translate(self, x, direction="ab"):
        self.log.append((self.name, direction))
        return x + self.step if direction == "ab" else x - self.step


def _fake_chain(log):
    chain = AgingChain([15, 25, 35, 45], ["t1", "t2", "t2"])  # t2 re-used on 25->35 and 35->45
    chain._cache.update({"t1": AddTranslator("t1", 1.0, log), "t2": AddTranslator("t2", 10.0, log)})
    return chain


def test_chain_order_direction_and_self_feeding():
    log = []
    chain = _fake_chain(log)
    x = torch.zeros(1, 3, 4, 4)
    out = chain.apply(x, 15, 45)
    assert log == [("t1", "ab"), ("t2", "ab"), ("t2", "ab")]  # t2 is fed its own output
    assert [float(o.mean()) for o in out] == [0.0, 1.0, 11.0, 21.0]
    log.clear()
    back = chain.apply(out[-1], 45, 15)
    assert log == [("t2", "ba"), ("t2", "ba"), ("t1", "ba")]
    assert [float(o.mean()) for o in back] == [21.0, 11.0, 1.0, 0.0]
    log.clear()
    assert len(chain.apply(x, 25, 25)) == 1 and log == []
    with pytest.raises(ValueError, match="not a domain"):
        chain.apply(x, 20, 45)
    strip = aging_strip(chain, x, 25, 45, cell=8)
    assert strip.shape == (8 + 14, 3 * 8, 3)


def test_evaluate_chain_reports_direct_and_chained_ages():
    chain = _fake_chain([])
    val = {c: torch.full((2, 3, 4, 4), float(c)) for c in chain.centres}
    est = lambda x: x.mean(dim=(1, 2, 3))  # noqa: E731 -- "age" = pixel value
    rows = evaluate_chain(chain, val, est)
    assert [r["stage"] for r in rows] == ["15->25", "25->35", "35->45"]
    assert [r["direct_increase"] for r in rows] == [1.0, 10.0, 10.0]
    assert [r["chained_age"] for r in rows] == [16.0, 26.0, 36.0]
    assert [r["input_age"] for r in rows] == [15.0, 25.0, 35.0]


def test_chain_files_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="chain.json"):
        AgingChain.load(tmp_path)
    (tmp_path / "chain.json").write_text("{}")
    with pytest.raises(ValueError, match="not an aging chain"):
        AgingChain.load(tmp_path)
    with pytest.raises(ValueError, match="needs 2 stages"):
        AgingChain([15, 25, 35], ["a"])


# ------------------------------------------------------------------------------ commands
def test_cli_translator_and_age_commands(faces, tmp_path, capsys):
    d = faces.parent
    t = tmp_path / "t"
    assert cli.main(["train", "translator", "--a", str(d / "age_15"), "--b", str(d / "age_25"), "--out", str(t),
                     "--image-size", "16", "--steps", "2", "--gen-width", "4", "--res-blocks", "1", "--disc-width", "4", "--disc-layers", "2",
                     "--quiet"]) == 0  # fmt: skip
    assert load_translator(t / "translator.pt").image_size == 16
    assert cli.main(["train", "translator", "--a", str(d / "age_15"), "--out", str(tmp_path / "x")]) == 2  # usage
    assert "--a DIR --b DIR" in capsys.readouterr().err

    run = tmp_path / "run"
    common = ["--out", str(run), "--centres", "15,25,35", "--image-size", "16", "--steps", "2", "--gen-width", "4",
              "--res-blocks", "1", "--disc-width", "4", "--disc-layers", "2", "--estimator-steps", "5", "--val-fraction", "0.25", "--quiet"]
    assert cli.main(["age", "train", "--data", str(d)] + common) == 2
    assert "--labels" in capsys.readouterr().err
    assert cli.main(["age", "train", "--data", str(d), "--labels", str(faces)] + common) == 0
    for f in ("chain.json", "chain_separate.json", "selection.json", "evaluation.txt", "age_estimator.pt"):
        assert (run / f).is_file(), f
    face = sorted((d / "age_35").glob("*.png"))[0]
    strip = tmp_path / "strip.png"
    assert cli.main(["age", "apply", "--chain", str(run), "--image", str(face), "--stages", "35:15", "--out", str(strip), "--cell", "32"]) == 0
    img = cv2.imread(str(strip))
    assert img.shape == (32 + 14, 3 * 32, 3)
    assert cli.main(["age", "apply", "--chain", str(run), "--image", str(face), "--stages", "35:65", "--out", str(strip)]) == 1
    assert "not a domain" in capsys.readouterr().err
    assert cli.main(["age", "apply", "--chain", str(run), "--image", str(face), "--stages", "35-65", "--out", str(strip)]) == 2
    assert cli.main(["age", "eval", "--chain", str(run)]) == 0
    assert "15->25" in capsys.readouterr().out
