"""Dataclass configs as plain dicts: :class:`ConfigDict` gives ``to_dict`` and a strict ``from_dict``.

Configs travel inside checkpoints and run folders as dicts. Reading one back must refuse keys the
dataclass does not know (a typo, or a file written by another kind of run) instead of silently
dropping them; keys it lacks take their defaults, so files written before a field was added still
load.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Mapping, TypeVar

__all__ = ["ConfigDict", "unknown_fields"]

C = TypeVar("C", bound="ConfigDict")


def unknown_fields(cls: type, d: Mapping) -> list[str]:
    """The keys of ``d`` that are not fields of dataclass ``cls``, sorted."""
    known = {f.name for f in fields(cls)}
    return sorted(str(k) for k in d if k not in known)


class ConfigDict:
    """Mixin for dataclass configs. ``UNKNOWN_FIELDS`` words the error for unknown keys; it may use
    ``{name}`` (the class name), ``{unknown}`` and ``{known}`` (comma-separated field names)."""

    UNKNOWN_FIELDS = "unknown {name} fields: {unknown}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[C], d: Mapping) -> C:
        """``cls(**d)``; a ``ValueError`` naming every key of ``d`` that is not a field."""
        unknown = unknown_fields(cls, d)
        if unknown:
            known = sorted(f.name for f in fields(cls))
            raise ValueError(cls.UNKNOWN_FIELDS.format(name=cls.__name__, unknown=", ".join(unknown), known=", ".join(known)))
        return cls(**d)
