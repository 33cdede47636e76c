"""SCMODAL against MaxFuse and scConfluence (and totalVI as a paired upper bound), side by side.

One command runs every method on every dataset and seed, each run in its own process (so
wall time and peak memory are the run's own), writes one JSON per run to
``benchmarks/results/compare/`` and then a markdown table (medians over seeds with the
per-seed spread) and a figure::

    python benchmarks/compare.py                      # everything (hours on 2 cores)
    python benchmarks/compare.py --datasets hao --seeds 0 1 2
    python benchmarks/compare.py --summarize          # table + figure from the JSON files
    python benchmarks/compare.py --rescore            # new metrics on cached embeddings

Datasets (see ``_data.py``): ``hao`` and ``pbmc10k`` (paired CITE-seq with the pairing
hidden, EVALUATION protocol) and ``sln`` (truly unpaired, label transfer only).

Variants: ``shuffle`` (RNA of all paired cells vs ADT of the same cells in a shuffled
order: label transfer, FOSCTTM in both conventions) and ``halves`` (RNA of one half of the
cells vs ADT of the other half, so no cell's partner is present: label transfer only).
``sln`` has one variant, ``unpaired``.

Methods:

* ``scmodal_table``: scmosaic SCMODAL, default preset, ADT->gene links from the protein
  table alone (``links="table"``; scmosaic's packaged human table; the mouse TotalSeq
  table for ``sln``).
* ``scmodal_table_cca``: the same links plus CCA scores refined from them, as columns of
  one link (the workflow's default, ``links="table+cca"``; :func:`scmosaic.pp.cca_links`).
* ``maxfuse``: MaxFuse 0.0.2 from PyPI with the parameters of its CITE-seq PBMC tutorial
  on the same protein-gene pairs; its embedding is ``Fusor.get_embedding`` of all cells.
  Two departures, both in MaxFuse's favour: numbers of components are clipped to what the
  data allow (14 ADTs on ``pbmc10k``), and the ADT side of ``refine_pivots``/``propagate``
  is reduced to 15 SVD components instead of left whole (see ``run_maxfuse``).
  An optional benchmark dependency: ``pip install maxfuse==0.0.2 "pynndescent<0.7"``.
* ``scconfluence``: scConfluence 0.1.1 (Samaran et al., Nat. Commun. 2024) with the
  settings of its RNA + protein tutorial (``cantinilab/scconfluence``,
  ``docs/source/tutorials/RNA_PROT_tutorial.ipynb``; the paper's CITE-seq configs,
  ``cantinilab/scc_reproducibility`` ``configs/cfg_OP_Cite.yml``, agree) on the same
  protein-gene pairs: correlation distance of the linked features (RNA log-normalised, ADT
  CLR, both scaled), RNA autoencoder on 100 PCs of the HVGs with a ZINB loss, ADT
  autoencoder on CLR values with an L2 loss, 16 latent dimensions, mass 0.5, reach 0.3,
  IOT weight 0.01, Sinkhorn weight 0.1, up to 1,000 epochs with early stopping (patience
  40); its embedding is the encoders' posterior means. Departures: no cell filtering, no
  batch key, latent size clipped to the number of ADTs (see ``run_scconfluence``). It runs
  in ``benchmarks/.venvs/scconfluence`` when that exists, installed without its declared
  dependencies (it pins numpy < 2 and older scanpy/lightning, yet runs on this environment's
  numpy 2, scanpy and pytorch-lightning 2)::

      python -m venv --system-site-packages benchmarks/.venvs/scconfluence
      benchmarks/.venvs/scconfluence/bin/pip install --no-deps scconfluence==0.1.1 \\
          "geomloss>=0.2,<0.3" "pot>=0.9.1,<0.10"

* ``scglue``: scGLUE 0.4.1 (Cao & Gao, Nat. Biotechnol. 2022) with the settings of its
  RNA + ATAC tutorial (``gao-lab/GLUE``, ``docs/training.ipynb``) and its CITE-seq support
  (protein counts by the ``NBMixture`` model, added in 0.4.0): RNA 2,000 HVGs (seurat_v3),
  100 PCs of the scaled log-normalised data as encoder input, ``NB`` on the counts; ADT
  CLR-normalised, scaled, PCs (at most 100, fewer than the panel) as input,
  ``NBMixture`` on the counts; guidance graph: an edge each way (weight 1, sign +1) for every
  protein-gene pair of :func:`protein_gene_pairs` plus a self-loop on every feature;
  ``fit_SCGLUE`` with its defaults (50 latent dimensions, automatic epochs, early stopping,
  balancing weights); the embedding is ``encode_data``. Departures: the linked genes are
  used beside the HVGs (in its favour: otherwise most protein edges would point to genes the
  model does not see), and scaled values are clipped at 10 before the PCA. It runs in
  ``benchmarks/.venvs/scglue`` when that exists::

      python -m venv --system-site-packages benchmarks/.venvs/scglue
      benchmarks/.venvs/scglue/bin/pip install scglue==0.4.1 "pynndescent<0.7"  # README

* ``totalvi``: scvi-tools' totalVI trained on the *paired* cells (it sees the pairing, so
  it is an upper bound, not a peer), scored by label transfer between the two halves of
  the ``halves`` split in its joint latent space.

Metrics: 1-NN label transfer (Euclidean) in both directions, their mean and macro-F1, on
the dataset's labels and, where it has finer ones, on those too (PBMC 10k's 16
``label_fine_rna`` types; SLN's 10 fine types both replicates annotate, ``_data.SLN_FINE``);
FOSCTTM symmetric Euclidean on the full embedding and MaxFuse-style (one-sided,
1 - Pearson, first 15 dimensions, or all where there are fewer); confidence check: RNA->ADT kNN transfer (k=15), the
accuracy of the 80% most confident cells against all cells; wall time of the method
(after loading) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import THREAD_ENV, peer_python, update_readme
from _data import FINE_LABELS, LABELS, PAIRED, load, workflow_options

RESULTS = Path(__file__).parent / "results"
# Each run's embeddings, beside the JSON folder (not committed), so that --rescore scores
# them again without training.
EMBEDDINGS = "compare_embeddings"
DATASETS = ["hao", "pbmc10k", "sln"]
METHODS = [
    "scmodal_table",
    "scmodal_table_cca",
    "maxfuse",
    "scconfluence",
    "scglue",
    "totalvi",
]


def run_name(dataset: str, variant: str, method: str, seed: int | str) -> str:
    """File stem of one run (its JSON and its cached embeddings)."""
    return f"{dataset}_{variant}_{method}_seed{seed}"


def variants(dataset: str, method: str) -> list[str]:
    if not PAIRED[dataset]:
        return [] if method == "totalvi" else ["unpaired"]
    if method == "totalvi":
        return ["halves"]
    return ["shuffle", "halves"]


# ---------------------------------------------------------------------------- data


def unpaired_data(dataset: str, variant: str, seed: int):
    """Raw-count MuData with modalities ``rna`` and ``adt`` as the method sees them."""
    import scmosaic

    mdata = load(dataset)
    if variant in ("shuffle", "halves"):
        mdata = scmosaic.datasets.hide_pairing(mdata, mode=variant, seed=seed)
    return mdata


def protein_gene_pairs(mdata, dataset: str) -> list[tuple[str, str]]:
    """(gene, protein) pairs linked by the table, on all genes of the data."""
    from scmosaic import workflow

    options = workflow_options(dataset, link_kwargs={"smooth_neighbors": 0})
    report = workflow.link(mdata.copy(), options).report
    linked = report[report["status"] == "linked"]
    return [(g, row.protein) for row in linked.itertuples() for g in row.genes_in_data]


# ---------------------------------------------------------------------------- methods


def run_scmodal(dataset: str, variant: str, seed: int, cca: bool, accelerator: str):
    """SCMODAL through the workflow as a user runs it (default preset, early stopping):
    table links, plus (``cca``, the workflow's default) the CCA scores refined from them."""
    import scvi

    from scmosaic import workflow

    links = "table+cca" if cca else "table"
    options = workflow_options(dataset, seed=seed, accelerator=accelerator, links=links)
    mdata = unpaired_data(dataset, variant, seed)
    start = time.perf_counter()
    linked = workflow.link(mdata, options)
    processed = workflow.preprocess(mdata, options)
    scvi.settings.seed = seed
    model = workflow.build_model(processed, linked, options)
    workflow.fit(model, options)
    latent = model.get_latent_representation()
    seconds = time.perf_counter() - start
    info = {"iterations": model.n_iterations_trained_}
    return processed, latent["rna"], latent["adt"], seconds, info


def _clip(n: int | None, n_features: int) -> int | None:
    return None if n is None else int(min(n, n_features - 1))


def _maxfuse_arrays(mdata, pairs: list[tuple[str, str]]):
    """MaxFuse's inputs as in its CITE-seq tutorial: shared (linked) and active arrays."""
    import scanpy as sc

    rna = mdata["rna"].copy()
    adt = mdata["adt"].copy()
    rna.var_names_make_unique()
    genes = [g for g, _ in pairs]
    proteins = [p for _, p in pairs]
    rna_shared = rna[:, genes].copy()
    adt_shared = adt[:, proteins].copy()
    keep = (dense(rna_shared.X).std(axis=0) > 1e-5) & (dense(adt_shared.X).std(axis=0) > 1e-5)
    rna_shared, adt_shared = rna_shared[:, keep].copy(), adt_shared[:, keep].copy()
    # The tutorial's shared normalisation: both modalities to the mean of their median sums.
    target = (np.median(dense(rna_shared.X).sum(1)) + np.median(dense(adt_shared.X).sum(1))) / 2
    shared = []
    for a in (rna_shared, adt_shared):
        sc.pp.normalize_total(a, target_sum=target)
        sc.pp.log1p(a)
        sc.pp.scale(a)
        shared.append(dense(a.X))
    sc.pp.normalize_total(rna)
    sc.pp.log1p(rna)
    sc.pp.highly_variable_genes(rna)
    rna = rna[:, rna.var["highly_variable"]].copy()
    sc.pp.scale(rna)
    sc.pp.normalize_total(adt)
    sc.pp.log1p(adt)
    sc.pp.scale(adt)
    active = [dense(rna.X), dense(adt.X)]
    active = [a[:, a.std(axis=0) > 1e-5] for a in active]
    return shared, active


def run_maxfuse(dataset: str, variant: str, seed: int):
    mdata, fusor, seconds, info = fit_maxfuse(unpaired_data(dataset, variant, seed), dataset, seed)
    start = time.perf_counter()
    emb_rna, emb_adt = fusor.get_embedding(
        active_arr1=fusor.active_arr1, active_arr2=fusor.active_arr2
    )
    seconds += time.perf_counter() - start
    return mdata, np.asarray(emb_rna), np.asarray(emb_adt), seconds, info


def fit_maxfuse(mdata, dataset: str, seed: int):
    """MaxFuse's tutorial pipeline on ``mdata`` up to its matching: ``(mdata, fusor, seconds,
    info)``; the fusor's arrays have the rows of ``mdata["rna"]`` and ``mdata["adt"]``."""
    import maxfuse as mf

    pairs = protein_gene_pairs(mdata, dataset)
    start = time.perf_counter()
    np.random.seed(seed)
    shared, active = _maxfuse_arrays(mdata, pairs)
    n_shared, n_adt = shared[0].shape[1], active[1].shape[1]
    # The tutorial leaves the ADT side unreduced (svd_components2=None) in refine_pivots and
    # propagate: fine with its ~5,000 pivots, but on the 800-cell Hao subset (~200 pivots,
    # 224 ADTs) the CCA overfits (label transfer 0.61, FOSCTTM 0.45 on seed 0). Reducing
    # the ADTs to the 15 components the tutorial uses for its ADT graph gives 0.90 / 0.23.
    svd_adt = _clip(15, n_adt)

    fusor = mf.model.Fusor(
        shared_arr1=shared[0], shared_arr2=shared[1], active_arr1=active[0], active_arr2=active[1]
    )
    fusor.split_into_batches(
        max_outward_size=5000, matching_ratio=3, metacell_size=2, seed=seed, verbose=False
    )
    fusor.construct_graphs(
        n_neighbors1=15,
        n_neighbors2=15,
        svd_components1=40,
        svd_components2=_clip(15, n_adt),
        resolution1=2,
        resolution2=2,
        resolution_tol=0.1,
        leiden_seed=seed,
        verbose=False,
    )
    fusor.find_initial_pivots(
        wt1=0.3, wt2=0.3, svd_components1=_clip(25, n_shared), svd_components2=_clip(20, n_shared)
    )
    fusor.refine_pivots(
        wt1=0.3,
        wt2=0.3,
        svd_components1=40,
        svd_components2=svd_adt,
        cca_components=min(25, svd_adt),
        n_iters=1,
        verbose=False,
    )
    fusor.filter_bad_matches(target="pivot", filter_prop=0.5, verbose=False)
    fusor.propagate(svd_components1=40, svd_components2=svd_adt, wt1=0.7, wt2=0.7, verbose=False)
    fusor.filter_bad_matches(target="propagated", filter_prop=0.1, verbose=False)
    seconds = time.perf_counter() - start
    info = {"n_shared_features": n_shared, "n_adt_features": n_adt}
    return mdata, fusor, seconds, info


def dense(x, dtype=None) -> np.ndarray:
    """A sparse or dense matrix as a numpy array (of ``dtype``, default: its own)."""
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=dtype)


