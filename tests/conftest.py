from __future__ import annotations

from pathlib import Path

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from mudata import MuData
from scipy import sparse

mudata.set_options(pull_on_update=False)
torch.set_num_threads(1)
scvi.settings.num_threads = 1

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(*parts: str) -> Path:
    """A file of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent")
    return path


def make_unpaired(
    n_a: int = 90, n_b: int = 80, d_a: int = 30, d_b: int = 12, n_linked: int = 6, seed: int = 0
) -> MuData:
    """Three cell types seen by two modalities with different cells and features.

    Linked features are a shared noisy function of the cell type, so anchors exist.
    """
    rng = np.random.default_rng(seed)
    centres_link = rng.normal(0, 2, (3, n_linked))

    def modality(n, d, name):
        types = rng.integers(0, 3, n)
        loading = rng.normal(0, 1, (3, d))
        x = np.abs(loading[types] * 2 + rng.normal(0, 0.5, (n, d))).astype(np.float32)
        linked = centres_link[types] + rng.normal(0, 0.3, (n, n_linked))
        obs = pd.DataFrame(
            {"celltype": pd.Categorical(np.array(["T", "B", "Mono"])[types])},
            index=[f"{name}_cell{i}" for i in range(n)],
        )
        adata = ad.AnnData(
            sparse.csr_matrix(x),
            obs=obs,
            var=pd.DataFrame(index=[f"{name}_f{j}" for j in range(d)]),
        )
        adata.obsm["linked"] = linked.astype(np.float32)
        return adata

    return MuData({"rna": modality(n_a, d_a, "rna"), "adt": modality(n_b, d_b, "adt")})


@pytest.fixture
def unpaired() -> MuData:
    return make_unpaired()


def make_mosaic(
    n_per_batch: int = 60,
    d_rna: int = 30,
    d_adt: int = 12,
    seed: int = 0,
    layout: dict[str, str] | None = None,
    batch_shift: float = 1.0,
) -> MuData:
    """A mosaic of two modalities: batch "r" RNA only, "a" ADT only, "p" both (paired: the
    same obs_names in both). Each batch shifts the features of its cells; three cell types
    shape both modalities and a shared linked signal.

    ``layout`` gives the batches (one letter each) of every modality, e.g. ``{"rna": "q"}``
    for new cells of the same cell types and features as the default mosaic of that ``seed``
    (a query): batches other than "r", "a", "p" get their own shift and cells.
    ``batch_shift`` scales every batch's shift of the features. Modalities other than
    ``rna`` and ``adt`` (e.g. ``{"atac": "tm"}``) have ``d_rna`` features of their own.
    """
    layout = layout or {"rna": "rp", "adt": "ap"}
    rng = np.random.default_rng(seed)
    centres_link = rng.normal(0, 2, (3, 6))
    loading = {"rna": rng.normal(0, 1, (3, d_rna)), "adt": rng.normal(0, 1, (3, d_adt))}
    shift = {b: {"rna": rng.normal(0, 1, d_rna), "adt": rng.normal(0, 1, d_adt)} for b in "rap"}
    cells = {b: rng.integers(0, 3, n_per_batch) for b in "rap"}
    for b in sorted(set("".join(layout.values())) - set("rap")):
        own = np.random.default_rng([seed, ord(b)])
        shift[b] = {"rna": own.normal(0, 1, d_rna), "adt": own.normal(0, 1, d_adt)}
        cells[b] = own.integers(0, 3, n_per_batch)
    # Modalities other than rna/adt (d_rna features) from their own generator, so that the
    # draws above, and every test's data, stay the same.
    for name in sorted(set(layout) - {"rna", "adt"}):
        own = np.random.default_rng([seed, *map(ord, name)])
        loading[name] = own.normal(0, 1, (3, d_rna))
        for b in shift:
            shift[b][name] = own.normal(0, 1, d_rna)

    def modality(name, batches):
        blocks, obs, linked = [], [], []
        for b in batches:
            types = cells[b]
            x = loading[name][types] * 2 + batch_shift * shift[b][name]
            x = x + rng.normal(0, 0.5, (len(types), 1))
            blocks.append(np.abs(x + rng.normal(0, 0.5, x.shape)))
            linked.append(centres_link[types] + rng.normal(0, 0.3, (len(types), 6)))
            obs.append(
                pd.DataFrame(
                    {
                        "celltype": np.array(["T", "B", "Mono"])[types],
                        "batch": b,
                        "cell_id": [f"{b}_cell{i}" for i in range(len(types))],
                    },
                    index=[f"{b}_cell{i}" for i in range(len(types))],
                )
            )
        adata = ad.AnnData(
            sparse.csr_matrix(np.vstack(blocks).astype(np.float32)),
            obs=pd.concat(obs),
            var=pd.DataFrame(index=[f"{name}_f{j}" for j in range(blocks[0].shape[1])]),
        )
        adata.obs["celltype"] = pd.Categorical(adata.obs["celltype"])
        adata.obsm["linked"] = np.vstack(linked).astype(np.float32)
        return adata

    return MuData({m: modality(m, batches) for m, batches in layout.items()})


@pytest.fixture
def ivf_calls(monkeypatch):
    """Count the approximate indexes built, so a silent fallback to exact search fails."""
    import faiss

    calls = []
    original = faiss.IndexIVFFlat

    def spy(quantizer, dim, n_lists, *args):
        calls.append(n_lists)
        return original(quantizer, dim, n_lists, *args)

    monkeypatch.setattr(faiss, "IndexIVFFlat", spy)
    return calls
