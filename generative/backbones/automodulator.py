"""Deep Automodulator (Publication III; thesis 3.3, 4.3): an AdaIN-modulated decoder with a built-in encoder.

Latents are ``(B, D)`` (D = 512) on the unit sphere. The decoder does not take ``z`` as input: it starts
from a learned constant 4x4 canvas ``xi_0`` and each block's feature statistics are set by AdaIN layers
(thesis eq. 3.4) driven by ``z``. Since every block has its own affine maps, different blocks can be
driven by *different* latents: :meth:`AutomodulatorAutoencoder.decode_mixed` takes one latent per block.

Decoder block ``p`` (resolution ``4 * 2**p``; the original ``Generator``, notes/backbones.md 3.2):

* block 0: ``canvas -> conv3x3 -> LReLU -> AdaIN`` (one AdaIN: 2 * 9 - 1 = 17 AdaIN layers up to 1024 px,
  as SPEC 3; the original's 4x4 block has no noise);
* block ``p >= 1``: ``up x2 -> conv3x3 -> blur -> noise -> LReLU -> AdaIN -> conv3x3 -> noise -> LReLU -> AdaIN``;
* a 1x1 toRGB per resolution, fade-in ``(1 - a) up(toRGB[p-1](h_{p-1})) + a toRGB[p](h_p)``.

Convolutions use equalized learning rate; each AdaIN has its own Linear(D -> 2C) from the raw ``z``
(:class:`generative.backbones.layers.AdaIN`, scale bias 1, shift bias 0). Noise injection (learned per-channel
scale, zero at start) is on while training; :meth:`decode` runs without it by default (the original's
``eval(useLN=False)``, recommended by its README), so decoding is deterministic.

The encoder is Balanced Pioneer's :class:`generative.backbones.pioneer.Encoder` (spectral norm, L2-normalised
output) at the same widths.

Scales for mixing (SPEC 3): ``'coarse'`` = blocks at 4-8 px, ``'intermediate'`` = 16-64 px, ``'fine'`` =
128 px and up. A 32 px model has blocks 4, 8 (coarse) and 16, 32 (intermediate) and no fine blocks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generative.backbones.registry import check_resolution, register_backbone
from generative.backbones.layers import AdaIN, Blur, EqualConv2d, NoiseInjection, frozen_spectral_norm, leaky_relu, upsample
from generative.backbones.pioneer import Encoder, GrowingAutoencoder, GrowingConfig, PioneerConfig, _check_phase, _res

__all__ = [
    "AutomodulatorConfig",
    "StyledConv",
    "AdaINDecoder",
    "AutomodulatorAutoencoder",
    "SCALES",
    "scale_of_resolution",
]

KIND = "automodulator"
SCALES = ("coarse", "intermediate", "fine")


def scale_of_resolution(resolution: int) -> str:
    """``'coarse'`` (4-8 px), ``'intermediate'`` (16-64 px) or ``'fine'`` (128 px and up)."""
    return "coarse" if resolution <= 8 else "intermediate" if resolution <= 64 else "fine"


@dataclass
class AutomodulatorConfig(GrowingConfig):
    """Model description. ``channels(r) = clamp(channel_base // r, min_channels, max_channels)``; the
    default base 32768 gives the automodulator's 512 up to 64 px, then 256, 128, 64, 32 (its
    ``--small_darch``, needed for the CelebA-HQ model, is ``channel_base=16384``). ``noise`` says whether
    the decoder has noise-injection layers (the original's ``--no_LN`` is ``noise=False``)."""

    resolution: int = 256
    latent_dim: int = 512
    channel_base: int = 32768
    max_channels: int = 512
    min_channels: int = 1
    noise: bool = True

    def __post_init__(self) -> None:
        check_resolution(self.resolution, 1024, what="automodulator architecture (4 ... 1024 px)")
        self._check_widths()

    @property
    def kind(self) -> str:
        return KIND

    def encoder_config(self) -> PioneerConfig:
        """The Balanced Pioneer description whose encoder this model uses."""
        return PioneerConfig(
            variant="balanced", resolution=self.resolution, latent_dim=self.latent_dim,
            channel_base=self.channel_base, max_channels=self.max_channels, min_channels=self.min_channels,
        )



class StyledConv(nn.Module):
    """``(B, Cin, H, W), z (B, D) -> (B, Cout, H, W)``: equalized-lr conv3x3, optional blur, optional noise
    injection, LReLU(0.2), AdaIN from ``z``."""

    def __init__(self, cin: int, cout: int, latent_dim: int, blur: bool, noise: bool) -> None:
        super().__init__()
        self.conv = EqualConv2d(cin, cout, 3, padding=1)
        self.blur = Blur(cout) if blur else None
        self.noise = NoiseInjection(cout) if noise else None
        self.act = leaky_relu()
        self.adain = AdaIN(cout, latent_dim)

    def forward(self, h: Tensor, z: Tensor, noise: bool = True) -> Tensor:
        h = self.conv(h)
        if self.blur is not None:
            h = self.blur(h)
        if self.noise is not None and noise:
            h = self.noise(h)
        return self.adain(self.act(h), z)


def _block_latents(z: Union[Tensor, Sequence[Tensor]], n: int) -> list[Tensor]:
    if isinstance(z, Tensor):
        return [z] * n
    zs = list(z)
    if len(zs) < n:
        raise ValueError(f"the decoder needs one latent per block ({n} blocks), got {len(zs)}")
    return zs


class AdaINDecoder(nn.Module):
    """The automodulator decoder (module docstring). ``z`` is one ``(B, D)`` latent for every block or a
    sequence of per-block latents (at least ``phase + 1``)."""

    def __init__(self, config: AutomodulatorConfig) -> None:
        super().__init__()
        self.config = config
        d, c4 = config.latent_dim, config.channels(4)
        # learned canvas; ones at the start, the original's fixed input
        self.const = nn.Parameter(torch.ones(1, c4, 4, 4))
        self.blocks = nn.ModuleList([nn.ModuleList([StyledConv(c4, c4, d, blur=False, noise=False)])])
        self.to_rgb = nn.ModuleList([nn.Conv2d(c4, 3, 1)])
        for p in range(1, config.max_phase + 1):
            cin, cout = config.channels(_res(p - 1)), config.channels(_res(p))
            self.blocks.append(
                nn.ModuleList([
                    StyledConv(cin, cout, d, blur=True, noise=config.noise),
                    StyledConv(cout, cout, d, blur=False, noise=config.noise),
                ])
            )
            self.to_rgb.append(nn.Conv2d(cout, 3, 1))

    def run_block(self, p: int, h: Optional[Tensor], z: Tensor, noise: bool = True) -> Tensor:
        """Block ``p`` on the previous features ``h`` (``None`` for block 0: the canvas)."""
        if p == 0:
            h = self.const.expand(z.shape[0], -1, -1, -1)
        else:
            h = upsample(h)
        for layer in self.blocks[p]:
            h = layer(h, z, noise)
        return h

    def features(self, z: Union[Tensor, Sequence[Tensor]], upto: int, noise: bool = False) -> Tensor:
        """``xi_{<upto}``: the feature map after blocks ``0 ... upto - 1`` (thesis eq. 3.5's ``theta_{1:j}``),
        ``(B, C, 4 * 2**(upto - 1), same)``."""
        if not 1 <= upto <= len(self.blocks):
            raise ValueError(f"features: upto must be in 1 ... {len(self.blocks)}, got {upto}")
        zs = _block_latents(z, upto)
        h = None
        for p in range(upto):
            h = self.run_block(p, h, zs[p], noise)
        return h

    def forward(self, z: Union[Tensor, Sequence[Tensor]], phase: int, alpha: float = 1.0, noise: bool = True) -> Tensor:
        _check_phase(phase, alpha, self.config.max_phase)
        zs = _block_latents(z, phase + 1)
        h, skip = None, None
        for p in range(phase + 1):
            skip = h
            h = self.run_block(p, h, zs[p], noise)
        out = self.to_rgb[phase](h)
        if phase > 0 and alpha < 1.0:
            out = (1.0 - alpha) * upsample(self.to_rgb[phase - 1](skip)) + alpha * out
        return out


@register_backbone(KIND)
class AutomodulatorAutoencoder(GrowingAutoencoder):
    """Encoder + AdaIN decoder + EMA decoder; a :class:`~generative.backbones.registry.Backbone` (kind
    ``"automodulator"``). :meth:`encode` uses the encoder, every decoding method the EMA decoder, at the
    current phase / alpha, with spectral-norm power iteration frozen and (``use_noise = False``) no noise.
    """

    config_class = AutomodulatorConfig
    model_name = "automodulator"

    def __init__(self, config: AutomodulatorConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.encoder_config())
        self.decoder = AdaINDecoder(config)
        self.decoder_ema = copy.deepcopy(self.decoder)
        self.decoder_ema.requires_grad_(False)
        self.phase = config.max_phase
        self.alpha = 1.0
        self.use_noise = False  # inference decoding without layer noise (deterministic)

    def _phase_alpha(self, resolution: Optional[int]) -> tuple[int, float]:
        if resolution is None or resolution == self.resolution:
            return self.phase, self.alpha
        return check_resolution(resolution, self.resolution, what=f"{self.kind} model"), 1.0

    def num_blocks(self, resolution: Optional[int] = None) -> int:
        """Decoder blocks (= per-block latent slots) used at ``resolution`` (default: the current one)."""
        return self._phase_alpha(resolution)[0] + 1

    def block_scales(self, resolution: Optional[int] = None) -> list[str]:
        """The scale name of each block at ``resolution``, e.g. 32 px: coarse, coarse, intermediate, intermediate."""
        return [scale_of_resolution(_res(p)) for p in range(self.num_blocks(resolution))]

    def blocks_of_scale(self, scale: str, resolution: Optional[int] = None) -> list[int]:
        """Block indices of ``scale`` ('coarse', 'intermediate', 'fine'); empty if the model has none."""
        if scale not in SCALES:
            raise ValueError(f"unknown mixing scale '{scale}'; use one of {', '.join(SCALES)}")
        return [p for p, s in enumerate(self.block_scales(resolution)) if s == scale]

    # -------------------------------------------------------------------------- Backbone
    def _check_latent(self, z: Tensor, what: str) -> None:
        if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"{what} must be latents (B, {self.config.latent_dim}), got {shape}")

    def decode(self, z: Tensor, resolution: Optional[int] = None) -> Tensor:
        """``(B, D)`` latents (projected onto the sphere) -> ``(B, 3, r, r)``, every block driven by ``z``."""
        self._check_latent(z, "decode: z")
        return self.decode_mixed([z] * self.num_blocks(resolution), resolution)

    def decode_mixed(self, zs: Sequence[Tensor], resolution: Optional[int] = None) -> Tensor:
        """One ``(B, D)`` latent per decoder block (``num_blocks(resolution)`` of them, coarsest first)
        -> ``(B, 3, r, r)``."""
        phase, alpha = self._phase_alpha(resolution)
        zs = list(zs)
        if len(zs) != phase + 1:
            raise ValueError(
                f"decode_mixed needs one latent per decoder block: {phase + 1} at {_res(phase)} px "
                f"({', '.join(self.block_scales(_res(phase)))}), got {len(zs)}"
            )
        for i, z in enumerate(zs):
            self._check_latent(z, f"decode_mixed: latent {i}")
            if z.shape[0] != zs[0].shape[0]:
                raise ValueError(f"decode_mixed: latent {i} has batch {z.shape[0]}, latent 0 has {zs[0].shape[0]}")
        zs = [F.normalize(z, dim=1) for z in zs]
        with frozen_spectral_norm(self.decoder_ema):
            return self.decoder_ema(zs, phase, alpha, noise=self.use_noise)

    def scale_latents(
        self,
        spec: dict,
        n: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        resolution: Optional[int] = None,
    ) -> list[Tensor]:
        """Per-block latents from ``{scale name: (B, D) latent}``; blocks of scales not in ``spec`` get fresh
        prior draws (conditional sampling). ``n`` is the batch when ``spec`` is empty. A scale with no
        blocks at this resolution (e.g. 'fine' at 32 px) is accepted and has no effect."""
        for name in spec:
            if name not in SCALES:
                raise ValueError(f"unknown mixing scale '{name}'; use one of {', '.join(SCALES)}")
        for name, z in spec.items():
            self._check_latent(z, f"latent for '{name}'")
        batches = {z.shape[0] for z in spec.values()}
        if len(batches) > 1:
            raise ValueError(f"the latents of the scales have different batch sizes: {sorted(batches)}")
        b = batches.pop() if batches else n
        if b is None:
            raise ValueError("give at least one scale's latent or the number of samples n")
        out = []
        for s in self.block_scales(resolution):
            out.append(spec[s] if s in spec else self.sample_prior(b, generator=generator))
        return out

    def mix(
        self, z_coarse: Tensor, z_intermediate: Tensor, z_fine: Optional[Tensor] = None, resolution: Optional[int] = None
    ) -> Tensor:
        """Decode with ``z_coarse`` on the 4-8 px blocks, ``z_intermediate`` on 16-64 px and ``z_fine`` on
        128 px+ (all ``(B, D)``). ``z_fine`` may be omitted only if the model has no fine blocks."""
        if z_fine is None and self.blocks_of_scale("fine", resolution):
            raise ValueError(f"the model has fine blocks at {_res(self._phase_alpha(resolution)[0])} px; give z_fine")
        spec = {"coarse": z_coarse, "intermediate": z_intermediate}
        if z_fine is not None:
            spec["fine"] = z_fine
        return self.decode_mixed(self.scale_latents(spec, resolution=resolution), resolution)

    def mix_at(self, z_a: Tensor, z_b: Tensor, cut_block: int, resolution: Optional[int] = None) -> Tensor:
        """``z_a`` drives blocks ``[0, cut_block)`` and ``z_b`` blocks ``[cut_block, end)``; ``cut_block`` in
        ``0 ... num_blocks``."""
        nb = self.num_blocks(resolution)
        if not isinstance(cut_block, int) or not 0 <= cut_block <= nb:
            raise ValueError(f"cut_block must be an integer in 0 ... {nb} (the model has {nb} blocks), got {cut_block!r}")
        return self.decode_mixed([z_a] * cut_block + [z_b] * (nb - cut_block), resolution)

    def mix_images(
        self,
        generator: Optional[torch.Generator] = None,
        **images: Tensor,
    ) -> Tensor:
        """Encode real images per scale and decode the mix, e.g. ``mix_images(coarse=a, intermediate=b,
        fine=c)`` with ``(B, 3, r, r)`` images; scales not given are drawn at random (conditional sampling)."""
        if not images:
            raise ValueError("mix_images needs images for at least one scale (coarse=, intermediate=, fine=)")
        for name in images:
            if name not in SCALES:
                raise ValueError(f"unknown mixing scale '{name}'; use one of {', '.join(SCALES)}")
        spec = {name: self.encode(x) for name, x in images.items()}
        return self.decode_mixed(self.scale_latents(spec, generator=generator))

    def sample_conditional(
        self,
        x: Tensor,
        keep: Sequence[Union[str, int]] = ("coarse",),
        n: int = 1,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """Conditional sampling: blocks in ``keep`` (scale names or block indices) are driven by the code of
        each image in ``x (B, 3, r, r)``, the others by fresh prior draws; returns ``(B, n, 3, r, r)``."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        nb = self.num_blocks()
        fixed: set[int] = set()
        for item in keep:
            if isinstance(item, str):
                fixed.update(self.blocks_of_scale(item))
            elif isinstance(item, int) and 0 <= item < nb:
                fixed.add(item)
            else:
                raise ValueError(f"keep: {item!r} is neither a scale name ({', '.join(SCALES)}) nor a block in 0 ... {nb - 1}")
        z = self.encode(x).repeat_interleave(n, dim=0)
        zs = [z if p in fixed else self.sample_prior(z.shape[0], generator=generator) for p in range(nb)]
        out = self.decode_mixed(zs)
        return out.reshape(x.shape[0], n, *out.shape[1:])