def _clr(x: np.ndarray) -> np.ndarray:
    """Per-cell centred log-ratio, as ``muon.prot.pp.clr(adata, axis=1)`` computes it
    (``log1p(x / exp(mean(log1p(x))))`` per cell); muon is not installed here."""
    x = np.asarray(x, dtype=np.float32)
    return np.log1p(x / np.exp(np.log1p(x).mean(axis=1, keepdims=True)))


def run_scconfluence(dataset: str, variant: str, seed: int, accelerator: str):
    """scConfluence 0.1.1 with the settings of its RNA + protein tutorial
    (``cantinilab/scconfluence``, ``docs/source/tutorials/RNA_PROT_tutorial.ipynb``), which
    the paper's CITE-seq configs (``cantinilab/scc_reproducibility``,
    ``configs/cfg_OP_Cite.yml``) repeat; the cross-modal distance uses the protein-gene
    pairs of :func:`protein_gene_pairs`, like MaxFuse."""
    import tempfile

    import anndata as ad
    import mudata
    import pytorch_lightning as pl
    import scanpy as sc
    from scconfluence.model import ScConfluence
    from scconfluence.unimodal import AutoEncoder
    from scipy.spatial.distance import cdist

    mdata = unpaired_data(dataset, variant, seed)
    pairs = protein_gene_pairs(mdata, dataset)
    start = time.perf_counter()
    pl.seed_everything(seed, workers=True)  # also seeds numpy (train/validation split), torch
    rna = mdata["rna"].copy()
    adt = mdata["adt"].copy()
    # The tutorial's QC, features only: its cell filters (min_genes=100 RNA, 10 ADT) would
    # drop cells every method has to embed (and most cells of a 500-gene panel).
    sc.pp.filter_genes(rna, min_cells=20)
    sc.pp.filter_genes(adt, min_cells=20)
    pairs = [(g, p) for g, p in pairs if g in rna.var_names and p in adt.var_names]

    # Cross-modal distance on the linked features: RNA counts of the linked genes
    # log-normalised (1e4) and scaled, their proteins CLR-normalised and scaled, correlation
    # distance. A protein linked to several genes appears once per gene (the paper repo's
    # ``get_gene_prots(all_genes=True)``; the tutorial has one gene per protein).
    rna_cm = ad.AnnData(dense(rna[:, [g for g, _ in pairs]].X).astype(np.float32))
    sc.pp.normalize_total(rna_cm, target_sum=1e4)
    sc.pp.log1p(rna_cm)
    sc.pp.scale(rna_cm)
    adt_cm = ad.AnnData(_clr(dense(adt[:, [p for _, p in pairs]].X)))
    sc.pp.scale(adt_cm)
    cross = cdist(rna_cm.X, adt_cm.X, metric="correlation")

    # Each modality on all its features: RNA log-normalised, union of 3,000 HVGs on counts
    # (seurat_v3) and 3,000 on log data, 100 PCs of the HVGs as encoder input, the HVG counts
    # as ZINB target; ADTs CLR-normalised, input and L2 target.
    rna.layers["counts"] = rna.X.copy()
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    hvg = sc.pp.highly_variable_genes
    raw = hvg(rna, layer="counts", n_top_genes=3000, flavor="seurat_v3", inplace=False)
    norm = hvg(rna, n_top_genes=3000, inplace=False)
    rna = rna[:, raw["highly_variable"].to_numpy() | norm["highly_variable"].to_numpy()].copy()
    sc.tl.pca(rna, n_comps=100, zero_center=None)
    rna.obsm["X_pca"] = rna.obsm["X_pca"].astype(np.float32)
    adt.X = _clr(dense(adt.X))
    data = mudata.MuData({"rna": rna, "adt": adt})
    data.uns["cross_rna+adt"] = cross
    data.uns["cross_keys"] = ["cross_rna+adt"]

    # n_latent 16 as published, clipped to the number of ADTs (14 on pbmc10k): scConfluence
    # refuses a latent space larger than an autoencoder's input. No batch_key: the other
    # methods get none either (the tutorial's demo has one; the paper's configs pass none).
    n_latent = min(16, adt.n_vars)
    autoencoders = {
        "rna": AutoEncoder(
            rna,
            modality="rna",
            rep_in="X_pca",
            rep_out="counts",
            n_hidden=64,
            n_latent=n_latent,
            type_loss="zinb",
        ),
        "adt": AutoEncoder(adt, modality="adt", n_hidden=32, n_latent=n_latent, type_loss="l2"),
    }
    model = ScConfluence(
        mdata=data,
        unimodal_aes=autoencoders,
        mass=0.5,
        reach=0.3,
        blur=0.01,
        iot_loss_weight=0.01,
        sinkhorn_loss_weight=0.1,
    )
    use_cuda = accelerator != "cpu"
    # chdir: get_latent's own Trainer logs to ./lightning_logs; keep it in the temporary folder
    with tempfile.TemporaryDirectory() as save_path, contextlib.chdir(save_path):
        # fit's defaults are the published ones: batch 512, lr 3e-3, 20% validation, early
        # stopping on the validation loss with patience 40 and the best epoch restored.
        model.fit(
            save_path=save_path,
            use_cuda=use_cuda,
            max_epochs=1000,
            batch_size=512,
            lr=0.003,
            ratio_val=0.2,
            early_stopping=True,
            patience=40,
            enable_progress_bar=False,
        )
        epochs = int(model.trainer.current_epoch)
        latent = model.get_latent(use_cuda=use_cuda, batch_size=512)
    emb_rna = latent.loc[mdata["rna"].obs_names].to_numpy()
    emb_adt = latent.loc[mdata["adt"].obs_names].to_numpy()
    seconds = time.perf_counter() - start
    info = {"epochs": epochs, "n_linked_pairs": len(pairs), "n_latent": n_latent}
    return mdata, emb_rna, emb_adt, seconds, info


