"""Property-based tests: any finite input works or raises scmosaic's own error, and the input
is never changed (beyond the documented outputs).

Small generated matrices (1 to ~30 cells, a few features; dense or sparse; zeros,
duplicated cells, constant features, non-integer and negative values) go through
``pp.link_features``, ``pp.preprocess``, ``pp.cca_links``, the metrics and
``tl.knn_transfer``. An error is acceptable only if it is a ``ValueError``, ``KeyError`` or
``TypeError`` raised by scmosaic's own code (the last frame of the traceback is in the
package), never one from a library deep inside.
"""

from __future__ import annotations

import copy
import traceback
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from mudata import MuData
from scipy import sparse

import scmosaic
from scmosaic.metrics import (
    anchor_precision,
    foscttm,
    foscttm_per_cell,
    label_transfer_accuracy,
)
from scmosaic.pp import cca_links, link_features, preprocess
from scmosaic.tl import distance_to_reference, knn_impute, knn_transfer

PACKAGE = Path(scmosaic.__file__).resolve().parent
OWN_ERRORS = (ValueError, KeyError, TypeError)

# Each test builds AnnData/MuData objects (milliseconds) and runs scanpy/scikit-learn on
# them: too slow for hypothesis' default 200 ms deadline and "too_slow" health check,
# though every example stays well under a second. The budget keeps the file under ~60 s.
PP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=150, deadline=None)

GENES = ["CD3E", "CD3D", "MS4A1", "CD14", "CD4", "LYZ", "g1", "g2"]
PROTEINS = ["CD3", "CD20", "CD14", "CD4", "IgG1", "p1"]


