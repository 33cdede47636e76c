"""Link step: linked features of the two modalities, from a table, shared names or CCA."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import pandas as pd
from mudata import MuData

from .._keys import CCA_OBSM_KEY, LINKED_CCA_OBSM_KEY, linked_obsm_key
from ._errors import InputError, as_input_error
from ._options import PACKAGED_TABLE, CcaInit, WorkflowOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Linked:
    """What the link step made.

    Parameters
    ----------
    modalities
        The two modalities, in the order of the options.
    spec
        The link to give :meth:`scmosaic.SCMODAL.setup_mudata` (``links=[spec]``): the two
        modalities, and the ``.obsm`` keys of their linked features where not the default.
    info
        The ``links`` entry of the run summary: source, linked modalities, number of linked
        features, status counts (table/names) or canonical correlations (CCA).
    report
        :func:`scmosaic.pp.link_features`' per-feature report (``None`` for CCA from labels).
    """

    modalities: tuple[str, str]
    spec: tuple[str, ...]
    info: dict[str, Any]
    report: pd.DataFrame | None = None


def _table_argument(table: Any) -> Any:
    """``table`` as :func:`scmosaic.pp.link_features` takes it (``None``: the packaged one)."""
    if isinstance(table, Mapping):
        return dict(table)
    if table is None or str(table) == PACKAGED_TABLE:
        return None
    return str(table) if isinstance(table, PathLike) else table


def _table_description(table: Any) -> Any:
    if isinstance(table, Mapping):
        return dict(table)
    return PACKAGED_TABLE if str(table) == PACKAGED_TABLE else str(table)


def _protein_and_gene(modalities: Sequence[str], options: WorkflowOptions) -> tuple[str, str]:
    """Which modality holds proteins (kind ``adt``) for a protein -> gene table."""
    found = {m: options.kind_of(m) for m in modalities}
    proteins = [m for m, k in found.items() if k == "adt"]
    if len(proteins) != 1:
        raise InputError(
            f"a protein -> gene table needs exactly one protein (adt) modality, got kinds "
            f"{found}; set the kinds with --kind NAME=adt / kinds={{NAME: 'adt'}}"
        )
    gene = next(m for m in modalities if m != proteins[0])
    return proteins[0], gene


def _cca_components(adatas: Sequence[Any], requested: int, n_pcs: int = 40) -> int:
    """``requested`` capped at the principal components each modality allows."""
    cap = min(min(n_pcs, a.n_obs - 1, a.n_vars - 1) for a in adatas)
    if cap < 1:
        raise InputError("too few cells or features for CCA linked features")
    if requested > cap:
        logger.info("CCA components lowered from %d to %d (data size)", requested, cap)
    return min(requested, cap)


def _feature_links(
    mdata: MuData,
    modalities: tuple[str, str],
    by: str,
    options: WorkflowOptions,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Table or name links with :func:`scmosaic.pp.link_features`; their summary entry.

    ``defaults``: arguments of ``link_features`` that ``options.link_kwargs`` may override.
    """
    from ..pp import link_features

    info: dict[str, Any] = {"source": by}
    if by == "table":
        first, second = _protein_and_gene(modalities, options)
        info["table"] = _table_description(options.table)
    else:
        first, second = modalities
    logger.info("Linking %s and %s by %s", first, second, by)
    with as_input_error(f"linking {first} and {second} by {by}"):
        report = link_features(
            mdata,
            first,
            second,
            by=by,
            table=_table_argument(options.table),
            counts_layer=options.layer,
            **{**(defaults or {}), **options.link_kwargs},
        )
    status = report["status"].value_counts()
    if "species" in report.attrs:  # the packaged table's, chosen from the gene names
        info["species"] = report.attrs["species"]
    info.update(
        by=by,
        modalities=[first, second],
        # columns of the linked-feature matrices (a multi-gene protein gives several)
        n_linked_features=int(mdata[first].obsm[linked_obsm_key(second)].shape[1]),
        # features of the first modality with a partner in the second
        n_matched_features=int(status.get("linked", 0)),
        status_counts={str(k): int(v) for k, v in status.items()},
        obsm_keys={first: linked_obsm_key(second), second: linked_obsm_key(first)},
    )
    return info, report


def _pivot_link_defaults(modalities: tuple[str, str], options: WorkflowOptions) -> dict[str, Any]:
    """``link_features`` defaults for table links that only choose CCA's first pivots
    (``links="cca"``): both sides smoothed, not the gene side alone.

    Smoothing the proteins too makes the mutual nearest pairs cleaner, which is all pivots
    need; it blurs small populations only where the links are also trained on (measured in
    the user guide, "Smoothing"; ``pp.cca_links``' ``init``).
    """
    if options.links != "cca" or options.link_prior != "table":
        return {}
    return {"smooth_modalities": _protein_and_gene(modalities, options)}


