import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import shared_file
from scipy import sparse

from scmosaic.pp import gene_activity

PEAKS = ["chr1:100-200", "chr1:300-400", "chr1:900-950", "chr2:10-20", "chr3:5-8"]
#                 peak:   p0  p1  p2  p3  p4
COUNTS = np.array(
    [
        [1, 2, 0, 4, 7],
        [0, 1, 3, 0, 0],
        [5, 0, 1, 2, 1],
    ],
    dtype=np.float32,
)


def _atac(x=COUNTS, peaks=PEAKS, with_uns=True):
    adata = ad.AnnData(
        x.copy(),
        obs=pd.DataFrame({"batch": ["a", "b", "a"]}, index=["c0", "c1", "c2"]),
        var=pd.DataFrame(index=peaks),
    )
    if with_uns:
        adata.uns["atac"] = {"peak_annotation": _annotation().set_index("gene")}
    return adata


def _annotation():
    # p1 is annotated to A and B; p3 to C; p4 to nobody; "chr9:1-2" is not in the data
    return pd.DataFrame(
        {
            "gene": ["A", "A", "B", "B", "C", "C"],
            "peak": PEAKS[:2] + [PEAKS[1], PEAKS[2], PEAKS[3], "chr9:1-2"],
            "distance": [0, 1500, -200, 8000, 0, 0],
            "peak_type": ["promoter", "distal", "distal", "distal", "promoter", "promoter"],
        }
    )


def _expected(columns):
    return np.column_stack([COUNTS[:, c].sum(1) for c in columns])


@pytest.mark.parametrize("as_sparse", [False, True])
def test_gene_activity_exact_sums(as_sparse):
    x = sparse.csr_matrix(COUNTS) if as_sparse else COUNTS
    atac = _atac(x)
    before = atac.copy()
    activity = gene_activity(atac, _annotation())
    assert list(activity.var_names) == ["A", "B", "C"]
    assert sparse.issparse(activity.X) == as_sparse
    dense = activity.X.toarray() if as_sparse else activity.X
    # a peak annotated to two genes (p1) counts for both
    np.testing.assert_array_equal(dense, _expected([[0, 1], [1, 2], [3]]))
    assert activity.var["n_peaks"].tolist() == [2, 2, 1]
    assert list(activity.obs_names) == ["c0", "c1", "c2"]
    assert activity.obs["batch"].tolist() == ["a", "b", "a"]
    # the input is untouched
    xa = atac.X.toarray() if as_sparse else atac.X
    np.testing.assert_array_equal(xa, COUNTS)
    assert list(atac.var_names) == list(before.var_names)
    assert set(atac.uns) == set(before.uns)
    assert "scmosaic_gene_activity" not in atac.uns
    assert "scmosaic_gene_activity" in activity.uns


def test_gene_activity_reads_muon_annotation_from_uns():
    activity = gene_activity(_atac())  # genes as the index, as muon stores them
    np.testing.assert_array_equal(activity.X, _expected([[0, 1], [1, 2], [3]]))


def test_gene_activity_filters_and_nearest():
    atac = _atac()
    near = gene_activity(atac, _annotation(), max_distance=1000)
    assert list(near.var_names) == ["A", "B", "C"]
    np.testing.assert_array_equal(near.X, _expected([[0], [1], [3]]))
    promoters = gene_activity(atac, _annotation(), peak_types=["promoter"])
    assert list(promoters.var_names) == ["A", "C"]
    np.testing.assert_array_equal(promoters.X, _expected([[0], [3]]))
    # p1 is 1500 bp from A and 200 bp from B: "nearest" gives it to B only
    nearest = gene_activity(atac, _annotation(), multi_gene="nearest")
    np.testing.assert_array_equal(nearest.X, _expected([[0], [1, 2], [3]]))


def test_gene_activity_semicolon_genes_layer_and_peak_separators():
    annotation = pd.DataFrame(
        {"peak": ["chr1_100_200", "chr1-300-400"], "gene": ["A;B", "B"], "distance": ["0;50", "9"]}
    )
    atac = _atac(np.zeros_like(COUNTS), with_uns=False)
    atac.layers["counts"] = sparse.csr_matrix(COUNTS)
    activity = gene_activity(atac, annotation, layer="counts")
    np.testing.assert_array_equal(activity.X.toarray(), _expected([[0], [0, 1]]))
    nearest = gene_activity(atac, annotation, layer="counts", max_distance=10)
    np.testing.assert_array_equal(nearest.X.toarray(), _expected([[0], [1]]))


def test_gene_activity_errors():
    atac = _atac(with_uns=False)
    with pytest.raises(KeyError, match="peak_annotation"):
        gene_activity(atac)
    with pytest.raises(KeyError, match=r"\['peak'\]"):
        gene_activity(atac, _annotation().rename(columns={"peak": "region"}))
    with pytest.raises(KeyError, match="distance"):
        gene_activity(atac, _annotation().drop(columns="distance"), max_distance=10)
    with pytest.raises(KeyError, match="peak_type"):
        gene_activity(atac, _annotation().drop(columns="peak_type"), peak_types=["promoter"])
    with pytest.raises(KeyError, match="Layer 'counts'"):
        gene_activity(atac, _annotation(), layer="counts")
    with pytest.raises(ValueError, match="No annotated peak"):
        gene_activity(atac, _annotation().assign(peak="chrX:1-2"))
    with pytest.raises(ValueError, match="multi_gene"):
        gene_activity(atac, _annotation(), multi_gene="first")
    with pytest.raises(TypeError, match="DataFrame"):
        gene_activity(atac, {"gene": ["A"], "peak": [PEAKS[0]]})
    negative = _atac(-COUNTS, with_uns=False)
    with pytest.raises(ValueError, match="non-negative; pass the raw count layer as layer"):
        gene_activity(negative, _annotation())
    logged = _atac(np.log1p(COUNTS), with_uns=False)
    with pytest.raises(ValueError, match="'atac' looks log-normalised.*gene_activity"):
        gene_activity(logged, _annotation())
    with pytest.raises(ValueError, match="'atac' are all zero"):
        gene_activity(_atac(0 * COUNTS, with_uns=False), _annotation())


def test_gene_activity_muon_multiome():
    mudata = pytest.importorskip("mudata")
    path = shared_file("muon_multiome_pbmc_tiny", "test_rna_atac.h5mu")
    atac = mudata.read_h5mu(path)["atac"]
    activity = gene_activity(atac)
    table = atac.uns["atac"]["peak_annotation"]
    assert set(activity.var_names) == set(table.index)
    gene = "CD14"
    peaks = table.loc[[gene], "peak"].tolist()
    expected = np.asarray(atac[:, peaks].X.sum(1)).ravel()
    np.testing.assert_array_equal(activity[:, gene].X.toarray().ravel(), expected)
