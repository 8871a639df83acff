"""Train a Pioneer or Balanced Pioneer model: progressive growing + AGE encoder/decoder updates.

Read top to bottom: :class:`TrainConfig` (every knob, with the paper's values as defaults),
:class:`AGETrainer` (one training step = 1 encoder update + ``decoder_updates`` decoder updates + EMA),
:func:`train` (data, phases, logging, sample grids, checkpoints, resume, export).

One step, with ``x`` real images at the phase's resolution (faded during a fade-in) and ``z`` fresh
prior draws on the unit sphere:

* encoder update (decoder frozen, ``G(z)`` detached, through the sample pool once ``alpha = 1``):
  ``match_x * L1(G(E(x)), x) + max(-M, 0.1 KL(E(x)) - 0.1 KL(E(G(z))))`` (no clipping when M = 0);
  ``match_x`` is 1, times 1.5 in the stabilisation half of a phase;
* decoder update (encoder frozen, gradients flow *through* E into G):
  ``0.1 KL(E(G(z))) + 100 * latent_cosine_loss(E(G(z)), z)``;
* ``decoder_ema <- d decoder_ema + (1 - d) decoder`` with ``d = ema_decay`` (0.999), warmed up over the
  first steps (:func:`generative.training.ema.warmed_up_decay`) so an early export is the trained network.

Two recipes (:mod:`generative.training.recipes`) preset the losses and the optimiser: ``paper`` (the
defaults here) and ``reconstruction`` (what trains in a short CPU run).

Multi-GPU: launch with ``torchrun --nproc_per_node=K`` (see :mod:`generative.training.distributed`); the
batch sizes are per process. Each net is wrapped in DistributedDataParallel for the update that trains
it and used unwrapped while frozen.
"""

from __future__ import annotations

import functools
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from generative.backbones.checkpoint import CheckpointError, CheckpointManager, capture_rng_state, read_checkpoint, restore_rng_state
from generative.backbones.configs import ConfigDict
from generative.images.datasets import (ConcatImageDataset, ImageFolderDataset, IndexStream, PhotoCropDataset, StreamBatchSampler,
                    SyntheticImageDataset, stack_images)
from generative.images.fileio import atomic_write_json, remove_stale_temporaries
from generative.metrics import psnr, rmse
from generative.backbones.pioneer import PioneerAutoencoder, PioneerConfig
from generative.precision import PRECISIONS, Precision, choose_precision
from generative.training.buffer import SamplePool
from generative.training.distributed import DistContext, init_distributed
from generative.training.ema import ema_update, warmed_up_decay
from generative.training.losses import empirical_kl, encoder_kl_term, latent_cosine_loss, reconstruction_l1
from generative.training.registry import TrainerEntry, register_trainer, trainer_entry
from generative.training.sample_grid import save_sample_grid
from generative.training.tensorboard import TENSORBOARD_DIR, EventLog
from generative.training.schedule import PhaseState, ProgressiveSchedule, default_images_per_phase, fade_images

__all__ = ["TrainConfig", "AGETrainer", "train", "make_dataset", "architecture_of", "pool_capacity", "eta_seconds", "format_duration",
           "reconstruction_check"]

LOSS_NAMES = ("l1", "kl_real", "kl_fake", "kl_term", "loss_e", "kl_gen", "latent", "loss_g")


