"""scmosaic.tl.transfer_labels: exact behaviour on hand-made embeddings."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from mudata import MuData

import scmosaic


def _mdata(seed: int = 0) -> MuData:
    rng = np.random.default_rng(seed)
    centres = {"T": [0.0, 0.0], "B": [10.0, 0.0], "NK": [0.0, 10.0]}
    ref_lab = np.repeat(["T", "B", "NK"], 30)
    ref = np.array([centres[c] for c in ref_lab]) + rng.normal(0, 0.5, (90, 2))
    # B cells mirror T cells about x = 5, so a cell on that line has as many T as B voters.
    ref[30:60] = np.column_stack([10.0 - ref[:30, 0], ref[:30, 1]])
    # Query: T and B cells near their reference, plus 10 cells midway between T and B.
    qry_lab = np.repeat(["T", "B", "mid"], [20, 20, 10])
    mid = np.array([5.0, 0.0])
    qry = np.vstack(
        [
            np.array([centres["T"]] * 20) + rng.normal(0, 0.5, (20, 2)),
            np.array([centres["B"]] * 20) + rng.normal(0, 0.5, (20, 2)),
            mid + np.column_stack([np.zeros(10), rng.normal(0, 0.2, 10)]),
        ]
    )
    rna = ad.AnnData(np.zeros((90, 3), np.float32), obs=pd.DataFrame({"ct": ref_lab}))
    rna.obs_names = [f"r{i}" for i in range(90)]
    rna.obsm["X_scmodal"] = ref
    adt = ad.AnnData(np.zeros((50, 2), np.float32), obs=pd.DataFrame({"truth": qry_lab}))
    adt.obs_names = [f"a{i}" for i in range(50)]
    adt.obsm["X_scmodal"] = qry
    return MuData({"rna": rna, "adt": adt})


def test_transfer_writes_labels_and_confidence():
    mdata = _mdata()
    before = mdata["rna"].obs.copy()
    res = scmosaic.tl.transfer_labels(mdata, "rna", "adt", "ct", k=20)
    obs = mdata["adt"].obs
    assert list(res.columns) == ["label", "confidence", "distance"]
    assert (res.index == obs.index).all()
    assert obs["ct_transferred"].tolist() == res["label"].tolist()
    np.testing.assert_array_equal(obs["ct_transferred_confidence"], res["confidence"])
    np.testing.assert_array_equal(obs["ct_transferred_distance"], res["distance"])
    # Midway cells are 5 from every reference cell, far beyond the reference's own spacing.
    distance = res["distance"].to_numpy()
    assert distance[:40].max() < distance[40:].min()
    assert np.median(distance[:40]) < 1.5 < 3.0 < np.median(distance[40:])
    truth = obs["truth"].to_numpy()
    clear = truth != "mid"
    assert (res["label"].to_numpy()[clear] == truth[clear]).all()
    assert (res["confidence"].to_numpy()[clear] == 1.0).all()
    # Cells midway between T and B get split votes, so lower confidence.
    assert res["confidence"].to_numpy()[~clear].max() <= 0.6
    pd.testing.assert_frame_equal(mdata["rna"].obs, before)  # reference untouched


def test_unknown_below_min_confidence():
    mdata = _mdata()
    res = scmosaic.tl.transfer_labels(
        mdata, "rna", "adt", "ct", k=20, min_confidence=0.8, key_added="pred"
    )
    truth = mdata["adt"].obs["truth"].to_numpy()
    labels = res["label"].astype(str).to_numpy()
    assert (labels[truth == "mid"] == "unknown").all()
    assert (labels[truth != "mid"] != "unknown").all()
    assert "unknown" in res["label"].cat.categories
    assert "pred" in mdata["adt"].obs and "pred_confidence" in mdata["adt"].obs


def test_confidence_is_vote_fraction():
    rna = ad.AnnData(np.zeros((4, 1), np.float32), obs=pd.DataFrame({"ct": list("aabb")}))
    rna.obs_names = list("wxyz")
    rna.obsm["X_scmodal"] = np.array([[0.0], [0.1], [1.0], [5.0]])
    adt = ad.AnnData(np.zeros((1, 1), np.float32))
    adt.obs_names = ["q"]
    adt.obsm["X_scmodal"] = np.array([[0.4]])
    res = scmosaic.tl.transfer_labels(MuData({"rna": rna, "adt": adt}), "rna", "adt", "ct", k=3)
    assert res["label"].tolist() == ["a"] and res["confidence"].tolist() == pytest.approx([2 / 3])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reference": "atac"}, KeyError, "Reference modality 'atac'"),
        ({"query": "atac"}, KeyError, "Query modality 'atac'"),
        ({"labels_key": "missing"}, KeyError, "has no `.obs\\['missing'\\]`"),
        ({"basis": "X_umap"}, KeyError, "Modality 'rna' has no `.obsm\\['X_umap'\\]`"),
        ({"min_confidence": 1.5}, ValueError, "min_confidence"),
        ({"min_confidence": 0.5, "unknown_label": "T"}, ValueError, "unknown_label"),
    ],
)
def test_clear_errors(kwargs, error, match):
    args = {"reference": "rna", "query": "adt", "labels_key": "ct"} | kwargs
    mdata = _mdata()
    with pytest.raises(error, match=match):
        scmosaic.tl.transfer_labels(mdata, **args)
    assert "ct_transferred" not in mdata["adt"].obs


def test_knn_impute_is_the_kernel_average_and_checks_inputs():
    """Nearby reference cells dominate, far ones barely count; shapes are checked by name."""
    from scmosaic.tl import knn_impute

    ref = np.concatenate([np.linspace(0, 0.39, 40), [10.0]])[:, None]
    values = np.zeros((41, 2))
    values[:40, 0], values[40] = 1.0, (100.0, 5.0)
    imputed = knn_impute(ref, values, np.array([[0.0], [10.0]]), n_neighbors=41)
    # The width is the distance to the 30th nearest (0.29): the cell at 10 weighs ~exp(-1189).
    np.testing.assert_allclose(imputed[0], [1.0, 0.0], atol=1e-6)
    # Fewer neighbours than 30: the width is the k-th's distance, which weighs exp(-1).
    d = np.array([0.0, 9.61, 9.62, 9.63])
    w = np.exp(-((d / 9.63) ** 2))
    expected = (w / w.sum()) @ values[[40, 39, 38, 37]]
    imputed = knn_impute(ref, values, np.array([[10.0]]), n_neighbors=4)
    np.testing.assert_allclose(imputed[0], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="ref_values"):
        knn_impute(ref, values[:3], ref)
    with pytest.raises(ValueError, match="same space"):
        knn_impute(ref, values, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_neighbors"):
        knn_impute(ref, values, ref, n_neighbors=0)
    with pytest.raises(ValueError, match="no columns"):
        knn_impute(np.zeros((3, 0)), np.ones((3, 1)), np.zeros((2, 0)))


def test_distance_to_reference_is_relative_to_the_reference_spacing():
    """The documented ratio, written out densely; a novel cluster next to one known type
    gets confident votes but a large distance."""
    from scmosaic.tl import distance_to_reference, knn_transfer

    rng = np.random.default_rng(1)
    ref = np.vstack([rng.normal(0, 1, (200, 3)), rng.normal(20, 1, (200, 3))])
    labels = np.repeat(["T", "B"], 200)
    novel = rng.normal(0, 1, (30, 3)) + [6.0, 0.0, 0.0]  # beside T only
    known = rng.normal(0, 1, (30, 3))
    query = np.vstack([known, novel])
    k = 10
    score = distance_to_reference(ref, query, k=k)
    pairwise = np.linalg.norm(ref[:, None] - ref[None], axis=2)
    own = np.sort(pairwise, axis=1)[:, 1 : k + 1].mean(1)
    to_query = np.sort(np.linalg.norm(query[:, None] - ref[None], axis=2), axis=1)[:, :k]
    np.testing.assert_allclose(score, to_query.mean(1) / np.median(own), rtol=1e-5)
    _, confidence = knn_transfer(ref, labels, query, k=k)
    assert (confidence[30:] == 1.0).all()  # the vote cannot tell the novel cells
    assert score[30:].min() > score[:30].max()  # the distance can
    with pytest.raises(ValueError, match="at least 2 cells"):
        distance_to_reference(ref[:1], query)
    with pytest.raises(ValueError, match="same space"):
        distance_to_reference(ref, query[:, :2])
    np.testing.assert_allclose(distance_to_reference(ref[:3], ref[:3], k=50).shape, (3,))
