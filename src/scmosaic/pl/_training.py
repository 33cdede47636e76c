"""Training curves of an SCMODAL model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._utils import show_or_return


def _history(model) -> tuple[Mapping[str, Any], int, int | None]:
    """``(history, iterations trained, iterations per logging epoch or None)``."""
    if isinstance(model, Mapping):
        return model, 0, None
    history = getattr(model, "history", None)
    if not history:
        raise ValueError("The model has no training history: train it first (model.train()).")
    n_iter = int(getattr(model, "n_iterations_trained_", 0) or 0)
    trainer = getattr(model, "trainer", None)
    per_epoch = getattr(getattr(trainer, "datamodule", None), "iterations_per_epoch", None)
    return history, n_iter, per_epoch


def _x_values(n_rows: int, n_iter: int, per_epoch: int | None) -> tuple[np.ndarray, str]:
    """Iteration at the end of each logged epoch (epochs if the iterations are unknown)."""
    rows = np.arange(1, n_rows + 1)
    if per_epoch and (n_rows - 1) * per_epoch < n_iter <= n_rows * per_epoch:
        return np.minimum(rows * per_epoch, n_iter), "iteration"
    if n_iter >= n_rows > 0:  # e.g. after several train() calls: spread evenly
        return rows * (n_iter / n_rows), "iteration"
    return rows, "epoch"


def loss_curves(
    model,
    keys: str | Sequence[str] | None = None,
    *,
    separate: bool = False,
    ax=None,
    show: bool | None = None,
    save: str | Path | None = None,
):
    """Plot the training-loss curves of a trained model.

    :class:`~scmosaic.SCMODAL` logs, per logging epoch (``iterations_per_epoch`` of
    :meth:`~scmosaic.SCMODAL.train`, 100 by default), the mean of every loss term over the
    epoch's iterations in ``model.history``: ``loss_discriminator``, ``loss_adversarial``,
    ``loss_reconstruction``, ``loss_latent_cycle``, ``loss_anchor``, ``loss_geometric``,
    ``loss_total`` and ``n_anchor_pairs`` (minibatch anchor pairs, not a loss). The x axis
    is the training iteration at the end of each epoch.

    Parameters
    ----------
    model
        A trained :class:`~scmosaic.SCMODAL`, or its ``history`` (a dict of one-column
        DataFrames, e.g. of a reloaded model; the x axis is then the epoch).
    keys
        History keys to draw (default: every ``loss_*`` key).
    separate
        One panel per key, each on its own scale (terms of very different size, such as
        ``loss_total`` and ``loss_anchor``, stay readable). Returns the Figure.
    ax
        Axes to draw into (default: a new figure); not with ``separate=True``.
    show
        Show the figure and return ``None``; ``False`` returns the Axes. ``None`` follows
        :attr:`scanpy.settings.autoshow`, as in scanpy.
    save
        Write the figure to this path (format from the suffix, e.g. ``.png``, ``.pdf``).
        Unlike scanpy's ``save``, this is a full path, not a suffix in ``settings.figdir``.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` (the :class:`~matplotlib.figure.Figure` with
    ``separate=True``) if ``show`` is ``False``, else ``None``.

    Examples
    --------
    >>> model.train(max_steps=2000)
    >>> ax = scmosaic.pl.loss_curves(model, show=False)
    >>> scmosaic.pl.loss_curves(model, ["loss_anchor", "loss_adversarial"], save="losses.png")
    >>> fig = scmosaic.pl.loss_curves(model, separate=True, show=False)
    """
    import matplotlib.pyplot as plt

    history, n_iter, per_epoch = _history(model)
    if keys is None:
        keys = [k for k in history if str(k).startswith("loss_")]
        if not keys:
            raise ValueError(f"No loss_* key in the history; it has {list(history)}.")
    elif isinstance(keys, str):
        keys = [keys]
    missing = [k for k in keys if k not in history]
    if missing:
        raise KeyError(f"{missing} not in the training history; it has {list(history)}.")

    if separate:
        if ax is not None:
            raise ValueError("`ax` cannot be combined with `separate=True` (one panel per key).")
        ncols = min(3, len(keys))
        nrows = -(-len(keys) // ncols)
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), squeeze=False, sharex=True
        )
        for panel, key in zip(axes.ravel(), keys, strict=False):
            values = np.asarray(history[key], dtype=float).reshape(len(history[key]), -1)[:, 0]
            x, xlabel = _x_values(values.size, n_iter, per_epoch)
            panel.plot(x, values, marker="o" if values.size < 20 else None)
            panel.set_title(key, fontsize="small")
            panel.set_xlabel(xlabel, fontsize="small")
        for panel in axes.ravel()[len(keys) :]:
            panel.set_visible(False)
        fig.tight_layout()
        return show_or_return(fig, fig, show, save)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    xlabel = "iteration"
    for key in keys:
        values = np.asarray(history[key], dtype=float).reshape(len(history[key]), -1)[:, 0]
        x, xlabel = _x_values(values.size, n_iter, per_epoch)
        ax.plot(x, values, marker="o" if values.size < 20 else None, label=key)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("value (mean over the epoch)")
    ax.set_title("training")
    ax.legend(fontsize="small", frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return show_or_return(fig, ax, show, save)
