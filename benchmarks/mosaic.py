"""Mosaic integration (issue 13): batches within a modality, and paired cells where they exist.

Data: MIDAS's own quick-start file, the Hao 2021 PBMC CITE-seq mosaic
(``../shared/data/midas_hao2021_pbmc_mosaic/quickstart_pbmc_mosaic.h5mu``, also bundled in
the ``scmidas`` wheel): ``p1_0`` RNA only, ``p2_0`` ADT only, ``p3_0`` and ``p4_0`` RNA+ADT
(800 paired cells with the same ``obs_name`` in both modalities); 400 cells per batch,
500 genes, 224 ADTs, raw counts, 8 level-1 cell types (``celltype``).

Every run is two fresh single-threaded processes: the method (training, codes written to
``results/mosaic/embeddings/<run>.npz`` with ``_mosaic_io``), then the scoring (one JSON per
run, ``results/mosaic/<scenario>_<method>_seed<k>.json``). Trainings run one at a time; the
scoring of a run overlaps the next training (two processes at most). ``--report`` rewrites
``results/mosaic/mosaic.md`` (medians over seeds, [min–max]) from the JSON files::

    python benchmarks/mosaic.py                              # M1, M2, M3, MIDAS; seeds 0 1 2
    python benchmarks/mosaic.py --scenarios M1 M2 --seeds 0
    python benchmarks/mosaic.py --max-steps 50 --seeds 0 --out /tmp/mosaic_smoke   # smoke
    python benchmarks/mosaic.py --report                     # table from the JSON files

Scenarios and methods (scmosaic through its public API: ``pp.link_features(mdata, "adt",
"rna")`` on raw counts with the packaged table, ``pp.preprocess``, ``SCMODAL.setup_mudata``,
``SCMODAL(mdata, use_pairs=..., seed=seed)``, ``train()`` with the default preset and its
default length, ``get_latent_representation()``; nothing tuned to this data):

* ``M1`` (all four batches as they are): ``scmosaic`` (pairs + ``batch_key="batch"``),
  ``scmosaic_v01`` (``use_pairs=False``, no batch key: scmosaic 0.1 behaviour) and ``midas``
  (scmidas 0.3.0, its quick start, in ``benchmarks/.venvs/midas``; see ``_mosaic_midas.py``).
* ``M2`` (paired fraction): only the 800 paired cells of p3_0 + p4_0; a fraction f of them
  keep their pairing, the others get ``"-hidden"`` appended to their ADT ``obs_name``
  (the original name stays in ``.obs["cell_id"]`` of both modalities, matched with
  ``scmosaic.datasets.pairing_order``). The paired cells are the first ``round(f * 800)``
  of one permutation per seed, so the pairs of a smaller f are among those of a larger one.
  Method ``scmosaic_f<f>``: pairs used, **no batch key** (fixed across f, so that f = 0 is
  scmosaic 0.1's setting: with no pair there is nothing for ``use_pairs`` to use).
  ``scmosaic_v01_f0`` (``use_pairs=False``, f = 0) checks that f = 0 equals 0.1 (extra).
* ``M3`` (batches without pairs): ``scmosaic_nopairs_batch`` (``use_pairs=False``,
  ``batch_key="batch"``); its counterpart without the batch key is M1's ``scmosaic_v01``
  (the same setting and seed; CPU training is deterministic on one machine, not across
  CPUs, so compared runs are made on one machine), shown again in M3's table.
  ``M1 scmosaic_pairs_nobatch`` (pairs, no batch key) is an extra that separates the two;
  ``M3 scmosaic_nopairs_batch_lb1`` / ``_lb0`` (extras) set the batch discriminator's
  weight (1, scmosaic's default before this benchmark chose 0.3; 0: batch-conditioned
  encoders and decoders only).

* ``M4`` (totalVI's layout: RNA in every donor, protein missing in one): p1_0 RNA only,
  p3_0 + p4_0 paired; the ADT-only donor p2_0 is left out, since totalVI needs RNA for
  every cell. ``scmosaic`` (pairs + ``batch_key``) and ``totalvi`` (``scvi.model.TOTALVI``
  with its defaults, ``batch_key="batch"``, raw counts, the RNA-only donor's proteins all
  zero, which totalVI treats as missing for that batch).

Scores:

* M1/M3: 1-NN label transfer (Euclidean) between the RNA-only donor p1_0 and the ADT-only
  donor p2_0, both ways, mean and macro-F1 (``scmosaic.metrics.label_transfer_accuracy``);
  kNN transfer (k = 15, ``scmosaic.tl.knn_transfer``) both ways: accuracy of all cells and of
  the 80% most confident, mean confidence; FOSCTTM of the 800 paired cells' two codes
  (informative without pairs; with pairs the model was told them); scib-metrics 0.5.10
  ``Benchmarker`` (iLISI, kBET per label, BRAS, graph connectivity; cLISI, isolated labels,
  NMI/ARI of k-means clusters, label silhouette; batch and bio means and the total, 0.4 batch
  + 0.6 bio, no min-max scaling) with batch = ``batch`` and label = ``celltype``, on two
  views: ``cells`` (one code per cell: the mean of a paired cell's two codes; MIDAS's joint
  code) and, for scmosaic, ``stacked`` (every modality's codes stacked, 2,400 rows).
  PCR comparison is left out: the stacked RNA and ADT cells have no common pre-integration
  space. scib-metrics needs jax: it runs in ``benchmarks/.venvs/scib`` (``python -m venv
  --system-site-packages``, ``pip install scib-metrics==0.5.10``); without it the scores
  are left out and the JSON says so.
* M4: labels of the RNA-only donor by kNN vote (k = 1 and 15) from the paired donors'
  cells, one code per cell (scmosaic: a paired cell's two codes averaged); scib-metrics
  as for M1 on that view.
* M2: FOSCTTM (symmetric, Euclidean, ``scmosaic.metrics.foscttm``) and 1-NN label transfer
  among the hidden cells (RNA codes of the hidden cells against the ADT codes of the same
  cells); at f = 1 no cell is hidden and all 800 are scored (the JSON says
  ``scored_on``). FOSCTTM of all 800 cells is given for every f.

Wall time is the method's (after reading the file: links, preprocessing, training and
codes for scmosaic; ``scmidas.integrate`` for MIDAS) on this 2-core CPU, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from _common import THREAD_ENV, update_readme
from _data import SHARED
from _mosaic_io import load_embedding, save_embedding

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "mosaic"
DATA = SHARED / "midas_hao2021_pbmc_mosaic" / "quickstart_pbmc_mosaic.h5mu"
VENVS = HERE / ".venvs"
RNA_ONLY, ADT_ONLY = "p1_0", "p2_0"
PAIRED_BATCHES = ("p3_0", "p4_0")
FRACTIONS = (0.0, 0.05, 0.2, 0.5, 1.0)
SCENARIOS = ("M1", "M2", "M3", "midas", "M4")
EXTRAS = (
    "M1:scmosaic_pairs_nobatch",
    "M2:scmosaic_v01_f0",
    "M3:scmosaic_nopairs_batch_lb1",
    "M3:scmosaic_nopairs_batch_lb0",
)

# method -> (use_pairs, batch_key, SCMODAL arguments other than the preset's) for scmosaic
SCMOSAIC = {
    "scmosaic": (True, "batch", {}),
    "scmosaic_v01": (False, None, {}),
    "scmosaic_nopairs_batch": (False, "batch", {}),
    "scmosaic_pairs_nobatch": (True, None, {}),
    # the batch term's weight (batch-conditioned encoders and decoders either way)
    "scmosaic_nopairs_batch_lb1": (False, "batch", {"lambda_batch": 1.0}),
    "scmosaic_nopairs_batch_lb0": (False, "batch", {"lambda_batch": 0.0}),
}


def fraction_name(f: float) -> str:
    return f"f{f:g}"


def m2_method(f: float, v01: bool = False) -> str:
    return ("scmosaic_v01_" if v01 else "scmosaic_") + fraction_name(f)


def planned_runs(scenarios, seeds, fractions, extras) -> list[tuple[str, str, int]]:
    """``(scenario, method, seed)`` in the order they run: M1, M2, M3, MIDAS, extras."""
    runs = []
    for scenario in scenarios:
        for seed in seeds:
            if scenario == "M1":
                runs += [("M1", "scmosaic", seed), ("M1", "scmosaic_v01", seed)]
            elif scenario == "M2":
                runs += [("M2", m2_method(f), seed) for f in fractions]
            elif scenario == "M3":
                runs.append(("M3", "scmosaic_nopairs_batch", seed))
            elif scenario == "midas":
                runs.append(("M1", "midas", seed))
            elif scenario == "M4":
                runs += [("M4", "scmosaic", seed), ("M4", "totalvi", seed)]
    for extra in extras:
        scenario, method = extra.split(":")
        runs += [(scenario, method, seed) for seed in seeds]
    return runs


def run_name(scenario: str, method: str, seed: int) -> str:
    return f"{scenario}_{method}_seed{seed}"


# ---------------------------------------------------------------------------- data


def load_data():
    import mudata

    mudata.set_options(pull_on_update=False)
    return mudata.read_h5mu(DATA)


def m4_data():
    """totalVI's layout: RNA in every batch, protein missing in some (p2_0 dropped)."""
    mdata = load_data()
    import mudata

    adt = mdata["adt"]
    return mudata.MuData(
        {"rna": mdata["rna"].copy(), "adt": adt[(adt.obs["batch"] != ADT_ONLY).to_numpy()].copy()}
    )


