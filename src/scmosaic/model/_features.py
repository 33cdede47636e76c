"""A trained model meeting data: the registered features of a modality, matched by name.

Encoders read the features they were trained on, in the order they were trained on. New data
(another MuData, a reloaded model's data, a query) may hold them in another order, hold more,
or miss some: features are matched by ``var_names`` here, once, for every inference path.
Linked features are not needed to embed cells, so nothing here reads ``.obsm``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

from .._keys import PREPROCESS_UNS_KEY


class FeatureMismatchError(KeyError):
    """New data lack features the model was trained on."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def preprocess_record(adata: AnnData) -> dict:
    """What :func:`scmosaic.pp.preprocess` recorded of ``adata`` (empty: no record)."""
    return dict(adata.uns.get(PREPROCESS_UNS_KEY, {}))


def check_normalization(adata: AnnData, modality: str, expected: str | None) -> None:
    """Refuse data that ``pp.preprocess`` normalised otherwise than the model's training data.

    Only recorded normalisations are compared: data without a record (normalised by the user)
    or a model without one (saved by scmosaic before 0.2) pass.

    Raises
    ------
    ValueError
        Both are recorded and differ; the message names the modality and the fix.
    """
    found = preprocess_record(adata).get("normalization")
    if expected is None or found is None or found == expected:
        return
    raise ValueError(
        f"Modality {modality!r} was normalised by {found!r} (scmosaic.pp.preprocess), but the "
        f"model was trained on {expected!r}-normalised values; preprocess the new data as the "
        f"training data were: scmosaic.pp.preprocess(mdata, protein_normalization={expected!r})."
    )


def feature_order(var_names: pd.Index, trained: Sequence[str], modality: str) -> np.ndarray | None:
    """Column of ``var_names`` holding each trained feature, or ``None`` if already in order.

    Raises
    ------
    FeatureMismatchError
        Some trained features are absent; the message names them.
    """
    trained = pd.Index(trained)
    if len(var_names) == len(trained) and var_names.equals(trained):
        return None
    if not var_names.is_unique:
        dup = var_names[var_names.duplicated()].unique()[:5].tolist()
        raise ValueError(f"Modality {modality!r} has duplicated feature names, e.g. {dup}.")
    positions = var_names.get_indexer(trained)
    missing = trained[positions < 0]
    if len(missing):
        raise FeatureMismatchError(
            f"Modality {modality!r} lacks {len(missing)} of the {len(trained)} features the "
            f"model was trained on, e.g. {missing[:5].tolist()}; features are matched by "
            "name (var_names)."
        )
    return positions


def registered_matrix(adata: AnnData, layer: str | None, modality: str):
    """The matrix a modality was registered with: ``.layers[layer]``, or ``.X``."""
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"Modality {modality!r} has no layer {layer!r}, which the model was trained on; "
            f"it has {list(adata.layers)}."
        )
    return adata.layers[layer]


def iterate_rows(matrix, columns: np.ndarray | None, chunk_size: int) -> Iterator[torch.Tensor]:
    """Dense float32 tensors of ``chunk_size`` rows at a time, columns picked by ``columns``.

    ``matrix`` may be dense, sparse or backed (on disk): only one chunk is read at a time.
    """
    for start in range(0, matrix.shape[0], chunk_size):
        chunk = matrix[start : start + chunk_size]
        if sparse.issparse(chunk):
            chunk = sparse.csr_matrix(chunk)
            chunk = (chunk[:, columns] if columns is not None else chunk).toarray()
        else:
            chunk = np.asarray(chunk)
            chunk = chunk[:, columns] if columns is not None else chunk
        yield torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
