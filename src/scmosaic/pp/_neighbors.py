"""k-nearest-neighbour queries between cell sets, exact or approximate."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

KnnMethod = Literal["exact", "approximate"]


def check_knn_method(method: str) -> None:
    """Raise a ``ValueError`` unless ``method`` is ``"exact"`` or ``"approximate"``."""
    if method not in ("exact", "approximate"):
        raise ValueError(f"knn_method must be 'exact' or 'approximate', got {method!r}.")


def knn_indices(
    data: np.ndarray,
    queries: np.ndarray | None,
    k: int,
    method: KnnMethod = "exact",
    seed: int = 0,
) -> np.ndarray:
    """Indices ``(n_queries, k)`` of the ``k`` Euclidean nearest rows of ``data``, nearest first.

    ``queries=None`` queries ``data`` itself (each row is its own first neighbour). Exact
    search uses :class:`sklearn.neighbors.NearestNeighbors`; approximate search uses
    :class:`pynndescent.NNDescent` (as scanpy does), seeded, so results are reproducible.
    """
    k = min(k, len(data))
    degree = max(k, 30)  # of the approximate search graph (pynndescent's default, for recall)
    # The index is built on ``data``: its size decides; a graph needs many more cells than
    # its degree (pynndescent returns -1 indices otherwise), so tiny sets are searched exactly.
    check_knn_method(method)
    if method == "exact" or len(data) <= 4 * degree:
        nn = NearestNeighbors(n_neighbors=k).fit(data)
        return nn.kneighbors(data if queries is None else queries, return_distance=False)

    from pynndescent import NNDescent

    index = NNDescent(
        np.ascontiguousarray(data, dtype=np.float32),
        n_neighbors=degree,
        metric="euclidean",
        random_state=seed,
        n_jobs=1,
    )
    if queries is None:
        return index.neighbor_graph[0][:, :k]
    indices, _ = index.query(np.ascontiguousarray(queries, dtype=np.float32), k=k)
    return indices


def knn_connectivity(indices: np.ndarray, n_cols: int) -> sparse.csr_matrix:
    """0/1 ``(n, n_cols)`` matrix with a 1 at ``(i, indices[i, j])`` for every ``j``."""
    n, k = indices.shape
    return sparse.csr_matrix(
        (np.ones(n * k), indices.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n_cols)
    )


def averaging_operator(
    values: np.ndarray, n_neighbors: int, method: KnnMethod = "exact", seed: int = 0
) -> sparse.csr_matrix:
    """Row-stochastic operator averaging each row of ``values`` over its nearest rows.

    Each row is its own nearest neighbour, so a row averages ``n_neighbors`` rows in all
    (itself included; capped at the number of rows), found by :func:`knn_indices`.
    """
    indices = knn_indices(values, None, n_neighbors, method, seed)
    return knn_connectivity(indices, values.shape[0]) / indices.shape[1]
