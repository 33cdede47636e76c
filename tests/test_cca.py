from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mudata import MuData
from scipy import sparse
from sklearn.cross_decomposition import CCA

from scmosaic._keys import CCA_UNS_KEY
from scmosaic.metrics import anchor_precision
from scmosaic.model._losses import mutual_nearest_neighbors
from scmosaic.pp import cca_links, diagonal_cca, mutual_nearest_pairs
from scmosaic.pp._cca_algebra import fit_cca

SMALL = {"n_pcs": 10, "n_components": 5}


def make_latent_pair(
    n_a: int = 300,
    n_b: int = 260,
    d_a: int = 80,
    d_b: int = 40,
    n_linked: int = 4,
    link_noise: float = 2.5,
    n_types: int = 4,
    seed: int = 0,
) -> MuData:
    """Unpaired counts of two modalities driven by one latent: cell type + 2 continuous dims.

    Each modality is a different random linear map of the latent (log-rate of Poisson
    counts, CSR). The linked features are a few very noisy shared linear functions of the
    latent, written like ``link_features`` does (``linked_adt`` / ``linked_rna``).
    """
    rng = np.random.default_rng(seed)
    centres = 3.0 * np.eye(n_types, 4) + rng.normal(0, 0.3, (n_types, 4))
    link_map = rng.normal(0, 1, (6, n_linked))

    def modality(n: int, d: int, name: str) -> tuple[ad.AnnData, np.ndarray]:
        types = rng.integers(0, n_types, n)
        latent = np.hstack([centres[types], rng.normal(0, 0.5, (n, 2))])
        rate = np.exp(1.0 + 0.6 * latent @ rng.normal(0, 1, (6, d)) / np.sqrt(6))
        counts = sparse.csr_matrix(rng.poisson(np.minimum(rate, 200)).astype(np.float32))
        linked = latent @ link_map + rng.normal(0, link_noise, (n, n_linked))
        obs = pd.DataFrame(
            {"celltype": pd.Categorical(np.array(list("ABCDEFG"))[types])},
            index=[f"{name}_cell{i}" for i in range(n)],
        )
        var = pd.DataFrame(index=[f"{name}_f{j}" for j in range(d)])
        return ad.AnnData(counts, obs=obs, var=var), linked.astype(np.float32)

    rna, linked_rna = modality(n_a, d_a, "rna")
    adt, linked_adt = modality(n_b, d_b, "adt")
    rna.obsm["linked_adt"] = linked_rna
    adt.obsm["linked_rna"] = linked_adt
    return MuData({"rna": rna, "adt": adt})


def _precision(mdata: MuData, key_a: str, key_b: str, k: int = 15) -> float:
    ia, ib, _ = mutual_nearest_pairs(mdata["rna"].obsm[key_a], mdata["adt"].obsm[key_b], k)
    return anchor_precision(
        ia, ib, mdata["rna"].obs["celltype"].to_numpy(), mdata["adt"].obs["celltype"].to_numpy()
    )


def _snapshot(mdata: MuData) -> dict:
    snap = {"mdata_obsm": set(mdata.obsm), "mdata_uns": set(mdata.uns), "shape": mdata.shape}
    for mod, adata in mdata.mod.items():
        x = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
        snap[mod] = {
            "X": x.copy(),
            "obs": adata.obs.copy(),
            "var": adata.var.copy(),
            "obsm": {k: np.asarray(v).copy() for k, v in adata.obsm.items()},
            "uns": set(adata.uns),
            "layers": set(adata.layers),
            "obsp": set(adata.obsp),
        }
    return snap


def _assert_only_cca_added(before: dict, mdata: MuData, key: str = "X_cca") -> None:
    assert set(mdata.obsm) == before["mdata_obsm"] and set(mdata.uns) == before["mdata_uns"]
    assert mdata.shape == before["shape"]
    for mod, adata in mdata.mod.items():
        old = before[mod]
        x = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
        np.testing.assert_array_equal(x, old["X"])
        pd.testing.assert_frame_equal(adata.obs, old["obs"])
        pd.testing.assert_frame_equal(adata.var, old["var"])
        assert set(adata.obsm) == set(old["obsm"]) | {key}
        for k, v in old["obsm"].items():
            np.testing.assert_array_equal(np.asarray(adata.obsm[k]), v)
        assert set(adata.uns) == old["uns"] | {CCA_UNS_KEY}
        assert set(adata.layers) == old["layers"] and set(adata.obsp) == old["obsp"]