def run_scglue(dataset: str, variant: str, seed: int, accelerator: str):
    """scGLUE 0.4.1 with its tutorial's settings and a protein-gene guidance graph (see the
    module docstring); the pairs are :func:`protein_gene_pairs`, like MaxFuse's."""
    import tempfile

    import networkx as nx
    import scanpy as sc
    import scglue

    if accelerator == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # scglue picks a GPU on its own otherwise
    mdata = unpaired_data(dataset, variant, seed)
    pairs = protein_gene_pairs(mdata, dataset)
    start = time.perf_counter()
    rna = mdata["rna"].copy()
    adt = mdata["adt"].copy()
    # Node names must be unique across modalities (gene CD4, protein CD4).
    adt.var_names = [f"protein:{p}" for p in adt.var_names]
    pairs = [(g, f"protein:{p}") for g, p in pairs]
    rna.layers["counts"] = rna.X.copy()
    sc.pp.highly_variable_genes(rna, n_top_genes=2000, flavor="seurat_v3")
    rna.var.loc[[g for g, _ in pairs], "highly_variable"] = True  # the graph's genes
    sc.pp.normalize_total(rna)
    sc.pp.log1p(rna)
    sc.pp.scale(rna, max_value=10)
    sc.tl.pca(rna, n_comps=min(100, rna.n_obs - 1), random_state=seed)
    adt.layers["counts"] = adt.X.copy()
    adt.X = _clr(dense(adt.X))
    sc.pp.scale(adt, max_value=10)
    sc.tl.pca(adt, n_comps=min(100, adt.n_vars - 1), random_state=seed)
    adt.var["highly_variable"] = True
    scglue.models.configure_dataset(
        rna, "NB", use_highly_variable=True, use_layer="counts", use_rep="X_pca"
    )
    scglue.models.configure_dataset(
        adt, "NBMixture", use_highly_variable=True, use_layer="counts", use_rep="X_pca"
    )
    graph = nx.MultiDiGraph()
    for gene, protein in pairs:
        graph.add_edge(gene, protein, weight=1.0, sign=1)
        graph.add_edge(protein, gene, weight=1.0, sign=1)
    for name in [*rna.var_names[rna.var["highly_variable"]], *adt.var_names]:
        graph.add_edge(name, name, weight=1.0, sign=1)
    adatas = {"rna": rna, "adt": adt}
    with tempfile.TemporaryDirectory() as directory:
        glue = scglue.models.fit_SCGLUE(
            adatas, graph, init_kws={"random_seed": seed}, fit_kws={"directory": directory}
        )
        emb_rna = glue.encode_data("rna", rna)
        emb_adt = glue.encode_data("adt", adt)
    seconds = time.perf_counter() - start
    info = {"n_linked_pairs": len(pairs), "n_genes": int(rna.var["highly_variable"].sum())}
    return mdata, emb_rna, emb_adt, seconds, info


