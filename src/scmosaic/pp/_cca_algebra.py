"""CCA algebra on arrays: regularised CCA of paired rows, its refinement by mutual nearest
neighbours, and diagonal CCA as a matrix-free SVD. Pure functions; the MuData-facing
drivers are in :mod:`scmosaic.pp._cca`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import linalg, sparse
from scipy.sparse.linalg import LinearOperator, svds

from .._stats import feature_mean_std, zscore
from ._neighbors import KnnMethod, knn_connectivity, knn_indices

logger = logging.getLogger(__name__)

MIN_PIVOTS = 20
"""Fewest pivot pairs a CCA is fitted on (and more than ``n_components``)."""


def unit_rows(values: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm (zero rows kept)."""
    values = np.asarray(values, dtype=np.float64)
    norm = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.where(norm > 0, norm, 1.0)


def standardized(values: np.ndarray) -> np.ndarray:
    """Each column z-scored (ddof=1; constant columns centred only)."""
    return zscore(values, *feature_mean_std(values))


def mutual_nearest_pairs(
    x_a: np.ndarray,
    x_b: np.ndarray,
    n_neighbors: int,
    knn_method: KnnMethod = "auto",
    seed: int = 0,
    n_neighbors_local: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mutual nearest neighbours of two cell sets by cosine similarity.

    ``(i, j)`` is kept when cell ``j`` of ``b`` is among the ``n_neighbors`` most similar
    cells of ``b`` to cell ``i`` of ``a``, and ``i`` among the ``n_neighbors`` most similar
    cells of ``a`` to ``j``. Two kNN queries on L2-normalised rows, so no ``n_a x n_b``
    matrix is formed: memory O((n_a + n_b) n_neighbors).

    With ``0 < n_neighbors_local < n_neighbors``, the rule SCMODAL's anchors follow
    (``n_neighbors_mnn_local``): a cell with a mutual pair within ``n_neighbors_local`` keeps
    only those, and a pair within ``n_neighbors`` is kept when neither cell has one.

    Parameters
    ----------
    x_a
        ``(n_a, d)`` features of the first set.
    x_b
        ``(n_b, d)`` features of the second set, in the same ``d`` columns.
    n_neighbors
        ``k`` of the two kNN queries (capped at the set sizes).
    knn_method
        ``"exact"`` (:class:`sklearn.neighbors.NearestNeighbors`), ``"approximate"`` (a faiss
        inverted-file index) or ``"auto"`` (exact up to 50,000 cells in the searched set).
    seed
        Seed of the approximate search.
    n_neighbors_local
        ``k`` tried first (0: off).

    Returns
    -------
    idx_a : numpy.ndarray
        Indices of the pairs' cells in ``x_a``.
    idx_b : numpy.ndarray
        Indices of the pairs' cells in ``x_b``.
    similarity : numpy.ndarray
        Cosine similarity of each pair. Pairs are sorted by ``(idx_a, idx_b)``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.eye(3)
    >>> scmosaic.pp.mutual_nearest_pairs(x, x[::-1], 1)[:2]
    (array([0, 1, 2]), array([2, 1, 0]))
    """
    a, b = unit_rows(x_a), unit_rows(x_b)
    nn_ab = knn_indices(b, a, n_neighbors, knn_method, seed)  # nearest first
    nn_ba = knn_indices(a, b, n_neighbors, knn_method, seed)

    def mutual_within(k: int) -> sparse.csr_matrix:
        knn_ab = knn_connectivity(nn_ab[:, :k], b.shape[0])
        return knn_ab.multiply(knn_connectivity(nn_ba[:, :k], a.shape[0]).T).tocsr()

    mutual = mutual_within(n_neighbors)
    if 0 < n_neighbors_local < n_neighbors:
        close = mutual_within(n_neighbors_local)
        free_a = sparse.diags((close.getnnz(axis=1) == 0).astype(float))
        free_b = sparse.diags((close.getnnz(axis=0) == 0).astype(float))
        mutual = close + free_a @ mutual @ free_b
    mutual = sparse.coo_matrix(mutual)
    mutual.eliminate_zeros()
    order = np.lexsort((mutual.col, mutual.row))
    idx_a = mutual.row[order].astype(np.intp)
    idx_b = mutual.col[order].astype(np.intp)
    similarity = np.einsum("ij,ij->i", a[idx_a], b[idx_b])
    return idx_a, idx_b, similarity


def _sign_fix(w_x: np.ndarray, w_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic signs: the largest-magnitude entry of each column of ``w_x`` positive."""
    signs = np.sign(w_x[np.argmax(np.abs(w_x), axis=0), np.arange(w_x.shape[1])])
    signs[signs == 0] = 1.0
    return w_x * signs, w_y * signs


def _inverse_sqrt(cov: np.ndarray, regularization: float) -> np.ndarray:
    """``(cov + ridge I)^(-1/2)``, ridge relative to the mean variance, eigenvalues floored."""
    r = cov.shape[0]
    ridge = regularization * max(float(np.trace(cov)), np.finfo(np.float64).tiny) / r
    values, vectors = linalg.eigh(cov + ridge * np.eye(r))
    floor = max(values.max(), 0.0) * r * np.finfo(np.float64).eps
    values = np.maximum(values, floor if floor > 0 else np.finfo(np.float64).tiny)
    return (vectors / np.sqrt(values)) @ vectors.T


def _check_fit_cca(x: np.ndarray, y: np.ndarray, n_components: int, regularization: float):
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be 2-d with the same rows, got {x.shape} and {y.shape}.")
    if n_components < 1 or n_components > min(x.shape[1], y.shape[1]):
        raise ValueError(
            f"n_components={n_components} must be in [1, {min(x.shape[1], y.shape[1])}] "
            f"(the smaller dimension of x {x.shape} and y {y.shape})."
        )
    if n_components >= x.shape[0]:
        raise ValueError(f"n_components={n_components} needs more than {x.shape[0]} paired rows.")
    if regularization < 0:
        raise ValueError(f"regularization must be >= 0, got {regularization}.")


def fit_cca(
    x: np.ndarray, y: np.ndarray, n_components: int, regularization: float = 1e-2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Regularised canonical correlation analysis of paired rows ``(x[i], y[i])``.

    Each side is centred and whitened with its ridge-regularised covariance
    ``(C + regularization * trace(C) / r * I)^(-1/2)`` (eigendecomposition of the ``r x r``
    covariance); the SVD of the whitened ``r_x x r_y`` cross-covariance gives the canonical
    directions and correlations. Memory O(n r + r^2).

    Parameters
    ----------
    x, y
        ``(n, r_x)`` and ``(n, r_y)`` arrays; row ``i`` of ``x`` is paired with row ``i``
        of ``y``.
    n_components
        Number ``k`` of canonical pairs, at most ``min(r_x, r_y)`` and less than ``n``.
    regularization
        Ridge, relative to the mean variance of each side (0: classical CCA).

    Returns
    -------
    ``(w_x, w_y, mean_x, mean_y, correlations)``: canonical directions ``(r_x, k)`` and
    ``(r_y, k)`` (scores are ``(x - mean_x) @ w_x``, with unit variance on the pairs when
    ``regularization=0``), the column means and the ``k`` (regularised) canonical
    correlations, decreasing.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(200, 2))
    >>> x = z @ rng.normal(size=(2, 5)) + 0.1 * rng.normal(size=(200, 5))
    >>> y = z @ rng.normal(size=(2, 4)) + 0.1 * rng.normal(size=(200, 4))
    >>> w_x, w_y, m_x, m_y, corr = fit_cca(x, y, 2, regularization=0.0)
    >>> bool(corr[1] > 0.9)
    True
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    _check_fit_cca(x, y, n_components, regularization)
    n = x.shape[0]
    mean_x, mean_y = x.mean(0), y.mean(0)
    xc, yc = x - mean_x, y - mean_y
    whiten_x = _inverse_sqrt(xc.T @ xc / (n - 1), regularization)
    whiten_y = _inverse_sqrt(yc.T @ yc / (n - 1), regularization)
    cross = whiten_x @ (xc.T @ yc / (n - 1)) @ whiten_y
    u, s, vt = linalg.svd(cross, full_matrices=False)
    w_x = whiten_x @ u[:, :n_components]
    w_y = whiten_y @ vt[:n_components].T
    w_x, w_y = _sign_fix(w_x, w_y)
    return w_x, w_y, mean_x, mean_y, np.clip(s[:n_components], 0.0, 1.0)


def check_pivots(n_pivots: int, n_components: int, where: str) -> None:
    """Raise a ``ValueError`` when ``n_pivots`` pairs are too few to fit the CCA on."""
    needed = max(n_components + 1, MIN_PIVOTS)
    if n_pivots < needed:
        raise ValueError(
            f"Too few pivot pairs {where}: {n_pivots} (need at least {needed} for "
            f"n_components={n_components}). Use a richer prior (more linked features, "
            "larger n_neighbors, labels) or fewer n_components."
        )


def _rematch(
    s_a: np.ndarray,
    s_b: np.ndarray,
    smoothers: Sequence[sparse.csr_matrix] | None,
    pivot_fraction: float,
    n_neighbors: int,
    knn_method: KnnMethod,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The most similar ``pivot_fraction`` of the mutual nearest pairs of two score sets."""
    m_a, m_b = standardized(s_a), standardized(s_b)
    if smoothers is not None:
        m_a, m_b = smoothers[0] @ m_a, smoothers[1] @ m_b
    new_a, new_b, sim = mutual_nearest_pairs(m_a, m_b, n_neighbors, knn_method, seed)
    keep = np.sort(np.argsort(-sim, kind="stable")[: int(np.ceil(pivot_fraction * sim.size))])
    return new_a[keep], new_b[keep]


def iterated_cca(
    u_a: np.ndarray,
    u_b: np.ndarray,
    pivots: tuple[np.ndarray, np.ndarray],
    n_components: int,
    *,
    n_iterations: int,
    n_neighbors: int,
    pivot_fraction: float,
    regularization: float,
    smoothers: Sequence[sparse.csr_matrix] | None = None,
    knn_method: KnnMethod = "auto",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[int], list[list[float]]]:
    """CCA of two cell sets fitted on pivot pairs, re-matched ``n_iterations`` times.

    Each round fits :func:`fit_cca` on the pivots ``(u_a[i], u_b[j])``, scores every cell,
    and re-matches all cells by :func:`mutual_nearest_pairs` of their z-scored (and, with
    ``smoothers``, kNN-averaged) scores, keeping the most similar ``pivot_fraction``. A
    round that finds too few pivots stops the refinement (with a warning).

    Returns
    -------
    ``(scores_a, scores_b, n_pivots, correlations)``: the canonical scores of the last fit,
    the pivots of each fit and its canonical correlations.
    """
    ia, ib = pivots
    n_pivots, correlations = [], []
    for iteration in range(n_iterations + 1):
        w_a, w_b, mean_a, mean_b, corr = fit_cca(u_a[ia], u_b[ib], n_components, regularization)
        n_pivots.append(int(ia.size))
        correlations.append([float(c) for c in corr])
        logger.info(
            "CCA fit %d: %d pivots, correlations %s", iteration, ia.size, np.round(corr[:5], 3)
        )
        s_a, s_b = (u_a - mean_a) @ w_a, (u_b - mean_b) @ w_b
        if iteration == n_iterations:
            break
        new_a, new_b = _rematch(s_a, s_b, smoothers, pivot_fraction, n_neighbors, knn_method, seed)
        if new_a.size < max(n_components + 1, MIN_PIVOTS):
            logger.warning(
                "CCA refinement stopped at round %d: only %d pivots.", iteration + 1, new_a.size
            )
            break
        ia, ib = new_a, new_b
    return s_a, s_b, n_pivots, correlations


def _standardized_operator(x, mean: np.ndarray, std: np.ndarray) -> tuple:
    """Products with ``Z = (X - 1 mean^T) diag(1 / std)`` and ``Z^T`` without forming ``Z``."""
    inv = 1.0 / std

    def z_times(v: np.ndarray) -> np.ndarray:  # Z v = X (D^-1 v) - 1 (mean^T D^-1 v)
        scaled = inv[:, None] * v
        return np.asarray(x @ scaled) - (mean @ scaled)[None, :]

    def zt_times(u: np.ndarray) -> np.ndarray:  # Z^T u = D^-1 (X^T u - mean 1^T u)
        return inv[:, None] * (np.asarray(x.T @ u) - mean[:, None] * u.sum(0)[None, :])

    return z_times, zt_times


def diagonal_svd(
    x_a, x_b, n_components: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top singular triplets of ``Z_a Z_b^T``, ``Z`` the column-standardised ``X``.

    ``Z_a`` and ``Z_b`` (cells x the same features, each standardised per feature over its
    own cells, ddof=1) are never formed: centring is a rank-one correction,
    ``(X - 1 mu^T) D^-1 v = X (D^-1 v) - 1 (mu^T D^-1 v)``, so sparse input stays sparse
    and memory is O(nnz + (n_a + n_b) k), not O(n_a n_b). ARPACK
    (:func:`scipy.sparse.linalg.svds`) on a :class:`~scipy.sparse.linalg.LinearOperator`.

    Returns
    -------
    ``(u, s, v)``: left ``(n_a, k)`` and right ``(n_b, k)`` singular vectors and the
    singular values, decreasing; signs fixed (largest entry of each column of ``u`` > 0).
    """
    n_a, n_b = x_a.shape[0], x_b.shape[0]
    za, zat = _standardized_operator(x_a, *feature_mean_std(x_a))
    zb, zbt = _standardized_operator(x_b, *feature_mean_std(x_b))

    def matmat(v: np.ndarray) -> np.ndarray:  # (Z_a Z_b^T) v
        return za(zbt(v.reshape(n_b, -1)))

    def rmatmat(u: np.ndarray) -> np.ndarray:  # (Z_b Z_a^T) u
        return zb(zat(u.reshape(n_a, -1)))

    operator = LinearOperator(
        (n_a, n_b),
        matvec=lambda v: matmat(v).ravel(),
        rmatvec=lambda u: rmatmat(u).ravel(),
        matmat=matmat,
        rmatmat=rmatmat,
        dtype=np.float64,
    )
    v0 = np.random.default_rng(seed).standard_normal(min(n_a, n_b))
    u, s, vt = svds(operator, k=n_components, v0=v0, solver="arpack")
    order = np.argsort(-s, kind="stable")
    u, v = _sign_fix(u[:, order], vt[order].T)
    return u, s[order], v
