"""Summarise step: what a run read, did and wrote, as a JSON-ready dict."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._keys import LATENT_OBSM_KEY
from .._version import __version__
from ._integrate import Integrated
from ._options import WorkflowOptions


def final_losses(history: Mapping[str, Any] | None) -> dict[str, float | None]:
    """The last value of every ``model.history`` key (``None`` where it is not finite)."""
    out = {}
    for key, frame in (history or {}).items():
        try:
            value = float(np.asarray(frame, dtype=float).ravel()[-1])
        except (TypeError, ValueError, IndexError):
            continue
        out[key] = value if math.isfinite(value) else None
    return out


def summarise(
    integrated: Integrated,
    options: WorkflowOptions,
    *,
    inputs: dict[str, Any],
    obs_names_prefixed: bool,
    outputs: dict[str, Any],
    total_seconds: float,
) -> dict[str, Any]:
    """Summarise step: the run summary that ``scmosaic integrate`` writes as JSON.

    Parameters
    ----------
    integrated
        The workflow's result.
    options
        The run's options.
    inputs
        The input files (:meth:`~scmosaic.workflow.InputFiles.describe`).
    obs_names_prefixed
        Whether cell names were prefixed with ``"<modality>:"`` on reading.
    outputs
        The output files (:meth:`~scmosaic.workflow.OutputFiles.describe`).
    total_seconds
        Wall time of the whole run.

    Returns
    -------
    Inputs, modalities and cell counts, batch key, link source and report, training (iterations,
    seconds), final values of every ``model.history`` key, scmosaic version, output paths.
    """
    mdata, model = integrated.mdata, integrated.model
    modalities = list(integrated.linked.modalities)
    return {
        "scmosaic_version": __version__,
        "inputs": inputs,
        "modalities": modalities,
        "n_cells": {m: int(mdata[m].n_obs) for m in modalities},
        "n_features": {m: int(mdata[m].n_vars) for m in modalities},
        "obs_names_prefixed": obs_names_prefixed,
        "preprocess": options.preprocess,
        "layer": options.layer,
        "batch_key": options.batch_key,
        "links": integrated.linked.info,
        "training": {
            "preset": options.preset,
            **training_summary(model, options, integrated.train_seconds),
        },
        **run_summary(model, outputs, total_seconds),
    }


def training_summary(model, options, train_seconds: float) -> dict[str, Any]:
    """The training settings and outcome of a run summary (``integrate`` and ``map``)."""
    return {
        "max_steps": options.max_steps,
        "iterations": int(model.n_iterations_trained_),
        "train_seconds": train_seconds,
        "seed": options.seed,
        "threads": options.threads,
        "accelerator": options.accelerator,
        "device": str(model.device),
    }


def run_summary(model, outputs, total_seconds: float) -> dict[str, Any]:
    """The closing entries of a run summary: final losses, latent key, outputs, seconds."""
    return {
        "final_losses": final_losses(model.history),
        "latent_key": LATENT_OBSM_KEY,
        "outputs": outputs,
        "total_seconds": total_seconds,
    }