def run_totalvi(dataset: str, seed: int, accelerator: str):
    """totalVI on the paired cells; the halves split (same seed) is scored afterwards."""
    import scanpy as sc
    import scvi

    import scmosaic

    mdata = load(dataset)
    halves = scmosaic.datasets.hide_pairing(mdata, mode="halves", seed=seed)
    start = time.perf_counter()
    paired = mdata["rna"].obs_names.intersection(mdata["adt"].obs_names, sort=False)
    rna = mdata["rna"][paired].copy()
    rna.layers["counts"] = rna.X.copy()
    sc.pp.normalize_total(rna)
    sc.pp.log1p(rna)
    n_top = min(4000, rna.n_vars)
    sc.pp.highly_variable_genes(rna, n_top_genes=n_top, flavor="seurat_v3", layer="counts")
    rna = rna[:, rna.var["highly_variable"]].copy()
    adt = mdata["adt"][rna.obs_names]
    rna.obsm["protein"] = dense(adt.X)
    scvi.settings.seed = seed
    scvi.model.TOTALVI.setup_anndata(rna, layer="counts", protein_expression_obsm_key="protein")
    model = scvi.model.TOTALVI(rna)
    model.train(accelerator=accelerator, enable_progress_bar=False)
    z = model.get_latent_representation()
    seconds = time.perf_counter() - start
    # rows of z of each half's cells, by the original names hide_pairing keeps
    emb = [z[rna.obs_names.get_indexer(halves[m].obs["cell_id"])] for m in ("rna", "adt")]
    info = {"epochs": int(model.history["elbo_train"].shape[0])}
    return halves, emb[0], emb[1], seconds, info


