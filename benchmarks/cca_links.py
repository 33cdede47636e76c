"""CCA linked features vs protein->gene table links on paired CITE-seq with the pairing hidden.

Datasets: ``hao`` (the bundled Hao 2021 subset, 800 paired cells, 224 ADTs) and ``pbmc10k``
(10x PBMC 10k processed by the totalVI authors, 6,855 paired cells, 14 ADTs, automated
labels ``label_main_rna``; read from ../shared/data), and ``sln``: the truly unpaired mouse
spleen/lymph node set (RNA of replicate 2 vs ADT of replicate 1, 110 ADTs, mouse TotalSeq
table from ../shared/data/adt_gene_maps as a test input), scored by label transfer on the
coarse label set ``SLN_COARSE`` (doublets, dying T cells and erythrocytes excluded); it has
no pairing, so no FOSCTTM.

Configurations: (a) full table links, (b) a weak table of 10 proteins (fixed seed),
(c) CCA initialised from that weak table, (d) CCA initialised from labels, (e) full table
links and CCA scores together (concatenated columns). For each: anchor precision (fraction of
mutual nearest neighbour pairs, k=30, cosine, over all cells, whose labels agree), then
SCMODAL (default preset) label transfer and FOSCTTM.

Usage: python benchmarks/cca_links.py --dataset hao --seeds 0 1 2 [--steps N]
Writes benchmarks/results/cca_links_<dataset>.json and prints a markdown table;
``python benchmarks/cca_links.py --report`` writes the README's table (medians of the
three datasets' JSON files).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import mudata
import numpy as np
from _common import update_readme
from _data import LABELS, PAIRED, load, workflow_options

import scmosaic
from scmosaic import workflow
from scmosaic.metrics import anchor_precision, foscttm, label_transfer_accuracy

CONFIGS = ["a_table", "b_weak_table", "c_cca_from_weak", "d_cca_from_labels", "e_table_plus_cca"]


def weak_table(dataset: str, n_proteins: int = 10, seed: int = 0) -> dict[str, str]:
    """``n_proteins`` of the proteins that link on this data, drawn with a fixed seed."""
    options = workflow_options(dataset, link_kwargs={"smooth_neighbors": 0})
    report = workflow.link(load(dataset), options).report
    linked = report[report["status"] == "linked"]
    chosen = np.random.default_rng(seed).choice(len(linked), n_proteins, replace=False)
    return {
        row.protein: "/".join(row.genes_in_data)
        for row in linked.iloc[np.sort(chosen)].itertuples()
    }


def config_options(dataset: str, config: str, table: dict[str, str], **settings):
    """The workflow's options of a configuration (``table``: the weak table).

    (a) and (b) name ``links="table"``: the workflow's default is ``"table+cca"``.
    """
    full = workflow_options(dataset, links="table", **settings)
    weak = dataclasses.replace(full, table=table)
    return {
        "a_table": full,
        "b_weak_table": weak,
        "c_cca_from_weak": dataclasses.replace(weak, links="cca", cca_init="links"),
        "d_cca_from_labels": dataclasses.replace(
            full, links="cca", cca_init="labels", labels_key=LABELS[dataset]
        ),
        "e_table_plus_cca": dataclasses.replace(full, links="table+cca"),
    }[config]


def build(dataset: str, config: str, options: workflow.WorkflowOptions):
    """Raw data (pairing hidden where there is one) with the configuration's links."""
    mdata = load(dataset)
    if PAIRED[dataset]:
        mdata = scmosaic.datasets.hide_pairing(mdata, seed=options.seed)
    return mdata, workflow.link(mdata, options)


