"""CCA linked features of two modalities, written into the MuData: :func:`cca_links` and
:func:`diagonal_cca`. The algebra is in :mod:`scmosaic.pp._cca_algebra`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
from mudata import MuData
from scipy import sparse

from .._keys import CCA_OBSM_KEY, CCA_UNS_KEY, linked_obsm_key
from ._cca_algebra import (
    check_pivots,
    diagonal_svd,
    iterated_cca,
    mutual_nearest_pairs,
    standardized,
    unit_rows,
)
from ._docs import shared_docs
from ._embedding import column_range, log_normalized_adata, pca_embedding
from ._inputs import check_n_cells, check_number, get_matrix, two_modalities
from ._neighbors import KnnMethod, averaging_operator, check_knn_method

logger = logging.getLogger(__name__)


def _link_pivots(
    mdata: MuData,
    mods: tuple[str, str],
    linked_keys: Sequence[str] | None,
    n_neighbors: int,
    knn_method: KnnMethod = "auto",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Mutual nearest pairs of the two modalities' (z-scored) linked features."""
    mod_a, mod_b = mods
    keys = list(linked_keys) if linked_keys is not None else None
    if keys is None:
        keys = [linked_obsm_key(mod_b), linked_obsm_key(mod_a)]
    if len(keys) != 2:
        raise ValueError(f"linked_keys must be two .obsm keys (a, b), got {keys}.")
    blocks = []
    for mod, key in zip(mods, keys, strict=True):
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
    for mod, block in zip(mods, blocks, strict=True):
        if not np.isfinite(block).all():
            raise ValueError(f"Linked features of {mod!r} contain non-finite values.")
    ia, ib, _ = mutual_nearest_pairs(
        standardized(blocks[0]), standardized(blocks[1]), n_neighbors, knn_method, seed
    )
    return ia, ib, keys