@dataclass
class TrainConfig(ConfigDict):
    """Everything a training run depends on; saved in every checkpoint.

    ``variant`` is one of :func:`generative.training.registry.registered_variants` (``"pioneer"``,
    ``"balanced"``, ``"automodulator"``). Resolution-dependent values (``batch_size``, ``lr``,
    ``margin``) take one number for all resolutions, a ``{resolution: value}`` dict, or ``None`` for
    the defaults of :mod:`generative.training.schedule`. :meth:`from_dict` refuses unknown keys by
    name; keys it lacks (a checkpoint written before a field existed) take the defaults.
    """

    variant: str = "balanced"  # a registered training variant
    resolution: int = 64  # final resolution
    out_dir: str = "runs/pioneer"
    data: Optional[str] = None  # image folder (recursive JPEG/PNG)
    # Photographs trained on as random crops at several scales with flips and a colour jitter
    # (generative.images.datasets.PhotoCropDataset), beside or instead of ``data``; ``photo_crops`` crops of each per epoch.
    photos: Union[None, str, list] = None  # a folder or a list of folders
    photo_crops: int = 64
    synthetic: int = 0  # > 0: train on this many SyntheticImageDataset images instead
    flip: bool = True  # random horizontal flips (as dataset items, see generative.images.datasets)
    cache_images: bool = False  # keep decoded images in memory (small datasets)
    # model
    latent_dim: int = 512
    channel_base: int = 16384
    max_channels: int = 512
    min_channels: int = 1
    # schedule
    images_per_phase: Union[None, int, dict] = None  # None: default_images_per_phase(resolution)
    total_images: Optional[int] = None  # None: one full phase per resolution
    fade_fraction: float = 0.5
    batch_size: Union[None, int, dict] = None
    lr: Union[None, float, dict] = None
    margin: Union[None, float, dict] = None
    betas: Optional[tuple] = None  # None: (0, 0.99) Pioneer, (0, 0.9) Balanced
    # losses (code scale)
    kl_weight: float = 0.1
    recon_weight: float = 1.0
    stabilise_recon_mult: float = 1.5
    latent_weight: float = 100.0
    latent_loss: str = "code"  # "code": 2 - cos / D; "thesis": 1 - cos
    # AGE's generator-side match_x: 0 in the paper recipe (the decoder never sees a pixel loss). > 0 also
    # trains the decoder to reconstruct real images from their (detached) codes, which makes short CPU
    # runs reconstruct usefully long before the adversarial game alone would.
    decoder_recon_weight: float = 0.0
    decoder_updates: int = 2
    ema_decay: float = 0.999
    # Warm the EMA decay up from the step counter (ema.warmed_up_decay); False: the fixed decay from the
    # first step (the behaviour before the warm-up, which leaves short runs' exports near the initial weights).
    ema_warmup: bool = True
    pool_size: Optional[int] = None  # None: 200 below 256 px, 100 from 256 px; 0 disables
    # the variant's own loss switches (its registered losses_class as a dict; the automodulator's are
    # generative.training.automodulator_loop.AutomodulatorLosses); the name is kept for old checkpoints
    automodulator: Optional[dict] = None
    # Start from these weights (a training checkpoint or an export of the same architecture) instead of a
    # fresh network: the model is fully grown, so training begins after growth (at ``growth_images`` of the
    # schedule, at the final resolution) and ``total_images`` counts from 0 as always.
    init_from: Optional[str] = None
    # run
    seed: int = 0
    device: str = "cpu"
    threads: Optional[int] = None  # torch CPU threads
    num_workers: int = 0
    checkpoint_every: int = 50_000  # images
    keep_checkpoints: int = 3
    sample_every: int = 20_000  # images
    log_every: int = 20  # steps
    progress: bool = True
    # TensorBoard event files in <out_dir>/tensorboard (generative.training.tensorboard): None writes them where the
    # tensorboard package is installed (one line says so where it is not), True requires it, False: none.
    tensorboard: Optional[bool] = None
    # "bf16": forward passes under bfloat16 autocast (weights, optimizer and losses stay float32); on CPUs
    # with AMX/AVX-512-BF16 (and on recent GPUs) 2-3x more images/s, on CPUs without them many times
    # slower. "fp32": everything in float32. "auto": bf16 exactly where the device computes it natively
    # (generative.precision), decided again on every start, so a run resumed on other hardware re-decides.
    precision: str = "fp32"
    channels_last: bool = False  # NHWC activations: another ~1.3x for bf16 convolutions on CPU

    # Fields a resumed run may change; everything else comes from the checkpoint.
    RESUME_OVERRIDES = (
        "out_dir", "data", "device", "threads", "num_workers", "total_images", "checkpoint_every",
        "keep_checkpoints", "sample_every", "log_every", "progress", "cache_images", "photos", "tensorboard",
    )

    def __post_init__(self) -> None:
        if self.data is None and self.photos is None and self.synthetic <= 0:
            raise ValueError("no training data: give an image folder (data=...), a folder of photographs (photos=...) "
                             "or a synthetic dataset size (synthetic=N)")
        if self.photo_crops < 1:
            raise ValueError(f"photo_crops must be >= 1, got {self.photo_crops}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1 (steps), got {self.log_every}")
        if self.decoder_updates < 1:
            raise ValueError(f"decoder_updates must be >= 1, got {self.decoder_updates}")
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"ema_decay must be in [0, 1], got {self.ema_decay}")
        for name in ("kl_weight", "recon_weight", "latent_weight", "decoder_recon_weight"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.betas is not None and (len(self.betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in self.betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), e.g. (0.5, 0.99); got {self.betas}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {self.precision!r}")
        entry = trainer_entry(self.variant)  # ValueError listing the variants
        self.model_config()  # validates resolution / widths
        if entry.losses_class is not None:
            self.automodulator = entry.losses_class.from_dict(self.automodulator or {}).to_dict()
        elif self.automodulator:
            raise ValueError(f"automodulator loss settings were given for a '{self.variant}' model")

    def model_config(self):
        """The model description the variant's model class is built from (e.g. a PioneerConfig)."""
        return trainer_entry(self.variant).make_config(
            resolution=self.resolution,
            latent_dim=self.latent_dim,
            channel_base=self.channel_base,
            max_channels=self.max_channels,
            min_channels=self.min_channels,
        )

    def resolved_precision(self, device: torch.device) -> Precision:
        """``precision`` resolved for ``device`` (``"auto"`` by capability), with the reason."""
        return choose_precision(self.precision, device)

    def autocast(self, device: torch.device):
        """The mixed-precision context of the forward passes (a no-op where the precision resolves to fp32)."""
        return self.resolved_precision(device).autocast(device)

    def schedule(self) -> ProgressiveSchedule:
        return ProgressiveSchedule(
            self.resolution,
            self.images_per_phase or default_images_per_phase(self.resolution),
            variant=self.variant,
            batch_sizes=self.batch_size,
            learning_rates=self.lr,
            margins=self.margin,
            fade_fraction=self.fade_fraction,
        )

    def adam_betas(self) -> tuple:
        if self.betas is not None:
            return tuple(float(b) for b in self.betas)
        return tuple(trainer_entry(self.variant).adam_betas)

    def to_dict(self) -> dict:
        d = super().to_dict()
        if d["betas"] is not None:
            d["betas"] = list(d["betas"])
        return d


def pool_capacity(config: TrainConfig, resolution: int) -> int:
    if config.pool_size is not None:
        return config.pool_size
    return 200 if resolution < 256 else 100


class AGETrainer:
    """The optimizers, the sample pool and the AGE updates of one model (see module docstring)."""

    loss_names = LOSS_NAMES  # what train_step returns, in order (metrics.jsonl keys)

    def __init__(self, model: PioneerAutoencoder, config: TrainConfig, ctx: DistContext) -> None:
        self.model, self.config, self.ctx = model, config, ctx
        betas = config.adam_betas()
        lr0 = config.schedule().at(0).lr
        self.opt_e = torch.optim.Adam(model.encoder.parameters(), lr=lr0, betas=betas)
        self.opt_g = torch.optim.Adam(model.decoder.parameters(), lr=lr0, betas=betas)
        self.pool = SamplePool(pool_capacity(config, 4), seed=config.seed * 1000 + ctx.rank)
        self.pool_phase = 0
        self.step = 0  # updates made so far (set by train() on resume): drives the EMA warm-up
        # Trained nets go through DDP (gradient all-reduce); frozen ones are called directly.
        self.encoder_train, self.decoder_train = model.encoder, model.decoder
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            kw = dict(device_ids=ids, find_unused_parameters=True, broadcast_buffers=False)
            self.encoder_train = DDP(model.encoder, **kw)
            self.decoder_train = DDP(model.decoder, **kw)

    def set_phase(self, ps: PhaseState) -> None:
        self.model.set_phase(ps.phase, ps.alpha)
        for opt in (self.opt_e, self.opt_g):
            for group in opt.param_groups:
                group["lr"] = ps.lr
        if ps.phase != self.pool_phase:  # stored samples have the old resolution
            self.pool.reset(pool_capacity(self.config, ps.resolution))
            self.pool_phase = ps.phase

    def train_step(self, x: Tensor, ps: PhaseState) -> Tensor:
        """One encoder update and ``decoder_updates`` decoder updates on real batch ``x (B, 3, r, r)``;
        returns the detached losses ``(len(LOSS_NAMES),)`` (decoder terms from the last update)."""
        cfg, m = self.config, self.model
        b, phase, alpha = x.shape[0], ps.phase, ps.alpha

        # ---- encoder: pull real codes to the prior, push generated codes away, reconstruct x
        m.encoder.requires_grad_(True)
        m.decoder.requires_grad_(False)
        if cfg.kl_weight > 0:
            with torch.no_grad():
                fake = m.decoder(m.sample_prior(b), phase, alpha)
            if alpha >= 1.0:
                fake = self.pool.query(fake)
            codes = self.encoder_train(torch.cat([x, fake]), phase, alpha)  # one call: one DDP reduction
            z_real, z_fake = codes[:b], codes[b:]
            kl_real, kl_fake = empirical_kl(z_real), empirical_kl(z_fake)
        else:  # the KL game is off: generated images would only feed a term of weight 0
            z_real = self.encoder_train(x, phase, alpha)
            kl_real = empirical_kl(z_real.detach())
            kl_fake = torch.zeros_like(kl_real)
        l1 = reconstruction_l1(m.decoder(z_real, phase, alpha), x)
        match_x = cfg.recon_weight * (cfg.stabilise_recon_mult if ps.stabilising else 1.0)
        kl_term = encoder_kl_term(kl_real, kl_fake, cfg.kl_weight, ps.margin)
        loss_e = match_x * l1 + kl_term
        self.opt_e.zero_grad(set_to_none=True)
        loss_e.backward()
        self.opt_e.step()

        # ---- decoder: generated images must encode back to their latents and look like the prior
        m.encoder.requires_grad_(False)
        m.decoder.requires_grad_(True)
        for _ in range(cfg.decoder_updates):
            z = m.sample_prior(b)
            if cfg.decoder_recon_weight > 0:  # one decoder call for both halves: one DDP reduction
                out = self.decoder_train(torch.cat([z, z_real.detach()]), phase, alpha)
                generated, recon = out[:b], out[b:]
            else:
                generated, recon = self.decoder_train(z, phase, alpha), None
            z_gen = m.encoder(generated, phase, alpha)
            kl_gen = empirical_kl(z_gen)
            latent = latent_cosine_loss(z_gen, z, cfg.latent_loss)
            loss_g = cfg.kl_weight * kl_gen + cfg.latent_weight * latent
            if recon is not None:
                loss_g = loss_g + cfg.decoder_recon_weight * reconstruction_l1(recon, x)
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
        m.encoder.requires_grad_(True)

        self.update_ema(m.decoder)
        return torch.stack([l1, kl_real, kl_fake, kl_term, loss_e, kl_gen, latent, loss_g]).detach()

    def update_ema(self, decoder) -> None:
        """Move the EMA decoder towards ``decoder`` with this step's (warmed-up) decay; count the step."""
        decay = warmed_up_decay(self.config.ema_decay, self.step) if self.config.ema_warmup else self.config.ema_decay
        ema_update(self.model.decoder_ema, decoder, decay)
        self.step += 1

    # ---------------------------------------------------------------------- per-process state
    def rank_state(self) -> dict:
        """What differs between processes: RNG streams and the sample pool."""
        return {"rng": capture_rng_state(), "pool": self.pool.state_dict(), "pool_phase": self.pool_phase}

    def load_rank_state(self, state: dict) -> None:
        restore_rng_state(state["rng"])
        self.pool.load_state_dict(state["pool"], device=self.ctx.device)
        self.pool_phase = int(state["pool_phase"])

    def extra_state(self) -> dict:
        """Trainer state beyond the optimizers and rank state (same on every rank); saved in checkpoints."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


# Pioneer (Publication I) trains with Adam betas (0, 0.99), Balanced Pioneer (Publication II) with (0, 0.9).
for _variant, _betas in (("pioneer", (0.0, 0.99)), ("balanced", (0.0, 0.9))):
    register_trainer(
        _variant,
        TrainerEntry(PioneerAutoencoder, AGETrainer, functools.partial(PioneerConfig, variant=_variant), adam_betas=_betas),
    )


def build_model_and_trainer(config: TrainConfig, ctx: DistContext) -> tuple[type, type]:
    """``(model class, trainer class)`` registered for ``config.variant``."""
    entry = trainer_entry(config.variant)
    return entry.model_class, entry.trainer_class


def make_dataset(config: TrainConfig, resolution: int):
    """The training dataset of ``config`` at ``resolution`` (the first phase's)."""
    if config.synthetic > 0:
        return SyntheticImageDataset(config.synthetic, resolution, seed=config.seed, flip=config.flip)
    parts = []
    if config.data is not None:
        parts.append(ImageFolderDataset(config.data, resolution, flip=False, cache=config.cache_images,
                                        cache_resolution=config.resolution))
    if config.photos is not None:
        parts.append(PhotoCropDataset(config.photos, resolution, crops_per_image=config.photo_crops, seed=config.seed,
                                      flip=False))
    if len(parts) == 1:
        parts[0].flip = config.flip
        return parts[0]
    return ConcatImageDataset(parts, flip=config.flip)


def architecture_of(path: Union[str, Path]) -> dict:
    """The network size recorded in a checkpoint or export (``resolution``, ``latent_dim``, ``channel_base``,
    ``max_channels``, ``min_channels``): what a run that starts from it (``init_from``) must be built with."""
    config = read_checkpoint(path, map_location="cpu").get("config") or {}
    return {k: config[k] for k in ("resolution", "latent_dim", "channel_base", "max_channels", "min_channels")
            if k in config}


def initial_weights(model, config: TrainConfig) -> None:
    """Fill a fresh ``model`` from ``config.init_from`` (checkpoint or export), refusing another architecture."""
    path = Path(config.init_from)
    payload = read_checkpoint(path, map_location="cpu")
    want = model.config.to_dict()
    if payload.get("kind") != model.kind or payload.get("config") != want:
        have = {k: v for k, v in (payload.get("config") or {}).items() if want.get(k) != v}
        raise CheckpointError(
            f"{path}: init_from holds a '{payload.get('kind')}' model whose architecture differs from the one "
            f"configured ({', '.join(f'{k}={v!r} vs {want.get(k)!r}' for k, v in have.items()) or 'kind'})"
        )
    model.restore_weights(payload, str(path))
    if model.phase != model.config.max_phase or model.alpha < 1.0:
        raise CheckpointError(f"{path}: init_from must be a fully grown model ({model.resolution} px, alpha "
                              f"{model.alpha:g}); resume its run instead")


def _merge_resumed(stored: dict, given: TrainConfig) -> TrainConfig:
    """The checkpoint's training config, with the run-management fields of ``given``."""
    base = TrainConfig.from_dict(stored)
    for name in ("variant", "resolution"):
        if getattr(base, name) != getattr(given, name):
            raise ValueError(
                f"cannot resume: the checkpoint was trained with {name}={getattr(base, name)!r}, "
                f"but {name}={getattr(given, name)!r} was asked for"
            )
    merged = base.to_dict()
    for name in TrainConfig.RESUME_OVERRIDES:
        value = getattr(given, name)
        if name == "data" and value is None:
            continue
        merged[name] = value
    return TrainConfig.from_dict(merged)


def eta_seconds(schedule: ProgressiveSchedule, samples: int, total: int, rate: float, resolution: int) -> float:
    """Seconds left until ``total`` images at the current ``rate`` (images/s at ``resolution``), counting an
    image of a later, larger phase as ``r / resolution`` current ones. Rough until the last phase (small
    nets cost less than their pixel count suggests: measured 527, 328 and 268 images/s at 4, 8 and 16 px
    on a CPU), but unlike tqdm's plain average it expects the later phases to be slower."""
    if rate <= 0 or samples >= total:
        return 0.0
    cost = 0.0
    ends = schedule.phase_starts[1:] + [max(total, schedule.growth_images)]
    for r, start, end in zip(schedule.resolutions, schedule.phase_starts, ends):
        if r == schedule.resolutions[-1]:
            end = max(end, total)  # training continues at the last resolution
        lo, hi = max(start, samples), min(end, total)
        if hi > lo:
            cost += (hi - lo) * max(1.0, r / resolution)
    return cost / rate


def format_duration(seconds: float) -> str:
    """``95`` -> ``'1m35s'``, ``4000`` -> ``'1h06m'``: short enough for a progress bar."""
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


@torch.no_grad()
def reconstruction_check(model, config: TrainConfig, n: int = 64) -> dict:
    """How a trained model's export reconstructs ``n`` training images at its resolution, next to the
    mean of those images: ``{"images", "rmse", "rmse_mean_image"}`` (mean per-image RMSE, [0, 1] scale). An export that
    does not beat the mean image (e.g. one still near its initial weights) has not learned to reconstruct."""
    dataset = make_dataset(config, model.resolution)
    ids = torch.randperm(dataset.num_images(), generator=torch.Generator().manual_seed(config.seed + 999))[:n].tolist()
    device = next(model.parameters()).device
    x = stack_images(dataset, ids, model.resolution).to(device)
    recon = model.decode(model.encode(x)).clamp(-1, 1)
    mean = x.mean(0, keepdim=True).expand_as(x)
    unit = lambda v: (v + 1) / 2  # noqa: E731  ([-1, 1] -> [0, 1])
    return {"images": len(ids), "rmse": float(rmse(unit(x), unit(recon))), "rmse_mean_image": float(rmse(unit(x), unit(mean)))}


def _gather(obj, ctx: DistContext) -> list:
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def _sample_grid(model: PioneerAutoencoder, real: Tensor, z: Tensor) -> Tensor:
    """Rows: real images, their reconstructions (EMA decoder), two rows of random samples."""
    return torch.cat([real, model.decode(model.encode(real)), model.decode(z)])


def train(config: TrainConfig, resume: Union[bool, str, Path] = False) -> PioneerAutoencoder:
    """Train (or, with ``resume``, continue) a model; returns it in eval mode.

    ``resume=True`` continues from the newest checkpoint in ``<out_dir>/checkpoints``; a path resumes
    from that checkpoint file. Writes to ``out_dir``: ``checkpoints/ckpt_<images>.pt`` (+ ``latest``),
    ``metrics.jsonl``, ``samples/<images>.png`` and ``samples/latest.png``, ``train_config.json``,
    ``tensorboard/`` (event files with the images seen as step: ``config.tensorboard``) and, at the end,
    ``model.safetensors`` (encoder + EMA decoder, for :func:`generative.load`).
    """
    ctx = init_distributed(config.device)
    out = Path(config.out_dir)
    manager = CheckpointManager(out / "checkpoints", keep=config.keep_checkpoints)

    # ---- resume: the stored config wins (except run-management fields)
    payload = None
    if resume:
        path = manager.latest() if resume is True else Path(resume)
        payload = read_checkpoint(path, map_location="cpu")
        if "training" not in payload:
            raise CheckpointError(f"{path} holds model weights only (an export), not a training state to resume")
        if payload["kind"] != config.model_config().kind:
            raise CheckpointError(f"{path} holds a '{payload['kind']}' model; cannot resume it as '{config.model_config().kind}'")
        config = _merge_resumed(payload["training"]["config"], config)
    elif manager.checkpoints():
        raise ValueError(
            f"{out} already holds checkpoints of a run ({manager.checkpoints()[-1].name}); "
            "resume it (resume=True / --resume) or choose another output folder"
        )
    if config.threads:
        torch.set_num_threads(config.threads)
    main = ctx.is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out, out / "samples", manager.directory)  # what a kill mid-write left behind
        atomic_write_json(out / "train_config.json", config.to_dict())

    # ---- model, optimizers, schedule, data (same seed on every rank: identical initial weights)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    schedule = config.schedule()
    model_cls, trainer_cls = build_model_and_trainer(config, ctx)
    model = model_cls(config.model_config()).to(ctx.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    dataset = make_dataset(config, schedule.at(0).resolution)
    samples, step, data_offset = 0, 0, 0
    model.set_phase(0, 1.0)  # the trained phase so far (exports made before any step say 4 px)
    if payload is not None:
        model.load_state_dict(payload["model"])
        model.set_phase(int(payload["phase"]), float(payload["alpha"]))
        tr = payload["training"]
        samples, step, data_offset = int(tr["samples"]), int(tr["step"]), int(tr["data_offset"])
    elif config.init_from:
        initial_weights(model, config)
        samples = schedule.growth_images
        if samples >= (config.total_images or 0):
            raise ValueError(f"total_images ({config.total_images}) must exceed the schedule's growth "
                             f"({samples} images), where training from init_from begins")
    trainer = trainer_cls(model, config, ctx)
    trainer.step = step
    if payload is not None:
        trainer.load_extra_state(tr.get("trainer", {}))
        trainer.opt_e.load_state_dict(tr["optimizer_encoder"])
        trainer.opt_g.load_state_dict(tr["optimizer_decoder"])
        ranks = tr["ranks"]
        if len(ranks) == ctx.world_size:
            trainer.load_rank_state(ranks[ctx.rank])
        else:  # world size changed: exact continuation is impossible, keep going from fresh streams
            torch.manual_seed(config.seed + 7919 * (step + 1) + ctx.rank)
    else:
        torch.manual_seed(config.seed + ctx.rank)  # different latent draws on every rank
    stream = IndexStream(dataset, ctx.rank, ctx.world_size, config.seed)
    total = config.total_images if config.total_images is not None else schedule.growth_images

    # ---- fixed inputs for the sample grids (their own generator: no effect on the training RNG)
    grid_gen = torch.Generator().manual_seed(config.seed + 12345)
    grid_ids = torch.randperm(dataset.num_images(), generator=grid_gen)[:8].tolist()
    grid_z = model.sample_prior(16, generator=grid_gen, device="cpu").to(ctx.device)

    def grid(tag: str) -> None:
        # the model's own phase: the one the last step trained (the schedule may already be past it)
        real = fade_images(stack_images(dataset, grid_ids, model.resolution).to(ctx.device), model.alpha)
        images = _sample_grid(model, real, grid_z)
        for name in (f"{tag}.png", "latest.png"):
            save_sample_grid(images, out / "samples" / name, nrow=real.shape[0], size=max(config.resolution, 32))
        # rows as in the PNG (real, reconstruction, samples); the PSNR of the reconstruction row is the
        # run's reconstruction check between exports (its 8 fixed training images, EMA decoder)
        events.image_grid("samples/real_recon_random", samples, images, nrow=real.shape[0], size=max(config.resolution, 32))
        events.scalars(samples, {"recon/psnr_db": float(psnr(real.clamp(-1, 1), images[len(real) : 2 * len(real)].clamp(-1, 1)))})
        events.flush()

    def checkpoint() -> None:
        ranks = _gather(trainer.rank_state(), ctx)
        if main:
            manager.save(
                samples,
                kind=model.kind,
                config=model.config.to_dict(),
                model_state=model.state_dict(),
                phase=model.phase,
                alpha=model.alpha,
                training={
                    "config": config.to_dict(),
                    "samples": samples,
                    "step": step,
                    "data_offset": data_offset,
                    "world_size": ctx.world_size,
                    "optimizer_encoder": trainer.opt_e.state_dict(),
                    "optimizer_decoder": trainer.opt_g.state_dict(),
                    "ranks": ranks,
                    "trainer": trainer.extra_state(),
                },
            )

    from tqdm.auto import tqdm

    # the same stream on every start: a resumed run hides what an earlier start wrote after this checkpoint
    events = EventLog(out / TENSORBOARD_DIR, config.tensorboard if main else False, purge_step=samples + 1)
    bar = tqdm(total=total, initial=min(samples, total), unit="img", disable=not (main and config.progress), dynamic_ncols=True)
    log_file = open(out / "metrics.jsonl", "a") if main else None
    precision = config.resolved_precision(ctx.device)
    if main:  # which precision this start runs in and why: the log's own record, and one line on stderr
        log_file.write(json.dumps({"event": "start", "samples": samples, "step": step, "device": str(ctx.device),
                                   **precision.to_dict(),
                                   "channels_last": config.channels_last}) + "\n")
        log_file.flush()
        if config.progress:
            print(f"training precision: {precision}", file=sys.stderr)
    loader_key, batches = None, None
    window = torch.zeros(len(trainer.loss_names), device=ctx.device)
    window_steps, window_t0, window_images = 0, time.perf_counter(), 0
    try:
        while samples < total:
            ps = schedule.at(samples)
            if loader_key != (ps.phase, ps.batch_size):  # new phase (or start): new resolution / batch size
                dataset.resolution = ps.resolution
                loader = DataLoader(
                    dataset,
                    batch_sampler=StreamBatchSampler(stream, data_offset, ps.batch_size),
                    num_workers=config.num_workers,
                    pin_memory=ctx.device.type == "cuda",
                    generator=torch.Generator().manual_seed(config.seed),  # not the global RNG
                )
                batches, loader_key = iter(loader), (ps.phase, ps.batch_size)
            x = next(batches).to(ctx.device, non_blocking=True)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            data_offset += ps.batch_size
            trainer.set_phase(ps)
            with precision.autocast(ctx.device):
                losses = trainer.train_step(fade_images(x, ps.alpha) if ps.fading else x, ps)
            prev = samples
            samples += ps.batch_size * ctx.world_size
            step += 1
            window += losses
            window_steps += 1
            window_images += ps.batch_size * ctx.world_size
            bar.update(min(samples, total) - min(prev, total))

            if step % config.log_every == 0 or samples >= total:
                mean = (window / window_steps).tolist()
                rate = window_images / max(time.perf_counter() - window_t0, 1e-9)
                eta = eta_seconds(schedule, samples, total, rate, ps.resolution)
                record = {"samples": samples, "step": step, "phase": ps.phase, "resolution": ps.resolution,
                          "alpha": round(ps.alpha, 4), "batch": ps.batch_size, "lr": ps.lr, "margin": ps.margin,
                          "images_per_s": round(rate, 2), "eta_s": round(eta, 1), "precision": precision.name,
                          **{k: round(v, 6) for k, v in zip(trainer.loss_names, mean)}}
                if main:
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    events.scalars(samples, {**{f"loss/{k}": v for k, v in zip(trainer.loss_names, mean)},
                                             "train/lr": ps.lr, "train/images_per_s": rate, "train/alpha": ps.alpha,
                                             "train/resolution": ps.resolution, "train/margin": ps.margin})
                    events.flush()
                    bar.set_postfix(res=ps.resolution, a=f"{ps.alpha:.2f}", l1=f"{mean[0]:.3f}",
                                    kl_r=f"{mean[1]:.2f}", kl_f=f"{mean[2]:.2f}", lat=f"{mean[6]:.4f}", ips=f"{rate:.0f}",
                                    eta=format_duration(eta))
                if not all(math.isfinite(v) for v in mean):
                    raise FloatingPointError(f"training diverged at {samples} images (step {step}): losses {record}")
                window.zero_()
                window_steps, window_t0, window_images = 0, time.perf_counter(), 0
            if main and config.sample_every and samples // config.sample_every != prev // config.sample_every:
                grid(f"{samples:012d}")
            if config.checkpoint_every and samples // config.checkpoint_every != prev // config.checkpoint_every and samples < total:
                checkpoint()
        checkpoint()
        if main:
            grid(f"{samples:012d}")
            model.export(out / "model.safetensors")
    finally:
        bar.close()
        events.close()
        if log_file is not None:
            log_file.close()
    return model.eval()