def call(func, *args, **kwargs):
    """``func(*args, **kwargs)``, or ``None`` if it raised scmosaic's own error.

    Any other exception (a library's error, or an own error of another type) fails.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = func(*args, **kwargs)
    except OWN_ERRORS as err:
        last = Path(traceback.extract_tb(err.__traceback__)[-1].filename).resolve()
        assert last.is_relative_to(PACKAGE), (
            f"{type(err).__name__} from a library ({last}), not scmosaic: {err}"
        )
        event(f"{func.__name__}: {type(err).__name__} {' '.join(str(err).split()[:5])}")
        return None
    event(f"{func.__name__}: works")
    return result


# ------------------------------------------------------------------------------ snapshots


def _dense(x) -> np.ndarray:
    return np.array(x.toarray() if sparse.issparse(x) else x, copy=True)


def _adata_state(adata: ad.AnnData) -> dict:
    return {
        "X": (type(adata.X), adata.X.dtype, _dense(adata.X)),
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "obs_names": adata.obs_names.copy(),
        "obsm": {k: copy.deepcopy(v) for k, v in adata.obsm.items()},
        "layers": {k: _dense(v) for k, v in adata.layers.items()},
        "uns": copy.deepcopy(dict(adata.uns)),
    }


def snapshot(mdata: MuData) -> dict:
    """A deep copy of everything a pp function could change."""
    return {
        "mod": {m: _adata_state(a) for m, a in mdata.mod.items()},
        "obs": mdata.obs.copy(),
        "obsm": set(mdata.obsm),
        "uns": set(mdata.uns),
    }


def _same(a, b) -> None:
    if isinstance(a, pd.DataFrame | pd.Series | pd.Index):
        assert type(a) is type(b)
        if isinstance(a, pd.Index):
            pd.testing.assert_index_equal(a, b, exact=True)
        elif isinstance(a, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        else:
            pd.testing.assert_series_equal(a, b, check_exact=True)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, tuple):
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, np.ndarray) or sparse.issparse(a):
        np.testing.assert_array_equal(_dense(a), _dense(b))
    else:
        assert a == b


def assert_unchanged(before: dict, mdata: MuData, added: dict[str, set[str]] | None = None):
    """Nothing changed but the ``.obsm`` / ``.uns`` keys ``added`` (per modality) by a success."""
    added = added or {}
    after = snapshot(mdata)
    assert after["mod"].keys() == before["mod"].keys()
    for m, state in before["mod"].items():
        now = after["mod"][m]
        new = added.get(m, set())
        for key in ("X", "obs", "var", "obs_names", "layers"):
            _same(state[key], now[key])
        assert set(now["obsm"]) - set(state["obsm"]) <= new
        _same(state["obsm"], {k: v for k, v in now["obsm"].items() if k in state["obsm"]})
        assert set(now["uns"]) - set(state["uns"]) <= new
        _same(state["uns"], {k: v for k, v in now["uns"].items() if k in state["uns"]})
    _same(before["obs"], after["obs"])
    assert before["obsm"] == after["obsm"] and before["uns"] == after["uns"]


# ------------------------------------------------------------------------------ strategies


@st.composite
def matrices(
    draw, max_cells: int = 30, max_features: int = 8, other_values: bool = True, rare: int = 5
):
    """A small cells x features matrix: counts mostly, sometimes other finite values.

    One draw in ``rare`` has a degenerate shape (0 to 2 cells, or 1 or 2 features).
    """
    rare = st.sampled_from([False] * (rare - 1) + [True])  # hypothesis favours the first
    n = draw(st.integers(0, 2) if draw(rare) else st.integers(3, max_cells))
    p = draw(st.integers(1, 2) if draw(rare) else st.integers(3, max_features))
    kinds = ["counts", "counts", "sparse_counts"] + (["log", "float"] if other_values else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "log":  # log-normalised-like values
        elements = st.floats(0, 9, allow_nan=False, width=32)
    elif kind == "float":  # scaled or ambient-corrected values, negatives
        elements = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
    else:
        elements = st.integers(0, 60 if kind == "counts" else 3)
    x = draw(arrays(np.float32, (n, p), elements=elements))
    if n > 1 and draw(st.booleans()):  # duplicated cells: two halves, or all the same
        if draw(rare):
            x[:] = x[draw(st.integers(0, n - 1))]
        else:
            x[n // 2 :] = x[: n - n // 2]
    if p > 1 and draw(st.booleans()):  # a constant feature
        x[:, draw(st.integers(0, p - 1))] = draw(elements)
    fmt = draw(st.sampled_from(["dense", "csr", "csc"]))
    return x if fmt == "dense" else sparse.csr_matrix(x) if fmt == "csr" else sparse.csc_matrix(x)


def _names(draw, pool: list[str], p: int) -> list[str]:
    if draw(st.booleans()):
        return [draw(st.sampled_from(pool)) for _ in range(p)]  # duplicates allowed
    extra = [f"f{i}" for i in range(p)]
    return draw(st.permutations(pool + extra))[:p]


@st.composite
def modality_pairs(
    draw, with_labels: bool = False, other_values: bool = True, max_cells: int = 30, rare: int = 5
) -> dict:
    """What :func:`build` makes a MuData of: ``adt`` (proteins) and ``rna`` (genes).

    The MuData is built in the test, not here: MuData uses the ``random`` module, which
    hypothesis does not allow in strategies.
    """
    spec = {}
    for mod, pool in (("adt", PROTEINS + GENES[:5]), ("rna", GENES)):
        x = draw(matrices(max_cells, other_values=other_values, rare=rare))
        n = x.shape[0]
        labels = draw(st.lists(st.sampled_from("AB"), min_size=n, max_size=n))
        spec[mod] = (x, _names(draw, pool, x.shape[1]), labels if with_labels else None)
    return spec


def build(spec: dict) -> MuData:
    """Two modalities of different cells from ``{mod: (matrix, feature names, labels)}``."""
    mods = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mod, (x, names, labels) in spec.items():
            obs = pd.DataFrame(index=[f"{mod}{i}" for i in range(x.shape[0])])
            if labels is not None:
                obs["celltype"] = pd.Categorical(labels)
            mods[mod] = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=names))
        return MuData(mods)


tables = st.dictionaries(
    st.sampled_from(PROTEINS + GENES[:3]),
    st.lists(st.sampled_from(GENES), min_size=1, max_size=2).map("/".join),
    min_size=1,
    max_size=4,
)


# ------------------------------------------------------------------------------ pp


@PP
@given(
    spec=modality_pairs(),
    table=tables,
    by=st.sampled_from(["table", "names"]),
    smooth=st.sampled_from([0, 3]),
    normalization=st.sampled_from(["library", "reference"]),
    multi_gene=st.sampled_from(["pairs", "sum"]),
)
@example(  # identical cells: the smoothing's PCA was an ARPACK error ("starting vector is zero")
    spec={
        "adt": (np.full((2, 2), 5, np.float32), ["CD3", "CD20"], None),
        "rna": (np.full((2, 2), 3, np.float32), ["CD3E", "CD3D"], None),
    },
    table={"CD3": "CD3E"},
    by="table",
    smooth=3,
    normalization="library",
    multi_gene="pairs",
)
def test_link_features_works_or_own_error(spec, table, by, smooth, normalization, multi_gene):
    mdata = build(spec)
    before = snapshot(mdata)
    report = call(
        link_features,
        mdata,
        "adt",
        "rna",
        by=by,
        table=table,
        smooth_neighbors=smooth,
        normalization=normalization,
        multi_gene=multi_gene,
    )
    if report is None:
        assert_unchanged(before, mdata)
        return
    assert_unchanged(before, mdata, {"adt": {"linked_rna"}, "rna": {"linked_adt"}})
    linked = mdata["adt"].obsm["linked_rna"], mdata["rna"].obsm["linked_adt"]
    assert list(linked[0].columns) == list(linked[1].columns)
    for m, values in zip(("adt", "rna"), linked, strict=True):
        assert values.shape[0] == mdata[m].n_obs and np.isfinite(values.to_numpy()).all()


@PP
@given(
    spec=modality_pairs(),
    n_top_genes=st.sampled_from([None, 2, 5, 2000]),
    target_sum=st.sampled_from([None, 1e4]),
    protein_normalization=st.sampled_from(["clr", "log1p"]),
)
@example(  # 2 varying genes: Seurat v3's loess fit (scikit-misc) crashed Python
    spec={
        "adt": (np.arange(12, dtype=np.float32).reshape(4, 3), ["CD3", "CD4", "p1"], None),
        "rna": (
            np.hstack([np.arange(8, dtype=np.float32).reshape(4, 2), np.ones((4, 4), np.float32)]),
            GENES[:6],
            None,
        ),
    },
    n_top_genes=2,
    target_sum=None,
    protein_normalization="clr",
)
@example(  # 6 cells: the loess fit failed deep in scikit-misc ("svddc failed in l2fit")
    spec={
        "adt": (np.arange(18, dtype=np.float32).reshape(6, 3), ["CD3", "CD4", "p1"], None),
        "rna": (np.arange(48, dtype=np.float32).reshape(6, 8) % 7, GENES, None),
    },
    n_top_genes=5,
    target_sum=1e4,
    protein_normalization="log1p",
)
def test_preprocess_works_or_own_error(spec, n_top_genes, target_sum, protein_normalization):
    mdata = build(spec)
    before = snapshot(mdata)
    out = call(
        preprocess,
        mdata,
        n_top_genes=n_top_genes,
        target_sum=target_sum,
        protein_normalization=protein_normalization,
    )
    assert_unchanged(before, mdata)
    if out is None:
        return
    for m, adata in out.mod.items():
        assert adata.n_obs == mdata[m].n_obs
        assert np.isfinite(_dense(adata.X)).all() and (_dense(adata.X) >= 0).all()


@PP
@given(
    spec=modality_pairs(with_labels=True, other_values=False, max_cells=40, rare=10),
    n_components=st.integers(1, 3),
    init=st.sampled_from(["labels", "links"]),
    normalized=st.booleans(),
)
@example(  # identical cells in one modality: the PCA was an ARPACK error
    spec={
        "adt": (np.tile(np.arange(4, dtype=np.float32), (30, 1)), PROTEINS[:4], ["A", "B"] * 15),
        "rna": (np.arange(120, dtype=np.float32).reshape(30, 4) % 11, GENES[:4], ["A", "B"] * 15),
    },
    n_components=1,
    init="labels",
    normalized=False,
)
@example(  # a large constant feature: the sparse PCA's implicit centring, an ARPACK error
    spec={
        "adt": (np.arange(120, dtype=np.float32).reshape(30, 4) % 7, PROTEINS[:4], ["A"] * 30),
        "rna": (
            sparse.csr_matrix(
                np.hstack([np.arange(30)[:, None] % 2, np.full((30, 6), 7.6e7)]).astype(np.float32)
            ),
            GENES[:7],
            ["A"] * 30,
        ),
    },
    n_components=1,
    init="labels",
    normalized=True,
)
def test_cca_links_works_or_own_error(spec, n_components, init, normalized):
    mdata = build(spec)
    for m, other in (("adt", "rna"), ("rna", "adt")):  # linked features of equal width
        mdata[m].obsm[f"linked_{other}"] = np.asarray(
            _dense(mdata[m].X)[:, :1], dtype=np.float32
        ) * np.ones((1, 2), np.float32)
    before = snapshot(mdata)
    summary = call(
        cca_links,
        mdata,
        ("rna", "adt"),
        init=init,
        labels_key="celltype",
        n_components=n_components,
        n_pcs=5,
        n_iterations=1,
        normalized=normalized,
    )
    if summary is None:
        assert_unchanged(before, mdata)
        return
    assert_unchanged(before, mdata, {m: {"X_cca", "scmosaic_cca"} for m in ("rna", "adt")})
    for m in ("rna", "adt"):
        scores = mdata[m].obsm["X_cca"]
        assert scores.shape == (mdata[m].n_obs, n_components)
        assert np.isfinite(scores.to_numpy()).all()


# ------------------------------------------------------------------------------ metrics, tl

# moderate values mostly; any finite float64 sometimes (squared distances may overflow)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False) | st.floats(
    allow_nan=False, allow_infinity=False
)


@st.composite
def embedding_pairs(draw, same_rows: bool = True):
    n = draw(st.integers(0, 25))
    d = draw(st.integers(1, 4))
    x = draw(arrays(np.float64, (n, d), elements=finite))
    m = n if same_rows else draw(st.integers(0, 25))
    if draw(st.booleans()):
        y = x[draw(st.permutations(range(n)))] if m == n else x[:m]  # ties, duplicates
    else:
        y = draw(arrays(np.float64, (m, d), elements=finite))
    if draw(st.booleans()):
        y = y.astype(np.float32)
    return x, y


def _unchanged_arrays(arrays_before, arrays_after) -> None:
    for a, b in zip(arrays_before, arrays_after, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


@FAST
@given(pair=embedding_pairs(), metric=st.sampled_from(["euclidean", "pearson"]))
@example(pair=(np.zeros((3, 2)), np.zeros((3, 2))), metric="pearson")
@example(  # squared distances overflow: now an error (was a silent 0.0; see test_metrics.py)
    pair=(np.array([[1e200, 0.0], [-1e200, 1.0]]), np.array([[-1e200, 1.0], [1e200, 0.0]])),
    metric="euclidean",
)
def test_foscttm_works_or_own_error(pair, metric):
    x, y = pair
    before = copy.deepcopy(pair)
    score = call(foscttm, x, y, metric=metric, chunk_size=4)
    per_cell = call(foscttm_per_cell, x, y, metric=metric, chunk_size=4)
    _unchanged_arrays(before, (x, y))
    assert (score is None) == (per_cell is None)
    if score is not None:
        assert 0.0 <= score < 1.0
        for frac in per_cell:
            assert frac.shape == (x.shape[0],) and ((frac >= 0) & (frac < 1)).all()


labels = st.sampled_from(["T", "B", "NK", None, np.nan])


@FAST
@given(pair=embedding_pairs(same_rows=False), k=st.integers(1, 40))
def test_distance_to_reference_works_or_own_error(pair, k):
    """Any embeddings: an own error, or one finite non-negative score per query cell."""
    a, b = pair
    before = copy.deepcopy((a, b))
    score = call(distance_to_reference, a, b, k=k, chunk_size=3)
    _unchanged_arrays(before, (a, b))
    if score is not None:
        assert score.shape == (len(b),) and np.isfinite(score).all() and (score >= 0).all()


@FAST
@given(pair=embedding_pairs(same_rows=False), k=st.integers(1, 300))
def test_knn_impute_works_or_own_error(pair, k):
    """Any embeddings: an own error, or a convex combination of the reference's values."""
    a, b = pair
    values = np.arange(len(a) * 2, dtype=np.float64).reshape(len(a), 2) if len(a) else a
    before = copy.deepcopy((a, b, values))
    imputed = call(knn_impute, a, values, b, n_neighbors=k)
    _unchanged_arrays(before, (a, b, values))
    if imputed is not None:
        assert imputed.shape == (len(b), values.shape[1]) and np.isfinite(imputed).all()
        if len(b):
            assert (imputed >= values.min(0) - 1e-3).all()
            assert (imputed <= values.max(0) + 1e-3).all()