def run_one(dataset: str, config: str, seed: int, table: dict[str, str], args) -> dict:
    """Links, their anchor precision, then SCMODAL's label transfer and FOSCTTM."""
    options = config_options(
        dataset, config, table, seed=seed, max_steps=args.steps, threads=args.threads
    )
    start = time.perf_counter()
    mdata, linked = build(dataset, config, options)
    link_seconds = time.perf_counter() - start
    rna, adt = mdata["rna"], mdata["adt"]
    keys = linked.info["obsm_keys"]
    labels = rna.obs[LABELS[dataset]].to_numpy(), adt.obs[LABELS[dataset]].to_numpy()
    p_rna = np.asarray(rna.obsm[keys["rna"]], dtype=np.float32)
    p_adt = np.asarray(adt.obsm[keys["adt"]], dtype=np.float32)
    i, j, _ = scmosaic.pp.mutual_nearest_pairs(p_rna, p_adt, 30)
    processed = workflow.preprocess(mdata, options)
    model = workflow.build_model(processed, linked, options)
    workflow.fit(model, options)
    latent = model.get_latent_representation()
    acc = label_transfer_accuracy(latent["rna"], labels[0], latent["adt"], labels[1])
    fos = float("nan")
    if PAIRED[dataset]:
        order = scmosaic.datasets.pairing_order(mdata, "rna", "adt")
        fos = foscttm(latent["rna"], latent["adt"][order])
    return {
        "dataset": dataset,
        "config": config,
        "seed": seed,
        "n_link_columns": int(p_rna.shape[1]),
        "anchor_precision": anchor_precision(i, j, *labels),
        "n_anchor_pairs": int(len(i)),
        "label_transfer_mean": acc["mean"],
        "foscttm": fos,
        "link_seconds": link_seconds,
        "iterations": model.n_iterations_trained_,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="hao", choices=sorted(LABELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--report", action="store_true", help="only write the README table")
    args = parser.parse_args()
    out = Path(args.out)
    if args.report:
        update_readme("cca_links", readme_table(out))
        return
    mudata.set_options(pull_on_update=False)
    out.mkdir(parents=True, exist_ok=True)
    table = weak_table(args.dataset)
    print("weak table:", table)
    rows = []
    for config in args.configs:
        for seed in args.seeds:
            row = run_one(args.dataset, config, seed, table, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
            with open(out / f"cca_links_{args.dataset}.jsonl", "a") as f:  # survives interruption
                f.write(json.dumps(row) + "\n")
    path = out / f"cca_links_{args.dataset}.json"
    rows = merge_runs(path, rows)
    path.write_text(json.dumps({"weak_table": table, "runs": rows}, indent=2))
    print(median_table(rows))


def merge_runs(path: Path, rows: list[dict]) -> list[dict]:
    """Add ``rows`` to the runs already in ``path``; a rerun of a (config, seed) replaces it."""
    previous = json.loads(path.read_text())["runs"] if path.exists() else []
    fresh = {(r["config"], r["seed"]) for r in rows}
    kept = [r for r in previous if (r["config"], r["seed"]) not in fresh]
    return sorted(kept + rows, key=lambda r: (r["config"], r["seed"]))


def median_table(rows: list[dict]) -> str:
    """Markdown table: per configuration, the median over seeds and the per-seed values."""
    lines = [
        "| config | seeds | anchor precision | label transfer | FOSCTTM |",
        "|---|---|---|---|---|",
    ]
    for config in CONFIGS:
        runs = [r for r in rows if r["config"] == config]
        if not runs:
            continue
        cells = []
        for metric in ("anchor_precision", "label_transfer_mean", "foscttm"):
            values = [r[metric] for r in runs]
            if np.all(np.isnan(values)):
                cells.append("–")
                continue
            each = " / ".join(f"{v:.3f}" for v in values)
            cells.append(f"**{np.median(values):.3f}** ({each})")
        seeds = ",".join(str(r["seed"]) for r in runs)
        lines.append(f"| {config} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


README_ROWS = {
    "a_table": "(a) full table",
    "b_weak_table": "(b) weak table, 10 proteins",
    "c_cca_from_weak": "(c) CCA from that weak table",
    "d_cca_from_labels": "(d) CCA from labels",
    "e_table_plus_cca": '(e) full table + CCA (`links="table+cca"`)',
}
README_DATASETS = {"hao": "Hao", "pbmc10k": "PBMC 10k", "sln": "SLN"}


def readme_table(folder: Path) -> str:
    """The README's table: medians over seeds of every dataset whose JSON is in ``folder``
    (anchor precision, label transfer and, on paired data, FOSCTTM)."""
    runs = {
        d: json.loads((folder / f"cca_links_{d}.json").read_text())["runs"]
        for d in README_DATASETS
        if (folder / f"cca_links_{d}.json").exists()
    }
    header, metrics = ["linked features"], {}
    for d in runs:
        metrics[d] = ["anchor_precision", "label_transfer_mean"] + ["foscttm"] * PAIRED[d]
        names = ["anchor precision", "label transfer", "FOSCTTM"][: len(metrics[d])]
        header += [f"{README_DATASETS[d]}: {names[0]}", *names[1:]]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for config, label in README_ROWS.items():
        cells = [label]
        for d, rows in runs.items():
            chosen = [r for r in rows if r["config"] == config]
            for metric in metrics[d]:
                cells.append(f"{np.median([r[metric] for r in chosen]):.3f}" if chosen else "–")
        lines.append("| " + " | ".join(cells) + " |")
    seeds = {d: sorted({r["seed"] for r in rows}) for d, rows in runs.items()}
    lines.append("")
    lines.append(
        "Medians of seeds "
        + "; ".join(f"{README_DATASETS[d]} {', '.join(map(str, s))}" for d, s in seeds.items())
        + "."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
