"""The workflow in memory: link, preprocess, fit, latent codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from mudata import MuData

from ..model import SCMODAL
from ._fit import build_model, fit
from ._link import Linked, link
from ._options import WorkflowOptions
from ._preprocess import preprocess


@dataclass(frozen=True)
class Integrated:
    """The result of :func:`scmosaic.workflow.integrate`.

    Parameters
    ----------
    mdata
        The two modalities as the model saw them (preprocessed unless the options say not),
        with the linked features and the latent codes (``.obsm["X_scmodal"]``).
    model
        The trained model.
    linked
        The link step's result.
    train_seconds
        Training wall time.
    latent
        ``{modality: latent codes}``, rows in the order of ``mdata[modality]``.
    """

    mdata: MuData
    model: SCMODAL
    linked: Linked
    train_seconds: float
    latent: dict[str, np.ndarray]


def integrate(mdata: MuData, options: WorkflowOptions, **trainer_kwargs: Any) -> Integrated:
    """Run the workflow on a MuData with raw counts: link, preprocess, fit.

    :func:`~scmosaic.workflow.link` (writes the linked features into ``mdata``),
    :func:`~scmosaic.workflow.preprocess`, :func:`~scmosaic.workflow.build_model`,
    :func:`~scmosaic.workflow.fit`, then
    :meth:`~scmosaic.SCMODAL.get_latent_representation` with ``write_obsm=True``.

    Parameters
    ----------
    mdata
        MuData with raw counts (``.X`` or ``options.layer``) of the modalities.
    options
        The run's options.
    **trainer_kwargs
        Further arguments of :meth:`scmosaic.SCMODAL.train` (e.g. ``callbacks``).

    Returns
    -------
    The integrated data, the model, the link and the training time.

    Raises
    ------
    InputError
        Unknown modalities, kinds or keys, or data that scmosaic's validation rejects.

    Examples
    --------
    >>> from scmosaic.workflow import WorkflowOptions, integrate
    >>> mdata = scmosaic.datasets.hide_pairing(scmosaic.datasets.hao2021_pbmc_cite())
    >>> result = integrate(mdata, WorkflowOptions(table="packaged", max_steps=200))
    >>> result.latent["rna"].shape
    """
    import mudata as md

    # the workflow builds and slices MuData objects; no need to pull .obs into the global one
    with md.set_options(pull_on_update=False):
        linked = link(mdata, options)
        mdata = preprocess(mdata, options)
        model = build_model(mdata, linked, options)
        seconds = fit(model, options, **trainer_kwargs)
        latent = model.get_latent_representation(write_obsm=True)
    return Integrated(mdata, model, linked, seconds, latent)
