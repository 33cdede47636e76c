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
import json
import platform
import time
from pathlib import Path

import mudata
import numpy as np
import scvi
import torch
from _data import full_table, load
from lightning.pytorch.callbacks import Callback

import scmosaic


class IterationTimer(Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="hao", choices=["hao", "pbmc10k"])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    mudata.set_options(pull_on_update=False)
    scvi.settings.num_threads = args.threads

    mdata = scmosaic.datasets.hide_pairing(load(args.dataset))
    scmosaic.pp.link_features(mdata, "adt", "rna", table=full_table(args.dataset))
    mdata = scmosaic.pp.preprocess(mdata)
    scmosaic.SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=[("rna", "adt")])
    results = {}
    for preset in ("reference", "default"):
        model = scmosaic.SCMODAL(mdata, preset=preset)
        timer = IterationTimer()
        # 20 warm-up iterations are dropped from the statistics
        model.train(
            max_steps=args.iterations + 20,
            accelerator=args.accelerator,
            enable_progress_bar=False,
            callbacks=[timer],
        )
        times = np.array(timer.times[20:])
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
