"""Per-modality normalisation from raw counts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import get_args

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from mudata import MuData
from scipy import sparse

from .._checks import check_positive_int, get_modality
from .._choices import Kind, ProteinNormalization
from .._keys import COUNTS_LAYER, PREPROCESS_UNS_KEY
from .._mudata import new_mudata
from ._embedding import column_range
from ._inputs import check_n_cells, check_number, get_matrix

logger = logging.getLogger(__name__)

_KINDS = get_args(Kind)
_PROTEIN_NORMALIZATIONS = get_args(ProteinNormalization)
_KIND_BY_NAME = {
    "rna": "rna", "gex": "rna", "gene": "rna", "genes": "rna", "expression": "rna",
    "adt": "adt", "prot": "adt", "protein": "adt", "proteins": "adt", "cite": "adt",
    "atac": "atac", "peaks": "atac", "gene_activity": "atac", "activity": "atac",
}  # fmt: skip


_ALREADY_NORMALISED = (
    ", or skip preprocess and register the log-normalised values directly: "
    "SCMODAL.setup_mudata(mdata, ..., layers={{{m!r}: '<layer>'}}) (None for .X)"
)


def infer_kind(modality: str) -> str:
    """The kind of a modality from its name (``rna``, ``adt`` or ``atac``)."""
    kind = _KIND_BY_NAME.get(modality.lower())
    if kind is None:
        raise ValueError(
            f"Cannot tell the kind of modality {modality!r} from its name; pass "
            f"kinds={{{modality!r}: 'rna' | 'adt' | 'atac'}}."
        )
    return kind


def _check_options(kinds: dict, n_top_genes, target_sum, protein_normalization) -> None:
    for m, kind in kinds.items():
        if kind not in _KINDS:
            raise ValueError(f"kinds[{m!r}] must be one of {_KINDS}, got {kind!r}.")
    if protein_normalization not in _PROTEIN_NORMALIZATIONS:
        raise ValueError(
            f"protein_normalization must be one of {_PROTEIN_NORMALIZATIONS}, "
            f"got {protein_normalization!r}."
        )
    if n_top_genes is not None:
        check_positive_int(n_top_genes, "n_top_genes")
    check_number(target_sum, "target_sum", positive=True, allow_none=True)


PREPROCESS_SCALE = {"clr": "modality", "log1p": "feature"}
"""How the model scales each normalisation's centred values (``SCMODAL(feature_scale=...)``):
per-protein z-scoring of CLR values flattens the spread that tells fine states apart."""

_KEEP_ALL = "pass n_top_genes=None to keep all features"
_MIN_VARYING = 4
"""Fewest varying features Seurat v3's loess fit runs on (with fewer, scikit-misc crashes)."""


def _highly_variable(adata: ad.AnnData, n_top_genes: int, modality: str) -> ad.AnnData:
    """``adata`` restricted to its ``n_top_genes`` highly variable features (Seurat v3)."""
    low, high = column_range(adata.layers[COUNTS_LAYER])
    n_varying = int(np.count_nonzero(low != high))
    fix = _KEEP_ALL
    if n_varying < _MIN_VARYING:
        raise ValueError(
            f"Modality {modality!r}: highly variable feature selection (Seurat v3, a loess fit "
            f"of variance on mean) needs at least {_MIN_VARYING} features that vary across the "
            f"cells, but {n_varying} of {adata.n_vars} do; {fix}."
        )
    try:
        sc.pp.highly_variable_genes(
            adata, n_top_genes=n_top_genes, flavor="seurat_v3", layer=COUNTS_LAYER
        )
    except ValueError as err:  # the loess fit fails on few cells or few distinct means
        raise ValueError(
            f"Modality {modality!r}: highly variable feature selection (Seurat v3) failed on "
            f"{adata.n_obs} cells with {n_varying} varying features ({err}); {fix}."
        ) from err
    return adata[:, adata.var["highly_variable"].to_numpy()].copy()