def _label_pivots(
    mdata: MuData, mods: tuple[str, str], labels_key: str | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each cell of either modality paired with a random cell of the other of equal label."""
    mod_a, mod_b = mods
    if labels_key is None:
        raise ValueError('init="labels" needs labels_key, a column of .obs in both modalities.')
    labels = []
    for mod in mods:
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


def _write_scores(
    mdata: MuData, mods: Sequence[str], scores: Sequence[np.ndarray], key: str, summary: dict
) -> None:
    """Per-component z-scored scores as ``.obsm[key]`` (``CC1..CCk``), the summary in ``.uns``."""
    names = [f"CC{i + 1}" for i in range(scores[0].shape[1])]
    for mod, s in zip(mods, scores, strict=True):
        adata = mdata.mod[mod]
        adata.obsm[key] = pd.DataFrame(
            standardized(s).astype(np.float32), index=adata.obs_names, columns=names
        )
        adata.uns[CCA_UNS_KEY] = dict(summary)


def _check_cca_options(
    init: str,
    n_components: int,
    n_pcs: int,
    pivot_fraction: float,
    n_iterations: int,
    n_neighbors: int,
    regularization: float,
    smooth_neighbors: int,
) -> None:
    if init == "none":
        raise NotImplementedError(
            'init="none" (structure-only matching, e.g. Gromov-Wasserstein) is not '
            'implemented; use init="links" with a few linked features or init="labels".'
        )
    if init not in ("links", "labels"):
        raise ValueError(f"init must be 'links', 'labels' or 'none', got {init!r}.")
    for name, value in (("n_components", n_components), ("n_pcs", n_pcs)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    check_number(pivot_fraction, "pivot_fraction", positive=True)
    if pivot_fraction > 1:
        raise ValueError(f"pivot_fraction must be in (0, 1], got {pivot_fraction}.")
    for name, value, low in (
        ("n_iterations", n_iterations, 0),
        ("n_neighbors", n_neighbors, 1),
        ("smooth_neighbors", smooth_neighbors, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    check_number(regularization, "regularization")


_NORMALIZED_HINT = ", or pass normalized=True to use the values as they are"


def _reduced(
    mdata: MuData,
    mods: tuple[str, str],
    layer: str | None,
    normalized: bool,
    n_pcs: int,
    n_components: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """PCA embeddings ``U_a`` and ``U_b`` (float64), checked to have ``n_components``."""
    reduced = []
    for m in mods:
        if mdata.mod[m].n_vars < 2:
            raise ValueError(
                f"Modality {m!r} has {mdata.mod[m].n_vars} feature(s); its PCA needs at least 2."
            )
        x = get_matrix(
            mdata.mod[m],
            layer,
            m,
            counts=not normalized,
            caller="cca_links",
            layer_arg="layer",
            alternative=_NORMALIZED_HINT,
        )
        u = pca_embedding(x, n_pcs, normalized=normalized, seed=seed, name=f"modality {m!r}")
        if not np.any(u):
            raise ValueError(
                f"The cells of modality {m!r} do not differ (after normalisation every "
                "feature is constant): there is no variation for the CCA to correlate."
            )
        reduced.append(np.asarray(u, dtype=np.float64))
    u_a, u_b = reduced
    if n_components > min(u_a.shape[1], u_b.shape[1]):
        raise ValueError(
            f"n_components={n_components} exceeds the principal components available "
            f"({mods[0]!r}: {u_a.shape[1]}, {mods[1]!r}: {u_b.shape[1]}); lower n_components."
        )
    return u_a, u_b


@shared_docs
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
    key_added: str = CCA_OBSM_KEY,
    knn_method: KnnMethod = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Learn linked features of two unpaired modalities by iterated regularised CCA.

    1. Each modality's full features are normalised (``normalize_total`` to 1e4,
       ``log1p``; skipped with ``normalized=True``), standardised per feature and reduced to
       ``n_pcs`` principal components (:func:`scanpy.pp.pca`, sparse input kept sparse),
       ``U_a`` and ``U_b``.
    2. Initial pivots, cell pairs ``(i, j)`` of ``a`` and ``b``, from a weak prior
       (``init``).
    3. A regularised CCA is fitted on the pivots; every cell is scored.
    4. ``n_iterations`` times: all cells are re-matched by mutual nearest neighbours
       (:func:`~scmosaic.pp.mutual_nearest_pairs`) of their canonical scores, the best
       ``pivot_fraction`` of the pairs (by similarity) are kept and the CCA is refitted.

    The ``k = n_components`` canonical scores of every cell, z-scored per component, are
    written to ``mdata.mod[a].obsm[key_added]`` and ``mdata.mod[b].obsm[key_added]``
    (DataFrames with columns ``CC1..CCk``): column ``j`` of both measures the same
    canonical variate, so they can serve as the linked features of a link ``(a, b)``
    (e.g. ``scmosaic.SCMODAL.setup_mudata`` with these keys). The returned summary is also
    stored in ``.uns["scmosaic_cca"]`` of both modalities. Nothing else in ``mdata``
    changes. Memory O(n r + r^2) and O((n_a + n_b) n_neighbors): no ``n_a x n_b`` matrix.
    Unless ``normalized``, the matrices must be raw counts: values that look
    log-normalised already raise a ``ValueError``, other non-integer values (e.g.
    ambient-corrected counts) a ``UserWarning``. A backed modality
    (``mudata.read_h5mu(path, backed=True)``) is read into memory for the PCA.

    Parameters
    ----------
    mdata, modalities
        {mdata_pair}
    init
        Source of the initial pivots. ``"links"``: mutual nearest neighbours (cosine,
        ``n_neighbors`` both ways) of the linked features ``.obsm[linked_keys]`` of the two
        modalities, as written by :func:`scmosaic.pp.link_features` (already smoothed and
        z-scored; a weak table of 10-30 proteins is enough). For pivots, smooth both sides of
        a protein table (``link_features(..., smooth_modalities=("adt", "rna"))``; the
        workflow does so for ``links="cca"``): on the Hao subset with a 10-protein table the
        scores' anchor precision is 0.79 that way, 0.51 with the gene side alone, the
        default for links that are trained on. ``"labels"``: every cell of
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
        Ridge of each side's covariance relative to its mean variance (0: classical CCA).
    smooth_neighbors
        If > 1, canonical scores are averaged over each cell's ``smooth_neighbors`` nearest
        cells of its own modality (in PCA space) before re-matching; written scores are
        never smoothed.
    layer
        {layer}
    normalized
        {normalized}
    key_added
        ``.obsm`` key of the canonical scores.
    knn_method
        {knn_method}
        Used by the matching and the smoothing. At 100,000 cells per modality
        (``benchmarks/cca_scaling.py``, replicated Hao cells, ``init="links"``, one thread)
        approximate search took 53 s against 371 s for exact search and matched as well
        (anchor precision of the scores 0.920 both, initial pivots 35,728 vs 35,953).
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
        Too few pivots, no shared label, ``n_components`` larger than the data allow, a
        modality of fewer than two cells, an all-zero, non-finite or (unless ``normalized``)
        negative or log-normalised matrix, or an invalid option.
    NotImplementedError
        ``init="none"``.

    Examples
    --------
    >>> table = {"CD4": "CD4", "CD19": "CD19"}
    >>> scmosaic.pp.link_features(mdata, "adt", "rna", table=table, smooth_modalities=("adt", "rna"))
    >>> summary = scmosaic.pp.cca_links(mdata, ("rna", "adt"), init="links")
    >>> summary["correlations"][:3]
    >>> mdata["rna"].obsm["X_cca"].shape, mdata["adt"].obsm["X_cca"].shape
    """
    mods = two_modalities(mdata, modalities, "CCA")
    _check_cca_options(
        init,
        n_components,
        n_pcs,
        pivot_fraction,
        n_iterations,
        n_neighbors,
        regularization,
        smooth_neighbors,
    )
    check_knn_method(knn_method)  # a bad value fails here, before any work
    for m in mods:
        check_n_cells(mdata.mod[m], m, "cca_links")
    # Pivots first: cheap checks before the reductions.
    if init == "links":
        *pivots, keys = _link_pivots(mdata, mods, linked_keys, n_neighbors, knn_method, seed)
        details: dict[str, Any] = {"linked_keys": keys}
    else:
        pivots = _label_pivots(mdata, mods, labels_key, seed)
        details = {"labels_key": labels_key}
    check_pivots(pivots[0].size, n_components, f"from init={init!r}")
    u_a, u_b = _reduced(mdata, mods, layer, normalized, n_pcs, n_components, seed)
    smoothers = None
    if smooth_neighbors > 1 and n_iterations > 0:
        smoothers = [averaging_operator(u, smooth_neighbors, knn_method, seed) for u in (u_a, u_b)]
    logger.info("CCA of %s and %s", *mods)
    s_a, s_b, n_pivots, correlations = iterated_cca(
        u_a,
        u_b,
        tuple(pivots),
        n_components,
        n_iterations=n_iterations,
        n_neighbors=n_neighbors,
        pivot_fraction=pivot_fraction,
        regularization=regularization,
        smoothers=smoothers,
        knn_method=knn_method,
        seed=seed,
    )
    summary: dict[str, Any] = {
        "method": "cca_links",
        "modalities": list(mods),
        "init": init,
        **details,
        "correlations": correlations[-1],
        "correlations_per_iteration": correlations,
        "n_pivots": n_pivots,
        "n_pcs": [int(u_a.shape[1]), int(u_b.shape[1])],
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
    _write_scores(mdata, mods, (s_a, s_b), key_added, summary)
    return summary


def _shared_features(
    adata_a: ad.AnnData, adata_b: ad.AnnData, mods: Sequence[str], shared_features
) -> list[str]:
    """The requested shared feature names (checked), or all names common to both."""
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


def _shared_block(adata: ad.AnnData, mod: str, layer, normalized: bool, features):
    """Log-normalised shared-feature block (float64, sparse kept), normalised on all features."""
    counts = get_matrix(
        adata,
        layer,
        mod,
        counts=not normalized,
        caller="diagonal_cca",
        layer_arg="layer",
        alternative=_NORMALIZED_HINT,
    )
    x = log_normalized_adata(counts, normalized).X[:, adata.var_names.get_indexer(features)]
    return (
        sparse.csr_matrix(x, dtype=np.float64) if sparse.issparse(x) else np.asarray(x, np.float64)
    )


@shared_docs
def diagonal_cca(
    mdata: MuData,
    modalities: Sequence[str] = ("rna", "atac"),
    n_components: int = 20,
    *,
    shared_features: Sequence[str] | None = None,
    layer: str | None = None,
    normalized: bool = False,
    l2_normalize: bool = True,
    key_added: str = CCA_OBSM_KEY,
    seed: int = 0,
) -> dict[str, Any]:
    """Seurat-style diagonal CCA of two modalities that share feature names.

    Over the shared features, each modality is normalised (``normalize_total`` to 1e4 and
    ``log1p`` over all its features; skipped with ``normalized=True``) and standardised per
    feature across its cells, ``Z_a`` and ``Z_b``; the top ``k`` singular triplets of
    ``Z_a Z_b^T`` (``n_a x n_b``) are computed with :func:`scipy.sparse.linalg.svds` on a
    matrix-free operator: sparse input is never densified and memory stays
    O(nnz + (n_a + n_b) k), not O(n_a n_b).

    The left singular vectors are the scores of ``a``'s cells, the right ones those of
    ``b``'s cells (not scaled by the singular values). As in Seurat, each cell's scores are
    L2-normalised (``l2_normalize``); they are then z-scored per component and written to
    ``.obsm[key_added]`` of both modalities (DataFrames, columns ``CC1..CCk``), with a
    summary in ``.uns["scmosaic_cca"]`` of both. Nothing else in ``mdata`` changes.

    Parameters
    ----------
    mdata, modalities
        {mdata_pair}
    n_components
        Number ``k`` of singular triplets, at most ``min(n_shared, n_a - 1, n_b - 1)``.
    shared_features
        Feature names present in both ``var_names``; default all common names (in ``a``'s
        order).
    layer
        {layer}
    normalized
        {normalized}
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
    mods = two_modalities(mdata, modalities, "CCA")
    adata_a, adata_b = mdata.mod[mods[0]], mdata.mod[mods[1]]
    features = _shared_features(adata_a, adata_b, mods, shared_features)
    n_a, n_b, p = adata_a.n_obs, adata_b.n_obs, len(features)
    limit = min(p, n_a - 1, n_b - 1)
    if not 1 <= n_components <= limit:
        raise ValueError(
            f"n_components={n_components} must be in [1, {limit}] (shared features {p}, "
            f"cells {n_a} and {n_b})."
        )
    x_a = _shared_block(adata_a, mods[0], layer, normalized, features)
    x_b = _shared_block(adata_b, mods[1], layer, normalized, features)
    for mod, x in zip(mods, (x_a, x_b), strict=True):
        low, high = column_range(x)
        if np.all(low == high):  # a zero operator: ARPACK refuses it
            raise ValueError(
                f"The cells of modality {mod!r} do not differ in the {p} shared features "
                "(after normalisation each is constant): there is nothing to correlate."
            )
    u, s, v = diagonal_svd(x_a, x_b, n_components, seed)
    if l2_normalize:
        u, v = unit_rows(u), unit_rows(v)
    summary: dict[str, Any] = {
        "method": "diagonal_cca",
        "modalities": list(mods),
        "singular_values": [float(x) for x in s],
        "n_shared_features": int(p),
        "shared_features": [str(f) for f in features],
        "n_components": int(n_components),
        "l2_normalize": bool(l2_normalize),
        "normalized": bool(normalized),
        "key_added": key_added,
        "seed": int(seed),
    }
    _write_scores(mdata, mods, (u, v), key_added, summary)
    return summary
