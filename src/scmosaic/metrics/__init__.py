"""Evaluation metrics for multimodal integration.

* :func:`foscttm`, :func:`foscttm_per_cell`, :func:`foscttm_maxfuse`:
  fraction of samples closer than the true match (paired data).
* :func:`knn_transfer`, :func:`label_transfer_accuracy`: kNN label transfer
  between modalities/datasets in a shared embedding.
* :func:`anchor_precision`: label agreement of matched cell pairs.
"""

from __future__ import annotations

from ._foscttm import foscttm, foscttm_maxfuse, foscttm_per_cell
from ._label_transfer import anchor_precision, knn_transfer, label_transfer_accuracy

__all__ = [
    "anchor_precision",
    "foscttm",
    "foscttm_maxfuse",
    "foscttm_per_cell",
    "knn_transfer",
    "label_transfer_accuracy",
]
