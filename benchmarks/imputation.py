"""Imputation of proteins from RNA against the held-out truth (issue 17, item 4).

Protocol: the paired CITE-seq sets (Hao subset, PBMC 10k) with the pairing hidden by
``hide_pairing(mode="halves")``: RNA of one half of the cells, ADT of the other half, so no
RNA cell's own proteins are among the cells a method can copy from. Each method predicts
the ADTs of every RNA cell; the truth is the cell's measured ADT, normalised as
``scmosaic.pp.preprocess`` does (per cell: the CLR since 2026-12-02, ``normalize_total(1e4)``
and ``log1p`` before). Every method averages or decodes the same normalised ADT values of
the ADT half. Seeds 0-2, one CPU
thread. Scores: Pearson correlation per protein across RNA cells and per cell across
proteins (medians).

Methods:

* ``scmosaic neighbors``: ``get_imputed_features("rna", "adt", space="log")``, the default
  (a Gaussian-kernel average over the 200 nearest ADT cells in the joint latent space,
  ``scmosaic.tl.knn_impute``; the plain mean of the 50 nearest before 2026-12-02), after the
  README workflow with the default preset.
* ``scmosaic decoder``: ``method="decoder"`` of the same model, ``G_adt(E_rna(x))``.
* ``linked kNN (k)``: a baseline without a model: the mean of the ``k`` ADT cells nearest in
  the linked features (``.obsm["linked_adt"]`` / ``["linked_rna"]`` of the same run, each
  side z-scored), k = 15 (the issue's) and 50 (scmosaic's before 2026-12-02).
* ``linked kernel``: the same features averaged as scmosaic averages its codes
  (``scmosaic.tl.knn_impute``), so that the comparison is of the spaces, not the averaging.
* ``MaxFuse matching``: MaxFuse 0.0.2 with ``compare.py``'s settings (its CITE-seq tutorial);
  each RNA cell gets the mean of the ADT cells it is matched to
  (``get_matching(order=(1, 2), target="full_data")``); cells left unmatched by MaxFuse's
  filtering get the mean of all ADT cells (their share is recorded).
* ``MaxFuse embedding 50-NN``: the mean of the 50 nearest ADT cells in MaxFuse's joint
  embedding (scmosaic's averaging before 2026-12-02, on MaxFuse's space).
* ``MaxFuse embedding kernel``: ``scmosaic.tl.knn_impute`` on MaxFuse's joint embedding
  (scmosaic's averaging, on MaxFuse's space).

MaxFuse runs in ``benchmarks/.venvs/maxfuse`` when it exists (``python -m venv
--system-site-packages benchmarks/.venvs/maxfuse`` then ``pip install maxfuse==0.0.2
"pynndescent<0.7" leidenalg`` in it: its pynndescent pin stays out of the main environment).

Usage:
    python benchmarks/imputation.py --seeds 0 1 2 --jobs 2
    python benchmarks/imputation.py --report
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from _common import grid_main, run_workflow, update_readme
from _data import load, workflow_options
from compare import cell, dense

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "imputation"
DATASETS = ["hao", "pbmc10k"]
METHODS = ["scmosaic", "maxfuse"]
K_LINKED = (15, 50)
K_EMBEDDING = 50


def normalised_adt(adata) -> np.ndarray:
    """ADT values as ``scmosaic.pp.preprocess`` normalises them (per cell, so a held-out
    cell's truth does not depend on the other cells)."""
    from mudata import MuData

    import scmosaic

    return dense(scmosaic.pp.preprocess(MuData({"adt": adata}))["adt"].X, np.float64)


def correlations(imputed: np.ndarray, truth: np.ndarray) -> dict:
    """Median Pearson per protein (across cells) and per cell (across proteins).

    Constant columns or rows (no variance in the prediction or the truth) are left out.
    """

    def pearson(a, b, axis):
        a = a - a.mean(axis, keepdims=True)
        b = b - b.mean(axis, keepdims=True)
        denominator = np.sqrt((a**2).sum(axis) * (b**2).sum(axis))
        with np.errstate(invalid="ignore", divide="ignore"):
            return (a * b).sum(axis) / denominator

    per_protein = pearson(imputed, truth, 0)
    per_cell = pearson(imputed, truth, 1)
    return {
        "pearson_per_protein_median": float(np.nanmedian(per_protein)),
        "pearson_per_protein_mean": float(np.nanmean(per_protein)),
        "pearson_per_cell_median": float(np.nanmedian(per_cell)),
    }


def nearest_mean(pool: np.ndarray, queries: np.ndarray, values: np.ndarray, k: int):
    """Mean of ``values`` over each query's ``k`` nearest rows of ``pool`` (Euclidean)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(pool))
    idx = NearestNeighbors(n_neighbors=k).fit(pool).kneighbors(queries, return_distance=False)
    return values[idx].mean(1)


def truth_of(mdata, dataset: str) -> np.ndarray:
    """Measured, normalised ADT of each RNA cell of the unpaired ``mdata`` (by cell_id)."""
    full = load(dataset)["adt"]
    rows = full.obs_names.get_indexer(mdata["rna"].obs["cell_id"])
    return normalised_adt(full)[rows]


def run_scmosaic(dataset: str, seed: int) -> dict[str, dict]:
    from sklearn.preprocessing import StandardScaler

    import scmosaic

    mdata = scmosaic.datasets.hide_pairing(load(dataset), mode="halves", seed=seed)
    run = run_workflow(mdata, workflow_options(dataset, seed=seed), seed)
    truth = truth_of(run.processed, dataset)
    info = {"iterations": run.model.n_iterations_trained_, "seconds": run.seconds}
    out = {}
    for method in ("neighbors", "decoder"):
        imputed = run.model.get_imputed_features("rna", "adt", space="log", method=method)
        out[f"scmosaic {method}"] = correlations(imputed.to_numpy(np.float64), truth) | info
    rna, adt = run.processed["rna"], run.processed["adt"]
    linked_rna = StandardScaler().fit_transform(dense(rna.obsm["linked_adt"], np.float64))
    linked_adt = StandardScaler().fit_transform(dense(adt.obsm["linked_rna"], np.float64))
    adt_values = dense(adt.X, np.float64)
    for k in K_LINKED:
        imputed = nearest_mean(linked_adt, linked_rna, adt_values, k)
        out[f"linked kNN ({k})"] = correlations(imputed, truth)
    imputed = scmosaic.tl.knn_impute(linked_adt, adt_values, linked_rna)
    out["linked kernel"] = correlations(imputed, truth)
    return out


def run_maxfuse(dataset: str, seed: int) -> dict[str, dict]:
    from compare import fit_maxfuse

    import scmosaic

    mdata = scmosaic.datasets.hide_pairing(load(dataset), mode="halves", seed=seed)
    mdata, fusor, seconds, info = fit_maxfuse(mdata, dataset, seed)
    truth = truth_of(mdata, dataset)
    adt = normalised_adt(mdata["adt"])
    rows_rna, rows_adt, _ = fusor.get_matching(order=(1, 2), target="full_data")
    rows_rna, rows_adt = np.asarray(rows_rna, int), np.asarray(rows_adt, int)
    n_rna = mdata["rna"].n_obs
    sums = np.zeros((n_rna, adt.shape[1]))
    np.add.at(sums, rows_rna, adt[rows_adt])
    counts = np.bincount(rows_rna, minlength=n_rna)
    matched = counts > 0
    imputed = np.where(matched[:, None], sums / np.maximum(counts, 1)[:, None], adt.mean(0))
    info = info | {"seconds": seconds, "unmatched_rna_fraction": float(1 - matched.mean())}
    out = {"MaxFuse matching": correlations(imputed, truth) | info}
    emb_rna, emb_adt = fusor.get_embedding(
        active_arr1=fusor.active_arr1, active_arr2=fusor.active_arr2
    )
    imputed = nearest_mean(np.asarray(emb_adt), np.asarray(emb_rna), adt, K_EMBEDDING)
    out[f"MaxFuse embedding {K_EMBEDDING}-NN"] = correlations(imputed, truth)
    imputed = scmosaic.tl.knn_impute(np.asarray(emb_adt), adt, np.asarray(emb_rna))
    out["MaxFuse embedding kernel"] = correlations(imputed, truth)
    return out


def run_one(method: str, dataset: str, seed: int) -> dict:
    import mudata
    import torch

    mudata.set_options(pull_on_update=False)
    torch.set_num_threads(1)
    scores = run_scmosaic(dataset, seed) if method == "scmosaic" else run_maxfuse(dataset, seed)
    return {"dataset": dataset, "method": method, "seed": seed, "scores": scores}


ROWS = [
    "scmosaic neighbors",
    "scmosaic decoder",
    "linked kNN (15)",
    "linked kNN (50)",
    "linked kernel",
    "MaxFuse matching",
    f"MaxFuse embedding {K_EMBEDDING}-NN",
    "MaxFuse embedding kernel",
]


README_ROWS = {
    "scmosaic neighbors": "scmosaic default (kernel over latent neighbours)",
    "scmosaic decoder": "scmosaic decoder",
    "linked kNN (50)": "50-NN on linked features (no model)",
    "linked kernel": "the same kernel on linked features (no model)",
    "MaxFuse matching": "MaxFuse matching",
    f"MaxFuse embedding {K_EMBEDDING}-NN": f"{K_EMBEDDING}-NN in MaxFuse's embedding",
    "MaxFuse embedding kernel": "the same kernel in MaxFuse's embedding",
}
README_DATASETS = {"hao": "Hao subset", "pbmc10k": "PBMC 10k"}


def per_protein(runs: list[dict]) -> dict[tuple[str, str], list[float]]:
    """(dataset, row) -> the seeds' median Pearson per protein."""
    out: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        for row, s in r["scores"].items():
            out.setdefault((r["dataset"], row), []).append(s["pearson_per_protein_median"])
    return out


def readme_table(runs: list[dict]) -> str:
    """The README's table: one row per imputation, one column per dataset, best in bold."""
    scores = per_protein(runs)
    datasets = [d for d in README_DATASETS if any(k[0] == d for k in scores)]
    best = {d: max(np.median(v) for k, v in scores.items() if k[0] == d) for d in datasets}
    lines = [
        "| imputation | " + " | ".join(README_DATASETS[d] for d in datasets) + " |",
        "|---|" + "---|" * len(datasets),
    ]
    for row, label in README_ROWS.items():
        cells = []
        for d in datasets:
            values = scores.get((d, row), [])
            text = cell(values, 3)
            if values and np.median(values) == best[d]:
                median, spread = text.split(" ", 1)
                text = f"**{median}** {spread}"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_runs() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]


