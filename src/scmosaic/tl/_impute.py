"""Cross-modal imputation by latent neighbours: a kernel average of the nearest cells.

For a cell of modality A, the features of modality B are estimated as a weighted mean of
the measured B values of its ``k`` nearest B cells in the joint latent space, the weights a
Gaussian kernel of the distance whose width adapts to the local density of B cells. On the
Hao subset and PBMC 10k (pairing hidden, truth held out; ``benchmarks/imputation.py``) this
beats the decoder ``G_B(E_A(x))``, whose per-protein correlation with the truth is lower,
because the average over neighbours removes measurement noise that a decoder trained to
reconstruct single cells keeps.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse

from .._checks import as_finite_matrix, check_positive_int, check_same_space
from ..pp._neighbors import knn_searcher, neighbor_distances
from ._knn import check_distance_range

IMPUTATION_NEIGHBORS = 200
"""Default ``k`` of :func:`neighbor_weights`: the kernel's support. How much the farthest
of them weigh depends on the codes: at twice the width ``exp(-4)`` of the nearest, but in
many dimensions without clusters distances concentrate and the kernel nears a plain mean
(on Gaussian noise in 10 dimensions the 200th neighbour weighs a third of the 1st)."""

BANDWIDTH_RANK = 30
"""The kernel's width for a source cell is its distance to its ``BANDWIDTH_RANK``-th nearest
target cell (capped at ``k``), so it adapts to how densely target cells surround it.
Chosen against the held-out truth (median Pearson per protein; one-off script on
``benchmarks/imputation.py``'s protocol, Hao subset seeds 0-2 with 400 ADT cells, PBMC 10k
seeds 0-1 with 3,428): this kernel over 200 neighbours 0.334 / 0.864, against the plain mean
of the 50 nearest (the default before 2026-12-02) 0.315 / 0.857, of 100 0.324 / 0.863, of
200 0.276 / 0.857 (on the small set 200 neighbours are half of the ADT cells), and a width
at the 15th neighbour 0.337 / 0.860. ``benchmarks/results/imputation.md`` has the 3-seed
benchmark of the default."""

_CHUNK = 4_096  # source cells whose (k, latent) neighbour offsets are in memory at once


def neighbor_weights(
    source_codes: np.ndarray, target_codes: np.ndarray, n_neighbors: int
) -> sparse.csc_matrix:
    """Row-stochastic ``(n_source, n_target)`` kernel weights over each source cell's ``k``
    nearest target cells, ``k = min(n_neighbors, n_target)``.

    ``w_ij`` is proportional to ``exp(-(d_ij / s_i)^2)``, ``d_ij`` the Euclidean distance and
    ``s_i`` source cell ``i``'s distance to its ``min(BANDWIDTH_RANK, k)``-th nearest target
    cell, so the nearest target cell always weighs at least ``exp(-1)`` of the most. Where
    that distance is 0 (duplicated codes), the cells at distance 0 share the weight equally.
    Codes are compared in float32. Neighbours are found as
    :func:`~scmosaic.pp._neighbors.knn_searcher` finds them (exact up to 50,000 target cells,
    approximate above). Column-compressed, so that :func:`average_rows` can take it a block
    of target cells at a time: 8 bytes per source cell and neighbour, twice that while it is
    built (3.2 GB at the peak for 10^6 source cells at the default ``k``).
    """
    target_codes = np.asarray(target_codes, dtype=np.float32)
    n_source, n_target = len(source_codes), len(target_codes)
    if n_source == 0 or n_target == 0:
        return sparse.csc_matrix((n_source, n_target), dtype=np.float32)
    search = knn_searcher(target_codes, n_neighbors)
    k = min(n_neighbors, n_target)
    rank = min(BANDWIDTH_RANK, k) - 1
    weights = np.empty((n_source, k), dtype=np.float32)
    # One index type for the columns and the row pointers, which count every entry.
    index_type = np.int32 if max(n_target, n_source * k) < 2**31 else np.int64
    columns = np.empty((n_source, k), dtype=index_type)
    for start in range(0, n_source, _CHUNK):
        queries = np.asarray(source_codes[start : start + _CHUNK], dtype=np.float32)
        indices = search(queries)
        distances = neighbor_distances(target_codes, queries, indices)
        width = np.maximum(distances[:, [rank]], np.finfo(np.float32).tiny)
        with np.errstate(over="ignore"):
            kernel = np.exp(-np.square(distances / width))
        weights[start : start + len(queries)] = kernel / kernel.sum(1, keepdims=True)
        columns[start : start + len(queries)] = indices
    indptr = np.arange(0, n_source * k + 1, k, dtype=columns.dtype)
    rows = sparse.csr_matrix((weights.ravel(), columns.ravel(), indptr), (n_source, n_target))
    del weights, columns
    return rows.tocsc()


def average_rows(weights: sparse.csc_matrix, chunks: Iterable[np.ndarray]) -> np.ndarray:
    """``weights @ values`` where ``values`` arrives as consecutive blocks of rows.

    Only one block of the target's values is in memory at a time (it may be read from
    disk); the result is dense, ``(n_source, n_features)``, float32.
    """
    out: np.ndarray | None = None
    start = 0
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float32)
        stop = start + chunk.shape[0]
        part = weights[:, start:stop] @ chunk
        if out is None:
            out = part.astype(np.float32)
        else:
            out += part
        start = stop
    if start != weights.shape[1]:
        raise ValueError(f"Got values of {start} target cells for {weights.shape[1]} weights.")
    return out if out is not None else np.zeros((weights.shape[0], 0), np.float32)


def knn_impute(
    ref_emb: ArrayLike,
    ref_values: ArrayLike,
    query_emb: ArrayLike,
    *,
    n_neighbors: int = IMPUTATION_NEIGHBORS,
) -> np.ndarray:
    """Impute values for query cells from reference cells near them in a shared embedding.

    Each query cell gets a Gaussian-kernel average of the ``ref_values`` of its
    ``n_neighbors`` nearest reference cells (Euclidean), the kernel's width its distance to
    its 30th nearest (its ``n_neighbors``-th if fewer); the average behind
    :meth:`scmosaic.SCMODAL.get_imputed_features` (user guide, "Cross-modal imputation"),
    for any embedding, e.g. to compare another method's joint space on the same terms.
    Embeddings are compared, and values averaged, in float32.

    Parameters
    ----------
    ref_emb
        Reference embedding, shape ``(n_ref, d)``.
    ref_values
        Values measured in the reference cells, shape ``(n_ref, n_features)``.
    query_emb
        Query embedding, shape ``(n_query, d)``.
    n_neighbors
        Reference cells weighed per query cell (capped at ``n_ref``).

    Returns
    -------
    imputed
        Float32 array of shape ``(n_query, n_features)``.

    Raises
    ------
    ValueError
        A non-finite or non-numeric input, embeddings of different widths, values beyond
        float32's range, ``ref_values`` without one row per reference cell, no reference
        cell, or ``n_neighbors`` not a positive integer; the message names the argument.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([[0.0], [0.1], [5.0], [5.1]])
    >>> values = np.array([[1.0], [1.0], [9.0], [9.0]])
    >>> np.round(knn_impute(ref, values, np.array([[0.05], [5.05]]), n_neighbors=2), 3)
    array([[1.],
           [9.]], dtype=float32)
    """
    check_positive_int(n_neighbors, "n_neighbors")
    ref = as_finite_matrix(ref_emb, "ref_emb")
    query = as_finite_matrix(query_emb, "query_emb")
    values = as_finite_matrix(ref_values, "ref_values")
    check_same_space(ref, query, "ref_emb", "query_emb")
    for arr, name in ((ref, "ref_emb"), (query, "query_emb")):  # searched in float32
        check_distance_range(arr, name, np.float32)
    largest = float(np.abs(values).max()) if values.size else 0.0
    if largest > float(np.finfo(np.float32).max) / 2:  # averaged in float32
        raise ValueError(f"`ref_values` has values up to {largest:.3g}, beyond float32's range.")
    if values.shape[0] != ref.shape[0]:
        raise ValueError(
            f"`ref_values` must have one row per reference cell: got {values.shape[0]} rows "
            f"for {ref.shape[0]} cells of `ref_emb`."
        )
    if ref.shape[0] == 0:
        raise ValueError("`ref_emb` holds no cell to impute from.")
    return average_rows(neighbor_weights(query, ref, n_neighbors), [values])
