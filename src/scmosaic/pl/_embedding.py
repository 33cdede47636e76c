"""Joint embedding of all modalities' cells in the shared latent space."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from mudata import MuData

from .._checks import get_modality
from .._keys import LATENT_OBSM_KEY
from ._utils import show_or_return

MODALITY_KEY = "modality"


def _stack_latents(
    mdata: MuData,
    basis: str = LATENT_OBSM_KEY,
    modalities: Sequence[str] | None = None,
    obs_keys: Sequence[str] = (),
):
    """One AnnData with the cells of every modality and their ``.obsm[basis]``.

    ``obs_names`` are ``"<obs name>:<modality>"``; ``.obs["modality"]`` (categorical, in
    the order of ``modalities``) tells where each cell comes from, and each column of
    ``obs_keys`` is copied from the modalities that have it (missing elsewhere). The
    stacked codes are in ``.obsm[basis]``; ``.X`` is empty. ``mdata`` is not changed.
    """
    import anndata as ad

    modalities = list(mdata.mod if modalities is None else modalities)
    if not modalities:
        raise ValueError("No modality to stack.")
    parts = {m: _latent_only(mdata, m, basis, obs_keys) for m in modalities}
    widths = {m: part.obsm[basis].shape[1] for m, part in parts.items()}
    if len(set(widths.values())) != 1:
        raise ValueError(f"The {basis!r} of the modalities differ in width: {widths}.")
    joint = ad.concat(parts, join="outer", label=MODALITY_KEY, index_unique=":")
    for key in obs_keys:
        if key not in joint.obs:
            raise KeyError(f"{key!r} is not an .obs column of any modality {modalities}.")
        if joint.obs[key].dtype == object:
            joint.obs[key] = pd.Categorical(joint.obs[key])
    return joint


def _latent_only(mdata: MuData, modality: str, basis: str, obs_keys: Sequence[str]):
    """A new AnnData of one modality's cells with only ``.obsm[basis]`` and ``obs_keys``."""
    import anndata as ad

    adata = get_modality(mdata, modality)
    if basis not in adata.obsm:
        raise KeyError(
            f"Basis {basis!r} not in mdata[{modality!r}].obsm (it has {list(adata.obsm)}); "
            "run model.get_latent_representation(write_obsm=True) first."
        )
    block = np.asarray(adata.obsm[basis], dtype=np.float32)
    if block.ndim != 2:
        raise ValueError(f"mdata[{modality!r}].obsm[{basis!r}] must be 2-d, got {block.shape}.")
    obs = pd.DataFrame(index=adata.obs_names.copy())
    for key in obs_keys:
        if key in adata.obs:
            obs[key] = adata.obs[key].to_numpy()
    return ad.AnnData(obs=obs, obsm={basis: block})


def joint_embedding(
    mdata: MuData,
    color: str | Sequence[str] | None = None,
    basis: str = LATENT_OBSM_KEY,
    modalities: Sequence[str] | None = None,
    method: Literal["umap"] | None = "umap",
    n_neighbors: int = 15,
    random_state: int = 0,
    *,
    ax=None,
    show: bool | None = None,
    save: str | Path | None = None,
    **kwargs,
):
    """Plot the cells of all modalities together in the joint latent space.

    The ``.obsm[basis]`` of each modality (e.g. ``"X_scmodal"``, written by
    :meth:`~scmosaic.SCMODAL.get_latent_representation` with ``write_obsm=True``) are
    stacked into one AnnData with ``.obs["modality"]`` and the requested ``.obs`` columns;
    with ``method="umap"`` a kNN graph (:func:`scanpy.pp.neighbors`) and a UMAP
    (:func:`scanpy.tl.umap`) of all cells are computed, then drawn with
    :func:`scanpy.pl.embedding`. ``mdata`` is never modified.

    Parameters
    ----------
    mdata
        MuData whose modalities hold ``.obsm[basis]`` of equal width.
    color
        ``.obs`` column(s) to colour by: ``"modality"`` or columns of the modalities
        (cells of a modality without the column are drawn as missing). One panel per
        column; default ``"modality"``.
    basis
        ``.obsm`` key of the joint codes in every modality.
    modalities
        Modalities to draw (default: all).
    method
        ``"umap"``: compute a UMAP of the stacked codes. ``None``: plot the first two
        dimensions of ``basis`` as they are (e.g. a 2-d joint embedding you computed).
    n_neighbors
        Neighbours of the kNN graph behind the UMAP.
    random_state
        Seed of the kNN graph and the UMAP.
    ax
        Axes to draw into (only with a single colour).
    show
        Show the figure and return ``None``; ``False`` returns the plot. ``None`` follows
        :attr:`scanpy.settings.autoshow`, as in scanpy.
    save
        Write the figure to this path (format from the suffix). Unlike scanpy's ``save``,
        this is a full path, not a suffix in ``settings.figdir``.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (e.g. ``size``, ``palette``, ``title``,
        ``legend_loc``, ``frameon``).

    Returns
    -------
    If ``show`` is ``False``: the :class:`~matplotlib.axes.Axes` for one colour, the
    :class:`~matplotlib.figure.Figure` for several; else ``None``.

    Examples
    --------
    >>> model.get_latent_representation(write_obsm=True)
    >>> scmosaic.pl.joint_embedding(mdata, color=["modality", "celltype"])
    >>> ax = scmosaic.pl.joint_embedding(mdata, color="celltype", show=False, save="umap.png")
    """
    import scanpy as sc

    colors = [MODALITY_KEY] if color is None else [color] if isinstance(color, str) else list(color)
    if not colors:
        raise ValueError("color must name at least one .obs column.")
    if ax is not None and len(colors) > 1:
        raise ValueError(f"ax draws a single panel, but {len(colors)} colours were given.")
    if method not in ("umap", None):
        raise ValueError(f"method must be 'umap' or None, got {method!r}.")
    joint = _stack_latents(mdata, basis, modalities, [c for c in colors if c != MODALITY_KEY])
    if method == "umap":
        sc.pp.neighbors(joint, n_neighbors=n_neighbors, use_rep=basis, random_state=random_state)
        sc.tl.umap(joint, random_state=random_state)
        plot_basis = "umap"
    else:
        if joint.obsm[basis].shape[1] < 2:
            raise ValueError(f"{basis!r} has fewer than two dimensions to plot.")
        plot_basis = basis
    several = len(colors) > 1
    result = sc.pl.embedding(
        joint,
        basis=plot_basis,
        color=colors if several else colors[0],
        ax=ax,
        show=False,
        return_fig=several,
        **kwargs,
    )
    fig = result if several else result.figure
    return show_or_return(fig, result, show, save)
