"""`datasets.pairing_order`: the hidden pairing, recovered exactly, and its errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from mudata import MuData

import scmosaic


def _modality(cell_ids, name):
    """Cells named ``<name><row>`` whose original names are ``cell_ids``; one feature."""
    obs = pd.DataFrame({"cell_id": cell_ids}, index=[f"{name}{i}" for i in range(len(cell_ids))])
    var = pd.DataFrame(index=[f"{name}_feature"])
    return ad.AnnData(np.zeros((len(cell_ids), 1), np.float32), obs=obs, var=var)


def test_pairing_order_exact():
    mdata = MuData(
        {
            "rna": _modality(["c0", "c1", "c2", "c3"], "rna"),
            "adt": _modality(["c2", "c0", "c3", "c1"], "adt"),
        }
    )
    np.testing.assert_array_equal(
        scmosaic.datasets.pairing_order(mdata, "rna", "adt"), [1, 3, 0, 2]
    )
    np.testing.assert_array_equal(
        scmosaic.datasets.pairing_order(mdata, "adt", "rna"), [2, 0, 3, 1]
    )


def test_pairing_order_undoes_hide_pairing():
    paired = MuData({"rna": _modality(list("abcdef"), "r"), "adt": _modality(list("abcdef"), "a")})
    for m in ("rna", "adt"):
        paired[m].obs_names = list("abcdef")
        paired[m].X = np.arange(6, dtype=np.float32)[:, None]
    hidden = scmosaic.datasets.hide_pairing(paired, seed=3)
    order = scmosaic.datasets.pairing_order(hidden, "rna", "adt")
    assert not (order == np.arange(6)).all()  # shuffled ...
    np.testing.assert_array_equal(hidden["adt"].X[order], hidden["rna"].X)  # ... and undone


def test_pairing_order_errors():
    mdata = MuData(
        {"rna": _modality(["c0", "c1", "c2"], "rna"), "adt": _modality(["c1", "c0"], "adt")}
    )
    with pytest.raises(
        ValueError, match=r"1 of 3 cells of modality 'rna' have no partner in 'adt'.*'c2'"
    ):
        scmosaic.datasets.pairing_order(mdata, "rna", "adt")
    np.testing.assert_array_equal(scmosaic.datasets.pairing_order(mdata, "adt", "rna"), [1, 0])
    with pytest.raises(KeyError, match=r"Modality 'atac' is not in the MuData"):
        scmosaic.datasets.pairing_order(mdata, "rna", "atac")
    twice = MuData({"rna": _modality(["c0"], "rna"), "adt": _modality(["c0", "c0"], "adt")})
    with pytest.raises(ValueError, match=r"'adt' repeats cells, e.g. \['c0'\]"):
        scmosaic.datasets.pairing_order(twice, "rna", "adt")
    del mdata["adt"].obs["cell_id"]
    with pytest.raises(KeyError, match=r"Modality 'adt' has no .obs\['cell_id'\]"):
        scmosaic.datasets.pairing_order(mdata, "rna", "adt")
