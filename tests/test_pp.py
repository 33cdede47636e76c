import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import shared_file
from mudata import MuData
from scipy import sparse

import scmosaic
from scmosaic._stats import feature_mean_std, zscore
from scmosaic.pp import link_features, preprocess
from scmosaic.pp._embedding import pca_embedding
from scmosaic.pp._neighbors import averaging_operator


def _cite(n=40, seed=0, n_extra_genes=0):
    rng = np.random.default_rng(seed)
    genes = ["CD3E", "CD3D", "MS4A1", "CD14", "LYZ", "GAPDH"]
    genes += [f"G{i}" for i in range(n_extra_genes)]
    proteins = ["CD3_TotalSeqB", "CD20", "CD14", "IgG1_isotype", "NotAProtein"]
    rna = ad.AnnData(
        sparse.csr_matrix(rng.poisson(3, (n, len(genes))).astype(np.float32)),
        var=pd.DataFrame(index=genes),
        obs=pd.DataFrame(index=[f"r{i}" for i in range(n)]),
    )
    adt = ad.AnnData(
        rng.poisson(20, (n + 5, len(proteins))).astype(np.float32),
        var=pd.DataFrame(index=proteins),
        obs=pd.DataFrame(index=[f"a{i}" for i in range(n + 5)]),
    )
    return MuData({"rna": rna, "adt": adt})


def test_link_features_table_report_and_keys():
    mdata = _cite()
    before = {m: set(a.obsm) for m, a in mdata.mod.items()}
    report = link_features(mdata, "adt", "rna", smooth_neighbors=0)
    status = dict(zip(report["protein"], report["status"], strict=True))
    assert status["CD3_TotalSeqB"] == "linked"
    assert status["CD20"] == "linked" and status["CD14"] == "linked"
    assert status["NotAProtein"] == "unmatched"
    assert status["IgG1_isotype"] in ("ignored", "unmatched")
    linked_rna = mdata["rna"].obsm["linked_adt"]
    linked_adt = mdata["adt"].obsm["linked_rna"]
    # CD3 -> CD3D and CD3E present: two pairs; CD20 -> MS4A1; CD14 -> CD14
    assert list(linked_rna.columns) == list(linked_adt.columns)
    assert set(linked_rna.columns) == {
        "CD3_TotalSeqB:CD3E", "CD3_TotalSeqB:CD3D", "CD20:MS4A1", "CD14:CD14"
    }  # fmt: skip
    assert linked_adt.shape == (45, 4) and linked_rna.shape == (40, 4)
    np.testing.assert_allclose(linked_rna.to_numpy().mean(0), 0, atol=1e-5)
    after = {m: set(a.obsm) for m, a in mdata.mod.items()}
    assert after == {"rna": before["rna"] | {"linked_adt"}, "adt": before["adt"] | {"linked_rna"}}


def test_link_features_reference_normalisation_exact():
    mdata = _cite()
    link_features(
        mdata, "adt", "rna", table={"CD20": "MS4A1", "CD14": "CD14"},
        normalization="reference", smooth_neighbors=0, clip=None,
    )  # fmt: skip
    counts = mdata["rna"][:, ["MS4A1", "CD14"]].X.toarray().astype(np.float64)
    target = max(np.median(counts.sum(1)), 20.0)
    lib = counts.sum(1, keepdims=True)
    expected = np.log1p(np.divide(counts * target, lib, out=np.zeros_like(counts), where=lib > 0))
    expected = (expected - expected.mean(0)) / expected.std(0, ddof=1)
    np.testing.assert_allclose(mdata["rna"].obsm["linked_adt"].to_numpy(), expected, rtol=1e-4)


def test_link_features_multi_gene_sum_and_names():
    mdata = _cite()
    link_features(mdata, "adt", "rna", multi_gene="sum", smooth_neighbors=0)
    assert "CD3_TotalSeqB:CD3D/CD3E" in mdata["rna"].obsm["linked_adt"].columns
    shared = _cite()
    shared.mod["adt"].var_names = ["CD3E", "CD14", "x1", "x2", "x3"]
    report = link_features(shared, "adt", "rna", by="names", smooth_neighbors=0)
    assert report["status"].tolist()[:3] == ["linked", "linked", "not_in_other"]


def test_link_features_errors():
    mdata = _cite()
    with pytest.raises(ValueError, match="No feature of 'adt' links"):
        link_features(mdata, "adt", "rna", table={"CD999": "NOPE"}, smooth_neighbors=0)
    with pytest.raises(KeyError, match="'protein'"):
        link_features(mdata, "protein", "rna")
    bad = _cite()
    bad.mod["adt"].X[0, 0] = -1
    with pytest.raises(ValueError, match="'adt' must be finite and non-negative"):
        link_features(bad, "adt", "rna", smooth_neighbors=0)


