"""scmosaic: scMODAL in scvi-tools, alignment of single-cell modalities whose cells differ."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from . import datasets, metrics, pl, pp, tl, workflow
    from .model import SCMODAL

__all__ = ["SCMODAL", "datasets", "metrics", "pl", "pp", "tl", "workflow", "__version__"]

# Submodules load on first use (PEP 562): `import scmosaic` and the command line's argument
# parsing stay free of torch, scvi-tools and scanpy, which take seconds to import.
_SUBMODULES = frozenset({"datasets", "metrics", "model", "pl", "pp", "tl", "workflow"})
_FROM_SUBMODULE = {"SCMODAL": "model"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _FROM_SUBMODULE:
        value = getattr(importlib.import_module(f".{_FROM_SUBMODULE[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
