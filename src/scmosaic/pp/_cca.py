"""CCA linked features: canonical scores of two modalities as learned linked features."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from mudata import MuData
from scipy import linalg, sparse
from scipy.sparse.linalg import LinearOperator, svds
from sklearn.utils.sparsefuncs import mean_variance_axis

from .._keys import linked_obsm_key
from ._neighbors import KnnMethod, check_knn_method, knn_indices
from ._preprocess import get_counts

logger = logging.getLogger(__name__)

UNS_KEY = "scmosaic_cca"
_MIN_PIVOTS = 20


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _check_modalities(mdata: MuData, modalities: Sequence[str]) -> tuple[str, str]:
    if len(modalities) != 2:
        raise ValueError(f"Exactly two modalities are needed, got {list(modalities)}.")
    mod_a, mod_b = modalities
    for m in (mod_a, mod_b):
        if m not in mdata.mod:
            raise KeyError(f"Modality {m!r} is not in the MuData; it has {list(mdata.mod)}.")
    if mod_a == mod_b:
        raise ValueError("CCA needs two different modalities.")
    return mod_a, mod_b


def _matrix(adata: ad.AnnData, layer: str | None, normalized: bool, modality: str):
    """The matrix to reduce: raw counts (checked) or, with ``normalized``, finite values."""
    if not normalized:
        return get_counts(adata, layer, modality)
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in modality {modality!r}.")
    x = adata.X if layer is None else adata.layers[layer]
    values = x.data if sparse.issparse(x) else np.asarray(x)
    if values.size and not np.isfinite(values).all():
        raise ValueError(f"Values of modality {modality!r} must be finite.")
    return x


def _log_normalised(x, normalized: bool) -> ad.AnnData:
    """A temporary float32 AnnData (CSR when ``x`` is sparse), normalised and log1p'd."""
    x = sparse.csr_matrix(x, dtype=np.float32) if sparse.issparse(x) else np.array(x, np.float32)
    adata = ad.AnnData(x)
    if not normalized:
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
    return adata


def _feature_mean_std(x) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (ddof=1), sparse-aware; zero stds set to 1."""
    n = x.shape[0]
    if sparse.issparse(x):
        mean, var = mean_variance_axis(sparse.csr_matrix(x, dtype=np.float64), axis=0)
    else:
        x = np.asarray(x, dtype=np.float64)
        mean, var = x.mean(0), x.var(0)
    var = np.asarray(var, dtype=np.float64) * (n / max(n - 1, 1))
    std = np.sqrt(var)
    std[~(std > 0)] = 1.0
    return np.asarray(mean, dtype=np.float64), std


def _reduce(x, normalized: bool, n_pcs: int, seed: int) -> np.ndarray:
    """Normalise, log1p, standardise each feature and PCA; sparse input stays sparse.

    Standardising is a column scaling (sparsity kept); the centring is left to
    :func:`scanpy.pp.pca` (``zero_center=True``), which centres sparse input implicitly.
    """
    adata = _log_normalised(x, normalized)
    _, std = _feature_mean_std(adata.X)
    if sparse.issparse(adata.X):
        adata.X = sparse.csr_matrix(adata.X @ sparse.diags((1.0 / std).astype(np.float32)))
    else:
        adata.X = (adata.X / std.astype(np.float32)).astype(np.float32)
    n_comps = min(n_pcs, adata.n_obs - 1, adata.n_vars - 1)
    if n_comps < 1:
        raise ValueError(f"Too few cells or features to reduce a {adata.shape} matrix.")
    sc.pp.pca(adata, n_comps=n_comps, zero_center=True, svd_solver="arpack", random_state=seed)
    return np.asarray(adata.obsm["X_pca"], dtype=np.float64)


def _standardize_columns(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    std = values.std(0, ddof=1) if values.shape[0] > 1 else np.ones(values.shape[1])
    std[~(std > 0)] = 1.0
    return (values - values.mean(0)) / std


def _unit_rows(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    norm = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.where(norm > 0, norm, 1.0)


def mutual_nearest_pairs(
    x_a: np.ndarray,
    x_b: np.ndarray,
    n_neighbors: int,
    knn_method: KnnMethod = "exact",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mutual nearest neighbours of two cell sets by cosine similarity, without an n_a x n_b matrix.

    ``(i, j)`` is kept when ``j`` is among the ``n_neighbors`` most similar cells of ``b``
    for cell ``i`` of ``a`` and ``i`` among the ``n_neighbors`` most similar cells of ``a``
    for ``j``. Two kNN queries on L2-normalised rows, exact
    (:class:`sklearn.neighbors.NearestNeighbors`) or approximate (:class:`pynndescent.NNDescent`);
    memory O((n_a + n_b) n_neighbors).

    Parameters
    ----------
    x_a, x_b
        ``(n_a, d)`` and ``(n_b, d)`` features of the two sets.
    n_neighbors
        ``k`` of the two kNN queries (capped at the set sizes).
    knn_method
        ``"exact"`` or ``"approximate"``.
    seed
        Seed of the approximate search.

    Returns
    -------
    ``(idx_a, idx_b, similarity)``: the pairs sorted by ``(idx_a, idx_b)`` and their cosine
    similarities.

    Examples
    --------
    >>> x = np.eye(3)
    >>> mutual_nearest_pairs(x, x[::-1], 1)[:2]
    (array([0, 1, 2]), array([2, 1, 0]))
    """
    a, b = _unit_rows(x_a), _unit_rows(x_b)
    knn_ab = _connectivity(knn_indices(b, a, n_neighbors, knn_method, seed), b.shape[0])
    knn_ba = _connectivity(knn_indices(a, b, n_neighbors, knn_method, seed), a.shape[0])
    mutual = sparse.coo_matrix(knn_ab.multiply(knn_ba.T))
    order = np.lexsort((mutual.col, mutual.row))
    idx_a = mutual.row[order].astype(np.intp)
    idx_b = mutual.col[order].astype(np.intp)
    similarity = np.einsum("ij,ij->i", a[idx_a], b[idx_b])
    return idx_a, idx_b, similarity


