"""Sums of groups of columns (peaks -> genes, proteins -> genes) as one sparse product."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike
from scipy import sparse


def group_sum_selector(
    members: ArrayLike, groups: ArrayLike, n_columns: int, n_groups: int, dtype: DTypeLike
) -> sparse.csr_matrix:
    """Sparse ``(n_columns, n_groups)`` selector ``S``: ``X @ S`` sums columns into groups.

    Column ``members[i]`` of ``X`` is added to group ``groups[i]``; a column may belong to
    several groups (repeated pairs count twice). ``S.sum(0)`` is the size of each group.

    Examples
    --------
    >>> x = np.array([[1.0, 2.0, 4.0]])
    >>> x @ group_sum_selector([0, 1, 2], [0, 0, 1], 3, 2, np.float64)
    array([[3., 4.]])
    """
    members = np.asarray(members, dtype=np.int64)
    return sparse.csr_matrix(
        (np.ones(members.size, dtype=dtype), (members, np.asarray(groups, dtype=np.int64))),
        shape=(n_columns, n_groups),
    )
