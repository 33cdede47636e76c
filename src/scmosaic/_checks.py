"""Input checks shared by every public function: written once, worded once."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from mudata import MuData
from numpy.typing import ArrayLike


def get_modality(mdata: MuData, modality: str, role: str = "") -> AnnData:
    """``mdata.mod[modality]``, or a ``KeyError`` that names the modality and what exists.

    Parameters
    ----------
    mdata
        The MuData.
    modality
        Name of the modality.
    role
        What the modality is for, put in front of the message (e.g. ``"Reference"``).
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"Expected a MuData, got {type(mdata).__name__}.")
    if modality not in mdata.mod:
        what = f"{role} modality" if role else "Modality"
        raise KeyError(f"{what} {modality!r} is not in the MuData; it has {list(mdata.mod)}.")
    return mdata.mod[modality]


def check_positive_int(value, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")


def as_finite_matrix(a: ArrayLike, name: str) -> np.ndarray:
    """``a`` as a finite 2-D float64 array (cells x dims), or a ``ValueError`` naming ``name``."""
    if sp.issparse(a):
        a = a.toarray()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be a numeric 2-D array: {err}") from err
    if arr.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array (cells x dims), got {arr.ndim}-D "
            f"array with shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(
            f"`{name}` contains {n_bad} NaN or infinite value(s); embeddings must be finite."
        )
    return arr


def as_labels(labels: ArrayLike, name: str, n: int | None = None) -> np.ndarray:
    """Labels as a 1-D object array (categoricals -> their values), of length ``n`` if given."""
    if isinstance(labels, pd.Series | pd.Index | pd.Categorical):
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


def check_same_space(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise a ``ValueError`` naming both arrays unless they have equally many columns, and
    at least one (no distance is defined in a space without dimensions)."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must live in the same space (same number of columns); "
            f"got {name_a}.shape={a.shape} and {name_b}.shape={b.shape}."
        )
    if a.shape[1] == 0:
        raise ValueError(f"`{name_a}` and `{name_b}` have no columns (dimensions).")


Stage = Literal["counts", "log-normalised", "other"]

# log1p of counts normalised to 10,000 per cell stays below ~10; 20 leaves room for other
# targets while real count matrices almost always hold larger values.
LOG_SCALE_MAX = 20.0


def data_stage(matrix, n_rows: int = 2000) -> Stage:
    """What the values of a cells x features matrix look like, from its first ``n_rows`` rows.

    ``"counts"``: non-negative integers (raw counts); ``"log-normalised"``: non-negative,
    not all integers, at most :data:`LOG_SCALE_MAX` (e.g. ``log1p`` of normalised counts);
    ``"other"``: anything else (scaled values with negatives, non-integer values above the
    log range such as ambient-corrected counts, or no non-zero value). Reads one chunk, so it
    is cheap on backed data too.
    """
    chunk = matrix[:n_rows]
    values = chunk.data if sp.issparse(chunk) else np.asarray(chunk).ravel()
    if not np.issubdtype(values.dtype, np.number):
        return "other"
    values = values[values != 0]
    if values.size == 0 or not np.isfinite(values).all() or values.min() < 0:
        return "other"
    if np.array_equal(values, np.round(values)):
        return "counts"
    return "log-normalised" if values.max() <= LOG_SCALE_MAX else "other"