def _connectivity(indices: np.ndarray, n_cols: int) -> sparse.csr_matrix:
    """0/1 matrix with a 1 at ``(i, indices[i, j])``."""
    n, k = indices.shape
    return sparse.csr_matrix(
        (np.ones(n * k), indices.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n_cols)
    )


def _averaging_operator(
    values: np.ndarray, n_neighbors: int, knn_method: KnnMethod = "exact", seed: int = 0
) -> sparse.csr_matrix:
    """Row-stochastic operator averaging each row over itself and its nearest neighbours."""
    indices = knn_indices(values, None, n_neighbors, knn_method, seed)
    return _connectivity(indices, values.shape[0]) / indices.shape[1]


def _sign_fix(w_x: np.ndarray, w_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic signs: the largest-magnitude entry of each column of ``w_x`` positive."""
    signs = np.sign(w_x[np.argmax(np.abs(w_x), axis=0), np.arange(w_x.shape[1])])
    signs[signs == 0] = 1.0
    return w_x * signs, w_y * signs


def _inverse_sqrt(cov: np.ndarray, regularization: float) -> np.ndarray:
    r = cov.shape[0]
    ridge = regularization * max(float(np.trace(cov)), np.finfo(np.float64).tiny) / r
    values, vectors = linalg.eigh(cov + ridge * np.eye(r))
    floor = max(values.max(), 0.0) * r * np.finfo(np.float64).eps
    values = np.maximum(values, floor if floor > 0 else np.finfo(np.float64).tiny)
    return (vectors / np.sqrt(values)) @ vectors.T


# --------------------------------------------------------------------------------------
# Regularised CCA on paired rows
# --------------------------------------------------------------------------------------


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
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be 2-d with the same rows, got {x.shape} and {y.shape}.")
    n = x.shape[0]
    if n_components < 1 or n_components > min(x.shape[1], y.shape[1]):
        raise ValueError(
            f"n_components={n_components} must be in [1, {min(x.shape[1], y.shape[1])}] "
            f"(the smaller dimension of x {x.shape} and y {y.shape})."
        )
    if n_components >= n:
        raise ValueError(f"n_components={n_components} needs more than {n} paired rows.")
    if regularization < 0:
        raise ValueError(f"regularization must be >= 0, got {regularization}.")
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


# --------------------------------------------------------------------------------------
# Pivots
# --------------------------------------------------------------------------------------


def _link_pivots(
    mdata: MuData,
    mod_a: str,
    mod_b: str,
    linked_keys: Sequence[str] | None,
    n_neighbors: int,
    knn_method: KnnMethod = "exact",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    keys = list(linked_keys) if linked_keys is not None else None
    if keys is None:
        keys = [linked_obsm_key(mod_b), linked_obsm_key(mod_a)]
    if len(keys) != 2:
        raise ValueError(f"linked_keys must be two .obsm keys (a, b), got {keys}.")
    blocks = []
    for mod, key in zip((mod_a, mod_b), keys, strict=True):
        if key not in mdata.mod[mod].obsm:
            raise KeyError(
                f"Linked features {key!r} not in mdata.mod[{mod!r}].obsm; run "
                "scmosaic.pp.link_features first or pass linked_keys."
            )
        blocks.append(np.asarray(mdata.mod[mod].obsm[key], dtype=np.float64))
    if blocks[0].ndim != 2 or blocks[0].shape[1] != blocks[1].shape[1]:
        raise ValueError(
            f"Linked features {keys[0]!r} of {mod_a!r} {blocks[0].shape} and {keys[1]!r} of "
            f"{mod_b!r} {blocks[1].shape} must have the same number of columns."
        )
    for mod, block in zip((mod_a, mod_b), blocks, strict=True):
        if not np.isfinite(block).all():
            raise ValueError(f"Linked features of {mod!r} contain non-finite values.")
    ia, ib, sim = mutual_nearest_pairs(
        _standardize_columns(blocks[0]),
        _standardize_columns(blocks[1]),
        n_neighbors,
        knn_method,
        seed,
    )
    return ia, ib, sim, keys


def _label_pivots(
    mdata: MuData, mod_a: str, mod_b: str, labels_key: str | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each cell of either modality paired with a random cell of the other of equal label."""
    if labels_key is None:
        raise ValueError('init="labels" needs labels_key, a column of .obs in both modalities.')
    labels = []
    for mod in (mod_a, mod_b):
        if labels_key not in mdata.mod[mod].obs:
            raise KeyError(f"Labels {labels_key!r} not in mdata.mod[{mod!r}].obs.")
        labels.append(mdata.mod[mod].obs[labels_key].to_numpy())
    present = [pd.Series(lab).dropna().astype(str) for lab in labels]
    shared = sorted(set(present[0]) & set(present[1]))
    if not shared:
        raise ValueError(
            f"No label of {labels_key!r} is shared by {mod_a!r} and {mod_b!r}; "
            f"{mod_a!r} has {sorted(set(present[0]))[:10]}, {mod_b!r} {sorted(set(present[1]))[:10]}."
        )
    rng = np.random.default_rng(seed)
    pairs_a, pairs_b = [], []
    for label in shared:
        cells_a = present[0].index[present[0] == label].to_numpy()
        cells_b = present[1].index[present[1] == label].to_numpy()
        pairs_a += [cells_a, rng.choice(cells_a, cells_b.size)]
        pairs_b += [rng.choice(cells_b, cells_a.size), cells_b]
    pairs = np.unique(np.column_stack([np.concatenate(pairs_a), np.concatenate(pairs_b)]), axis=0)
    return pairs[:, 0].astype(np.intp), pairs[:, 1].astype(np.intp)


def _check_pivots(n_pivots: int, n_components: int, where: str) -> None:
    needed = max(n_components + 1, _MIN_PIVOTS)
    if n_pivots < needed:
        raise ValueError(
            f"Too few pivot pairs {where}: {n_pivots} (need at least {needed} for "
            f"n_components={n_components}). Use a richer prior (more linked features, "
            "larger n_neighbors, labels) or fewer n_components."
        )


def _write_scores(
    mdata: MuData, mods: Sequence[str], scores: Sequence[np.ndarray], key: str, summary: dict
) -> None:
    names = [f"CC{i + 1}" for i in range(scores[0].shape[1])]
    for mod, s in zip(mods, scores, strict=True):
        adata = mdata.mod[mod]
        adata.obsm[key] = pd.DataFrame(
            _standardize_columns(s).astype(np.float32), index=adata.obs_names, columns=names
        )
        adata.uns[UNS_KEY] = dict(summary)


# --------------------------------------------------------------------------------------
# cca_links
# --------------------------------------------------------------------------------------


def cca_links(
    mdata: MuData,
    modalities: Sequence[str] = ("rna", "adt"),
    init: Literal["links", "labels", "none"] = "links",
    *,
    n_components: int = 10,
    n_pcs: int = 40,
    linked_keys: Sequence[str] | None = None,
    labels_key: str | None = None,
    n_iterations: int = 3,
    n_neighbors: int = 15,
    pivot_fraction: float = 0.8,
    regularization: float = 1e-2,
    smooth_neighbors: int = 0,
    layer: str | None = None,
    normalized: bool = False,
    key_added: str = "X_cca",
    knn_method: KnnMethod = "exact",
    seed: int = 0,
) -> dict[str, Any]:
    """Learn linked features of two unpaired modalities by iterated regularised CCA.

    1. Each modality's full features are normalised (``normalize_total`` to 1e4,
       ``log1p``; skipped with ``normalized=True``), standardised per feature and reduced to
       ``n_pcs`` principal components (:func:`scanpy.pp.pca`, sparse input kept sparse),
       ``U_a`` and ``U_b``.
    2. Initial pivots, cell pairs ``(i, j)`` of ``a`` and ``b``, from a weak prior
       (``init``).
    3. A regularised CCA (``fit_cca``) is fitted on the pivots; every cell is scored.
    4. ``n_iterations`` times: all cells are re-matched by mutual nearest neighbours
       (``n_neighbors``, cosine) of their canonical scores, the best ``pivot_fraction`` of
       the pairs (by similarity) are kept and the CCA is refitted.

    The ``k = n_components`` canonical scores of every cell, z-scored per component, are
    written to ``mdata.mod[a].obsm[key_added]`` and ``mdata.mod[b].obsm[key_added]``
    (DataFrames with columns ``CC1..CCk``): column ``j`` of both measures the same
    canonical variate, so they can serve as the linked features of a link ``(a, b)``
    (e.g. ``scmosaic.SCMODAL.setup_mudata`` with these keys). The returned summary is also
    stored in ``.uns["scmosaic_cca"]`` of both modalities. Nothing else in ``mdata``
    changes. Memory O(n r + r^2) and O((n_a + n_b) n_neighbors): no ``n_a x n_b`` matrix.

    Parameters
    ----------
    mdata
        MuData with both modalities.
    modalities
        The two modalities ``(a, b)``.
    init
        Source of the initial pivots. ``"links"``: mutual nearest neighbours (cosine,
        ``n_neighbors`` both ways) of the linked features ``.obsm[linked_keys]`` of the two
        modalities, as written by :func:`scmosaic.pp.link_features` (already smoothed and
        z-scored; a weak table of 10-30 proteins is enough). ``"labels"``: every cell of
        each modality is paired with a random cell of the other modality with the same
        ``.obs[labels_key]`` (labels present in only one modality are ignored).
        ``"none"`` (structure-only matching) is not implemented and raises
        :class:`NotImplementedError`.
    n_components
        Number ``k`` of canonical components, at most the number of principal components
        of either modality. Few components match better: on the Hao CITE-seq subset
        (pairing hidden) anchor precision of the scores was 0.91 with 10 and 0.85 with 20.
    n_pcs
        Principal components ``r`` per modality (capped at ``n_cells - 1`` and
        ``n_features - 1``).
    linked_keys
        ``.obsm`` keys ``(key_a, key_b)`` of the linked features for ``init="links"``;
        default ``("linked_<b>", "linked_<a>")``.
    labels_key
        ``.obs`` column of both modalities for ``init="labels"``.
    n_iterations
        Re-matching rounds after the initial fit (0: a single fit on the initial pivots).
    n_neighbors
        ``k`` of the mutual-nearest-neighbour matching (initial links and refinement).
    pivot_fraction
        Fraction of the re-matched pairs kept (the most similar) in each round, in (0, 1].
    regularization
        Ridge of each side's covariance relative to its mean variance (see
        ``fit_cca``).
    smooth_neighbors
        If > 1, canonical scores are averaged over each cell's ``smooth_neighbors`` nearest
        cells of its own modality (in PCA space) before re-matching; written scores are
        never smoothed.
    layer
        Layer to read in both modalities (default ``.X``): raw counts unless
        ``normalized``.
    normalized
        The matrix is already normalised (e.g. log-normalised): skip ``normalize_total``
        and ``log1p``.
    key_added
        ``.obsm`` key of the canonical scores.
    knn_method
        Nearest-neighbour search of the matching and smoothing steps: ``"exact"``
        (scikit-learn) or ``"approximate"`` (pynndescent, as scanpy uses). At 100,000 cells
        per modality (``benchmarks/cca_scaling.py``, replicated Hao cells, ``init="links"``)
        approximate search was 28% faster but matched worse (anchor precision of the scores
        0.886 vs 0.920, initial pivots 5,314 vs 35,953), so exact is the default.
    seed
        Seed of the PCA, of the label pairing and of the approximate search; the result is
        deterministic given it.

    Returns
    -------
    The summary: ``correlations`` (final canonical correlations on the pivots),
    ``correlations_per_iteration``, ``n_pivots`` (pivots of each fit), ``n_pcs``
    (``[r_a, r_b]``) and the parameters.

    Raises
    ------
    KeyError
        A modality, the linked features or the label column is missing.
    ValueError
        Too few pivots, no shared label, or ``n_components`` larger than the data allow.
    NotImplementedError
        ``init="none"``.

    Examples
    --------
    >>> scmosaic.pp.link_features(mdata, "adt", "rna", table={"CD4": "CD4", "CD19": "CD19"})
    >>> summary = scmosaic.pp.cca_links(mdata, ("rna", "adt"), init="links")
    >>> summary["correlations"][:3]
    >>> mdata["rna"].obsm["X_cca"].shape, mdata["adt"].obsm["X_cca"].shape
    """
    mod_a, mod_b = _check_modalities(mdata, modalities)
    if init == "none":
        raise NotImplementedError(
            'init="none" (structure-only matching, e.g. Gromov-Wasserstein) is not '
            'implemented; use init="links" with a few linked features or init="labels".'
        )
    if init not in ("links", "labels"):
        raise ValueError(f"init must be 'links', 'labels' or 'none', got {init!r}.")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}.")
    if not 0 < pivot_fraction <= 1:
        raise ValueError(f"pivot_fraction must be in (0, 1], got {pivot_fraction}.")
    if n_iterations < 0 or n_neighbors < 1:
        raise ValueError("n_iterations must be >= 0 and n_neighbors >= 1.")
    check_knn_method(knn_method)  # a bad value fails here, before any work

    # Pivots first: cheap checks before the reductions.
    details: dict[str, Any] = {}
    if init == "links":
        ia, ib, _, keys = _link_pivots(
            mdata, mod_a, mod_b, linked_keys, n_neighbors, knn_method, seed
        )
        details["linked_keys"] = keys
    else:
        ia, ib = _label_pivots(mdata, mod_a, mod_b, labels_key, seed)
        details["labels_key"] = labels_key
    _check_pivots(ia.size, n_components, f"from init={init!r}")

    u_a, u_b = (
        _reduce(_matrix(mdata.mod[m], layer, normalized, m), normalized, n_pcs, seed)
        for m in (mod_a, mod_b)
    )
    r_a, r_b = u_a.shape[1], u_b.shape[1]
    if n_components > min(r_a, r_b):
        raise ValueError(
            f"n_components={n_components} exceeds the principal components available "
            f"({mod_a!r}: {r_a}, {mod_b!r}: {r_b}); lower n_components."
        )

    smoothers = None
    if smooth_neighbors > 1 and n_iterations > 0:
        smoothers = (
            _averaging_operator(u_a, smooth_neighbors, knn_method, seed),
            _averaging_operator(u_b, smooth_neighbors, knn_method, seed),
        )
    n_pivots, correlations = [], []
    for iteration in range(n_iterations + 1):
        w_a, w_b, mean_a, mean_b, corr = fit_cca(u_a[ia], u_b[ib], n_components, regularization)
        n_pivots.append(int(ia.size))
        correlations.append([float(c) for c in corr])
        logger.info(
            "CCA %s-%s fit %d: %d pivots, correlations %s",
            mod_a, mod_b, iteration, ia.size, np.round(corr[:5], 3),
        )  # fmt: skip
        s_a, s_b = (u_a - mean_a) @ w_a, (u_b - mean_b) @ w_b
        if iteration == n_iterations:
            break
        m_a, m_b = _standardize_columns(s_a), _standardize_columns(s_b)
        if smoothers is not None:
            m_a, m_b = smoothers[0] @ m_a, smoothers[1] @ m_b
        new_a, new_b, sim = mutual_nearest_pairs(m_a, m_b, n_neighbors, knn_method, seed)
        keep = np.sort(np.argsort(-sim, kind="stable")[: int(np.ceil(pivot_fraction * sim.size))])
        new_a, new_b = new_a[keep], new_b[keep]
        if new_a.size < max(n_components + 1, _MIN_PIVOTS):
            logger.warning(
                "CCA refinement stopped at round %d: only %d pivots.", iteration + 1, new_a.size
            )
            break
        ia, ib = new_a, new_b

    summary: dict[str, Any] = {
        "method": "cca_links",
        "modalities": [mod_a, mod_b],
        "init": init,
        **details,
        "correlations": correlations[-1],
        "correlations_per_iteration": correlations,
        "n_pivots": n_pivots,
        "n_pcs": [int(r_a), int(r_b)],
        "n_components": int(n_components),
        "n_iterations": int(n_iterations),
        "n_neighbors": int(n_neighbors),
        "pivot_fraction": float(pivot_fraction),
        "regularization": float(regularization),
        "smooth_neighbors": int(smooth_neighbors),
        "normalized": bool(normalized),
        "key_added": key_added,
        "knn_method": knn_method,
        "seed": int(seed),
    }
    _write_scores(mdata, (mod_a, mod_b), (s_a, s_b), key_added, summary)
    return summary


