"""The building blocks shared by pp (and the model): feature statistics, the PCA embedding and
kNN averaging, group sums, shared docstrings."""

import re

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

import scmosaic
from scmosaic._stats import feature_mean_std, zscore
from scmosaic.pp._embedding import pca_embedding
from scmosaic.pp._group_sums import group_sum_selector
from scmosaic.pp._neighbors import averaging_operator


def _matrix(n=37, p=6, seed=0) -> np.ndarray:
    """Counts-like values with a constant column (index 2) and an all-zero one (index 4)."""
    x = np.random.default_rng(seed).poisson(2.0, (n, p)).astype(np.float64)
    x[:, 2], x[:, 4] = 3.0, 0.0
    return x


class _RowSpy:
    """A matrix that records the number of rows of every slice it is asked for."""

    def __init__(self, x):
        self.x, self.shape, self.rows = x, x.shape, []

    def __getitem__(self, key):
        assert isinstance(key, slice), key
        self.rows.append(len(range(*key.indices(self.shape[0]))))
        return self.x[key]


# --------------------------------------------------------------------------- feature_mean_std


@pytest.mark.parametrize("ddof", [0, 1])
def test_feature_mean_std_dense_is_numpy(ddof):
    x = _matrix()
    mean, std = feature_mean_std(x, ddof=ddof)
    expected = x.std(0, ddof=ddof)
    assert mean.dtype == std.dtype == np.float64
    np.testing.assert_array_equal(mean, x.mean(0))
    # one chunk: the very numbers of np.std; zero-variance columns get 1
    np.testing.assert_array_equal(std[[0, 1, 3, 5]], expected[[0, 1, 3, 5]])
    np.testing.assert_array_equal(std[[2, 4]], [1.0, 1.0])


@pytest.mark.parametrize("chunk_size", [1, 5, 36, 37])
def test_feature_mean_std_chunks_agree(chunk_size):
    x = _matrix()
    mean, std = feature_mean_std(x, chunk_size=chunk_size)
    ref_mean, ref_std = feature_mean_std(x, chunk_size=10_000)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(std, ref_std, rtol=1e-12)


def test_feature_mean_std_chunks_are_stable_with_a_large_offset():
    # 1e8 + noise: a sum-of-squares formula loses every digit of the variance here
    noise = np.random.default_rng(1).normal(size=(500, 3))
    mean, std = feature_mean_std(1e8 + noise, chunk_size=64)
    np.testing.assert_allclose(mean - 1e8, noise.mean(0), atol=1e-7)
    np.testing.assert_allclose(std, noise.std(0, ddof=1), rtol=1e-7)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_feature_mean_std_sparse_is_dense(fmt, monkeypatch):
    x = _matrix()
    ref_mean, ref_std = feature_mean_std(x)
    matrix = sparse.csr_matrix(x).asformat(fmt).astype(np.float32)

    def refuse(*args, **kwargs):
        raise AssertionError("a sparse matrix was densified")

    for cls in (sparse.csr_matrix, sparse.csc_matrix, sparse.coo_matrix):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
    mean, std = feature_mean_std(matrix, chunk_size=8)
    monkeypatch.undo()
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12)
    np.testing.assert_allclose(std, ref_std, rtol=1e-12)


def test_feature_mean_std_dataframe_single_row_and_empty():
    x = _matrix()
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    for got, ref in zip(feature_mean_std(frame), feature_mean_std(x), strict=True):
        np.testing.assert_array_equal(got, ref)
    mean, std = feature_mean_std(x[:1])  # one row, ddof=1: no spread to measure
    np.testing.assert_array_equal(mean, x[0])
    np.testing.assert_array_equal(std, np.ones(x.shape[1]))
    with pytest.raises(ValueError, match="at least one row"):
        feature_mean_std(x[:0])


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_feature_mean_std_backed_reads_chunks(tmp_path, fmt):
    x = _matrix(n=50)
    stored = x.astype(np.float32) if fmt == "dense" else sparse.csr_matrix(x, dtype=np.float32)
    path = tmp_path / "backed.h5ad"
    ad.AnnData(stored).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    try:
        if fmt == "dense":
            assert isinstance(backed.X, h5py.Dataset)
        else:
            assert not sparse.issparse(backed.X)  # anndata's backed sparse dataset
        spy = _RowSpy(backed.X)
        mean, std = feature_mean_std(spy, chunk_size=16)
    finally:
        backed.file.close()
    assert spy.rows == [16, 16, 16, 2]  # never more than a chunk in memory
    ref_mean, ref_std = feature_mean_std(x)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12)
    np.testing.assert_allclose(std, ref_std, rtol=1e-12)


def test_zscore_and_clip():
    x = _matrix()
    z = zscore(x, *feature_mean_std(x))
    with np.errstate(invalid="ignore", divide="ignore"):  # the constant columns
        expected = (x - x.mean(0)) / x.std(0, ddof=1)
    np.testing.assert_array_equal(z[:, [0, 1, 3, 5]], expected[:, [0, 1, 3, 5]])
    np.testing.assert_array_equal(z[:, [2, 4]], 0.0)  # constant columns: centred only
    clipped = zscore(x, *feature_mean_std(x), clip=0.5)
    np.testing.assert_array_equal(clipped, np.clip(z, -0.5, 0.5))


# ------------------------------------------------------------------- PCA embedding, smoothing


