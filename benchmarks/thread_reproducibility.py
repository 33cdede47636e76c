"""Same seed, one or two CPU threads: how far apart are the results?

Deterministic CPU training makes a seed reproducible for a given number of torch threads
(``tests/test_model.py``); another thread count sums floating-point numbers in another order.
This script trains the default preset (early stopping on) on the Hao subset with the pairing
hidden, seeds 0-2, once with one thread and once with two, each in its own process, and
compares per seed: the stopping iteration, label transfer, FOSCTTM, and the latent codes
(largest absolute difference, relative to the codes' spread; the codes themselves are
written as local ``.npz`` files, not committed). Runs one after the other, so that a
two-thread run has both cores.

Usage:
    python benchmarks/thread_reproducibility.py --seeds 0 1 2
    python benchmarks/thread_reproducibility.py --report
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import launch_one, run_workflow

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "thread_reproducibility"


def run_one(seed: int, threads: int) -> dict:
    import mudata
    import torch
    from _data import workflow_options
    from compare import score, unpaired_data

    mudata.set_options(pull_on_update=False)
    torch.set_num_threads(threads)
    run = run_workflow(
        unpaired_data("hao", "shuffle", seed), workflow_options("hao", seed=seed), seed
    )
    np.savez_compressed(OUT / f"hao_seed{seed}_threads{threads}.npz", **run.latent)
    return {
        "seed": seed,
        "threads": threads,
        "iterations": run.model.n_iterations_trained_,
        "train_seconds": run.train_seconds,
        **score(run.processed, "hao", "shuffle", run.latent["rna"], run.latent["adt"]),
    }


def report() -> str:
    runs = {
        (r["seed"], r["threads"]): r
        for r in (json.loads(p.read_text()) for p in sorted(OUT.glob("*.json")))
    }
    lines = [
        "| seed | iterations (1 / 2 threads) | label transfer (1 / 2) | FOSCTTM (1 / 2) "
        "| largest latent difference / latent SD |",
        "|---|---|---|---|---|",
    ]
    summary = []
    for seed in sorted({s for s, _ in runs}):
        one, two = runs.get((seed, 1)), runs.get((seed, 2))
        if not (one and two):
            continue
        codes = [np.load(OUT / f"hao_seed{seed}_threads{t}.npz") for t in (1, 2)]
        diff = max(float(np.abs(codes[0][m] - codes[1][m]).max()) for m in ("rna", "adt"))
        spread = float(np.concatenate([codes[0]["rna"], codes[0]["adt"]]).std())
        summary.append({"seed": seed, "largest_latent_difference": diff, "latent_sd": spread})
        lines.append(
            f"| {seed} | {one['iterations']} / {two['iterations']} "
            f"| {one['label_transfer_mean']:.3f} / {two['label_transfer_mean']:.3f} "
            f"| {one['foscttm_symmetric_euclidean']:.3f} / "
            f"{two['foscttm_symmetric_euclidean']:.3f} | {diff / spread:.2g} |"
        )
    # the codes (.npz) stay local; the differences are kept here
    (RESULTS / "thread_reproducibility.json").write_text(json.dumps(summary, indent=2))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        OUT.mkdir(parents=True, exist_ok=True)
        record = run_one(*args.one)
        (OUT / f"hao_seed{args.one[0]}_threads{args.one[1]}.json").write_text(
            json.dumps(record, indent=2)
        )
        return
    if not args.report:
        for seed in args.seeds:
            for threads in (1, 2):
                print(launch_one(__file__, seed, threads, threads=threads), flush=True)
    text = report()
    (RESULTS / "thread_reproducibility.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
