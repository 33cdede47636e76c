import numpy as np
import pandas as pd
import pytest
from conftest import make_unpaired

from scmosaic import SCMODAL

LINKS = [("rna", "adt", "linked", "linked")]


def _setup(mdata, links=LINKS, **kwargs):
    SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=links, **kwargs)


def test_missing_modality(unpaired):
    with pytest.raises(KeyError, match="'protein'"):
        SCMODAL.setup_mudata(unpaired, modalities=["rna", "protein"], links=[("rna", "protein")])


def test_link_names_unregistered_modality(unpaired):
    with pytest.raises(ValueError, match="'atac'"):
        _setup(unpaired, links=[("rna", "atac")])


def test_missing_obsm_key(unpaired):
    with pytest.raises(KeyError, match="linked_adt"):
        _setup(unpaired, links=[("rna", "adt")])


def test_missing_layer(unpaired):
    with pytest.raises(KeyError, match="'logcounts'.*'adt'"):
        _setup(unpaired, layers={"adt": "logcounts"})


@pytest.mark.parametrize("n_cells", [0, 1])
def test_modality_with_fewer_than_two_cells(unpaired, n_cells):
    unpaired.mod["adt"] = unpaired.mod["adt"][:n_cells].copy()
    with pytest.raises(ValueError, match=f"'adt' has {n_cells} cells x 12 features.*at least 2"):
        _setup(unpaired)


def test_all_zero_modality(unpaired):
    unpaired.mod["adt"].X = unpaired.mod["adt"].X * 0
    with pytest.raises(ValueError, match="'adt' .X is all zero"):
        _setup(unpaired)
    dense = make_unpaired()
    dense.mod["rna"].X = np.zeros(dense.mod["rna"].shape, dtype=np.float32)
    with pytest.raises(ValueError, match="'rna' .X is all zero"):
        _setup(dense)


def test_modality_that_is_a_view(unpaired):
    from mudata import MuData

    view = MuData({"rna": unpaired.mod["rna"][:50], "adt": unpaired.mod["adt"]})
    if not view.mod["rna"].is_view:  # mudata may copy views itself
        pytest.skip("this mudata version copies AnnData views")
    with pytest.raises(ValueError, match=r"'rna' is a view.*\.copy\(\)"):
        _setup(view)


def test_unregistered_mudata(unpaired):
    with pytest.raises(ValueError, match=r"not registered with SCMODAL: call SCMODAL.setup_mudata"):
        SCMODAL(unpaired)
    with pytest.raises(TypeError, match="needs a MuData, got AnnData"):
        SCMODAL(unpaired.mod["rna"])


def test_load_from_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved SCMODAL in .*model.pt"):
        SCMODAL.load(tmp_path / "nothing_here")


def test_gpu_without_gpu(unpaired):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    _setup(unpaired)
    model = SCMODAL(unpaired, n_hidden=8, n_hidden_discriminator=8, n_latent=2)
    with pytest.raises(RuntimeError, match="accelerator='gpu' but torch .* sees no GPU"):
        model.train(max_steps=2, accelerator="gpu", enable_progress_bar=False)


@pytest.mark.parametrize("where", ["X", "obsm"])
def test_nan_values(unpaired, where):
    if where == "X":
        x = unpaired.mod["rna"].X.toarray()
        x[3, 2] = np.nan
        unpaired.mod["rna"].X = x
        match = "'rna' .X contains NaN"
    else:
        unpaired.mod["adt"].obsm["linked"][0, 0] = np.inf
        match = "obsm\\['linked'\\] of 'adt' contains NaN or infinite"
    with pytest.raises(ValueError, match=match):
        _setup(unpaired)


def test_width_mismatch(unpaired):
    unpaired.mod["adt"].obsm["linked"] = unpaired.mod["adt"].obsm["linked"][:, :4]
    with pytest.raises(ValueError, match="differ in width.*6 columns.*4"):
        _setup(unpaired)


def test_no_linked_features(unpaired):
    unpaired.mod["adt"].obsm["linked"] = np.zeros((unpaired.mod["adt"].n_obs, 0))
    with pytest.raises(ValueError, match="no linked features"):
        _setup(unpaired)


def test_non_numeric_layer(unpaired):
    adt = unpaired.mod["adt"]
    adt.layers["text"] = np.full(adt.shape, "a", dtype=object)
    with pytest.raises(TypeError, match="'adt' layer 'text' must be numeric"):
        _setup(unpaired, layers={"adt": "text"})


def test_duplicated_features(unpaired):
    names = list(unpaired.mod["rna"].var_names)
    names[1] = names[0]
    unpaired.mod["rna"].var_names = names
    with pytest.raises(ValueError, match="'rna' has duplicated feature names.*rna_f0"):
        _setup(unpaired)


def test_no_links(unpaired):
    with pytest.raises(ValueError, match="non-empty list"):
        _setup(unpaired, links=[])


def test_user_data_unchanged_by_setup_and_training():
    mdata = make_unpaired()
    snapshot = {
        m: (a.X.toarray().copy(), a.obs.copy(), {k: np.array(v) for k, v in a.obsm.items()})
        for m, a in mdata.mod.items()
    }
    _setup(mdata)
    model = SCMODAL(mdata, n_hidden=16, n_hidden_discriminator=16, n_latent=3)
    model.train(max_steps=3, batch_size=16, enable_progress_bar=False)
    model.get_latent_representation()
    for m, (x, obs, obsm) in snapshot.items():
        np.testing.assert_array_equal(mdata.mod[m].X.toarray(), x)
        pd.testing.assert_frame_equal(mdata.mod[m].obs, obs)
        assert set(mdata.mod[m].obsm) == set(obsm)


def test_raw_counts_registered_warns_with_the_fix(unpaired):
    unpaired.mod["rna"].X = unpaired.mod["rna"].X.ceil()  # integers: raw counts
    with pytest.warns(UserWarning, match=r"'rna' .X holds .*raw counts.*scmosaic.pp.preprocess"):
        _setup(unpaired)


def test_log_normalised_data_register_quietly(unpaired, recwarn):
    _setup(unpaired)
    assert not [w for w in recwarn if "raw counts" in str(w.message)]