# ---------------------------------------------------------------------------- scoring


def score(mdata, dataset: str, variant: str, emb_rna, emb_adt) -> dict:
    import scmosaic
    from scmosaic.metrics import foscttm, foscttm_maxfuse, label_transfer_accuracy
    from scmosaic.tl import knn_transfer

    def labels(key: str) -> tuple[np.ndarray, np.ndarray]:
        return tuple(mdata[m].obs[key].to_numpy(dtype=object) for m in ("rna", "adt"))

    lab_rna, lab_adt = labels(LABELS[dataset])
    acc = label_transfer_accuracy(emb_rna, lab_rna, emb_adt, lab_adt)
    out = {
        "label_transfer_rna_to_adt": acc["a_to_b"],
        "label_transfer_adt_to_rna": acc["b_to_a"],
        "label_transfer_mean": acc["mean"],
        "macro_f1_mean": acc["macro_f1"],
    }
    if dataset in FINE_LABELS:
        fine_rna, fine_adt = labels(FINE_LABELS[dataset])
        fine = label_transfer_accuracy(emb_rna, fine_rna, emb_adt, fine_adt)
        out["fine_label_transfer_mean"] = fine["mean"]
        out["fine_macro_f1_mean"] = fine["macro_f1"]
    # Is the kNN confidence informative? Accuracy of the 80% most confident query cells.
    scored = np.array([isinstance(v, str) for v in lab_adt])
    pred, conf = knn_transfer(emb_rna, lab_rna, emb_adt[scored], k=15)
    correct = pred == lab_adt[scored]
    top = np.argsort(-conf, kind="stable")[: int(0.8 * len(conf))]
    out["knn15_accuracy_all"] = float(correct.mean())
    out["knn15_accuracy_top80_confident"] = float(correct[top].mean())
    if variant == "shuffle":
        order = scmosaic.datasets.pairing_order(mdata, "rna", "adt")
        out["foscttm_symmetric_euclidean"] = foscttm(emb_rna, emb_adt[order])
        if emb_rna.shape[1] >= 15:
            out["foscttm_maxfuse"] = foscttm_maxfuse(emb_rna, emb_adt[order])
        else:  # MaxFuse on 14 ADTs has 13 CCA dimensions: use all of them
            out["foscttm_maxfuse"] = foscttm(
                emb_rna, emb_adt[order], metric="pearson", symmetric=False
            )
    return out


