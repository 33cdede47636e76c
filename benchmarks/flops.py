"""How close one SCMODAL training iteration runs to the machine's matrix-multiply limit.

On the Hao subset (pairing hidden, packaged table), for a preset (default: ``reference``):

1. FLOPs of one iteration: ``torch.utils.flop_counter.FlopCounterMode`` counts the
   matrix-multiply FLOPs (``mm``/``addmm``/``bmm``/..., forward and backward) of every
   operation during ``--count`` training iterations, discriminator updates included; the
   per-iteration number is their mean. Elementwise work (activations, norms, losses) is
   not counted: it is what the ratio below has to absorb.
2. Matmul throughput of this machine, in the same process and with the same torch thread
   count: the median rate of a square float32 ``torch.mm`` (``--gemm`` size), and, for
   reference, the rate of the iteration's own matmul shapes replayed alone.
3. Median wall time of one iteration over ``--iterations`` iterations after 20 warm-up.

Ratio = iteration time / (FLOPs per iteration / square-GEMM throughput). The issue's bar:
at most 1.5.

Usage: python benchmarks/flops.py [--preset reference] [--threads 1]
Writes benchmarks/results/flops_<preset>.json and prints the arithmetic.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from collections import Counter
from pathlib import Path

import mudata
import numpy as np
import torch
from _common import IterationTimer
from _data import workflow_options
from torch.utils.flop_counter import FlopCounterMode

import scmosaic
from scmosaic import workflow

WARM_UP = 20  # iterations dropped from the timing


class ShapeRecorder(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the (m, k, n) of every 2-D matrix product, to replay them alone."""

    def __init__(self):
        super().__init__()
        self.shapes: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in ("mm", "addmm"):
            a, b = (args[0], args[1]) if name == "mm" else (args[1], args[2])
            self.shapes[(a.shape[0], a.shape[1], b.shape[1])] += 1
        return func(*args, **(kwargs or {}))


def gemm_rate(m: int, k: int, n: int, repeats: int = 30) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * m * k * n / float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--gemm", type=int, default=1024)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    mudata.set_options(pull_on_update=False)
    options = workflow_options("hao", preset=args.preset, threads=args.threads)
    mdata = scmosaic.datasets.hide_pairing(scmosaic.datasets.hao2021_pbmc_cite())
    linked = workflow.link(mdata, options)
    mdata = workflow.preprocess(mdata, options)

    # 1. FLOPs per iteration (a separate model: counting slows the iterations down)
    counting = dataclasses.replace(options, max_steps=args.count)
    model = workflow.build_model(mdata, linked, counting)
    counter, shapes = FlopCounterMode(display=False), ShapeRecorder()
    with counter, shapes:
        workflow.fit(model, counting)
    flops = counter.get_total_flops() / args.count

    # 2. Matmul throughput, same process, same threads
    square = gemm_rate(args.gemm, args.gemm, args.gemm)
    per_iteration = {shape: c / args.count for shape, c in shapes.shapes.items()}
    own_time = sum(c * 2 * m * k * n / gemm_rate(m, k, n) for (m, k, n), c in per_iteration.items())
    own_flops = sum(c * 2 * m * k * n for (m, k, n), c in per_iteration.items())

    # 3. Wall time of one iteration
    timing = dataclasses.replace(options, max_steps=args.iterations + WARM_UP)
    model = workflow.build_model(mdata, linked, timing)
    timer = IterationTimer()
    workflow.fit(model, timing, callbacks=[timer])
    iteration = float(np.median(timer.times[WARM_UP:]))

    ideal = flops / square
    result = {
        "preset": args.preset,
        "torch_threads": torch.get_num_threads(),
        "flops_per_iteration": flops,
        "gemm_size": args.gemm,
        "square_gemm_gflops": square / 1e9,
        "iteration_s": iteration,
        "ideal_s_at_square_gemm_rate": ideal,
        "ratio": iteration / ideal,
        "mm_addmm_flops_per_iteration": own_flops,
        "own_shapes_replayed_s": own_time,
        "own_shapes_gflops": own_flops / own_time / 1e9 if own_time else None,
        "matmul_shapes_per_iteration": {
            f"{m}x{k}x{n}": c / args.count for (m, k, n), c in shapes.shapes.most_common()
        },
        "machine": {"processor": platform.processor() or platform.machine()},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"flops_{args.preset}.json").write_text(json.dumps(result, indent=2))
    print(
        f"FLOPs per iteration ({args.preset}): {flops / 1e9:.3f} GFLOP "
        f"(matmuls, forward + backward, discriminator steps included)\n"
        f"square {args.gemm}^3 float32 GEMM, {torch.get_num_threads()} thread(s): "
        f"{square / 1e9:.1f} GFLOP/s -> ideal {ideal * 1e3:.1f} ms per iteration\n"
        f"the iteration's own matmul shapes replayed alone: {own_time * 1e3:.1f} ms "
        f"({result['own_shapes_gflops']:.1f} GFLOP/s)\n"
        f"measured: {iteration * 1e3:.1f} ms per iteration (median of {args.iterations})\n"
        f"ratio measured / ideal: {iteration / ideal:.2f} (bar: 1.5)"
    )


if __name__ == "__main__":
    main()
