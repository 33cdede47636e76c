"""Independent minibatches per modality for modalities whose cells differ."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningDataModule
from scipy import sparse
from scvi.data import AnnDataManager
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Subset,
)

from ._layout import DataLayout, MosaicBatch, pairs_key

logger = logging.getLogger(__name__)

# Share of the accelerator's free memory the resident data may take when placement is "auto".
RESIDENT_MEMORY_FRACTION = 0.5


def csr_rows_to_dense(
    indptr: torch.Tensor,
    indices: torch.Tensor,
    data: torch.Tensor,
    rows: torch.Tensor,
    n_cols: int,
    lengths: torch.Tensor | None = None,
    total: int | None = None,
) -> torch.Tensor:
    """Dense ``(len(rows), n_cols)`` block of the given rows of a CSR matrix, on its device.

    torch has no row ``index_select`` for sparse CSR tensors; this gathers the stored entries
    of the selected rows with one ``repeat_interleave`` and scatters them into a zero block.
    The matrix must have no duplicate entries (canonical CSR). ``lengths`` (entries per
    selected row, on the device) and ``total`` (their sum) may be given when known on the
    host, which spares the device two synchronisations.
    """
    device = data.device
    starts = indptr[rows]
    if lengths is None:
        lengths = indptr[rows + 1] - starts
    if total is None:
        total = int(lengths.sum())
    out = torch.zeros(len(rows), n_cols, dtype=data.dtype, device=device)
    if total == 0:
        return out
    entry_row = torch.repeat_interleave(
        torch.arange(len(rows), device=device), lengths, output_size=total
    )
    # Position of each gathered entry in indices/data: its row's start plus its rank in the row.
    offsets = torch.cumsum(lengths, 0) - lengths
    pos = starts[entry_row] + torch.arange(total, device=device) - offsets[entry_row]
    out[entry_row, indices[pos].long()] = data[pos]
    return out


class ResidentDataset(Dataset):
    """Registered arrays of one modality held as torch tensors on one device.

    Dense arrays become dense tensors and sparse matrices stay compressed (CSR), so a
    minibatch is one gather on the device instead of a host slice plus a host-to-device copy.
    Indexing with a list of row indices returns ``{registry_key: dense float tensor}``, as
    :class:`scvi.data.AnnTorchDataset` does.
    """

    def __init__(self, arrays: dict[str, object], dtypes: dict[str, object], device):
        self.tensors: dict[str, tuple] = {}
        self.device = torch.device(device)
        for key, array in arrays.items():
            dtype = torch.from_numpy(np.zeros(0, dtype=dtypes[key])).dtype
            if isinstance(array, pd.DataFrame):
                array = array.to_numpy()
            if sparse.issparse(array):
                csr = sparse.csr_matrix(array)
                if not csr.has_canonical_format:  # .toarray() adds duplicates: do so too
                    csr = csr.copy()
                    csr.sum_duplicates()
                indptr = csr.indptr.astype(np.int64)
                self.tensors[key] = (
                    "csr",
                    indptr,  # host copy: minibatch sizes without a device synchronisation
                    torch.from_numpy(indptr).to(self.device),
                    torch.from_numpy(csr.indices).to(self.device),
                    torch.from_numpy(csr.data).to(self.device, dtype),
                    csr.shape[1],
                )
            else:
                tensor = torch.as_tensor(np.asarray(array)).to(self.device, dtype)
                self.tensors[key] = ("dense", tensor)

    def __len__(self) -> int:
        kind, first, *_ = next(iter(self.tensors.values()))
        return len(first) - 1 if kind == "csr" else len(first)

    def __getitem__(self, rows) -> dict[str, torch.Tensor]:
        host_rows = np.asarray(rows, dtype=np.int64)
        rows_t = torch.from_numpy(host_rows).to(self.device, non_blocking=True)
        out = {}
        for key, (kind, *parts) in self.tensors.items():
            if kind == "dense":
                out[key] = parts[0][rows_t]
                continue
            host_indptr, indptr, indices, data, n_cols = parts
            lengths = host_indptr[host_rows + 1] - host_indptr[host_rows]
            out[key] = csr_rows_to_dense(
                indptr,
                indices,
                data,
                rows_t,
                n_cols,
                lengths=torch.from_numpy(lengths).to(self.device, non_blocking=True),
                total=int(lengths.sum()),
            )
        return out

    def release(self) -> None:
        """Free the device memory (the dataset is empty afterwards)."""
        self.tensors.clear()


def resident_nbytes(arrays: dict[str, object]) -> int:
    """Bytes the arrays take as resident tensors (float32 values, int64 row pointers)."""
    total = 0
    for array in arrays.values():
        if sparse.issparse(array):
            total += array.nnz * (4 + array.indices.dtype.itemsize) + (array.shape[0] + 1) * 8
        else:
            total += int(np.prod(np.shape(array))) * 4
    return total


class WithExtraArrays(Dataset):
    """A modality's torch dataset whose items also hold rows of arrays that are not registered
    (``{key: cells x d}``, dense or sparse; e.g. bridge features), as dense float32 tensors."""

    def __init__(self, dataset, arrays: dict[str, object]):
        self.dataset = dataset
        self.arrays = {
            k: sparse.csr_matrix(v) if sparse.issparse(v) else v for k, v in arrays.items()
        }

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, rows) -> dict[str, torch.Tensor]:
        out = dict(self.dataset[rows])
        for key, array in self.arrays.items():
            block = array[np.asarray(rows)]
            block = block.toarray() if sparse.issparse(block) else np.asarray(block)
            out[key] = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))
        return out


class PairedDataset(Dataset):
    """The cells two modalities share: item ``i`` is row ``rows_a[i]`` of ``dataset_a`` and
    row ``rows_b[i]`` of ``dataset_b``, indexed with lists as the modality datasets are."""

    def __init__(self, dataset_a, dataset_b, rows_a: np.ndarray, rows_b: np.ndarray):
        self.dataset_a, self.dataset_b = dataset_a, dataset_b
        self.rows_a, self.rows_b = np.asarray(rows_a), np.asarray(rows_b)

    def __len__(self) -> int:
        return len(self.rows_a)

    def __getitem__(self, items) -> dict[str, dict]:
        items = np.asarray(items)
        return {
            "a": self.dataset_a[self.rows_a[items].tolist()],
            "b": self.dataset_b[self.rows_b[items].tolist()],
        }


class UnpairedDataModule(LightningDataModule):
    """One loader per modality, each sampling its own cells with replacement.

    scvi-tools' stock loaders index the union of cells of a MuData and break on unpaired
    modalities, so every modality gets a loader over its own rows. Each epoch has exactly
    ``iterations_per_epoch`` minibatches of ``batch_size`` cells per modality; Lightning
    combines the loaders into ``{modality: {registry_key: tensor}}``, which
    :meth:`on_before_batch_transfer` hands to the plan as a
    :class:`~scmosaic.model._layout.MosaicBatch`.

    Parameters
    ----------
    adata_manager
        Manager of the registered MuData.
    layout
        The registered modalities and links (which registry keys each modality loads).
    batch_size
        Cells sampled per modality per iteration.
    iterations_per_epoch
        Iterations per (logging) epoch.
    seed
        Seed of the samplers.
    data_on_device
        Hold every modality's registered data as tensors on the training device, so a
        minibatch is gathered there (no per-iteration host-to-device copy). ``None``: only on
        an accelerator (not the CPU), for in-memory data whose tensors take at most half of
        the device's free memory; otherwise minibatches are sliced from host memory (sparse
        stays sparse) and copied. The minibatches drawn are the same either way.
    pairs
        ``{link index: (rows_a, rows_b)}``: rows of the cells measured in both modalities of
        a link (row ``rows_a[i]`` of ``mod_a`` is row ``rows_b[i]`` of ``mod_b``). Each
        iteration also draws ``pair_batch_size`` of them, together, from their own sampler;
        links without pairs draw none, so an unpaired layout samples as before.
    pair_batch_size
        Paired cells drawn per link per iteration (at most the number of pairs).
    extra_arrays
        ``{modality: {key: cells x d array}}``: per-cell arrays that are not registered (the
        bridge features of links with pairs), drawn with each minibatch under ``key``.
    """

    def __init__(
        self,
        adata_manager: AnnDataManager,
        layout: DataLayout,
        batch_size: int = 500,
        iterations_per_epoch: int = 100,
        seed: int = 0,
        data_on_device: bool | None = None,
        pairs: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
        pair_batch_size: int | None = None,
        extra_arrays: dict[str, dict[str, object]] | None = None,
    ):
        super().__init__()
        self.extra_arrays = extra_arrays or {}
        self.pairs = {i: rows for i, rows in (pairs or {}).items() if len(rows[0])}
        self.pair_batch_size = batch_size if pair_batch_size is None else pair_batch_size
        self.adata_manager = adata_manager
        self.layout = layout
        self.batch_size = batch_size
        self.iterations_per_epoch = iterations_per_epoch
        self.seed = seed
        self.data_on_device = data_on_device
        self.resident_device: torch.device | None = None
        self._resident: list[ResidentDataset] = []

    def _dataset(self, modality: str):
        n_obs = self.adata_manager.adata.mod[modality].n_obs
        # A Subset of the modality's rows: the AnnTorchDataset's own length is the MuData's.
        return self.adata_manager.create_torch_dataset(
            indices=np.arange(n_obs), data_and_attributes=self.layout.registry_keys(modality)
        )

    def _arrays(self, dataset, modality: str) -> tuple[dict, dict]:
        """Arrays (all rows of the modality: registered, then extra) and their dtypes."""
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        extra = self.extra_arrays.get(modality, {})
        dtypes = {**base.keys_and_dtypes, **dict.fromkeys(extra, np.float32)}
        return {**base.data, **extra}, dtypes

    def _resident_device(self, datasets: dict) -> torch.device | None:
        """The device to hold the data on, or ``None`` to slice minibatches on the host."""
        if self.data_on_device is False:
            return None
        device = torch.device("cpu") if self.trainer is None else self.trainer.strategy.root_device
        if self.adata_manager.adata.isbacked:
            if self.data_on_device:
                raise ValueError(
                    "data_on_device=True needs the MuData in memory, but it is backed "
                    f"({self.adata_manager.adata.filename}); load it or leave data_on_device=None."
                )
            return None
        if self.data_on_device:
            return device
        if device.type != "cuda":
            return None
        need = sum(resident_nbytes(self._arrays(d, m)[0]) for m, d in datasets.items())
        free, _ = torch.cuda.mem_get_info(device)
        if need > RESIDENT_MEMORY_FRACTION * free:
            logger.info(
                "Training data (%.1f GB as tensors) exceed half the free memory of %s: "
                "minibatches are copied from host memory.",
                need / 1e9,
                device,
            )
            return None
        return device

    def train_dataloader(self) -> dict[str, DataLoader]:
        loaders = {}
        # Under distributed training every process draws its own minibatches (seed offset
        # by its rank); gradients are then averaged over processes by the strategy.
        rank = self.trainer.global_rank if self.trainer is not None else 0
        datasets = {m: self._dataset(m) for m in self.layout.modalities}
        self.resident_device = self._resident_device(datasets)
        self._resident = []
        for i, modality in enumerate(self.layout.modalities):
            dataset = datasets[modality]
            if self.resident_device is not None:
                dataset = ResidentDataset(*self._arrays(dataset, modality), self.resident_device)
                self._resident.append(dataset)
            elif self.extra_arrays.get(modality):
                dataset = WithExtraArrays(dataset, self.extra_arrays[modality])
            generator = torch.Generator().manual_seed(self.seed + 7919 * i + 104729 * rank)
            datasets[modality] = dataset
            loaders[modality] = self._loader(dataset, self.batch_size, generator)
        for link_index, (rows_a, rows_b) in self.pairs.items():
            link = self.layout.links[link_index]
            paired = PairedDataset(datasets[link.mod_a], datasets[link.mod_b], rows_a, rows_b)
            seed = self.seed + 15485863 * (link_index + 1) + 104729 * rank
            size = min(self.pair_batch_size, len(paired))
            loaders[pairs_key(link_index)] = self._loader(
                paired, size, torch.Generator().manual_seed(seed)
            )
        return loaders

    def _loader(self, dataset, batch_size: int, generator: torch.Generator) -> DataLoader:
        """``iterations_per_epoch`` minibatches of ``batch_size`` rows drawn with replacement."""
        sampler = RandomSampler(
            dataset,
            replacement=True,
            num_samples=batch_size * self.iterations_per_epoch,
            generator=generator,
        )
        batches = BatchSampler(sampler, batch_size, drop_last=True)
        # batch_size=None: the sampler yields whole index lists, no extra dimension.
        return DataLoader(dataset, sampler=batches, batch_size=None)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> MosaicBatch:
        # Lightning moves the dataclass's tensors to the device after this hook.
        return self.layout.structure(batch)

    def val_dataloader(self):
        return []

    def teardown(self, stage: str) -> None:
        # The trainer (kept on the model) holds the loaders: free the device copy explicitly.
        for dataset in self._resident:
            dataset.release()
