"""Datasets shared by the benchmark scripts (read from ../shared/data beside the repository).

* ``hao``: the bundled Hao 2021 subset (800 paired CITE-seq cells, 224 ADTs), labels
  ``celltype`` (level 1).
* ``pbmc10k``: 10x PBMC 10k processed by the totalVI authors (6,855 paired cells, 4,000
  genes, 14 ADTs), automated labels ``label_main_rna``.
* ``sln``: the truly unpaired mouse spleen/lymph-node set, RNA of replicate 2 (day 2)
  against ADT of replicate 1 (day 1), 110 ADTs, scored on the coarse label set
  ``SLN_COARSE`` (doublets, dying T cells and erythrocytes get no coarse label and are
  left out of scoring, not of integration). Protein -> gene links use the mouse TotalSeq
  table from ../shared/data/adt_gene_maps, a test input that is never packaged.

``workflow_options(dataset, ...)`` are the workflow's options for a dataset (its table, the
modalities in the order ``rna``, ``adt``); ``replicate`` draws synthetic cells from real
ones for the scaling benchmarks.
"""

from __future__ import annotations

import os
from pathlib import Path

import mudata

import scmosaic
from scmosaic.workflow import PACKAGED_TABLE, WorkflowOptions

# ../shared/data beside the repository, or SCMOSAIC_SHARED_DATA (e.g. on a machine without it).
SHARED = Path(
    os.environ.get("SCMOSAIC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
LABELS = {"hao": "celltype", "pbmc10k": "label_main_rna", "sln": "coarse_type"}
# Finer labels, scored besides LABELS where a dataset has them (Hao's 8 types are its finest).
FINE_LABELS = {"pbmc10k": "label_fine_rna", "sln": "fine_type"}
PAIRED = {"hao": True, "pbmc10k": True, "sln": False}
MOUSE_TABLE = SHARED / "adt_gene_maps" / "totalvi_mouse_TotalSeq_ADT111_barcodes_RNA_20190717.csv"
# Both replicates were annotated separately: map their labels to one coarse set.
SLN_COARSE = {
    "B": ["Mature_Bcells", "MZ_and_Mature_Bcells", "Transitional_Bcells", "Bcells", "Dying_Bcells"],
    "CD4 T": ["CD4_Tcells", "Treg", "CD4_CD122pos_Tcells"],
    "CD8 T": ["CD8_Tcells", "CD8_CD122pos_Tcells"],
    "NK": ["NKcells"],
    "Myeloid": ["Monocytes_Macrophages_Neutrophils_DCs", "Neutrophil", "DCs", "DCs_11", "DCs_12"]
    + ["Unknown_DC"],
    "pDC": ["pDCs"],
}
# The fine types both replicates annotate (names differ only for DCs, "DCs" in one and
# "DCs_11"/"DCs_12" in the other). RNA's "Neutrophil" joins the myeloid label because the
# ADT replicate's myeloid label names neutrophils. Labels of one replicate only (dying cells,
# generic "Bcells", erythrocytes, CD122+ T cells, unknown DCs) and doublets stay unscored.
SLN_FINE = {
    "Mature B": ["Mature_Bcells"],
    "MZ and mature B": ["MZ_and_Mature_Bcells"],
    "Transitional B": ["Transitional_Bcells"],
    "CD4 T": ["CD4_Tcells"],
    "Treg": ["Treg"],
    "CD8 T": ["CD8_Tcells"],
    "NK": ["NKcells"],
    "Myeloid": ["Monocytes_Macrophages_Neutrophils_DCs", "Neutrophil"],
    "DC": ["DCs", "DCs_11", "DCs_12"],
    "pDC": ["pDCs"],
}


def load_sln() -> mudata.MuData:
    import anndata as ad

    folder = SHARED / "totalvi_sln_unpaired_mouse"
    rna = ad.read_h5ad(folder / "sln111_d2_rna.h5ad")
    adt = ad.read_h5ad(folder / "sln111_d1_adt.h5ad")
    # "ADT_CD115(CSF-1R)_A0105" -> "CD115(CSF-1R)"
    adt.var_names = [name.split("_", 1)[1].rsplit("_", 1)[0] for name in adt.var_names]
    for column, groups in (("coarse_type", SLN_COARSE), ("fine_type", SLN_FINE)):
        common = {label: name for name, labels in groups.items() for label in labels}
        for adata in (rna, adt):
            adata.obs[column] = adata.obs["cell_type"].astype(str).map(common)
    return mudata.MuData({"rna": rna, "adt": adt})


def load(dataset: str) -> mudata.MuData:
    """The raw-count MuData of ``dataset`` (modalities ``rna`` and ``adt``)."""
    if dataset == "hao":
        return scmosaic.datasets.hao2021_pbmc_cite()
    if dataset == "sln":
        return load_sln()
    return mudata.read_h5mu(SHARED / "totalvi_pbmc10k_cite" / "totalvi_pbmc10k_cite.h5mu")


def full_table(dataset: str) -> Path | str:
    """Protein -> gene table for ``dataset``: the mouse table, or scmosaic's packaged one."""
    return MOUSE_TABLE if dataset == "sln" else PACKAGED_TABLE


def workflow_options(dataset: str, **settings) -> WorkflowOptions:
    """The workflow's options for ``dataset``: its full table links unless ``settings`` say
    otherwise, modalities ``rna`` then ``adt``."""
    return WorkflowOptions(
        **{"modalities": ("rna", "adt"), "table": full_table(dataset), **settings}
    )


def replicate(adata, n: int, seed: int, prefix: str):
    """``n`` cells drawn with replacement from ``adata``, counts binomially thinned.

    Each drawn cell's counts become ``Binomial(count, p_cell)`` with ``p_cell ~ U(0.8, 1)``;
    zeros the thinning makes are removed, so the matrix stays float32 CSR and keeps the real
    cells' structure. ``.obs["celltype"]`` is the drawn cell's.
    """
    import anndata as ad
    import numpy as np
    from scipy import sparse

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, adata.n_obs, n)
    x = sparse.csr_matrix(adata.X)[idx]
    p = rng.uniform(0.8, 1.0, n)
    counts = np.rint(x.data).astype(np.int64)
    x.data = rng.binomial(counts, np.repeat(p, np.diff(x.indptr))).astype(np.float32)
    x.eliminate_zeros()
    obs = adata.obs.iloc[idx][["celltype"]].copy()
    obs.index = [f"{prefix}{i}" for i in range(n)]
    return ad.AnnData(x, obs=obs, var=adata.var[[]].copy())