def device_name(accelerator: str) -> str:
    import platform

    import torch

    if accelerator != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, 1 thread per run)"


def run_one(
    dataset: str, variant: str, method: str, seed: int, accelerator: str, cache: Path
) -> dict:
    import mudata
    import scvi
    import torch

    mudata.set_options(pull_on_update=False)
    scvi.settings.num_threads = 1
    torch.set_num_threads(1)
    if method == "scmodal_table":
        result = run_scmodal(dataset, variant, seed, False, accelerator)
    elif method == "scmodal_table_cca":
        result = run_scmodal(dataset, variant, seed, True, accelerator)
    elif method == "maxfuse":
        result = run_maxfuse(dataset, variant, seed)
    elif method == "scconfluence":
        result = run_scconfluence(dataset, variant, seed, accelerator)
    elif method == "scglue":
        result = run_scglue(dataset, variant, seed, accelerator)
    else:
        result = run_totalvi(dataset, seed, accelerator)
    mdata, emb_rna, emb_adt, seconds, info = result
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        cache / f"{run_name(dataset, variant, method, seed)}.npz", rna=emb_rna, adt=emb_adt
    )
    row = {
        "dataset": dataset,
        "variant": variant,
        "method": method,
        "seed": seed,
        "n_cells": {"rna": int(mdata["rna"].n_obs), "adt": int(mdata["adt"].n_obs)},
        "embedding_dims": int(emb_rna.shape[1]),
        "seconds": seconds,
        "device": device_name(accelerator if method != "maxfuse" else "cpu"),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        **info,
    }
    row |= score(mdata, dataset, variant, emb_rna, emb_adt)
    return row


