"""Tools that act on an integrated MuData (after :meth:`scmosaic.SCMODAL.get_latent_representation`).

* :func:`transfer_labels`: kNN label transfer from a reference modality to a query
  modality in the joint embedding, with a per-cell confidence and an "unknown" option.
"""

from __future__ import annotations

from ._transfer import transfer_labels

__all__ = ["transfer_labels"]
