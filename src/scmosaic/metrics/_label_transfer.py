"""Label-transfer metrics: kNN label transfer, accuracy / macro-F1, anchors."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import f1_score
from sklearn.neighbors import NearestNeighbors

from ._foscttm import _as_2d_finite

__all__ = ["anchor_precision", "knn_transfer", "label_transfer_accuracy"]


def _as_labels(labels: ArrayLike, name: str, n: int | None = None) -> np.ndarray:
    """Return labels as a 1-D object array (categoricals -> their values)."""
    if isinstance(labels, (pd.Series, pd.Index, pd.Categorical)):
        arr = np.asarray(labels.astype(object))
    else:
        arr = np.asarray(labels, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got shape {arr.shape}.")
    if n is not None and arr.shape[0] != n:
        raise ValueError(
            f"`{name}` has {arr.shape[0]} entries but the matching embedding has {n} rows."
        )
    return arr


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be a positive int, got {k!r}.")


def _check_chunk_size(chunk_size: int) -> None:
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise ValueError(f"`chunk_size` must be a positive int, got {chunk_size!r}.")


def knn_transfer(
    ref_emb: ArrayLike,
    ref_labels: ArrayLike,
    query_emb: ArrayLike,
    *,
    k: int = 1,
    chunk_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Transfer labels from reference cells to query cells by kNN majority vote.

    Neighbours are found with :class:`sklearn.neighbors.NearestNeighbors`
    (Euclidean distance), querying ``chunk_size`` cells at a time.

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
    distance as returned by scikit-learn).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([[0.0], [0.1], [5.0], [5.1]])
    >>> lab = np.array(["T", "T", "B", "B"])
    >>> pred, conf = knn_transfer(ref, lab, np.array([[0.2], [4.0]]), k=3)
    >>> pred.tolist(), np.round(conf, 3).tolist()
    (['T', 'B'], [0.667, 0.667])
    """
    _check_k(k)
    _check_chunk_size(chunk_size)
    ref = _as_2d_finite(ref_emb, "ref_emb")
    query = _as_2d_finite(query_emb, "query_emb")
    labels = _as_labels(ref_labels, "ref_labels", ref.shape[0])
    if ref.shape[1] != query.shape[1]:
        raise ValueError(
            "`ref_emb` and `query_emb` must have the same number of columns; got "
            f"ref_emb.shape={ref.shape} and query_emb.shape={query.shape}."
        )
    keep = ~pd.isna(labels)
    ref, labels = ref[keep], labels[keep]
    if k > ref.shape[0]:
        raise ValueError(
            f"`k`={k} exceeds the number of labelled reference cells ({ref.shape[0]})."
        )
    codes, uniques = pd.factorize(labels)
    uniques = np.asarray(uniques, dtype=object)
    n_classes = uniques.shape[0]

    n_query = query.shape[0]
    pred = np.empty(n_query, dtype=np.intp)
    conf = np.empty(n_query, dtype=np.float64)
    if n_query == 0:
        return uniques[pred], conf

    nn = NearestNeighbors(n_neighbors=k).fit(ref)
    for start in range(0, n_query, chunk_size):
        stop = min(start + chunk_size, n_query)
        idx = nn.kneighbors(query[start:stop], return_distance=False)
        nb_codes = codes[idx]  # (m, k), ordered nearest first
        m = stop - start
        rows = np.arange(m)
        votes = np.zeros((m, n_classes), dtype=np.int64)
        np.add.at(votes, (rows[:, None], nb_codes), 1)
        # Rank of the nearest voter for each label (k if the label got no vote).
        first = np.full((m, n_classes), k, dtype=np.int64)
        for p in range(k - 1, -1, -1):
            first[rows, nb_codes[:, p]] = p
        # More votes wins; among equal votes the nearer first voter wins.
        winner = np.argmax(votes * (k + 1) - first, axis=1)
        pred[start:stop] = winner
        conf[start:stop] = votes[rows, winner] / k
    return uniques[pred], conf


