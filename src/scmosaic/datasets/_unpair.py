"""Turn paired multimodal cells into a pseudo-unpaired benchmark (pairing hidden)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from mudata import MuData


def hide_pairing(
    mdata: MuData,
    modalities: Sequence[str] = ("rna", "adt"),
    mode: Literal["shuffle", "halves"] = "shuffle",
    seed: int = 0,
) -> MuData:
    """Paired cells as separate datasets with the pairing hidden (EVALUATION protocol).

    Only cells present in every listed modality are used. ``mode="shuffle"``: the first
    modality keeps all paired cells in order, the others get the same cells in a random
    order. ``mode="halves"``: the paired cells are split at random in two halves; the first
    modality gets one half, the second the other, so no cell's own partner is present.
    Cells get modality-suffixed names (``"<cell>_<modality>"``), so the MuData sees them as
    different cells; the original name is kept in ``.obs["cell_id"]`` for evaluation.

    Parameters
    ----------
    mdata
        MuData with (some) paired cells.
    modalities
        Modalities to unpair.
    mode
        ``"shuffle"`` or ``"halves"`` (two modalities only).
    seed
        Seed of the shuffle / split.

    Returns
    -------
    A new MuData with one AnnData per modality; the input is not modified.

    Examples
    --------
    >>> unpaired = scmosaic.datasets.hide_pairing(scmosaic.datasets.hao2021_pbmc_cite())
    """
    modalities = list(modalities)
    for m in modalities:
        if m not in mdata.mod:
            raise KeyError(f"Modality {m!r} is not in the MuData; it has {list(mdata.mod)}.")
    shared = mdata.mod[modalities[0]].obs_names
    for m in modalities[1:]:
        shared = shared.intersection(mdata.mod[m].obs_names, sort=False)
    if len(shared) == 0:
        raise ValueError(f"No cell is present in all of {modalities}.")
    rng = np.random.default_rng(seed)
    if mode == "shuffle":
        orders = [np.asarray(shared)] + [
            np.asarray(shared)[rng.permutation(len(shared))] for _ in modalities[1:]
        ]
    elif mode == "halves":
        if len(modalities) != 2:
            raise ValueError("mode='halves' needs exactly two modalities.")
        perm = np.asarray(shared)[rng.permutation(len(shared))]
        half = len(perm) // 2
        orders = [np.sort(perm[:half]), perm[half:]]
    else:
        raise ValueError(f"mode must be 'shuffle' or 'halves', got {mode!r}.")
    out = {}
    for m, cells in zip(modalities, orders, strict=True):
        adata = mdata.mod[m][cells].copy()
        adata.obs["cell_id"] = adata.obs_names.astype(str)
        adata.obs_names = [f"{c}_{m}" for c in adata.obs_names]
        out[m] = adata
    return MuData(out)