# --------------------------------------------------------------------------------------
# fit_cca and the MNN helper
# --------------------------------------------------------------------------------------


def test_fit_cca_matches_sklearn():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 3)) * np.array([2.0, 1.0, 0.5])
    x = z @ rng.normal(size=(3, 6)) + 0.5 * rng.normal(size=(400, 6))
    y = z @ rng.normal(size=(3, 5)) + 0.5 * rng.normal(size=(400, 5))
    w_x, w_y, m_x, m_y, corr = fit_cca(x, y, 3, regularization=0.0)
    s_x, s_y = (x - m_x) @ w_x, (y - m_y) @ w_y
    ours = [np.corrcoef(s_x[:, i], s_y[:, i])[0, 1] for i in range(3)]
    np.testing.assert_allclose(ours, corr, atol=1e-8)  # correlations = singular values
    np.testing.assert_allclose(np.cov(s_x.T), np.eye(3), atol=1e-8)  # whitened scores
    ref_x, ref_y = CCA(n_components=3, max_iter=5000, tol=1e-10).fit(x, y).transform(x, y)
    theirs = [np.corrcoef(ref_x[:, i], ref_y[:, i])[0, 1] for i in range(3)]
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert np.all(np.diff(corr) <= 0) and corr[0] > 0.9


def test_fit_cca_regularization_and_errors():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(50, 3))
    corr0 = fit_cca(x, y, 2, regularization=0.0)[4]
    corr1 = fit_cca(x, y, 2, regularization=1.0)[4]
    assert np.all(corr1 < corr0)  # the ridge shrinks the correlations
    with pytest.raises(ValueError, match="n_components=4"):
        fit_cca(x, y, 4)
    with pytest.raises(ValueError, match="paired rows"):
        fit_cca(x[:3], y[:3], 3)
    with pytest.raises(ValueError, match="same rows"):
        fit_cca(x, y[:10], 2)


def test_mutual_nearest_pairs_matches_torch_reference():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(40, 5)), rng.normal(size=(30, 5))
    ia, ib, sim = mutual_nearest_pairs(a, b, 5)
    ta, tb = mutual_nearest_neighbors(torch.tensor(a), torch.tensor(b), k=5)
    assert set(zip(ia.tolist(), ib.tolist(), strict=True)) == set(
        zip(ta.tolist(), tb.tolist(), strict=True)
    )
    a_n = a / np.linalg.norm(a, axis=1, keepdims=True)
    b_n = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(sim, (a_n[ia] * b_n[ib]).sum(1))


@given(
    n_a=st.integers(1, 40),
    n_b=st.integers(1, 40),
    k=st.integers(1, 12),
    local_k=st.integers(0, 13),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=40, deadline=None)
