"""Every backbone class satisfies the Backbone protocol (and the capability protocols it offers), its
fingerprint follows the weights, and from_payload is one helper for all of them."""

import hashlib

import pytest
import torch

from generative.backbones.automodulator import AutomodulatorAutoencoder, AutomodulatorConfig
from generative.backbones.registry import (
    BACKBONE_MODULES,
    Backbone,
    BlockLatents,
    NoiseMaps,
    StyleLatents,
    backbone_class,
    registered_kinds,
    weights_fingerprint,
)
from generative.backbones.checkpoint import CheckpointError
from generative.backbones.pioneer import PioneerAutoencoder, PioneerConfig
from generative.backbones.stylegan2 import StyleGAN2Config, StyleGAN2Generator

TINY = dict(resolution=8, latent_dim=16, channel_base=64, max_channels=8)


def _models():
    torch.manual_seed(0)
    return {
        "pioneer": PioneerAutoencoder(PioneerConfig(variant="pioneer", **TINY)),
        "balanced_pioneer": PioneerAutoencoder(PioneerConfig(variant="balanced", **TINY)),
        "automodulator": AutomodulatorAutoencoder(AutomodulatorConfig(**TINY)),
        "stylegan2": StyleGAN2Generator(StyleGAN2Config(resolution=8, style_dim=16, n_mlp=1, max_channels=8)),
    }


# capabilities each kind offers: (StyleLatents, NoiseMaps, BlockLatents)
CAPABILITIES = {
    "pioneer": (False, False, False),
    "balanced_pioneer": (False, False, False),
    "automodulator": (False, False, True),
    "stylegan2": (True, True, False),
}


@pytest.mark.parametrize("kind", sorted(CAPABILITIES))
def test_every_backbone_satisfies_the_protocol_and_declares_its_capabilities(kind):
    model = _models()[kind]
    assert isinstance(model, Backbone)
    assert model.kind == kind and backbone_class(kind) is type(model)
    caps = (isinstance(model, StyleLatents), isinstance(model, NoiseMaps), isinstance(model, BlockLatents))
    assert caps == CAPABILITIES[kind]


def test_every_registered_kind_is_covered_here():
    assert set(registered_kinds()) == set(CAPABILITIES)
    assert "generative.backbones.stylegan2" in BACKBONE_MODULES


def test_a_partial_object_is_not_a_backbone():
    class DecodeOnly(torch.nn.Module):
        kind, resolution, latent_shape, latent_geometry, has_encoder = "toy", 4, (2,), "euclidean", False

        def decode(self, z):
            return z

    assert not isinstance(DecodeOnly(), Backbone)


def _old_pipeline_fingerprint(module) -> str:
    """The weight part of sequences.pipeline._fingerprint, as it was written there."""
    h = hashlib.sha1()
    h.update(str(getattr(module, "kind", type(module).__name__)).encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes()[:4096])
        h.update(str(tuple(t.shape)).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("kind", sorted(CAPABILITIES))
def test_fingerprint_is_the_weights_digest(kind):
    model = _models()[kind]
    fp = model.fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == weights_fingerprint(model) == _old_pipeline_fingerprint(model)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert model.fingerprint() != fp


def test_fingerprint_of_a_plain_module_uses_its_class_name():
    lin = torch.nn.Linear(3, 2)
    assert weights_fingerprint(lin) == _old_pipeline_fingerprint(lin)


@pytest.mark.parametrize("kind", sorted(CAPABILITIES))
def test_from_payload_round_trips_and_refuses_other_kinds_naming_the_source(kind):
    models = _models()
    model = models[kind]
    payload = {"kind": kind, "config": model.config.to_dict(), "model": model.state_dict(), "phase": 0, "alpha": 1.0}
    back = type(model).from_payload(payload, source="here.pt")
    assert back.fingerprint() == model.fingerprint()
    other = next(k for k in CAPABILITIES if backbone_class(k) is not type(model))
    with pytest.raises(CheckpointError, match=f"here.pt holds a '{other}' model, not an? "):
        type(model).from_payload({**payload, "kind": other}, source="here.pt")
    with pytest.raises(CheckpointError, match="here.pt: invalid .* config .*bogus"):
        type(model).from_payload({**payload, "config": {**payload["config"], "bogus": 1}}, source="here.pt")


def test_from_payload_keeps_the_callers_random_stream():
    model = _models()["stylegan2"]
    payload = {"kind": "stylegan2", "config": model.config.to_dict(), "model": model.state_dict()}
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    StyleGAN2Generator.from_payload(payload)
    assert torch.equal(torch.rand(3), expected)
