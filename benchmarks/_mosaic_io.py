"""Embedding files of ``mosaic.py``: what a method's process hands to the scoring process.

Imports numpy only, so that a peer's own virtual environment (MIDAS) can write the same
file as scmosaic's runs. One ``.npz`` per run, one row per (modality, cell) code:

* ``emb``: float32 array ``(n_rows, d)``;
* ``modality``: ``"rna"``, ``"adt"`` or ``"joint"`` (a method with one code per cell);
* ``obs_name``: the cell's name in that modality (as the method saw it);
* ``cell_id``: the cell's original name (the same for both codes of one cell);
* ``batch``, ``celltype``: from the modality's ``.obs``;
* ``hidden``: ``True`` where the cell's pairing was hidden from the method (M2);
* ``meta``: a JSON string (settings, wall time, peak memory, versions).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COLUMNS = ("modality", "obs_name", "cell_id", "batch", "celltype", "hidden")


def save_embedding(path: Path | str, emb, rows: dict, meta: dict) -> None:
    """Write one run's codes (``rows`` holds the columns of :data:`COLUMNS`)."""
    emb = np.asarray(emb, dtype=np.float32)
    arrays = {"emb": emb, "meta": np.array(json.dumps(meta))}
    for key in COLUMNS:
        values = np.asarray(rows[key])
        if len(values) != emb.shape[0]:
            raise ValueError(f"{key}: {len(values)} values for {emb.shape[0]} rows")
        arrays[key] = values.astype(bool) if key == "hidden" else values.astype(str)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_embedding(path: Path | str) -> tuple[np.ndarray, dict, dict]:
    """``(emb, rows, meta)`` of a file written by :func:`save_embedding`."""
    with np.load(path, allow_pickle=False) as f:
        emb = f["emb"]
        rows = {key: f[key] for key in COLUMNS}
        meta = json.loads(str(f["meta"]))
    return emb, rows, meta
