"""Mouse data with scmosaic's packaged defaults: which table, how many links, what accuracy.

On the truly unpaired mouse SLN set (110 TotalSeq ADTs; ``_data.load_sln``), three ways to
link proteins to genes, each through the README workflow with the default preset, one CPU
thread, seeds 0-2, scored like ``compare.py`` (label transfer on the coarse labels):

* ``packaged``: no table argument. scmosaic detects mouse gene names and uses its packaged
  mouse table (``species="auto"``), what a mouse user gets by default.
* ``packaged_human``: the packaged human table forced (``species="human"``): the default
  before the mouse table existed.
* ``totalvi_table``: the totalVI mouse TotalSeq table (a test input, never packaged); these
  runs are ``compare.py``'s SLN runs of the default (``scmodal_table_cca``: the same
  workflow and links), read from its results.

Usage:
    python benchmarks/species.py --seeds 0 1 2 --jobs 2
    python benchmarks/species.py --report
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import launch_all, run_workflow, update_readme
from _data import workflow_options
from compare import cell

from scmosaic.workflow import PACKAGED_TABLE

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "species"
VARIANTS = {"packaged": "auto", "packaged_human": "human"}


def run_one(variant: str, seed: int) -> dict:
    import mudata
    import scvi
    import torch
    from compare import score, unpaired_data

    mudata.set_options(pull_on_update=False)
    scvi.settings.num_threads = 1
    torch.set_num_threads(1)
    options = workflow_options(
        "sln", seed=seed, table=PACKAGED_TABLE, link_kwargs={"species": VARIANTS[variant]}
    )
    run = run_workflow(unpaired_data("sln", "unpaired", seed), options, seed)
    report = run.linked.report
    return {
        "dataset": "sln",
        "variant": variant,
        "seed": seed,
        "linked_proteins": int((report["status"] == "linked").sum()),
        "linked_columns": int(run.processed["adt"].obsm["linked_rna"].shape[1]),
        "iterations": run.model.n_iterations_trained_,
        "seconds": run.seconds,
        **score(run.processed, "sln", "unpaired", run.latent["rna"], run.latent["adt"]),
    }


def _totalvi_runs() -> list[dict]:
    """``compare.py``'s SLN runs of the default: the same workflow with the totalVI mouse
    table."""
    from _data import load

    from scmosaic import workflow

    paths = sorted((RESULTS / "compare").glob("sln_unpaired_scmodal_table_cca_seed*.json"))
    runs = [json.loads(p.read_text()) for p in paths]
    if runs:
        options = workflow_options("sln", link_kwargs={"smooth_neighbors": 0})
        report = workflow.link(load("sln"), options).report
        for r in runs:
            r["linked_proteins"] = int((report["status"] == "linked").sum())
    return runs


def report() -> str:
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    groups = {v: [r for r in runs if r["variant"] == v] for v in VARIANTS}
    groups["totalvi_table"] = _totalvi_runs()
    lines = [
        "| links | seeds | proteins linked (of 110) | label transfer | macro-F1 "
        "| kNN-15, 80% most confident |",
        "|---|---|---|---|---|---|",
    ]
    for name, rs in groups.items():
        if not rs:
            continue
        lines.append(
            f"| {name} | {len(rs)} | {cell([r['linked_proteins'] for r in rs], 0)} "
            f"| {cell([r['label_transfer_mean'] for r in rs], 3)} "
            f"| {cell([r['macro_f1_mean'] for r in rs], 3)} "
            f"| {cell([r['knn15_accuracy_top80_confident'] for r in rs], 3)} |"
        )
    verdict = []
    if groups["packaged"] and groups["totalvi_table"]:
        ours, theirs = groups["packaged"], groups["totalvi_table"]
        med = {
            k: (np.median([r[k] for r in ours]), np.median([r[k] for r in theirs]))
            for k in ("linked_proteins", "label_transfer_mean")
        }
        verdict.append(
            f"- Packaged default against the totalVI table: {med['linked_proteins'][0]:.0f} "
            f"against {med['linked_proteins'][1]:.0f} proteins linked; label transfer "
            f"{med['label_transfer_mean'][0]:.3f} against {med['label_transfer_mean'][1]:.3f}."
        )
    return "\n".join(lines + [""] + verdict) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        variant, seed = args.one[0], int(args.one[1])
        record = run_one(variant, seed)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"sln_{variant}_seed{seed}.json").write_text(json.dumps(record, indent=2))
        print(f"{variant} seed {seed}: {record['linked_proteins']} proteins linked", flush=True)
        return
    if not args.report:
        todo = [(v, s) for v in args.variants for s in args.seeds]
        launch_all(__file__, todo, args.jobs)
    text = report()
    (RESULTS / "species.md").write_text(text)
    update_readme("species", text.split("\n\n")[0])
    print(text)


if __name__ == "__main__":
    main()
