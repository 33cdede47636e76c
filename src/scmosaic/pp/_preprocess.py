"""Per-modality normalisation from raw counts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import anndata as ad
import numpy as np
import scanpy as sc
from mudata import MuData
from scipy import sparse

from .._checks import get_modality
from .._keys import COUNTS_LAYER, PREPROCESS_UNS_KEY
from ._inputs import get_matrix

logger = logging.getLogger(__name__)

Kind = Literal["rna", "adt", "atac"]
_KIND_BY_NAME = {
    "rna": "rna", "gex": "rna", "gene": "rna", "genes": "rna", "expression": "rna",
    "adt": "adt", "prot": "adt", "protein": "adt", "proteins": "adt", "cite": "adt",
    "atac": "atac", "peaks": "atac", "gene_activity": "atac", "activity": "atac",
}  # fmt: skip


def infer_kind(modality: str) -> str:
    """The kind of a modality from its name (``rna``, ``adt`` or ``atac``)."""
    kind = _KIND_BY_NAME.get(modality.lower())
    if kind is None:
        raise ValueError(
            f"Cannot tell the kind of modality {modality!r} from its name; pass "
            f"kinds={{{modality!r}: 'rna' | 'adt' | 'atac'}}."
        )
    return kind


def preprocess(
    mdata: MuData,
    modalities: Sequence[str] | None = None,
    kinds: dict[str, Kind] | None = None,
    counts_layer: str | None = None,
    n_top_genes: int | None = 2000,
    target_sum: float | None = 1e4,
) -> MuData:
    """Normalise each modality from raw counts as scMODAL expects; returns a new MuData.

    For every modality: ``normalize_total`` (``target_sum``), ``log1p``; RNA and ATAC are
    then restricted to ``n_top_genes`` highly variable features (Seurat v3 flavour on the
    counts) when they have more. Per-feature z-scoring with clipping is part of the model
    (:class:`~scmosaic.SCMODAL` standardises each minibatch with statistics stored in the
    model), so sparse data stay sparse.

    The input is not modified. In the returned MuData each modality has ``.X`` = the
    log-normalised values, ``.layers["counts"]`` = the raw counts, ``.var["highly_variable"]``
    (RNA/ATAC) and ``.uns["scmosaic_preprocess"]`` = the parameters; ``.obs`` and ``.obsm``
    (e.g. linked features) are kept.

    Parameters
    ----------
    mdata
        MuData with raw counts.
    modalities
        Modalities to process (default: all).
    kinds
        Kind of each modality (``"rna"``, ``"adt"``, ``"atac"``); inferred from names such
        as ``rna``, ``adt``, ``protein``, ``atac`` when not given.
    counts_layer
        Layer with raw counts (default ``.X``), the same for every modality.
    n_top_genes
        Highly variable features kept for RNA/ATAC (``None``: keep all).
    target_sum
        Library size after normalisation (``None``: the median library size).

    Returns
    -------
    A new MuData with the processed modalities.

    Examples
    --------
    >>> mdata = scmosaic.datasets.hao2021_pbmc_cite()
    >>> processed = scmosaic.pp.preprocess(mdata, n_top_genes=2000)
    """
    modalities = list(modalities or mdata.mod)
    kinds = dict(kinds or {})
    out = {}
    for m in modalities:
        src = get_modality(mdata, m)
        if src.n_obs == 0 or src.n_vars == 0:
            raise ValueError(f"Modality {m!r} is empty ({src.n_obs} x {src.n_vars}).")
        kind = kinds.get(m) or infer_kind(m)
        counts = get_matrix(src, counts_layer, m)
        counts = (
            counts.astype(np.float32)
            if sparse.issparse(counts)
            else sparse.csr_matrix(counts, dtype=np.float32)
        )
        adata = ad.AnnData(
            X=sparse.csr_matrix(counts, copy=True),
            obs=src.obs.copy(),
            var=src.var.copy(),
            obsm={k: v.copy() for k, v in src.obsm.items()},
        )
        adata.layers[COUNTS_LAYER] = counts.copy()
        if kind in ("rna", "atac") and n_top_genes is not None and adata.n_vars > n_top_genes:
            sc.pp.highly_variable_genes(
                adata, n_top_genes=n_top_genes, flavor="seurat_v3", layer=COUNTS_LAYER
            )
            adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()
        sc.pp.normalize_total(adata, target_sum=target_sum)
        sc.pp.log1p(adata)
        adata.uns.pop("log1p", None)
        adata.uns[PREPROCESS_UNS_KEY] = {
            "kind": kind,
            "target_sum": "median" if target_sum is None else float(target_sum),
            "n_top_genes": -1 if n_top_genes is None else int(n_top_genes),
        }
        out[m] = adata
        logger.info("Preprocessed %s (%s): %d cells x %d features", m, kind, *adata.shape)
    return MuData(out)
