import anndata as ad
import mudata
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
    link_features(mdata, "adt", "rna", smooth_neighbors=10, smooth_modalities=list(keys), clip=None)
    for m, key in keys.items():
        pcs = pca_embedding(sparse.csr_matrix(mdata[m].X), 30, clip=10.0)
        # a row-stochastic average commutes with the per-column z-score
        smoothed = averaging_operator(pcs, 10) @ unsmoothed[m]
        expected = zscore(smoothed, *feature_mean_std(smoothed))
        np.testing.assert_allclose(mdata[m].obsm[key].to_numpy(), expected, atol=1e-5)
        assert not np.allclose(expected, unsmoothed[m], atol=0.1)


def test_link_features_smooths_only_the_named_modalities():
    """Default: a table's gene side only; shared names: both; else the modalities named."""
    mdata = _cite(n=300, n_extra_genes=40)
    keys = {"rna": "linked_adt", "adt": "linked_rna"}
    runs = {}
    for name, kwargs in {
        "none": {"smooth_neighbors": 0},
        "both": {"smooth_neighbors": 10, "smooth_modalities": ("adt", "rna")},
        "default": {"smooth_neighbors": 10},
        "rna": {"smooth_neighbors": 10, "smooth_modalities": "rna"},
        "rna list": {"smooth_neighbors": 10, "smooth_modalities": ["rna"]},
        "names": {"smooth_neighbors": 10, "by": "names"},
        "names, none": {"smooth_neighbors": 0, "by": "names"},
    }.items():
        link_features(mdata, "adt", "rna", clip=None, **kwargs)
        runs[name] = {m: mdata[m].obsm[k].to_numpy() for m, k in keys.items()}
    for name in ("default", "rna", "rna list"):
        np.testing.assert_array_equal(runs[name]["rna"], runs["both"]["rna"])
        np.testing.assert_array_equal(runs[name]["adt"], runs["none"]["adt"])
    assert not np.allclose(runs["both"]["adt"], runs["none"]["adt"], atol=0.1)
    for m in keys:  # shared names: both sides smoothed
        assert not np.allclose(runs["names"][m], runs["names, none"][m], atol=0.1)
    with pytest.raises(ValueError, match="smooth_modalities.*'atac'.*'adt' and 'rna'"):
        link_features(mdata, "adt", "rna", smooth_modalities=["rna", "atac"])


def test_link_features_approximate_knn(ivf_calls):
    mdata = _cite(n=400, n_extra_genes=40)
    both = ("adt", "rna")
    link_features(mdata, "adt", "rna", smooth_neighbors=10, smooth_modalities=both)
    exact = mdata["rna"].obsm["linked_adt"].to_numpy()
    assert ivf_calls == []
    link_features(
        mdata, "adt", "rna", smooth_neighbors=10, smooth_modalities=both, knn_method="approximate"
    )
    assert ivf_calls == [10, 10]  # adt (405 cells), then rna (400): 40 training cells a list
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
    # proteins: per-cell CLR, recorded to be scaled per panel; RNA: normalize_total + log1p
    x = mdata["adt"].X
    geometric_mean = np.exp(np.log1p(x).mean(1, keepdims=True))
    np.testing.assert_allclose(out["adt"].X.toarray(), np.log1p(x / geometric_mean), rtol=1e-5)
    assert out["adt"].uns["scmosaic_preprocess"]["normalization"] == "clr"
    assert out["adt"].uns["scmosaic_preprocess"]["scale"] == "modality"
    assert out["rna"].uns["scmosaic_preprocess"]["normalization"] == "log1p"
    assert out["rna"].uns["scmosaic_preprocess"]["scale"] == "feature"
    as_rna = preprocess(mdata, n_top_genes=50, protein_normalization="log1p")
    lib = x.sum(1, keepdims=True)
    np.testing.assert_allclose(as_rna["adt"].X.toarray(), np.log1p(x / lib * 1e4), rtol=1e-5)
    assert as_rna["adt"].uns["scmosaic_preprocess"]["scale"] == "feature"
    np.testing.assert_array_equal(as_rna["rna"].X.toarray(), out["rna"].X.toarray())
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


# ------------------------------------------------------------------ data stage and bad inputs


