"""Linked features: columns that measure the same thing in two modalities."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from mudata import MuData
from scipy import sparse

from .._keys import linked_obsm_key
from .._stats import feature_mean_std, zscore
from ._adt_table import PACKAGED_TABLES, detect_species, load_adt_gene_table, match_proteins
from ._docs import shared_docs
from ._embedding import pca_embedding
from ._group_sums import group_sum_selector
from ._inputs import (
    check_n_cells,
    check_number,
    get_matrix,
    row_chunks,
    to_memory,
    two_modalities,
)
from ._neighbors import KnnMethod, averaging_operator, check_knn_method

logger = logging.getLogger(__name__)

# link_features warns when fewer than this fraction of the (non-ignored) proteins link
MIN_LINKED_FRACTION = 0.5


def _gene_positions(names: pd.Index) -> dict[str, int]:
    """Case-insensitive lookup of feature positions; exact spelling wins on collisions."""
    positions: dict[str, int] = {}
    for i, name in enumerate(names):
        positions.setdefault(str(name).lower(), i)
    for i, name in enumerate(names):
        positions[str(name)] = i
    return positions


def _packaged_species(species: str, genes: pd.Index, mod_b: str) -> str:
    """The packaged table's species: ``species``, or detected from ``genes`` for ``"auto"``."""
    if species != "auto":
        return species
    detected = detect_species(genes)
    if detected is None:
        logger.info(
            "Gene names of %r show no clear species (upper case like CD4 for human, title case "
            "like Cd4 for mouse): using the packaged human ADT table; pass species='mouse' "
            "or a table to change it.",
            mod_b,
        )
        return "human"
    logger.info(
        "Gene names of %r look %s (%s case): using the packaged %s ADT table (species=%r "
        "chooses another).",
        mod_b,
        detected,
        "upper" if detected == "human" else "title",
        detected,
        "mouse" if detected == "human" else "human",
    )
    return detected


def _warn_if_few_link(report: pd.DataFrame, mod_a: str, mod_b: str, table_name: str) -> None:
    """Warn when fewer than half of the panel's (non-ignored) proteins are in the table.

    Proteins in the table whose genes are absent from ``mod_b`` (e.g. filtered out) do not
    count against it: that is the data's choice, not a wrong table or species.
    """
    panel = int((report["status"] != "ignored").sum())
    matched = int(report["status"].isin(["linked", "gene_not_in_data"]).sum())
    if panel and matched < MIN_LINKED_FRACTION * panel:
        warnings.warn(
            f"Only {matched} of the {panel} proteins of {mod_a!r} are in {table_name} "
            f"({int((report['status'] == 'linked').sum())} link to a gene of {mod_b!r}): the "
            "alignment has little to anchor on. Check the species (species='human' or "
            "'mouse') or pass a table for this panel; the returned report gives each "
            "protein's status.",
            UserWarning,
            stacklevel=3,
        )


def _table_pairs(
    proteins: pd.Index, genes: pd.Index, table, multi_gene: str, species: str = "human"
) -> tuple[list[tuple[list[int], list[int], str]], pd.DataFrame]:
    matches = match_proteins(list(proteins), load_adt_gene_table(table, species=species))
    lookup = _gene_positions(genes)
    columns, found_col, status_col = [], [], []
    for i, row in enumerate(matches.itertuples(index=False)):
        present = [g for g in row.genes if g in lookup or g.lower() in lookup]
        found_col.append(tuple(present))
        if row.status != "linked":
            status_col.append(row.status)
            continue
        if not present:
            status_col.append("gene_not_in_data")
            continue
        status_col.append("linked")
        idx = [lookup.get(g, lookup.get(g.lower())) for g in present]
        if multi_gene == "sum":
            columns.append(([i], idx, f"{proteins[i]}:{'/'.join(present)}"))
        else:
            columns += [([i], [j], f"{proteins[i]}:{genes[j]}") for j in idx]
    report = matches.assign(genes_in_data=found_col, status=status_col)
    return columns, report


def _name_pairs(names_a: pd.Index, names_b: pd.Index) -> tuple[list, pd.DataFrame]:
    lookup = _gene_positions(names_b)
    columns, rows = [], []
    for i, name in enumerate(names_a):
        j = lookup.get(str(name), lookup.get(str(name).lower()))
        rows.append((name, "linked" if j is not None else "not_in_other"))
        if j is not None:
            columns.append(([i], [j], f"{name}:{names_b[j]}"))
    return columns, pd.DataFrame(rows, columns=["feature", "status"])