def test_smoothing_improves_anchor_precision():
    """On the Hao subset, kNN smoothing makes minibatch MNN anchors more label-consistent."""
    import torch

    from scmosaic.metrics import anchor_precision
    from scmosaic.model._losses import mutual_nearest_neighbors

    mdata = scmosaic.datasets.hide_pairing(scmosaic.datasets.hao2021_pbmc_cite())
    labels = mdata["rna"].obs["celltype"].to_numpy(), mdata["adt"].obs["celltype"].to_numpy()
    precision = {}
    for k in (0, 15):
        link_features(mdata, "adt", "rna", smooth_neighbors=k)
        i, j = mutual_nearest_neighbors(
            torch.tensor(mdata["rna"].obsm["linked_adt"].to_numpy()),
            torch.tensor(mdata["adt"].obsm["linked_rna"].to_numpy()),
            k=30,
        )
        precision[k] = anchor_precision(i.numpy(), j.numpy(), *labels)
    assert precision[15] > precision[0] + 0.05


def test_link_features_smoothing_is_the_shared_knn_average():
    """Smoothing = the kNN average over the shared PCA embedding of all counts (30 PCs)."""
    mdata = _cite(n=300, n_extra_genes=40)
    link_features(mdata, "adt", "rna", smooth_neighbors=0, clip=None)
    keys = {"rna": "linked_adt", "adt": "linked_rna"}
    unsmoothed = {m: mdata[m].obsm[k].to_numpy(np.float64) for m, k in keys.items()}
    link_features(mdata, "adt", "rna", smooth_neighbors=10, clip=None)
    for m, key in keys.items():
        pcs = pca_embedding(sparse.csr_matrix(mdata[m].X), 30, clip=10.0)
        # a row-stochastic average commutes with the per-column z-score
        smoothed = averaging_operator(pcs, 10) @ unsmoothed[m]
        expected = zscore(smoothed, *feature_mean_std(smoothed))
        np.testing.assert_allclose(mdata[m].obsm[key].to_numpy(), expected, atol=1e-5)
        assert not np.allclose(expected, unsmoothed[m], atol=0.1)


def test_link_features_approximate_knn(monkeypatch):
    import pynndescent

    indexed, original = [], pynndescent.NNDescent

    def spy(data, *args, **kwargs):
        indexed.append(len(data))
        return original(data, *args, **kwargs)

    monkeypatch.setattr(pynndescent, "NNDescent", spy)
    mdata = _cite(n=400, n_extra_genes=40)
    link_features(mdata, "adt", "rna", smooth_neighbors=10)
    exact = mdata["rna"].obsm["linked_adt"].to_numpy()
    assert indexed == []
    link_features(mdata, "adt", "rna", smooth_neighbors=10, knn_method="approximate")
    assert indexed == [405, 400]  # adt then rna: the same search as cca_links
    approximate = mdata["rna"].obsm["linked_adt"].to_numpy()
    for j in range(exact.shape[1]):
        assert np.corrcoef(exact[:, j], approximate[:, j])[0, 1] > 0.9
    with pytest.raises(ValueError, match="knn_method"):
        link_features(mdata, "adt", "rna", knn_method="fast")


def test_preprocess_new_object_hvg_and_layers():
    mdata = _cite(n=200, n_extra_genes=200)
    x_before = mdata["rna"].X.copy()
    out = preprocess(mdata, n_top_genes=50)
    assert out is not mdata
    assert (mdata["rna"].X != x_before).nnz == 0
    assert out["rna"].n_vars == 50 and out["adt"].n_vars == 5
    np.testing.assert_array_equal(out["adt"].layers["counts"].toarray(), mdata["adt"].X)
    lib = mdata["adt"].X.sum(1, keepdims=True)
    np.testing.assert_allclose(
        out["adt"].X.toarray(), np.log1p(mdata["adt"].X / lib * 1e4), rtol=1e-5
    )
    with pytest.raises(ValueError, match="kind of modality 'mystery'"):
        preprocess(MuData({"mystery": mdata["rna"].copy(), "rna": mdata["rna"].copy()}))


def test_hide_pairing_protocol():
    mdata = scmosaic.datasets.hao2021_pbmc_cite()
    assert mdata["rna"].shape == (1200, 500) and mdata["adt"].shape == (1200, 224)
    unpaired = scmosaic.datasets.hide_pairing(mdata, seed=0)
    rna, adt = unpaired["rna"], unpaired["adt"]
    assert rna.n_obs == adt.n_obs == 800
    assert not set(rna.obs_names) & set(adt.obs_names)
    assert set(rna.obs["cell_id"]) == set(adt.obs["cell_id"])
    assert (rna.obs["cell_id"].to_numpy() != adt.obs["cell_id"].to_numpy()).mean() > 0.9
    halves = scmosaic.datasets.hide_pairing(mdata, mode="halves")
    assert not set(halves["rna"].obs["cell_id"]) & set(halves["adt"].obs["cell_id"])


def test_real_10x_names_link():
    import anndata

    adata = anndata.read_h5ad(shared_file("scvi_pbmc_cite_200", "pbmc_10k_protein_v3.h5ad"))
    proteins = list(adata.uns["protein_names"])
    table = scmosaic.pp.match_proteins(proteins, scmosaic.pp.load_adt_gene_table())
    assert (table["status"] == "linked").all(), table[table["status"] != "linked"]


def test_smoothing_works_beyond_small_data():
    """kNN smoothing on > 4,096 cells (where scanpy switches neighbour back-ends)."""
    mdata = _cite(n=5000, n_extra_genes=40)
    link_features(mdata, "adt", "rna", smooth_neighbors=15)
    linked = mdata["rna"].obsm["linked_adt"].to_numpy()
    assert linked.shape == (5000, 4) and np.isfinite(linked).all()
