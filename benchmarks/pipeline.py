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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=120, help="frames in the rendered run (default 120, the demo's)")
    p.add_argument("--size", type=int, default=256, help="frame and output size (default 256)")
    p.add_argument("--keyframes", default="every:10")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "auto"])
    args = p.parse_args()
    methods = ("view", "time", "linear")  # the demo's

    print(cpu_line())
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
