"""k-nearest-neighbour queries between cell sets, exact or approximate."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

logger = logging.getLogger(__name__)

KnnMethod = Literal["auto", "exact", "approximate"]
KNN_METHODS = ("auto", "exact", "approximate")

EXACT_MAX_CELLS = 50_000
"""``knn_method="auto"`` searches sets of at most this many cells exactly. Exact search
grows with (searched cells) x (queries): at 100,000 cells per modality ``cca_links`` took
371 s on one thread with it and 53 s with the inverted-file index (``cca_scaling.py``)."""

# Inverted-file index (faiss IndexIVFFlat): k-means cells into IVF_LISTS_PER_SQRT * sqrt(n)
# lists, search the IVF_PROBES lists nearest each query. On replicated Hao cells (10^5 per
# modality, benchmarks/knn_search.py) this found 98.5-99.98% of the exact mutual nearest pairs
# of the workflow's searches, where an HNSW graph found 56% between the two modalities' linked
# features (queries unlike the indexed set are a graph's weak spot).
IVF_LISTS_PER_SQRT = 4
IVF_PROBES = 32
IVF_TRAIN_PER_LIST = 40  # k-means sample per list (faiss warns below 39)


def check_knn_method(method: str) -> None:
    """Raise a ``ValueError`` unless ``method`` is one of :data:`KNN_METHODS`."""
    if method not in KNN_METHODS:
        raise ValueError(f"knn_method must be one of {KNN_METHODS}, got {method!r}.")


def resolved_knn_method(method: KnnMethod, n_cells: int) -> Literal["exact", "approximate"]:
    """The search ``method`` uses on a set of ``n_cells`` (``"auto"`` decided by size)."""
    check_knn_method(method)
    if method == "auto":
        return "exact" if n_cells <= EXACT_MAX_CELLS else "approximate"
    return method


def knn_searcher(
    data: np.ndarray, k: int, method: KnnMethod = "auto", seed: int = 0
) -> Callable[..., np.ndarray]:
    """A function mapping queries to the indices ``(n_queries, k)`` of their ``k`` Euclidean
    nearest rows of ``data``, nearest first; ``None`` queries ``data`` itself. Its optional
    second argument asks one call for another number of neighbours than ``k``.

    The index is built once, so queries can come a chunk at a time. ``k`` is capped at the
    rows of ``data``. Exact search uses :class:`sklearn.neighbors.NearestNeighbors`;
    approximate search a seeded faiss inverted-file index (float32), reproducible for a
    given ``seed``.
    """
    k = min(k, len(data))
    if resolved_knn_method(method, len(data)) == "exact":
        nn = NearestNeighbors(n_neighbors=k).fit(data)
        return lambda queries, n=None: nn.kneighbors(
            data if queries is None else queries,
            n_neighbors=k if n is None else min(n, len(data)),
            return_distance=False,
        )
    return _ivf_searcher(np.ascontiguousarray(data, dtype=np.float32), k, seed)


def _ivf_searcher(data: np.ndarray, k: int, seed: int) -> Callable:
    import faiss

    n, dim = data.shape
    n_lists = min(int(IVF_LISTS_PER_SQRT * np.sqrt(n)), n // IVF_TRAIN_PER_LIST)
    if n_lists < 2:  # too few cells to train lists: one scan of all, i.e. exact
        index = faiss.IndexFlatL2(dim)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, n_lists)
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        n_train = min(n, IVF_TRAIN_PER_LIST * n_lists)
        index.train(data[np.sort(rng.choice(n, n_train, replace=False))])
        index.nprobe = min(IVF_PROBES, n_lists)
        logger.info(
            "Approximate neighbour search in %d cells: %d k-means lists, %d searched per query.",
            n,
            n_lists,
            index.nprobe,
        )
    index.add(data)

    @functools.cache
    def exact_index():  # built on the first query that needs it, then kept
        flat = faiss.IndexFlatL2(dim)
        flat.add(data)
        return flat

    def search(queries: np.ndarray | None, n: int | None = None) -> np.ndarray:
        n = k if n is None else min(n, len(data))
        q = data if queries is None else np.ascontiguousarray(queries, dtype=np.float32)
        _, indices = index.search(q, n)
        short = (indices < 0).any(axis=1)  # probed lists held fewer than n cells
        if short.any():
            indices[short] = exact_index().search(q[short], n)[1]
        return indices.astype(np.intp)

    return search


def knn_indices(
    data: np.ndarray,
    queries: np.ndarray | None,
    k: int,
    method: KnnMethod = "auto",
    seed: int = 0,
) -> np.ndarray:
    """Indices ``(n_queries, k)`` of the ``k`` Euclidean nearest rows of ``data``, nearest first.

    ``queries=None`` queries ``data`` itself (each row is its own first neighbour, up to
    duplicates). See :func:`knn_searcher` for the methods.
    """
    return knn_searcher(data, k, method, seed)(queries)


def neighbor_distances(data: np.ndarray, queries: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(n_queries, k)`` from each query to its neighbours ``indices``
    (rows of ``data``), in the queries' and data's common precision."""
    return np.linalg.norm(data[indices] - queries[:, None, :], axis=2)


def knn_connectivity(indices: np.ndarray, n_cols: int) -> sparse.csr_matrix:
    """0/1 ``(n, n_cols)`` matrix with a 1 at ``(i, indices[i, j])`` for every ``j``."""
    n, k = indices.shape
    return sparse.csr_matrix(
        (np.ones(n * k), indices.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n_cols)
    )


def averaging_operator(
    values: np.ndarray, n_neighbors: int, method: KnnMethod = "auto", seed: int = 0
) -> sparse.csr_matrix:
    """Row-stochastic operator averaging each row of ``values`` over its nearest rows.

    Each row is its own nearest neighbour, so a row averages ``n_neighbors`` rows in all
    (itself included; capped at the number of rows), found by :func:`knn_indices`.
    """
    indices = knn_indices(values, None, n_neighbors, method, seed)
    return knn_connectivity(indices, values.shape[0]) / indices.shape[1]
