"""The demo's pipeline phase by phase, float32 and bfloat16 side by side in one process.

Renders the demo's run (``viewgp demo``: a hand-held phone run over a tabletop scene, 120 frames at
256 px, every 10th frame a keyframe), then runs the whole pipeline on it with the bundled backbone
once per precision (no encoding cache, every output written) and prints seconds and frames/s of each
phase: render, encode, fit, predict (+ posterior samples), decode means, decode samples, detail/warp,
pixel baselines, metrics, videos, plots, report; then the wall time of the pipeline and of the whole
demo (render + pipeline), and what ``precision="auto"`` picks on this machine and why. A small run
through the pipeline first takes the one-off costs (library initialisation, first kernel calls).

    .venv/bin/python benchmarks/pipeline.py                     # the demo, fp32 and bf16
    .venv/bin/python benchmarks/pipeline.py --precisions fp32   # float32 only
    .venv/bin/python benchmarks/pipeline.py --frames 10000      # a long run, end to end from a video file

Runs longer than ``--stream-from`` frames (default 2,000) are measured as a user would make them: the
scene is rendered once, a block at a time, into an MP4 and a TUM pose file (kept in ``--workdir`` for
the next time), and ``viewgp interpolate --video ... --poses ...`` runs as a child process that
streams the frames from the video (every output written); the table gives its phases from
``metrics.json``, its wall time and its peak resident memory.

Only the ratios within one run compare across machines; the CPU line says what this one computes.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative import load_default  # noqa: E402
from generative.precision import choose_precision, cpu_bf16_native  # noqa: E402
from sequences.pipeline import PipelineConfig, parse_keyframes, run_pipeline  # noqa: E402
from sequences.synthetic import phone_run  # noqa: E402

#: (label, metrics.json timing keys summed) in pipeline order; fit and predict come from the methods.
PHASES = [("encode", ["encode_s"]), ("decode means", ["decode_means_s"]), ("decode samples", ["decode_samples_s"]),
          ("detail / warp", ["detail_s"]), ("pixel baselines", ["pixel_baselines_s"]), ("metrics", ["metrics_s"]),
          ("videos", ["videos_s"]), ("plots", ["plots_s"]), ("report", ["report_s"])]


def cpu_line() -> str:
    native, why = cpu_bf16_native()
    return (f"CPU: {torch.get_num_threads()} threads, torch kernels {torch.backends.cpu.get_cpu_capability()}; "
            f"bfloat16: {why}")


def run_once(camera_run, backbone, precision: str, methods: tuple[str, ...]) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as out:
        config = PipelineConfig(methods=methods, fps=camera_run.frame_rate, progress=False, cache_dir=None,
                                output_size=camera_run.frames.shape[1], precision=precision)
        t0 = time.perf_counter()
        metrics = run_pipeline(camera_run, backbone, out, config)
        return metrics, time.perf_counter() - t0


def phase_rows(metrics: dict, methods: tuple[str, ...]) -> dict[str, float]:
    t = metrics["timings"]
    fit = sum(metrics["methods"][m].get("fit_seconds", 0.0) for m in methods if m in metrics["methods"])
    rows = {"encode": t["encode_s"], "fit": fit, "predict (+ samples)": sum(t[f"{m}_s"] for m in methods) - fit}
    for label, keys in PHASES[1:]:
        rows[label] = sum(t.get(k, 0.0) for k in keys)
    return rows


def render_video_run(n: int, size: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """The demo's scene over an ``n``-frame phone trajectory rendered into ``folder/run.mp4`` and
    ``folder/poses.txt`` (TUM), 500 frames at a time (never the whole run in memory); reused when
    both exist."""
    import numpy as np

    from sequences.capture.video import VideoWriter
    from sequences.poses.formats import write_poses
    from sequences.poses.trajectory import PoseTrajectory
    from sequences.synthetic import (_PHONE_DEFAULT_SCENE, intrinsics_from_fov, phone_trajectory, render_views,
                                     tabletop_scene)

    video, poses = folder / "run.mp4", folder / "poses.txt"
    if video.exists() and poses.exists():
        return video, poses
    folder.mkdir(parents=True, exist_ok=True)
    t, R, T, _ = phone_trajectory(n, 30.0, seed)
    scene, K = tabletop_scene(_PHONE_DEFAULT_SCENE, seed=seed), intrinsics_from_fov(55.0, size)
    with VideoWriter(video, 30.0, progress=True, total=n) as writer:
        for s in range(0, n, 500):
            writer.write(render_views(scene, R[s : s + 500], T[s : s + 500], K, size)[0])
    write_poses(poses, PoseTrajectory(np.asarray(t), np.asarray(R), np.asarray(T)), "tum")
    return video, poses


def long_run(args) -> None:
    """``viewgp interpolate`` on a rendered video of ``args.frames`` frames, timed as a child process."""
    import json
    import shutil
    import subprocess

    folder = Path(args.workdir or Path.home() / ".cache" / "viewgp-bench" / f"phone-{args.frames}-{args.size}")
    t0 = time.perf_counter()
    video, poses = render_video_run(args.frames, args.size, folder)
    print(f"rendered run: {video} ({time.perf_counter() - t0:.0f} s; reused when present)")
    for prec in args.precisions:
        out = folder / f"out-{prec}"
        shutil.rmtree(out, ignore_errors=True)  # its cache would spare the encoding
        cmd = [sys.executable, "-m", "sequences.cli", "interpolate", "--video", str(video), "--poses", str(poses),
               "--keyframes", args.keyframes, "--out", str(out), "--overwrite", "--output-size", str(args.size),
               "--precision", prec] + (["--quiet"] if args.quiet else [])
        t0 = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rc = subprocess.call(cmd, cwd=Path(__file__).resolve().parents[1])
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far
        if rc != 0:
            sys.exit(f"viewgp interpolate exited with {rc}")
        metrics = json.loads((out / "metrics.json").read_text())
        t, n = metrics["timings"], metrics["n_frames"]
        methods = tuple(m for m in metrics["methods"] if f"{m}_s" in t)  # the fitted methods, timed as <m>_s
        print(f"\nviewgp interpolate, {n} frames streamed from {video.name} ({args.keyframes}, "
              f"{metrics['n_observed']} keyframes, {args.size} px, samples in {metrics['precision']['precision']}): "
              "seconds (frames/s)")
        for label, v in phase_rows(metrics, methods).items():
            print(f"  {label:<20}  {v:8.2f} ({n / max(v, 1e-9):6.0f})")
        print(f"  {'whole command':<20}  {wall:8.2f} ({n / wall:6.0f})")
        print(f"  peak RSS {max(peak, before) / 2**20:.2f} GB; headline {metrics['headline']} held-out MSE "
              f"{metrics['methods'][metrics['headline']]['mse_held_out']:.5f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=120, help="frames in the rendered run (default 120, the demo's)")
    p.add_argument("--size", type=int, default=256, help="frame and output size (default 256)")
    p.add_argument("--keyframes", default="every:10")
    p.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16", "auto"],
                   help="default: fp32 and bf16 (long runs: auto)")
    p.add_argument("--stream-from", type=int, default=2000,
                   help="runs of more frames are rendered to a video and run through viewgp interpolate (default 2000)")
    p.add_argument("--workdir", default=None, help="folder of the rendered long run (default ~/.cache/viewgp-bench/...)")
    p.add_argument("--quiet", action="store_true", help="long runs: no progress bars")
    args = p.parse_args()
    print(cpu_line())
    if args.frames > args.stream_from:
        args.precisions = args.precisions or ["auto"]
        return long_run(args)
    args.precisions = args.precisions or ["fp32", "bf16"]
    methods = ("view", "time", "linear")  # the demo's

    print(f"precision='auto' picks {choose_precision('auto')}")
    backbone = load_default("cpu")
    t0 = time.perf_counter()
    camera_run = phone_run(args.frames, size=args.size, seed=0)
    render_s = time.perf_counter() - t0
    camera_run = camera_run.with_observed(parse_keyframes(args.keyframes, len(camera_run),
                                                          camera_run.pose_features(with_time=True)))
    n = len(camera_run)
    # Warm-up on a small run: one-off costs (library initialisation, first kernel calls) are not a phase.
    small = phone_run(20, size=32, seed=1)
    run_once(small.with_observed(parse_keyframes("every:5", len(small))), backbone, "fp32", methods)
    results = {}
    for prec in args.precisions:
        metrics, wall = run_once(camera_run, backbone, prec, methods)
        results[prec] = (phase_rows(metrics, methods), wall, metrics)
        print(f"  ({prec}: pipeline {wall:.1f} s, samples decoded in {metrics['precision']['precision']})", flush=True)

    names = list(results)
    print(f"\nthe demo's pipeline: {n} frames, {int(camera_run.observed.sum())} keyframes ({args.keyframes}), "
          f"{args.size} px; seconds (frames/s)")
    print(f"  {'phase':<20}" + "".join(f"  {name:>16}" for name in names))
    print(f"  {'render':<20}" + "".join(f"  {render_s:8.2f} ({n / render_s:5.0f})" for _ in names))
    for label in results[names[0]][0]:
        cells = [results[name][0][label] for name in names]
        print(f"  {label:<20}" + "".join(f"  {v:8.2f} ({n / max(v, 1e-9):5.0f})" for v in cells))
    print(f"  {'pipeline wall':<20}" + "".join(f"  {results[name][1]:8.2f}        " for name in names))
    print(f"  {'demo (render + it)':<20}" + "".join(f"  {render_s + results[name][1]:8.2f}        " for name in names))
    if len(names) == 2:
        a, b = names
        print(f"  {a} / {b} pipeline wall: {results[a][1] / results[b][1]:.2f}")
        head = results[a][2]["headline"]
        ma, mb = (results[k][2]["methods"][head]["mse_held_out"] for k in names)
        print(f"  {head} (headline) held-out MSE {a} {ma:.5f}, {b} {mb:.5f} (the samples' precision enters through "
              "the sd maps that weight the fusion)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
    main()
