import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_unpaired
from mudata import MuData

from scmosaic import SCMODAL

LINKS = [("rna", "adt", "linked", "linked")]
SMALL = {"n_hidden": 32, "n_hidden_discriminator": 32, "n_latent": 4}
TRAIN = {"batch_size": 32, "enable_progress_bar": False, "iterations_per_epoch": 5}


def _setup(mdata, **kwargs):
    SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=LINKS, **kwargs)


def _trained(mdata, steps=10, seed=0, **model_kwargs):
    _setup(mdata)
    model = SCMODAL(mdata, seed=seed, **{**SMALL, **model_kwargs})
    model.train(max_steps=steps, seed=seed, **TRAIN)
    return model


def test_counts_iterations_and_logs_every_term(unpaired):
    model = _trained(unpaired, steps=12)
    assert model.n_iterations_trained_ == 12
    for key in [
        "loss_discriminator",
        "loss_adversarial",
        "loss_reconstruction",
        "loss_latent_cycle",
        "loss_anchor",
        "loss_geometric",
        "loss_total",
        "n_anchor_pairs",
        "train_loss_epoch",
    ]:
        assert key in model.history, key
    assert len(model.history["loss_total"]) == 3  # 12 iterations, 5 per epoch
    assert model.history["n_anchor_pairs"].iloc[:, 0].min() > 0
    assert np.isfinite(model.history["loss_total"].to_numpy(dtype=float)).all()


def test_latent_shapes_no_side_effects_and_obsm(unpaired):
    model = _trained(unpaired)
    before = {m: set(unpaired.mod[m].obsm) for m in unpaired.mod}
    latent = model.get_latent_representation()
    assert latent["rna"].shape == (90, 4) and latent["adt"].shape == (80, 4)
    assert {m: set(unpaired.mod[m].obsm) for m in unpaired.mod} == before
    model.get_latent_representation(write_obsm=True, batch_size=7)
    np.testing.assert_allclose(unpaired.mod["adt"].obsm["X_scmodal"], latent["adt"], atol=1e-6)


def test_same_seed_same_latent(unpaired):
    a = _trained(unpaired, seed=3).get_latent_representation()
    b = _trained(make_unpaired(), seed=3).get_latent_representation()
    c = _trained(make_unpaired(), seed=4).get_latent_representation()
    np.testing.assert_array_equal(a["rna"], b["rna"])
    assert not np.allclose(a["rna"], c["rna"])


def test_save_load_exact_and_new_mudata(unpaired, tmp_path):
    model = _trained(unpaired)
    latent = model.get_latent_representation()
    model.save(tmp_path / "model", save_anndata=True)
    loaded = SCMODAL.load(tmp_path / "model")
    reloaded = loaded.get_latent_representation()
    for m in latent:
        np.testing.assert_array_equal(latent[m], reloaded[m])
    # a new MuData of the same layout (same features, other cells)
    new = make_unpaired(n_a=40, n_b=30, seed=1)
    new_latent = model.get_latent_representation(new)
    assert new_latent["rna"].shape == (40, 4)
    loaded2 = SCMODAL.load(tmp_path / "model", adata=new)
    np.testing.assert_allclose(
        loaded2.get_latent_representation()["adt"], new_latent["adt"], rtol=1e-5
    )


def test_inference_on_backed_mudata(unpaired, tmp_path):
    """Data that stay on disk (backed h5mu) give the same latents, read chunk by chunk."""
    import mudata

    model = _trained(unpaired)
    latent = model.get_latent_representation()
    unpaired.write(tmp_path / "data.h5mu")
    backed = mudata.read_h5mu(tmp_path / "data.h5mu", backed=True)
    assert backed["rna"].isbacked
    on_disk = model.get_latent_representation(backed, batch_size=16)
    for m in latent:
        np.testing.assert_array_equal(latent[m], on_disk[m])


