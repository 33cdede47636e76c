"""scmosaic: scMODAL in scvi-tools, alignment of single-cell modalities whose cells differ."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, metrics, pl, pp, tl
from .model import SCMODAL

try:
    __version__ = version("scmosaic")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["SCMODAL", "datasets", "metrics", "pl", "pp", "tl", "__version__"]
