"""Label-transfer metrics: accuracy / macro-F1 of kNN label transfer, anchor precision."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import f1_score

from .._checks import as_finite_matrix, as_labels, check_positive_int, check_same_space
from ..tl import knn_transfer
from ..tl._knn import check_distance_range

__all__ = ["anchor_precision", "label_transfer_accuracy"]


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
        Number of neighbours for :func:`scmosaic.tl.knn_transfer`.
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
    check_positive_int(k, "k")
    a = as_finite_matrix(emb_a, "emb_a")
    b = as_finite_matrix(emb_b, "emb_b")
    la = as_labels(labels_a, "labels_a", a.shape[0])
    lb = as_labels(labels_b, "labels_b", b.shape[0])
    check_same_space(a, b, "emb_a", "emb_b")
    check_distance_range(a, "emb_a")
    check_distance_range(b, "emb_b")

    def _direction(
        ref: np.ndarray, ref_lab: np.ndarray, qry: np.ndarray, qry_lab: np.ndarray
    ) -> tuple[float, float]:
        scored = ~pd.isna(qry_lab)
        # A metric: exact at every size, so scores do not depend on an index's recall.
        pred, _ = knn_transfer(
            ref, ref_lab, qry[scored], k=k, chunk_size=chunk_size, knn_method="exact"
        )
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
    la = as_labels(labels_a, "labels_a")
    lb = as_labels(labels_b, "labels_b")
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