def test_preprocess_refuses_log_normalised_data():
    mdata = _cite(n=60, n_extra_genes=20)
    processed = preprocess(mdata, n_top_genes=None)
    assert processed["rna"].X.max() > 1  # log1p of normalised counts: non-integer, < 20
    with pytest.raises(ValueError, match="'rna' looks log-normalised already") as err:
        preprocess(processed, n_top_genes=None)
    assert "counts_layer='<layer>'" in str(err.value) and "'counts'" in str(err.value)
    assert "layers={'rna': '<layer>'}" in str(err.value)  # or register it directly
    again = preprocess(processed, counts_layer="counts", n_top_genes=None)  # the fix works
    for m in ("rna", "adt"):
        np.testing.assert_allclose(again[m].X.toarray(), processed[m].X.toarray(), rtol=1e-6)


def test_preprocess_warns_on_non_integer_counts_and_refuses_negative():
    mdata = _cite(n=60)
    mdata.mod["rna"].X = mdata["rna"].X * 7.31  # ambient-corrected-like: non-integer, > 20
    with pytest.warns(UserWarning, match="'rna' does not look like raw counts"):
        preprocess(mdata, n_top_genes=None)
    negative = _cite(n=60)
    negative.mod["adt"].X[0, 0] = -1.0
    with pytest.raises(ValueError, match="'adt' must be finite and non-negative"):
        preprocess(negative)


def test_link_features_checks_the_data_stage():
    mdata = _cite(n=60)
    for adata in mdata.mod.values():
        adata.layers["counts"] = adata.X.copy()
        adata.X = sparse.csr_matrix(np.log1p(adata.X / adata.X.sum(1).reshape(-1, 1) * 1e4))
    with pytest.raises(ValueError, match="'adt' looks log-normalised.*link_features"):
        link_features(mdata, "adt", "rna")
    assert "linked_rna" not in mdata["adt"].obsm
    link_features(mdata, "adt", "rna", counts_layer="counts")
    mdata.mod["rna"].layers["counts"] = mdata["rna"].layers["counts"] * 5.5
    with pytest.warns(UserWarning, match="'rna' does not look like raw counts"):
        link_features(mdata, "adt", "rna", counts_layer="counts")


@pytest.mark.parametrize("smooth", [0, 15])
def test_all_zero_modality_is_a_clear_error(smooth):
    mdata = _cite()
    mdata.mod["rna"].X = sparse.csr_matrix(mdata["rna"].shape, dtype=np.float32)
    with pytest.raises(ValueError, match="Counts of modality 'rna' are all zero"):
        link_features(mdata, "adt", "rna", smooth_neighbors=smooth)  # was an ARPACK error
    with pytest.raises(ValueError, match="Counts of modality 'rna' are all zero"):
        preprocess(mdata)


def test_too_few_cells_are_clear_errors():
    for n in (0, 1):
        mdata = _cite()
        mdata.mod["rna"] = mdata["rna"][:n].copy()
        with pytest.raises(ValueError, match=f"'rna' has {n} cell\\(s\\); link_features needs"):
            link_features(mdata, "adt", "rna")  # was a scikit-learn PCA error
    with pytest.raises(ValueError, match="'rna' is empty \\(0 x 6\\)"):
        preprocess(MuData({"rna": _cite()["rna"][:0].copy()}))
    one = MuData({"rna": _cite(n_extra_genes=20)["rna"][:1].copy()})
    assert preprocess(one, n_top_genes=None)["rna"].n_obs == 1  # per-cell normalisation
    with pytest.raises(ValueError, match="'rna' has 1 cell.*highly variable"):
        preprocess(one, n_top_genes=5)


def test_preprocess_too_few_varying_features_for_seurat_v3():
    """Seurat v3's loess fit crashed Python (scikit-misc) with fewer than 4 varying genes."""
    mdata = _cite(n=30, n_extra_genes=10)
    x = mdata["rna"].X.toarray()
    x[:, 3:] = 2.0  # only three genes vary
    mdata.mod["rna"].X = sparse.csr_matrix(x)
    with pytest.raises(ValueError, match="'rna'.*at least 4 features that vary.*3 of 16"):
        preprocess(mdata, n_top_genes=5)
    with pytest.raises(ValueError, match="'rna': highly variable feature selection.*failed"):
        preprocess(_cite(n=5, n_extra_genes=4), n_top_genes=5)  # loess fails on 5 cells
    assert preprocess(mdata, n_top_genes=None)["rna"].n_vars == 16


