"""Generative image models that map frames to latents and back (see :mod:`generative.backbone`)."""

from .backbone import Backbone, load

__all__ = ["Backbone", "load"]