def m2_data(seed: int, f: float):
    """The 800 paired cells, ``round(f * 800)`` of them still paired, the rest hidden."""
    mdata = load_data()
    import mudata

    mods = {}
    for m in ("rna", "adt"):
        a = mdata[m]
        a = a[a.obs["batch"].isin(PAIRED_BATCHES).to_numpy()].copy()
        a.obs["cell_id"] = a.obs_names.astype(str)
        mods[m] = a
    cells = mods["rna"].obs_names.intersection(mods["adt"].obs_names, sort=False)
    if len(cells) != mods["rna"].n_obs or len(cells) != mods["adt"].n_obs:
        raise ValueError("M2 expects the same 800 cells in both modalities")
    order = np.random.default_rng(seed).permutation(len(cells))
    n_paired = int(round(f * len(cells)))
    keep = set(cells[order[:n_paired]])
    adt = mods["adt"]
    hidden = ~adt.obs_names.isin(keep)
    adt.obs_names = [n + "-hidden" if h else n for n, h in zip(adt.obs_names, hidden, strict=True)]
    for m in ("rna", "adt"):
        mods[m].obs["hidden"] = ~mods[m].obs["cell_id"].isin(keep).to_numpy()
    return mudata.MuData(mods), n_paired


# ---------------------------------------------------------------------------- methods


