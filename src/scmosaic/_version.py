"""The installed version of scmosaic (one place, importable without the rest of the package)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scmosaic")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