def test_decoder_imputation_named_and_unscaled(unpaired):
    model = _trained(unpaired)
    scaled = model.get_imputed_features("rna", "adt", method="decoder")
    log = model.get_imputed_features("rna", "adt", space="log", method="decoder")
    assert isinstance(scaled, pd.DataFrame)
    assert list(scaled.columns) == list(unpaired.mod["adt"].var_names)
    assert list(scaled.index) == list(unpaired.mod["rna"].obs_names)
    st = model.module.standardizers["adt"]
    np.testing.assert_allclose(
        log.to_numpy(), scaled.to_numpy() * st.std.numpy() + st.mean.numpy(), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="'protein'"):
        model.get_imputed_features("rna", "protein")


def _kernel_average(source, target, values, k, rank):
    """The documented kernel average, written out densely: weights exp(-(d / s)^2) over the
    k nearest target cells, s the distance to the rank-th nearest."""
    distances = np.linalg.norm(source[:, None, :] - target[None, :, :], axis=2)
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
    d = np.take_along_axis(distances, nearest, axis=1)
    w = np.exp(-((d / d[:, [min(rank, k) - 1]]) ** 2))
    return (values[nearest] * (w / w.sum(1, keepdims=True))[..., None]).sum(1)


def test_neighbor_imputation_kernel_averages_nearest_measured_cells(unpaired):
    """The default: each RNA cell gets a Gaussian-kernel average of the measured ADT of its k
    nearest ADT cells in the latent space, in log space and (clipped, z-scored) in the
    scaled space."""
    from scmosaic.tl._impute import BANDWIDTH_RANK

    model = _trained(unpaired)
    latent = model.get_latent_representation()
    measured = unpaired["adt"].X.toarray()
    for k in (7, 60):  # the width at the k-th, then at the BANDWIDTH_RANK-th neighbour
        log = model.get_imputed_features("rna", "adt", space="log", n_neighbors=k, batch_size=16)
        expected = _kernel_average(latent["rna"], latent["adt"], measured, k, BANDWIDTH_RANK)
        np.testing.assert_allclose(log.to_numpy(), expected, rtol=1e-4, atol=1e-4)
    assert list(log.columns) == list(unpaired.mod["adt"].var_names)
    assert list(log.index) == list(unpaired.mod["rna"].obs_names)
    # Not a plain mean: the nearest cells weigh more.
    plain = measured[
        np.argsort(np.linalg.norm(latent["rna"][:, None] - latent["adt"][None], axis=2), axis=1)[
            :, :60
        ]
    ].mean(1)
    assert np.abs(log.to_numpy() - plain).max() > 1e-2
    scaled_cells = model.module.scale("adt", torch.as_tensor(measured)).numpy()
    scaled = model.get_imputed_features("rna", "adt", n_neighbors=7)
    expected = _kernel_average(latent["rna"], latent["adt"], scaled_cells, 7, BANDWIDTH_RANK)
    np.testing.assert_allclose(scaled.to_numpy(), expected, atol=1e-4)
    # k beyond the number of ADT cells: all of them, still a convex combination.
    everything = model.get_imputed_features("rna", "adt", space="log", n_neighbors=10_000)
    assert (everything.to_numpy() >= measured.min(0) - 1e-5).all()
    assert (everything.to_numpy() <= measured.max(0) + 1e-5).all()
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="n_neighbors"):
            model.get_imputed_features("rna", "adt", n_neighbors=bad)
    with pytest.raises(ValueError, match="method"):
        model.get_imputed_features("rna", "adt", method="knn")