def rescore(folder: Path, cache: Path) -> list[str]:
    """Score every run whose embeddings are cached again (current ``score``), in its JSON.

    Wall time, memory and the run's settings are kept; only the metrics are replaced.
    """
    import mudata

    mudata.set_options(pull_on_update=False)
    # the methods of one (dataset, variant, seed) share its data: load it once
    data = functools.lru_cache(maxsize=1)(unpaired_data)
    runs = [(path, json.loads(path.read_text())) for path in folder.glob("*.json")]
    runs.sort(key=lambda run: (run[1]["dataset"], run[1]["variant"], run[1]["seed"]))
    done = []
    for path, row in runs:
        cached = cache / f"{path.stem}.npz"
        if not cached.exists():
            continue
        emb = np.load(cached)
        mdata = data(row["dataset"], row["variant"], int(row["seed"]))
        if [len(emb[m]) for m in ("rna", "adt")] != [mdata[m].n_obs for m in ("rna", "adt")]:
            raise ValueError(f"{cached}: embeddings do not match the cells of {path.stem}")
        row |= score(mdata, row["dataset"], row["variant"], emb["rna"], emb["adt"])
        path.write_text(json.dumps(row, indent=2))
        done.append(path.stem)
    return done


# ---------------------------------------------------------------------------- summary

METRICS = [
    ("label_transfer_mean", "label transfer (mean of both directions)"),
    ("macro_f1_mean", "macro-F1"),
    ("fine_label_transfer_mean", "fine-label transfer"),
    ("fine_macro_f1_mean", "fine-label macro-F1"),
    ("foscttm_symmetric_euclidean", "FOSCTTM symmetric Euclidean"),
    ("foscttm_maxfuse", "FOSCTTM MaxFuse-style"),
    ("knn15_accuracy_all", "kNN-15 accuracy, all"),
    ("knn15_accuracy_top80_confident", "kNN-15 accuracy, 80% most confident"),
    ("seconds", "wall time (s)"),
    ("peak_rss_gb", "peak RSS (GB)"),
]


def load_runs(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def cell(values: list[float], digits: int) -> str:
    values = [v for v in values if v is not None and not np.isnan(v)]
    if not values:
        return "–"
    med = np.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f} (1 seed)"
    return f"{med:.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


README_COLUMNS = {
    "scmodal_table": "SCMODAL, table",
    "scmodal_table_cca": "SCMODAL, table + CCA (default)",
    "maxfuse": "MaxFuse 0.0.2",
    "scconfluence": "scConfluence 0.1.1",
    "scglue": "scGLUE 0.4.1",
    "totalvi": "totalVI (sees the pairing)",
}
README_GROUPS = {
    ("hao", "shuffle"): "Hao, shuffled",
    ("hao", "halves"): "Hao, two halves",
    ("pbmc10k", "shuffle"): "PBMC 10k, shuffled",
    ("pbmc10k", "halves"): "PBMC 10k, two halves",
    ("sln", "unpaired"): "mouse SLN, unpaired",
}
README_METRICS = {
    "label_transfer_mean": ("label transfer", max),
    "macro_f1_mean": ("macro-F1", max),
    "fine_label_transfer_mean": ("fine-label transfer", max),
    "fine_macro_f1_mean": ("fine-label macro-F1", max),
    "foscttm_symmetric_euclidean": ("FOSCTTM, symmetric", min),
    "foscttm_maxfuse": ("FOSCTTM, MaxFuse-style", min),
}


