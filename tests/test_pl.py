"""scmosaic.pl: loss curves and joint embeddings (Agg backend, tiny model)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import make_unpaired
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import scmosaic
from scmosaic import SCMODAL
from scmosaic.pl._embedding import _stack_latents


@pytest.fixture(scope="module")
def trained():
    mdata = make_unpaired()
    SCMODAL.setup_mudata(
        mdata, modalities=["rna", "adt"], links=[("rna", "adt", "linked", "linked")]
    )
    model = SCMODAL(mdata, n_hidden=32, n_hidden_discriminator=32, n_latent=4)
    model.train(max_steps=12, batch_size=32, enable_progress_bar=False, iterations_per_epoch=5)
    model.get_latent_representation(write_obsm=True)
    return model, mdata


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _snapshot(mdata):
    return {
        m: (
            list(a.obs.columns),
            sorted(a.obsm),
            sorted(a.uns),
            sorted(a.obsp),
            a.obsm["X_scmodal"].copy(),
        )
        for m, a in mdata.mod.items()
    }


def test_loss_curves_axes_keys_and_iterations(trained, tmp_path):
    model, _ = trained
    ax = scmosaic.pl.loss_curves(model, show=False, save=tmp_path / "losses.png")
    assert isinstance(ax, Axes)
    assert (tmp_path / "losses.png").stat().st_size > 0
    labels = [line.get_label() for line in ax.get_lines()]
    assert "loss_anchor" in labels and "loss_total" in labels
    assert "n_anchor_pairs" not in labels
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [5, 10, 12])
    assert ax.get_xlabel() == "iteration"


def test_loss_curves_separate_panels(trained):
    model, _ = trained
    keys = ["loss_total", "loss_anchor", "loss_adversarial", "loss_reconstruction"]
    fig = scmosaic.pl.loss_curves(model, keys, separate=True, show=False)
    visible = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in visible] == keys
    assert all(len(a.get_lines()) == 1 for a in visible)
    with pytest.raises(ValueError, match="separate=True"):
        scmosaic.pl.loss_curves(model, separate=True, ax=plt.subplots()[1], show=False)


def test_loss_curves_given_ax_history_and_errors(trained):
    model, _ = trained
    fig, ax = plt.subplots()
    out = scmosaic.pl.loss_curves(model, "n_anchor_pairs", ax=ax, show=False)
    assert out is ax and len(ax.get_lines()) == 1
    # a bare history dict (e.g. of a reloaded model): x axis in epochs
    ax2 = scmosaic.pl.loss_curves(dict(model.history), ["loss_total"], show=False)
    assert ax2.get_xlabel() == "epoch"
    with pytest.raises(KeyError, match="loss_nope"):
        scmosaic.pl.loss_curves(model, ["loss_nope"], show=False)
    untrained = SCMODAL(model.adata, n_hidden=8, n_hidden_discriminator=8, n_latent=2)
    with pytest.raises(ValueError, match="train it first"):
        scmosaic.pl.loss_curves(untrained, show=False)


def test_show_returns_none(trained, monkeypatch):
    model, _ = trained
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(True))
    assert scmosaic.pl.loss_curves(model, show=True) is None
    assert scmosaic.pl.loss_curves(model) is None  # show=None: scanpy's autoshow (True)
    assert len(shown) == 2


def test_joint_embedding_umap_unchanged_mdata(trained, tmp_path):
    _, mdata = trained
    before = _snapshot(mdata)
    fig = scmosaic.pl.joint_embedding(
        mdata, color=["modality", "celltype"], show=False, save=tmp_path / "umap.pdf"
    )
    assert isinstance(fig, Figure)
    assert (tmp_path / "umap.pdf").stat().st_size > 0
    after = _snapshot(mdata)
    for m in before:
        assert before[m][:4] == after[m][:4]
        np.testing.assert_array_equal(before[m][4], after[m][4])
    assert "X_umap" not in mdata["rna"].obsm and "neighbors" not in mdata["rna"].uns


def test_joint_embedding_single_panel_without_umap(trained):
    _, mdata = trained
    fig, ax = plt.subplots()
    out = scmosaic.pl.joint_embedding(mdata, basis="X_scmodal", method=None, ax=ax, show=False)
    assert out is ax
    points = ax.collections[0].get_offsets()
    assert len(points) == mdata["rna"].n_obs + mdata["adt"].n_obs
    ax = scmosaic.pl.joint_embedding(mdata, "celltype", modalities=["adt"], method=None, show=False)
    assert isinstance(ax, Axes)


def test_stack_latents(trained):
    _, mdata = trained
    joint = _stack_latents(mdata, obs_keys=["celltype"])
    assert joint.n_obs == 170 and joint.obsm["X_scmodal"].shape == (170, 4)
    assert list(joint.obs["modality"].cat.categories) == ["rna", "adt"]
    assert joint.obs_names[0] == "rna_cell0:rna"
    np.testing.assert_array_equal(joint.obsm["X_scmodal"][90:], mdata["adt"].obsm["X_scmodal"])


def test_joint_embedding_errors(trained):
    _, mdata = trained
    adt = mdata["adt"]
    latent = adt.obsm.pop("X_scmodal")
    try:
        with pytest.raises(KeyError, match=r"'X_scmodal' not in mdata\['adt'\]\.obsm"):
            scmosaic.pl.joint_embedding(mdata, show=False)
    finally:
        adt.obsm["X_scmodal"] = latent
    with pytest.raises(KeyError, match="'donor'"):
        scmosaic.pl.joint_embedding(mdata, color="donor", method=None, show=False)
    with pytest.raises(ValueError, match="single panel"):
        scmosaic.pl.joint_embedding(
            mdata, color=["modality", "celltype"], ax=plt.subplots()[1], show=False
        )
