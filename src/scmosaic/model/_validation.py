"""Input checks of SCMODAL.setup_mudata with errors that name what is wrong."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from mudata import MuData
from scipy import sparse

from .._checks import data_stage, get_modality
from ._layout import DataLayout, Link


def _check_values(values, what: str, chunk_size: int = 8192) -> bool:
    """Numeric and finite, checked chunk-wise (sparse: on stored values only).

    Returns whether any value is non-zero.
    """
    if isinstance(values, pd.DataFrame):
        non_numeric = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
        if non_numeric:
            raise TypeError(f"{what} has non-numeric columns {non_numeric[:5]}.")
        values = values.to_numpy()
    dtype = getattr(values, "dtype", None)
    if dtype is None or not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        raise TypeError(f"{what} must be numeric, got dtype {dtype}.")
    if sparse.issparse(values):
        if not np.isfinite(values.data).all():
            raise ValueError(f"{what} contains NaN or infinite values.")
        return bool(np.any(values.data))
    # Backed (on-disk) matrices are read a chunk at a time; a backed sparse chunk is sparse.
    any_nonzero = False
    for start in range(0, values.shape[0], chunk_size):
        chunk = values[start : start + chunk_size]
        stored = chunk.data if sparse.issparse(chunk) else np.asarray(chunk)
        if not np.isfinite(stored).all():
            raise ValueError(f"{what} contains NaN or infinite values.")
        any_nonzero = any_nonzero or bool(np.any(stored))
    return any_nonzero


def validate_setup(mdata: MuData, layout: DataLayout, layers: dict) -> None:
    """Raise a specific error for every input problem SCMODAL cannot train on."""
    if not isinstance(mdata, MuData):
        raise TypeError(f"SCMODAL needs a MuData, got {type(mdata).__name__}.")
    modalities = layout.modalities
    # A query mapped onto a trained model may hold a single modality.
    fewest = 1 if layout.query else 2
    if len(modalities) < fewest or len(set(modalities)) != len(modalities):
        raise ValueError(f"Give at least {fewest} distinct modalities, got {list(modalities)}.")
    unknown_layers = set(layers) - set(modalities)
    if unknown_layers:
        raise ValueError(
            f"layers names modalities that are not registered: {sorted(unknown_layers)}."
        )
    for m in modalities:
        _check_modality(mdata, m, layers.get(m))
    for link in () if layout.query else layout.links:
        _check_link(mdata, link)
    if layout.batch_key is not None:
        for m in modalities:
            _check_batches(mdata, m, layout.batch_key)


def _check_modality(mdata: MuData, m: str, layer: str | None) -> None:
    adata = get_modality(mdata, m)
    if not m.isidentifier():
        raise ValueError(f"Modality name {m!r} must be a valid identifier (letters, digits, _).")
    if adata.n_obs < 2 or adata.n_vars == 0:
        raise ValueError(
            f"Modality {m!r} has {adata.n_obs} cells x {adata.n_vars} features; SCMODAL needs "
            "at least 2 cells and 1 feature per modality."
        )
    if adata.is_view:
        raise ValueError(
            f"Modality {m!r} is a view of another AnnData; build the MuData from a copy "
            f"(mdata.mod[{m!r}] = mdata.mod[{m!r}].copy(), or adata[...].copy())."
        )
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
        raise ValueError(
            f"Modality {m!r} has duplicated feature names, e.g. {dup}; "
            "call mdata.mod[m].var_names_make_unique() first."
        )
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in modality {m!r}; it has {list(adata.layers)}.")
    what = f"Modality {m!r} " + (".X" if layer is None else f"layer {layer!r}")
    values = adata.X if layer is None else adata.layers[layer]
    if not _check_values(values, what):
        raise ValueError(f"{what} is all zero: there is nothing to integrate.")
    if data_stage(values) == "counts":
        warnings.warn(
            f"{what} holds non-negative integers, i.e. raw counts, but SCMODAL expects "
            "log-normalised values: run `mdata = scmosaic.pp.preprocess(mdata)` first, or "
            f"register a log-normalised layer with layers={{{m!r}: '<layer>'}}.",
            UserWarning,
            stacklevel=4,
        )


def _check_link(mdata: MuData, link: Link) -> None:
    widths = {}
    for mod, key, _ in link.sides:
        obsm = mdata.mod[mod].obsm
        if key not in obsm:
            raise KeyError(
                f"Link {link.name!r}: modality {mod!r} has no .obsm[{key!r}] of linked "
                f"features (it has {list(obsm)}); compute it with scmosaic.pp.link_features "
                "or scmosaic.pp.cca_links."
            )
        values = obsm[key]
        widths[mod] = values.shape[1] if values.ndim == 2 else 0
        if widths[mod] == 0:
            raise ValueError(
                f"Link {link.name!r}: .obsm[{key!r}] of {mod!r} has no linked features."
            )
        _check_values(values, f"Link {link.name!r}: .obsm[{key!r}] of {mod!r}")
    if widths[link.mod_a] != widths[link.mod_b]:
        raise ValueError(
            f"Link {link.name!r}: linked features differ in width: {link.mod_a!r} "
            f".obsm[{link.key_a!r}] has {widths[link.mod_a]} columns, {link.mod_b!r} "
            f".obsm[{link.key_b!r}] has {widths[link.mod_b]}."
        )


def _check_batches(mdata: MuData, m: str, batch_key: str) -> None:
    """The batch column of modality ``m``: present, complete, no batch of a single cell."""
    if not isinstance(batch_key, str) or not batch_key:
        raise TypeError(f"batch_key must be the name of an .obs column, got {batch_key!r}.")
    obs = mdata.mod[m].obs
    if batch_key not in obs:
        hint = (
            f" It is in mdata.obs: copy it to the modalities with mdata.pull_obs([{batch_key!r}])."
            if batch_key in mdata.obs
            else ""
        )
        raise KeyError(f"Modality {m!r} has no .obs[{batch_key!r}] (batch_key).{hint}")
    labels = obs[batch_key]
    if labels.isna().any():
        raise ValueError(
            f"Modality {m!r}: .obs[{batch_key!r}] has {int(labels.isna().sum())} missing "
            "batch labels; give every cell a batch."
        )
    counts = labels.astype(str).value_counts()
    single = counts[counts < 2].index.tolist()
    if single:
        raise ValueError(
            f"Modality {m!r}: batches {single[:5]} of .obs[{batch_key!r}] have a single cell; "
            "merge them into another batch or drop those cells."
        )
