"""Median wall time of one SCMODAL training iteration (pairing hidden), both presets.

Usage: python benchmarks/time_per_iteration.py [--dataset hao|pbmc10k] [--iterations 200]
[--threads 1] [--accelerator gpu]. Writes benchmarks/results/time_per_iteration.json (Hao,
CPU), time_per_iteration_gpu.json (Hao, GPU) or time_per_iteration_<dataset>[_gpu].json and
prints a table. Both presets run in one process, one after the other, so their ratio is
measured under the same conditions. On a GPU each iteration's time ends with
``torch.cuda.synchronize()`` so queued kernels are counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import mudata
import numpy as np
import torch
from _common import IterationTimer
from _data import load, workflow_options

import scmosaic
from scmosaic import workflow

WARM_UP = 20  # iterations dropped from the statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="hao", choices=["hao", "pbmc10k"])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    mudata.set_options(pull_on_update=False)
    options = workflow_options(
        args.dataset,
        max_steps=args.iterations + WARM_UP,
        threads=args.threads,
        accelerator=args.accelerator,
    )

    mdata = scmosaic.datasets.hide_pairing(load(args.dataset))
    linked = workflow.link(mdata, options)
    mdata = workflow.preprocess(mdata, options)
    results = {}
    for preset in ("reference", "default"):
        preset_options = dataclasses.replace(options, preset=preset)
        model = workflow.build_model(mdata, linked, preset_options)
        timer = IterationTimer()
        workflow.fit(model, preset_options, callbacks=[timer])
        times = np.array(timer.times[WARM_UP:])
        results[preset] = {
            "median_s": float(np.median(times)),
            "p10_s": float(np.percentile(times, 10)),
            "p90_s": float(np.percentile(times, 90)),
            "n_iterations": int(times.size),
        }
    results["ratio_default_over_reference"] = (
        results["default"]["median_s"] / results["reference"]["median_s"]
    )
    gpu = args.accelerator != "cpu" and torch.cuda.is_available()
    results["dataset"] = args.dataset
    results["machine"] = {
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ("" if args.dataset == "hao" else f"_{args.dataset}") + ("_gpu" if gpu else "")
    name = f"time_per_iteration{suffix}.json"
    (out / name).write_text(json.dumps(results, indent=2))
    print("| preset | median s/iteration | p10 | p90 |\n|---|---|---|---|")
    for preset in ("reference", "default"):
        r = results[preset]
        print(f"| {preset} | {r['median_s']:.4f} | {r['p10_s']:.4f} | {r['p90_s']:.4f} |")
    print(f"default / reference: {results['ratio_default_over_reference']:.2f}")


if __name__ == "__main__":
    main()