def readme_table(runs: list[dict]) -> str:
    """The README's table: medians of the seeds, best of the unpaired methods in bold."""
    lines = [
        "| data | metric | " + " | ".join(README_COLUMNS.values()) + " |",
        "|---|---|" + "---|" * len(README_COLUMNS),
    ]
    for (dataset, variant), title in README_GROUPS.items():
        for key, (name, better) in README_METRICS.items():
            values = {
                method: [
                    r[key]
                    for r in runs
                    if (r["dataset"], r["variant"], r["method"]) == (dataset, variant, method)
                    and r.get(key) is not None
                    and not np.isnan(r[key])
                ]
                for method in README_COLUMNS
            }
            medians = {m: np.median(v) for m, v in values.items() if v and m != "totalvi"}
            if not medians:
                continue
            best = better(medians.values())
            cells = []
            for method, vals in values.items():
                text = "–" if not vals else f"{np.median(vals):.3f}"
                if vals and method != "totalvi" and np.median(vals) == best:
                    text = f"**{text}**"
                if len(vals) == 1:
                    text += " (1 seed)"
                cells.append(text)
            label = title if key == "label_transfer_mean" else ""
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(folder: Path, out: Path) -> str:
    runs = load_runs(folder)
    lines = [
        "Medians over seeds, [min–max] in brackets. Label transfer: 1-NN, Euclidean, mean "
        "of RNA->ADT and ADT->RNA. FOSCTTM: lower is better. totalVI sees the pairing "
        "(upper bound).",
        "",
    ]
    header = "| dataset | variant | method | seeds | " + " | ".join(m[1] for m in METRICS)
    lines += [header + " | device |", "|" + "---|" * (5 + len(METRICS))]
    for dataset in DATASETS:
        for variant in ("shuffle", "halves", "unpaired"):
            for method in METHODS:
                group = [
                    r
                    for r in runs
                    if (r["dataset"], r["variant"], r["method"]) == (dataset, variant, method)
                ]
                if not group:
                    continue
                cells = [
                    cell([r.get(k, float("nan")) for r in group], 0 if k == "seconds" else 3)
                    for k, _ in METRICS
                ]
                seeds = ",".join(str(r["seed"]) for r in sorted(group, key=lambda r: r["seed"]))
                devices = "; ".join(sorted({r.get("device", "?").split(" (")[0] for r in group}))
                lines.append(
                    f"| {dataset} | {variant} | {method} | {seeds} | "
                    + " | ".join(cells)
                    + f" | {devices} |"
                )
    text = "\n".join(lines) + "\n"
    (out / "compare.md").write_text(text)
    update_readme("compare", readme_table(runs))
    plot(runs, out / "compare.png")
    return text


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("label_transfer_mean", "label transfer accuracy (higher is better)"),
        ("foscttm_symmetric_euclidean", "FOSCTTM symmetric (lower is better)"),
        ("foscttm_maxfuse", "FOSCTTM MaxFuse-style (lower is better)"),
    ]
    groups = [
        (d, v)
        for d in DATASETS
        for v in ("shuffle", "halves", "unpaired")
        if any((r["dataset"], r["variant"]) == (d, v) for r in runs)
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    width = 0.8 / len(METHODS)
    for ax, (key, title) in zip(axes, panels, strict=True):
        for m, method in enumerate(METHODS):
            for g, (dataset, variant) in enumerate(groups):
                vals = [
                    r[key]
                    for r in runs
                    if (r["dataset"], r["variant"], r["method"]) == (dataset, variant, method)
                    and key in r
                ]
                if not vals:
                    continue
                x = g + (m - (len(METHODS) - 1) / 2) * width
                ax.bar(
                    x,
                    np.median(vals),
                    width,
                    color=f"C{m}",
                    label=method
                    if g
                    == next(
                        i
                        for i, gr in enumerate(groups)
                        if any(
                            (r["dataset"], r["variant"], r["method"]) == (*gr, method) and key in r
                            for r in runs
                        )
                    )
                    else None,
                )
                ax.plot([x] * len(vals), vals, "k.", ms=3)
        ax.set_xticks(range(len(groups)), [f"{d}\n{v}" for d, v in groups], fontsize=8)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--variants", nargs="+", default=None, help="subset of variants")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--rerun", action="store_true", help="rerun runs whose JSON exists")
    parser.add_argument("--summarize", action="store_true", help="only write table + figure")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help=f"score the runs with embeddings in OUT/{EMBEDDINGS} again",
    )
    parser.add_argument(
        "--one", nargs=4, metavar=("DATASET", "VARIANT", "METHOD", "SEED"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--accelerator",
        default="cpu",
        help="for SCMODAL, scConfluence, scGLUE and totalVI (MaxFuse is CPU only)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 per core)")
    args = parser.parse_args()
    out = Path(args.out)
    folder = out / "compare"
    folder.mkdir(parents=True, exist_ok=True)
    if args.one:
        dataset, variant, method, seed = args.one
        row = run_one(dataset, variant, method, int(seed), args.accelerator, out / EMBEDDINGS)
        (folder / f"{run_name(*args.one)}.json").write_text(json.dumps(row, indent=2))
        print(json.dumps(row), flush=True)
        return
    if args.rescore:
        print(f"rescored {len(rescore(folder, out / EMBEDDINGS))} runs", flush=True)
    elif not args.summarize:
        todo = [
            (dataset, variant, method, seed)
            for seed in args.seeds
            for dataset in args.datasets
            for method in args.methods
            for variant in variants(dataset, method)
            if not args.variants or variant in args.variants
        ]
        todo = [
            run for run in todo if args.rerun or not (folder / f"{run_name(*run)}.json").exists()
        ]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for line in pool.map(lambda run: launch(run, out, args.accelerator), todo):
                print(line, flush=True)
    print(summarize(folder, out))


def launch(run: tuple[str, str, str, int], out: Path, accelerator: str) -> str:
    """Run one (dataset, variant, method, seed) in a fresh single-threaded process."""
    env = os.environ | THREAD_ENV
    name = run_name(*run)
    python = peer_python(run[2])  # a peer with its own environment runs there
    cmd = [python, __file__, "--out", str(out), "--accelerator", accelerator, "--one"]
    done = subprocess.run(cmd + [str(x) for x in run], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return f"FAILED {name}:\n{done.stderr[-3000:]}"
    return f"done {name}"


if __name__ == "__main__":
    main()