def test_standardisation_statistics(unpaired):
    _setup(unpaired)
    model = SCMODAL(unpaired, **SMALL)
    x = unpaired.mod["rna"].X.toarray()
    np.testing.assert_allclose(model.module.standardizers["rna"].mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(
        model.module.standardizers["rna"].std.numpy(), x.std(0, ddof=1), rtol=1e-4
    )


def test_partly_shared_cells_and_three_modalities():
    base = make_unpaired(n_a=60, n_b=50)
    rna, adt = base.mod["rna"], base.mod["adt"]
    # atac shares the rna cells (paired) and links to rna by name-like features
    atac = rna.copy()
    atac.var_names = [f"atac_f{j}" for j in range(atac.n_vars)]
    adt.obs_names = list(rna.obs_names[:25]) + list(adt.obs_names[25:])  # partly shared
    mdata = MuData({"rna": rna, "adt": adt, "atac": atac})
    SCMODAL.setup_mudata(
        mdata,
        modalities=["rna", "adt", "atac"],
        links=[("rna", "adt", "linked", "linked"), ("rna", "atac", "linked", "linked")],
    )
    model = SCMODAL(mdata, **SMALL)
    assert len(model.module.discriminators) == 2
    model.train(max_steps=5, **TRAIN)
    latent = model.get_latent_representation()
    assert {m: v.shape[0] for m, v in latent.items()} == {"rna": 60, "adt": 50, "atac": 60}


def test_reference_preset_is_published_defaults(unpaired):
    _setup(unpaired)
    model = SCMODAL(unpaired, preset="reference")
    module = model.module
    assert module.n_latent == 20
    assert module.encoders["rna"][0].out_features == 512
    published = ("adversarial", "reconstruction", "latent_cycle", "anchor", "geometric")
    assert {k: module.lambdas[k] for k in published} == {
        "adversarial": 1,
        "reconstruction": 10,
        "latent_cycle": 10,
        "anchor": 1,
        "geometric": 10,
    }
    assert module.n_neighbors_mnn == 30
    assert module.n_neighbors_mnn_local == 0  # every mutual pair within 30, as published
    assert module.anchor_similarity == "cosine"
    assert len(module.discriminators[0]) == 5  # Linear-ReLU-Linear-ReLU-Linear
    w = module.encoders["rna"][0].weight.detach()
    assert abs(w.std().item() - 0.1) < 0.01
    with pytest.raises(ValueError, match="Unknown preset"):
        SCMODAL(unpaired, preset="fast-ish")


def test_default_preset_iterations_follow_data_size():
    from scmosaic.model._presets import default_max_steps

    assert default_max_steps(800, 500) == 1000  # the Hao subset: where quality peaks
    assert default_max_steps(1200, 500) == 1500
    assert default_max_steps(6855, 500) == 2000  # PBMC 10k: quality is flat beyond
    assert default_max_steps(10**6, 500) == 2000
    assert default_max_steps(10, 500) == 1000


def test_default_train_uses_data_size_rule(unpaired):
    _setup(unpaired)
    model = SCMODAL(unpaired, **SMALL)
    model.train(
        batch_size=64, enable_progress_bar=False, iterations_per_epoch=500, early_stopping=False
    )
    assert model.n_iterations_trained_ == 1000  # 625 passes of 90 cells are < 1,000 iterations


def test_training_output_has_no_lightning_noise(unpaired, recwarn, caplog):
    """Lightning's product tips, its optimiser-step count and its device banner are not shown
    to users; scmosaic logs one line with the iterations and the device instead."""
    import logging

    from lightning_utilities.core import rank_zero

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    rank_zero.log.addHandler(handler)  # the logger Lightning emits through, as in the model
    try:
        with caplog.at_level(logging.INFO, logger="scmosaic"):
            model = _trained(unpaired, steps=3)
            model.get_latent_representation()  # leaves the module in eval mode
            model.train(max_steps=2, **TRAIN)
    finally:
        rank_zero.log.removeHandler(handler)
    shown = [r.getMessage() for r in records if all(f(r) for f in rank_zero.log.filters)]
    assert not [m for m in shown if "Tip" in m or "max_steps=" in m or "available:" in m], shown
    assert "Training SCMODAL for 3 iterations on 1 cpu device(s)." in caplog.messages
    assert not [w for w in recwarn if "LeafSpec" in str(w.message)]
    assert not [w for w in recwarn if "eval mode" in str(w.message)]


def test_model_saved_by_version_0_1_loads_with_unchanged_latents():
    """A model saved before the architecture change (scmosaic 0.1.0, tests/data/model_v0_1:
    make_unpaired(), LINKS, SMALL, seed 0, 20 iterations) gives the latents it gave then."""
    folder = Path(__file__).parent / "data" / "model_v0_1"
    loaded = SCMODAL.load(folder, adata=make_unpaired())
    expected = np.load(folder / "latent.npz")
    latent = loaded.get_latent_representation()
    for m in ("rna", "adt"):
        np.testing.assert_array_equal(latent[m], expected[m])


def test_same_training_as_version_0_1():
    """The refactored training path takes the same steps: same seed and settings (0.1 had no
    local anchors), the same latents up to float rounding (0.1's Adam was not fused; the
    fused kernel rounds differently, ~1e-7 after 20 iterations; any change of the
    algorithm moves the codes by orders of magnitude more)."""
    expected = np.load(Path(__file__).parent / "data" / "model_v0_1" / "latent.npz")
    model = _trained(make_unpaired(), steps=20, seed=0, n_neighbors_mnn_local=0)
    latent = model.get_latent_representation()
    for m in ("rna", "adt"):
        np.testing.assert_allclose(latent[m], expected[m], rtol=0, atol=1e-5)


def test_train_arguments_validated_and_given_once(unpaired):
    _setup(unpaired)
    model = SCMODAL(unpaired, **SMALL)
    for bad, words in [
        ({"max_steps": 2.5}, "max_steps must be an int >= 1, got 2.5"),
        ({"max_steps": 0}, "max_steps must be an int >= 1, got 0"),
        ({"max_steps": "long"}, "max_steps must be an int >= 1 or 'auto', got 'long'"),
        ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": -60}, "batch_size must be an int >= 1, got -60"),
        ({"n_critic": 0}, "n_critic must be an int >= 1, got 0"),
        ({"lr": -1e-3}, "lr must be a number > 0, got -0.001"),
        ({"lr": float("nan")}, "lr must be a number > 0, got nan"),
        ({"weight_decay": -1.0}, "weight_decay must be a number >= 0"),
        ({"gradient_clip_norm": float("inf")}, "gradient_clip_norm must be a number >= 0"),
    ]:
        with pytest.raises(ValueError, match=re.escape(words)):
            model.train(**{**TRAIN, "max_steps": 2, **bad})
    with pytest.raises(ValueError, match="'lr' was given both as an argument and in plan_kwargs"):
        model.train(max_steps=2, lr=1e-3, plan_kwargs={"lr": 1e-4}, **TRAIN)
    assert model.n_iterations_trained_ == 0


def test_plan_and_datasplitter_kwargs_reach_their_objects(unpaired):
    _setup(unpaired)
    model = SCMODAL(unpaired, **SMALL)
    model.train(
        max_steps=2,
        plan_kwargs={"lr": 5e-4, "betas": (0.5, 0.9)},
        datasplitter_kwargs={"data_on_device": False},
        **TRAIN,
    )
    plan = model.trainer.lightning_module
    assert plan.lr == 5e-4 and plan.betas == (0.5, 0.9)
    assert plan.optimizers()[0].param_groups[0]["betas"] == (0.5, 0.9)
    assert model.trainer.datamodule.data_on_device is False


def test_layout_structures_a_batch(unpaired):
    _setup(unpaired)
    layout = SCMODAL(unpaired, **SMALL).layout
    assert layout.registry_keys("rna") == ["X_rna", "link0_rna"]
    tensors = {
        "rna": {"X_rna": torch.zeros(3, 30), "link0_rna": torch.ones(3, 6)},
        "adt": {"X_adt": torch.zeros(2, 12), "link0_adt": torch.full((2, 6), 2.0)},
    }
    batch = layout.structure(tensors)
    assert batch.n_obs == 5 and set(batch.x) == {"rna", "adt"}
    ((p_a, p_b),) = batch.linked
    assert p_a.shape == (3, 6) and float(p_b[0, 0]) == 2.0


def test_docstrings_show_preset_values():
    assert "reference preset: 10,000; default preset: 'auto'" in SCMODAL.train.__doc__
    assert "({" not in SCMODAL.__doc__ and "both presets: 20" in SCMODAL.__doc__


def _reordered(mdata, modality, order):
    """A new MuData whose ``modality`` holds the same features in ``order``."""
    mods = {m: mdata.mod[m].copy() for m in mdata.mod}
    mods[modality] = mods[modality][:, order].copy()
    return MuData(mods)


def test_new_data_features_matched_by_name(unpaired, tmp_path):
    model = _trained(unpaired)
    expected = model.get_latent_representation()
    reversed_genes = unpaired["rna"].var_names[::-1]
    shuffled = _reordered(unpaired, "rna", reversed_genes)
    got = model.get_latent_representation(shuffled)
    np.testing.assert_allclose(got["rna"], expected["rna"], atol=1e-6)
    # Linked features are not needed to embed cells.
    for m in shuffled.mod:
        shuffled.mod[m].obsm.clear()
    np.testing.assert_allclose(
        model.get_latent_representation(shuffled)["adt"], expected["adt"], atol=1e-6
    )
    imputed = model.get_imputed_features("rna", "adt", mdata=shuffled)
    assert list(imputed.columns) == list(unpaired["adt"].var_names)
    np.testing.assert_allclose(imputed, model.get_imputed_features("rna", "adt"), atol=1e-6)
    # Renamed features of the same count: an error that names them.
    renamed = unpaired.copy()
    renamed.mod["adt"].var_names = [f"other{j}" for j in range(renamed["adt"].n_vars)]
    with pytest.raises(KeyError, match=r"'adt' lacks 12 of the 12 features.*'adt_f0'"):
        model.get_latent_representation(renamed)
    # Reloaded with reordered data: inference by name; training refuses the other order.
    model.save(tmp_path / "m")
    loaded = SCMODAL.load(tmp_path / "m", adata=_reordered(unpaired, "rna", reversed_genes))
    np.testing.assert_allclose(
        loaded.get_latent_representation()["rna"], expected["rna"], atol=1e-6
    )
    with pytest.raises(ValueError, match="'rna' are the trained ones in another order"):
        loaded.train(max_steps=2, **TRAIN)
    with pytest.raises(KeyError, match="lacks 12 of the 12"):
        SCMODAL.load(tmp_path / "m", adata=renamed)


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ({"n_latent": 0}, "n_latent must be an int >= 1, got 0"),
        ({"n_hidden": 2.0}, "n_hidden must be an int >= 1, got 2.0"),
        ({"n_neighbors_mnn": 0}, "n_neighbors_mnn must be an int >= 1, got 0"),
        ({"n_neighbors_mnn_local": -1}, "n_neighbors_mnn_local must be an int >= 0, got -1"),
        ({"lambda_mnn": -1}, "lambda_mnn must be a number >= 0, got -1"),
        ({"max_geo_similarity": 1.5}, "max_geo_similarity must be a number > 0 and <= 1"),
        ({"clip": float("nan")}, "clip must be a number >= 0, got nan"),
        ({"init_std": True}, "init_std must be a number >= 0, got True"),
        (
            {"anchor_similarity": "manhattan"},
            "anchor_similarity must be one of 'cosine', 'euclidean', got 'manhattan'",
        ),
    ],
)
def test_model_settings_validated_with_accepted_range(unpaired, setting, words):
    _setup(unpaired)
    with pytest.raises(ValueError, match=re.escape(words)):
        SCMODAL(unpaired, **{**SMALL, **setting})