def _sum_columns(counts, groups: list[list[int]]) -> np.ndarray:
    """Dense (cells x len(groups)) matrix, column k the sum of the count columns groups[k].

    A backed ``counts`` is read in chunks of rows.
    """
    members = [j for g in groups for j in g]
    group_of = [k for k, g in enumerate(groups) for _ in g]
    selector = group_sum_selector(members, group_of, counts.shape[1], len(groups), np.float64)
    blocks = []
    for chunk in row_chunks(counts):
        out = chunk @ selector
        blocks.append(np.asarray(out.toarray() if sparse.issparse(out) else out, np.float64))
    return blocks[0] if len(blocks) == 1 else np.vstack(blocks)


def _library_sizes(counts) -> np.ndarray:
    """Total count of each cell (float64), a backed ``counts`` read in chunks of rows."""
    sums = [np.asarray(chunk.sum(1), dtype=np.float64).ravel() for chunk in row_chunks(counts)]
    return sums[0] if len(sums) == 1 else np.concatenate(sums)


def _log1p_to_target(block: np.ndarray, library: np.ndarray, target: float) -> np.ndarray:
    """``log1p`` of each row scaled by ``target / library`` (rows of library 0 become 0)."""
    scale = np.divide(
        target, library, out=np.zeros_like(library, dtype=np.float64), where=library > 0
    )
    return np.log1p(block * scale[:, None])


def _normalized_blocks(
    counts: tuple, blocks: tuple[np.ndarray, np.ndarray], normalization: str, min_target_sum: float
) -> tuple[np.ndarray, np.ndarray]:
    """The two linked blocks normalised as ``normalization`` says, then log1p'd."""
    if normalization == "reference":
        target = max(float(np.median(blocks[1].sum(1))), min_target_sum)
        return tuple(_log1p_to_target(b, b.sum(1), target) for b in blocks)
    if normalization == "library":
        return tuple(
            _log1p_to_target(b, _library_sizes(c), 1e4) for c, b in zip(counts, blocks, strict=True)
        )
    raise AssertionError(normalization)  # checked by _check_link_options


_SMOOTHING_PCS = 30
_SMOOTHING_CLIP = 10.0  # as sc.pp.scale(max_value=10)


def _smoothed(
    block: np.ndarray, counts, n_neighbors: int, knn_method: KnnMethod, modality: str
) -> np.ndarray:
    """``block`` averaged over each cell's nearest cells in a PCA of all the counts."""
    if counts.shape[1] < 2:
        raise ValueError(
            f"Modality {modality!r} has {counts.shape[1]} feature(s): the smoothing's PCA needs "
            f"at least 2; pass smooth_neighbors=0, or smooth_modalities without {modality!r}."
        )
    # CSR whatever the input: the PCA then stays sparse, memory O(nnz)
    counts = sparse.csr_matrix(to_memory(counts))
    pcs = pca_embedding(counts, _SMOOTHING_PCS, clip=_SMOOTHING_CLIP, name=f"modality {modality!r}")
    return averaging_operator(pcs, n_neighbors, knn_method) @ block


def _smoothed_modalities(
    value: str | Sequence[str] | None, mod_a: str, mod_b: str, by: str
) -> set[str]:
    """The modalities ``smooth_modalities`` names, checked by name.

    ``None``: the gene side only with a protein table (protein counts are dense; averaging
    them blurs the small populations the proteins define), both sides with shared names.
    """
    if value is None:
        return {mod_b} if by == "table" else {mod_a, mod_b}
    names = [value] if isinstance(value, str) else list(value)
    unknown = [m for m in names if m not in (mod_a, mod_b)]
    if unknown:
        raise ValueError(
            f"`smooth_modalities` names {unknown!r}, not one of the linked modalities "
            f"{mod_a!r} and {mod_b!r}."
        )
    return set(names)