@FAST
@given(pair=embedding_pairs(same_rows=False), data=st.data(), k=st.integers(1, 4))
def test_label_transfer_works_or_own_error(pair, data, k):
    a, b = pair
    la = data.draw(st.lists(labels, min_size=len(a), max_size=len(a)))
    lb = data.draw(st.lists(labels, min_size=len(b), max_size=len(b)))
    before = copy.deepcopy((a, b, la, lb))
    result = call(label_transfer_accuracy, a, la, b, lb, k=k, chunk_size=3)
    transferred = call(knn_transfer, a, la, b, k=k, chunk_size=3)
    _unchanged_arrays(before[:2], (a, b))
    assert before[2:] == (la, lb)  # np.nan is np.nan: list equality holds
    if result is not None:
        for value in result.values():
            assert np.isnan(value) or 0.0 <= value <= 1.0
    if transferred is not None:
        pred, confidence = transferred
        assert pred.shape == confidence.shape == (len(b),)
        assert ((confidence > 0) & (confidence <= 1)).all()


@FAST
@given(data=st.data(), n_a=st.integers(0, 6), n_b=st.integers(0, 6), n_pairs=st.integers(0, 8))
def test_anchor_precision_works_or_own_error(data, n_a, n_b, n_pairs):
    la = data.draw(st.lists(labels, min_size=n_a, max_size=n_a))
    lb = data.draw(st.lists(labels, min_size=n_b, max_size=n_b))
    pa, pb = (
        np.asarray(
            data.draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=n_pairs, max_size=n_pairs))
        )
        for n in (n_a, n_b)
    )
    if n_pairs and data.draw(
        st.sampled_from([False, False, False, True])
    ):  # sometimes one position out of range
        pa[data.draw(st.integers(0, n_pairs - 1))] = data.draw(st.sampled_from([-1, n_a]))
    before = copy.deepcopy((pa, pb))
    value = call(anchor_precision, pa, pb, la, lb)
    _unchanged_arrays(before, (pa, pb))
    if value is not None:
        assert np.isnan(value) or 0.0 <= value <= 1.0
