"""Turn paired multimodal cells into a pseudo-unpaired benchmark (pairing hidden)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from .._checks import get_modality
from .._keys import CELL_ID_OBS_KEY
from .._mudata import new_mudata


def _subset(adata: AnnData, cells: np.ndarray) -> AnnData:
    """A copy of the rows of ``adata`` named ``cells``, in that order.

    Rows are taken by position (AnnData reads integer arrays as positions, whatever the
    cell names). AnnData cannot index rows under non-string names (e.g. integers), so such
    a modality is first viewed under its names as strings (``.raw`` is then dropped).
    """
    positions = adata.obs_names.get_indexer(cells)
    if pd.api.types.infer_dtype(adata.obs_names, skipna=False) != "string":
        names = adata.obs_names.astype(str)
        adata = AnnData(
            X=adata.X,
            obs=adata.obs.set_axis(names, axis=0),
            var=adata.var,
            uns=adata.uns,
            obsm={
                k: v.set_axis(names, axis=0) if isinstance(v, pd.DataFrame) else v
                for k, v in adata.obsm.items()
            },
            varm=dict(adata.varm),
            layers=dict(adata.layers),
            obsp=dict(adata.obsp),
            varp=dict(adata.varp),
        )
    return adata[positions].copy()


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
        get_modality(mdata, m)
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
        adata = _subset(mdata.mod[m], cells)
        adata.obs[CELL_ID_OBS_KEY] = adata.obs_names.astype(str)
        adata.obs_names = [f"{c}_{m}" for c in adata.obs_names]
        out[m] = adata
    return new_mudata(out)


def pairing_order(mdata: MuData, mod_a: str = "rna", mod_b: str = "adt") -> np.ndarray:
    """For each cell of ``mod_a``, the row of the same cell in ``mod_b`` (the hidden pairing).

    Reads the original cell names that :func:`hide_pairing` keeps in ``.obs["cell_id"]``,
    so ``latent_b[pairing_order(mdata, a, b)]`` lines ``mod_b``'s rows up with
    ``mod_a``'s, as :func:`scmosaic.metrics.foscttm` needs. Every cell of ``mod_a`` must
    have exactly one partner: use it on ``hide_pairing(..., mode="shuffle")`` data, not on
    ``mode="halves"`` (where no cell's partner is present).

    Parameters
    ----------
    mdata
        MuData whose two modalities hold the same cells under different names, e.g. from
        :func:`hide_pairing`.
    mod_a
        Modality whose order the result follows.
    mod_b
        Modality the result indexes.

    Returns
    -------
    Integer array of length ``mdata[mod_a].n_obs``: entry ``i`` is the row of ``mod_b`` that
    holds cell ``i`` of ``mod_a``.

    Raises
    ------
    KeyError
        A modality is not in ``mdata``, or has no ``.obs["cell_id"]`` column.
    ValueError
        A ``cell_id`` occurs twice in ``mod_b``, or a cell of ``mod_a`` has no partner in
        ``mod_b``.

    Examples
    --------
    >>> mdata = scmosaic.datasets.hide_pairing(scmosaic.datasets.hao2021_pbmc_cite())
    >>> order = scmosaic.datasets.pairing_order(mdata, "rna", "adt")
    >>> (mdata["adt"].obs["cell_id"].to_numpy()[order] == mdata["rna"].obs["cell_id"]).all()
    True
    """
    ids = {}
    for m in (mod_a, mod_b):
        obs = get_modality(mdata, m).obs
        if CELL_ID_OBS_KEY not in obs:
            raise KeyError(
                f"Modality {m!r} has no .obs[{CELL_ID_OBS_KEY!r}] with the original cell names; "
                "make the data with scmosaic.datasets.hide_pairing."
            )
        ids[m] = pd.Index(obs[CELL_ID_OBS_KEY].astype(str))
    if not ids[mod_b].is_unique:
        repeated = ids[mod_b][ids[mod_b].duplicated()].unique()[:3].tolist()
        raise ValueError(
            f".obs[{CELL_ID_OBS_KEY!r}] of modality {mod_b!r} repeats cells, e.g. {repeated}; "
            "the pairing is ambiguous."
        )
    order = ids[mod_b].get_indexer(ids[mod_a])
    missing = order < 0
    if missing.any():
        examples = ids[mod_a][missing][:3].tolist()
        raise ValueError(
            f"{int(missing.sum())} of {len(order)} cells of modality {mod_a!r} have no partner "
            f"in {mod_b!r} by .obs[{CELL_ID_OBS_KEY!r}], e.g. {examples}; pairing_order needs "
            "every cell paired (hide_pairing mode='shuffle')."
        )
    return order
