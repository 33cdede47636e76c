r"""FOSCTTM: fraction of samples closer than the true match.

Conventions
-----------
Rows ``x[i]`` and ``y[i]`` are true partners (the same cell measured in two
modalities).  For cell ``i`` of ``x`` the per-cell score is

.. math::

    f^{x}_i = \frac{1}{n} \sum_{j=1}^{n} [\, d(x_i, y_j) < d(x_i, y_i) \,]

i.e. the fraction of *all* ``n`` cells of the other modality that are
*strictly* closer to ``x[i]`` than its true partner ``y[i]`` (the GLUE / SCOT
convention: the denominator is ``n``, not ``n - 1``; the partner itself never
counts because the comparison is strict; ties do not count).  The ``y``
direction is defined symmetrically,
``f^{y}_j = mean_i [d(y_j, x_i) < d(y_j, x_j)]``.

Distances:

* ``metric="euclidean"``: Euclidean distance (GLUE / scMODAL convention).
* ``metric="pearson"``: ``1 - r`` with ``r`` the Pearson correlation between
  the two cell vectors (MaxFuse convention, typically on the first 15
  dimensions of the embedding, reported one-sided).

Memory is bounded by processing ``chunk_size`` rows at a time; the peak extra
memory is one ``(chunk_size, n)`` float64 block plus a boolean mask of the
same shape (about 1.8 GB for ``chunk_size=2048`` and ``n=100_000``; lower
``chunk_size`` to reduce it), never an ``n x n`` matrix.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from .._checks import as_finite_matrix, check_same_space
from ..tl._knn import check_distance_range

__all__ = ["foscttm", "foscttm_maxfuse", "foscttm_per_cell"]

Metric = Literal["euclidean", "pearson"]
_METRICS = ("euclidean", "pearson")


def _validate_pair(
    x: ArrayLike,
    y: ArrayLike,
    metric: str,
    n_dims: int | None,
    chunk_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    if metric not in _METRICS:
        raise ValueError(f"`metric` must be one of {_METRICS}, got {metric!r}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise TypeError(f"`chunk_size` must be an int, got {chunk_size!r}.")
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be >= 1, got {chunk_size}.")
    xa = as_finite_matrix(x, "x")
    ya = as_finite_matrix(y, "y")
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(
            "`x` and `y` must have the same number of rows (row i of x is the "
            f"true partner of row i of y); got x.shape={xa.shape} and "
            f"y.shape={ya.shape}."
        )
    check_same_space(xa, ya, "x", "y")
    check_distance_range(xa, "x")
    check_distance_range(ya, "y")
    if xa.shape[0] == 0:
        raise ValueError("`x` and `y` must contain at least one cell.")
    if n_dims is not None:
        if isinstance(n_dims, bool) or not isinstance(n_dims, (int, np.integer)):
            raise TypeError(f"`n_dims` must be an int or None, got {n_dims!r}.")
        if not 1 <= n_dims <= xa.shape[1]:
            raise ValueError(
                f"`n_dims` must be between 1 and the number of columns "
                f"({xa.shape[1]}), got {n_dims}."
            )
        xa = xa[:, :n_dims]
        ya = ya[:, :n_dims]
    if metric == "pearson":
        xa = _standardize_rows(xa, "x")
        ya = _standardize_rows(ya, "y")
    return xa, ya


def _standardize_rows(a: np.ndarray, name: str) -> np.ndarray:
    """Center rows and scale them to unit norm (so dot product = Pearson r)."""
    if a.shape[1] < 2:
        raise ValueError(
            f"metric='pearson' needs at least 2 dimensions per cell, got {a.shape[1]}."
        )
    centered = a - a.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centered, axis=1)
    # A row is (numerically) constant if its spread is negligible relative to
    # its magnitude; its correlation with anything is undefined.
    scale = np.maximum(np.abs(a).max(axis=1), np.finfo(np.float64).tiny)
    constant = norms <= 1e-12 * scale * np.sqrt(a.shape[1])
    if np.any(constant):
        idx = np.flatnonzero(constant)
        raise ValueError(
            f"metric='pearson': {idx.size} row(s) of `{name}` are constant "
            f"(first indices: {idx[:5].tolist()}), so their Pearson "
            "correlation is undefined."
        )
    return centered / norms[:, None]


def _one_direction(a: np.ndarray, b: np.ndarray, metric: str, chunk_size: int) -> np.ndarray:
    """Per-row FOSCTTM of ``a`` against ``b`` (rows of ``a`` are queries).

    Returns ``mean_j [d(a_i, b_j) < d(a_i, b_i)]`` for every ``i``.  Each row
    block of scores is computed once and the partner score is read from the
    same block, so ties (e.g. duplicated cells) are compared consistently.
    """
    n = a.shape[0]
    out = np.empty(n, dtype=np.float64)
    if metric == "euclidean":
        # ||a_i - b_j||^2 = ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j ; the first term
        # is constant within row i, so ranking by ||b_j||^2 - 2 a_i.b_j is
        # equivalent and avoids one pass over the block.
        b_sq = np.einsum("ij,ij->i", b, b)
    # Reused buffers: peak extra memory is one (chunk, n) float64 block plus
    # one (chunk, n) boolean mask.
    block = min(chunk_size, n)
    score_buf = np.empty((block, n), dtype=np.float64)
    mask_buf = np.empty((block, n), dtype=bool)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        # score[r, j] is a monotone transform of d(a_{start+r}, b_j)
        score = np.matmul(a[start:stop], b.T, out=score_buf[: stop - start])
        if metric == "euclidean":
            score *= -2.0
            score += b_sq[None, :]
        else:  # pearson: d = 1 - r, so rank by -r
            np.negative(score, out=score)
        rows = np.arange(stop - start)
        partner = score[rows, np.arange(start, stop)]
        mask = np.less(score, partner[:, None], out=mask_buf[: stop - start])
        closer = np.count_nonzero(mask, axis=1)
        out[start:stop] = closer / n
    return out


def foscttm_per_cell(
    x: ArrayLike,
    y: ArrayLike,
    *,
    metric: Metric = "euclidean",
    n_dims: int | None = None,
    chunk_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell FOSCTTM for both modalities.

    Parameters
    ----------
    x
        Embedding of modality 1, shape ``(n_cells, n_dims_total)``.
    y
        Embedding of modality 2, same shape as ``x``; ``y[i]`` is the true
        partner of ``x[i]``.
    metric
        ``"euclidean"`` (GLUE / scMODAL convention) or ``"pearson"``
        (distance ``1 - r`` between cell vectors, MaxFuse convention).
    n_dims
        If given, only the first ``n_dims`` columns of ``x`` and ``y`` are
        used (e.g. ``15`` for the MaxFuse convention).
    chunk_size
        Number of rows processed at a time; peak extra memory is about
        ``chunk_size * n_cells`` float64 values.

    Returns
    -------
    frac_x
        Shape ``(n_cells,)``. ``frac_x[i] = mean_j [d(x_i, y_j) < d(x_i, y_i)]``
        (denominator ``n_cells``, strict inequality).
    frac_y
        Shape ``(n_cells,)``. ``frac_y[j] = mean_i [d(y_j, x_i) < d(y_j, x_j)]``.

    Raises
    ------
    ValueError
        If the inputs are not 2-D, contain NaN/Inf or values so large that squared
        distances overflow, have different shapes, or (for ``metric="pearson"``) contain
        constant rows.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> y = np.array([[0.0], [2.0], [1.5]])
    >>> fx, fy = foscttm_per_cell(x, y)
    >>> np.round(fx, 4).tolist(), np.round(fy, 4).tolist()
    ([0.0, 0.3333, 0.3333], [0.0, 0.0, 0.3333])
    """
    xa, ya = _validate_pair(x, y, metric, n_dims, chunk_size)
    frac_x = _one_direction(xa, ya, metric, chunk_size)
    frac_y = _one_direction(ya, xa, metric, chunk_size)
    return frac_x, frac_y


