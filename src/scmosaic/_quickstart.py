"""The quick-start job: integrate RNA with ADT on the bundled Hao 2021 subset."""

from __future__ import annotations

import json
import logging
import time
from os import PathLike
from pathlib import Path
from typing import Any

from ._keys import LATENT_OBSM_KEY
from .workflow import PACKAGED_TABLE, Integrated, WorkflowOptions, integrate

logger = logging.getLogger(__name__)

_LABELS_KEY = "celltype"


def _metrics(result: Integrated) -> dict[str, Any]:
    """Label transfer (1-NN, both directions) and FOSCTTM against the hidden pairing."""
    from . import datasets, metrics

    rna, adt = result.mdata["rna"], result.mdata["adt"]
    latent = result.latent
    order = datasets.pairing_order(result.mdata, "rna", "adt")
    accuracy = metrics.label_transfer_accuracy(
        latent["rna"],
        rna.obs[_LABELS_KEY].to_numpy(),
        latent["adt"],
        adt.obs[_LABELS_KEY].to_numpy(),
    )
    return {
        "label_transfer_adt_to_rna": accuracy["b_to_a"],
        "label_transfer_rna_to_adt": accuracy["a_to_b"],
        "label_transfer_mean": accuracy["mean"],
        "label_transfer_macro_f1": accuracy["macro_f1"],
        "foscttm_symmetric_euclidean": metrics.foscttm(latent["rna"], latent["adt"][order]),
        "foscttm_maxfuse": metrics.foscttm_maxfuse(latent["rna"], latent["adt"][order]),
    }


def _plot_umap(result: Integrated, path: Path, seed: int) -> None:
    """UMAP of the joint embedding, coloured by modality and by cell type."""
    import anndata as ad
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    rna, adt = result.mdata["rna"], result.mdata["adt"]
    joint = ad.concat({"RNA": rna, "ADT": adt}, label="modality", index_unique="-")
    sc.pp.neighbors(joint, use_rep=LATENT_OBSM_KEY, random_state=seed)
    sc.tl.umap(joint, random_state=seed)
    fig = sc.pl.umap(joint, color=["modality", _LABELS_KEY], show=False, return_fig=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def run_quickstart(
    out_dir: str | PathLike[str] = "scmosaic_quickstart", options: WorkflowOptions | None = None
) -> dict[str, Any]:
    """Integrate the bundled Hao subset with the pairing hidden and report its accuracy.

    Steps: hide the pairing of the 800 paired cells (:func:`scmosaic.datasets.hide_pairing`,
    seeded with ``options.seed``), run the workflow (:func:`scmosaic.workflow.integrate`:
    link ADTs to genes, preprocess, train SCMODAL), then compute label-transfer accuracy
    (1-NN, both directions) and symmetric FOSCTTM and write ``umap.png`` (joint embedding
    by modality and by cell type), ``metrics.json`` and the integrated ``integrated.h5mu``
    to ``out_dir``.

    Parameters
    ----------
    out_dir
        Output folder (created).
    options
        The workflow's options (default: packaged table links, the default preset).

    Returns
    -------
    The metrics written to ``metrics.json``.
    """
    import mudata

    from . import datasets

    options = options or WorkflowOptions(table=PACKAGED_TABLE)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with mudata.set_options(pull_on_update=False):
        hidden = datasets.hide_pairing(datasets.hao2021_pbmc_cite(), seed=options.seed)
        result = integrate(hidden, options)
        iterations = result.model.n_iterations_trained_
        summary = {
            "n_cells": {m: result.mdata[m].n_obs for m in result.linked.modalities},
            "n_linked_adts": result.linked.info.get("n_matched_features"),
            "iterations": iterations,
            "preset": options.preset,
            **_metrics(result),
            "train_seconds": result.train_seconds,
            "seconds_per_iteration": result.train_seconds / max(iterations, 1),
            "total_seconds": time.perf_counter() - start,
        }
        _plot_umap(result, out / "umap.png", options.seed)
        result.mdata.write(out / "integrated.h5mu")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary
