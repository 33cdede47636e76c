"""Parameter descriptions shared by several :mod:`scmosaic.pp` functions, written once.

A docstring names the parameter as usual and puts ``{key}`` alone on the description line;
:func:`shared_docs` replaces it with the text below, indented like the placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from ._neighbors import EXACT_MAX_CELLS, IVF_LISTS_PER_SQRT, IVF_PROBES

_F = TypeVar("_F", bound=Callable)

PARAMS = {
    "mdata_pair": "The MuData, and the names ``(a, b)`` of the two modalities in it.",
    "layer": (
        "Layer to read in both modalities (default ``.X``): raw counts unless\n``normalized``."
    ),
    "normalized": (
        "The matrix is already normalised (e.g. log-normalised): skip ``normalize_total``\n"
        "and ``log1p``."
    ),
    "knn_method": (
        'Nearest-neighbour search: ``"exact"`` (scikit-learn), ``"approximate"`` (a seeded\n'
        f"faiss inverted-file index: the {IVF_PROBES} of {IVF_LISTS_PER_SQRT} sqrt(n) k-means "
        "lists nearest each query\n"
        f'are searched) or ``"auto"`` (exact for sets of at most {EXACT_MAX_CELLS:,} cells,\n'
        "approximate above).\n"
        ":func:`~scmosaic.pp.link_features` and :func:`~scmosaic.pp.cca_links` share it."
    ),
}

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)\{(?P<key>\w+)\}[ \t]*$", re.MULTILINE)


def shared_docs(func: _F) -> _F:
    """Fill the ``{key}`` placeholders of ``func``'s docstring with :data:`PARAMS`."""

    def fill(match: re.Match) -> str:
        lines = PARAMS[match["key"]].splitlines()
        return "\n".join(match["indent"] + line for line in lines)

    func.__doc__ = _PLACEHOLDER.sub(fill, func.__doc__ or "")
    return func
