"""Bridge features: each cell described by its similarity to paired cells ("landmarks").

Paired cells are measured in both modalities of a link, so a cell of either modality can be
described in the same coordinates: its similarity, within its own modality, to each landmark.
Two cells of different modalities that resemble the same landmarks resemble each other. Used
next to the linked features when the minibatch anchors are chosen (``_losses.select_anchors``),
this carries what the pairs teach to the cells whose partner is unknown (the idea of Seurat's
bridge integration, Hao et al., Nat Biotechnol 2023).

Measured on MIDAS's paired donors with the pairing of the other cells hidden
(``benchmarks/mosaic.py``, M2; FOSCTTM of the hidden cells from similarities alone, before
any training): linked features 0.16; bridge features 0.12 with 16 landmarks, 0.11 with 40,
0.09 with 160, 0.08 with 400 (linked + 2 x bridge similarity, 20 landmarks per cell).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy import sparse
from sklearn.decomposition import PCA

# Landmarks per link at most (paired cells drawn at random beyond that); each cell keeps its
# similarity to its N_BRIDGE_NEIGHBORS most similar landmarks, in N_BRIDGE_COMPONENTS principal
# components of its modality's z-scored features (PCA fitted on at most PCA_CELLS cells).
MAX_LANDMARKS = 1_000
MIN_LANDMARKS = 10
N_BRIDGE_NEIGHBORS = 20
N_BRIDGE_COMPONENTS = 30
PCA_CELLS = 20_000
CHUNK = 8_192


def choose_landmarks(n_pairs: int, seed: int) -> np.ndarray:
    """Positions (among a link's pairs) of its landmarks: all, or MAX_LANDMARKS at random."""
    if n_pairs <= MAX_LANDMARKS:
        return np.arange(n_pairs)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_pairs, MAX_LANDMARKS, replace=False))


def principal_components(
    scaled_chunks: Callable[[], Iterable[np.ndarray]], n_cells: int, seed: int
) -> np.ndarray:
    """Codes of every cell in ``N_BRIDGE_COMPONENTS`` principal components.

    ``scaled_chunks()`` yields the z-scored features of consecutive cells, chunk by chunk; it
    is read twice (fit on a subsample, then transform), so the whole matrix never needs to be
    dense at once.
    """
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(n_cells, min(n_cells, PCA_CELLS), replace=False))
    sample, start = [], 0
    for chunk in scaled_chunks():
        stop = start + len(chunk)
        picked = fit_rows[(fit_rows >= start) & (fit_rows < stop)] - start
        sample.append(chunk[picked])
        start = stop
    sample = np.vstack(sample)
    n_components = min(N_BRIDGE_COMPONENTS, *sample.shape)
    pca = PCA(n_components, random_state=seed).fit(sample)
    return np.vstack([pca.transform(chunk) for chunk in scaled_chunks()]).astype(np.float32)


def landmark_similarity(codes: np.ndarray, landmark_rows: np.ndarray) -> sparse.csr_matrix:
    """Cosine similarity of every cell to each landmark, kept for its most similar ones.

    Returns a ``cells x landmarks`` CSR matrix with ``min(N_BRIDGE_NEIGHBORS, landmarks)``
    entries per row (the top similarities; others 0).
    """
    unit = codes / np.maximum(np.linalg.norm(codes, axis=1, keepdims=True), 1e-12)
    landmarks = unit[landmark_rows]
    n_landmarks = len(landmark_rows)
    k = min(N_BRIDGE_NEIGHBORS, n_landmarks)
    rows, cols, vals = [], [], []
    for start in range(0, len(unit), CHUNK):
        sim = unit[start : start + CHUNK] @ landmarks.T
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(np.arange(start, start + len(sim)), k))
        cols.append(top.ravel())
        vals.append(np.take_along_axis(sim, top, axis=1).ravel())
    matrix = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(unit), n_landmarks),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    return matrix


def bridge_features(
    codes_a: np.ndarray, codes_b: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray, seed: int
) -> tuple[sparse.csr_matrix, sparse.csr_matrix] | None:
    """Bridge features of both modalities of a link, in the same landmark coordinates.

    ``codes_a`` / ``codes_b``: every cell of each modality in its own principal components;
    ``rows_a[i]`` of ``a`` and ``rows_b[i]`` of ``b`` are the same cell. ``None`` with fewer
    than ``MIN_LANDMARKS`` pairs (too few landmarks to tell cell types apart).
    """
    if len(rows_a) < MIN_LANDMARKS:
        return None
    chosen = choose_landmarks(len(rows_a), seed)
    return (
        landmark_similarity(codes_a, np.asarray(rows_a)[chosen]),
        landmark_similarity(codes_b, np.asarray(rows_b)[chosen]),
    )
