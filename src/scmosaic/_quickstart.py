"""The quick-start job: integrate RNA with ADT on the bundled Hao 2021 subset."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def run_quickstart(
    out_dir: str | Path = "scmosaic_quickstart",
    max_steps: int | None = None,
    preset: str = "default",
    seed: int = 0,
    threads: int | None = None,
) -> dict:
    """Integrate the bundled Hao subset with the pairing hidden and report its accuracy.

    Steps: hide the pairing of the 800 paired cells (:func:`scmosaic.datasets.hide_pairing`),
    link ADTs to genes with the packaged table, preprocess, train SCMODAL, then print
    label-transfer accuracy (1-NN, both directions) and symmetric FOSCTTM and write
    ``umap.png`` (joint embedding by modality and by cell type), ``metrics.json`` and the
    integrated ``integrated.h5mu`` to ``out_dir``.

    Parameters
    ----------
    out_dir
        Output folder (created).
    max_steps
        Training iterations (default: the preset's).
    preset
        Model preset.
    seed
        Seed of the pairing shuffle, weight initialisation and sampling.
    threads
        Torch CPU threads (default: torch's choice).

    Returns
    -------
    The metrics written to ``metrics.json``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import anndata as ad
    import mudata
    import scanpy as sc
    import scvi

    import scmosaic

    mudata.set_options(pull_on_update=False)
    if threads is not None:
        scvi.settings.num_threads = threads
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    mdata = scmosaic.datasets.hide_pairing(scmosaic.datasets.hao2021_pbmc_cite(), seed=seed)
    report = scmosaic.pp.link_features(mdata, "adt", "rna")
    n_linked = int((report["status"] == "linked").sum())
    mdata = scmosaic.pp.preprocess(mdata)
    scmosaic.SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=[("rna", "adt")])
    model = scmosaic.SCMODAL(mdata, preset=preset, seed=seed)
    train_start = time.perf_counter()
    model.train(max_steps=max_steps)
    train_seconds = time.perf_counter() - train_start
    latent = model.get_latent_representation(write_obsm=True)

    rna, adt = mdata["rna"], mdata["adt"]
    partner = {cell: i for i, cell in enumerate(adt.obs["cell_id"])}
    order = np.array([partner[cell] for cell in rna.obs["cell_id"]])
    accuracy = scmosaic.metrics.label_transfer_accuracy(
        latent["rna"], rna.obs["celltype"].to_numpy(), latent["adt"], adt.obs["celltype"].to_numpy()
    )
    metrics = {
        "n_cells": {"rna": rna.n_obs, "adt": adt.n_obs},
        "n_linked_adts": n_linked,
        "iterations": model.n_iterations_trained_,
        "preset": preset,
        "label_transfer_adt_to_rna": accuracy["b_to_a"],
        "label_transfer_rna_to_adt": accuracy["a_to_b"],
        "label_transfer_mean": accuracy["mean"],
        "label_transfer_macro_f1": accuracy["macro_f1"],
        "foscttm_symmetric_euclidean": scmosaic.metrics.foscttm(
            latent["rna"], latent["adt"][order]
        ),
        "foscttm_maxfuse": scmosaic.metrics.foscttm_maxfuse(latent["rna"], latent["adt"][order]),
        "train_seconds": train_seconds,
        "seconds_per_iteration": train_seconds / max(model.n_iterations_trained_, 1),
        "total_seconds": time.perf_counter() - start,
    }

    joint = ad.concat({"RNA": rna, "ADT": adt}, label="modality", index_unique="-")
    sc.pp.neighbors(joint, use_rep="X_scmodal", random_state=seed)
    sc.tl.umap(joint, random_state=seed)
    fig = sc.pl.umap(joint, color=["modality", "celltype"], show=False, return_fig=True)
    fig.savefig(out / "umap.png", dpi=120, bbox_inches="tight")
    mdata.write(out / "integrated.h5mu")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