def train_scmosaic(scenario: str, method: str, seed: int, max_steps, accelerator: str, out: Path):
    import scvi
    import torch

    import scmosaic

    scvi.settings.num_threads = 1
    torch.set_num_threads(1)
    if scenario == "M2":
        f = float(method.rsplit("_f", 1)[1])
        use_pairs, batch_key, model_kwargs = (not method.startswith("scmosaic_v01"), None, {})
        mdata, n_paired = m2_data(seed, f)
        extra = {"fraction_paired": f, "n_paired": n_paired}
    else:
        use_pairs, batch_key, model_kwargs = SCMOSAIC[method]
        mdata = m4_data() if scenario == "M4" else load_data()
        extra = {}
    start = time.perf_counter()
    scmosaic.pp.link_features(mdata, "adt", "rna")
    processed = scmosaic.pp.preprocess(mdata)
    scmosaic.SCMODAL.setup_mudata(
        processed, modalities=["rna", "adt"], links=[("rna", "adt")], batch_key=batch_key
    )
    scvi.settings.seed = seed
    model = scmosaic.SCMODAL(processed, use_pairs=use_pairs, seed=seed, **model_kwargs)
    train_start = time.perf_counter()
    model.train(max_steps=max_steps, accelerator=accelerator, enable_progress_bar=False)
    train_seconds = time.perf_counter() - train_start
    latent = model.get_latent_representation()
    seconds = time.perf_counter() - start

    emb, rows = [], {k: [] for k in ("modality", "obs_name", "cell_id", "batch", "celltype")}
    rows["hidden"] = []
    for m in ("rna", "adt"):
        obs = processed[m].obs
        emb.append(latent[m])
        n = processed[m].n_obs
        rows["modality"] += [m] * n
        rows["obs_name"] += list(processed[m].obs_names)
        ids = obs["cell_id"] if "cell_id" in obs else processed[m].obs_names
        rows["cell_id"] += [str(x) for x in ids]
        rows["batch"] += obs["batch"].astype(str).tolist()
        rows["celltype"] += obs["celltype"].astype(str).tolist()
        rows["hidden"] += obs["hidden"].astype(bool).tolist() if "hidden" in obs else [False] * n
    meta = {
        "seconds": seconds,
        "train_seconds": train_seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "device": device_name(accelerator),
        "iterations": int(model.n_iterations_trained_),
        "settings": {
            "use_pairs": use_pairs,
            "batch_key": batch_key,
            "preset": "default",
            **model_kwargs,
            # the weights in effect, defaults included (the default changed with M3)
            "lambda_batch": model.module.lambdas["batch"],
            "lambda_pair": model.module.lambdas["pair"],
            "max_steps": max_steps if max_steps is not None else "preset default",
            "links": "pp.link_features(mdata, 'adt', 'rna'), packaged table",
        },
        "embedding_dims": int(latent["rna"].shape[1]),
        "n_cells": {m: int(processed[m].n_obs) for m in ("rna", "adt")},
        "versions": {"scmosaic": scmosaic.__version__, "torch": torch.__version__},
        **extra,
    }
    save_embedding(out, np.vstack(emb), rows, meta)


def train_totalvi(seed: int, accelerator: str, out: Path) -> None:
    """scvi-tools' totalVI on M4 (its tutorial's setup: raw counts, ``batch_key``, proteins
    of the RNA-only donor all zero, which totalVI treats as missing for that batch)."""
    import pandas as pd
    import scanpy as sc
    import scvi
    import torch
    from scipy import sparse

    scvi.settings.num_threads = 1
    torch.set_num_threads(1)
    mdata = m4_data()
    start = time.perf_counter()
    rna = mdata["rna"].copy()
    rna.layers["counts"] = rna.X.copy()
    n_top = min(4000, rna.n_vars)
    if n_top < rna.n_vars:
        sc.pp.highly_variable_genes(
            rna, n_top_genes=n_top, flavor="seurat_v3", layer="counts", batch_key="batch"
        )
        rna = rna[:, rna.var["highly_variable"]].copy()
    adt = mdata["adt"]
    protein = np.zeros((rna.n_obs, adt.n_vars), dtype=np.float32)
    rows = rna.obs_names.get_indexer(adt.obs_names)
    protein[rows] = adt.X.toarray() if sparse.issparse(adt.X) else np.asarray(adt.X)
    rna.obsm["protein"] = pd.DataFrame(protein, index=rna.obs_names, columns=adt.var_names)
    scvi.settings.seed = seed
    scvi.model.TOTALVI.setup_anndata(
        rna, layer="counts", batch_key="batch", protein_expression_obsm_key="protein"
    )
    model = scvi.model.TOTALVI(rna)
    model.train(accelerator=accelerator, enable_progress_bar=False)
    z = model.get_latent_representation()
    seconds = time.perf_counter() - start
    obs = rna.obs
    rows_out = {
        "modality": ["joint"] * rna.n_obs,
        "obs_name": list(rna.obs_names),
        "cell_id": list(rna.obs_names),
        "batch": obs["batch"].astype(str).tolist(),
        "celltype": obs["celltype"].astype(str).tolist(),
        "hidden": [False] * rna.n_obs,
    }
    meta = {
        "seconds": seconds,
        "train_seconds": seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "device": device_name(accelerator),
        "epochs": int(model.history["elbo_train"].shape[0]),
        "settings": {"model": "scvi.model.TOTALVI defaults", "batch_key": "batch"},
        "embedding_dims": int(z.shape[1]),
        "versions": {"scvi-tools": scvi.__version__, "torch": torch.__version__},
    }
    save_embedding(out, z, rows_out, meta)