def _score(true: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Accuracy and macro-F1 of ``pred`` against ``true`` (no missing values)."""
    if true.shape[0] == 0:
        return float("nan"), float("nan")
    # Encode both jointly so that arbitrary (even mixed-type) labels work.
    codes, _ = pd.factorize(np.concatenate([true, pred]))
    t, p = codes[: true.shape[0]], codes[true.shape[0] :]
    acc = float(np.mean(t == p))
    f1 = float(f1_score(t, p, average="macro", zero_division=0.0))
    return acc, f1


def label_transfer_accuracy(
    emb_a: ArrayLike,
    labels_a: ArrayLike,
    emb_b: ArrayLike,
    labels_b: ArrayLike,
    *,
    k: int = 1,
    chunk_size: int = 2048,
) -> dict[str, float]:
    """Accuracy and macro-F1 of kNN label transfer in both directions.

    Parameters
    ----------
    emb_a, emb_b
        Embeddings of the two datasets/modalities in a shared space, shapes
        ``(n_a, d)`` and ``(n_b, d)``.
    labels_a, labels_b
        Cell labels (e.g. cell types) of length ``n_a`` and ``n_b``.  Missing
        labels (``NaN`` / ``None``) are excluded from the reference when
        predicting and from the scored query cells.
    k
        Number of neighbours for :func:`knn_transfer`.
    chunk_size
        Number of query cells searched at a time.

    Returns
    -------
    dict
        ``a_to_b``: accuracy of predicting ``labels_b`` from ``a``;
        ``b_to_a``: accuracy of predicting ``labels_a`` from ``b``;
        ``mean``: mean of the two accuracies;
        ``macro_f1_a_to_b``, ``macro_f1_b_to_a``: macro-averaged F1
        (:func:`sklearn.metrics.f1_score` with ``average="macro"``, over the
        union of true and predicted labels, ``zero_division=0``);
        ``macro_f1``: mean of the two macro-F1 values.
        A direction with no labelled query cell gives ``NaN``.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[0.0], [1.0], [10.0], [11.0]])
    >>> b = np.array([[0.5], [10.5], [0.2]])
    >>> res = label_transfer_accuracy(a, ["x", "x", "y", "y"], b, ["x", "y", "x"])
    >>> res["a_to_b"], res["b_to_a"], res["macro_f1"]
    (1.0, 1.0, 1.0)
    """
    _check_k(k)
    a = _as_2d_finite(emb_a, "emb_a")
    b = _as_2d_finite(emb_b, "emb_b")
    la = _as_labels(labels_a, "labels_a", a.shape[0])
    lb = _as_labels(labels_b, "labels_b", b.shape[0])
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            "`emb_a` and `emb_b` must have the same number of columns; got "
            f"emb_a.shape={a.shape} and emb_b.shape={b.shape}."
        )

    def _direction(
        ref: np.ndarray, ref_lab: np.ndarray, qry: np.ndarray, qry_lab: np.ndarray
    ) -> tuple[float, float]:
        scored = ~pd.isna(qry_lab)
        pred, _ = knn_transfer(ref, ref_lab, qry[scored], k=k, chunk_size=chunk_size)
        return _score(qry_lab[scored], pred)

    acc_ab, f1_ab = _direction(a, la, b, lb)
    acc_ba, f1_ba = _direction(b, lb, a, la)
    return {
        "a_to_b": acc_ab,
        "b_to_a": acc_ba,
        "mean": (acc_ab + acc_ba) / 2.0,
        "macro_f1_a_to_b": f1_ab,
        "macro_f1_b_to_a": f1_ba,
        "macro_f1": (f1_ab + f1_ba) / 2.0,
    }


def _as_index(idx: ArrayLike, name: str, n: int) -> np.ndarray:
    arr = np.asarray(idx)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D index array, got shape {arr.shape}.")
    if arr.size == 0:
        return arr.astype(np.intp)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"`{name}` must contain integers, got dtype {arr.dtype}.")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(
            f"`{name}` contains indices outside [0, {n}) (min={arr.min()}, max={arr.max()})."
        )
    return arr.astype(np.intp)


def anchor_precision(
    pairs_a: ArrayLike,
    pairs_b: ArrayLike,
    labels_a: ArrayLike,
    labels_b: ArrayLike,
) -> float:
    """Fraction of anchor pairs whose two cells carry the same label.

    Parameters
    ----------
    pairs_a, pairs_b
        Integer index arrays of equal length; pair ``p`` links cell
        ``pairs_a[p]`` of dataset a to cell ``pairs_b[p]`` of dataset b.
    labels_a, labels_b
        Labels of all cells of a and b.

    Returns
    -------
    float
        ``mean_p [labels_a[pairs_a[p]] == labels_b[pairs_b[p]]]`` over the
        pairs where both labels are present; pairs where either label is
        missing (``NaN`` / ``None``) are ignored.  ``NaN`` if there is no such
        pair.

    Examples
    --------
    >>> anchor_precision([0, 1, 2], [2, 0, 1], ["T", "B", "B"], ["B", "T", "T"])
    0.6666666666666666
    >>> anchor_precision([], [], ["T"], ["T"])
    nan
    """
    la = _as_labels(labels_a, "labels_a")
    lb = _as_labels(labels_b, "labels_b")
    ia = _as_index(pairs_a, "pairs_a", la.shape[0])
    ib = _as_index(pairs_b, "pairs_b", lb.shape[0])
    if ia.shape[0] != ib.shape[0]:
        raise ValueError(
            "`pairs_a` and `pairs_b` must have the same length; got "
            f"{ia.shape[0]} and {ib.shape[0]}."
        )
    pa, pb = la[ia], lb[ib]
    valid = ~(pd.isna(pa) | pd.isna(pb))
    if not np.any(valid):
        return float("nan")
    return float(np.mean(pa[valid] == pb[valid]))