def test_same_seed_two_threads_identical_latents():
    """With two torch threads, anchor-gradient sums used to land in thread-timing order
    (measured: 2e-7 apart after 20 iterations, 0.007 after 60); deterministic CPU training
    (the default) makes same-seed runs identical."""
    import scmosaic

    mdata = scmosaic.datasets.hide_pairing(scmosaic.datasets.hao2021_pbmc_cite(), seed=0)
    scmosaic.pp.link_features(mdata, "adt", "rna")
    mdata = scmosaic.pp.preprocess(mdata)
    SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=[("rna", "adt")])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = []
        for _ in range(2):
            model = SCMODAL(mdata, seed=0, n_hidden=128)
            model.train(max_steps=20, enable_progress_bar=False)
            runs.append(model.get_latent_representation())
    finally:
        torch.set_num_threads(threads)
    assert not torch.are_deterministic_algorithms_enabled()  # the global setting is restored
    for m in ("rna", "adt"):
        np.testing.assert_array_equal(runs[0][m], runs[1][m])


def test_readme_steps_print_no_library_noise(capfd, tmp_path):
    """mudata's pull_on_update notice and scvi-tools' INFO lines are not shown to users."""
    import warnings

    import scmosaic

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mdata = scmosaic.datasets.hao2021_pbmc_cite()
        scmosaic.pp.link_features(mdata, "adt", "rna")
        mdata = scmosaic.pp.preprocess(mdata)
        SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=[("rna", "adt")])
        model = SCMODAL(mdata, **SMALL)
        model.train(max_steps=2, **TRAIN)
        model.save(tmp_path / "m")
        SCMODAL.load(tmp_path / "m", adata=mdata)
    assert not [w for w in caught if "pull" in str(w.message)], [str(w.message) for w in caught]
    captured = capfd.readouterr()
    for noise in ("Using column names", "already downloaded", "Generating sequential"):
        assert noise not in captured.out + captured.err


