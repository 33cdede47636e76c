"""Where fine labels are lost on SLN: within each modality, or across, and in which direction.

Reads the embeddings ``compare.py`` cached (``results/compare_embeddings/``, SLN, every
method and seed found there; no training) and scores, on the 10 fine SLN types
(``_data.SLN_FINE``), overall and for the three B-cell states:

* within modality: leave-one-out 1-NN accuracy among the modality's own cells, in the
  method's codes and, as the ceiling the encoders start from, in 30 principal components
  of the input SCMODAL sees (:func:`scmosaic.pp.preprocess`, then z-scored);
* across modalities: 1-NN label transfer RNA -> ADT and ADT -> RNA (the two halves of
  ``compare.py``'s label-transfer mean), in each method's codes and, as what the protein ->
  gene links alone carry across, in the linked features ``compare.py``'s SCMODAL run starts
  from (:func:`scmosaic.workflow.link` with the dataset's table: z-scored, smoothed).

Cells without a fine label are left out as references and as queries, as in
:func:`scmosaic.metrics.label_transfer_accuracy`.

Usage: python benchmarks/fine_label_directions.py
Writes ``results/fine_label_directions.{json,md}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from _data import workflow_options
from compare import EMBEDDINGS, RESULTS, unpaired_data
from sklearn.neighbors import NearestNeighbors

from scmosaic import workflow
from scmosaic.pp import preprocess
from scmosaic.tl import knn_transfer

B_STATES = ["Mature B", "MZ and mature B", "Transitional B"]
OUT = Path(__file__).parent / "results" / "fine_label_directions"
N_PCS = 30


def _accuracy(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    correct = pred == truth
    return {
        "all": float(correct.mean()),
        "b_states": float(correct[np.isin(truth, B_STATES)].mean()),
    }


def within(codes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Leave-one-out 1-NN accuracy (each cell's nearest other cell of the same modality)."""
    nearest = NearestNeighbors(n_neighbors=2).fit(codes).kneighbors(codes)[1][:, 1]
    return _accuracy(labels[nearest], labels)


def across(codes: np.ndarray, labels: np.ndarray, ref: np.ndarray, ref_labels: np.ndarray):
    """1-NN label transfer from the reference cells to the query cells."""
    return _accuracy(knn_transfer(ref, ref_labels, codes, k=1)[0], labels)


def input_pcs(mdata) -> dict[str, np.ndarray]:
    """30 principal components of each modality's preprocessed, z-scored input."""
    import scanpy as sc

    processed = preprocess(mdata)
    pcs = {}
    for m in ("rna", "adt"):
        x = processed[m].X
        x = sc.pp.scale(x.toarray() if hasattr(x, "toarray") else x, max_value=10)
        pcs[m] = sc.pp.pca(x, n_comps=N_PCS)
    return pcs


def linked_features(mdata) -> dict[str, np.ndarray]:
    """The linked features of the table links, one row per cell, in both modalities."""
    mdata = mdata.copy()
    keys = workflow.link(mdata, workflow_options("sln")).info["obsm_keys"]
    return {m: np.asarray(mdata[m].obsm[keys[m]], dtype=np.float64) for m in ("rna", "adt")}


def main() -> None:
    mdata = unpaired_data("sln", "unpaired", 0)  # SLN has no seed-dependent split
    labels = {m: mdata[m].obs["fine_type"].astype(str).to_numpy() for m in ("rna", "adt")}
    scored = {m: labels[m] != "nan" for m in labels}
    labels = {m: labels[m][scored[m]] for m in labels}

    def row(method: str, seed: int | None, codes) -> dict:
        codes = {m: codes[m][scored[m]] for m in ("rna", "adt")}
        out = {"method": method, "seed": seed}
        out |= {f"within_{m}": within(codes[m], labels[m]) for m in ("rna", "adt")}
        if seed is not None or method == "linked features":  # features of both modalities
            out["rna_to_adt"] = across(codes["adt"], labels["adt"], codes["rna"], labels["rna"])
            out["adt_to_rna"] = across(codes["rna"], labels["rna"], codes["adt"], labels["adt"])
        return out

    rows = [row("input PCs", None, input_pcs(mdata))]
    rows.append(row("linked features", None, linked_features(mdata)))
    for path in sorted((RESULTS / EMBEDDINGS).glob("sln_unpaired_*_seed*.npz")):
        method, seed = path.stem.removeprefix("sln_unpaired_").rsplit("_seed", 1)
        rows.append(row(method, int(seed), np.load(path)))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    OUT.with_suffix(".md").write_text(table(rows))
    print(table(rows))


def table(rows: list[dict]) -> str:
    """Medians over seeds, [min-max]; "all" / "B states" in each cell."""
    columns = ["within_rna", "within_adt", "rna_to_adt", "adt_to_rna"]
    lines = [
        "1-NN accuracy on SLN's fine types, all scored cells / the three B-cell states; "
        "medians over seeds [min-max]. RNA -> ADT: ADT cells labelled from their nearest "
        "RNA cell.",
        "",
        "| method | seeds | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        seeds = ",".join(str(r["seed"]) for r in group if r["seed"] is not None) or "–"
        cells = []
        for column in columns:
            if column not in group[0]:
                cells.append("–")
                continue
            parts = []
            for part in ("all", "b_states"):
                values = np.array([r[column][part] for r in group])
                spread = f" [{values.min():.3f}–{values.max():.3f}]" if len(values) > 1 else ""
                parts.append(f"{np.median(values):.3f}{spread}")
            cells.append(" / ".join(parts))
        lines.append(f"| {method} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