def foscttm(
    x: ArrayLike,
    y: ArrayLike,
    *,
    metric: Metric = "euclidean",
    n_dims: int | None = None,
    symmetric: bool = True,
    chunk_size: int = 2048,
) -> float:
    """Fraction of samples closer than the true match (FOSCTTM).

    Lower is better; ``0`` means every cell's true partner is its nearest
    cell in the other modality, and ``~0.5`` is what a random embedding gives.

    Parameters
    ----------
    x
        Embedding of modality 1, shape ``(n_cells, n_dims_total)``.
    y
        Embedding of modality 2, same shape as ``x``; ``y[i]`` is the true
        partner of ``x[i]``.
    metric
        ``"euclidean"`` (GLUE / scMODAL convention) or ``"pearson"``
        (distance ``1 - r`` between cell vectors, MaxFuse convention).
    n_dims
        If given, only the first ``n_dims`` columns are used.
    symmetric
        If ``True`` (GLUE convention), return the mean of the ``x -> y`` and
        ``y -> x`` directions, ``(mean(frac_x) + mean(frac_y)) / 2``.  If
        ``False``, return the one-sided value ``mean(frac_x)`` where, for each
        row of ``x``, the candidates are all rows of ``y`` (as MaxFuse
        reports it).
    chunk_size
        Number of rows processed at a time (bounds memory).

    Returns
    -------
    float
        The FOSCTTM score in ``[0, 1)``. Per cell, the convention is
        ``mean_j [d(x_i, y_j) < d(x_i, y_i)]`` over all ``n`` cells of the
        other modality (strict inequality, denominator ``n``); see
        :func:`foscttm_per_cell`.

    Raises
    ------
    ValueError
        If the inputs are not 2-D, contain NaN/Inf or values so large that squared
        distances overflow, or have different shapes.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> y = np.array([[0.0], [2.0], [1.5]])
    >>> round(foscttm(x, y, symmetric=False), 6)  # (0 + 1/3 + 1/3) / 3
    0.222222
    >>> round(foscttm(x, y), 6)  # (2/9 + 1/9) / 2
    0.166667
    >>> foscttm(x, x)
    0.0
    """
    xa, ya = _validate_pair(x, y, metric, n_dims, chunk_size)
    frac_x = _one_direction(xa, ya, metric, chunk_size)
    if not symmetric:
        return float(frac_x.mean())
    frac_y = _one_direction(ya, xa, metric, chunk_size)
    return float((frac_x.mean() + frac_y.mean()) / 2.0)


def foscttm_maxfuse(x: ArrayLike, y: ArrayLike, *, chunk_size: int = 2048) -> float:
    """FOSCTTM as reported by MaxFuse.

    Shorthand for ``foscttm(x, y, metric="pearson", n_dims=15,
    symmetric=False)``: Pearson-correlation distance (``1 - r``) on the first
    15 embedding dimensions, one-sided (rows of ``x`` as queries).

    Parameters
    ----------
    x
        Embedding of modality 1, shape ``(n_cells, >=15)``.
    y
        Embedding of modality 2, same shape; ``y[i]`` is the partner of
        ``x[i]``.
    chunk_size
        Number of rows processed at a time (bounds memory).

    Returns
    -------
    float
        One-sided FOSCTTM under the MaxFuse convention.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(50, 20))
    >>> foscttm_maxfuse(z, z)
    0.0
    """
    return foscttm(x, y, metric="pearson", n_dims=15, symmetric=False, chunk_size=chunk_size)
