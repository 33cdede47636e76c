"""Preprocess step: log-normalise the two modalities from their raw counts."""

from __future__ import annotations

import logging

from mudata import MuData

from ._errors import as_input_error
from ._options import WorkflowOptions

logger = logging.getLogger(__name__)


def preprocess(mdata: MuData, options: WorkflowOptions) -> MuData:
    """Preprocess step: :func:`scmosaic.pp.preprocess` of the two modalities.

    Parameters
    ----------
    mdata
        MuData with raw counts (``.X`` or ``options.layer``) and the linked features.
    options
        The run's options: ``preprocess``, ``kinds``, ``layer``, ``n_top_genes``.

    Returns
    -------
    A new MuData of the two modalities, normalised (RNA/ATAC log1p, ADT CLR; raw counts in
    ``.layers["counts"]``, highly variable genes for RNA/ATAC), ``.obsm`` kept; ``mdata``
    itself when ``options.preprocess`` is ``False``.

    Raises
    ------
    InputError
        Data that preprocessing rejects (e.g. negative counts).
    """
    from ..pp import preprocess as pp_preprocess

    if not options.preprocess:
        return mdata
    modalities = list(options.pair(mdata.mod))
    logger.info("Preprocessing %s", ", ".join(modalities))
    with as_input_error("preprocessing"):
        return pp_preprocess(
            mdata,
            modalities=modalities,
            kinds={m: options.kind_of(m) for m in modalities},
            counts_layer=options.layer,
            n_top_genes=options.n_top_genes,
        )
