"""Train a CycleGAN translator pair between image folders (issue 8 item 1; SPEC 5), resumably.

:func:`train_translator` reads unpaired images from one or more ``(A folder, B folder)`` pairs. With one
pair it is plain CycleGAN; with several, every step does one update per pair with the *same* networks --
the original's ``--triplet`` mode, used by the aging chain to re-train a translator jointly on the
transition it already does and the next one (:mod:`generative.aging.chain`).

Run folder ``out_dir``: ``checkpoints/ckpt_<step>.pt`` (+ ``latest``; the whole trainer state, the batch
sampler's RNG and the global RNG, so ``resume=True`` continues bit-exactly), ``metrics.jsonl`` (losses every
``log_every`` steps), ``samples/latest.png`` (rows: A, G_ab(A), B, G_ba(B)), ``tensorboard/`` (the same losses,
lr, images/s, the sample grid and the cycle reconstruction PSNR, with the iteration as step; see
:mod:`generative.training.tensorboard`), ``train_config.json`` and, at the end, ``translator.pt``: the two generators and their config, what :func:`generative.aging.translator.load_translator`
and the aging chain read.

A run can start from an earlier one (``init``): a run folder continues from its newest checkpoint with
its discriminators and Adam state (the partial re-training of the paper); a ``translator.pt`` file gives
the generators only (fresh discriminators).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor

from generative.backbones.checkpoint import CheckpointError, CheckpointManager, read_checkpoint
from generative.images.datasets import ImageFolderDataset
from generative.backbones.configs import ConfigDict
from generative.images.fileio import atomic_write_json, remove_stale_temporaries
from generative.metrics import psnr
from generative.aging.translator import TRANSLATOR_KIND, TranslatorConfig, export_translator
from generative.aging.cyclegan import CycleGANTrainer
from generative.training.sample_grid import save_sample_grid
from generative.training.tensorboard import TENSORBOARD_DIR, EventLog

__all__ = ["TranslatorTrainConfig", "train_translator", "TRAINING_KIND"]

TRAINING_KIND = "translator_training"


@dataclass
class TranslatorTrainConfig(ConfigDict):
    """One translator run. ``pairs``: ``[(A folder, B folder), ...]``; ``steps`` counts iterations (one
    generator + discriminator update per pair each); ``model``: :class:`TranslatorConfig` fields."""

    pairs: list = field(default_factory=list)
    out_dir: str = "runs/translator"
    steps: int = 10_000
    batch_size: int = 1  # the paper's
    image_size: int = 64
    flip: bool = True
    cache_images: bool = True
    model: dict = field(default_factory=dict)
    init: Optional[str] = None
    seed: int = 0
    device: str = "cpu"
    threads: Optional[int] = None
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    sample_every: int = 1000
    log_every: int = 50
    progress: bool = True
    tensorboard: Optional[bool] = None  # event files in <out_dir>/tensorboard: None where installed, True required

    def __post_init__(self) -> None:
        self.pairs = [tuple(str(p) for p in pair) for pair in self.pairs]
        if not self.pairs or any(len(pair) != 2 for pair in self.pairs):
            raise ValueError(f"pairs must be a non-empty list of (A folder, B folder), got {self.pairs!r}")
        for name in ("steps", "batch_size", "image_size", "checkpoint_every", "keep_checkpoints", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TranslatorTrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two stride-2 convolutions), got {self.image_size}")
        layers = TranslatorConfig.from_dict(self.model).disc_layers  # validates the model fields now
        if self.image_size < 3 * 2**layers:  # the PatchGAN's last normalised map must be larger than 1x1
            raise ValueError(
                f"image_size {self.image_size} is too small for a PatchGAN with {layers} stride-2 layers "
                f"(needs >= {3 * 2**layers}); use fewer discriminator layers (disc_layers / --disc-layers)"
            )

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["pairs"] = [list(p) for p in self.pairs]
        return d


def _domain(folder: str, cfg: TranslatorTrainConfig) -> ImageFolderDataset:
    return ImageFolderDataset(folder, cfg.image_size, flip=cfg.flip, cache=cfg.cache_images)


def _batch(ds: ImageFolderDataset, n: int, gen: torch.Generator) -> Tensor:
    idx = torch.randint(len(ds), (n,), generator=gen).tolist()
    return torch.stack([ds[i] for i in idx])


@torch.no_grad()
def _save_samples(trainer: CycleGANTrainer, a: Tensor, b: Tensor, path: Path, events: EventLog) -> None:
    ab, ba = trainer.translate(a, "ab").cpu(), trainer.translate(b, "ba").cpu()
    grid = torch.cat([a, ab, b, ba])
    save_sample_grid(grid, path, nrow=a.shape[0], size=max(a.shape[-1], 64))
    if events.active:  # the cycle A -> B -> A (and back) is the translator's reconstruction check
        aba, bab = trainer.translate(ab, "ba").cpu(), trainer.translate(ba, "ab").cpu()
        events.image_grid("samples/a_ab_b_ba", trainer.step, grid, nrow=a.shape[0], size=max(a.shape[-1], 64))
        events.scalars(trainer.step, {"recon/cycle_psnr_a_db": float(psnr(a, aba.clamp(-1, 1))),
                                      "recon/cycle_psnr_b_db": float(psnr(b, bab.clamp(-1, 1)))})
        events.flush()


def _load_init(trainer: CycleGANTrainer, init: str) -> None:
    """Start from an earlier run folder (full state, RNG untouched) or a ``translator.pt`` (generators)."""
    path = Path(init)
    if path.is_dir():
        path = CheckpointManager(path / "checkpoints").latest()
    if not path.is_file():
        raise FileNotFoundError(f"translator to start from not found: {init} (a run folder or a translator.pt file)")
    payload = read_checkpoint(path)
    if payload.get("kind") == TRAINING_KIND:
        trainer.load_state_dict(payload["model"], restore_rng=False)
        trainer.step = 0
    elif payload.get("kind") == TRANSLATOR_KIND:
        saved = TranslatorConfig.from_dict(dict(payload["config"]["model"]))
        if saved != trainer.config:
            raise ValueError(f"{path} holds a translator built as {saved}, this run is {trainer.config}")
        trainer.g_ab.load_state_dict(payload["model"]["g_ab"])
        trainer.g_ba.load_state_dict(payload["model"]["g_ba"])
    else:
        raise CheckpointError(f"{path} holds a '{payload.get('kind')}' checkpoint, not a translator")


def train_translator(config: TranslatorTrainConfig, resume: Union[bool, str, Path] = False) -> CycleGANTrainer:
    """Train (or, with ``resume``, continue) a translator pair; returns the trainer.

    ``resume=True`` continues from the newest checkpoint in ``<out_dir>/checkpoints`` (a path: from that
    file); the stored config wins over ``config`` except ``steps`` and the run-management fields.
    """
    out = Path(config.out_dir)
    manager = CheckpointManager(out / "checkpoints", keep=config.keep_checkpoints)
    payload = None
    if resume:
        path = manager.latest() if resume is True else Path(resume)
        payload = read_checkpoint(path)
        if payload.get("kind") != TRAINING_KIND:
            raise CheckpointError(f"{path} holds a '{payload.get('kind')}' checkpoint, not a translator training state")
        stored = payload["training"]["config"]
        keep = {"steps", "out_dir", "device", "threads", "checkpoint_every", "keep_checkpoints", "sample_every",
                "log_every", "progress", "tensorboard"}  # fmt: skip
        config = TranslatorTrainConfig.from_dict({**stored, **{k: getattr(config, k) for k in keep}})
    elif manager.checkpoints():
        raise FileExistsError(
            f"{out} already holds checkpoints of a translator run ({manager.checkpoints()[-1].name}); "
            "resume it (resume=True / --resume) or choose another output folder"
        )
    if config.threads:
        torch.set_num_threads(int(config.threads))
    domains = [(_domain(a, config), _domain(b, config)) for a, b in config.pairs]
    trainer = CycleGANTrainer(TranslatorConfig.from_dict(config.model), device=config.device, seed=config.seed)
    sampler = torch.Generator().manual_seed(config.seed + 3)
    if payload is not None:
        trainer.load_state_dict(payload["model"])
        sampler.set_state(payload["training"]["sampler"])
    else:
        if config.init:
            _load_init(trainer, config.init)
        torch.manual_seed(config.seed)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out, out / "samples", manager.directory)  # what a kill mid-write left behind
    atomic_write_json(out / "train_config.json", config.to_dict())

    fixed = torch.Generator().manual_seed(1234)  # the same sample images every time, independent of training
    a0, b0 = domains[0]
    show = min(8, a0.num_images(), b0.num_images())
    grid_a = torch.stack([a0[i] for i in torch.randperm(a0.num_images(), generator=fixed)[:show].tolist()])
    grid_b = torch.stack([b0[i] for i in torch.randperm(b0.num_images(), generator=fixed)[:show].tolist()])

    def save_state() -> None:
        manager.save(trainer.step, kind=TRAINING_KIND, config=trainer.config.to_dict(), model_state=trainer.state_dict(),
                     training={"config": config.to_dict(), "sampler": sampler.get_state()})  # fmt: skip

    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=min(trainer.step, config.steps), unit="step", desc="translator",
               disable=not config.progress, dynamic_ncols=True)  # fmt: skip
    t_last, step_last = time.perf_counter(), trainer.step
    images_per_step = 2 * config.batch_size * len(domains)  # an A and a B batch per pair
    # one stream per run folder: a resumed run hides what an earlier start wrote after its checkpoint
    events = EventLog(out / TENSORBOARD_DIR, config.tensorboard, purge_step=trainer.step + 1)
    with open(out / "metrics.jsonl", "a") as log, events:
        while trainer.step < config.steps:
            sums: dict[str, float] = {}
            step = trainer.step
            for da, db in domains:
                losses = trainer.train_step(_batch(da, config.batch_size, sampler), _batch(db, config.batch_size, sampler))
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v / len(domains)
            trainer.step = step + 1  # one iteration over all pairs counts as one step
            bar.update(1)
            if trainer.step % config.log_every == 0 or trainer.step == config.steps:
                now = time.perf_counter()
                rate = (trainer.step - step_last) / max(now - t_last, 1e-9)
                t_last, step_last = now, trainer.step
                log.write(json.dumps({"step": trainer.step, "steps_per_s": round(rate, 2),
                                      **{k: round(v, 6) for k, v in sums.items()}}) + "\n")  # fmt: skip
                log.flush()
                events.scalars(trainer.step, {**{f"loss/{k}": v for k, v in sums.items()},
                                              "train/lr": trainer.opt_g.param_groups[0]["lr"],
                                              "train/steps_per_s": rate, "train/images_per_s": rate * images_per_step})
                events.flush()
                bar.set_postfix(g=f"{sums['g_total']:.3f}", cyc=f"{sums['cycle_a'] + sums['cycle_b']:.3f}",
                                d=f"{sums['d_a'] + sums['d_b']:.3f}")  # fmt: skip
            if config.sample_every and trainer.step % config.sample_every == 0:
                _save_samples(trainer, grid_a, grid_b, out / "samples" / "latest.png", events)
            if trainer.step % config.checkpoint_every == 0 and trainer.step < config.steps:
                save_state()
        bar.close()
        save_state()
        _save_samples(trainer, grid_a, grid_b, out / "samples" / "latest.png", events)
    export_translator(trainer, out / "translator.pt", config.image_size)
    return trainer