def _counts(n=120, p=40, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rate = np.exp(rng.normal(0, 1, (n, 3)) @ rng.normal(0, 0.7, (3, p)))
    x = rng.poisson(rate).astype(np.float32)
    x[:, 0] = 0.0
    x[0, 0] = 50.0  # alone in its column: z-score (n - 1) / sqrt(n) = 10.9, clipped at 10
    return x


def _match_columns(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Equal up to the sign of each principal component."""
    signs = np.sign((ours * theirs).sum(0))
    np.testing.assert_allclose(ours * signs, theirs, atol=2e-3 * np.abs(theirs).max())


def test_pca_embedding_is_scanpys_scaled_pca():
    x = _counts()
    reference = ad.AnnData(x.copy())
    sc.pp.normalize_total(reference, target_sum=1e4)
    sc.pp.log1p(reference)
    sc.pp.scale(reference, max_value=10)  # z-scores (ddof=1), clipped at 10: densified
    assert reference.X.max() == 10 and reference.X.min() > -10  # only the upper clip acts
    sc.pp.pca(reference, n_comps=8, svd_solver="arpack", random_state=0)
    for matrix in (x, sparse.csr_matrix(x)):
        ours = pca_embedding(matrix, 8, clip=10.0)
        assert ours.shape == (120, 8)
        _match_columns(np.asarray(ours, np.float64), reference.obsm["X_pca"])
    unclipped = pca_embedding(sparse.csr_matrix(x), 8)
    with pytest.raises(AssertionError):
        _match_columns(np.asarray(unclipped, np.float64), reference.obsm["X_pca"])


def test_pca_embedding_normalized_and_too_small():
    x = _counts()
    logged = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
    np.testing.assert_allclose(
        pca_embedding(logged, 5, normalized=True), pca_embedding(x, 5), rtol=1e-4, atol=1e-4
    )
    assert pca_embedding(x[:4], 30).shape == (4, 3)  # capped at n_cells - 1
    with pytest.raises(ValueError, match="Too few cells or features.*of modality 'rna'"):
        pca_embedding(x[:, 1:2] + 1, 5, name="modality 'rna'")


def test_pca_embedding_of_identical_cells_is_zero():
    """Identical cells (after normalisation) are one point: was an ARPACK error."""
    same = np.tile(_counts()[:1], (10, 1))
    for matrix in (same, sparse.csr_matrix(same)):
        np.testing.assert_array_equal(pca_embedding(matrix, 5), np.zeros((10, 5), np.float32))


def test_pca_embedding_centres_large_constant_features():
    """Found by hypothesis: a large constant feature cancelled imprecisely in the sparse PCA's
    implicit float32 centring (errors of 6e-4 at 1e4; an ARPACK error at 7.6e7)."""
    x = _counts()[:30]
    for constant in (1e4, 7.6e7):
        padded = [np.hstack([x, np.full((30, 3), c, np.float32)]) for c in (constant, 0.0)]
        ours, zero_padded = (
            pca_embedding(sparse.csr_matrix(m), 5, normalized=True) for m in padded
        )
        np.testing.assert_array_equal(ours, zero_padded)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_pca_embedding_refuses_values_beyond_float32():
    x = _counts()[:20].astype(np.float64)
    x[:, 0] = np.where(np.arange(20) % 2, 1e-45, 0.0)  # std ~1e-45: 1 / std overflows float32
    with pytest.raises(ValueError, match="values of modality 'adt' are too large or too small"):
        pca_embedding(sparse.csr_matrix(x), 5, normalized=True, name="modality 'adt'")


def test_averaging_operator_is_brute_force_knn_mean():
    values = np.random.default_rng(4).normal(size=(60, 3))
    operator = averaging_operator(values, 4)
    distances = np.linalg.norm(values[:, None] - values[None], axis=2)
    nearest = np.argsort(distances, axis=1)[:, :4]  # itself first
    np.testing.assert_allclose(operator @ values, values[nearest].mean(1), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(operator.sum(1)).ravel(), 1.0)
    # below the size of a search graph the approximate method searches exactly
    assert (averaging_operator(values, 4, "approximate") != operator).nnz == 0
    assert averaging_operator(values[:3], 10).shape == (3, 3)  # capped at the cells there are


# ------------------------------------------------------------------- group sums, shared docs


def test_group_sum_selector_sums_columns_dense_and_sparse():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    selector = group_sum_selector([0, 1, 3, 3], [0, 0, 1, 2], 4, 3, np.float32)
    expected = np.stack([x[:, 0] + x[:, 1], x[:, 3], x[:, 3]], axis=1)
    np.testing.assert_array_equal(x @ selector, expected)
    np.testing.assert_array_equal((sparse.csr_matrix(x) @ selector).toarray(), expected)
    np.testing.assert_array_equal(np.asarray(selector.sum(0)).ravel(), [2, 1, 1])
    assert selector.dtype == np.float32


def test_pp_docstrings_have_no_unfilled_placeholder():
    placeholder = re.compile(r"^\s*\{\w+\}\s*$", re.MULTILINE)
    for name in scmosaic.pp.__all__:
        doc = getattr(scmosaic.pp, name).__doc__
        assert doc and not placeholder.search(doc), name
    assert "inverted-file index" in scmosaic.pp.link_features.__doc__


def test_mutual_nearest_pairs_is_public():
    x = np.eye(3)
    ia, ib, sim = scmosaic.pp.mutual_nearest_pairs(x, x[::-1], 1)
    np.testing.assert_array_equal(ia, [0, 1, 2])
    np.testing.assert_array_equal(ib, [2, 1, 0])
    np.testing.assert_allclose(sim, 1.0)