def _check_link_options(
    by: str,
    normalization: str,
    smooth_neighbors: int,
    multi_gene: str,
    min_target_sum: float,
    clip: float | None,
    knn_method: str,
    species: str = "auto",
) -> None:
    """Every option of :func:`link_features` checked before any data are read."""
    choices = {
        "by": (by, ("table", "names")),
        "species": (species, ("auto", *PACKAGED_TABLES)),
        "normalization": (normalization, ("reference", "library")),
        "multi_gene": (multi_gene, ("pairs", "sum")),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
    if isinstance(smooth_neighbors, bool) or not isinstance(smooth_neighbors, int | np.integer):
        raise ValueError(f"`smooth_neighbors` must be an int >= 0, got {smooth_neighbors!r}.")
    if smooth_neighbors < 0:
        raise ValueError(
            f"`smooth_neighbors` must be >= 0 (0 or 1: no smoothing), got {smooth_neighbors}."
        )
    check_number(min_target_sum, "min_target_sum")
    check_number(clip, "clip", allow_none=True)  # 0: no clip, as zscore
    check_knn_method(knn_method)


@shared_docs
def link_features(
    mdata: MuData,
    mod_a: str = "adt",
    mod_b: str = "rna",
    by: Literal["table", "names"] = "table",
    table=None,
    counts_layer: str | None = None,
    gene_symbols: str | None = None,
    normalization: Literal["reference", "library"] = "library",
    smooth_neighbors: int = 15,
    smooth_modalities: str | Sequence[str] | None = None,
    multi_gene: Literal["pairs", "sum"] = "pairs",
    min_target_sum: float = 20.0,
    clip: float | None = 10.0,
    key_a: str | None = None,
    key_b: str | None = None,
    knn_method: KnnMethod = "auto",
    species: Literal["auto", "human", "mouse"] = "auto",
) -> pd.DataFrame:
    """Build linked-feature matrices of two modalities from raw counts.

    Writes two DataFrames of equal width (one column per linked pair, named
    ``"<feature_a>:<feature_b>"``, rows = cells): ``mdata.mod[mod_a].obsm[key_a]`` and
    ``mdata.mod[mod_b].obsm[key_b]`` (default keys ``"linked_<mod_b>"`` and
    ``"linked_<mod_a>"``, which :meth:`~scmosaic.SCMODAL.setup_mudata` uses for a link
    ``(mod_a, mod_b)``). Nothing else in ``mdata`` changes. Run it on the raw data, before
    highly variable gene selection drops linked genes: values that look log-normalised
    already raise a ``ValueError``, other non-integer values (e.g. ambient-corrected counts)
    a ``UserWarning``. A backed modality (``mudata.read_h5mu(path, backed=True)``) is read
    in chunks of rows; the smoothing's PCA reads all its counts into memory.

    Parameters
    ----------
    mdata
        MuData with raw counts.
    mod_a
        With ``by="table"`` the protein (ADT) modality; with ``by="names"`` any modality.
    mod_b
        With ``by="table"`` the gene (RNA) modality.
    by
        ``"table"``: a protein -> gene table (multi-gene entries such as ``CD3D/CD3E``,
        ``Ignore`` rows; names matched case-, punctuation-, clone-suffix- and
        ``_TotalSeqB``-insensitively). ``"names"``: features with the same name in both
        modalities (e.g. RNA genes vs ATAC gene activity).
    table
        For ``by="table"``: ``None`` (scmosaic's packaged ADT table of ``species``), a CSV
        path, a DataFrame or a ``{protein: "GENE1/GENE2"}`` dict (see
        :func:`load_adt_gene_table`). A ``UserWarning`` says when fewer than half of the
        proteins are in the packaged table (a wrong species, or a panel it does not know).
    counts_layer
        Layer with raw counts in both modalities (default ``.X``).
    gene_symbols
        Column of ``mdata.mod[mod_b].var`` with gene symbols, if ``var_names`` are not.
    normalization
        ``"reference"``: both blocks normalised to one target sum,
        ``max(median library size of mod_b's linked block, min_target_sum)``, then log1p
        (as published). ``"library"`` (default): each modality normalised by its full
        library size (target 1e4), then log1p; less noisy when few features link (minibatch
        anchor precision on the Hao subset 0.64 -> 0.76). Both are then z-scored per column
        and clipped.
    smooth_neighbors
        Average each cell's linked features over itself and its nearest neighbours in its
        own modality (kNN of a PCA of all its features, ``smooth_neighbors`` cells in all)
        before z-scoring; 0 or 1 disables it (the reference does not smooth).
    smooth_modalities
        The modalities whose linked features are smoothed. ``None`` (default): with
        ``by="table"`` the gene side ``mod_b`` only, with ``by="names"`` both. Smoothing
        the protein side too lowered SLN's fine-label transfer (0.744 against 0.763) and
        Hao's scores, and helped PBMC 10k a little (user guide, "Fine states across
        modalities"); pass ``(mod_a, mod_b)`` for both.
    multi_gene
        ``"pairs"``: one column per protein-gene pair (reference); ``"sum"``: one column
        per protein with the listed genes' counts summed.
    min_target_sum
        Floor of the shared target sum of ``"reference"`` normalisation.
    clip
        Clip of the z-scored values (``None``: no clip).
    key_a, key_b
        ``.obsm`` keys to write.
    knn_method
        {knn_method}
        Used by the smoothing.
    species
        Which packaged table ``table=None`` uses: ``"human"``, ``"mouse"``, or ``"auto"``
        (default): detected from the case of ``mod_b``'s gene names
        (:func:`detect_species`; human when unclear), with a log message saying which.
        Not used when a ``table`` is given.

    Returns
    -------
    A report with one row per feature of ``mod_a``: its match and a ``status`` of
    ``"linked"``, ``"gene_not_in_data"``, ``"ignored"``, ``"unmatched"`` (table) or
    ``"not_in_other"`` (names). With the packaged table, ``report.attrs["species"]`` names
    the one used (``"human"`` or ``"mouse"``).

    Raises
    ------
    KeyError
        A modality, the counts layer or the ``gene_symbols`` column is missing.
    ValueError
        No feature links, a modality of fewer than two cells, counts that are all zero,
        negative, non-finite or log-normalised, or an invalid option.

    Examples
    --------
    >>> report = scmosaic.pp.link_features(mdata, "adt", "rna")
    >>> report["status"].value_counts()
    """
    two_modalities(mdata, (mod_a, mod_b), "link_features")
    _check_link_options(
        by, normalization, smooth_neighbors, multi_gene, min_target_sum, clip, knn_method, species
    )
    smoothed = _smoothed_modalities(smooth_modalities, mod_a, mod_b, by)
    adata_a, adata_b = mdata.mod[mod_a], mdata.mod[mod_b]
    for mod, adata in ((mod_a, adata_a), (mod_b, adata_b)):
        check_n_cells(adata, mod, "link_features")
    names_b = adata_b.var_names
    if gene_symbols is not None:
        if gene_symbols not in adata_b.var:
            raise KeyError(f"Column {gene_symbols!r} not in mdata.mod[{mod_b!r}].var.")
        names_b = pd.Index(adata_b.var[gene_symbols].astype(str))
    if by == "table":
        packaged = table is None
        species = _packaged_species(species, names_b, mod_b) if packaged else "human"
        columns, report = _table_pairs(adata_a.var_names, names_b, table, multi_gene, species)
        if packaged:  # a table of the user's may be partial on purpose (e.g. a CCA prior)
            report.attrs["species"] = species
            _warn_if_few_link(report, mod_a, mod_b, f"scmosaic's packaged {species} table")
    else:
        columns, report = _name_pairs(adata_a.var_names, names_b)
    status_counts = report["status"].value_counts().to_dict()
    if not columns:
        raise ValueError(
            f"No feature of {mod_a!r} links to a feature of {mod_b!r} (by={by!r}); "
            f"status counts: {status_counts}. Check the table and the feature names."
        )
    logger.info("Linked %s-%s: %d columns; %s", mod_a, mod_b, len(columns), status_counts)

    counts = tuple(
        get_matrix(adata, counts_layer, mod, caller="link_features", in_memory=False)
        for mod, adata in ((mod_a, adata_a), (mod_b, adata_b))
    )
    blocks = tuple(_sum_columns(c, [col[side] for col in columns]) for side, c in enumerate(counts))
    blocks = _normalized_blocks(counts, blocks, normalization, min_target_sum)
    if smooth_neighbors > 1:
        blocks = tuple(
            _smoothed(b, c, smooth_neighbors, knn_method, mod) if mod in smoothed else b
            for b, c, mod in zip(blocks, counts, (mod_a, mod_b), strict=True)
        )
    names = [c[2] for c in columns]
    keys = key_a or linked_obsm_key(mod_b), key_b or linked_obsm_key(mod_a)
    for adata, key, block in zip((adata_a, adata_b), keys, blocks, strict=True):
        z = zscore(block, *feature_mean_std(block), clip)
        adata.obsm[key] = pd.DataFrame(z.astype(np.float32), index=adata.obs_names, columns=names)
    return report
