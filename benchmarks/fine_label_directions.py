"""Where fine labels are lost on SLN: within each modality, or across, and in which direction.

Reads the embeddings ``compare.py`` cached (``results/compare_embeddings/``, SLN, every
method and seed found there; no training) and scores, on the 10 fine SLN types
(``_data.SLN_FINE``), overall and for the three B-cell states:

* within modality: leave-one-out 1-NN accuracy among the modality's own cells, in the
  method's codes and, as the ceiling the encoders start from, in 30 principal components
  of the input (RNA: log-normalised, 2,000 HVGs, scaled; ADT: CLR, scaled);
* across modalities: 1-NN label transfer RNA -> ADT and ADT -> RNA (the two halves of
  ``compare.py``'s label-transfer mean).

Usage: python benchmarks/fine_label_directions.py
Writes ``results/fine_label_directions.{json,md}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from compare import EMBEDDINGS, RESULTS, unpaired_data
from sklearn.neighbors import NearestNeighbors

B_STATES = ["Mature B", "MZ and mature B", "Transitional B"]
OUT = Path(__file__).parent / "results" / "fine_label_directions"
N_PCS = 30


def _accuracy(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    scored = truth != "nan"
    b_cells = np.isin(truth, B_STATES)
    return {
        "all": float((pred == truth)[scored].mean()),
        "b_states": float((pred == truth)[b_cells].mean()),
    }


def within(codes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Leave-one-out 1-NN accuracy (each cell's nearest other cell of the same modality)."""
    nearest = NearestNeighbors(n_neighbors=2).fit(codes).kneighbors(codes)[1][:, 1]
    return _accuracy(labels[nearest], labels)


def across(codes: np.ndarray, labels: np.ndarray, ref: np.ndarray, ref_labels: np.ndarray):
    """1-NN label transfer from the reference cells to the query cells."""
    nearest = NearestNeighbors(n_neighbors=1).fit(ref).kneighbors(codes)[1][:, 0]
    return _accuracy(ref_labels[nearest], labels)


def input_pcs(mdata) -> dict[str, np.ndarray]:
    import scanpy as sc

    rna = mdata["rna"].copy()
    sc.pp.normalize_total(rna)
    sc.pp.log1p(rna)
    sc.pp.highly_variable_genes(rna, n_top_genes=2000, subset=True)
    sc.pp.scale(rna, max_value=10)
    adt = mdata["adt"].copy()
    x = np.log1p(adt.X.toarray() if hasattr(adt.X, "toarray") else np.asarray(adt.X))
    adt.X = x - x.mean(axis=1, keepdims=True)  # CLR
    sc.pp.scale(adt)
    return {m: sc.pp.pca(a.X, n_comps=N_PCS) for m, a in (("rna", rna), ("adt", adt))}


def main() -> None:
    mdata = unpaired_data("sln", "unpaired", 0)  # SLN has no seed-dependent split
    labels = {m: mdata[m].obs["fine_type"].astype(str).to_numpy() for m in ("rna", "adt")}
    rows = []
    pcs = input_pcs(mdata)
    rows.append(
        {"method": "input PCs", "seed": None}
        | {f"within_{m}": within(pcs[m], labels[m]) for m in ("rna", "adt")}
    )
    for path in sorted((RESULTS / EMBEDDINGS).glob("sln_unpaired_*_seed*.npz")):
        method, seed = path.stem.removeprefix("sln_unpaired_").rsplit("_seed", 1)
        codes = np.load(path)
        rows.append(
            {"method": method, "seed": int(seed)}
            | {f"within_{m}": within(codes[m], labels[m]) for m in ("rna", "adt")}
            | {
                "rna_to_adt": across(codes["adt"], labels["adt"], codes["rna"], labels["rna"]),
                "adt_to_rna": across(codes["rna"], labels["rna"], codes["adt"], labels["adt"]),
            }
        )
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
