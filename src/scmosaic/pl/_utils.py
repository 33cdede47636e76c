"""Shared show/save handling of the plotting functions."""

from __future__ import annotations

from pathlib import Path


def show_or_return(fig, result, show: bool | None, save: str | Path | None):
    """Save ``fig`` to ``save``, then show it (returning ``None``) or return ``result``.

    As in scanpy, ``show=None`` follows :attr:`scanpy.settings.autoshow` (``True`` by
    default), and the axes are returned only when the figure is not shown.
    """
    import matplotlib.pyplot as plt
    import scanpy as sc

    if save is not None:
        path = Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
    if show is None:
        show = sc.settings.autoshow
    if show:
        plt.show()
        return None
    return result
