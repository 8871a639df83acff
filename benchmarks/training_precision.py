"""Training images/s of the ``reconstruction`` recipe in float32 and bfloat16, NCHW and channels-last,
all in one process, with what ``precision="auto"`` picks on this machine and why.

One AGE training step of a Pioneer of the bundled default's widths at the final resolution (the recipe's losses, optimiser and EMA;
the phase the bundled backbone spends most of its images in), timed over ``--steps`` steps after two
warm-up steps, best of ``--reps`` windows. Only ratios within one run are comparable across machines.

    .venv/bin/python benchmarks/training_precision.py --resolution 64 --batch 32
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative.backbones.pioneer import PioneerAutoencoder  # noqa: E402
from generative.precision import choose_precision, cpu_bf16_native  # noqa: E402
from generative.training.distributed import init_distributed  # noqa: E402
from generative.training.loop import AGETrainer, TrainConfig  # noqa: E402
from generative.training.recipes import recipe_fields  # noqa: E402


def images_per_s(args, precision: str, channels_last: bool) -> float:
    fields = recipe_fields("reconstruction") | {"precision": precision, "channels_last": channels_last}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(variant="pioneer", resolution=args.resolution, synthetic=args.batch, batch_size=args.batch,
                          channel_base=args.channel_base, max_channels=args.max_channels, min_channels=args.min_channels,
                          out_dir=tmp, **fields)
        torch.manual_seed(0)
        model = PioneerAutoencoder(cfg.model_config()).to(args.device)
        x = torch.rand(args.batch, 3, args.resolution, args.resolution, device=args.device) * 2 - 1
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        trainer = AGETrainer(model, cfg, init_distributed(args.device))
        ps = cfg.schedule().at(10**9)  # the last phase: final resolution, no fade
        trainer.set_phase(ps)
        model.set_phase(ps.phase, 1.0)
        best = float("inf")
        with cfg.autocast(torch.device(args.device)):
            t0 = time.perf_counter()
            trainer.train_step(x, ps)
            if time.perf_counter() - t0 > args.slow_step_s:  # emulated bfloat16: one more step is the measure
                t0 = time.perf_counter()
                trainer.train_step(x, ps)
                return args.batch / (time.perf_counter() - t0)
            trainer.train_step(x, ps)
            for _ in range(args.reps):
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    trainer.train_step(x, ps)
                best = min(best, time.perf_counter() - t0)
    return args.steps * args.batch / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    # the bundled default backbone's widths (examples/train_default_backbone.py)
    p.add_argument("--channel-base", type=int, default=1024)
    p.add_argument("--max-channels", type=int, default=128)
    p.add_argument("--min-channels", type=int, default=32)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--slow-step-s", type=float, default=20.0,
                   help="a first step slower than this is timed once more and not repeated (emulated bfloat16)")
    args = p.parse_args()
    auto = choose_precision("auto", args.device)
    native, why = cpu_bf16_native()
    print(f"device {args.device}, {torch.get_num_threads()} threads; CPU bfloat16: {why}")
    print(f"precision='auto' picks {auto.name}: {auto.reason}")
    print(f"reconstruction recipe, Pioneer {args.resolution} px (channel base {args.channel_base}, max "
          f"{args.max_channels}), batch {args.batch}:")
    print(f"  {'precision':<9}  {'layout':<13}  {'images/s':>8}  {'/ fp32 NCHW':>11}", flush=True)
    base = None
    for prec in ("fp32", "bf16"):
        for cl in (False, True):
            ips = images_per_s(args, prec, cl)
            base = base or ips
            print(f"  {prec:<9}  {'channels-last' if cl else 'NCHW':<13}  {ips:8.1f}  {ips / base:11.2f}", flush=True)


if __name__ == "__main__":
    main()
