"""kNN label transfer between modalities in the joint embedding."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from mudata import MuData

from .._checks import get_modality
from .._keys import LATENT_OBSM_KEY
from ..pp._neighbors import KnnMethod
from ._knn import knn_transfer_with_distance

logger = logging.getLogger(__name__)


def _embedding(adata, name: str, basis: str) -> np.ndarray:
    if basis not in adata.obsm:
        raise KeyError(
            f"Modality {name!r} has no `.obsm[{basis!r}]`; run "
            "`model.get_latent_representation(write_obsm=True)` first or pass `basis=`."
        )
    return np.asarray(adata.obsm[basis], dtype=np.float64)


def transfer_labels(
    mdata: MuData,
    reference: str,
    query: str,
    labels_key: str,
    *,
    basis: str = LATENT_OBSM_KEY,
    k: int = 15,
    min_confidence: float | None = None,
    unknown_label: str = "unknown",
    key_added: str | None = None,
    chunk_size: int = 2048,
    query_data: MuData | None = None,
    knn_method: KnnMethod = "auto",
) -> pd.DataFrame:
    """Transfer labels from a reference modality to a query modality by kNN vote.

    For every query cell, the ``k`` nearest reference cells in the joint embedding
    ``.obsm[basis]`` (Euclidean) vote for their label; the label with the most votes wins
    (ties go to the label whose voter is nearest). The *confidence* of a cell is the
    fraction of its ``k`` neighbours that voted for the winning label, so it lies in
    ``[1/k, 1]``. Query cells whose confidence is below ``min_confidence`` get
    ``unknown_label`` instead: a cell type that the reference lacks tends to fall
    between reference types and so to get mixed votes. A type the reference lacks may also
    land next to one known type and get a confident vote; the *distance*
    (:func:`distance_to_reference`: the mean distance to the ``k`` voters relative to the
    reference cells' own spacing) flags it better there (user guide, "Label transfer").

    Neighbour search runs ``chunk_size`` query cells at a time, so memory stays bounded for
    large queries. The query may be in another MuData (``query_data``), e.g. new cells mapped
    onto a trained model with :meth:`~scmosaic.SCMODAL.load_query_data`.

    Parameters
    ----------
    mdata
        Integrated MuData; both modalities need the embedding ``.obsm[basis]``.
    reference
        Modality whose ``.obs[labels_key]`` holds the known labels. Cells with a missing
        label are not used as voters.
    query
        Modality to annotate (of ``query_data`` if given). It may be the same modality of the
        same MuData as ``reference`` (then every cell also votes for itself).
    labels_key
        Column of ``mdata[reference].obs`` with the labels.
    basis
        Key of the joint embedding in ``.obsm`` of both modalities.
    k
        Number of reference neighbours that vote.
    min_confidence
        If given (between 0 and 1), cells with a lower confidence get ``unknown_label``.
    unknown_label
        Label given to low-confidence cells; must not be one of the reference labels.
    key_added
        Name of the written ``.obs`` columns; default ``"<labels_key>_transferred"``.
    chunk_size
        Query cells searched at a time.
    query_data
        MuData holding the query modality (default: ``mdata``); its embedding must be in the
        reference's space, e.g. codes of a query model of the same reference.
    knn_method
        ``"exact"``, ``"approximate"`` (a faiss inverted-file index) or ``"auto"`` (exact
        for references of at most 50,000 labelled cells): see :func:`knn_transfer`.

    Returns
    -------
    :class:`pandas.DataFrame` indexed by the query's ``obs_names`` with columns ``label``
    (categorical), ``confidence`` and ``distance`` (floats).

    The same values are written to the query modality's ``.obs``:

    ``.obs["<key_added>"]``
        Transferred label (categorical; ``unknown_label`` where below ``min_confidence``).
    ``.obs["<key_added>_confidence"]``
        Fraction of the ``k`` neighbours that voted for the transferred label.
    ``.obs["<key_added>_distance"]``
        :func:`distance_to_reference` of the cell: about 1 among reference-like cells,
        larger far from every reference cell.

    Nothing else is changed; existing columns with these names are overwritten (with a log
    message).

    Examples
    --------
    >>> model.get_latent_representation(write_obsm=True)  # doctest: +SKIP
    >>> pred = scmosaic.tl.transfer_labels(
    ...     mdata, reference="rna", query="adt", labels_key="celltype", min_confidence=0.5
    ... )  # doctest: +SKIP
    >>> mdata["adt"].obs[["celltype_transferred", "celltype_transferred_confidence"]]  # doctest: +SKIP

    New RNA-only cells mapped onto a reference model:

    >>> query_model.get_latent_representation(write_obsm=True)  # doctest: +SKIP
    >>> scmosaic.tl.transfer_labels(
    ...     reference_mdata, "rna", "rna", "celltype", query_data=query_model.adata,
    ...     min_confidence=0.5,
    ... )  # doctest: +SKIP
    """
    ref = get_modality(mdata, reference, "Reference")
    qry = get_modality(mdata if query_data is None else query_data, query, "Query")
    if labels_key not in ref.obs:
        raise KeyError(
            f"Reference modality {reference!r} has no `.obs[{labels_key!r}]`; "
            f"its columns are {list(ref.obs.columns)}."
        )
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"`min_confidence` must lie in [0, 1]; got {min_confidence}.")
    ref_labels = ref.obs[labels_key]
    if min_confidence is not None and unknown_label in set(ref_labels.dropna().astype(str)):
        raise ValueError(
            f"`unknown_label`={unknown_label!r} is one of the labels in "
            f"`mdata[{reference!r}].obs[{labels_key!r}]`; choose another."
        )
    pred, conf, distance = knn_transfer_with_distance(
        _embedding(ref, reference, basis),
        ref_labels.to_numpy(dtype=object),
        _embedding(qry, query, basis),
        k=k,
        chunk_size=chunk_size,
        knn_method=knn_method,
    )
    pred = pred.astype(object)
    if min_confidence is not None:
        pred[conf < min_confidence] = unknown_label
    categories = list(pd.unique(ref_labels.dropna()))
    if min_confidence is not None:
        categories.append(unknown_label)
    label = pd.Categorical(pred, categories=categories)
    result = pd.DataFrame(
        {"label": label, "confidence": conf, "distance": distance}, index=qry.obs_names.copy()
    )

    key = key_added or f"{labels_key}_transferred"
    for column in (key, f"{key}_confidence", f"{key}_distance"):
        if column in qry.obs:
            logger.info("Overwriting mdata[%r].obs[%r].", query, column)
    qry.obs[key] = result["label"].to_numpy()
    qry.obs[f"{key}_confidence"] = conf
    qry.obs[f"{key}_distance"] = distance
    logger.info(
        "Transferred %r from %r to %d %r cells (median confidence %.2f).",
        labels_key,
        reference,
        len(result),
        query,
        float(np.median(conf)) if len(conf) else float("nan"),
    )
    return result
