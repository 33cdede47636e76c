"""Early stopping: the default preset as a user runs it, against its full iteration rule and MaxFuse.

Each run follows ``compare.py``'s protocol on one CPU thread: the pairing hidden by
shuffling on ``hao`` and ``pbmc10k`` (label transfer and FOSCTTM), ``sln`` truly unpaired
(label transfer only); linking, preprocessing, training and latent codes are timed end to
end exactly as ``compare.py`` times ``scmodal_table``, and training is also timed alone.
The model is trained with ``model.train()``: the default preset, whose early stopping is on.
Each run's JSON (``results/early_stopping/``) holds the iteration it stopped at, the
criterion's trajectory from ``model.history`` and the scores of ``compare.score``.

``--report`` compares, per dataset (medians over seeds, [min-max]):

* against the default preset's full iteration rule (625 passes, 1,000-2,000 iterations)
  with the same seeds and protocol: the final checkpoints of ``time_to_quality.py``'s
  default-preset runs (``results/time_to_quality/``, ``--steps`` set to the rule's value,
  evaluation excluded from their training time). Acceptance: label transfer and FOSCTTM
  within 0.01 of it (or better) in at most half of its training time.
* end to end against MaxFuse's runs of ``compare.py`` (``results/compare/``, same split,
  same seeds, CPU): less wall time, higher label transfer, lower FOSCTTM.

It also lists, for the full runs, the quality at the checkpoint where early stopping
stopped, which checks that the check itself does not change training.

Usage:
    python benchmarks/early_stopping.py --datasets hao pbmc10k sln --seeds 0 1 2 --jobs 2
    python benchmarks/early_stopping.py --report
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
from _common import launch_all, run_workflow, update_readme
from _data import workflow_options
from compare import cell

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "early_stopping"
TOLERANCE = 0.01
VARIANT = {"hao": "shuffle", "pbmc10k": "shuffle", "sln": "unpaired"}


def run_one(dataset: str, seed: int) -> dict:
    import mudata
    import scvi
    import torch
    from compare import score, unpaired_data

    mudata.set_options(pull_on_update=False)
    scvi.settings.num_threads = 1
    torch.set_num_threads(1)
    variant = VARIANT[dataset]
    run = run_workflow(
        unpaired_data(dataset, variant, seed), workflow_options(dataset, seed=seed), seed
    )
    history = run.model.history
    trajectory = [
        {"iteration": int(it), "neighbor_agreement": float(a)}
        for it, a in zip(
            history["convergence_check_iteration"].iloc[:, 0],
            history["neighbor_agreement"].iloc[:, 0],
            strict=True,
        )
    ]
    return {
        "dataset": dataset,
        "variant": variant,
        "seed": seed,
        "iterations": run.model.n_iterations_trained_,
        "train_seconds": run.train_seconds,
        "seconds": run.seconds,
        "trajectory": trajectory,
        "n_neighbors_mnn_local": run.model.module.n_neighbors_mnn_local,
        "device": f"CPU ({platform.machine()}), 1 thread",
        **score(run.processed, dataset, variant, run.latent["rna"], run.latent["adt"]),
    }


# ---------------------------------------------------------------------------- report

METRICS = {"label_transfer_mean": +1, "foscttm_symmetric_euclidean": -1}


def _median(values) -> float:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.median(values)) if values else float("nan")


def _full_runs(dataset: str, seeds: list[int]) -> dict[int, dict]:
    folder = RESULTS / "time_to_quality"
    runs = {}
    for seed in seeds:
        path = folder / f"{dataset}_default_{VARIANT[dataset]}_seed{seed}.json"
        if path.exists():
            runs[seed] = json.loads(path.read_text())
    return runs


def _maxfuse_runs(dataset: str, seeds: list[int]) -> list[dict]:
    folder = RESULTS / "compare"
    paths = [folder / f"{dataset}_{VARIANT[dataset]}_maxfuse_seed{s}.json" for s in seeds]
    return [json.loads(p.read_text()) for p in paths if p.exists()]


def report() -> str:
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    header = (
        "| dataset | run | seeds | iterations | training (s) | end to end (s) "
        "| label transfer | macro-F1 | FOSCTTM |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for dataset in [d for d in VARIANT if any(r["dataset"] == d for r in runs)]:
        early = [r for r in runs if r["dataset"] == dataset]
        seeds = sorted(r["seed"] for r in early)
        full = _full_runs(dataset, seeds)
        maxfuse = _maxfuse_runs(dataset, seeds)
        rows = [("early stopping (default)", early, "train_seconds", "seconds")]
        if full:
            rows.append(("full iteration rule", list(full.values()), "train_seconds", None))
        if maxfuse:
            rows.append(("MaxFuse (compare.py)", maxfuse, None, "seconds"))
        for name, rs, train_key, e2e_key in rows:
            lines.append(
                f"| {dataset} | {name} | {len(rs)} "
                f"| {cell([r.get('iterations', r.get('iteration', np.nan)) for r in rs], 0)} "
                f"| {cell([r[train_key] for r in rs], 0) if train_key else '–'} "
                f"| {cell([r[e2e_key] for r in rs], 0) if e2e_key else '–'} "
                f"| {cell([r['label_transfer_mean'] for r in rs], 3)} "
                f"| {cell([r.get('macro_f1_mean', r.get('macro_f1')) for r in rs], 3)} "
                f"| {cell([r.get('foscttm_symmetric_euclidean') for r in rs], 3)} |"
            )
        verdicts += _verdicts(dataset, early, full, maxfuse)
    return "\n".join(lines + [""] + verdicts) + "\n"


def _verdicts(dataset: str, early: list[dict], full: dict, maxfuse: list[dict]) -> list[str]:
    out = []
    med = {k: _median([r.get(k) for r in early]) for k in (*METRICS, "train_seconds", "seconds")}
    if full:
        ref = {k: _median([r.get(k) for r in full.values()]) for k in (*METRICS, "train_seconds")}
        within = all(
            np.isnan(ref[m]) or sign * (med[m] - ref[m]) >= -TOLERANCE
            for m, sign in METRICS.items()
        )
        share = med["train_seconds"] / ref["train_seconds"]
        iterations = _median([r["iterations"] for r in early]) / _median(
            [r["iteration"] for r in full.values()]
        )
        # Per-iteration time tells whether both sets ran on equally fast machines.
        pace = [
            1e3 * _median([r["train_seconds"] / r[key] for r in rs])
            for rs, key in ((early, "iterations"), (list(full.values()), "iteration"))
        ]
        out.append(
            f"- {dataset}: early stopping {'is' if within else 'is not'} within {TOLERANCE} of "
            f"the full rule's label transfer and FOSCTTM (or better) in {100 * share:.0f}% of "
            f"its training time ({'meets' if within and share <= 0.5 else 'misses'} the "
            f"target: within 0.01 in at most 50%) and {100 * iterations:.0f}% of its "
            f"iterations ({pace[0]:.0f} ms against {pace[1]:.0f} ms per iteration)."
        )
        # The check must not change training: the full run's checkpoint at the stopping
        # iteration has the early-stopped model's scores (when both had the same settings;
        # full runs recorded before local anchors had none).
        same = []
        for r in early:
            if r.get("n_neighbors_mnn_local", 0) != full.get(r["seed"], {}).get(
                "n_neighbors_mnn_local", 0
            ):
                continue
            traj = full.get(r["seed"], {}).get("trajectory", [])
            hit = next((t for t in traj if t["iteration"] == r["iterations"]), None)
            if hit is not None:
                same.append(abs(hit["label_transfer_mean"] - r["label_transfer_mean"]) < 1e-9)
        if same:
            out.append(
                f"  The full runs' checkpoints at the stopping iterations score the same label "
                f"transfer as the early-stopped models in {sum(same)} of {len(same)} seeds."
            )
    if maxfuse:
        mf = {k: _median([r.get(k) for r in maxfuse]) for k in (*METRICS, "seconds")}
        faster = med["seconds"] < mf["seconds"]
        better = med["label_transfer_mean"] > mf["label_transfer_mean"] and (
            np.isnan(mf["foscttm_symmetric_euclidean"])
            or med["foscttm_symmetric_euclidean"] < mf["foscttm_symmetric_euclidean"]
        )
        paired = not np.isnan(mf["foscttm_symmetric_euclidean"])
        foscttm = (
            f", FOSCTTM {med['foscttm_symmetric_euclidean']:.3f} against "
            f"{mf['foscttm_symmetric_euclidean']:.3f}"
            if paired
            else ""
        )
        out.append(
            f"- {dataset} end to end: scmosaic {med['seconds']:.0f} s against MaxFuse's "
            f"{mf['seconds']:.0f} s ({'faster' if faster else 'slower'}); label transfer "
            f"{med['label_transfer_mean']:.3f} against {mf['label_transfer_mean']:.3f}{foscttm} "
            f"({'better' if better else 'not better'})."
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(VARIANT), choices=list(VARIANT))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 per core)")
    parser.add_argument("--report", action="store_true", help="only write the table")
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        dataset, seed = args.one[0], int(args.one[1])
        record = run_one(dataset, seed)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{dataset}_seed{seed}.json").write_text(json.dumps(record, indent=2))
        print(f"{dataset} seed {seed}: {record['iterations']} iterations", flush=True)
        return
    if not args.report:
        todo = [(d, s) for d in args.datasets for s in args.seeds]
        launch_all(__file__, todo, args.jobs)
    text = report()
    (RESULTS / "early_stopping.md").write_text(text)
    update_readme("early_stopping", text.split("\n\n")[0])
    print(text)


if __name__ == "__main__":
    main()
