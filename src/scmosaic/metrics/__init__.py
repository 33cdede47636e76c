"""Evaluation metrics for multimodal integration.

* :func:`foscttm`, :func:`foscttm_per_cell`, :func:`foscttm_maxfuse`:
  fraction of samples closer than the true match (paired data).
* :func:`label_transfer_accuracy`: accuracy and macro-F1 of kNN label transfer
  between modalities/datasets in a shared embedding (the classifier is
  :func:`scmosaic.tl.knn_transfer`).
* :func:`anchor_precision`: label agreement of matched cell pairs.
"""

from __future__ import annotations

import warnings

from ._foscttm import foscttm, foscttm_maxfuse, foscttm_per_cell
from ._label_transfer import anchor_precision, label_transfer_accuracy

__all__ = [
    "anchor_precision",
    "foscttm",
    "foscttm_maxfuse",
    "foscttm_per_cell",
    "label_transfer_accuracy",
]


def __getattr__(name: str):
    # knn_transfer is a classifier, not a metric: it moved to scmosaic.tl in 0.2.
    if name == "knn_transfer":
        from ..tl import knn_transfer

        warnings.warn(
            "scmosaic.metrics.knn_transfer moved to scmosaic.tl.knn_transfer; the old name "
            "will be removed in a future release.",
            FutureWarning,
            stacklevel=2,
        )
        return knn_transfer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
