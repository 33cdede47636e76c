"""Query mapping: new cells onto a trained reference without retraining it."""

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_mosaic
from hypothesis import given, settings
from hypothesis import strategies as st
from mudata import MuData

from scmosaic import SCMODAL
from scmosaic.tl import knn_transfer

LINKS = [("rna", "adt", "linked", "linked")]
SMALL = {"n_hidden": 32, "n_hidden_discriminator": 32, "n_latent": 4}
TRAIN = {"batch_size": 32, "enable_progress_bar": False, "iterations_per_epoch": 10}
# Donor-sized batch effects: the small reference trained here corrects them (see
# test_each_query_layout_maps_near_its_cell_types).
BATCH_SHIFT = 0.3
QUERIES = {"rna": {"rna": "q"}, "adt": {"adt": "s"}, "paired": {"rna": "t", "adt": "t"}}


@pytest.fixture(scope="module")
def reference() -> SCMODAL:
    mdata = make_mosaic(n_per_batch=80, batch_shift=BATCH_SHIFT)
    SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=LINKS, batch_key="batch")
    model = SCMODAL(mdata, **SMALL)
    model.train(max_steps=150, **TRAIN)
    return model


def _query(kind: str) -> MuData:
    return make_mosaic(n_per_batch=80, layout=QUERIES[kind], batch_shift=BATCH_SHIFT)


def _map(reference, query: MuData, max_steps: int | None = 30) -> SCMODAL:
    """Map ``query``: ``max_steps`` iterations (0: none, ``None``: the default)."""
    prepared = SCMODAL.prepare_query_mudata(query, reference)
    model = SCMODAL.load_query_data(prepared, reference)
    if max_steps is None:
        model.train(enable_progress_bar=False)
    elif max_steps:
        model.train(max_steps=max_steps, **TRAIN)
    return model


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def test_only_new_batches_are_fitted_and_reference_codes_stay_exact(reference):
    before = reference.get_latent_representation()
    reference_state = _state(reference)
    model = _map(reference, _query("rna"), max_steps=0)
    n_known = len(reference.layout.batch_categories)
    assert model.layout.batch_categories == (*reference.layout.batch_categories, "q")
    untrained = _state(model)
    model.train(max_steps=30, **TRAIN)
    trained = _state(model)
    changed = []
    for key, value in trained.items():
        if "_batch_offsets." in key:
            assert torch.equal(value[:n_known], reference_state[key]), key  # known rows frozen
            if not torch.equal(value[n_known:], untrained[key][n_known:]):
                changed.append(key)
        elif key.startswith("query_input_layers."):
            # The query's own first layer starts as the reference's and learns.
            start = reference_state[key.replace("query_input_layers.rna", "encoders.rna.0")]
            assert torch.equal(untrained[key], start), key
            assert not torch.equal(value, start), key
        else:
            assert torch.equal(value, reference_state[key]), key
    assert {k for k in trained if k.startswith("query_input_layers.")} == {
        "query_input_layers.rna.weight",
        "query_input_layers.rna.bias",
    }
    # The RNA offsets of the new batch learned; ADT has no query cells, so its stay zero.
    assert set(changed) == {"encoder_batch_offsets.rna.weight", "decoder_batch_offsets.rna.weight"}
    assert not trained["encoder_batch_offsets.adt.weight"][n_known:].any()
    after = model.get_latent_representation(reference.adata)
    for m in before:
        assert np.array_equal(before[m], after[m]), m
    # The reference model itself is untouched.
    for key, value in _state(reference).items():
        assert torch.equal(value, reference_state[key]), key


@pytest.mark.parametrize("kind", list(QUERIES))
def test_each_query_layout_maps_near_its_cell_types(reference, kind):
    query = _query(kind)
    model = _map(reference, query)
    latent = model.get_latent_representation()
    assert set(latent) == set(query.mod)
    ref_latent = reference.get_latent_representation()
    ref_obs = reference.adata
    for m, codes in latent.items():
        assert codes.shape == (query[m].n_obs, 4)
        assert np.isfinite(codes).all()
        pred, _ = knn_transfer(ref_latent[m], ref_obs[m].obs["celltype"].to_numpy(), codes, k=15)
        accuracy = np.mean(pred == query[m].obs["celltype"].to_numpy())
        assert accuracy > 0.8, (m, accuracy)  # three types: chance is about 0.33
    history = model.history["loss_pair"].to_numpy(dtype=float)
    assert (history > 0).all() if kind == "paired" else (history == 0).all()
    assert (model.history["n_anchor_pairs"].to_numpy(dtype=float) > 0).all()


