"""Per-feature statistics: column means and standard deviations, and z-scores.

Written once for every caller (linked features, CCA, the model's standardisers), for dense,
sparse and backed matrices alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.utils.sparsefuncs import mean_variance_axis


def _chunk_moments(chunk) -> tuple[int, np.ndarray, np.ndarray]:
    """Rows, column means and column sums of squared deviations of one in-memory chunk."""
    n = chunk.shape[0]
    if sparse.issparse(chunk):
        mean, var = mean_variance_axis(sparse.csr_matrix(chunk, dtype=np.float64), axis=0)
        return n, np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64) * n
    chunk = np.asarray(chunk, dtype=np.float64)
    mean = chunk.mean(0)
    return n, mean, ((chunk - mean) ** 2).sum(0)  # the sum np.var takes: same numbers


def feature_mean_std(x, ddof: int = 1, chunk_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column, computed over chunks of rows.

    The matrix is read ``chunk_size`` rows at a time (``x[start:stop]``), so a backed
    matrix (an :class:`h5py.Dataset` or anndata's backed sparse dataset, e.g. ``.X`` of an
    AnnData read with ``backed="r"``) is never loaded whole and a sparse one is never
    densified (:func:`sklearn.utils.sparsefuncs.mean_variance_axis`; an in-memory sparse
    matrix that is not CSR is converted to CSR once). Chunks are merged
    with the pairwise update of Chan et al. (numerically stable, no sum of squares).

    Parameters
    ----------
    x
        ``(n, p)`` dense array, scipy sparse matrix, backed dataset or DataFrame.
    ddof
        Delta degrees of freedom: the variance divides by ``n - ddof`` (``1``, the
        default, as :func:`scanpy.pp.scale` and :meth:`pandas.DataFrame.std`).
    chunk_size
        Rows per chunk.

    Returns
    -------
    ``(mean, std)``, float64 arrays of length ``p``. A column with zero (or undefined,
    e.g. a single row with ``ddof=1``) standard deviation gets std ``1``, so that dividing
    by it leaves the centred column (all zeros) unchanged.

    Examples
    --------
    >>> mean, std = feature_mean_std(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> mean.tolist(), std.tolist()
    ([2.0, 5.0], [1.4142135623730951, 1.0])
    """
    if isinstance(x, pd.DataFrame):
        x = x.to_numpy()
    elif sparse.issparse(x) and x.format != "csr":
        x = sparse.csr_matrix(x)  # in memory already; CSR slices rows cheaply (COO cannot)
    n = x.shape[0]
    if n == 0:
        raise ValueError("Per-feature statistics need at least one row.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    count, mean, m2 = _chunk_moments(x[:chunk_size])
    for start in range(chunk_size, n, chunk_size):
        n_b, mean_b, m2_b = _chunk_moments(x[start : start + chunk_size])
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    std = np.sqrt(m2 / max(n - ddof, 1))
    std[~(std > 0)] = 1.0
    return mean, std


def zscore(
    values: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float | None = None
) -> np.ndarray:
    """``(values - mean) / std`` per column, clipped to ``[-clip, clip]`` when ``clip``.

    Parameters
    ----------
    values
        ``(n, p)`` dense array.
    mean, std
        Per-column statistics, e.g. from :func:`feature_mean_std`.
    clip
        Bound of the absolute z-score; ``None`` or ``0``: no clipping.

    Examples
    --------
    >>> values = np.array([[1.0], [3.0]])
    >>> zscore(values, *feature_mean_std(values, ddof=0)).ravel().tolist()
    [-1.0, 1.0]
    """
    z = (np.asarray(values, dtype=np.float64) - mean) / std
    return np.clip(z, -clip, clip) if clip else z