def report(runs: list[dict]) -> str:
    lines = [
        "Median [min-max] over seeds of the median Pearson correlation with the held-out "
        "measurements (ADT normalised as pp.preprocess does: per-cell CLR), pairing hidden by halves.",
        "",
        "| dataset | imputation | seeds | Pearson per protein | Pearson per cell |",
        "|---|---|---|---|---|",
    ]
    verdict = []
    for dataset in DATASETS:
        by_row = {}
        for r in runs:
            if r["dataset"] == dataset:
                for row, s in r["scores"].items():
                    by_row.setdefault(row, []).append(s)
        for row in ROWS:
            rs = by_row.get(row, [])
            if not rs:
                continue
            lines.append(
                f"| {dataset} | {row} | {len(rs)} "
                f"| {cell([s['pearson_per_protein_median'] for s in rs], 3)} "
                f"| {cell([s['pearson_per_cell_median'] for s in rs], 3)} |"
            )
        medians = {
            row: np.median([s["pearson_per_protein_median"] for s in rs])
            for row, rs in by_row.items()
        }
        if "scmosaic neighbors" in medians and len(medians) > 1:
            ours = medians.pop("scmosaic neighbors")
            best = max(medians, key=medians.get)
            word = "beats" if ours > medians[best] else "does not beat"
            verdict.append(
                f"- {dataset}: scmosaic's default ({ours:.3f} per protein) {word} the best "
                f"other imputation, {best} ({medians[best]:.3f})."
            )
    return "\n".join(lines + [""] + verdict) + "\n"


def finish() -> None:
    runs = load_runs()
    text = report(runs)
    (RESULTS / "imputation.md").write_text(text)
    update_readme("imputation", readme_table(runs))
    print(text)


def main() -> None:
    grid_main(
        __file__, __doc__, METHODS, "dataset", DATASETS, run_one, OUT,
        lambda method, dataset, seed: f"{dataset}_{method}_seed{seed}.json", finish,
    )  # fmt: skip


if __name__ == "__main__":
    main()
