"""Bridge features: cells of two modalities described by their similarity to paired cells."""

import numpy as np
import pytest
import torch
from conftest import make_mosaic

from scmosaic import SCMODAL
from scmosaic.metrics import foscttm
from scmosaic.model._bridge import (
    MAX_LANDMARKS,
    MIN_LANDMARKS,
    N_BRIDGE_NEIGHBORS,
    bridge_features,
    choose_landmarks,
    principal_components,
)
from scmosaic.model._data_module import ResidentDataset, UnpairedDataModule, WithExtraArrays
from scmosaic.model._losses import select_anchors

LINKS = [("rna", "adt", "linked", "linked")]
SMALL = {"n_hidden": 32, "n_hidden_discriminator": 32, "n_latent": 4}


def _two_views(n=300, n_types=6, seed=0):
    """The same cells seen through two random linear maps of a shared type structure."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n)
    state = rng.normal(0, 3, (n_types, 8))[types] + rng.normal(0, 0.5, (n, 8))
    a = state @ rng.normal(0, 1, (8, 40)) + rng.normal(0, 0.5, (n, 40))
    b = state @ rng.normal(0, 1, (8, 15)) + rng.normal(0, 0.5, (n, 15))
    return a, b, types


def _codes(x, seed=0):
    scaled = (x - x.mean(0)) / x.std(0)
    return principal_components(lambda: iter(np.array_split(scaled, 3)), len(x), seed)


def test_bridge_features_match_partners_that_linked_features_cannot():
    a, b, types = _two_views()
    paired = np.arange(60)  # the first 60 cells are given as pairs, the rest are hidden
    bridges = bridge_features(_codes(a), _codes(b), paired, paired, seed=0)
    assert bridges is not None
    b_a, b_b = (m.toarray() for m in bridges)
    assert b_a.shape == (300, 60) and b_b.shape == (300, 60)
    assert (np.count_nonzero(b_a, axis=1) == N_BRIDGE_NEIGHBORS).all()
    hidden = np.arange(60, 300)
    # Bridge rows of a cell and its partner agree; random "linked features" do not.
    score = foscttm(b_a[hidden], b_b[hidden])
    noise = np.random.default_rng(1).normal(size=(300, 10))
    control = foscttm(noise[hidden], np.random.default_rng(2).normal(size=(240, 10)))
    assert score < 0.1 < 0.4 < control, (score, control)
    # Anchors chosen with the bridge similarity join cells of the same type; without it,
    # from uninformative linked features, about 1 in 6 do.
    t = torch.from_numpy
    p_a, p_b = t(noise[hidden]).float(), t(np.random.default_rng(3).normal(size=(240, 10))).float()
    z = torch.zeros(240, 2)
    precision = {}
    for weight in (0.0, 2.0):
        idx_a, idx_b = select_anchors(
            p_a, p_b, z, z, 10, 0.0, (t(b_a[hidden]), t(b_b[hidden])), weight
        )
        precision[weight] = (types[hidden][idx_a] == types[hidden][idx_b]).mean()
    assert precision[2.0] > 0.9 and precision[0.0] < 0.4, precision


def test_bridge_weight_zero_or_no_bridge_is_the_linked_rule():
    g = torch.Generator().manual_seed(0)
    p_a, p_b = torch.randn(50, 6, generator=g), torch.randn(40, 6, generator=g)
    z_a, z_b = torch.randn(50, 3, generator=g), torch.randn(40, 3, generator=g)
    bridge = (torch.rand(50, 12, generator=g), torch.rand(40, 12, generator=g))
    for w in (0.0, 0.5):
        plain = select_anchors(p_a, p_b, z_a, z_b, 5, w)
        for same in (
            select_anchors(p_a, p_b, z_a, z_b, 5, w, None, 2.0),
            select_anchors(p_a, p_b, z_a, z_b, 5, w, bridge, 0.0),
        ):
            for x, y in zip(plain, same, strict=True):
                assert torch.equal(x, y)


def test_too_few_pairs_give_no_bridge_and_many_are_subsampled():
    codes = np.random.default_rng(0).normal(size=(40, 5))
    rows = np.arange(MIN_LANDMARKS - 1)
    assert bridge_features(codes, codes, rows, rows, seed=0) is None
    chosen = choose_landmarks(3 * MAX_LANDMARKS, seed=4)
    assert len(chosen) == MAX_LANDMARKS == len(np.unique(chosen))
    np.testing.assert_array_equal(chosen, choose_landmarks(3 * MAX_LANDMARKS, seed=4))


def _model(mdata, **kwargs):
    SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=LINKS)
    return SCMODAL(mdata, **{**SMALL, **kwargs})


def test_bridge_features_travel_with_each_minibatch_on_host_and_device():
    mdata = make_mosaic()
    before = {m: set(mdata[m].obsm) for m in ("rna", "adt")}
    model = _model(mdata)
    pairs = model._pairs()
    extra = model._bridge_features(pairs, seed=0)
    assert set(extra) == {"rna", "adt"}
    assert extra["rna"]["bridge0"].shape == (mdata["rna"].n_obs, 60)
    assert extra["adt"]["bridge0"].shape == (mdata["adt"].n_obs, 60)
    # a paired cell's bridge row is most similar to itself as a landmark, in both modalities
    rows_a, rows_b = pairs[0]
    for matrix, rows in ((extra["rna"]["bridge0"], rows_a), (extra["adt"]["bridge0"], rows_b)):
        dense = matrix.toarray()[rows]
        assert (dense.argmax(1) == np.arange(len(rows))).mean() > 0.95
    batches = []
    for on_device in (False, True):
        dm = UnpairedDataModule(
            model.adata_manager,
            model.layout,
            batch_size=16,
            iterations_per_epoch=2,
            seed=3,
            data_on_device=on_device,
            pairs=pairs,
            extra_arrays=extra,
        )
        loaders = dm.train_dataloader()
        kind = ResidentDataset if on_device else WithExtraArrays
        assert isinstance(loaders["rna"].dataset, kind)
        batches.append(
            [dm.on_before_batch_transfer({m: next(iter(loaders[m])) for m in ("rna", "adt")}, 0)]
        )
    host, dev = batches[0][0], batches[1][0]
    assert host.bridges[0] is not None
    for x, y in zip(host.bridges[0], dev.bridges[0], strict=True):
        assert x.shape == (16, 60)
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert {m: set(mdata[m].obsm) for m in ("rna", "adt")} == before  # nothing written


@pytest.mark.parametrize("kwargs", [{"use_pairs": False}, {"bridge_anchor_weight": 0.0}])
def test_no_bridge_without_pairs_or_weight(kwargs):
    model = _model(make_mosaic(), **kwargs)
    pairs = model._pairs() if model.use_pairs else None
    assert model._bridge_features(pairs, seed=0) == {}