def _integer_names(mdata: MuData) -> MuData:
    """The same cells in both modalities, named by shuffled integers (not strings)."""
    rna, adt = mdata["rna"].copy(), mdata["adt"][: mdata["rna"].n_obs].copy()
    names = pd.Index(np.random.default_rng(3).permutation(np.arange(100, 100 + rna.n_obs)))
    with pytest.warns(UserWarning, match="AnnData expects .obs.index to contain strings"):
        rna.obs_names, adt.obs_names = names, names
    return MuData({"rna": rna, "adt": adt})


def test_integer_cell_names(recwarn):
    mdata = _integer_names(_cite())
    recwarn.clear()
    link_features(mdata, "adt", "rna")
    assert mdata["rna"].obsm["linked_adt"].index.equals(mdata["rna"].obs_names)
    out = preprocess(mdata, n_top_genes=None)
    assert list(out["rna"].obs_names) == [str(c) for c in mdata["rna"].obs_names]
    assert list(out["rna"].obsm["linked_adt"].index) == list(out["rna"].obs_names)
    assert not [w for w in recwarn if "str index" in str(w.message)]
    for mode in ("shuffle", "halves"):  # was anndata's "Don't call _normalize_index ..."
        unpaired = scmosaic.datasets.hide_pairing(mdata, mode=mode)
        for m in ("rna", "adt"):
            rows = mdata[m].obs_names.get_indexer(unpaired[m].obs["cell_id"].astype(int))
            np.testing.assert_array_equal(_dense(unpaired[m].X), _dense(mdata[m].X)[rows])
    assert not [w for w in recwarn if "str index" in str(w.message)]


def _dense(x) -> np.ndarray:
    return x.toarray() if sparse.issparse(x) else np.asarray(x)


def _backed_pair(tmp_path, n=300):
    mdata = _cite(n=n, n_extra_genes=40)
    path = tmp_path / "cite.h5mu"
    mdata.write(path)
    return mdata, mudata.read_h5mu(path, backed=True)


@pytest.mark.parametrize("smooth", [0, 10])
def test_link_features_on_backed_counts(tmp_path, monkeypatch, smooth):
    """Backed counts (was "not numeric (object)"): read in chunks, same result as in memory."""
    monkeypatch.setattr(scmosaic.pp._inputs, "CHUNK_ROWS", 64)  # several chunks
    memory, backed = _backed_pair(tmp_path)
    assert backed["rna"].isbacked
    for mdata in (memory, backed):
        link_features(mdata, "adt", "rna", smooth_neighbors=smooth)
    for m, key in (("rna", "linked_adt"), ("adt", "linked_rna")):
        np.testing.assert_array_equal(backed[m].obsm[key], memory[m].obsm[key])


def test_preprocess_on_backed_counts(tmp_path):
    memory, backed = _backed_pair(tmp_path)
    ours, expected = preprocess(backed, n_top_genes=20), preprocess(memory, n_top_genes=20)
    for m in ("rna", "adt"):
        assert list(ours[m].var_names) == list(expected[m].var_names)
        np.testing.assert_array_equal(ours[m].X.toarray(), expected[m].X.toarray())
    bad = memory.copy()
    bad.mod["adt"].X = np.log1p(bad["adt"].X)
    bad.write(tmp_path / "log.h5mu")
    with pytest.raises(ValueError, match="'adt' looks log-normalised"):
        preprocess(mudata.read_h5mu(tmp_path / "log.h5mu", backed=True))


def test_link_and_preprocess_options_are_checked():
    mdata = _cite()
    for kwargs, words in [
        ({"smooth_neighbors": -1}, "smooth_neighbors"),
        ({"smooth_neighbors": 2.5}, "smooth_neighbors"),
        ({"normalization": "total"}, "normalization"),
        ({"multi_gene": "max"}, "multi_gene"),
        ({"by": "fuzzy"}, "by must be"),
        ({"clip": float("nan")}, "clip"),
        ({"min_target_sum": -1}, "min_target_sum"),
    ]:
        with pytest.raises(ValueError, match=words):
            link_features(mdata, "adt", "rna", **kwargs)
    for kwargs, words in [
        ({"n_top_genes": 0}, "n_top_genes"),
        ({"target_sum": 0}, "target_sum"),
        ({"kinds": {"rna": "dna"}}, "kinds\\['rna'\\]"),
        ({"protein_normalization": "arcsinh"}, "protein_normalization"),
    ]:
        with pytest.raises(ValueError, match=words):
            preprocess(mdata, **kwargs)
