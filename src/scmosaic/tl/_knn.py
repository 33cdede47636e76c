"""kNN label transfer between two embeddings: the classifier behind :func:`transfer_labels`."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from .._checks import as_finite_matrix, as_labels, check_positive_int, check_same_space
from ..pp._neighbors import KnnMethod, check_knn_method, knn_searcher, neighbor_distances


def check_distance_range(arr: np.ndarray, name: str, dtype: type = np.float64) -> None:
    """Raise a ``ValueError`` naming ``name`` if squared distances of its rows could overflow.

    Squared Euclidean distances between rows of ``d`` columns with values of absolute value at
    most ``m`` are at most ``4 d m^2``; beyond the range of ``dtype`` (the precision the
    search runs in) they become ``inf`` / ``NaN`` and neighbour ranks (kNN votes, FOSCTTM)
    would be silently wrong.
    """
    if arr.size == 0:
        return
    limit = np.sqrt(np.finfo(dtype).max / (4 * arr.shape[1]))
    largest = float(np.abs(arr).max())
    if largest > limit:
        raise ValueError(
            f"`{name}` has values up to {largest:.3g}: squared distances between its rows "
            f"would overflow {np.dtype(dtype).name} (limit {limit:.3g} for {arr.shape[1]} "
            "dimensions). Rescale the embedding."
        )


def knn_transfer(
    ref_emb: ArrayLike,
    ref_labels: ArrayLike,
    query_emb: ArrayLike,
    *,
    k: int = 1,
    chunk_size: int = 2048,
    knn_method: KnnMethod = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Transfer labels from reference cells to query cells by kNN majority vote.

    Neighbours (Euclidean distance) are searched ``chunk_size`` query cells at a time,
    exactly with :class:`sklearn.neighbors.NearestNeighbors` or, for references of more
    than 50,000 cells, approximately (``knn_method``).

    Parameters
    ----------
    ref_emb
        Reference embedding, shape ``(n_ref, d)``.
    ref_labels
        Reference labels, length ``n_ref`` (strings, numbers or a pandas
        Categorical/Series).  Reference cells with a missing label (``NaN`` /
        ``None`` / ``pd.NA``) are dropped before the neighbour search.
    query_emb
        Query embedding, shape ``(n_query, d)``.
    k
        Number of neighbours.  Must not exceed the number of labelled
        reference cells.
    chunk_size
        Number of query cells searched at a time (bounds memory).
    knn_method
        ``"exact"``, ``"approximate"`` (a faiss inverted-file index) or ``"auto"`` (exact
        for references of at most 50,000 labelled cells).

    Returns
    -------
    labels
        Object array of shape ``(n_query,)`` with the predicted labels.
    confidence
        Float array of shape ``(n_query,)``: fraction of the ``k`` neighbours
        that voted for the predicted label (always ``1.0`` when ``k=1``).

    Notes
    -----
    Ties in the vote are broken deterministically in favour of the tied label
    whose closest voter is nearest to the query (neighbours are ordered by
    distance as returned by the search).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([[0.0], [0.1], [5.0], [5.1]])
    >>> lab = np.array(["T", "T", "B", "B"])
    >>> pred, conf = knn_transfer(ref, lab, np.array([[0.2], [4.0]]), k=3)
    >>> pred.tolist(), np.round(conf, 3).tolist()
    (['T', 'B'], [0.667, 0.667])
    """
    ref, labels, query = _labelled_reference(
        ref_emb, ref_labels, query_emb, k, chunk_size, knn_method
    )
    codes, uniques = pd.factorize(labels)
    uniques = np.asarray(uniques, dtype=object)
    pred = np.empty(query.shape[0], dtype=np.intp)
    conf = np.empty(query.shape[0], dtype=np.float64)
    if query.shape[0] == 0:
        return uniques[pred], conf
    search = knn_searcher(ref, k, knn_method)
    for start, chunk in _chunks(query, chunk_size):
        stop = start + len(chunk)
        pred[start:stop], conf[start:stop] = _vote(codes[search(chunk)], len(uniques))
    return uniques[pred], conf


def _labelled_reference(ref_emb, ref_labels, query_emb, k, chunk_size, knn_method):
    """The checked reference (its labelled cells), their labels and the checked query."""
    check_positive_int(k, "k")
    check_positive_int(chunk_size, "chunk_size")
    check_knn_method(knn_method)
    ref = as_finite_matrix(ref_emb, "ref_emb")
    query = as_finite_matrix(query_emb, "query_emb")
    check_distance_range(ref, "ref_emb")
    check_distance_range(query, "query_emb")
    labels = as_labels(ref_labels, "ref_labels", ref.shape[0])
    check_same_space(ref, query, "ref_emb", "query_emb")
    keep = ~pd.isna(labels)
    ref, labels = ref[keep], labels[keep]
    if k > ref.shape[0]:
        raise ValueError(
            f"`k`={k} exceeds the number of labelled reference cells ({ref.shape[0]})."
        )
    return ref, labels, query


def _chunks(query: np.ndarray, chunk_size: int):
    """``(start, rows)`` of consecutive blocks of ``chunk_size`` query cells."""
    for start in range(0, query.shape[0], chunk_size):
        yield start, query[start : start + chunk_size]