# --------------------------------------------------------------------------------------
# diagonal_cca
# --------------------------------------------------------------------------------------


def _shared_features(adata_a: ad.AnnData, adata_b: ad.AnnData, mods, shared_features):
    names_a, names_b = adata_a.var_names, adata_b.var_names
    if shared_features is None:
        in_b = set(names_b)
        features = [f for f in names_a if f in in_b]
    else:
        features = list(dict.fromkeys(str(f) for f in shared_features))
        for mod, names in zip(mods, (names_a, names_b), strict=True):
            missing = [f for f in features if f not in set(names)]
            if missing:
                raise KeyError(
                    f"{len(missing)} shared_features are not in mdata.mod[{mod!r}].var_names, "
                    f"e.g. {missing[:5]}."
                )
    if not features:
        raise ValueError(
            f"Modalities {mods[0]!r} and {mods[1]!r} share no feature name; diagonal_cca needs "
            "features measured in both (e.g. RNA genes and ATAC gene activity)."
        )
    return features


def _standardized_block(adata: ad.AnnData, mod, layer, normalized, features):
    """Shared-feature block (sparse or dense, not standardised) with its means and stds."""
    x = _log_normalised(_matrix(adata, layer, normalized, mod), normalized).X
    x = x[:, adata.var_names.get_indexer(features)]
    x = sparse.csr_matrix(x, dtype=np.float64) if sparse.issparse(x) else np.asarray(x, np.float64)
    mean, std = _feature_mean_std(x)
    return x, mean, std