def test_mutual_nearest_pairs_local_k_is_the_training_rule(n_a, n_b, k, local_k, seed):
    """The public function and the minibatch anchors select the same pairs."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n_a, 4)), rng.normal(size=(n_b, 4))
    ia, ib, _ = mutual_nearest_pairs(a, b, k, n_neighbors_local=local_k)
    ta, tb = mutual_nearest_neighbors(torch.tensor(a), torch.tensor(b), k=k, local_k=local_k)
    got = list(zip(ia.tolist(), ib.tolist(), strict=True))
    assert len(got) == len(set(got))
    assert set(got) == set(zip(ta.tolist(), tb.tolist(), strict=True))


def _recall(exact: np.ndarray, approx: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(e) & set(a)) / k for e, a in zip(exact, approx, strict=True)]))


def test_approximate_neighbours_agree_with_exact(ivf_calls):
    from scmosaic.pp._neighbors import knn_indices

    rng = np.random.default_rng(3)
    data, queries = rng.normal(size=(2000, 8)), rng.normal(size=(300, 8))
    exact = knn_indices(data, queries, 10, "exact")
    assert ivf_calls == []
    approx = knn_indices(data, queries, 10, "approximate", seed=1)
    assert ivf_calls == [50]  # 4 sqrt(2000) = 178 lists, capped so each has 40 training cells
    assert approx.shape == (300, 10) and _recall(exact, approx) >= 0.9  # random: the hard case
    np.testing.assert_array_equal(approx, knn_indices(data, queries, 10, "approximate", seed=1))
    import faiss

    threads = faiss.omp_get_max_threads()
    try:  # the seeded index does not depend on the number of threads
        faiss.omp_set_num_threads(1)
        one_thread = knn_indices(data, queries, 10, "approximate", seed=1)
    finally:
        faiss.omp_set_num_threads(threads)
    np.testing.assert_array_equal(approx, one_thread)
    self_knn = knn_indices(data, None, 5, "approximate")
    assert (self_knn[:, 0] == np.arange(2000)).mean() > 0.99  # each cell is its own nearest
    # a set too small for two lists of 40 training cells is scanned whole: exact
    small = knn_indices(data[:79], queries, 5, "approximate")
    np.testing.assert_array_equal(small, knn_indices(data[:79], queries, 5, "exact"))
    assert len(ivf_calls) == 4  # the four searches above, none for the small set
    with pytest.raises(ValueError, match="knn_method"):
        knn_indices(data, queries, 10, "fast")


def test_auto_search_is_exact_up_to_the_threshold(ivf_calls, monkeypatch):
    from scmosaic.pp import _neighbors

    rng = np.random.default_rng(4)
    data, queries = rng.normal(size=(400, 6)), rng.normal(size=(50, 6))
    exact = _neighbors.knn_indices(data, queries, 7, "exact")
    np.testing.assert_array_equal(_neighbors.knn_indices(data, queries, 7, "auto"), exact)
    assert ivf_calls == []
    monkeypatch.setattr(_neighbors, "EXACT_MAX_CELLS", 399)
    assert _neighbors.resolved_knn_method("auto", 400) == "approximate"
    assert _recall(exact, _neighbors.knn_indices(data, queries, 7, "auto")) >= 0.9
    assert ivf_calls == [10]


def test_approximate_search_falls_back_where_probed_lists_are_short(monkeypatch):
    from scmosaic.pp import _neighbors

    # 20 tight, far-apart clusters of 20 cells in 10 lists: one probed list holds far fewer
    # than k = 200 cells, so every query is answered by the exact fallback
    rng = np.random.default_rng(5)
    centres = rng.normal(scale=100.0, size=(20, 3))
    data = np.repeat(centres, 20, axis=0) + rng.normal(scale=0.1, size=(400, 3))
    monkeypatch.setattr(_neighbors, "IVF_PROBES", 1)
    approx = _neighbors.knn_indices(data, data[::7], 200, "approximate")
    assert (approx >= 0).all()
    assert _recall(_neighbors.knn_indices(data, data[::7], 200, "exact"), approx) == 1.0


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    n_queries=st.integers(0, 40),
    dim=st.integers(1, 12),
    k=st.integers(1, 40),
    seed=st.integers(0, 3),
)
def test_approximate_search_returns_valid_indices(n, n_queries, dim, k, seed):
    from scmosaic.pp._neighbors import knn_indices

    rng = np.random.default_rng(seed)
    data, queries = rng.normal(size=(n, dim)), rng.normal(size=(n_queries, dim))
    indices = knn_indices(data, queries, k, "approximate", seed)
    assert indices.shape == (n_queries, min(k, n))
    assert ((indices >= 0) & (indices < n)).all()
    assert all(len(set(row)) == row.size for row in indices)  # no cell twice


def test_cca_links_approximate_search_recovers_pivots(ivf_calls):
    mdata = make_latent_pair()
    summary = cca_links(mdata, init="links", knn_method="approximate", smooth_neighbors=10, **SMALL)
    assert summary["knn_method"] == "approximate"
    assert len(ivf_calls) >= 2 * 4  # initial matching + 3 rounds, both directions
    assert _precision(mdata, "X_cca", "X_cca") >= 0.9
    with pytest.raises(ValueError, match="knn_method"):
        cca_links(mdata, init="labels", labels_key="celltype", knn_method="fast", **SMALL)


# --------------------------------------------------------------------------------------
# cca_links
# --------------------------------------------------------------------------------------


def test_cca_links_recovers_pivots_from_weak_links():
    mdata = make_latent_pair()
    before = _snapshot(mdata)
    initial = _precision(mdata, "linked_adt", "linked_rna")
    summary = cca_links(mdata, ("rna", "adt"), init="links", **SMALL)
    final = _precision(mdata, "X_cca", "X_cca")
    assert final >= 0.9 and final > initial + 0.2, (initial, final)
    _assert_only_cca_added(before, mdata)
    for mod, n in (("rna", 300), ("adt", 260)):
        scores = mdata[mod].obsm["X_cca"]
        assert scores.shape == (n, 5) and scores.to_numpy().dtype == np.float32
        assert list(scores.index) == list(mdata[mod].obs_names)
        np.testing.assert_allclose(scores.to_numpy().std(0, ddof=1), 1, atol=1e-4)
        assert mdata[mod].uns[CCA_UNS_KEY] == summary
    assert summary["linked_keys"] == ["linked_adt", "linked_rna"]
    assert len(summary["n_pivots"]) == 4 and summary["n_pcs"] == [10, 10]
    assert len(summary["correlations"]) == 5 and np.all(np.diff(summary["correlations"]) <= 0)


def test_cca_links_labels_and_linked_keys():
    mdata = make_latent_pair(seed=1)
    summary = cca_links(mdata, init="labels", labels_key="celltype", key_added="cc", **SMALL)
    assert summary["labels_key"] == "celltype" and "linked_keys" not in summary
    assert _precision(mdata, "cc", "cc") >= 0.9
    mdata["rna"].obsm["weak"] = mdata["rna"].obsm.pop("linked_adt")
    mdata["adt"].obsm["weak"] = pd.DataFrame(
        mdata["adt"].obsm.pop("linked_rna"), index=mdata["adt"].obs_names
    )
    summary = cca_links(mdata, linked_keys=("weak", "weak"), n_iterations=0, **SMALL)
    assert len(summary["n_pivots"]) == 1 and summary["linked_keys"] == ["weak", "weak"]


def test_cca_links_normalized_dense_input():
    mdata = make_latent_pair(n_a=120, n_b=100, seed=3)
    for adata in mdata.mod.values():
        adata.layers["log"] = np.log1p(adata.X.toarray())
    summary = cca_links(mdata, layer="log", normalized=True, smooth_neighbors=10, **SMALL)
    assert summary["normalized"] and mdata["adt"].obsm["X_cca"].shape == (100, 5)


def test_cca_links_deterministic():
    results = []
    for _ in range(2):
        mdata = make_latent_pair(n_a=150, n_b=120, seed=4)
        cca_links(mdata, init="labels", labels_key="celltype", seed=3, **SMALL)
        results.append([mdata[m].obsm["X_cca"].to_numpy() for m in ("rna", "adt")])
    for first, second in zip(*results, strict=True):
        np.testing.assert_array_equal(first, second)


def test_cca_links_errors():
    mdata = make_latent_pair(n_a=120, n_b=100, seed=5)
    with pytest.raises(KeyError, match="'atac'"):
        cca_links(mdata, ("rna", "atac"))
    with pytest.raises(KeyError, match="missing.*mdata.mod\\['adt'\\]"):
        cca_links(mdata, linked_keys=("linked_adt", "missing"))
    with pytest.raises(NotImplementedError, match='init="none"'):
        cca_links(mdata, init="none")
    with pytest.raises(ValueError, match="labels_key"):
        cca_links(mdata, init="labels")
    with pytest.raises(ValueError, match="Too few pivot pairs"):
        cca_links(make_latent_pair(n_a=18, n_b=16), n_neighbors=1, **SMALL)
    with pytest.raises(ValueError, match="exceeds the principal components"):
        cca_links(mdata, n_pcs=3, n_components=5)
    mdata["adt"].obs["other"] = "x"
    with pytest.raises(KeyError, match="'other' not in mdata.mod\\['rna'\\].obs"):
        cca_links(mdata, init="labels", labels_key="other")
    mdata["rna"].obs["other"] = "y"
    with pytest.raises(ValueError, match="No label of 'other' is shared"):
        cca_links(mdata, init="labels", labels_key="other")
    mdata["adt"].obsm["linked_rna"] = mdata["adt"].obsm["linked_rna"][:, :2]
    with pytest.raises(ValueError, match="same number of columns"):
        cca_links(mdata)
    assert "X_cca" not in mdata["rna"].obsm and CCA_UNS_KEY not in mdata["rna"].uns


# --------------------------------------------------------------------------------------
# diagonal_cca
# --------------------------------------------------------------------------------------


_allow_shared_var_names = pytest.mark.filterwarnings("ignore:var_names are not unique")


def _shared_pair(sparse_input: bool, seed: int = 0) -> MuData:
    rng = np.random.default_rng(seed)
    z_a, z_b = rng.normal(size=(70, 3)), rng.normal(size=(55, 3))
    loading = rng.normal(size=(3, 30))
    x_a = np.exp(z_a @ loading[:, :25] / 2)
    x_b = np.exp(z_b @ loading[:, 5:] / 2)
    x_a = rng.poisson(x_a * (rng.random(x_a.shape) < 0.6)).astype(np.float32)
    x_b = rng.poisson(x_b * (rng.random(x_b.shape) < 0.6)).astype(np.float32)
    genes = np.array([f"g{j}" for j in range(30)])

    def adata(x, names, prefix):
        x = sparse.csr_matrix(x) if sparse_input else x
        obs = pd.DataFrame(index=[f"{prefix}{i}" for i in range(x.shape[0])])
        return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=names))

    return MuData({"rna": adata(x_a, genes[:25], "r"), "atac": adata(x_b, genes[5:], "a")})


def _standardize(x: np.ndarray) -> np.ndarray:
    std = x.std(0, ddof=1)
    std[std == 0] = 1
    return (x - x.mean(0)) / std


@_allow_shared_var_names
def test_diagonal_cca_matches_explicit_svd():
    mdata = _shared_pair(sparse_input=False)
    before = _snapshot(mdata)
    shared = [f"g{j}" for j in range(5, 25)]
    summary = diagonal_cca(mdata, n_components=4, normalized=True, l2_normalize=False)
    _assert_only_cca_added(before, mdata)
    assert summary["shared_features"] == shared and summary["n_shared_features"] == 20
    z_a = _standardize(mdata["rna"][:, shared].X.astype(np.float64))
    z_b = _standardize(mdata["atac"][:, shared].X.astype(np.float64))
    u, s, vt = np.linalg.svd(z_a @ z_b.T)
    np.testing.assert_allclose(summary["singular_values"], s[:4], rtol=1e-6)
    for ours, theirs in ((mdata["rna"].obsm["X_cca"], u[:, :4]), (mdata["atac"].obsm["X_cca"], vt[:4].T)):  # fmt: skip
        for i in range(4):
            assert abs(np.corrcoef(ours.to_numpy()[:, i], theirs[:, i])[0, 1]) > 1 - 1e-5


@_allow_shared_var_names
def test_diagonal_cca_sparse_without_densifying(monkeypatch):
    dense, sparse_mdata = _shared_pair(False, seed=1), _shared_pair(True, seed=1)
    diagonal_cca(dense, n_components=3, seed=2)

    def refuse(*args, **kwargs):
        raise AssertionError("a sparse matrix was densified")

    for cls in (sparse.csr_matrix, sparse.csc_matrix, sparse.csr_array, sparse.csc_array):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
    summary = diagonal_cca(sparse_mdata, n_components=3, seed=2)
    monkeypatch.undo()
    assert summary["l2_normalize"]
    for mod in ("rna", "atac"):
        ours, ref = sparse_mdata[mod].obsm["X_cca"].to_numpy(), dense[mod].obsm["X_cca"].to_numpy()
        np.testing.assert_allclose(np.abs(ours), np.abs(ref), atol=1e-4)


@_allow_shared_var_names
def test_diagonal_cca_data_stage_and_identical_cells():
    mdata = _shared_pair(sparse_input=True)
    for adata in mdata.mod.values():
        adata.layers["log"] = np.log1p(adata.X)
    with pytest.raises(ValueError, match="'rna' looks log-normalised.*diagonal_cca"):
        diagonal_cca(mdata, n_components=3, layer="log")
    diagonal_cca(mdata, n_components=3, layer="log", normalized=True)
    same = _shared_pair(sparse_input=False)
    same.mod["atac"].X = np.tile(same["atac"].X[:1], (55, 1))
    with pytest.raises(ValueError, match="cells of modality 'atac' do not differ"):
        diagonal_cca(same, n_components=3)  # was an ARPACK error


@_allow_shared_var_names
def test_diagonal_cca_errors():
    mdata = _shared_pair(sparse_input=True)
    with pytest.raises(KeyError, match="'adt'"):
        diagonal_cca(mdata, ("rna", "adt"))
    with pytest.raises(KeyError, match="not in mdata.mod\\['rna'\\].var_names"):
        diagonal_cca(mdata, shared_features=["g26"])
    with pytest.raises(ValueError, match="n_components=21"):
        diagonal_cca(mdata, n_components=21)
    mdata["atac"].var_names = [f"x{j}" for j in range(25)]
    with pytest.raises(ValueError, match="share no feature name"):
        diagonal_cca(mdata)


# --------------------------------------------------------------------------------------
# bad inputs: the data stage, degenerate modalities, backed counts
# --------------------------------------------------------------------------------------


def test_cca_links_checks_the_data_stage():
    mdata = make_latent_pair(n_a=120, n_b=100, seed=6)
    for adata in mdata.mod.values():
        adata.layers["log"] = np.log1p(adata.X.toarray())
    before = _snapshot(mdata)
    with pytest.raises(ValueError, match="'rna' looks log-normalised.*cca_links") as err:
        cca_links(mdata, layer="log", **SMALL)
    assert "layer='<layer>'" in str(err.value) and "normalized=True" in str(err.value)
    assert set(mdata["rna"].obsm) == set(before["rna"]["obsm"])
    cca_links(mdata, layer="log", normalized=True, **SMALL)  # the contract: no complaint
    mdata.mod["rna"].layers["ambient"] = mdata["rna"].X.copy()
    mdata.mod["adt"].layers["ambient"] = mdata["adt"].X * 3.7
    with pytest.warns(UserWarning, match="'adt' does not look like raw counts"):
        cca_links(mdata, layer="ambient", **SMALL)


@pytest.mark.parametrize("normalized", [False, True])
def test_cca_links_degenerate_modalities(normalized):
    zero = make_latent_pair(n_a=120, n_b=100, seed=7)
    zero.mod["adt"].X = sparse.csr_matrix(zero["adt"].shape, dtype=np.float32)
    with pytest.raises(ValueError, match="of modality 'adt' are all zero"):
        cca_links(zero, normalized=normalized, **SMALL)
    same = make_latent_pair(n_a=120, n_b=100, seed=7)
    same.mod["rna"].X = sparse.csr_matrix(np.tile(same["rna"].X[:1].toarray(), (120, 1)))
    with pytest.raises(ValueError, match="cells of modality 'rna' do not differ"):
        cca_links(same, normalized=normalized, **SMALL)  # was an ARPACK error
    for n in (0, 1):
        few = make_latent_pair(n_a=120, n_b=100, seed=7)
        few.mod["rna"] = few["rna"][:n].copy()
        with pytest.raises(ValueError, match=f"'rna' has {n} cell\\(s\\); cca_links needs"):
            cca_links(few, init="labels", labels_key="celltype", normalized=normalized, **SMALL)


def test_cca_links_on_backed_counts(tmp_path):
    import mudata

    memory = make_latent_pair(n_a=120, n_b=100, seed=8)
    memory.write(tmp_path / "pair.h5mu")
    backed = mudata.read_h5mu(tmp_path / "pair.h5mu", backed=True)
    assert backed["rna"].isbacked
    results = [cca_links(m, **SMALL) for m in (memory, backed)]  # was "not numeric (object)"
    assert results[0]["correlations"] == results[1]["correlations"]
    for m in ("rna", "adt"):
        np.testing.assert_array_equal(backed[m].obsm["X_cca"], memory[m].obsm["X_cca"])
