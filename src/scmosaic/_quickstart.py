"""The quick-start job: integrate RNA with ADT on the bundled Hao 2021 subset."""

from __future__ import annotations

import json
import logging
import time
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._keys import LATENT_OBSM_KEY
from .workflow import PACKAGED_TABLE, InputError, WorkflowOptions
from .workflow._write import cannot_write, refuse_existing, replace_on_success

if TYPE_CHECKING:
    from .workflow import Integrated

logger = logging.getLogger(__name__)

_LABELS_KEY = "celltype"
OUTPUT_FILES = ("umap.png", "metrics.json", "integrated.h5mu")
"""What :func:`run_quickstart` writes into its folder."""


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


def _output_paths(out_dir: str | PathLike[str], overwrite: bool) -> dict[str, Path]:
    """The output files in ``out_dir``, checked before any work."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file; give a folder name")
    paths = {name: out / name for name in OUTPUT_FILES}
    refuse_existing(list(paths.values()), overwrite)
    return paths


def run_quickstart(
    out_dir: str | PathLike[str] = "scmosaic_quickstart",
    options: WorkflowOptions | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Integrate the bundled Hao subset with the pairing hidden and report its accuracy.

    Steps: hide the pairing of the 800 paired cells (:func:`scmosaic.datasets.hide_pairing`,
    seeded with ``options.seed``), run the workflow (:func:`scmosaic.workflow.integrate`:
    link ADTs to genes, preprocess, train SCMODAL), then compute label-transfer accuracy
    (1-NN, both directions) and symmetric FOSCTTM and write ``umap.png`` (joint embedding
    by modality and by cell type), ``metrics.json`` and the integrated ``integrated.h5mu``
    to ``out_dir``. The three files are written to temporary paths and moved into place
    once all are written, so a failed run leaves none of them.

    Parameters
    ----------
    out_dir
        Output folder (created).
    options
        The workflow's options (default: the packaged table's links beside CCA scores,
        the default preset).
    overwrite
        Replace the output files if ``out_dir`` already holds any of them; by default the
        run refuses to start.

    Returns
    -------
    The metrics written to ``metrics.json``.

    Raises
    ------
    InputError
        ``out_dir`` is a file, holds an output file and ``overwrite`` is ``False``, or an
        output cannot be written.
    """
    paths = _output_paths(out_dir, overwrite)
    # the heavy steps (scvi-tools, torch) load only once the outputs are known to be free
    import mudata

    from . import datasets
    from .workflow import integrate

    options = options or WorkflowOptions(table=PACKAGED_TABLE)
    start = time.perf_counter()
    with mudata.set_options(pull_on_update=False):
        logger.info("Hiding the pairing of the bundled Hao 2021 subset (seed %d)", options.seed)
        hidden = datasets.hide_pairing(datasets.hao2021_pbmc_cite(), seed=options.seed)
        result = integrate(hidden, options)
        iterations = result.model.n_iterations_trained_
        logger.info("Scoring label transfer and FOSCTTM against the hidden pairing")
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
        logger.info("Plotting the joint UMAP")
        target = paths["umap.png"]
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with replace_on_success(
                paths["umap.png"], paths["metrics.json"], paths["integrated.h5mu"]
            ) as (umap, metrics_json, h5mu):
                _plot_umap(result, umap, options.seed)
                target = paths["integrated.h5mu"]
                logger.info("Writing %s", target)
                result.mdata.write(h5mu)
                target = paths["metrics.json"]
                metrics_json.write_text(json.dumps(summary, indent=2))
        except OSError as err:
            raise cannot_write(target, err) from err
    return summary
