"""Automodulator training step (Publication III; notes/backbones.md 2.4), on top of :class:`AGETrainer`.

:func:`generative.training.loop.train` builds :class:`AutomodulatorTrainer` for ``TrainConfig(variant=
"automodulator")``; everything else (schedule, data, EMA, sample pool, checkpoints, exact resume) is the
Pioneer loop's. One step on real images ``x`` (code-scale weights, ``w = kl_weight = 0.1``):

* encoder (decoder frozen): ``fake = G(z)``, the first ``stylemix_e`` (25 %) of them style-mixed at a random
  block (from the 8 px phase on), through the sample pool once ``alpha = 1``;
  ``L_E = match_x * image_weight * image_loss(G(E(x)), x) + min(M/2, max(-M, w KL(E(x)) - w KL(E(fake))))``
  with ``image_loss`` Barron's adaptive robust NLL (one shape and scale per pixel and channel, weight 0.2,
  :mod:`generative.training.robust_loss`; its parameters are trained by the encoder's Adam) or L1;
* decoder (encoder frozen, ``decoder_updates`` times): the first ``stylemix_d`` (50 %) of the batch is mixed:
  ``z_A`` drives blocks ``[0, k)`` and a fresh ``z_B`` blocks ``[k, end)``, ``k`` uniform in ``1 ... phase``;
  ``z_hat = E(G(mix))`` and
  ``L_G = w KL(z_hat) + latent_weight * cos_mismatch(z_hat, z_A)[unmixed rows]
  + layer_mix_weight * L2(xi_{<k}(z_hat), xi_{<k}(z_A))[mixed rows]`` -- the layer-mixing loss of thesis
  eq. 3.5: the decoder features up to block ``k`` (noise off) from the re-encoded mix must equal those from
  ``z_A``, which drove exactly those blocks;
* optional (``decoder_recon_weight > 0``, off in the paper): the generator-side L1 ``|G(E(x)) - x|`` of the
  Pioneer loop, which makes short CPU runs reconstruct;
* decoder EMA.

Each term can be switched off (:class:`AutomodulatorLosses`) for the Publication III ablations (layer-mixing
loss on/off, robust loss vs L1, style mixing on/off).

Optional scale-specific invariance (thesis 3.3; the original's ``--flip_invariance_layer L``, notes/backbones.md
2.4), off by default (``flip_invariance_block = None``). From phase ``L`` on, the second half of the real batch
is replaced by the horizontal mirrors of the first half (``x_in``, ``x_mirror``), ``KL_real`` is the mean of
the two halves' KLs, and the encoder's image term becomes :func:`flip_invariance_loss`: decoding with
``E(x_in)`` on blocks ``[0, L)`` and ``E(x_mirror)`` on ``[L, end)`` must give ``x_in``, and vice versa
``x_mirror``. The flip is thus carried by the coarse blocks below ``L`` only; the blocks from ``L`` on must
not care which of the two codes drives them. As in the original, the decoder's AdaIN affine maps are
co-trained by this term (their own Adam, ``opt_a``; the rest of the decoder stays frozen in the encoder
step). Not reproduced: the original's extra 8x8 "support" block; it also disables layer noise, which here
is ``noise=False``.

Multi-process: the encoder update goes through DDP as in the Pioneer loop; the decoder is called several
times per update (mix, features), so its gradients (and the robust-loss ones) are averaged with explicit
all-reduces instead of a DDP wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from generative.backbones.automodulator import AutomodulatorAutoencoder, AutomodulatorConfig
from generative.backbones.registry import available_resolutions
from generative.backbones.configs import ConfigDict
from generative.backbones.layers import AdaIN
from generative.training.distributed import DistContext
from generative.training.loop import LOSS_NAMES, AGETrainer, TrainConfig
from generative.training.losses import empirical_kl, latent_cosine_loss, reconstruction_l1
from generative.training.registry import TrainerEntry, register_trainer
from generative.training.robust_loss import AdaptiveRobustLoss
from generative.training.schedule import PhaseState

__all__ = [
    "AutomodulatorLosses",
    "AutomodulatorTrainer",
    "automodulator_kl_term",
    "flip_invariance_loss",
    "layer_mixing_loss",
    "mirrored_batch",
    "mixed_latents",
]


@dataclass
class AutomodulatorLosses(ConfigDict):
    """Loss switches and weights of the automodulator step (``TrainConfig.automodulator`` as a dict).

    ``image_loss``: ``"robust"`` (adaptive, default) or ``"l1"``; ``image_weight``: None = 0.2 for the
    robust loss, 1.0 for L1 (the Pioneer scale). ``stylemix_e`` / ``stylemix_d``: mixed fractions of the
    encoder's fakes / the decoder batch (0 disables). ``layer_mixing``: the eq. 3.5 term on/off.
    ``noise``: layer noise while training. ``flip_invariance_block``: ``None`` (off) or the block ``L >= 1``
    from which on the decoder is trained to be invariant to horizontal flips (module docstring); active
    in phases ``>= L``."""

    UNKNOWN_FIELDS = "unknown automodulator loss settings: {unknown} (known: {known})"

    image_loss: str = "robust"
    image_weight: Optional[float] = None
    stylemix_e: float = 0.25
    stylemix_d: float = 0.5
    layer_mixing: bool = True
    layer_mix_weight: float = 1.0
    noise: bool = True
    flip_invariance_block: Optional[int] = None

    def __post_init__(self) -> None:
        if self.image_loss not in ("robust", "l1"):
            raise ValueError(f"automodulator image_loss must be 'robust' or 'l1', got {self.image_loss!r}")
        for name in ("stylemix_e", "stylemix_d"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"automodulator {name} must be a fraction in [0, 1], got {v}")
        fib = self.flip_invariance_block
        if fib is not None and (isinstance(fib, bool) or not isinstance(fib, int) or fib < 1):
            raise ValueError(f"automodulator flip_invariance_block must be None (off) or a block index >= 1, got {fib!r}")
        if self.layer_mix_weight < 0 or (self.image_weight is not None and self.image_weight < 0):
            raise ValueError("automodulator loss weights must be >= 0")

    @property
    def image_scale(self) -> float:
        if self.image_weight is not None:
            return float(self.image_weight)
        return 0.2 if self.image_loss == "robust" else 1.0


def automodulator_kl_term(kl_real: Tensor, kl_fake: Tensor, kl_weight: float, margin: float) -> Tensor:
    """``min(M/2, max(-M, w KL_real - w KL_fake))`` for ``M > 0`` (a two-sided clamp, unlike Balanced
    Pioneer's); the plain gap for ``M <= 0``."""
    gap = kl_weight * kl_real - kl_weight * kl_fake
    if margin > 0:
        return gap.clamp(min=-float(margin), max=float(margin) / 2)
    return gap


def layer_mixing_loss(features: Callable[[Tensor, int], Tensor], z_a: Tensor, z_hat: Tensor, k: int) -> Tensor:
    """Thesis eq. 3.5 (squared, averaged): ``mean((xi_{<k}(z_hat) - xi_{<k}(z_a))^2)`` with
    ``features(z, k)`` the decoder's feature map after blocks ``0 ... k-1`` driven by ``z (B, D)``."""
    return F.mse_loss(features(z_hat, k), features(z_a, k))


def flip_invariance_loss(
    decode_mixed: Callable[[list], Tensor],
    image_loss: Callable[[Tensor, Tensor], Tensor],
    x_in: Tensor,
    x_mirror: Tensor,
    z_in: Tensor,
    z_mirror: Tensor,
    cut: int,
    n_blocks: int,
) -> Tensor:
    """Scale-specific flip invariance (thesis 3.3): ``image_loss(G(z_in | z_mirror), x_in) +
    image_loss(G(z_mirror | z_in), x_mirror)`` where ``G(a | b)`` decodes with ``a`` on blocks ``[0, cut)``
    and ``b`` on ``[cut, n_blocks)``. Zero exactly when the codes of an image and of its mirror are
    interchangeable on the blocks from ``cut`` on and the pair reconstructs both images. ``x_* (B, 3, r, r)``,
    ``z_* (B, D)``; ``decode_mixed`` takes one latent per block."""
    if not 1 <= cut <= n_blocks:
        raise ValueError(f"flip invariance: the cut block must be in 1 ... {n_blocks}, got {cut}")
    rest = n_blocks - cut
    rec_in = decode_mixed([z_in] * cut + [z_mirror] * rest)
    rec_mirror = decode_mixed([z_mirror] * cut + [z_in] * rest)
    return image_loss(rec_in, x_in) + image_loss(rec_mirror, x_mirror)


def mirrored_batch(x: Tensor) -> Tensor:
    """``(B, 3, H, W) -> (2 * (B // 2), 3, H, W)``: the first half of ``x`` followed by its horizontal mirrors."""
    h = x.shape[0] // 2
    return torch.cat([x[:h], x[:h].flip(3)])


def mixed_latents(z_a: Tensor, z_b: Tensor, n_mix: int, cut: int, n_blocks: int) -> list[Tensor]:
    """Per-block latents: every row uses ``z_a`` on blocks ``[0, cut)``; on blocks ``[cut, n_blocks)`` the
    first ``n_mix`` rows use ``z_b`` and the rest ``z_a``."""
    late = torch.cat([z_b[:n_mix], z_a[n_mix:]]) if n_mix > 0 else z_a
    return [z_a if p < cut else late for p in range(n_blocks)]


def _average_gradients(params, ctx: DistContext) -> None:
    if not ctx.distributed:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(ctx.world_size)


class AutomodulatorTrainer(AGETrainer):
    """The automodulator's encoder and decoder updates (module docstring)."""

    loss_names = ("image",) + LOSS_NAMES[1:] + ("flip", "layer_mix")

    def __init__(self, model, config: TrainConfig, ctx: DistContext) -> None:
        super().__init__(model, config, ctx)
        self.losses = AutomodulatorLosses.from_dict(config.automodulator or {})
        self.decoder_train = model.decoder  # several calls per update: gradients are all-reduced by hand
        self.robust: Optional[nn.ModuleList] = None
        self.robust_ready = [True] + [False] * model.config.max_phase
        if self.losses.image_loss == "robust":
            self.robust = nn.ModuleList(
                [AdaptiveRobustLoss((3, r, r)) for r in available_resolutions(model.config.resolution)]
            ).to(ctx.device)
            betas = config.adam_betas()
            lr0 = config.schedule().at(0).lr
            self.opt_e = torch.optim.Adam(list(model.encoder.parameters()) + list(self.robust.parameters()), lr=lr0, betas=betas)
        # flip invariance co-trains the AdaIN affine maps in the encoder step (the original's optimizerA)
        self.adain_params: list = []
        self.opt_a: Optional[torch.optim.Adam] = None
        if self.losses.flip_invariance_block is not None:
            self.adain_params = [p for mod in model.decoder.modules() if isinstance(mod, AdaIN) for p in mod.parameters()]
            self.opt_a = torch.optim.Adam(self.adain_params, lr=config.schedule().at(0).lr, betas=config.adam_betas())

    def _flip_active(self, phase: int, batch: int) -> bool:
        fib = self.losses.flip_invariance_block
        return fib is not None and phase >= fib and batch >= 2

    def set_phase(self, ps: PhaseState) -> None:
        super().set_phase(ps)
        if self.opt_a is not None:
            for group in self.opt_a.param_groups:
                group["lr"] = ps.lr
        if self.robust is not None and not self.robust_ready[ps.phase]:
            # a new resolution starts from the previous one's shapes and scales, each copied to 2x2 pixels
            self.robust[ps.phase].load_upsampled(self.robust[ps.phase - 1])
            self.robust_ready[ps.phase] = True

    def image_loss(self, recon: Tensor, x: Tensor, phase: int) -> Tensor:
        if self.robust is None:
            return reconstruction_l1(recon, x)
        return self.robust[phase](recon - x)

    def _random_cut(self, phase: int) -> int:
        return int(torch.randint(1, phase + 1, (1,)).item())

    def train_step(self, x: Tensor, ps: PhaseState) -> Tensor:
        """One encoder update and ``decoder_updates`` decoder updates on ``x (B, 3, r, r)``; returns the
        detached losses in the order of :attr:`loss_names`."""
        cfg, lc, m = self.config, self.losses, self.model
        phase, alpha, nb = ps.phase, ps.alpha, ps.phase + 1
        dec = m.decoder
        flip = self._flip_active(phase, x.shape[0])
        if flip:
            x = mirrored_batch(x)
        b = x.shape[0]

        # ---- encoder
        m.encoder.requires_grad_(True)
        dec.requires_grad_(False)
        for p in self.adain_params if flip else ():
            p.requires_grad_(True)
        with torch.no_grad():
            z_a, z_b = m.sample_prior(b), m.sample_prior(b)
            n_mix = int(round(lc.stylemix_e * b)) if phase > 0 else 0
            cut = self._random_cut(phase) if n_mix > 0 else nb
            fake = dec(mixed_latents(z_a, z_b, n_mix, cut, nb), phase, alpha, noise=lc.noise)
        if alpha >= 1.0:
            fake = self.pool.query(fake)
        codes = self.encoder_train(torch.cat([x, fake]), phase, alpha)
        z_real, z_fake = codes[:b], codes[b:]
        kl_fake = empirical_kl(z_fake)
        zero = torch.zeros((), device=x.device)
        if flip:  # the two orientations as separate distributions (the original)
            h = b // 2
            kl_real = 0.5 * (empirical_kl(z_real[:h]) + empirical_kl(z_real[h:]))
            img = flip_loss = flip_invariance_loss(
                lambda zs: dec(zs, phase, alpha, noise=lc.noise), lambda rec, tgt: self.image_loss(rec, tgt, phase),
                x[:h], x[h:], z_real[:h], z_real[h:], lc.flip_invariance_block, nb,
            )  # fmt: skip
        else:
            kl_real, flip_loss = empirical_kl(z_real), zero
            img = self.image_loss(dec(z_real, phase, alpha, noise=lc.noise), x, phase)
        match_x = cfg.recon_weight * (cfg.stabilise_recon_mult if ps.stabilising else 1.0)
        kl_term = automodulator_kl_term(kl_real, kl_fake, cfg.kl_weight, ps.margin)
        loss_e = match_x * lc.image_scale * img + kl_term
        self.opt_e.zero_grad(set_to_none=True)
        if flip:
            self.opt_a.zero_grad(set_to_none=True)
        loss_e.backward()
        if self.robust is not None:
            _average_gradients(self.robust.parameters(), self.ctx)
        self.opt_e.step()
        if flip:
            _average_gradients(self.adain_params, self.ctx)
            self.opt_a.step()
            for p in self.adain_params:
                p.grad = None  # the decoder step starts from clean gradients

        # ---- decoder
        m.encoder.requires_grad_(False)
        dec.requires_grad_(True)
        for _ in range(cfg.decoder_updates):
            z_a, z_b = m.sample_prior(b), m.sample_prior(b)
            n_mix = min(int(round(lc.stylemix_d * b)), b - 1) if phase > 0 else 0
            cut = self._random_cut(phase) if n_mix > 0 else nb
            z_hat = m.encoder(dec(mixed_latents(z_a, z_b, n_mix, cut, nb), phase, alpha, noise=lc.noise), phase, alpha)
            kl_gen = empirical_kl(z_hat)
            latent = latent_cosine_loss(z_hat[n_mix:], z_a[n_mix:], cfg.latent_loss)
            loss_g = cfg.kl_weight * kl_gen + cfg.latent_weight * latent
            if cfg.decoder_recon_weight > 0:  # AGE's generator-side L1, as in the Pioneer loop
                recon = dec(z_real.detach(), phase, alpha, noise=lc.noise)
                loss_g = loss_g + cfg.decoder_recon_weight * reconstruction_l1(recon, x)
            layer_mix = zero
            if lc.layer_mixing and n_mix > 0:
                layer_mix = layer_mixing_loss(lambda z, k: dec.features(z, k, noise=False), z_a[:n_mix], z_hat[:n_mix], cut)
                loss_g = loss_g + lc.layer_mix_weight * layer_mix
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            _average_gradients(dec.parameters(), self.ctx)
            self.opt_g.step()
        m.encoder.requires_grad_(True)

        self.update_ema(dec)
        return torch.stack([img, kl_real, kl_fake, kl_term, loss_e, kl_gen, latent, loss_g, flip_loss, layer_mix]).detach()

    # ---------------------------------------------------------------------- checkpointed state
    def extra_state(self) -> dict:
        out = {}
        if self.robust is not None:
            out.update(robust_loss={k: v.detach().cpu().clone() for k, v in self.robust.state_dict().items()},
                       robust_ready=list(self.robust_ready))  # fmt: skip
        if self.opt_a is not None:
            out["optimizer_adain"] = self.opt_a.state_dict()
        return out

    def load_extra_state(self, state: dict) -> None:
        if not state:
            return
        if self.robust is not None and "robust_loss" in state:
            self.robust.load_state_dict(state["robust_loss"])
            self.robust_ready = [bool(v) for v in state["robust_ready"]]
        if self.opt_a is not None and "optimizer_adain" in state:
            self.opt_a.load_state_dict(state["optimizer_adain"])


register_trainer(
    "automodulator",
    TrainerEntry(AutomodulatorAutoencoder, AutomodulatorTrainer, AutomodulatorConfig, AutomodulatorLosses, adam_betas=(0.0, 0.99)),
)
