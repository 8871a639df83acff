"""Generative image models that map frames to latents and back (see :mod:`generative.backbones.registry`)."""

from generative.backbones.registry import DEFAULT_BACKBONE, Backbone, load, load_default

__all__ = ["Backbone", "load", "load_default", "DEFAULT_BACKBONE"]
