"""A modality's PCA embedding from its full features: normalise, log1p, scale, PCA.

Shared by :func:`~scmosaic.pp.link_features` (its kNN smoothing) and
:func:`~scmosaic.pp.cca_links` (the space of the CCA and of its smoothing); the kNN average
over the embedding is :func:`~scmosaic.pp._neighbors.averaging_operator`.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc
from scipy import sparse

from .._stats import feature_mean_std


def log_normalized_adata(x, normalized: bool = False) -> ad.AnnData:
    """A float32 AnnData copy of ``x`` (CSR when sparse), normalised and log1p'd.

    ``normalize_total`` to 1e4 and ``log1p``, skipped when ``normalized`` (the values
    already are).
    """
    x = sparse.csr_matrix(x, dtype=np.float32) if sparse.issparse(x) else np.array(x, np.float32)
    adata = ad.AnnData(x)
    if not normalized:
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
    return adata


def _unit_variance(x, mean: np.ndarray, std: np.ndarray, clip: float | None):
    """Each column divided by its std; sparse input stays sparse (centring is left to PCA).

    Centring explicitly, as :func:`scanpy.pp.scale` does, would densify the matrix. Its
    ``max_value`` clip of the z-scores is applied as a clip of the values at
    ``mean + clip * std``: for non-negative data only large values reach it, and in a
    sparse matrix those are stored entries.
    """
    inverse = (1.0 / std).astype(np.float32)
    if sparse.issparse(x):
        x = sparse.csr_matrix(x)  # a new object: its .data can be replaced
        if clip is not None:
            x.data = np.minimum(x.data, (mean + clip * std)[x.indices]).astype(np.float32)
        return sparse.csr_matrix(x @ sparse.diags(inverse))
    if clip is not None:
        x = np.minimum(x, mean + clip * std).astype(np.float32)
    return (x / std.astype(np.float32)).astype(np.float32)


def pca_embedding(
    x,
    n_pcs: int,
    *,
    normalized: bool = False,
    clip: float | None = None,
    seed: int = 0,
    name: str = "the matrix",
) -> np.ndarray:
    """Principal components of cells from all their features, sparse input kept sparse.

    ``normalize_total`` to 1e4 and ``log1p`` (skipped with ``normalized``), unit variance
    per feature (ddof=1; constant features left as they are), optionally clipped at
    ``clip`` standard deviations above the mean, and :func:`scanpy.pp.pca` (zero-centred,
    ARPACK, ``min(n_pcs, n_cells - 1, n_features - 1)`` components). Constant features are
    centred explicitly (a large constant would cancel imprecisely in float32); cells that
    are all the same after normalisation (no feature varies) all get the zero vector.

    Parameters
    ----------
    x
        Cells x features, dense or sparse; raw counts unless ``normalized``.
    n_pcs
        Number of principal components at most.
    normalized
        ``x`` is already normalised (e.g. log-normalised).
    clip
        Clip of the standardised values from above (as ``sc.pp.scale(max_value=clip)``);
        ``None``: no clip.
    seed
        Seed of the PCA.
    name
        What ``x`` is, for error messages (e.g. ``"modality 'rna'"``).

    Returns
    -------
    ``(n_cells, n_comps)`` principal components (float32 for the float32 data PCA sees).
    """
    adata = log_normalized_adata(x, normalized)
    n_comps = min(n_pcs, adata.n_obs - 1, adata.n_vars - 1)
    if n_comps < 1:
        raise ValueError(f"Too few cells or features to reduce the {adata.shape} matrix of {name}.")
    mean, std = feature_mean_std(adata.X)
    adata.X = _unit_variance(adata.X, mean, std, clip)
    values = adata.X.data if sparse.issparse(adata.X) else adata.X
    if not np.isfinite(values).all():
        raise ValueError(
            f"The values of {name} are too large or too small to be standardised in float32 "
            "(the precision of its PCA); rescale them."
        )
    low, high = column_range(adata.X)
    if np.all(low == high):  # every cell the same point: ARPACK refuses a zero matrix
        return np.zeros((adata.n_obs, n_comps), dtype=np.float32)
    adata.X = _centre_constant_columns(adata.X, (low == high) & (low != 0))
    sc.pp.pca(adata, n_comps=n_comps, zero_center=True, svd_solver="arpack", random_state=seed)
    return adata.obsm["X_pca"]


def column_range(x) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest value of each column."""
    low, high = x.min(0), x.max(0)
    if sparse.issparse(low):
        low, high = low.toarray(), high.toarray()
    return np.asarray(low).ravel(), np.asarray(high).ravel()


def _centre_constant_columns(x, columns: np.ndarray):
    """``x`` with the constant ``columns`` set to 0, as centring does; ``x`` if there are none.

    PCA centres them anyway; done implicitly (sparse input), a large constant cancels in
    float32 and can leave ARPACK a zero matrix.
    """
    if not columns.any():
        return x
    if sparse.issparse(x):
        x = sparse.csr_matrix(x, copy=True)
        x.data[columns[x.indices]] = 0
        x.eliminate_zeros()
        return x
    x = np.array(x, copy=True)
    x[:, columns] = 0
    return x
