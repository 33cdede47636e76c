"""Minibatch sampling: host slicing and device-resident data draw the same minibatches."""

import numpy as np
import pytest
import torch
from scipy import sparse
from test_model import LINKS, SMALL, TRAIN

from scmosaic import SCMODAL
from scmosaic.model import UnpairedDataModule
from scmosaic.model._data_module import ResidentDataset, csr_rows_to_dense


def test_csr_rows_to_dense_matches_scipy():
    rng = np.random.default_rng(0)
    x = sparse.random(50, 7, density=0.3, format="csr", random_state=0, dtype=np.float32)
    x[3] = 0  # an empty row
    x.eliminate_zeros()
    rows = np.array([3, 0, 49, 0, 17, 3] + list(rng.integers(0, 50, 20)))  # repeats included
    got = csr_rows_to_dense(
        torch.from_numpy(x.indptr.astype(np.int64)),
        torch.from_numpy(x.indices),
        torch.from_numpy(x.data),
        torch.from_numpy(rows),
        x.shape[1],
    )
    np.testing.assert_array_equal(got.numpy(), x[rows].toarray())
    empty = csr_rows_to_dense(
        torch.from_numpy(x.indptr.astype(np.int64)),
        torch.from_numpy(x.indices),
        torch.from_numpy(x.data),
        torch.tensor([3, 3]),
        x.shape[1],
    )
    assert empty.shape == (2, 7) and not empty.any()


def _loaders(model, data_on_device):
    dm = UnpairedDataModule(
        model.adata_manager,
        model.layout,
        batch_size=16,
        iterations_per_epoch=3,
        seed=5,
        data_on_device=data_on_device,
    )
    return dm, dm.train_dataloader()


def _varied_inputs(mdata):
    """Dense X, a truly sparse X with duplicate entries, float64 DataFrame linked features."""
    import pandas as pd

    rna, adt = mdata["rna"], mdata["adt"]
    rna.X = rna.X.toarray().astype(np.float64)
    x = adt.X.tocsr()
    x.data[x.data < 1.0] = 0  # many explicit zeros, then dropped: rows of varying length
    x.eliminate_zeros()
    # the same matrix with every stored entry split in two halves (non-canonical CSR)
    data, indices = [], []
    for i in range(x.shape[0]):
        sl = slice(x.indptr[i], x.indptr[i + 1])
        data += [x.data[sl] / 2, x.data[sl] / 2]
        indices += [x.indices[sl], x.indices[sl]]
    doubled = sparse.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), 2 * x.indptr), shape=x.shape
    )
    assert not doubled.has_canonical_format
    adt.X = doubled
    adt.obsm["linked"] = pd.DataFrame(
        np.asarray(adt.obsm["linked"], dtype=np.float64), index=adt.obs_names
    )
    return mdata


@pytest.mark.parametrize("varied", [False, True])
def test_resident_and_host_minibatches_identical(unpaired, varied):
    if varied:
        _varied_inputs(unpaired)
    SCMODAL.setup_mudata(unpaired, modalities=["rna", "adt"], links=LINKS)
    model = SCMODAL(unpaired, **SMALL)
    host_dm, host = _loaders(model, False)
    dev_dm, dev = _loaders(model, True)
    assert host_dm.resident_device is None and dev_dm.resident_device == torch.device("cpu")
    assert isinstance(dev["rna"].dataset, ResidentDataset)
    for m in ("rna", "adt"):
        for a, b in zip(host[m], dev[m], strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert b[key].dtype == torch.as_tensor(a[key]).dtype
                np.testing.assert_array_equal(np.asarray(a[key]), b[key].numpy())
    # "auto" keeps CPU training on the host path: nothing to gain there
    auto_dm, _ = _loaders(model, None)
    assert auto_dm.resident_device is None


def test_resident_training_gives_the_same_model(unpaired):
    SCMODAL.setup_mudata(unpaired, modalities=["rna", "adt"], links=LINKS)
    latents = []
    for on_device in (False, True):
        model = SCMODAL(unpaired, seed=1, **SMALL)
        model.train(max_steps=8, seed=1, data_on_device=on_device, **TRAIN)
        latents.append(model.get_latent_representation())
        resident = model.trainer.datamodule._resident
        assert len(resident) == (2 if on_device else 0)
        assert all(not d.tensors for d in resident)  # device memory freed after training
    for m in ("rna", "adt"):
        np.testing.assert_array_equal(latents[0][m], latents[1][m])


def test_resident_refuses_backed_data(unpaired, tmp_path):
    import mudata

    unpaired.write(tmp_path / "d.h5mu")
    backed = mudata.read_h5mu(tmp_path / "d.h5mu", backed=True)
    SCMODAL.setup_mudata(backed, modalities=["rna", "adt"], links=LINKS)
    model = SCMODAL(backed, **SMALL)
    with pytest.raises(ValueError, match="backed"):
        _loaders(model, True)
    dm, _ = _loaders(model, None)  # auto falls back to host slicing
    assert dm.resident_device is None
