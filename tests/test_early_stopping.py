"""Early stopping on the cross-modal neighbour agreement (model/_convergence.py)."""

import logging

import numpy as np
import pytest
import torch
from conftest import make_mosaic, make_unpaired
from hypothesis import given, settings
from hypothesis import strategies as st

from scmosaic import SCMODAL
from scmosaic.model._convergence import ConvergenceRule, neighbor_agreement
from scmosaic.model._presets import EARLY_STOPPING, check_interval

LINKS = [("rna", "adt", "linked", "linked")]
SMALL = {"n_hidden": 32, "n_hidden_discriminator": 32, "n_latent": 4}
# CPU: deterministic algorithms, so that two runs of one seed are bit-identical
TRAIN = {"batch_size": 32, "enable_progress_bar": False, "accelerator": "cpu"}


def _model(mdata, preset="default", seed=0):
    SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=LINKS)
    return SCMODAL(mdata, preset=preset, seed=seed, **SMALL)


def test_agreement_is_the_mean_jaccard_index():
    a = torch.tensor([[0, 1, 2], [3, 4, 5]])
    assert neighbor_agreement(a, a) == 1.0
    assert neighbor_agreement(a, a.flip(1)) == 1.0  # sets, not rankings
    assert neighbor_agreement(a, torch.tensor([[6, 7, 8], [9, 10, 11]])) == 0.0
    # row 0 shares 2 of 4 distinct indices, row 1 shares 1 of 5
    b = torch.tensor([[0, 1, 7], [3, 8, 9]])
    assert neighbor_agreement(a, b) == pytest.approx((2 / 4 + 1 / 5) / 2)
    with pytest.raises(ValueError, match="differ in shape"):
        neighbor_agreement(a, a[:, :2])


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_agreement_is_symmetric_and_bounded(n, k, seed):
    rng = np.random.default_rng(seed)
    a = torch.as_tensor(np.stack([rng.choice(3 * k, k, replace=False) for _ in range(n)]))
    b = torch.as_tensor(np.stack([rng.choice(3 * k, k, replace=False) for _ in range(n)]))
    value = neighbor_agreement(a, b)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(neighbor_agreement(b, a))


def test_rule_stops_at_the_first_check_without_progress_after_the_minimum():
    rule = ConvergenceRule(every=100, min_relative_gain=0.1, patience=1, min_iterations=300)
    agreements = {100: 0.0, 200: 0.30, 300: 0.31, 400: 0.50, 500: 0.53, 600: 0.60}
    stops = [it for it, value in agreements.items() if rule.update(it, value)]
    # 300 rises 3% (< 10%) above the best and has reached the minimum
    assert stops[0] == 300
    rule = ConvergenceRule(every=100, min_relative_gain=0.1, patience=2, min_iterations=0)
    stops = [it for it, value in agreements.items() if rule.update(it, value)]
    assert stops == []  # never two checks in a row without progress
    assert [it for it, _ in rule.trajectory] == list(agreements)


def test_checks_are_closer_on_small_data():
    # 100 iterations of 500 cells: 62 passes over the 800-cell Hao subset, 7 over PBMC 10k
    assert check_interval(800, 500) == EARLY_STOPPING.every_small_data == 50
    assert check_interval(6_855, 500) == EARLY_STOPPING.every == 100
    # the threshold is in passes: 20 passes of 100 iterations is 2,500 cells at batch 500
    assert check_interval(2_500, 500) == 100 and check_interval(2_499, 500) == 50
    assert check_interval(800, 100) == 100
    # with batches the small-data interval is off: batches mix after modalities agree
    assert check_interval(800, 500, n_batches=1) == 50
    assert check_interval(800, 500, n_batches=2) == EARLY_STOPPING.every


@pytest.mark.parametrize("batch_size", [32, 16])
def test_default_stops_early_and_records_why(caplog, batch_size):
    mdata = make_unpaired()  # 90 cells: 100 iterations of 32 cells are 36 passes, of 16 18
    model = _model(mdata)
    with caplog.at_level(logging.INFO, logger="scmosaic"):
        model.train(**(TRAIN | {"batch_size": batch_size}))  # "auto": 1,000 iterations at most
    n = model.n_iterations_trained_
    assert EARLY_STOPPING.min_iterations <= n < 1000
    every = {32: EARLY_STOPPING.every_small_data, 16: EARLY_STOPPING.every}[batch_size]
    checks = model.history["convergence_check_iteration"].iloc[:, 0].to_numpy()
    agreement = model.history["neighbor_agreement"].iloc[:, 0].to_numpy()
    # one logging epoch per check unless iterations_per_epoch is given
    assert len(model.history["loss_total"]) == len(checks)
    np.testing.assert_array_equal(checks, np.arange(1, len(checks) + 1) * every)
    # the first check has nothing to agree with
    assert checks[-1] == n and np.isnan(agreement[0]) and (agreement[1:] > 0.2).all()
    assert agreement[-1] <= np.nanmax(agreement[:-1]) * (1 + EARLY_STOPPING.min_relative_gain)
    assert f"Early stopping after {n} iterations" in caplog.text


def test_checks_do_not_change_training():
    """An early-stopped model equals a fixed-length run of as many iterations, same seed."""
    stopped = _model(make_unpaired(), seed=2)
    stopped.train(max_steps=800, early_stopping=True, seed=2, **TRAIN)
    n = stopped.n_iterations_trained_
    assert n < 800
    fixed = _model(make_unpaired(), seed=2)
    fixed.train(max_steps=n, seed=2, **TRAIN)
    assert "neighbor_agreement" not in fixed.history  # a given max_steps is a fixed length
    for m in ("rna", "adt"):
        np.testing.assert_array_equal(
            stopped.get_latent_representation()[m], fixed.get_latent_representation()[m]
        )


def test_only_the_default_preset_stops_early():
    from scmosaic.model._presets import PRESETS

    assert PRESETS["default"].train.early_stopping
    assert not PRESETS["reference"].train.early_stopping  # its 10,000 iterations stay
    model = _model(make_unpaired(), preset="reference")
    model.train(max_steps=250, early_stopping=None, **TRAIN)  # two checks would fall in it
    assert model.n_iterations_trained_ == 250 and "neighbor_agreement" not in model.history


def test_bad_early_stopping_value_names_the_setting():
    model = _model(make_unpaired())
    with pytest.raises(ValueError, match="early_stopping must be True or False"):
        model.train(max_steps=5, early_stopping="yes", **TRAIN)


def test_checks_need_epochs_that_divide_the_check_interval():
    model = _model(make_unpaired())
    with pytest.raises(ValueError, match="iterations_per_epoch must divide 50, got 30"):
        model.train(early_stopping=True, iterations_per_epoch=30, **TRAIN)
    with pytest.raises(ValueError, match="iterations_per_epoch must divide 100, got 30"):
        model.train(early_stopping=True, iterations_per_epoch=30, **(TRAIN | {"batch_size": 16}))


def test_query_models_train_a_fixed_length():
    reference_data = make_mosaic(n_per_batch=40)
    SCMODAL.setup_mudata(reference_data, modalities=["rna", "adt"], links=LINKS, batch_key="batch")
    reference = SCMODAL(reference_data, **SMALL)
    reference.train(max_steps=5, **TRAIN)
    query = make_mosaic(n_per_batch=40, layout={"rna": "q"})
    model = SCMODAL.load_query_data(SCMODAL.prepare_query_mudata(query, reference), reference)
    with pytest.raises(ValueError, match="early_stopping=True is not available for query"):
        model.train(early_stopping=True, **TRAIN)