def _vote(nb_codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Winning label code and vote fraction per row of neighbour label codes ``(m, k)``,
    ordered nearest first."""
    m, k = nb_codes.shape
    rows = np.arange(m)
    votes = np.zeros((m, n_classes), dtype=np.int64)
    np.add.at(votes, (rows[:, None], nb_codes), 1)
    # Rank of the nearest voter for each label (k if the label got no vote).
    first = np.full((m, n_classes), k, dtype=np.int64)
    for p in range(k - 1, -1, -1):
        first[rows, nb_codes[:, p]] = p
    # More votes wins; among equal votes the nearer first voter wins.
    winner = np.argmax(votes * (k + 1) - first, axis=1)
    return winner, votes[rows, winner] / k


REFERENCE_SCALE_CELLS = 5_000
"""Reference cells (a seeded sample) whose distances to their own neighbours set the scale
of :func:`distance_to_reference`."""


def distance_to_reference(
    ref_emb: ArrayLike,
    query_emb: ArrayLike,
    *,
    k: int = 15,
    chunk_size: int = 2048,
    knn_method: KnnMethod = "auto",
) -> np.ndarray:
    """How far each query cell lies from the reference, relative to how close reference
    cells lie to each other: a novelty score.

    The mean Euclidean distance from a query cell to its ``k`` nearest reference cells,
    divided by the median over reference cells of the same mean to their ``k`` nearest
    *other* reference cells (a seeded sample of at most 5,000 reference cells; their mean
    where the median is 0, no scaling where every such distance is 0). About 1 for
    a cell that sits among reference cells as they sit among each other; larger for a cell
    of a type the reference lacks. Unlike the vote's confidence of :func:`knn_transfer`, it
    stays informative when such cells land next to one known type, where every vote agrees
    (``benchmarks/query.py``: the AUROC for a donor's NK cells mapped onto a reference
    without NK cells).

    Parameters
    ----------
    ref_emb
        Reference embedding, shape ``(n_ref, d)``, at least 2 cells.
    query_emb
        Query embedding, shape ``(n_query, d)``.
    k
        Neighbours averaged (capped at ``n_ref - 1``).
    chunk_size
        Query cells searched at a time.
    knn_method
        As for :func:`knn_transfer`.

    Returns
    -------
    distance
        Float array of shape ``(n_query,)``, non-negative.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> np.round(distance_to_reference(ref, np.array([[1.5], [10.0]]), k=1), 2).tolist()
    [0.5, 7.0]
    """
    check_positive_int(k, "k")
    check_positive_int(chunk_size, "chunk_size")
    check_knn_method(knn_method)
    ref = as_finite_matrix(ref_emb, "ref_emb")
    query = as_finite_matrix(query_emb, "query_emb")
    check_same_space(ref, query, "ref_emb", "query_emb")
    _check_spacing_inputs(ref, query)
    k = min(k, ref.shape[0] - 1)
    search = knn_searcher(ref, k, knn_method)
    scale = _spacing(ref, search, k)
    out = np.empty(query.shape[0], dtype=np.float64)
    for start, chunk in _chunks(query, chunk_size):
        out[start : start + len(chunk)] = _mean_distance(ref, chunk, search(chunk)) / scale
    return out


def knn_transfer_with_distance(
    ref_emb: ArrayLike,
    ref_labels: ArrayLike,
    query_emb: ArrayLike,
    *,
    k: int,
    chunk_size: int,
    knn_method: KnnMethod,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`knn_transfer` and :func:`distance_to_reference` of its labelled reference
    cells, from one index and one search of the query (what :func:`transfer_labels` needs).
    """
    ref, labels, query = _labelled_reference(
        ref_emb, ref_labels, query_emb, k, chunk_size, knn_method
    )
    _check_spacing_inputs(ref, query)
    codes, uniques = pd.factorize(labels)
    uniques = np.asarray(uniques, dtype=object)
    search = knn_searcher(ref, k, knn_method)
    k_distance = min(k, ref.shape[0] - 1)
    scale = _spacing(ref, search, k_distance)
    pred = np.empty(query.shape[0], dtype=np.intp)
    conf = np.empty(query.shape[0], dtype=np.float64)
    distance = np.empty(query.shape[0], dtype=np.float64)
    for start, chunk in _chunks(query, chunk_size):
        stop = start + len(chunk)
        idx = search(chunk)
        pred[start:stop], conf[start:stop] = _vote(codes[idx], len(uniques))
        distance[start:stop] = _mean_distance(ref, chunk, idx[:, :k_distance]) / scale
    return uniques[pred], conf, distance


def _check_spacing_inputs(ref: np.ndarray, query: np.ndarray) -> None:
    for arr, name in ((ref, "ref_emb"), (query, "query_emb")):
        check_distance_range(arr, name, np.float32)  # the approximate search is float32
    if ref.shape[0] < 2:
        raise ValueError(
            f"`ref_emb` needs at least 2 cells to measure their spacing; got {ref.shape[0]}."
        )


def _spacing(ref: np.ndarray, search, k: int) -> float:
    """Median over a seeded sample of reference cells of their mean distance to their ``k``
    nearest other reference cells (the mean where that is 0; 1 where every one is 0)."""
    rng = np.random.default_rng(0)
    n_sample = min(REFERENCE_SCALE_CELLS, ref.shape[0])
    sample = ref[np.sort(rng.choice(ref.shape[0], n_sample, replace=False))]
    # k + 1: a reference cell's first neighbour is itself (or a duplicate at distance 0).
    own = _mean_distance(ref, sample, search(sample, k + 1)[:, 1:])
    # Mostly coincident reference cells have no typical spacing: then the mean, or none.
    return float(np.median(own)) or float(own.mean()) or 1.0


def _mean_distance(ref: np.ndarray, queries: np.ndarray, indices: np.ndarray) -> np.ndarray:
    return neighbor_distances(ref, queries, indices).mean(1)
