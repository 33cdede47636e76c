"""Gene activity: per-cell sums of the counts of the peaks annotated to each gene."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._keys import GENE_ACTIVITY_UNS_KEY
from ._group_sums import group_sum_selector
from ._inputs import get_matrix

logger = logging.getLogger(__name__)

_PEAK_PATTERN = re.compile(r"^(.+?)[:_-](\d+)[_-](\d+)$")


def _peak_key(name: str) -> str:
    """``chr1:100-200``, ``chr1-100-200`` and ``chr1_100_200`` all become ``chr1:100-200``."""
    match = _PEAK_PATTERN.match(str(name).strip())
    return f"{match[1]}:{match[2]}-{match[3]}" if match else str(name).strip()


def _annotation_table(
    atac: ad.AnnData, annotation: pd.DataFrame | None, gene_key: str, peak_key: str
) -> pd.DataFrame:
    """The annotation as a DataFrame with ``gene`` and ``peak`` columns, one row per pair."""
    if annotation is None:
        nested = atac.uns.get("atac")
        table = nested.get("peak_annotation") if isinstance(nested, dict) else None
        if table is None:
            raise KeyError(
                "No peak annotation: pass annotation= (a DataFrame with columns "
                f"{gene_key!r} and {peak_key!r}) or store it in atac.uns['atac']"
                "['peak_annotation'] (as muon.read_10x_h5 does); atac.uns has "
                f"{sorted(atac.uns)}."
            )
        annotation = table
    if not isinstance(annotation, pd.DataFrame):
        raise TypeError(f"annotation must be a pandas DataFrame, got {type(annotation).__name__}.")
    table = annotation
    if gene_key not in table.columns and table.index.name == gene_key:
        table = table.reset_index()  # muon stores the genes as the index
    missing = [c for c in (gene_key, peak_key) if c not in table.columns]
    if missing:
        raise KeyError(
            f"The peak annotation lacks column(s) {missing}; it has columns "
            f"{list(table.columns)} and index {table.index.name!r}. Pass gene_key/peak_key."
        )
    return table


def _explode_genes(table: pd.DataFrame, gene_key: str, distance_key: str | None) -> pd.DataFrame:
    """One row per peak-gene pair: ``;``-separated genes (and distances) are split."""
    table = table[table[gene_key].notna()].reset_index(drop=True)
    genes = table[gene_key].astype(str).str.split(";")
    rows, gene_col, distance_col = [], [], []
    distances = table[distance_key].astype(str).str.split(";") if distance_key else None
    for i, names in enumerate(genes):
        dist = distances[i] if distances is not None else None
        for j, name in enumerate(names):
            name = name.strip()
            if not name:
                continue
            rows.append(i)
            gene_col.append(name)
            if dist is not None:
                distance_col.append(dist[j] if len(dist) == len(names) else dist[0])
    out = table.iloc[rows].reset_index(drop=True)
    out[gene_key] = gene_col
    if distance_key is not None:
        out[distance_key] = pd.to_numeric(pd.Series(distance_col, dtype=object), errors="coerce")
    return out


def _filtered_pairs(
    table: pd.DataFrame,
    gene_key: str,
    distance_key: str,
    peak_type_key: str,
    peak_types: Sequence[str] | None,
    max_distance: float | None,
    multi_gene: str,
) -> pd.DataFrame:
    """One row per peak-gene pair, restricted to ``peak_types`` and ``max_distance``."""
    needs_distance = max_distance is not None or multi_gene == "nearest"
    if needs_distance and distance_key not in table.columns:
        raise KeyError(
            f"max_distance and multi_gene='nearest' need the distance column {distance_key!r}; "
            f"the annotation has {list(table.columns)}."
        )
    if peak_types is not None and peak_type_key not in table.columns:
        raise KeyError(
            f"peak_types needs the column {peak_type_key!r}; the annotation has "
            f"{list(table.columns)}."
        )
    has_distance = distance_key in table.columns
    table = _explode_genes(table, gene_key, distance_key if has_distance else None)
    if peak_types is not None:
        table = table[table[peak_type_key].astype(str).isin([str(t) for t in peak_types])]
    if max_distance is not None:
        table = table[table[distance_key].abs() <= max_distance]
    return table


def _with_peak_index(
    table: pd.DataFrame, var_names: pd.Index, peak_key: str
) -> tuple[pd.DataFrame, int]:
    """Pairs whose peak is in ``var_names``, with its position ``_peak_index``; the number
    of distinct annotated peaks before the match."""
    positions = {name: i for i, name in enumerate(var_names.astype(str))}
    normalised = {}
    for i, name in enumerate(var_names.astype(str)):
        normalised.setdefault(_peak_key(name), i)
    peaks = table[peak_key].astype(str)
    index = [positions.get(p, normalised.get(_peak_key(p), -1)) for p in peaks]
    table = table.assign(_peak_index=np.asarray(index, dtype=np.int64))
    matched = table[table["_peak_index"] >= 0]
    if matched.empty:
        raise ValueError(
            f"No annotated peak (after filtering) is in atac.var_names: e.g. annotation "
            f"{list(peaks.unique()[:3])} vs data {list(var_names[:3])}."
        )
    return matched, int(peaks.nunique())


def gene_activity(
    atac: ad.AnnData,
    annotation: pd.DataFrame | None = None,
    *,
    layer: str | None = None,
    max_distance: float | None = None,
    peak_types: Sequence[str] | None = None,
    multi_gene: Literal["all", "nearest"] = "all",
    gene_key: str = "gene",
    peak_key: str = "peak",
    distance_key: str = "distance",
    peak_type_key: str = "peak_type",
) -> ad.AnnData:
    """Gene activity of ATAC cells: the summed counts of the peaks annotated to each gene.

    For every gene of the peak annotation, the counts of all its peaks are added up per
    cell (``X @ M`` with ``M`` a sparse 0/1 peak-by-gene matrix; sparse input stays
    sparse). Use the result like an RNA modality measured in the ATAC cells, e.g. to link
    RNA genes and ATAC cells by shared names (:func:`scmosaic.pp.link_features` with
    ``by="names"``, or :func:`scmosaic.pp.diagonal_cca`).

    The annotation has one row per peak-gene pair (as 10x Cell Ranger ARC writes it and
    ``muon`` stores it in ``atac.uns["atac"]["peak_annotation"]``, genes as the index);
    several genes in one row separated by ``;`` are split (with their ``;``-separated
    distances). Peak names are matched to ``atac.var_names`` as written or after unifying
    the separators (``chr1:100-200``, ``chr1-100-200`` and ``chr1_100_200`` are the same
    peak). Annotated peaks absent from the data are ignored; genes left without a peak are
    dropped.

    Parameters
    ----------
    atac
        Cells x peaks, raw (or binarised) counts. Never modified.
    annotation
        Peak-gene pairs with columns ``gene_key`` (or the index, if so named) and
        ``peak_key``, optionally ``distance_key`` and ``peak_type_key``. Default:
        ``atac.uns["atac"]["peak_annotation"]``.
    layer
        Layer with the counts (default ``.X``).
    max_distance
        Keep only peaks at most this far from the gene (``|distance|``, in base pairs,
        usually to the transcription start site; 0 for peaks overlapping the promoter or
        gene). Needs the ``distance_key`` column. ``None``: all annotated peaks.
    peak_types
        Keep only pairs whose ``peak_type_key`` column is one of these, e.g.
        ``["promoter"]``. ``None``: all.
    multi_gene
        A peak annotated to several genes counts for each of them (``"all"``) or only for
        the nearest (``"nearest"``: the smallest ``|distance|``; ties keep every tied gene).
    gene_key, peak_key, distance_key, peak_type_key
        Column names of the annotation.

    Returns
    -------
    A new AnnData, cells x genes: ``.X`` the summed counts (CSR float32 for sparse input,
    dense float32 otherwise), ``.obs`` a copy of ``atac.obs``, ``.var["n_peaks"]`` the
    number of peaks summed per gene (genes in the order of their first appearance in the
    annotation) and ``.uns["scmosaic_gene_activity"]`` the parameters.

    Raises
    ------
    KeyError
        No annotation, a missing annotation column or a missing layer.
    ValueError
        No annotated peak is in ``atac.var_names`` after filtering, or invalid counts
        (negative, non-finite, all zero, or log-normalised: gene activity sums raw counts).

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> atac = ad.AnnData(
    ...     np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]]),
    ...     var=pd.DataFrame(index=["chr1:10-20", "chr1:30-40", "chr2:5-9"]),
    ... )
    >>> annotation = pd.DataFrame(
    ...     {"gene": ["A", "A", "B"], "peak": ["chr1:10-20", "chr1:30-40", "chr2:5-9"]}
    ... )
    >>> activity = gene_activity(atac, annotation)
    >>> activity.to_df().to_numpy().tolist()
    [[3.0, 0.0], [1.0, 3.0]]
    """
    if multi_gene not in ("all", "nearest"):
        raise ValueError(f"multi_gene must be 'all' or 'nearest', got {multi_gene!r}.")
    counts = get_matrix(atac, layer, "atac", caller="gene_activity", layer_arg="layer")
    table = _annotation_table(atac, annotation, gene_key, peak_key)
    table = _filtered_pairs(
        table, gene_key, distance_key, peak_type_key, peak_types, max_distance, multi_gene
    )
    table, n_annotated = _with_peak_index(table, atac.var_names, peak_key)
    if multi_gene == "nearest":
        distance = table[distance_key].abs()
        nearest = distance.groupby(table["_peak_index"]).transform("min")
        table = table[distance == nearest]
    table = table.drop_duplicates(subset=[gene_key, "_peak_index"])

    genes = pd.Index(pd.unique(table[gene_key].astype(str)), name=None)
    gene_index = genes.get_indexer(table[gene_key].astype(str))
    selector = group_sum_selector(
        table["_peak_index"].to_numpy(), gene_index, atac.n_vars, len(genes), np.float32
    )
    if sparse.issparse(counts):
        x = sparse.csr_matrix(sparse.csr_matrix(counts, dtype=np.float32) @ selector)
    else:
        x = np.asarray(np.asarray(counts, dtype=np.float32) @ selector, dtype=np.float32)
    n_peaks = np.asarray(selector.sum(0), dtype=np.int64).ravel()
    logger.info(
        "Gene activity: %d genes from %d of %d annotated peaks.",
        len(genes), int(table["_peak_index"].nunique()), n_annotated,
    )  # fmt: skip
    out = ad.AnnData(
        X=x,
        obs=atac.obs.copy(),
        var=pd.DataFrame({"n_peaks": n_peaks}, index=genes),
    )
    out.uns[GENE_ACTIVITY_UNS_KEY] = {
        "layer": "X" if layer is None else layer,
        "max_distance": -1.0 if max_distance is None else float(max_distance),
        "peak_types": [] if peak_types is None else [str(t) for t in peak_types],
        "multi_gene": multi_gene,
        "n_peaks_used": int(table["_peak_index"].nunique()),
    }
    return out
