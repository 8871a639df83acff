"""``viewgp age train|apply|eval``: face aging by chained translators (generative.aging.chain)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sequences.cli.backbones import add_translator_model_args, translator_model
from sequences.cli.options import UsageError, add_device_arg, non_negative_int, positive_int, unit_interval

EPILOG = """examples:
  # bin labelled faces into the domains 15 ... 65, train a translator per stage and the greedy re-use
  # chain; without --estimator our small age regressor is trained on the labels to score the chain
  viewgp age train --data faces/ --labels faces/labels.csv --out runs/aging --image-size 64 --steps 20000

  # no labels: bin (and score) with your own age estimator (TorchScript file or our age_estimator.pt)
  viewgp age train --data faces/ --estimator my_age_net.pt --out runs/aging

  # age one face from the 25 domain to 65 (65:25 goes younger), as a labelled strip
  viewgp age apply --chain runs/aging --image face.png --stages 25:65 --out strip.png

  # the per-stage table again (mean estimated age of translated validation faces and its increase)
  viewgp age eval --chain runs/aging

run folder: domains/{train,val}/age_<c>/, fresh_<a>_<b>/ and reuse_<a>_<b>/ translator runs (resumable:
run the same command again after a kill), chain.json (greedy), chain_separate.json, selection.json,
evaluation.txt / evaluation.json.
"""


def _centres(text: str) -> tuple:
    try:
        cs = tuple(sorted(int(v) for v in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ages separated by commas (e.g. 15,25,35), got {text!r}") from None
    if len(cs) < 2:
        raise argparse.ArgumentTypeError("need at least two domain centres")
    return cs


def register(subparsers) -> None:
    """Add ``age`` with its sub-commands ``train``, ``apply`` and ``eval``."""
    p = subparsers.add_parser(
        "age",
        help="face aging by recursively chained CycleGAN translators (train, apply, eval)",
        description="Face aging (Publication IV): translators between age domains, re-used greedily when an "
        "age estimator says a re-trained earlier translator is no worse, chained forward and backward in age.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="age_command", required=True, metavar="{train,apply,eval}")
    _register_train(sub)
    _register_apply(sub)
    _register_eval(sub)


def _register_train(sub) -> None:
    t = sub.add_parser("train", help="bin faces by age, train the translators and the re-use chain",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)  # fmt: skip
    t.add_argument("--data", required=True, help="folder of face images (JPEG/PNG, recursive)")
    t.add_argument("--labels", help="CSV with columns file,age (file relative to --data)")
    t.add_argument("--estimator", help="age estimator file: TorchScript, or an age_estimator.pt of ours "
                   "(default: train our regressor on --labels)")  # fmt: skip
    t.add_argument("--out", required=True, help="run folder (created; an existing one is resumed)")
    t.add_argument("--centres", type=_centres, default=(15, 25, 35, 45, 55, 65), help="domain centres (default 15,25,...,65)")
    t.add_argument("--image-size", type=positive_int, default=64, help="translator image size, a multiple of 4 (default 64)")
    t.add_argument("--steps", type=positive_int, default=10_000, help="iterations per fresh translator (default 10000; paper 600k)")
    t.add_argument("--retrain-steps", type=positive_int, help="iterations per partial re-training (default steps / 2)")
    t.add_argument("--batch-size", type=positive_int, default=1, help="images per step (default 1, the paper's)")
    add_translator_model_args(t)
    t.add_argument("--val-fraction", type=unit_interval, default=0.1, help="validation share of each domain (default 0.1)")
    t.add_argument("--tolerance", type=float, default=0.0, help="years a re-used translator may lose and still be kept (default 0)")
    t.add_argument("--estimator-steps", type=non_negative_int, default=1500, help="training steps of our regressor (default 1500)")
    add_device_arg(t, "cpu")
    t.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--seed", type=int, default=0, help="seed of the splits, weights and training (default 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=run_train)


def _register_apply(sub) -> None:
    a = sub.add_parser("apply", help="age one face along a trained chain; writes a labelled strip")
    a.add_argument("--chain", required=True, help="run folder of `viewgp age train`, or a chain JSON file")
    a.add_argument("--image", required=True, help="face image (square crop is taken)")
    a.add_argument("--stages", required=True, help="START:END domain ages, e.g. 25:65 (older) or 65:25 (younger)")
    a.add_argument("--out", required=True, help="output PNG strip")
    a.add_argument("--separate", action="store_true", help="use chain_separate.json (one fresh translator per stage)")
    a.add_argument("--cell", type=positive_int, default=96, help="pixels per face in the strip (default 96)")
    a.set_defaults(func=run_apply)


def _register_eval(sub) -> None:
    e = sub.add_parser("eval", help="per-stage mean estimated age of the translated validation faces")
    e.add_argument("--chain", required=True, help="run folder of `viewgp age train`")
    e.add_argument("--estimator", help="age estimator file (default: the run's age_estimator.pt)")
    e.set_defaults(func=run_eval)


def _estimator_for(run: Path, path):
    from generative.aging.age_estimator import load_age_estimator

    path = Path(path) if path else run / "age_estimator.pt"
    if not path.is_file():
        raise FileNotFoundError(f"age estimator not found: {path} (give --estimator FILE)")
    return load_age_estimator(path)


def run_train(args) -> int:
    import torch

    from generative.aging.age_estimator import load_age_estimator
    from generative.aging.chain import AgingConfig, estimate_folder_ages, fit_age_regressor, read_age_labels, train_aging

    if args.threads:
        torch.set_num_threads(args.threads)
    data, out = Path(args.data), Path(args.out)
    if not data.is_dir():
        raise FileNotFoundError(f"face folder not found: {data}")
    if not args.labels and not args.estimator:
        raise UsageError("give --labels CSV (file,age) or --estimator FILE: the faces must be binned by age somehow")
    out.mkdir(parents=True, exist_ok=True)
    estimator = load_age_estimator(args.estimator) if args.estimator else None
    labels = read_age_labels(args.labels, data) if args.labels else estimate_folder_ages(data, estimator, args.image_size)
    if estimator is None:
        est_path = out / "age_estimator.pt"
        if not est_path.is_file():
            print(f"training the age regressor on {len(labels)} labelled faces ({args.estimator_steps} steps)")
            fit_age_regressor(labels, args.estimator_steps, args.seed).save(est_path)
        estimator = load_age_estimator(est_path)
    cfg = AgingConfig(
        out_dir=str(out), centres=args.centres, val_fraction=args.val_fraction, image_size=args.image_size,
        steps=args.steps, retrain_steps=args.retrain_steps, batch_size=args.batch_size,
        model=translator_model(args),
        tolerance=args.tolerance, seed=args.seed, device=args.device, threads=args.threads, progress=not args.quiet,
    )  # fmt: skip
    train_aging(cfg, labels, estimator)
    print(f"chain: {out / 'chain.json'} (separate translators: {out / 'chain_separate.json'}); table: {out / 'evaluation.txt'}")
    return 0


def run_apply(args) -> int:
    from generative.aging.chain import AgingChain, aging_strip, load_face, parse_stages
    from generative.images.imageio import write_image

    chain_path = Path(args.chain)
    if args.separate:
        chain_path = (chain_path if chain_path.is_dir() else chain_path.parent) / "chain_separate.json"
    chain = AgingChain.load(chain_path)
    try:
        start, end = parse_stages(args.stages)
    except ValueError as exc:
        raise UsageError(f"--stages: {exc}") from None
    chain.steps(start, end)  # validates the ages before any work
    strip = aging_strip(chain, load_face(args.image, chain.image_size), start, end, cell=args.cell)
    out = write_image(args.out, strip)
    print(f"{out}: {len(chain.steps(start, end))} translation steps from {start} to {end}")
    return 0


def run_eval(args) -> int:
    from generative.aging.chain import AgingChain, domain_dir, estimate_ages, evaluate_chain, format_evaluation, load_folder_images

    run = Path(args.chain)
    estimator = _estimator_for(run, args.estimator)
    chains = {"separate": AgingChain.load(run / "chain_separate.json"), "reused": AgingChain.load(run / "chain.json")}
    if (run / "chain_reuse_candidates.json").is_file():  # runs made before it was written lack it
        chains["re-use candidate"] = AgingChain.load(run / "chain_reuse_candidates.json")
    size = chains["reused"].image_size
    val = {c: load_folder_images(domain_dir(run, "val", c), size) for c in chains["reused"].centres}
    val_age = {c: estimate_ages(estimator, v) for c, v in val.items()}
    evaluation = {name: evaluate_chain(ch, val, estimator, val_age) for name, ch in chains.items()}
    sys.stdout.write(format_evaluation(evaluation, val_age))
    return 0