def test_mapping_negative_control_shuffled_features(reference):
    """Features scrambled across cells: labels no longer follow them, accuracy drops to chance."""
    query = _query("rna")
    rng = np.random.default_rng(0)
    query.mod["rna"].obs["celltype"] = rng.permutation(query.mod["rna"].obs["celltype"].to_numpy())
    model = _map(reference, query)
    codes = model.get_latent_representation()["rna"]
    pred, _ = knn_transfer(
        reference.get_latent_representation()["rna"],
        reference.adata["rna"].obs["celltype"].to_numpy(),
        codes,
        k=15,
    )
    assert np.mean(pred == query["rna"].obs["celltype"].to_numpy()) < 0.55


def test_prepare_reorders_fills_and_reports(reference, caplog):
    query = _query("rna")
    names = query["rna"].var_names
    kept = names[::-1][:-3]  # reversed order, the first three features missing
    query.mod["rna"] = query["rna"][:, kept].copy()
    original = query["rna"].X.copy()
    with caplog.at_level(logging.INFO, logger="scmosaic"):
        prepared = SCMODAL.prepare_query_mudata(query, reference)
    assert "lacks 3 of the reference's 30 features" in caplog.text
    adata = prepared["rna"]
    assert list(adata.var_names) == reference.trained_features_["rna"]
    assert prepared.uns["scmosaic_query"]["rna"] == {"n_features": 30, "missing": 3}
    dense = adata.X.toarray()
    assert not dense[:, :3].any()
    np.testing.assert_array_equal(dense[:, 3:], original.toarray()[:, ::-1])
    assert (query["rna"].X != original).nnz == 0  # the user's query is unchanged
    assert list(query["rna"].var_names) == list(kept)


def test_prepare_warns_when_few_features_are_shared(reference):
    query = _query("rna")
    query.mod["rna"] = query["rna"][:, :20].copy()  # 20 of 30
    with pytest.warns(UserWarning, match="'rna' has only 67% of the reference's features"):
        SCMODAL.prepare_query_mudata(query, reference)


def test_bad_queries_get_clear_errors(reference, tmp_path):
    query = _query("rna")
    other_species = query["rna"].copy()
    other_species.var_names = [n.upper() + "_MOUSE" for n in other_species.var_names]
    with pytest.raises(ValueError, match="'rna' shares no feature with the reference"):
        SCMODAL.prepare_query_mudata(MuData({"rna": other_species}), reference)
    atac = query["rna"].copy()
    atac.var_names = [f"peak{j}" for j in range(atac.n_vars)]
    unseen = MuData({"rna": query["rna"].copy(), "atac": atac})
    with pytest.raises(ValueError, match=r"\['atac'\] were never seen by the reference"):
        SCMODAL.prepare_query_mudata(unseen, reference)
    with pytest.raises(ValueError, match="prepare it with SCMODAL.prepare_query_mudata"):
        SCMODAL.load_query_data(
            MuData({"rna": query["rna"][:, query["rna"].var_names[::-1]].copy()}), reference
        )
    with pytest.raises(FileNotFoundError, match="No saved SCMODAL"):
        SCMODAL.load_query_data(query, tmp_path)
    model = _map(reference, query, max_steps=0)
    with pytest.raises(ValueError, match="is a query model"):
        SCMODAL.load_query_data(_query("adt"), model)


def test_reference_without_batch_key_is_refused():
    mdata = make_mosaic()
    SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=LINKS)
    model = SCMODAL(mdata, **SMALL)
    model.train(max_steps=5, **TRAIN)
    query = SCMODAL.prepare_query_mudata(_query("rna"), model)
    with pytest.raises(ValueError, match="trained without batch_key"):
        SCMODAL.load_query_data(query, model)


def test_query_model_saves_and_loads(reference, tmp_path):
    reference.save(tmp_path / "reference", save_anndata=False)
    model = _map(reference, _query("paired"))  # a model object as reference ...
    from_disk = _map(tmp_path / "reference", _query("paired"))  # ... or its folder
    latent = model.get_latent_representation()
    for m, codes in from_disk.get_latent_representation().items():
        np.testing.assert_array_equal(codes, latent[m])
    model.save(tmp_path / "query", save_anndata=True)
    loaded = SCMODAL.load(tmp_path / "query")
    for m, codes in loaded.get_latent_representation().items():
        np.testing.assert_array_equal(codes, latent[m])
    assert loaded.layout.batch_categories == model.layout.batch_categories
    # Cross-modal imputation for query cells of one modality only: by the decoder, as the
    # query holds no measured ADT cells to average.
    rna_only = _map(reference, _query("rna"))
    assert rna_only.get_imputed_features("rna", "adt", method="decoder").shape == (80, 12)
    with pytest.raises(ValueError, match="'adt' cells.*method='decoder'"):
        rna_only.get_imputed_features("rna", "adt")


