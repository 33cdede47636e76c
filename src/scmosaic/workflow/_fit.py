"""Fit step: register the data, build SCMODAL and train it as the options say."""

from __future__ import annotations

import logging
import time
from typing import Any

from mudata import MuData

from ..model import SCMODAL
from ._errors import as_input_error
from ._link import Linked
from ._options import WorkflowOptions

logger = logging.getLogger(__name__)


def build_model(mdata: MuData, linked: Linked, options: WorkflowOptions) -> SCMODAL:
    """Register ``mdata`` with the link and build an untrained SCMODAL.

    Sets torch's CPU threads (``options.threads``) first, so the model's feature
    statistics and the training run with them.

    Parameters
    ----------
    mdata
        The (preprocessed) MuData with the linked features.
    linked
        The link step's result.
    options
        The run's options: ``batch_key``, ``threads``, ``preset``, ``seed``.

    Returns
    -------
    The model, set up on ``mdata``.

    Raises
    ------
    InputError
        Data that registration rejects, e.g. a modality without ``.obs[options.batch_key]``.
    """
    import scvi

    if options.threads is not None:
        scvi.settings.num_threads = options.threads
    with as_input_error("registering the data"):
        SCMODAL.setup_mudata(
            mdata,
            modalities=list(linked.modalities),
            links=[linked.spec],
            batch_key=options.batch_key,
        )
        return SCMODAL(mdata, preset=options.preset, seed=options.seed)


def fit(model: SCMODAL, options: WorkflowOptions, **trainer_kwargs: Any) -> float:
    """Fit step: train ``model`` for ``options.max_steps`` iterations.

    Parameters
    ----------
    model
        The model (:func:`build_model`).
    options
        The run's options: ``max_steps``, ``accelerator``, ``progress_bar``.
    **trainer_kwargs
        Further arguments of :meth:`scmosaic.SCMODAL.train` (e.g. ``callbacks``).

    Returns
    -------
    The training wall time in seconds.
    """
    steps = options.max_steps if options.max_steps is not None else "the preset's"
    # the model logs the start with the resolved iterations and the device
    logger.debug("Training SCMODAL (%s preset, %s iterations)", options.preset, steps)
    start = time.perf_counter()
    model.train(
        max_steps=options.max_steps,
        accelerator=options.accelerator,
        enable_progress_bar=options.progress_bar,
        **trainer_kwargs,
    )
    seconds = time.perf_counter() - start
    logger.info("Trained %d iterations in %.1f s", model.n_iterations_trained_, seconds)
    return seconds