def _cca_links(
    mdata: MuData, modalities: tuple[str, str], options: WorkflowOptions, init: CcaInit
) -> dict:
    """CCA linked features with :func:`scmosaic.pp.cca_links`; their summary entry."""
    from ..pp import cca_links

    n_components = _cca_components([mdata[m] for m in modalities], options.n_cca_components)
    by_labels = init == "labels"
    logger.info("Learning CCA linked features (init=%s)", init)
    with as_input_error(f"CCA links of {modalities[0]} and {modalities[1]}"):
        cca = cca_links(
            mdata,
            modalities,
            init=init,
            n_components=n_components,
            labels_key=options.labels_key,
            layer=options.layer,
            key_added=CCA_OBSM_KEY,
            seed=options.seed,
        )
    return {
        "init": init,
        "labels_key": options.labels_key if by_labels else None,
        "n_linked_features": n_components,
        "correlations": cca["correlations"],
        "n_pivots": cca["n_pivots"],
        "obsm_keys": dict.fromkeys(modalities, CCA_OBSM_KEY),
    }


def block_weights(n_links: int, n_scores: int) -> tuple[float, float]:
    """Column weights of links and canonical scores side by side: each block then holds
    half of a cell's expected squared norm (``n_links + n_scores``, as for as many z-scored
    columns), so anchors weigh the two equally however many columns each has.

    Unweighted, 95 table links beside 10 scores (SLN) left the scores a tenth of the
    similarity, and fine states they separate were not matched better.
    """
    total = n_links + n_scores
    return (total / (2 * n_links)) ** 0.5, (total / (2 * n_scores)) ** 0.5


def _side_by_side(mdata: MuData, first: Mapping[str, str], second: Mapping[str, str]) -> int:
    """``.obsm[first[m]]`` and ``.obsm[second[m]]`` of each modality ``m``, weighted by
    :func:`block_weights`, as the columns of its ``.obsm[LINKED_CCA_OBSM_KEY]``; the number
    of columns."""
    for m in first:
        obsm = mdata[m].obsm
        links, scores = obsm[first[m]], obsm[second[m]]
        w_links, w_scores = block_weights(links.shape[1], scores.shape[1])
        obsm[LINKED_CCA_OBSM_KEY] = pd.concat([links * w_links, scores * w_scores], axis=1)
    return int(mdata[next(iter(first))].obsm[LINKED_CCA_OBSM_KEY].shape[1])


def link(mdata: MuData, options: WorkflowOptions) -> Linked:
    """Link step: write the linked features of the two modalities into ``mdata``.

    On the raw counts (``.X`` or ``options.layer``), so before preprocessing drops linked
    genes: :func:`scmosaic.pp.link_features` with a protein -> gene table (the protein side
    is the modality of kind ``adt``) or shared feature names, or
    :func:`scmosaic.pp.cca_links` (``links="cca"``), initialised from labels or from table
    links (name links without a table). With ``links="table+cca"`` / ``"names+cca"`` both
    run (CCA from the links), and the links and the canonical scores are also written side by
    side to ``.obsm["X_linked_cca"]`` of both modalities, the features of the one link, each
    block weighted to hold half of a cell's squared norm. Table links that only choose the
    CCA's first pivots (``links="cca"``) are smoothed on both sides unless
    ``options.link_kwargs`` names ``smooth_modalities`` (cleaner pivots; the default of
    :func:`scmosaic.pp.link_features`, the gene side alone, is for links trained on).

    Parameters
    ----------
    mdata
        MuData with raw counts; ``.obsm`` of the two modalities gets the linked features.
    options
        The run's options.

    Returns
    -------
    The link to register and its summary.

    Raises
    ------
    InputError
        Unknown modalities or kinds, or data that linking rejects.
    """
    modalities = options.pair(mdata.mod)
    prior = options.link_prior
    defaults = _pivot_link_defaults(modalities, options)
    info, report = (
        _feature_links(mdata, modalities, prior, options, defaults) if prior else ({}, None)
    )
    if options.links in ("table", "names"):
        return Linked(modalities, modalities, info, report)
    # "cca" from labels or links; "table+cca" / "names+cca" keep the links beside the scores
    cca = _cca_links(mdata, modalities, options, "links" if prior else "labels")
    summary = {"source": options.links, **({"prior": info} if report is not None else {}), **cca}
    key = CCA_OBSM_KEY
    if options.links != "cca":
        key = LINKED_CCA_OBSM_KEY
        n_features = _side_by_side(mdata, info["obsm_keys"], cca["obsm_keys"])
        summary.update(n_linked_features=n_features, obsm_keys=dict.fromkeys(modalities, key))
    return Linked(modalities, (*modalities, key, key), summary, report)