def device_name(accelerator: str) -> str:
    import torch

    if accelerator != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, 1 thread per run)"


# ---------------------------------------------------------------------------- scoring


def cells_view(emb, rows):
    """One code per cell: the mean of its codes (a paired cell has one per modality)."""
    import pandas as pd

    ids = pd.Index(rows["cell_id"])
    codes, first = pd.factorize(ids)
    sums = np.zeros((len(first), emb.shape[1]))
    np.add.at(sums, codes, emb)
    counts = np.bincount(codes, minlength=len(first))
    idx = np.unique(codes, return_index=True)[1]
    sub = {k: np.asarray(v)[idx] for k, v in rows.items()}
    return (sums / counts[:, None]).astype(np.float32), sub, int((counts > 1).sum())


def scib_ready(out: dict) -> bool:
    """Whether scib-metrics imports; its version (or why not) is recorded in ``out``."""
    try:
        import scib_metrics
    except ImportError as err:
        out["scib_error"] = f"scib-metrics not importable here ({err}); scores left out"
        return False
    out["scib_metrics_version"] = scib_metrics.__version__
    return True


def scib_scores(emb, batch, labels, view: str) -> dict:
    """scib-metrics' Benchmarker on one embedding, without PCR comparison; a flat dict with
    keys ``scib_<view>_<metric>``."""
    import anndata as ad
    import pandas as pd
    from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

    obs = pd.DataFrame(
        {"batch": pd.Categorical(batch), "celltype": pd.Categorical(labels)},
        index=[str(i) for i in range(len(batch))],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_emb"] = np.asarray(emb, dtype=np.float32)
    bench = Benchmarker(
        adata,
        batch_key="batch",
        label_key="celltype",
        embedding_obsm_keys=["X_emb"],
        pre_integrated_embedding_obsm_key="X_emb",
        bio_conservation_metrics=BioConservation(),
        batch_correction_metrics=BatchCorrection(pcr_comparison=False),
        n_jobs=1,
        progress_bar=False,
    )
    bench.benchmark()
    table = bench.get_results(min_max_scale=False)
    return {f"scib_{view}_{k}": float(v) for k, v in table.loc["X_emb"].items()}


def score_m4(emb, rows) -> dict:
    """Labels from the paired donors to the RNA-only donor, on one code per cell, and
    scib-metrics of that view (three donors)."""
    from scmosaic.tl import knn_transfer

    cells, sub, _ = cells_view(emb, rows)
    labels = sub["celltype"].astype(object)
    query = sub["batch"] == RNA_ONLY
    reference = np.isin(sub["batch"], PAIRED_BATCHES)
    out = {}
    for k in (1, 15):
        pred, _ = knn_transfer(cells[reference], labels[reference], cells[query], k=k)
        out[f"knn{k}_accuracy_paired_to_rna_only"] = float((pred == labels[query]).mean())
    if scib_ready(out):
        out |= scib_scores(cells, sub["batch"], sub["celltype"], "cells")
    return out


def score_m1(emb, rows) -> dict:
    from scmosaic.metrics import foscttm, label_transfer_accuracy
    from scmosaic.tl import knn_transfer

    batch, labels = rows["batch"], rows["celltype"].astype(object)
    a, b = batch == RNA_ONLY, batch == ADT_ONLY
    acc = label_transfer_accuracy(emb[a], labels[a], emb[b], labels[b])
    out = {
        "label_transfer_rna_to_adt": acc["a_to_b"],
        "label_transfer_adt_to_rna": acc["b_to_a"],
        "label_transfer_mean": acc["mean"],
        "macro_f1_mean": acc["macro_f1"],
    }
    knn = {}
    for name, ref, query in (("rna_to_adt", a, b), ("adt_to_rna", b, a)):
        pred, conf = knn_transfer(emb[ref], labels[ref], emb[query], k=15)
        correct = pred == labels[query]
        top = np.argsort(-conf, kind="stable")[: int(0.8 * len(conf))]
        knn[name] = (correct.mean(), correct[top].mean(), conf.mean())
        out[f"knn15_accuracy_{name}"] = float(correct.mean())
        out[f"knn15_accuracy_top80_{name}"] = float(correct[top].mean())
    out["knn15_accuracy_all"] = float(np.mean([v[0] for v in knn.values()]))
    out["knn15_accuracy_top80_confident"] = float(np.mean([v[1] for v in knn.values()]))
    out["knn15_mean_confidence"] = float(np.mean([v[2] for v in knn.values()]))
    # The paired cells' two codes (only where the method gives one code per modality).
    rna = (rows["modality"] == "rna") & np.isin(batch, PAIRED_BATCHES)
    adt = (rows["modality"] == "adt") & np.isin(batch, PAIRED_BATCHES)
    if rna.any() and adt.any():
        pos = {c: i for i, c in enumerate(rows["cell_id"][adt])}
        order = np.array([pos[c] for c in rows["cell_id"][rna]])
        out["foscttm_paired_cells"] = foscttm(emb[rna], emb[adt][order])
    if not scib_ready(out):
        return out
    cells, sub, n_joined = cells_view(emb, rows)
    out["scib_cells_n_rows"], out["scib_cells_n_joined"] = len(cells), n_joined
    out |= scib_scores(cells, sub["batch"], sub["celltype"], "cells")
    if n_joined:  # the method gives one code per modality: also score them stacked
        out["scib_stacked_n_rows"] = len(emb)
        out |= scib_scores(emb, batch, rows["celltype"], "stacked")
    return out


def score_m2(emb, rows) -> dict:
    import anndata as ad
    import mudata
    import pandas as pd

    import scmosaic
    from scmosaic.metrics import foscttm, label_transfer_accuracy

    mods = {}
    for m in ("rna", "adt"):
        sel = rows["modality"] == m
        obs = pd.DataFrame(
            {k: rows[k][sel] for k in ("cell_id", "celltype", "hidden")},
            index=rows["obs_name"][sel],
        )
        mods[m] = (ad.AnnData(obs=obs), emb[sel])
    shell = mudata.MuData({m: a for m, (a, _) in mods.items()})
    order = scmosaic.datasets.pairing_order(shell, "rna", "adt")
    (rna, z_rna), (adt, z_adt) = mods["rna"], mods["adt"]
    z_adt = z_adt[order]
    hidden = rna.obs["hidden"].to_numpy(bool)
    if not (adt.obs["hidden"].to_numpy(bool)[order] == hidden).all():
        raise ValueError("hidden flags of the two modalities disagree")
    out = {"n_hidden": int(hidden.sum()), "foscttm_all": foscttm(z_rna, z_adt)}
    scored = hidden if hidden.any() else np.ones_like(hidden)
    out["scored_on"] = "hidden cells" if hidden.any() else "all cells (f = 1: no cell hidden)"
    lab = rna.obs["celltype"].to_numpy(dtype=object)
    out["foscttm_hidden"] = foscttm(z_rna[scored], z_adt[scored])
    acc = label_transfer_accuracy(z_rna[scored], lab[scored], z_adt[scored], lab[scored])
    out |= {
        "label_transfer_hidden_rna_to_adt": acc["a_to_b"],
        "label_transfer_hidden_adt_to_rna": acc["b_to_a"],
        "label_transfer_hidden_mean": acc["mean"],
        "macro_f1_hidden_mean": acc["macro_f1"],
    }
    return out


def score_run(scenario: str, method: str, seed: int, embeddings: Path, folder: Path) -> dict:
    name = run_name(scenario, method, seed)
    emb, rows, meta = load_embedding(embeddings / f"{name}.npz")
    row = {"scenario": scenario, "method": method, "seed": seed, **meta}
    scorer = {"M2": score_m2, "M4": score_m4}.get(scenario, score_m1)
    row |= scorer(emb, rows)
    (folder / f"{name}.json").write_text(json.dumps(row, indent=2))
    return row


# ---------------------------------------------------------------------------- driver


def python_for(kind: str) -> str:
    """The interpreter of a step: MIDAS's venv, the scib venv (scoring), or this one."""
    venv = {"midas": VENVS / "midas", "scib": VENVS / "scib"}.get(kind)
    if venv is not None and (venv / "bin" / "python").exists():
        return str(venv / "bin" / "python")
    if kind == "midas":
        raise FileNotFoundError(
            f"{venv} is missing: python -m venv {venv} && {venv}/bin/pip install torch==2.13.0"
            f" && {venv}/bin/pip install --no-deps scmidas==0.3.0 (+ its other requirements)"
        )
    return sys.executable


def _run(cmd: list[str], log: Path) -> tuple[int, float]:
    env = os.environ | THREAD_ENV | {"PYTHONWARNINGS": "ignore", "JAX_PLATFORMS": "cpu"}
    # scib-metrics' jax functions compile in every scoring process: keep the compiled code.
    env |= {
        "JAX_COMPILATION_CACHE_DIR": str(VENVS / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    start = time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        done = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return done.returncode, time.perf_counter() - start


def train_step(run, out: Path, max_steps, midas_epochs, accelerator) -> tuple[bool, str]:
    scenario, method, seed = run
    name = run_name(*run)
    npz = out / "embeddings" / f"{name}.npz"
    log = out / "logs" / f"{name}.log"
    if method == "midas":
        cmd = [python_for("midas"), str(HERE / "_mosaic_midas.py"), str(DATA), str(seed), str(npz)]
        if midas_epochs is not None:
            cmd += ["--max-epochs", str(midas_epochs)]
    else:
        cmd = [sys.executable, __file__, "--out", str(out), "--accelerator", accelerator]
        if max_steps is not None:
            cmd += ["--max-steps", str(max_steps)]
        cmd += ["--train-one", scenario, method, str(seed)]
    rc, seconds = _run(cmd, log)
    ok = rc == 0 and npz.exists()
    return ok, f"{'trained' if ok else 'FAILED (train)'} {name} in {seconds:.0f} s (log {log})"


def score_step(run, out: Path) -> str:
    name = run_name(*run)
    kind = "system" if run[0] == "M2" else "scib"  # M2 needs no scib-metrics
    cmd = [python_for(kind), __file__, "--out", str(out), "--score-one", *map(str, run)]
    rc, seconds = _run(cmd, out / "logs" / f"{name}.log")
    return f"{'scored' if rc == 0 else 'FAILED (score)'} {name} in {seconds:.0f} s"


def drive(runs, out: Path, max_steps, midas_epochs, accelerator, rerun: bool) -> None:
    (out / "logs").mkdir(parents=True, exist_ok=True)
    pending: list[threading.Thread] = []
    for run in runs:
        name = run_name(*run)
        if not rerun and (out / f"{name}.json").exists():
            print(f"exists {name}", flush=True)
            continue
        npz = out / "embeddings" / f"{name}.npz"
        if rerun or not npz.exists():
            ok, line = train_step(run, out, max_steps, midas_epochs, accelerator)
            print(time.strftime("%H:%M:%S"), line, flush=True)
            if not ok:
                continue
        # Score while the next run trains; at most one scoring at a time.
        for t in pending:
            t.join()

        def score(r=run):
            line = score_step(r, out)
            print(time.strftime("%H:%M:%S"), line, flush=True)

        thread = threading.Thread(target=score)
        thread.start()
        pending = [thread]
    for t in pending:
        t.join()


# ---------------------------------------------------------------------------- report


def cell(values, digits: int = 3) -> str:
    values = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if not values:
        return "–"
    med = np.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f} (1 seed)"
    return f"{med:.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def table(groups: list[tuple[str, list[dict]]], columns: list[tuple[str, str]]) -> list[str]:
    lines = [
        "| method | seeds | " + " | ".join(title for _, title in columns) + " |",
        "|" + "---|" * (2 + len(columns)),
    ]
    for label, group in groups:
        if not group:
            continue
        seeds = ",".join(str(r["seed"]) for r in sorted(group, key=lambda r: r["seed"]))
        cells = [
            cell([r.get(k) for r in group], 0 if k in ("seconds", "n_hidden") else 3)
            for k, _ in columns
        ]
        lines.append(f"| {label} | {seeds} | " + " | ".join(cells) + " |")
    return lines


M1_COLUMNS = [
    ("label_transfer_mean", "1-NN transfer p1↔p2 (mean)"),
    ("label_transfer_rna_to_adt", "RNA p1→ADT p2"),
    ("label_transfer_adt_to_rna", "ADT p2→RNA p1"),
    ("macro_f1_mean", "macro-F1"),
    ("knn15_accuracy_all", "kNN-15 acc."),
    ("knn15_accuracy_top80_confident", "kNN-15 acc., 80% most confident"),
    ("foscttm_paired_cells", "FOSCTTM paired cells"),
    ("scib_cells_Total", "scib total (cells)"),
    ("scib_cells_Batch correction", "scib batch (cells)"),
    ("scib_cells_Bio conservation", "scib bio (cells)"),
    ("scib_stacked_Total", "scib total (stacked)"),
    ("seconds", "wall time (s)"),
]
SCIB_METRICS = [
    "iLISI",
    "KBET",
    "BRAS",
    "Graph connectivity",
    "Batch correction",
    "cLISI",
    "Isolated labels",
    "KMeans NMI",
    "KMeans ARI",
    "Silhouette label",
    "Bio conservation",
    "Total",
]
M2_COLUMNS = [
    ("n_hidden", "hidden cells"),
    ("foscttm_hidden", "FOSCTTM, hidden cells"),
    ("label_transfer_hidden_mean", "1-NN transfer, hidden cells"),
    ("macro_f1_hidden_mean", "macro-F1, hidden"),
    ("foscttm_all", "FOSCTTM, all 800"),
    ("seconds", "wall time (s)"),
]
M3_METHODS = (
    "scmosaic_nopairs_batch",
    "scmosaic_nopairs_batch_lb1",
    "scmosaic_nopairs_batch_lb0",
)


LABELS = {
    "scmosaic": "scmosaic (pairs + batch_key)",
    "scmosaic_v01": "scmosaic 0.1 behaviour (use_pairs=False, no batch_key)",
    "scmosaic_pairs_nobatch": "scmosaic, pairs, no batch_key (extra)",
    "midas": "MIDAS (scmidas 0.3.0, quick start)",
    "totalvi": "totalVI (scvi-tools defaults, batch_key)",
    "scmosaic_nopairs_batch": "use_pairs=False + batch_key (default lambda_batch=0.3)",
    "scmosaic_nopairs_batch_lb1": "use_pairs=False + batch_key, lambda_batch=1 (default before M3)",
    "scmosaic_nopairs_batch_lb0": "use_pairs=False + batch_key, lambda_batch=0 (offsets only)",
}


def readme_table(runs: list[dict]) -> str:
    """The README's summary: medians over seeds of each scenario's headline scores."""

    def med(scenario, method, key, digits=3, spread=False):
        vals = [r[key] for r in runs if (r["scenario"], r["method"]) == (scenario, method)]
        vals = [v for v in vals if v is not None]
        if not vals:
            return "–"
        text = f"{np.median(vals):.{digits}f}"
        return text + (f" [{min(vals):.{digits}f}–{max(vals):.{digits}f}]" if spread else "")

    def scib(scenario, method):
        total = med(scenario, method, "scib_cells_Total", 2, spread=True)
        batch = med(scenario, method, "scib_cells_Batch correction", 2)
        bio = med(scenario, method, "scib_cells_Bio conservation", 2)
        return f"{total} ({batch} / {bio})"

    lines = [
        "| scenario | metric | scmosaic, pairs + `batch_key` | scmosaic 0.1 behaviour | peer |",
        "|---|---|---|---|---|",
        "| M1, four donors | 1-NN label transfer p1_0 ↔ p2_0 | "
        f"{med('M1', 'scmosaic', 'label_transfer_mean', spread=True)} | "
        f"{med('M1', 'scmosaic_v01', 'label_transfer_mean', spread=True)} | "
        f"MIDAS {med('M1', 'midas', 'label_transfer_mean', spread=True)} |",
        f"|  | scib total (batch / bio) | {scib('M1', 'scmosaic')} | "
        f"{scib('M1', 'scmosaic_v01')} | MIDAS {scib('M1', 'midas')} |",
        f"|  | wall time, shared CPU (s) | {med('M1', 'scmosaic', 'seconds', 0)} | "
        f"{med('M1', 'scmosaic_v01', 'seconds', 0)} | MIDAS {med('M1', 'midas', 'seconds', 0)} |",
        "| M4, totalVI's layout (no ADT-only donor) | 1-NN labels paired donors → p1_0 | "
        f"{med('M4', 'scmosaic', 'knn1_accuracy_paired_to_rna_only', spread=True)} | – | "
        f"totalVI {med('M4', 'totalvi', 'knn1_accuracy_paired_to_rna_only', spread=True)} |",
        f"|  | scib total (batch / bio) | {scib('M4', 'scmosaic')} | – | "
        f"totalVI {scib('M4', 'totalvi')} |",
        f"|  | wall time, shared CPU (s) | {med('M4', 'scmosaic', 'seconds', 0)} | – | "
        f"totalVI {med('M4', 'totalvi', 'seconds', 0)} |",
        "",
        "| M2: pairs given (f) | 0 | 0.05 | 0.2 | 0.5 |",
        "|---|---|---|---|---|",
        "| FOSCTTM, hidden cells | "
        + " | ".join(med("M2", m2_method(f), "foscttm_hidden", spread=True) for f in FRACTIONS[:4])
        + " |",
        "| 1-NN label transfer, hidden cells | "
        + " | ".join(
            med("M2", m2_method(f), "label_transfer_hidden_mean", spread=True)
            for f in FRACTIONS[:4]
        )
        + " |",
        "",
        "| M3: no pairs | iLISI | batch score | cLISI | bio score | 1-NN p1_0 ↔ p2_0 |",
        "|---|---|---|---|---|---|",
    ]
    m3 = [("no `batch_key`", "M1", "scmosaic_v01")]
    m3 += [(LABELS[m].replace("use_pairs=False + ", ""), "M3", m) for m in M3_METHODS]
    for label, scenario, method in m3:
        if med(scenario, method, "label_transfer_mean") == "–":
            continue
        lines.append(
            f"| {label} | {med(scenario, method, 'scib_cells_iLISI', spread=True)} | "
            f"{med(scenario, method, 'scib_cells_Batch correction', spread=True)} | "
            f"{med(scenario, method, 'scib_cells_cLISI')} | "
            f"{med(scenario, method, 'scib_cells_Bio conservation', spread=True)} | "
            f"{med(scenario, method, 'label_transfer_mean', spread=True)} |"
        )
    return "\n".join(lines)


def report(folder: Path) -> str:
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def group(scenario, method):
        return [r for r in runs if (r["scenario"], r["method"]) == (scenario, method)]

    m1_methods = ["scmosaic", "scmosaic_v01", "scmosaic_pairs_nobatch", "midas"]
    lines = [
        "# Mosaic integration (issue 13): `benchmarks/mosaic.py`",
        "",
        "MIDAS's quick-start data (Hao 2021 PBMC: p1_0 RNA only, p2_0 ADT only, p3_0 + p4_0 "
        "paired). Medians over seeds, [min–max] in brackets. Higher is better except "
        "FOSCTTM and wall time. scmosaic: default preset and training length, 1 torch "
        "thread, CPU; MIDAS: the steps of `scmidas.integrate` with its quick-start settings "
        "(65 epochs, batch size 128), CPU, 1 thread. "
        "scib-metrics 0.5.10 Benchmarker without PCR comparison, no min-max scaling; "
        "`cells`: one code per cell (a paired cell's two codes averaged; MIDAS's joint "
        "code), `stacked`: both modalities' codes as separate rows (scmosaic only). "
        "Wall times are of one run on a 2-core machine shared with other jobs: a rough "
        "guide, not speed numbers. Regenerate with `python benchmarks/mosaic.py --report`.",
        "",
        "## M1: all four batches (label transfer between the RNA-only and ADT-only donors)",
        "",
    ]
    lines += table([(LABELS[m], group("M1", m)) for m in m1_methods], M1_COLUMNS)
    lines += ["", "### M1 scib-metrics, `cells` view", ""]
    scib_cols = [(f"scib_cells_{k}", k) for k in SCIB_METRICS]
    lines += table([(LABELS[m], group("M1", m)) for m in m1_methods], scib_cols)
    lines += ["", "### M1 scib-metrics, `stacked` view (2,400 codes)", ""]
    scib_cols = [(f"scib_stacked_{k}", k) for k in SCIB_METRICS]
    lines += table([(LABELS[m], group("M1", m)) for m in m1_methods], scib_cols)
    errors = sorted({r["scib_error"] for r in runs if "scib_error" in r})
    lines += [f"\nscib-metrics could not run: {e}" for e in errors]

    lines += [
        "",
        "## M2: paired fraction f (800 paired cells of p3_0 + p4_0, no batch key)",
        "",
        "Scores among the cells whose pairing was hidden; at f = 1 none is hidden and all "
        "800 cells are scored.",
        "",
    ]
    m2 = [(f"f = {f:g}", group("M2", m2_method(f))) for f in FRACTIONS]
    m2.append(("f = 0, use_pairs=False (0.1 behaviour)", group("M2", m2_method(0.0, True))))
    lines += table(m2, M2_COLUMNS)
    base = [r["foscttm_hidden"] for r in group("M2", m2_method(0.0))]
    if base:
        lines += ["", "FOSCTTM on the hidden cells relative to f = 0 (median over seeds):", ""]
        for f in FRACTIONS[1:]:
            vals = [r["foscttm_hidden"] for r in group("M2", m2_method(f))]
            if vals:
                change = np.median(vals) / np.median(base) - 1
                lines.append(f"- f = {f:g}: {change:+.0%}")

    lines += [
        "",
        "## M3: batches without pairs (`use_pairs=False`, with and without `batch_key`)",
        "",
        "Without `batch_key` these are M1's `scmosaic_v01` runs (same setting and seeds).",
        "",
    ]
    m3_cols = [
        ("scib_cells_iLISI", "iLISI (cells)"),
        ("scib_cells_cLISI", "cLISI (cells)"),
        ("scib_cells_Batch correction", "batch score (cells)"),
        ("scib_cells_Bio conservation", "bio score (cells)"),
        ("scib_cells_Total", "total (cells)"),
        ("scib_stacked_iLISI", "iLISI (stacked)"),
        ("scib_stacked_cLISI", "cLISI (stacked)"),
        ("label_transfer_mean", "1-NN transfer p1↔p2"),
        ("foscttm_paired_cells", "FOSCTTM paired cells"),
        ("seconds", "wall time (s)"),
    ]
    lines += table(
        [
            ("use_pairs=False, no batch_key", group("M1", "scmosaic_v01")),
            *((LABELS[m], group("M3", m)) for m in M3_METHODS if group("M3", m)),
        ],
        m3_cols,
    )
    lines += [
        "",
        "## M4: totalVI's layout (p1_0 RNA only, p3_0 + p4_0 paired; the ADT-only donor left out)",
        "",
        "Labels of the RNA-only donor from the paired donors' cells (kNN vote on one code "
        "per cell); scib-metrics of that view over the three donors.",
        "",
    ]
    m4_cols = [
        ("knn1_accuracy_paired_to_rna_only", "1-NN paired → p1_0"),
        ("knn15_accuracy_paired_to_rna_only", "15-NN paired → p1_0"),
        ("scib_cells_iLISI", "iLISI"),
        ("scib_cells_cLISI", "cLISI"),
        ("scib_cells_Batch correction", "batch score"),
        ("scib_cells_Bio conservation", "bio score"),
        ("scib_cells_Total", "total"),
        ("seconds", "wall time (s)"),
    ]
    lines += table(
        [(LABELS[m], group("M4", m)) for m in ("scmosaic", "totalvi") if group("M4", m)],
        m4_cols,
    )
    devices = sorted({r.get("device", "?") for r in runs})
    lines += ["", "Devices: " + "; ".join(devices)] if devices else []
    text = "\n".join(lines) + "\n"
    (folder / "mosaic.md").write_text(text)
    if folder.resolve() == RESULTS.resolve():
        update_readme("mosaic", readme_table(runs))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument(
        "--extras", nargs="*", default=[], choices=EXTRAS, help="extra runs, after the rest"
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="scmosaic iterations (default: the preset's)"
    )
    parser.add_argument(
        "--midas-epochs", type=int, default=None, help="MIDAS epochs (default: its quick start's)"
    )
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--rerun", action="store_true", help="rerun runs whose JSON exists")
    parser.add_argument("--methods", nargs="+", help="only the planned runs of these methods")
    parser.add_argument("--report", action="store_true", help="only write mosaic.md")
    parser.add_argument("--train-one", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--score-one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.train_one:
        scenario, method, seed = args.train_one
        npz = out / "embeddings" / f"{run_name(scenario, method, int(seed))}.npz"
        if method == "totalvi":
            train_totalvi(int(seed), args.accelerator, npz)
        else:
            train_scmosaic(scenario, method, int(seed), args.max_steps, args.accelerator, npz)
        return
    if args.score_one:
        scenario, method, seed = args.score_one
        row = score_run(scenario, method, int(seed), out / "embeddings", out)
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("scib_")}))
        return
    if not args.report:
        if args.max_steps is not None and args.midas_epochs is None:
            args.midas_epochs = 2  # a smoke test: keep MIDAS as short
        runs = planned_runs(args.scenarios, args.seeds, args.fractions, args.extras)
        if args.methods:
            runs = [run for run in runs if run[1] in args.methods]
        drive(runs, out, args.max_steps, args.midas_epochs, args.accelerator, args.rerun)
    print(report(out))


if __name__ == "__main__":
    main()
