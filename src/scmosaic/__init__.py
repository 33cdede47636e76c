"""scmosaic: scMODAL in scvi-tools, alignment of single-cell modalities whose cells differ."""

from . import datasets, metrics, pl, pp, tl, workflow
from ._version import __version__
from .model import SCMODAL

__all__ = ["SCMODAL", "datasets", "metrics", "pl", "pp", "tl", "workflow", "__version__"]
