"""How minibatch anchors are chosen: the linked features' similarity and the codes' share.

Each minibatch's anchors are mutual nearest neighbours of ``s(P_a, P_b) + w cos(z_a, z_b)``
(linked features ``P``, current codes ``z``; ``SCMODAL``'s ``anchor_similarity`` ``s``,
cosine or Euclidean, and ``latent_anchor_weight`` ``w``). ``fine_label_directions.py``
shows that the codes place SLN's B-cell states across modalities no better than the linked
features alone do, so how anchors are chosen from them matters. This script trains with a
setting ``<similarity>:<w>`` on Hao, PBMC 10k and SLN with ``compare.py``'s protocol
(pairing hidden by shuffling on Hao and PBMC 10k, SLN truly unpaired; default preset with
early stopping otherwise, one CPU thread per run; ``compare.score``), the two settings
given to :class:`scmosaic.SCMODAL` as arguments.

Runs of the default preset's own setting are ``compare.py``'s ``scmodal_table`` runs of
the same seeds (``results/compare/``), not rerun here.

Usage:
    python benchmarks/anchor_choice.py --settings cosine:0 euclidean:0.5 --jobs 2
    python benchmarks/anchor_choice.py --report
Writes ``results/anchor_choice/<dataset>_<similarity>_w<w>_seed<seed>.json`` and
``results/anchor_choice.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import launch_all, run_workflow
from _data import workflow_options
from compare import cell

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "anchor_choice"
VARIANT = {"hao": "shuffle", "pbmc10k": "shuffle", "sln": "unpaired"}
METRICS = {
    "label transfer": "label_transfer_mean",
    "macro-F1": "macro_f1_mean",
    "fine transfer": "fine_label_transfer_mean",
    "fine macro-F1": "fine_macro_f1_mean",
    "FOSCTTM": "foscttm_symmetric_euclidean",
}


def default_setting() -> tuple[str, float]:
    from scmosaic.model import PRESETS

    module = PRESETS["default"].module
    return module.anchor_similarity, module.latent_anchor_weight


def run_one(dataset: str, similarity: str, weight: float, seed: int) -> dict:
    import mudata
    import scvi
    import torch
    from compare import score, unpaired_data

    mudata.set_options(pull_on_update=False)
    scvi.settings.num_threads = 1
    torch.set_num_threads(1)
    variant = VARIANT[dataset]
    run = run_workflow(
        unpaired_data(dataset, variant, seed),
        workflow_options(dataset, seed=seed),
        seed,
        anchor_similarity=similarity,
        latent_anchor_weight=weight,
    )
    return {
        "dataset": dataset,
        "variant": variant,
        "anchor_similarity": similarity,
        "latent_anchor_weight": weight,
        "seed": seed,
        "iterations": run.model.n_iterations_trained_,
        "seconds": run.seconds,
        **score(run.processed, dataset, variant, run.latent["rna"], run.latent["adt"]),
    }


def _setting(row: dict) -> tuple[str, float]:
    # runs made before anchor_similarity existed used the cosine
    return row.get("anchor_similarity", "cosine"), row["latent_anchor_weight"]


def _runs() -> list[dict]:
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    similarity, weight = default_setting()
    for path in sorted((RESULTS / "compare").glob("*_scmodal_table_seed*.json")):
        row = json.loads(path.read_text())
        if VARIANT.get(row["dataset"]) == row["variant"]:
            runs.append(row | {"anchor_similarity": similarity, "latent_anchor_weight": weight})
    return runs


def report() -> str:
    """Medians over seeds [min-max] per dataset and setting; the default's row marked."""
    runs = _runs()
    default = default_setting()
    lines = [
        "| dataset | anchor_similarity : latent_anchor_weight | seeds | iterations | "
        + " | ".join(METRICS)
        + " |",
        "|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for dataset in VARIANT:
        settings = sorted({_setting(r) for r in runs if r["dataset"] == dataset})
        for setting in settings:
            group = [r for r in runs if r["dataset"] == dataset and _setting(r) == setting]
            seeds = ",".join(str(r["seed"]) for r in sorted(group, key=lambda r: r["seed"]))
            name = f"{setting[0]} : {setting[1]:g}" + (" (default)" if setting == default else "")
            cells = [cell([r["iterations"] for r in group], 0)]
            for key in METRICS.values():
                values = [r[key] for r in group if r.get(key) is not None]
                cells.append(cell(values, 3) if values and not np.isnan(values).all() else "–")
            lines.append(f"| {dataset} | {name} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(VARIANT), choices=list(VARIANT))
    parser.add_argument(
        "--settings", nargs="+", default=["cosine:0", "euclidean:0.5"], help="SIMILARITY:W"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 per core)")
    parser.add_argument("--report", action="store_true", help="only write the table")
    parser.add_argument(
        "--one", nargs=4, metavar=("DATASET", "SIMILARITY", "W", "SEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        dataset, similarity, weight, seed = args.one
        record = run_one(dataset, similarity, float(weight), int(seed))
        name = f"{dataset}_{similarity}_w{float(weight):g}_seed{seed}"
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{name}.json").write_text(json.dumps(record, indent=2))
        print(f"{name}: {record['iterations']} iterations", flush=True)
        return
    if not args.report:
        settings = [setting.split(":") for setting in args.settings]
        todo = [(d, sim, w, s) for sim, w in settings for d in args.datasets for s in args.seeds]
        launch_all(__file__, todo, args.jobs)
    text = report()
    (RESULTS / "anchor_choice.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