def clr(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    """Per-cell centred log-ratio of counts: ``log1p(x / g)``, ``g`` the geometric mean of
    ``1 + x`` over the cell's features.

    The form of Seurat's ``CLR`` and ``muon.prot.pp.clr(adata, axis=1)``; zeros stay zeros,
    so a sparse matrix stays sparse.
    """
    counts = sparse.csr_matrix(counts, dtype=np.float32, copy=True)
    log_counts = counts.copy()
    log_counts.data = np.log1p(log_counts.data)
    mean_log = np.asarray(log_counts.sum(axis=1)).ravel() / counts.shape[1]
    counts.data /= np.repeat(np.exp(mean_log), np.diff(counts.indptr)).astype(np.float32)
    counts.data = np.log1p(counts.data)
    return counts


def _renamed_rows(values, index: pd.Index):
    """A copy of an ``.obsm`` entry; a DataFrame gets the (string) cell names as its index."""
    if isinstance(values, pd.DataFrame):
        return values.set_axis(index, axis=0)  # set_axis copies
    return values.copy()


def preprocess(
    mdata: MuData,
    modalities: Sequence[str] | None = None,
    kinds: dict[str, Kind] | None = None,
    counts_layer: str | None = None,
    n_top_genes: int | None = 2000,
    target_sum: float | None = 1e4,
    protein_normalization: ProteinNormalization = "clr",
) -> MuData:
    """Normalise each modality from raw counts as scMODAL expects; returns a new MuData.

    RNA and ATAC: ``normalize_total`` (``target_sum``) and ``log1p``, restricted to
    ``n_top_genes`` highly variable features (Seurat v3 flavour on the counts) when they have
    more. Proteins (ADT): the per-cell centred log-ratio (``log1p(x / g)``, ``g`` the
    geometric mean of ``1 + x`` over the cell's proteins), the normalisation
    of CITE-seq protein counts in Seurat and muon; ``protein_normalization="log1p"`` treats
    them as RNA instead (scmosaic 0.1). Scaling with clipping is part of the model
    (:class:`~scmosaic.SCMODAL` standardises each minibatch with statistics stored in the
    model), so sparse data stay sparse; CLR proteins are recorded to be scaled by one
    scale for the panel rather than one per protein (``"scale": "modality"`` in the
    ``.uns`` record), which keeps what separates fine states (user guide, "Fine states
    across modalities").

    The input is not modified. In the returned MuData each modality has ``.X`` = the
    log-normalised values, ``.layers["counts"]`` = the raw counts, ``.var["highly_variable"]``
    (RNA/ATAC) and ``.uns["scmosaic_preprocess"]`` = the parameters (``kind``,
    ``normalization``, ``scale``, ``target_sum``, ``n_top_genes``); ``.obs`` and ``.obsm``
    (e.g. linked features) are kept; cell names become strings, as AnnData expects. A
    backed modality (``mudata.read_h5mu(path, backed=True)``) is read into memory.

    The counts must be raw: values that look log-normalised already (non-integer, at most
    20) raise a ``ValueError``, other non-integer values (e.g. ambient-corrected counts) a
    ``UserWarning``.

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
        Library size after ``normalize_total`` (``None``: the median library size); not used
        by CLR.
    protein_normalization
        ``"clr"`` (per-cell centred log-ratio) or ``"log1p"`` (as RNA) for ADT modalities.

    Returns
    -------
    A new MuData with the processed modalities.

    Raises
    ------
    KeyError
        A modality or the counts layer is missing.
    ValueError
        Empty, all-zero, negative, non-finite or log-normalised counts, a modality of one
        cell when highly variable features are selected, or an invalid option.

    Examples
    --------
    >>> mdata = scmosaic.datasets.hao2021_pbmc_cite()
    >>> processed = scmosaic.pp.preprocess(mdata, n_top_genes=2000)
    """
    modalities = list(modalities or mdata.mod)
    kinds = dict(kinds or {})
    _check_options(kinds, n_top_genes, target_sum, protein_normalization)
    out = {}
    for m in modalities:
        src = get_modality(mdata, m)
        if src.n_obs == 0 or src.n_vars == 0:
            raise ValueError(f"Modality {m!r} is empty ({src.n_obs} x {src.n_vars}).")
        kind = kinds.get(m) or infer_kind(m)
        counts = get_matrix(
            src, counts_layer, m, caller="preprocess", alternative=_ALREADY_NORMALISED.format(m=m)
        )
        select_hvg = kind in ("rna", "atac") and n_top_genes is not None
        select_hvg = select_hvg and src.n_vars > n_top_genes
        if select_hvg:
            check_n_cells(src, m, "highly variable feature selection", fix=f"; {_KEEP_ALL}")
        counts = (
            counts.astype(np.float32)
            if sparse.issparse(counts)
            else sparse.csr_matrix(counts, dtype=np.float32)
        )
        obs = src.obs.copy()
        obs.index = obs.index.astype(str)  # AnnData's cell names are strings
        adata = ad.AnnData(
            X=sparse.csr_matrix(counts, copy=True),
            obs=obs,
            var=src.var.copy(),
            obsm={k: _renamed_rows(v, obs.index) for k, v in src.obsm.items()},
        )
        adata.layers[COUNTS_LAYER] = counts.copy()
        if select_hvg:
            adata = _highly_variable(adata, n_top_genes, m)
        normalization = protein_normalization if kind == "adt" else "log1p"
        if normalization == "clr":
            adata.X = clr(adata.layers[COUNTS_LAYER])
        else:
            sc.pp.normalize_total(adata, target_sum=target_sum)
            sc.pp.log1p(adata)
            adata.uns.pop("log1p", None)
        adata.uns[PREPROCESS_UNS_KEY] = {
            "kind": kind,
            "normalization": normalization,
            "scale": PREPROCESS_SCALE[normalization],
            "target_sum": "median" if target_sum is None else float(target_sum),
            "n_top_genes": -1 if n_top_genes is None else int(n_top_genes),
        }
        out[m] = adata
        logger.info("Preprocessed %s (%s): %d cells x %d features", m, kind, *adata.shape)
    return new_mudata(out)
