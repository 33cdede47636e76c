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

Usage: python benchmarks/cca_links.py --dataset hao --seeds 0 [--steps N]
Writes benchmarks/results/cca_links_<dataset>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mudata
import numpy as np
import pandas as pd
import scvi
import torch
from _data import LABELS, full_table, load

import scmosaic
from scmosaic.metrics import anchor_precision, foscttm, label_transfer_accuracy
from scmosaic.model._losses import mutual_nearest_neighbors

CONFIGS = ["a_table", "b_weak_table", "c_cca_from_weak", "d_cca_from_labels", "e_table_plus_cca"]


def weak_table(dataset: str, n_proteins: int = 10, seed: int = 0) -> dict[str, str]:
    """``n_proteins`` of the proteins that link on this data, drawn with a fixed seed."""
    mdata = load(dataset)
    report = scmosaic.pp.link_features(
        mdata, "adt", "rna", table=full_table(dataset), smooth_neighbors=0
    )
    linked = report[report["status"] == "linked"]
    chosen = np.random.default_rng(seed).choice(len(linked), n_proteins, replace=False)
    return {
        row.protein: "/".join(row.genes_in_data)
        for row in linked.iloc[np.sort(chosen)].itertuples()
    }


def build(dataset: str, config: str, seed: int, table: dict[str, str]):
    mdata = load(dataset)
    if dataset != "sln":  # paired data: hide the pairing
        mdata = scmosaic.datasets.hide_pairing(mdata, seed=seed)
    if config in ("a_table", "e_table_plus_cca"):
        scmosaic.pp.link_features(mdata, "adt", "rna", table=full_table(dataset))
    else:
        scmosaic.pp.link_features(mdata, "adt", "rna", table=table)
    if config == "c_cca_from_weak":
        scmosaic.pp.cca_links(mdata, ("rna", "adt"), init="links", seed=seed)
    elif config == "d_cca_from_labels":
        scmosaic.pp.cca_links(
            mdata, ("rna", "adt"), init="labels", labels_key=LABELS[dataset], seed=seed
        )
    elif config == "e_table_plus_cca":
        scmosaic.pp.cca_links(mdata, ("rna", "adt"), init="links", seed=seed)
        for mod, other in (("rna", "adt"), ("adt", "rna")):
            obsm = mdata[mod].obsm
            obsm["linked_and_cca"] = pd.concat([obsm[f"linked_{other}"], obsm["X_cca"]], axis=1)
    key = {
        "a_table": None,
        "b_weak_table": None,
        "c_cca_from_weak": "X_cca",
        "d_cca_from_labels": "X_cca",
        "e_table_plus_cca": "linked_and_cca",
    }[config]
    keys = ("linked_adt", "linked_rna") if key is None else (key, key)
    return mdata, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="hao", choices=sorted(LABELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    mudata.set_options(pull_on_update=False)
    scvi.settings.num_threads = args.threads
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = weak_table(args.dataset)
    print("weak table:", table)
    rows = []
    for config in args.configs:
        for seed in args.seeds:
            start = time.perf_counter()
            mdata, (key_rna, key_adt) = build(args.dataset, config, seed, table)
            link_seconds = time.perf_counter() - start
            rna, adt = mdata["rna"], mdata["adt"]
            key = LABELS[args.dataset]
            labels = rna.obs[key].to_numpy(), adt.obs[key].to_numpy()
            p_rna = torch.tensor(np.asarray(rna.obsm[key_rna], dtype=np.float32))
            p_adt = torch.tensor(np.asarray(adt.obsm[key_adt], dtype=np.float32))
            i, j = mutual_nearest_neighbors(p_rna, p_adt, k=30)
            precision = anchor_precision(i.numpy(), j.numpy(), *labels)
            processed = scmosaic.pp.preprocess(mdata)
            scmosaic.SCMODAL.setup_mudata(
                processed, modalities=["rna", "adt"], links=[("rna", "adt", key_rna, key_adt)]
            )
            model = scmosaic.SCMODAL(processed, seed=seed)
            model.train(max_steps=args.steps, enable_progress_bar=False)
            latent = model.get_latent_representation()
            acc = label_transfer_accuracy(latent["rna"], labels[0], latent["adt"], labels[1])
            fos = float("nan")
            if "cell_id" in adt.obs:
                partner = {c: n for n, c in enumerate(adt.obs["cell_id"])}
                order = np.array([partner[c] for c in rna.obs["cell_id"]])
                fos = foscttm(latent["rna"], latent["adt"][order])
            row = {
                "dataset": args.dataset,
                "config": config,
                "seed": seed,
                "n_link_columns": int(p_rna.shape[1]),
                "anchor_precision": precision,
                "n_anchor_pairs": int(i.numel()),
                "label_transfer_mean": acc["mean"],
                "foscttm": fos,
                "link_seconds": link_seconds,
                "iterations": model.n_iterations_trained_,
            }
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


if __name__ == "__main__":
    main()