def _standardized_operator(x, mean, std) -> tuple:
    """Products with ``Z = (X - 1 mean^T) diag(1 / std)`` and ``Z^T`` without forming ``Z``."""
    inv = 1.0 / std

    def z_times(v: np.ndarray) -> np.ndarray:  # Z v = X (D^-1 v) - 1 (mean^T D^-1 v)
        scaled = inv[:, None] * v
        return np.asarray(x @ scaled) - (mean @ scaled)[None, :]

    def zt_times(u: np.ndarray) -> np.ndarray:  # Z^T u = D^-1 (X^T u - mean 1^T u)
        return inv[:, None] * (np.asarray(x.T @ u) - mean[:, None] * u.sum(0)[None, :])

    return z_times, zt_times


def diagonal_cca(
    mdata: MuData,
    modalities: Sequence[str] = ("rna", "atac"),
    n_components: int = 20,
    *,
    shared_features: Sequence[str] | None = None,
    layer: str | None = None,
    normalized: bool = False,
    l2_normalize: bool = True,
    key_added: str = "X_cca",
    seed: int = 0,
) -> dict[str, Any]:
    """Seurat-style diagonal CCA of two modalities that share feature names.

    Over the shared features, each modality is normalised (``normalize_total`` to 1e4 and
    ``log1p`` over all its features; skipped with ``normalized=True``) and standardised per
    feature across its cells, ``Z_a`` and ``Z_b``; the top ``k`` singular triplets of
    ``Z_a Z_b^T`` (``n_a x n_b``) are computed with :func:`scipy.sparse.linalg.svds` on a
    matrix-free :class:`~scipy.sparse.linalg.LinearOperator`. The standardisation is
    applied implicitly (centring as a rank-one correction,
    ``(X - 1 mu^T) D^-1 v = X (D^-1 v) - 1 (mu^T D^-1 v)``), so sparse input is never
    densified and memory stays O(nnz + (n_a + n_b) k), not O(n_a n_b).

    The left singular vectors are the scores of ``a``'s cells, the right ones those of
    ``b``'s cells (not scaled by the singular values). As in Seurat, each cell's scores are
    L2-normalised (``l2_normalize``); they are then z-scored per component and written to
    ``.obsm[key_added]`` of both modalities (DataFrames, columns ``CC1..CCk``), with a
    summary in ``.uns["scmosaic_cca"]`` of both. Nothing else in ``mdata`` changes.

    Parameters
    ----------
    mdata
        MuData with both modalities.
    modalities
        The two modalities ``(a, b)``.
    n_components
        Number ``k`` of singular triplets, at most ``min(n_shared, n_a - 1, n_b - 1)``.
    shared_features
        Feature names present in both ``var_names``; default all common names (in ``a``'s
        order).
    layer
        Layer to read in both modalities (default ``.X``): raw counts unless
        ``normalized``.
    normalized
        The matrix is already normalised: skip ``normalize_total`` and ``log1p``.
    l2_normalize
        L2-normalise each cell's singular-vector scores before the per-component z-score.
    key_added
        ``.obsm`` key of the scores.
    seed
        Seed of the ARPACK starting vector (deterministic given it).

    Returns
    -------
    The summary: ``singular_values`` (decreasing), ``n_shared_features``,
    ``shared_features`` and the parameters.

    Examples
    --------
    >>> summary = scmosaic.pp.diagonal_cca(mdata, ("rna", "atac"), n_components=20)
    >>> mdata["atac"].obsm["X_cca"].shape
    """
    mod_a, mod_b = _check_modalities(mdata, modalities)
    adata_a, adata_b = mdata.mod[mod_a], mdata.mod[mod_b]
    features = _shared_features(adata_a, adata_b, (mod_a, mod_b), shared_features)
    n_a, n_b, p = adata_a.n_obs, adata_b.n_obs, len(features)
    limit = min(p, n_a - 1, n_b - 1)
    if not 1 <= n_components <= limit:
        raise ValueError(
            f"n_components={n_components} must be in [1, {limit}] (shared features {p}, "
            f"cells {n_a} and {n_b})."
        )
    x_a, mean_a, std_a = _standardized_block(adata_a, mod_a, layer, normalized, features)
    x_b, mean_b, std_b = _standardized_block(adata_b, mod_b, layer, normalized, features)
    za, zat = _standardized_operator(x_a, mean_a, std_a)
    zb, zbt = _standardized_operator(x_b, mean_b, std_b)

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
    u, s, v = u[:, order], s[order], vt[order].T
    u, v = _sign_fix(u, v)
    if l2_normalize:
        u, v = _unit_rows(u), _unit_rows(v)
    summary: dict[str, Any] = {
        "method": "diagonal_cca",
        "modalities": [mod_a, mod_b],
        "singular_values": [float(x) for x in s],
        "n_shared_features": int(p),
        "shared_features": [str(f) for f in features],
        "n_components": int(n_components),
        "l2_normalize": bool(l2_normalize),
        "normalized": bool(normalized),
        "key_added": key_added,
        "seed": int(seed),
    }
    _write_scores(mdata, (mod_a, mod_b), (u, v), key_added, summary)
    return summary