def test_feature_scale_from_preprocessing_record_or_argument(unpaired):
    """A modality that pp.preprocess recorded as CLR proteins is centred per feature and
    scaled by one scale (the mean of its features' stds); an explicit feature_scale wins;
    bad names and values are refused naming them."""
    unpaired.mod["adt"].uns["scmosaic_preprocess"] = {"scale": "modality"}
    _setup(unpaired)
    x = unpaired.mod["adt"].X.toarray()
    model = SCMODAL(unpaired, **SMALL)
    assert model.feature_scale == {"rna": "feature", "adt": "modality"}
    st = model.module.standardizers["adt"]
    np.testing.assert_allclose(st.mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(
        st.std.numpy(), np.full(x.shape[1], x.std(0, ddof=1).mean()), rtol=1e-4
    )
    per_feature = SCMODAL(unpaired, feature_scale={"adt": "feature"}, **SMALL)
    np.testing.assert_allclose(
        per_feature.module.standardizers["adt"].std.numpy(), x.std(0, ddof=1), rtol=1e-4
    )
    with pytest.raises(ValueError, match="'protein'.*not registered"):
        SCMODAL(unpaired, feature_scale={"protein": "modality"}, **SMALL)
    with pytest.raises(ValueError, match="feature_scale\\['adt'\\]"):
        SCMODAL(unpaired, feature_scale={"adt": "panel"}, **SMALL)


def test_neighbor_weights_duplicated_codes_share_the_weight():
    """A source cell whose nearest target cells sit at distance 0 (duplicated codes, width 0)
    gets their equal mean, not NaN."""
    from scmosaic.tl._impute import neighbor_weights

    target = np.array([[0.0, 0.0]] * 40 + [[1.0, 0.0], [5.0, 5.0]], dtype=np.float32)
    weights = neighbor_weights(np.zeros((1, 2), np.float32), target, 42).toarray()
    np.testing.assert_allclose(weights[0, :40], 1 / 40, rtol=1e-6)
    np.testing.assert_allclose(weights[0, 40:], 0, atol=1e-12)
    assert neighbor_weights(np.zeros((0, 2)), target, 5).shape == (0, 42)
