"""Independent minibatches per modality for modalities whose cells differ."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from scvi.data import AnnDataManager
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler


class UnpairedDataModule(LightningDataModule):
    """One loader per modality, each sampling its own cells with replacement.

    scvi-tools' stock loaders index the union of cells of a MuData and break on unpaired
    modalities, so every modality gets a loader over its own rows. Each epoch has exactly
    ``iterations_per_epoch`` minibatches of ``batch_size`` cells per modality; Lightning
    combines the loaders into one batch ``{modality: {registry_key: tensor}}``.

    Parameters
    ----------
    adata_manager
        Manager of the registered MuData.
    modality_keys
        Registry keys to load for each modality.
    batch_size
        Cells sampled per modality per iteration.
    iterations_per_epoch
        Iterations per (logging) epoch.
    seed
        Seed of the samplers.
    """

    def __init__(
        self,
        adata_manager: AnnDataManager,
        modality_keys: dict[str, list[str]],
        batch_size: int = 500,
        iterations_per_epoch: int = 100,
        seed: int = 0,
    ):
        super().__init__()
        self.adata_manager = adata_manager
        self.modality_keys = modality_keys
        self.batch_size = batch_size
        self.iterations_per_epoch = iterations_per_epoch
        self.seed = seed

    def _dataset(self, modality: str):
        n_obs = self.adata_manager.adata.mod[modality].n_obs
        return self.adata_manager.create_torch_dataset(
            indices=np.arange(n_obs), data_and_attributes=self.modality_keys[modality]
        )

    def train_dataloader(self) -> dict[str, DataLoader]:
        loaders = {}
        # Under distributed training every process draws its own minibatches (seed offset
        # by its rank); gradients are then averaged over processes by the strategy.
        rank = self.trainer.global_rank if self.trainer is not None else 0
        for i, modality in enumerate(self.modality_keys):
            dataset = self._dataset(modality)
            generator = torch.Generator().manual_seed(self.seed + 7919 * i + 104729 * rank)
            sampler = RandomSampler(
                dataset,
                replacement=True,
                num_samples=self.batch_size * self.iterations_per_epoch,
                generator=generator,
            )
            batches = BatchSampler(sampler, self.batch_size, drop_last=True)
            # batch_size=None: the sampler yields whole index lists, no extra dimension.
            loaders[modality] = DataLoader(dataset, sampler=batches, batch_size=None)
        return loaders

    def val_dataloader(self):
        return []


def iterate_chunks(
    adata_manager: AnnDataManager, modality: str, keys: list[str], chunk_size: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield the registered data of every cell of ``modality`` in order, in chunks."""
    n_obs = adata_manager.adata.mod[modality].n_obs
    dataset = adata_manager.create_torch_dataset(indices=np.arange(n_obs), data_and_attributes=keys)
    batches = BatchSampler(SequentialSampler(dataset), chunk_size, drop_last=False)
    yield from DataLoader(dataset, sampler=batches, batch_size=None)
