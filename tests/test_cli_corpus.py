"""A corpus of malformed inputs and bad arguments for the ``viewgp`` command line.

Every case must end with the right exit code (2: the command line is wrong; 1: a file is, or the run
failed), exactly one line on stderr naming the problem (no traceback, no library's multi-line advice),
and an ``--out`` folder that still holds an earlier run's files untouched (most cases pass ``--overwrite``:
a failed run must not replace what it was allowed to replace).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sequences import cli

N = 12  # frames of the good run


# ------------------------------------------------------------------------------------------ fixtures
def _good_run():
    """A 12-frame 32 px run at 10 fps: noise frames, a camera yawing along a line (no renderer needed)."""
    from sequences.run import CameraRun

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(N, 32, 32, 3), dtype=np.uint8)
    yaw = np.linspace(0, 0.6, N)
    R = np.stack([[[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]] for a in yaw])
    T = np.stack([np.linspace(0, 0.5, N), np.zeros(N), np.zeros(N)], 1)
    return CameraRun(frames, np.arange(N) / 10.0, R, T)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Good and bad inputs, written once: ``{name: path}``."""
    from sequences.poses.formats import write_poses
    from sequences.capture.video import write_video

    d = tmp_path_factory.mktemp("corpus")
    run = _good_run()
    f = {"run": run.save(d / "run"), "video": write_video(d / "run.mp4", run.frames, 10.0)}
    write_poses(d / "poses.txt", run.trajectory, "tum")
    f["poses"] = d / "poses.txt"
    rows = (d / "poses.txt").read_text().splitlines()
    header, data = rows[0], rows[1:]

    def text(name: str, content: str) -> Path:
        (d / name).write_text(content)
        return d / name

    def row(i: int, values: str) -> list[str]:  # data with row i replaced
        return [values if j == i else r for j, r in enumerate(data)]

    def poses(name: str, lines: list[str]) -> Path:
        return text(name, "\n".join([header, *lines]) + "\n")

    t3 = data[3].split()[0]
    f |= {
        "empty.txt": text("empty.txt", ""),
        "prose.txt": text("prose.txt", "these are my poses\nthey are good\n"),
        "seven_cols.txt": poses("seven_cols.txt", row(3, f"{t3} 0 0 0 0 0 1")),
        "word.txt": poses("word.txt", row(3, f"{t3} 0 zero 0 0 0 0 1")),
        "nan.txt": poses("nan.txt", row(3, f"{t3} nan 0 0 0 0 0 1")),
        "huge.txt": poses("huge.txt", row(3, f"{t3} 1e300 0 0 0 0 0 1")),
        "zero_quat.txt": poses("zero_quat.txt", row(3, f"{t3} 0 0 0 0 0 0 0")),
        "backwards.txt": poses("backwards.txt", row(3, "0.05 0 0 0 0 0 0 1")),
        "one_row.txt": poses("one_row.txt", data[:1]),
        "late.txt": poses("late.txt", [f"{float(r.split()[0]) + 3600} {' '.join(r.split()[1:])}" for r in data]),
        "binary.txt": d / "binary.txt",
        "junk.mp4": d / "junk.mp4",
        "empty.mp4": d / "empty.mp4",
        "prose.mp4": text("prose.mp4", "not a video\n"),
        "half.mp4": d / "half.mp4",
        "one.mp4": write_video(d / "one.mp4", run.frames[:1], 10.0),
    }
    rng = np.random.default_rng(1)
    f["binary.txt"].write_bytes(rng.bytes(2000))
    f["junk.mp4"].write_bytes(rng.bytes(5000))
    f["empty.mp4"].write_bytes(b"")
    video = f["video"].read_bytes()
    f["half.mp4"].write_bytes(video[: len(video) // 2])
    _run_folders(d, run, f)
    _checkpoints(d, f)
    return f


def _run_folders(d: Path, run, f: dict) -> None:
    """Saved runs broken in one way each."""

    def broken(name: str, change) -> None:
        shutil.copytree(f["run"], d / name)
        change(d / name)
        f[name] = d / name

    manifest = lambda p: json.loads((p / "run.json").read_text())  # noqa: E731

    def edit(key, value):
        def change(p):
            m = manifest(p)
            m[key] = value
            (p / "run.json").write_text(json.dumps(m))

        return change

    broken("run_no_manifest", lambda p: (p / "run.json").unlink())
    broken("run_bad_json", lambda p: (p / "run.json").write_text("{not json"))
    broken("run_foreign", edit("format", "something-else"))
    broken("run_missing_frame", lambda p: (p / "frames" / "000004.png").unlink())
    broken("run_corrupt_frame", lambda p: (p / "frames" / "000004.png").write_bytes(b"\x89PNG broken"))
    broken("run_short_poses", lambda p: (p / "poses.txt").write_text("\n".join((p / "poses.txt").read_text().splitlines()[:-2]) + "\n"))
    broken("run_bad_mask", edit("observed", [True] * (N - 1)))
    run[:1].save(d / "run_one_frame")
    f["run_one_frame"] = d / "run_one_frame"
    f["missing_dir"] = d / "no_such_run"


def _checkpoints(d: Path, f: dict) -> None:
    """Files passed as --backbone that are not backbones."""
    from safetensors.torch import save_file

    from generative.backbones.registry import DEFAULT_BACKBONE

    rng = np.random.default_rng(2)
    (d / "random.pt").write_bytes(rng.bytes(4000))
    (d / "empty.pt").write_bytes(b"")
    save_file({"w": torch.zeros(2)}, str(d / "foreign.safetensors"))
    torch.save(torch.zeros(3), d / "tensor.pt")
    torch.save({"weights": torch.zeros(3)}, d / "dict.pt")
    ours = DEFAULT_BACKBONE.read_bytes()
    (d / "truncated.safetensors").write_bytes(ours[: len(ours) // 3])
    # A training checkpoint cut short early (the reader's seek past its end fails with EINVAL).
    buffer = __import__("io").BytesIO()
    torch.save({"format": 1, "kind": "pioneer", "w": torch.zeros(100_000)}, buffer)
    (d / "truncated.pt").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 100])
    for name in ("random.pt", "empty.pt", "foreign.safetensors", "tensor.pt", "dict.pt", "truncated.safetensors",
                 "truncated.pt"):
        f[name] = d / name


# --------------------------------------------------------------------------------------------- cases
def _pose_cases():
    bad = [("missing.txt", "not found"), ("empty.txt", "empty.txt"), ("prose.txt", "--format NAME"),
           ("seven_cols.txt", "seven_cols.txt"), ("word.txt", "word.txt"), ("nan.txt", "nan.txt"),
           ("huge.txt", "not a plausible position"), ("zero_quat.txt", "zero_quat.txt"),
           ("backwards.txt", "backwards.txt"), ("one_row.txt", "at least 2"), ("late.txt", "--time-offset"),
           ("binary.txt", "binary.txt"), ("run", "run")]
    for name, fragment in bad:
        yield f"poses:{name}", ["interpolate", "--video", "{video}", "--poses", "{" + name + "}"], 1, fragment
    yield "poses:format-unknown", ["interpolate", "--video", "{video}", "--poses", "{poses}", "--format", "nope"], 1, "nope"
    yield "poses:format-wrong", ["interpolate", "--video", "{video}", "--poses", "{poses}", "--format", "kitti"], 1, "poses.txt"


def _video_cases():
    bad = [("missing.mp4", "not found"), ("junk.mp4", "cannot open"), ("empty.mp4", "empty.mp4"),
           ("prose.mp4", "prose.mp4"), ("half.mp4", "half.mp4"), ("one.mp4", "at least 2")]
    for name, fragment in bad:
        yield f"video:{name}", ["interpolate", "--video", "{" + name + "}", "--poses", "{poses}"], 1, fragment


def _run_cases():
    bad = [("missing_dir", "not found"), ("run_no_manifest", "run.json"), ("run_bad_json", "invalid JSON"),
           ("run_foreign", "not a viewgp camera run"), ("run_missing_frame", "000004.png"),
           ("run_corrupt_frame", "000004.png"), ("run_short_poses", "poses"), ("run_bad_mask", "observed"),
           ("run_one_frame", "at least 2")]
    for name, fragment in bad:
        yield f"run:{name}", ["smooth", "--run", "{" + name + "}"], 1, fragment


def _checkpoint_cases():
    bad = [("missing.pt", "not found"), ("random.pt", "random.pt"), ("empty.pt", "empty"),
           ("foreign.safetensors", "not a viewgp model export"), ("tensor.pt", "not a viewgp checkpoint"),
           ("dict.pt", "not a viewgp checkpoint"), ("truncated.safetensors", "truncated.safetensors"), ("run", "folder")]
    for name, fragment in bad:
        yield f"backbone:{name}", ["interpolate", "--run", "{run}", "--backbone", "{" + name + "}"], 1, fragment
    yield "backbone:stylegan2-random", ["interpolate", "--run", "{run}", "--backbone", "stylegan2:{random.pt}"], 1, "random.pt"
    yield "reconstruct:random.pt", ["reconstruct", "--backbone", "{random.pt}", "--images", "{run}/frames"], 1, "random.pt"
    yield "invert:random.pt", ["invert", "--generator", "{random.pt}", "--images", "{run}/frames", "--steps", "2"], 1, "random.pt"


def _argument_cases():
    run = ["interpolate", "--run", "{run}"]
    cuda = "cuda:99" if torch.cuda.is_available() else "cuda"
    usage = [
        ("steps", run + ["--steps", "-5"], "--steps"), ("samples", run + ["--samples", "-3"], "--samples"),
        ("time-offset", ["interpolate", "--video", "{video}", "--poses", "{poses}", "--time-offset", "nan"], "--time-offset"),
        ("device-tpu", run + ["--device", "tpu9"], "tpu9"), ("device-cuda", run + ["--device", cuda], "--device"),
        ("fps", run + ["--fps", "0"], "--fps"), ("keyframes-0", run + ["--keyframes", "every:0"], "every:0"),
        ("keyframes-word", run + ["--keyframes", "sometimes"], "sometimes"),
        ("keyframes-greedy-1", run + ["--keyframes", "greedy:1"], "--keyframes"),
        ("keyframes-greedy-all", run + ["--keyframes", "greedy:100000"], "--keyframes greedy:100000 keeps all"),
        ("keyframes-all", run + ["--keyframes", "all"], "nothing is left to interpolate"), ("method", run + ["--method", "magic"], "magic"),
        ("nuts", run + ["--bayes", "--nuts", "1,2"], "--nuts"), ("unknown-option", run + ["--frobnicate"], "--frobnicate"),
        ("azimuths", ["views", "--run", "{run}", "--azimuths", "0:360:0"], "--azimuths"),
        ("invert-lr", run + ["--invert-lr", "-1"], "--invert-lr"),
        ("reconstruct-batch", ["reconstruct", "--images", "{run}/frames", "--batch-size", "0"], "--batch-size"),
        ("sample-n", ["sample", "-n", "0", "--out", "{out}/s.png"], "-n"),
        ("invert-steps", ["invert", "--generator", "{random.pt}", "--images", "{run}/frames", "--steps", "0"], "--steps"),
    ]
    for name, argv, fragment in usage:
        yield f"args:{name}", argv, 2, fragment
    yield "args:lpips-weights", run + ["--lpips-weights", "{missing_dir}"], 1, "--lpips-weights"


def _train_cases():
    train = ["train", "balanced", "--synthetic", "20", "--resolution", "8"]
    usage = [("betas", train + ["--betas", "2,3"], "--betas"), ("ema", train + ["--ema-decay", "1.5"], "--ema-decay"),
             ("recipe", train + ["--recipe", "fast"], "fast"), ("resolution", ["train", "balanced", "--synthetic", "20", "--resolution", "48"], "48"),
             ("no-data", ["train", "balanced"], "--data"), ("translator-recipe", ["train", "translator", "--a", "{run}", "--b", "{run}", "--recipe", "paper"], "--recipe"),
             ("kl-weight", train + ["--kl-weight", "-1"], "--kl-weight")]
    for name, argv, fragment in usage:
        yield f"train:{name}", argv, 2, fragment
    yield "train:resume-junk", train + ["--resume", "{random.pt}"], 1, "random.pt"
    yield "train:resume-truncated", train + ["--resume", "{truncated.pt}"], 1, "truncated.pt: a corrupt or truncated"


CASES = [*_pose_cases(), *_video_cases(), *_run_cases(), *_checkpoint_cases(), *_argument_cases(), *_train_cases()]
#: Commands whose --out is a folder a run replaces (they take --overwrite).
STAGED = {"interpolate", "smooth", "views", "reconstruct", "demo", "attribute"}


def test_the_corpus_is_large():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name, argv, code, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_line_and_keeps_the_earlier_run(name, argv, code, fragment, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "viewgp-output.json").write_text('{"format": "viewgp-output", "version": 1}')  # an earlier run
    (out / "sentinel.txt").write_text("earlier result")
    names = {k: str(v) for k, v in inputs.items()} | {"out": str(out), "missing.txt": str(tmp_path / "no.txt"),
                                                     "missing.mp4": str(tmp_path / "no.mp4"), "missing.pt": str(tmp_path / "no.pt")}
    args = [re.sub(r"\{([^}]+)\}", lambda m: names[m.group(1)], a) for a in argv]
    if args[0] in STAGED:
        args += ["--out", str(out), "--overwrite", "--quiet"] if args[0] != "reconstruct" else ["--out", str(out), "--overwrite"]
    elif args[0] in ("train", "invert") and "--out" not in args:
        args += ["--out", str(out / ("model.pt" if args[0] == "invert" else "train")), "--quiet"]
    try:
        rc = cli.main(args)
    except SystemExit as exc:  # argparse's own usage errors exit from inside parse_args
        rc = exc.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert rc == code, f"{name}: exit {rc}, stderr {err!r}"
    assert err and "\n" not in err, f"{name}: not one line: {err!r}"
    assert err.startswith("viewgp") and "error:" in err, err
    assert fragment in err, f"{name}: {fragment!r} not in {err!r}"
    assert "Traceback" not in captured.err and "weights_only=False" not in err
    assert sorted(p.name for p in out.iterdir()) == ["sentinel.txt", "viewgp-output.json"], name
    assert (out / "sentinel.txt").read_text() == "earlier result"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], "a staging folder was left behind"


# --------------------------------------------------------------------------------- output folders
def test_out_refusals_keep_what_is_there(inputs, tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "metrics.json").write_text("{}")  # a pipeline output from before the manifest existed
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out, extra, fragment in ((theirs, ["--overwrite"], "did not write"), (earlier, [], "--overwrite"),
                                 (a_file, [], "is a file")):
        rc = cli.main(["interpolate", "--run", str(inputs["run"]), "--out", str(out), "--quiet", *extra])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "\n" not in err and fragment in err, err
    assert (theirs / "notes.txt").read_text() == "mine" and (earlier / "metrics.json").read_text() == "{}"


def test_stale_staging_and_temporaries_are_cleared_and_a_half_replaced_run_comes_back(tmp_path):
    from generative.images.fileio import remove_stale_staging

    out = tmp_path / "out"
    dead = 2**22 + 12345  # beyond pid_max on Linux: no such process
    (tmp_path / f".out.staging-{dead}-abc").mkdir()
    (tmp_path / f".out.replaced-{dead}-def").mkdir()
    (tmp_path / f".out.replaced-{dead}-def" / "metrics.json").write_text("{}")
    removed = remove_stale_staging(out)
    assert len(removed) == 2 and (out / "metrics.json").is_file()  # the earlier run is back under its name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_success_replaces_an_earlier_run_and_keeps_the_cache(inputs, tmp_path, capsys, monkeypatch):
    import generative.backbones.registry as gb

    from tests.test_pipeline_e2e import TinyBackbone

    monkeypatch.setattr(gb, "load_backbone", lambda spec, device: TinyBackbone())
    out = tmp_path / "out"
    args = ["interpolate", "--run", str(inputs["run"]), "--method", "view", "--samples", "0", "--out", str(out), "--quiet"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "uncertainty.mp4" not in text and not (out / "uncertainty.mp4").exists()  # --samples 0: none, none listed
    (out / ".metrics.json.ab12cd34.tmp").write_text("left by a kill")
    (out / "extra_from_earlier.png").write_bytes(b"x")
    cached = sorted(p.name for p in (out / "cache").iterdir())
    assert cli.main(args + ["--samples", "2"]) == 2  # an earlier run is there
    assert cli.main(args + ["--samples", "2", "--overwrite"]) == 0
    names = {p.name for p in out.iterdir()}
    assert "uncertainty.mp4" in names and "extra_from_earlier.png" not in names  # replaced, not mixed
    assert ".metrics.json.ab12cd34.tmp" not in names and sorted(p.name for p in (out / "cache").iterdir()) == cached
    manifest = json.loads((out / "viewgp-output.json").read_text())
    assert manifest["command"] == "interpolate" and manifest["options"]["samples"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["video"]["fps"] == pytest.approx(10.0)  # the run's own rate
    assert metrics["video"]["codec"] in ("h264", "mp4v")


# ------------------------------------------------------------------------------ the process as a whole
def test_a_fresh_process_prints_one_line_for_a_broken_video(inputs, tmp_path):
    """No torch.jit deprecation warning, no OpenCV/FFmpeg log lines: just the error (a subprocess, so
    that warnings and C-level logging are those of a real start)."""
    import subprocess
    import sys

    repo = Path(cli.__file__).parents[2]
    r = subprocess.run([sys.executable, "-m", "sequences.cli", "interpolate", "--video", str(inputs["half.mp4"]),
                        "--poses", str(inputs["poses"]), "--out", str(tmp_path / "o")],
                       cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("viewgp interpolate: error:"), r.stderr


def test_debug_shows_the_traceback(inputs, tmp_path):
    with pytest.raises(ValueError):
        cli.main(["interpolate", "--run", str(inputs["run_bad_json"]), "--out", str(tmp_path / "o"), "--debug"])
    with pytest.raises(ValueError):
        cli.main(["--debug", "interpolate", "--run", str(inputs["run_bad_json"]), "--out", str(tmp_path / "o")])


def test_version_and_every_option_has_help(capsys):
    import argparse

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("viewgp ")
    parser = cli.build_parser()
    missing = [(p.prog, a.option_strings) for p in [parser, *cli._sub_parsers(parser)] for a in p._actions
               if a.option_strings and not a.help and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]
    assert not missing


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["bench"])
    args.func = lambda a: {}["surprise"]  # a bug: KeyError
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: args)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    rc = cli.main(["bench"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "KeyError" in err and "--debug" in err
