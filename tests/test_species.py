"""The packaged mouse ADT table, species detection and the few-proteins warning."""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import shared_file
from mudata import MuData
from scipy import sparse

from scmosaic.pp import detect_species, link_features, load_adt_gene_table, match_proteins
from scmosaic.pp._adt_table import PACKAGED_TABLES

MOUSE_PANEL = {  # SLN-style TotalSeq names -> a gene the target must include
    "Ly-6C": "Ly6c1",
    "F4-80": "Adgre1",
    "I-A-I-E": "H2-Ab1",
    "CD45R-B220": "Ptprc",
    "NK-1.1": "Klrb1c",
    "TER-119-ErythroidCells": "Ly76",
    "Ly-6A-E(Sca-1)": "Ly6a",
    "CD16-32": "Fcgr3",
    "CD8b(Ly-3)": "Cd8b1",
    "CD21-CD35(CR2-CR1)": "Cr2",
    "CD90.2": "Thy1",
    "IgD": "Ighd",
}


def test_species_from_gene_symbol_case():
    assert detect_species(["Cd4", "Actb", "H2-Ab1", "Ly6c1"] * 10) == "mouse"
    assert detect_species(["CD4", "ACTB", "HLA-DRA", "MS4A1"] * 10) == "human"
    assert detect_species(["ENSMUSG00000023274", "ENSG00000010610"] * 20) is None
    assert detect_species(["Cd4", "CD4"] * 20) is None  # neither dominates
    assert detect_species(["Cd4"] * 5) is None  # too few to tell
    assert detect_species(["1110002E22Rik"] * 30 + ["Gm123"] * 19) is None  # digit-first skipped
    assert detect_species(["1110002E22Rik"] * 30 + ["Gm123"] * 20) == "mouse"


def test_packaged_mouse_table_is_well_formed_and_mouse():
    lut = load_adt_gene_table(species="mouse")
    assert lut["key"].is_unique and len(lut) >= 300
    genes = {g for gs in lut["genes"] for g in gs}
    assert detect_species(genes) == "mouse"  # mouse symbols (Cd4, Ly6c1), not CD4
    for name, gene in MOUSE_PANEL.items():
        status, _, found = match_proteins([name], species="mouse").iloc[0][
            ["status", "table_protein", "genes"]
        ]
        assert status == "linked" and gene in found, (name, found)
    with pytest.raises(ValueError, match="species must be one of"):
        load_adt_gene_table(species="rat")
    assert set(PACKAGED_TABLES) == {"human", "mouse"}


def _mouse_cite(n: int = 40, seed: int = 0) -> MuData:
    rng = np.random.default_rng(seed)
    genes = [gene for gene in MOUSE_PANEL.values()] + [f"Gm{i}" for i in range(20)]
    proteins = list(MOUSE_PANEL)
    rna = ad.AnnData(
        sparse.csr_matrix(rng.poisson(3, (n, len(genes))).astype(np.float32)),
        var=pd.DataFrame(index=genes),
        obs=pd.DataFrame(index=[f"r{i}" for i in range(n)]),
    )
    adt = ad.AnnData(
        rng.poisson(20, (n, len(proteins))).astype(np.float32),
        var=pd.DataFrame(index=proteins),
        obs=pd.DataFrame(index=[f"a{i}" for i in range(n)]),
    )
    return MuData({"rna": rna, "adt": adt})


def test_mouse_genes_choose_the_mouse_table(caplog):
    mdata = _mouse_cite()
    with caplog.at_level(logging.INFO, logger="scmosaic"), warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        report = link_features(mdata, "adt", "rna", smooth_neighbors=0)
    assert "look mouse" in caplog.text
    assert (report["status"] == "linked").all()
    assert report.attrs["species"] == "mouse"


def test_workflow_summary_names_the_detected_species():
    from scmosaic.workflow import WorkflowOptions, link

    options = WorkflowOptions(links="table", table="packaged", link_kwargs={"smooth_neighbors": 0})
    assert link(_mouse_cite(), options).info["species"] == "mouse"
    # a table of the user's has no species to report
    own = WorkflowOptions(
        links="table", table={"CD90.2": "Thy1"}, link_kwargs={"smooth_neighbors": 0}
    )
    assert "species" not in link(_mouse_cite(), own).info


def test_human_table_on_a_mouse_panel_warns():
    with pytest.warns(UserWarning, match=r"Only \d+ of the 12 proteins of 'adt' are in"):
        report = link_features(_mouse_cite(), "adt", "rna", smooth_neighbors=0, species="human")
    assert (report["status"] == "unmatched").sum() > 6
    assert report.attrs["species"] == "human"
    with pytest.raises(ValueError, match="species must be one of"):
        link_features(_mouse_cite(), "adt", "rna", species="zebrafish")


def test_sln_mouse_panel_links_at_least_as_many_proteins_as_totalvis_table():
    """Real mouse panel (SLN, 110 TotalSeq ADTs): the packaged default against totalVI's table."""
    folder = shared_file("totalvi_sln_unpaired_mouse")
    table = shared_file("adt_gene_maps", "totalvi_mouse_TotalSeq_ADT111_barcodes_RNA_20190717.csv")
    rna = ad.read_h5ad(folder / "sln111_d2_rna.h5ad")
    adt = ad.read_h5ad(folder / "sln111_d1_adt.h5ad")
    adt.var_names = [name.split("_", 1)[1].rsplit("_", 1)[0] for name in adt.var_names]
    linked = {}
    for name, kwargs in {"packaged": {}, "totalvi": {"table": table}}.items():
        mdata = MuData({"rna": rna.copy(), "adt": adt.copy()})
        report = link_features(mdata, "adt", "rna", smooth_neighbors=0, **kwargs)
        linked[name] = int((report["status"] == "linked").sum())
    assert linked["packaged"] >= linked["totalvi"] >= 90
