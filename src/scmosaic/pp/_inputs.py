"""What :mod:`scmosaic.pp` reads from a MuData, checked once: modalities and matrices."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
from mudata import MuData
from scipy import sparse

from .._checks import get_modality


def two_modalities(mdata: MuData, modalities: Sequence[str], caller: str) -> tuple[str, str]:
    """The names ``(a, b)`` of two different modalities of ``mdata``, checked.

    ``caller`` names the function in the message when both names are the same.
    """
    if len(modalities) != 2:
        raise ValueError(f"Exactly two modalities are needed, got {list(modalities)}.")
    mod_a, mod_b = modalities
    get_modality(mdata, mod_a)
    get_modality(mdata, mod_b)
    if mod_a == mod_b:
        raise ValueError(f"{caller} needs two different modalities.")
    return mod_a, mod_b


def get_matrix(adata: ad.AnnData, layer: str | None, modality: str, *, counts: bool = True):
    """``.X`` or a layer of a modality, checked to be numeric, finite and, with ``counts``, >= 0.

    The error for negative counts suggests the raw count layer: most callers expect counts.
    """
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in modality {modality!r}.")
    x = adata.X if layer is None else adata.layers[layer]
    values = x.data if sparse.issparse(x) else np.asarray(x)
    if not np.issubdtype(values.dtype, np.number):
        what = "Counts" if counts else "Values"
        raise TypeError(f"{what} of modality {modality!r} are not numeric ({values.dtype}).")
    if not values.size:
        return x
    finite = bool(np.isfinite(values).all())
    if counts and not (finite and values.min() >= 0):
        raise ValueError(
            f"Counts of modality {modality!r} must be finite and non-negative; pass the raw "
            "count layer as counts_layer."
        )
    if not finite:
        raise ValueError(f"Values of modality {modality!r} must be finite.")
    return x
