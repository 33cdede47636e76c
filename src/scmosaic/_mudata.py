"""Making and reading MuData objects without mudata's transition notice.

mudata 0.3 warns on every new or read MuData that ``pull_on_update`` will change default in
0.4, unless the user set the option. scmosaic's outputs do not depend on it (modalities'
``.obs`` are what scmosaic reads and writes), so the notice would only be noise to users; the
behaviour, including the user's own setting of the option, is unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from os import PathLike
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mudata is imported when used: the command line parses options first
    from anndata import AnnData
    from mudata import MuData


@contextmanager
def _without_pull_notice() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"From 0\.4 \.update\(\) will not pull", category=FutureWarning
        )
        yield


def new_mudata(modalities: Mapping[str, AnnData]) -> MuData:
    """``MuData(modalities)``, without mudata's ``pull_on_update`` notice."""
    from mudata import MuData

    with _without_pull_notice():
        return MuData(dict(modalities))


def read_mudata(path: str | PathLike[str], **kwargs) -> MuData:
    """``mudata.read_h5mu(path, **kwargs)``, without mudata's ``pull_on_update`` notice."""
    import mudata

    with _without_pull_notice():
        return mudata.read_h5mu(path, **kwargs)
