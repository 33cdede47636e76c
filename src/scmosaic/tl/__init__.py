"""Tools that act on an integrated MuData (after :meth:`scmosaic.SCMODAL.get_latent_representation`).

* :func:`transfer_labels`: kNN label transfer from a reference modality to a query
  modality in the joint embedding, with a per-cell confidence and an "unknown" option.
* :func:`knn_transfer`: the same kNN vote on two plain arrays.
* :func:`distance_to_reference`: how far query cells lie from the reference (a novelty
  score), relative to the reference's own spacing.
* :func:`knn_impute`: the kernel average of neighbours' values behind
  :meth:`scmosaic.SCMODAL.get_imputed_features`, on two plain arrays.
"""

from __future__ import annotations

from ._impute import knn_impute
from ._knn import distance_to_reference, knn_transfer
from ._transfer import transfer_labels

__all__ = ["distance_to_reference", "knn_impute", "knn_transfer", "transfer_labels"]
