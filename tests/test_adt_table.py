"""Tests for the packaged human ADT->gene table and antibody-name matching."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from scmosaic.pp._adt_table import (
    load_adt_gene_table,
    match_proteins,
    normalize_feature_name,
)

REPO = Path(__file__).resolve().parents[1]
HAO = REPO / "src" / "scmosaic" / "datasets" / "data" / "hao2021_pbmc_cite_subset.h5mu"
MAPS = REPO.parent / "shared" / "data" / "adt_gene_maps"
MAXFUSE = MAPS / "maxfuse_protein_gene_conversion.csv"
TEASEQ = MAPS / "teaseq_adt_genes.csv"
TOTALVI = MAPS / "totalvi_mouse_TotalSeq_ADT111_barcodes_RNA_20190717.csv"


def _shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data not available: {path}")
    return path


@pytest.fixture(scope="module")
def hao_adt_names() -> list[str]:
    mudata = pytest.importorskip("mudata")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        mdata = mudata.read_h5mu(HAO)
    return list(mdata.mod["adt"].var_names)


def _status(name: str, table=None) -> tuple[str, object, tuple[str, ...]]:
    row = match_proteins([name], table).iloc[0]
    return row["status"], row["table_protein"], row["genes"]


def test_packaged_table_is_well_formed():
    raw = pd.read_csv(
        REPO / "src" / "scmosaic" / "pp" / "data" / "human_adt_genes.csv",
        dtype=str,
        keep_default_na=False,
    )
    assert list(raw.columns) == ["protein", "genes", "aliases"]
    assert len(raw) >= 300
    assert raw["protein"].is_unique
    lut = load_adt_gene_table()
    assert lut["key"].is_unique
    assert set(lut.columns) == {"protein", "key", "genes", "ignored"}
    assert lut.loc[lut["ignored"], "genes"].map(len).eq(0).all()
    genes = {g for gs in lut["genes"] for g in gs}
    assert all(g == g.strip() and g.upper() == g for g in genes)


def test_hao_panel_coverage(hao_adt_names):
    assert len(hao_adt_names) == 224
    res = match_proteins(hao_adt_names)
    unmatched = res.loc[res["status"] == "unmatched", "protein"].tolist()
    assert not unmatched, f"unmatched Hao ADTs: {unmatched}"
    assert (res["status"] == "linked").sum() >= 190


@pytest.mark.parametrize(
    ("name", "genes"),
    [
        ("cd4.1", ("CD4",)),
        ("cd4.2", ("CD4",)),
        ("cd41", ("ITGA2B",)),
        ("CD4-1", ("CD4",)),
        ("cd45.1", ("PTPRC",)),
        ("cd11b.2", ("ITGAM",)),
        ("cd3.1", ("CD3D", "CD3E", "CD3G")),
        ("cd8", ("CD8A", "CD8B")),
        ("cd8a", ("CD8A",)),
        ("CD3_TotalSeqB", ("CD3D", "CD3E", "CD3G")),
        ("CD8a_TotalSeqB", ("CD8A",)),
        ("PD-1_TotalSeqB", ("PDCD1",)),
        ("CD45RA-TotalSeqC", ("PTPRC",)),
        ("CD127 TotalSeqA", ("IL7R",)),
        ("hla.dr", ("HLA-DRA", "HLA-DRB1", "HLA-DRB3", "HLA-DRB4", "HLA-DRB5")),
        ("HLADR", ("HLA-DRA", "HLA-DRB1", "HLA-DRB3", "HLA-DRB4", "HLA-DRB5")),
        ("  hla_DR ", ("HLA-DRA", "HLA-DRB1", "HLA-DRB3", "HLA-DRB4", "HLA-DRB5")),
        ("CD11a/CD18", ("ITGAL", "ITGB2")),
        ("cd66a.c.e", ("CEACAM1", "CEACAM6", "CEACAM5")),
        ("TCR Vδ2", ("TRDV2",)),
        ("tcr.v.24.j.18", ("TRAV10", "TRAJ18")),
        ("B220 (CD45R)", ("PTPRC",)),
        ("MHCII (HLA-DR)", ("HLA-DRA", "HLA-DRB1", "HLA-DRB3", "HLA-DRB4", "HLA-DRB5")),
        ("IL7Ralpha (CD127)", ("IL7R",)),
        ("PD-1 (CD279)", ("PDCD1",)),
        ("CCR7", ("CCR7",)),
        ("igm", ("IGHM",)),
    ],
)
def test_linked_names(name, genes):
    status, _, found = _status(name)
    assert status == "linked"
    assert found == genes


@pytest.mark.parametrize(
    "name",
    ["IgG1", "IgG2a_control_TotalSeqB", "Mouse IgG1, κ isotype Ctrl", "Rat-IgG2b"],
)
def test_isotypes_are_ignored(name):
    assert _status(name)[0] == "ignored"


@pytest.mark.parametrize("name", ["cd4x", "cd", "cd4a", "cd45r.a.b", "", "foo"])
def test_no_partial_matches(name):
    assert _status(name)[0] == "unmatched"


def test_no_prefix_matching_with_custom_table():
    table = {"CD41": "ITGA2B", "CD45": "PTPRC"}
    assert _status("cd4.1", table)[0] == "unmatched"
    assert _status("cd4", table)[0] == "unmatched"
    assert _status("CD45.2", table)[2] == ("PTPRC",)


def test_normalize_feature_name():
    assert normalize_feature_name("HLA-DR") == "hla.dr"
    assert normalize_feature_name("CD11a/CD18") == "cd11a.cd18"
    assert normalize_feature_name("CD3_TotalSeqB") == "cd3"
    # CITE-seq-Count / Cell Ranger decorations: ADT_ prefix, TotalSeq catalogue number
    assert normalize_feature_name("ADT_CD102_A0104") == "cd102"
    assert normalize_feature_name("CD3-B0034") == "cd3"
    assert normalize_feature_name("adt.CD4") == "cd4"
    assert normalize_feature_name("CD45RA") == "cd45ra"  # no catalogue number to strip
    assert normalize_feature_name(" CD24_TotalA ") == "cd24"
    assert normalize_feature_name("TCR Vα24-Jα18") == "tcr.v.24.j.18"
    assert normalize_feature_name("(CD45R)") == "cd45r"


def _disagreements(names, ours, theirs) -> tuple[list[tuple[str, tuple, tuple]], int]:
    both = (ours["status"] == "linked") & (theirs["status"] == "linked")
    rows = [
        (names[i], ours["genes"][i], theirs["genes"][i])
        for i in both[both].index
        if not set(ours["genes"][i]) & set(theirs["genes"][i])
    ]
    return rows, int(both.sum())


def test_agreement_with_maxfuse(hao_adt_names):
    with pytest.warns(UserWarning, match="ambiguous"):
        maxfuse = load_adt_gene_table(_shared(MAXFUSE), on_ambiguous="drop")
    ours = match_proteins(hao_adt_names)
    theirs = match_proteins(hao_adt_names, maxfuse)
    rows, n_both = _disagreements(hao_adt_names, ours, theirs)
    print(f"\nlinked by both: {n_both}; disagreements: {len(rows)}")
    for protein, a, b in rows:
        print(f"  {protein}: ours={'/'.join(a)} maxfuse={'/'.join(b)}")
    assert n_both >= 190
    assert 1 - len(rows) / n_both >= 0.9


def test_load_maxfuse_layout():
    with pytest.raises(ValueError, match="integrin.7"):
        load_adt_gene_table(_shared(MAXFUSE))
    with pytest.warns(UserWarning):
        lut = load_adt_gene_table(MAXFUSE, on_ambiguous="drop")
    assert lut["ignored"].any()
    assert not lut["key"].str.contains("\ufeff").any()
    assert _status("CD80", lut)[2] == ("CD80",)


def test_load_teaseq_layout():
    lut = load_adt_gene_table(_shared(TEASEQ))
    assert len(lut) == 11
    assert _status("CD8a", lut)[2] == ("CD8A",)
    assert _status("HLA-DR", lut)[2] == ("HLA-DRA",)


def test_load_totalvi_mouse_layout():
    lut = load_adt_gene_table(_shared(TOTALVI))
    assert _status("CD55_(DAF)_TotalA", lut)[2] == ("Cd55",)
    assert _status("CD127 (IL-7Ra)", lut)[2] == ("Il7r",)
    assert _status("H-2Kb_bound_to_SIINFEKL_TotalA", lut)[0] == "ignored"


def test_load_dict_and_dataframe():
    lut = load_adt_gene_table({"CD3": "CD3D/CD3E", "CD16": ["FCGR3A", "FCGR3B"], "IgG1": "Ignore"})
    assert lut["genes"].tolist() == [("CD3D", "CD3E"), ("FCGR3A", "FCGR3B"), ()]
    assert lut["ignored"].tolist() == [False, False, True]
    frame = pd.DataFrame({"Protein": ["CD19"], "Genes": ["CD19"], "Aliases": ["B4"]})
    assert load_adt_gene_table(frame)["key"].tolist() == ["cd19", "b4"]
    assert match_proteins(["b4"], frame)["genes"].iloc[0] == ("CD19",)


def test_bad_tables():
    with pytest.raises(ValueError, match="Cannot recognise the columns"):
        load_adt_gene_table(pd.DataFrame({"x": ["CD3"], "y": ["CD3E"]}))
    with pytest.raises(ValueError, match="empty"):
        load_adt_gene_table(pd.DataFrame({"protein": [], "genes": []}))
    with pytest.raises(ValueError, match="empty"):
        load_adt_gene_table({})
    with pytest.raises(ValueError, match="'cd3'"):
        load_adt_gene_table({"CD3": "CD3E", " cd3_TotalSeqA": "CD3D"})
    with pytest.raises(ValueError, match="on_ambiguous"):
        load_adt_gene_table({"CD3": "CD3E"}, on_ambiguous="first")
    with pytest.raises(FileNotFoundError):
        load_adt_gene_table("/nonexistent/adt_table.csv")
