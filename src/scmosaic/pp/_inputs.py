"""What :mod:`scmosaic.pp` reads from a MuData, checked once: modalities and matrices.

A matrix is ``.X`` or a layer of a modality, in memory (dense or sparse) or backed
(``mudata.read_h5mu(path, backed=True)``: an :class:`h5py.Dataset` or anndata's backed
sparse dataset). :func:`get_matrix` checks its values (numeric, finite, non-negative counts,
not all zero, and for counts their stage: raw, not log-normalised) reading a backed matrix
in chunks of rows, and hands it back in memory unless asked to keep it backed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import anndata as ad
import numpy as np
from mudata import MuData
from scipy import sparse

from .._checks import LOG_SCALE_MAX, data_stage, get_modality

CHUNK_ROWS = 8192
"""Rows of a backed matrix read at a time."""


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


def check_n_cells(
    adata: ad.AnnData, modality: str, caller: str, minimum: int = 2, fix: str = ""
) -> None:
    """Raise a ``ValueError`` naming the modality unless it has ``minimum`` cells or more."""
    if adata.n_obs < minimum:
        raise ValueError(
            f"Modality {modality!r} has {adata.n_obs} cell(s); {caller} needs at least "
            f"{minimum}{fix}."
        )


def check_number(value, name: str, *, positive: bool = False, allow_none: bool = False) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a finite number >= 0.

    With ``positive`` it must be > 0; with ``allow_none`` ``None`` is accepted too.
    """
    if value is None and allow_none:
        return
    is_number = isinstance(value, int | float | np.integer | np.floating)
    if is_number and not isinstance(value, bool) and np.isfinite(value):
        if value > 0 or (value == 0 and not positive):
            return
    what = "a positive number" if positive else "a number >= 0"
    raise ValueError(f"`{name}` must be {what}{' or None' if allow_none else ''}, got {value!r}.")


def is_backed(x) -> bool:
    """Whether ``x`` is a matrix on disk (not a NumPy array or a SciPy sparse matrix)."""
    return not (isinstance(x, np.ndarray) or sparse.issparse(x))


def row_chunks(x, chunk_size: int | None = None) -> Iterator[np.ndarray | sparse.spmatrix]:
    """In-memory blocks of ``chunk_size`` rows (:data:`CHUNK_ROWS`) of ``x``.

    An in-memory ``x`` is one block: it is itself.
    """
    if not is_backed(x):
        yield x
        return
    chunk_size = chunk_size or CHUNK_ROWS
    for start in range(0, x.shape[0], chunk_size):
        chunk = x[start : start + chunk_size]
        yield chunk if sparse.issparse(chunk) else np.asarray(chunk)


def to_memory(x):
    """``x`` read into memory (a backed sparse dataset as a SciPy sparse matrix)."""
    if not is_backed(x):
        return x
    if hasattr(x, "to_memory"):  # anndata's backed CSR / CSC datasets
        return x.to_memory()
    return np.asarray(x[()])


def _values(chunk) -> np.ndarray:
    return chunk.data if sparse.issparse(chunk) else np.asarray(chunk).ravel()


def _check_values(x, modality: str, what: str, counts: bool, layer_arg: str) -> bool:
    """Numeric and finite (and, for counts, non-negative) values; whether one is non-zero."""
    dtype = x.dtype if hasattr(x, "dtype") else _values(x).dtype
    if not np.issubdtype(np.dtype(dtype), np.number) or np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{what} of modality {modality!r} are not numeric ({dtype}).")
    nonzero = False
    for chunk in row_chunks(x):
        values = _values(chunk)
        if not values.size:
            continue
        finite = bool(np.isfinite(values).all())
        if counts and not (finite and values.min() >= 0):
            raise ValueError(
                f"Counts of modality {modality!r} must be finite and non-negative; pass the "
                f"raw count layer as {layer_arg}."
            )
        if not finite:
            raise ValueError(f"{what} of modality {modality!r} must be finite.")
        nonzero = nonzero or bool(np.any(values != 0))
    return nonzero


def _check_stage(
    x, adata: ad.AnnData, modality: str, caller: str, layer_arg: str, alternative: str
) -> None:
    """Refuse log-normalised values where raw counts are expected; warn on other values."""
    stage = data_stage(x)
    if stage == "counts":
        return
    layers = f"the layers of {modality!r} are {list(adata.layers)}"
    if stage == "log-normalised":
        raise ValueError(
            f"Modality {modality!r} looks log-normalised already (non-integer values, none "
            f"above {LOG_SCALE_MAX:g}), but {caller} expects raw counts and would normalise "
            f"and log them again. Pass the layer with the raw counts as "
            f"{layer_arg}='<layer>' ({layers}){alternative}."
        )
    warnings.warn(
        f"Modality {modality!r} does not look like raw counts (non-integer values above "
        f"{LOG_SCALE_MAX:g}, e.g. ambient-corrected counts, or no non-zero value in its first "
        f"cells); {caller} uses them as counts. If they are not, pass the raw counts as "
        f"{layer_arg}='<layer>' ({layers}).",
        UserWarning,
        stacklevel=4,
    )


def get_matrix(
    adata: ad.AnnData,
    layer: str | None,
    modality: str,
    *,
    counts: bool = True,
    caller: str = "this function",
    layer_arg: str = "counts_layer",
    alternative: str = "",
    in_memory: bool = True,
):
    """``.X`` or a layer of a modality, checked; in memory unless ``in_memory=False``.

    The values must be numeric, finite and not all zero; with ``counts`` also non-negative
    and, judged by :func:`scmosaic._checks.data_stage`, raw counts: log-normalised values
    raise a ``ValueError`` (``caller`` would normalise them again), other values (e.g.
    ambient-corrected counts) a ``UserWarning``. ``layer_arg`` names the caller's layer
    parameter in the fix the messages give; ``alternative`` (``", or ..."``) adds another.
    A backed matrix is checked chunk by chunk and read into memory when ``in_memory``.
    """
    if layer is not None and layer not in adata.layers:
        raise KeyError(
            f"Layer {layer!r} not found in modality {modality!r}; it has {list(adata.layers)}."
        )
    x = adata.X if layer is None else adata.layers[layer]
    if x is None:
        raise ValueError(f"Modality {modality!r} has no .X; pass a layer as {layer_arg}.")
    what = "Counts" if counts else "Values"
    if not all(x.shape):
        return to_memory(x) if in_memory else x
    if not _check_values(x, modality, what, counts, layer_arg):
        raise ValueError(
            f"{what} of modality {modality!r} are all zero ({x.shape[0]} cells x "
            f"{x.shape[1]} features): there is nothing for {caller} to work with."
        )
    if counts:
        _check_stage(x, adata, modality, caller, layer_arg, alternative)
    return to_memory(x) if in_memory else x
