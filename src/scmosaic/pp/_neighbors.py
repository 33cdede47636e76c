"""k-nearest-neighbour queries between cell sets: exact below a size, approximate above."""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.neighbors import NearestNeighbors

KnnMethod = Literal["auto", "exact", "approximate"]

# Above this many indexed cells "auto" switches to approximate search: exact
# tree search over 100,000 cells took 225 s of cca_links' time (benchmarks/cca_scaling.py).
APPROXIMATE_ABOVE = 50_000


def resolve_knn_method(method: KnnMethod, n_cells: int) -> Literal["exact", "approximate"]:
    """``"exact"`` or ``"approximate"`` for a search among ``n_cells`` indexed cells."""
    if method not in ("auto", "exact", "approximate"):
        raise ValueError(f"knn_method must be 'auto', 'exact' or 'approximate', got {method!r}.")
    if method == "auto":
        return "approximate" if n_cells > APPROXIMATE_ABOVE else "exact"
    return method


def knn_indices(
    data: np.ndarray,
    queries: np.ndarray | None,
    k: int,
    method: KnnMethod = "auto",
    seed: int = 0,
) -> np.ndarray:
    """Indices ``(n_queries, k)`` of the ``k`` Euclidean nearest rows of ``data``, nearest first.

    ``queries=None`` queries ``data`` itself (each row is its own first neighbour). Exact
    search uses :class:`sklearn.neighbors.NearestNeighbors`; approximate search uses
    :class:`pynndescent.NNDescent` (as scanpy does), seeded, so results are reproducible.
    """
    k = min(k, len(data))
    degree = max(k, 15)  # of the approximate search graph: below ~15 its recall drops
    # The index is built on ``data``: its size decides; a graph needs many more cells than
    # its degree (pynndescent returns -1 indices otherwise), so tiny sets are searched exactly.
    resolved = resolve_knn_method(method, len(data))
    if resolved == "exact" or len(data) <= 4 * degree:
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
