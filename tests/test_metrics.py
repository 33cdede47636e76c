"""Tests for :mod:`scmosaic.metrics` with hand-computed expected values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import f1_score

from scmosaic.metrics import (
    anchor_precision,
    foscttm,
    foscttm_maxfuse,
    foscttm_per_cell,
    label_transfer_accuracy,
)
from scmosaic.tl import knn_transfer

# ---------------------------------------------------------------------------
# FOSCTTM
# ---------------------------------------------------------------------------


def _brute_foscttm(x, y, metric):
    """Unchunked reference: full n x n distance matrix (GLUE formula)."""
    d = cdist(x, y, metric="euclidean" if metric == "euclidean" else "correlation")
    diag = np.diag(d)
    fx = (d < diag[:, None]).mean(axis=1)
    fy = (d < diag[None, :]).mean(axis=0)
    return fx, fy


def test_identical_embeddings_give_zero():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 8))
    assert foscttm(z, z) == 0.0
    assert foscttm(z, z.copy(), symmetric=False) == 0.0
    assert foscttm(z, z, metric="pearson") == 0.0
    fx, fy = foscttm_per_cell(z, z, chunk_size=7)
    assert np.all(fx == 0.0) and np.all(fy == 0.0)


def test_duplicated_cells_ties_do_not_count():
    z = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, -1.0], [1.0, 2.0]])
    assert foscttm(z, z) == 0.0
    assert foscttm(z, z, metric="pearson") == 0.0


def test_three_cell_hand_example_asymmetric():
    # x = 0, 1, 3 ; y = 0, 2, 1.5 (1-D), x[i] <-> y[i]
    # x0: d(y)=[0, 2, 1.5], partner 0    -> 0 closer
    # x1: d(y)=[1, 1, 0.5], partner 1    -> y2 closer (y0 ties) -> 1/3
    # x2: d(y)=[3, 1, 1.5], partner 1.5  -> y1 closer -> 1/3
    # y0: d(x)=[0, 1, 3],   partner 0    -> 0
    # y1: d(x)=[2, 1, 1],   partner 1    -> none strictly closer -> 0
    # y2: d(x)=[1.5, .5, 1.5], partner 1.5 -> x1 closer (x0 ties) -> 1/3
    x = np.array([[0.0], [1.0], [3.0]])
    y = np.array([[0.0], [2.0], [1.5]])
    fx, fy = foscttm_per_cell(x, y)
    np.testing.assert_allclose(fx, [0.0, 1 / 3, 1 / 3])
    np.testing.assert_allclose(fy, [0.0, 0.0, 1 / 3])
    assert foscttm(x, y, symmetric=False) == pytest.approx(2 / 9)
    assert foscttm(y, x, symmetric=False) == pytest.approx(1 / 9)
    assert foscttm(x, y) == pytest.approx(1 / 6)
    assert foscttm(y, x) == pytest.approx(1 / 6)
    # chunking must not change anything
    for cs in (1, 2, 3, 100):
        assert foscttm(x, y, symmetric=False, chunk_size=cs) == pytest.approx(2 / 9)


def test_reversed_pairing_known_value():
    # points 0..3 on a line, x_i paired with y_i = 3 - i.
    # x0: partner at 3, closer {0,1,2} -> 3 ; x1: partner 2 (d=1), closer {1} -> 1
    # x2: 1 ; x3: 3  -> (3+1+1+3) / 16 = 0.5 (same for the y direction)
    x = np.arange(4, dtype=float)[:, None]
    y = x[::-1]
    fx, fy = foscttm_per_cell(x, y)
    np.testing.assert_allclose(fx, [0.75, 0.25, 0.25, 0.75])
    np.testing.assert_allclose(fy, [0.75, 0.25, 0.25, 0.75])
    assert foscttm(x, y) == pytest.approx(0.5)


def test_pearson_hand_example():
    # Centered x: x0 ~ [-1,0,1], x1 ~ [1,0,-1], x2 ~ [-1,1,0]
    # Centered y: y0 ~ [-1,0,1], y1 ~ [-2,1,1], y2 ~ [1,1,-2]
    # r(x_i, y_j) with c = 3/sqrt(12) ~ 0.866:
    #   x0: [ 1,  c, -c]   partner 1   -> 0 higher            -> 0
    #   x1: [-1, -c,  c]   partner -c  -> y2 higher           -> 1/3
    #   x2: [.5,  c,  0]   partner 0   -> y0, y1 higher       -> 2/3
    # columns: y0 [1,-1,.5] p=1 -> 0 ; y1 [c,-c,c] p=-c -> 2/3 ; y2 [-c,c,0] p=0 -> 1/3
    x = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 3.0, 2.0]])
    y = np.array([[10.0, 20.0, 30.0], [0.0, 1.0, 1.0], [5.0, 5.0, 0.0]])
    fx, fy = foscttm_per_cell(x, y, metric="pearson")
    np.testing.assert_allclose(fx, [0.0, 1 / 3, 2 / 3])
    np.testing.assert_allclose(fy, [0.0, 2 / 3, 1 / 3])
    assert foscttm(x, y, metric="pearson", symmetric=False) == pytest.approx(1 / 3)
    assert foscttm(x, y, metric="pearson") == pytest.approx(1 / 3)
    # Pearson is invariant to per-cell shift and scale; Euclidean is not.
    assert foscttm(x, 7.0 * y + 3.0, metric="pearson") == pytest.approx(1 / 3)
    # n_dims keeps only the leading columns
    rng = np.random.default_rng(1)
    xj = np.hstack([x, rng.normal(size=(3, 4))])
    yj = np.hstack([y, rng.normal(size=(3, 4))])
    fx2, fy2 = foscttm_per_cell(xj, yj, metric="pearson", n_dims=3)
    np.testing.assert_allclose(fx2, fx)
    np.testing.assert_allclose(fy2, fy)


@pytest.mark.parametrize("metric", ["euclidean", "pearson"])
def test_chunked_matches_bruteforce(metric):
    rng = np.random.default_rng(42)
    n = 37
    base = rng.normal(size=(n, 6))
    x = base + 0.8 * rng.normal(size=(n, 6))
    y = base + 0.8 * rng.normal(size=(n, 6))
    fx_ref, fy_ref = _brute_foscttm(x, y, metric)
    fx, fy = foscttm_per_cell(x, y, metric=metric, chunk_size=2)
    np.testing.assert_allclose(fx, fx_ref)
    np.testing.assert_allclose(fy, fy_ref)
    assert 0 < fx.mean() < 0.5
    expected = (fx_ref.mean() + fy_ref.mean()) / 2
    assert foscttm(x, y, metric=metric, chunk_size=2) == pytest.approx(expected)
    assert foscttm(x, y, metric=metric) == pytest.approx(expected)
    assert foscttm(x, y, metric=metric, symmetric=False, chunk_size=5) == pytest.approx(
        fx_ref.mean()
    )


def test_foscttm_maxfuse_convention():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 20))
    y = x + rng.normal(size=(40, 20))
    d = cdist(x[:, :15], y[:, :15], metric="correlation")
    expected = (d < np.diag(d)[:, None]).mean()
    assert foscttm_maxfuse(x, y) == pytest.approx(expected)
    assert foscttm_maxfuse(x, y) == pytest.approx(
        foscttm(x, y, metric="pearson", n_dims=15, symmetric=False)
    )
    assert foscttm_maxfuse(x, y, chunk_size=3) == pytest.approx(expected)


def test_foscttm_accepts_dataframes_and_float32():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = (x + 0.5 * rng.normal(size=(20, 3))).astype(np.float32)
    fx_ref, fy_ref = _brute_foscttm(x.astype(float), y.astype(float), "euclidean")
    assert foscttm(pd.DataFrame(x), pd.DataFrame(y)) == pytest.approx(
        (fx_ref.mean() + fy_ref.mean()) / 2
    )


def test_foscttm_errors():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(4, 3\)"):
        foscttm(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(5, 2\)"):
        foscttm(x, np.zeros((5, 2)))
    bad = np.ones((5, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        foscttm(bad, x)
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="`x`.*infinite"):
        foscttm(bad, x)
    with pytest.raises(ValueError, match="`y`.*NaN"):
        foscttm(x, np.full((5, 3), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        foscttm(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="metric"):
        foscttm(x, x, metric="cosine")
    with pytest.raises(ValueError, match="n_dims"):
        foscttm(x, x, n_dims=4)
    with pytest.raises(ValueError, match="chunk_size"):
        foscttm(x, x, chunk_size=0)
    with pytest.raises(ValueError, match="constant"):
        foscttm(np.ones((5, 3)), np.ones((5, 3)), metric="pearson")
    with pytest.raises(ValueError, match="at least one"):
        foscttm(np.zeros((0, 3)), np.zeros((0, 3)))


# ---------------------------------------------------------------------------
# Label transfer
# ---------------------------------------------------------------------------


def test_two_cluster_perfect_transfer():
    rng = np.random.default_rng(0)
    a = np.vstack([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (15, 2))])
    b = np.vstack([rng.normal(0, 0.1, (10, 2)), rng.normal(5, 0.1, (12, 2))])
    la = np.array(["T"] * 20 + ["B"] * 15)
    lb = np.array(["T"] * 10 + ["B"] * 12)
    res = label_transfer_accuracy(a, la, b, lb, k=5)
    assert set(res) == {
        "a_to_b",
        "b_to_a",
        "mean",
        "macro_f1_a_to_b",
        "macro_f1_b_to_a",
        "macro_f1",
    }
    assert all(v == 1.0 for v in res.values())
    pred, conf = knn_transfer(a, la, b, k=1, chunk_size=3)
    np.testing.assert_array_equal(pred, lb)
    np.testing.assert_array_equal(conf, np.ones(len(b)))


def _one_error_case():
    a = np.array([[0.0], [1.0], [10.0], [11.0]])
    la = ["x", "x", "y", "y"]
    # b2 sits in the x cluster but is labelled y -> one error in each direction
    b = np.array([[0.5], [10.5], [0.2], [10.2]])
    lb = ["x", "y", "y", "y"]
    return a, la, b, lb


def test_one_known_error():
    a, la, b, lb = _one_error_case()
    # a -> b: predictions [x, y, x, y] vs [x, y, y, y] -> 3/4
    # b -> a: a0=0 nearest b2 (y) wrong; others right -> 3/4
    pred, conf = knn_transfer(a, la, b)
    assert pred.tolist() == ["x", "y", "x", "y"]
    np.testing.assert_array_equal(conf, 1.0)
    res = label_transfer_accuracy(a, la, b, lb, chunk_size=1)
    assert res["a_to_b"] == pytest.approx(0.75)
    assert res["b_to_a"] == pytest.approx(0.75)
    assert res["mean"] == pytest.approx(0.75)
    # macro-F1 a -> b by hand: F1(x) = 2/3, F1(y) = 0.8
    assert res["macro_f1_a_to_b"] == pytest.approx((2 / 3 + 0.8) / 2)
    f1_ab = f1_score(lb, ["x", "y", "x", "y"], average="macro")
    f1_ba = f1_score(la, ["y", "x", "y", "y"], average="macro")
    assert res["macro_f1_a_to_b"] == pytest.approx(f1_ab)
    assert res["macro_f1_b_to_a"] == pytest.approx(f1_ba)
    assert res["macro_f1"] == pytest.approx((f1_ab + f1_ba) / 2)


def test_macro_f1_matches_sklearn_random():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(80, 4))
    b = rng.normal(size=(60, 4))
    classes = np.array(["a", "b", "c", "d"])
    la = classes[rng.integers(0, 4, 80)]
    lb = classes[rng.integers(0, 3, 60)]  # "d" absent from b
    res = label_transfer_accuracy(a, la, b, lb, k=3)
    pred_b, _ = knn_transfer(a, la, b, k=3)
    pred_a, _ = knn_transfer(b, lb, a, k=3)
    assert res["a_to_b"] == pytest.approx(np.mean(pred_b == lb))
    assert res["b_to_a"] == pytest.approx(np.mean(pred_a == la))
    assert res["macro_f1_a_to_b"] == pytest.approx(
        f1_score(lb, pred_b.astype(str), average="macro", zero_division=0)
    )
    assert res["macro_f1_b_to_a"] == pytest.approx(
        f1_score(la, pred_a.astype(str), average="macro", zero_division=0)
    )


def test_nan_labels_excluded():
    a, la, b, _ = _one_error_case()
    # Missing true label on the misclassified query -> a_to_b becomes 3/3.
    lb_nan = ["x", "y", np.nan, "y"]
    res = label_transfer_accuracy(a, la, b, lb_nan)
    assert res["a_to_b"] == 1.0
    assert res["macro_f1_a_to_b"] == 1.0
    # b2 is also dropped from the reference, so a0 is now matched to b0 (x).
    assert res["b_to_a"] == 1.0
    # NaN reference labels are never predicted
    pred, _ = knn_transfer(b, pd.Series(["x", "y", None, "y"]), a)
    assert pred.tolist() == ["x", "x", "y", "y"]
    # a reference without any label cannot be used
    with pytest.raises(ValueError, match="labelled reference"):
        label_transfer_accuracy(a, la, b, [np.nan] * 4)
    # empty query -> empty outputs
    pred, conf = knn_transfer(a, la, np.zeros((0, 1)))
    assert pred.shape == (0,) and conf.shape == (0,)


def test_knn_confidence_and_ties():
    ref = np.array([[0.0], [0.1], [0.2], [5.0], [5.1]])
    lab = pd.Categorical(["T", "T", "B", "B", "B"])
    query = np.array([[0.05], [5.05], [0.19]])
    pred, conf = knn_transfer(ref, lab, query, k=3)
    # q0: T, T, B -> T (2/3); q1: B, B, then B at 0.2 -> B (3/3); q2: B, T, T -> T
    assert pred.tolist() == ["T", "B", "T"]
    np.testing.assert_allclose(conf, [2 / 3, 1.0, 2 / 3])
    # k=2 tie at q2 (B at 0.2, T at 0.1): nearest voter wins -> B, conf 0.5
    pred2, conf2 = knn_transfer(ref, lab, query, k=2, chunk_size=1)
    assert pred2.tolist() == ["T", "B", "B"]
    np.testing.assert_allclose(conf2, [1.0, 1.0, 0.5])
    # k=1 confidence is always 1
    _, conf1 = knn_transfer(ref, lab, query, k=1)
    np.testing.assert_array_equal(conf1, 1.0)


def test_knn_transfer_errors():
    ref = np.zeros((3, 2))
    with pytest.raises(ValueError, match="k"):
        knn_transfer(ref, ["a", "b", "c"], ref, k=4)
    with pytest.raises(ValueError, match="k"):
        knn_transfer(ref, ["a", "b", None], ref, k=3)
    with pytest.raises(ValueError, match="k"):
        knn_transfer(ref, ["a", "b", "c"], ref, k=0)
    with pytest.raises(ValueError, match="2 entries"):
        knn_transfer(ref, ["a", "b"], ref)
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(3, 5\)"):
        knn_transfer(ref, ["a", "b", "c"], np.zeros((3, 5)))
    bad = ref.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="query_emb.*NaN"):
        knn_transfer(ref, ["a", "b", "c"], bad)
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(3, 5\)"):
        label_transfer_accuracy(ref, [1, 2, 3], np.zeros((3, 5)), [1, 2, 3])


def test_values_whose_distances_overflow_are_refused():
    """Found by hypothesis: squared distances overflowed to inf/NaN and every metric
    silently returned a wrong value (FOSCTTM 0.0, arbitrary kNN labels)."""
    x = np.array([[1e200, 0.0], [-1e200, 1.0], [3e200, 2.0]])
    y, labels = x[[1, 0, 2]], ["a", "b", "c"]
    for call in (
        lambda: foscttm(x, y),
        lambda: foscttm_per_cell(x, y, metric="pearson"),
        lambda: knn_transfer(x, labels, y),
        lambda: label_transfer_accuracy(x, labels, y, labels),
    ):
        with pytest.raises(ValueError, match="values up to 3e\\+200.*overflow float64"):
            call()
    assert foscttm(x / 1e190, y / 1e190) > 0  # the same data, rescaled, are fine


# ---------------------------------------------------------------------------
# Anchor precision
# ---------------------------------------------------------------------------


def test_anchor_precision_exact():
    la = ["T", "B", "B", "NK"]
    lb = pd.Categorical(["B", "T", "NK"])
    # pairs: (0,1) T-T ok, (1,0) B-B ok, (2,2) B-NK no, (3,2) NK-NK ok, (3,0) no
    ia = np.array([0, 1, 2, 3, 3])
    ib = np.array([1, 0, 2, 2, 0])
    assert anchor_precision(ia, ib, la, lb) == pytest.approx(3 / 5)
    assert anchor_precision([0], [1], la, lb) == 1.0
    assert np.isnan(anchor_precision([], [], la, lb))
    # pairs with a missing label are ignored
    la_nan = ["T", None, "B", "NK"]
    assert anchor_precision(ia, ib, la_nan, lb) == pytest.approx(2 / 4)
    assert np.isnan(anchor_precision([1], [0], la_nan, lb))


def test_anchor_precision_errors():
    with pytest.raises(ValueError, match="same length"):
        anchor_precision([0, 1], [0], ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="outside"):
        anchor_precision([0, 5], [0, 0], ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="integers"):
        anchor_precision([0.5], [0], ["a", "b"], ["a"])


def test_knn_transfer_old_location_warns_and_works():
    import scmosaic.metrics

    with pytest.warns(FutureWarning, match="scmosaic.tl.knn_transfer"):
        old = scmosaic.metrics.knn_transfer
    assert old is knn_transfer