def test_reference_without_sketch_maps_without_anchors(reference, caplog):
    sketch = reference.latent_sketch_
    reference.latent_sketch_ = None
    try:
        with caplog.at_level(logging.INFO, logger="scmosaic"):
            model = _map(reference, _query("rna"))
    finally:
        reference.latent_sketch_ = sketch
    assert "no latent sketch" in caplog.text
    assert (model.history["n_anchor_pairs"].to_numpy(dtype=float) == 0).all()


def test_transfer_labels_from_reference_to_a_mapped_query(reference):
    from scmosaic.tl import transfer_labels

    model = _map(reference, _query("adt"))
    model.get_latent_representation(write_obsm=True)
    reference_mdata = reference.adata.copy()
    reference.get_latent_representation(reference_mdata, write_obsm=True)
    columns = list(reference_mdata["rna"].obs.columns)
    result = transfer_labels(
        reference_mdata, "rna", "adt", "celltype", query_data=model.adata, min_confidence=0.5
    )
    truth = model.adata["adt"].obs["celltype"].to_numpy()
    assert np.mean(result["label"].to_numpy() == truth) > 0.8
    assert "celltype_transferred_confidence" in model.adata["adt"].obs
    assert list(reference_mdata["rna"].obs.columns) == columns  # the reference is not written


@settings(max_examples=40, deadline=None)
@given(
    n_cells=st.integers(1, 6),
    keep=st.lists(st.integers(0, 7), min_size=1, max_size=8, unique=True),
    extra=st.integers(0, 3),
    as_sparse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_align_features_puts_every_feature_in_the_trained_column(
    n_cells, keep, extra, as_sparse, seed
):
    """Any subset and order of the trained features, plus unknown ones: each trained feature
    ends in its column with its values, the absent ones are zeros, and the input is unchanged."""
    import anndata as ad
    from scipy import sparse

    from scmosaic.model._query import align_features

    rng = np.random.default_rng(seed)
    trained = [f"g{j}" for j in range(8)]
    names = [trained[j] for j in keep] + [f"unknown{j}" for j in range(extra)]
    values = rng.normal(size=(n_cells, len(names))).astype(np.float32)
    x = sparse.csr_matrix(values) if as_sparse else values.copy()
    adata = ad.AnnData(x, var=pd.DataFrame(index=names), layers={"counts": x.copy()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few features present: a warning
        aligned, missing = align_features(adata, trained, "rna")
    assert missing == 8 - len(keep)
    assert list(aligned.var_names) == trained
    for matrix in (aligned.X, aligned.layers["counts"]):
        dense = matrix.toarray() if sparse.issparse(matrix) else matrix
        assert sparse.issparse(matrix) == as_sparse
        for j, name in enumerate(trained):
            expected = values[:, names.index(name)] if name in names else 0
            np.testing.assert_array_equal(dense[:, j], expected)
    current = adata.X.toarray() if as_sparse else adata.X
    np.testing.assert_array_equal(current, values)  # the input is unchanged


@pytest.mark.slow
def test_hao_adt_donor_maps_onto_a_cite_seq_reference():
    """Real data: the ADT-only donor of the Hao mosaic onto the two CITE-seq donors."""
    import mudata
    from conftest import shared_file

    import scmosaic

    full = mudata.read_h5mu(shared_file("midas_hao2021_pbmc_mosaic", "quickstart_pbmc_mosaic.h5mu"))

    def donors(modalities, batches):
        return MuData(
            {m: full[m][full[m].obs["batch"].isin(batches).to_numpy()].copy() for m in modalities}
        )

    reference = donors(["rna", "adt"], ["p3_0", "p4_0"])
    scmosaic.pp.link_features(reference, "adt", "rna")
    reference = scmosaic.pp.preprocess(reference)
    SCMODAL.setup_mudata(
        reference, modalities=["rna", "adt"], links=[("rna", "adt")], batch_key="batch"
    )
    query = scmosaic.pp.preprocess(donors(["adt"], ["p2_0"]), n_top_genes=None)
    truth = query["adt"].obs["celltype"].astype(str).to_numpy()

    def accuracy(model) -> float:
        joint = model.get_joint_representation(reference)
        labels = reference["rna"].obs["celltype"].astype(str).reindex(joint.index).to_numpy()
        mapped = _map(model, query, max_steps=None)
        codes = mapped.get_latent_representation()["adt"]
        pred, _ = knn_transfer(joint.drop(columns="n_modalities").to_numpy(), labels, codes, k=15)
        return float(np.mean(pred == truth))

    untrained = SCMODAL(reference, seed=0)
    untrained.is_trained_ = True  # negative control: the reference's weights at initialisation
    untrained.latent_sketch_ = untrained._latent_sketch()
    model = SCMODAL(reference, seed=0)
    model.train(max_steps=300, enable_progress_bar=False)
    trained, control = accuracy(model), accuracy(untrained)
    # 3 seeds of benchmarks/query.py (1,000 reference iterations): about 0.95.
    assert trained > 0.85, trained
    assert control < 0.6, control


def test_query_of_known_batches_has_nothing_to_fit(reference):
    known = make_mosaic(n_per_batch=80, layout={"rna": "r"}, batch_shift=BATCH_SHIFT)
    model = _map(reference, known, max_steps=0)
    with pytest.warns(UserWarning, match="nothing to fit"):
        model.train(max_steps=5, **TRAIN)
    assert model.n_iterations_trained_ == 0
    assert model.is_trained_  # its codes are the reference's: no "untrained" warnings
    # Its cells get exactly the reference's codes.
    np.testing.assert_array_equal(
        model.get_latent_representation()["rna"],
        reference.get_latent_representation(known)["rna"],
    )


def test_batch_known_only_in_another_modality_is_new_there(reference):
    """Batch "r" trained RNA only: its ADT cells are a new batch of the ADT encoder."""
    query = make_mosaic(n_per_batch=80, layout={"adt": "r"}, batch_shift=BATCH_SHIFT)
    model = _map(reference, query, max_steps=0)
    assert model._new_batches() == ["r"]
    before = _state(model)["encoder_batch_offsets.adt.weight"]
    model.train(max_steps=20, **TRAIN)
    after = _state(model)["encoder_batch_offsets.adt.weight"]
    r = reference.layout.batch_categories.index("r")
    changed = [i for i in range(len(after)) if not torch.equal(after[i], before[i])]
    assert changed == [r]  # only the ADT row of "r" learned
    codes = model.get_latent_representation(reference.adata)
    for m, expected in reference.get_latent_representation().items():
        assert np.array_equal(codes[m], expected), m


def test_reference_layers_are_read_for_modalities_the_query_lacks():
    mdata = make_mosaic(n_per_batch=40, batch_shift=BATCH_SHIFT)
    for m in mdata.mod:
        mdata.mod[m].layers["log"] = mdata.mod[m].X.copy()
        mdata.mod[m].X = np.ones(mdata.mod[m].shape, dtype=np.float32)  # must not be read
    layers = {"rna": "log", "adt": "log"}
    SCMODAL.setup_mudata(
        mdata, modalities=["rna", "adt"], links=LINKS, layers=layers, batch_key="batch"
    )
    reference = SCMODAL(mdata, **SMALL)
    reference.train(max_steps=10, **TRAIN)
    query = _query("rna")
    query.mod["rna"].layers["log"] = query.mod["rna"].X.copy()
    model = _map(reference, query, max_steps=5)
    codes = model.get_latent_representation(mdata)
    for m, expected in reference.get_latent_representation().items():
        assert np.array_equal(codes[m], expected), m


def test_new_data_normalised_otherwise_are_refused(tmp_path):
    """The model keeps how pp.preprocess normalised each modality; new data whose record says
    otherwise are refused by name (as a query or embedded directly), unrecorded data pass."""
    record = "scmosaic_preprocess"
    mdata = make_mosaic(n_per_batch=40, batch_shift=BATCH_SHIFT)
    mdata.mod["rna"].uns[record] = {"normalization": "log1p", "scale": "feature"}
    mdata.mod["adt"].uns[record] = {"normalization": "clr", "scale": "modality"}
    SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=LINKS, batch_key="batch")
    model = SCMODAL(mdata, **SMALL)
    model.train(max_steps=5, **TRAIN)
    assert model.normalization_ == {"rna": "log1p", "adt": "clr"}
    model.save(tmp_path / "reference", save_anndata=False)
    query = _query("adt")
    query.mod["adt"].uns[record] = {"normalization": "log1p"}
    fix = "'adt' was normalised by 'log1p'.*protein_normalization='clr'"
    for reference in (model, tmp_path / "reference"):
        with pytest.raises(ValueError, match=fix):
            SCMODAL.prepare_query_mudata(query, reference)
    other = mdata.copy()
    other.mod["adt"].uns[record] = {"normalization": "log1p"}
    with pytest.raises(ValueError, match=fix):
        model.get_latent_representation(other)
    del query.mod["adt"].uns[record]  # no record: the user normalised it, nothing to compare
    mapped = _map(tmp_path / "reference", query, max_steps=0)
    assert mapped.normalization_ == model.normalization_
