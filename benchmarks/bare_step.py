"""One training iteration through scvi-tools and Lightning against a bare PyTorch loop.

Issue 15 asks how far a default-preset iteration is from the cost of its own arithmetic
issued with nothing around it. In one process, on the Hao subset or PBMC 10k (pairing
hidden, the README workflow's links and preprocessing):

1. **Framework**: ``model.train(max_steps=N)`` for ``N = --short`` and ``N = --long``
   iterations (fixed length, so no early-stopping checks); the iteration cost is
   ``(T(long) - T(short)) / (long - short)``, so Lightning's start-up cancels while per-epoch
   logging, data loading and host-to-device copies stay in.
2. **Bare loop**: the same module (same shapes, same loss terms, the same two Adam
   optimisers and gradient clipping of the training plan) driven by a plain ``for`` loop over
   minibatches that were drawn by the model's own data loader and moved to the device
   before timing: no Lightning, no data loading, no logging. ``--compile`` also times the
   loop with the module's loss under ``torch.compile`` (worth it on a GPU; slow to compile on
   a CPU).

Ratio = framework / bare. Issue 15's bar on a GPU: at most 2. On a GPU every timed region
ends with ``torch.cuda.synchronize()``.

Usage: python benchmarks/bare_step.py [--dataset hao|pbmc10k] [--accelerator cpu|gpu]
[--threads 1] [--short 50] [--long 250] [--compile]. Writes
``results/bare_step_<dataset>_<cpu|gpu>.json`` and prints the numbers.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import mudata
import torch
from _data import load, workflow_options
from compare import device_name
from lightning.pytorch.callbacks import Callback

import scmosaic
from scmosaic import workflow

N_DRAWN = 50  # minibatches kept for the bare loop (cycled)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class KeepBatches(Callback):
    """Keeps the first ``n`` minibatches as the training step receives them."""

    def __init__(self, n: int):
        self.n, self.batches = n, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if len(self.batches) < self.n:
            self.batches.append(batch)


def bare_iterations(module, batches, n: int, plan_settings: dict, step_fn=None) -> float:
    """Seconds per iteration of the training plan's step written as a plain loop."""
    module = copy.deepcopy(module).train()
    adam = dict(lr=plan_settings["lr"], weight_decay=plan_settings["weight_decay"])
    gen, disc = module.generator_parameters(), module.discriminator_parameters()
    opt_g, opt_d = torch.optim.Adam(gen, **adam), torch.optim.Adam(disc, **adam)

    def step(batch):
        inference = module.inference(x=batch.x, batch=batch.batch)
        for _ in range(plan_settings["n_critic"]):
            loss_d = module.discriminator_loss(inference["z"], batch.batch)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        for p in disc:  # what Lightning's toggle_optimizer does
            p.requires_grad_(False)
        generative = module.generative(z=inference["z"], batch=batch.batch)
        loss = module.loss(batch, inference, generative).loss
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        if plan_settings["gradient_clip_norm"]:
            torch.nn.utils.clip_grad_norm_(gen, plan_settings["gradient_clip_norm"])
        opt_g.step()
        for p in disc:
            p.requires_grad_(True)

    step = step_fn(step) if step_fn else step
    for i in range(10):  # warm-up (and compilation)
        step(batches[i % len(batches)])
    synchronize()
    start = time.perf_counter()
    for i in range(n):
        step(batches[i % len(batches)])
    synchronize()
    return (time.perf_counter() - start) / n


def framework_seconds(mdata, linked, options, n: int) -> float:
    model = workflow.build_model(mdata, linked, dataclasses.replace(options, max_steps=n))
    synchronize()
    start = time.perf_counter()
    workflow.fit(model, dataclasses.replace(options, max_steps=n))
    synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="hao", choices=["hao", "pbmc10k"])
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--short", type=int, default=50)
    parser.add_argument("--long", type=int, default=250)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    mudata.set_options(pull_on_update=False)
    options = workflow_options(
        args.dataset, threads=args.threads, accelerator=args.accelerator, seed=0
    )
    mdata = scmosaic.datasets.hide_pairing(load(args.dataset))
    linked = workflow.link(mdata, options)
    mdata = workflow.preprocess(mdata, options)

    # 1. framework: the difference of two fixed-length runs
    short = framework_seconds(mdata, linked, options, args.short)
    long = framework_seconds(mdata, linked, options, args.long)
    framework = (long - short) / (args.long - args.short)

    # 2. bare loop on minibatches the model's own loader drew, already on the device
    keep = KeepBatches(N_DRAWN)
    model = workflow.build_model(mdata, linked, dataclasses.replace(options, max_steps=N_DRAWN))
    workflow.fit(model, dataclasses.replace(options, max_steps=N_DRAWN), callbacks=[keep])
    train = scmosaic.model.PRESETS[options.preset].train
    settings = {f: getattr(train, f) for f in ("lr", "weight_decay", "n_critic")}
    settings["gradient_clip_norm"] = train.gradient_clip_norm
    n_bare = args.long - args.short
    bare = bare_iterations(model.module, keep.batches, n_bare, settings)
    result = {
        "dataset": args.dataset,
        "preset": options.preset,
        "device": device_name(args.accelerator),
        "torch_threads": torch.get_num_threads(),
        "iterations": [args.short, args.long],
        "framework_s": framework,
        "bare_s": bare,
        "ratio": framework / bare,
    }
    if args.compile:
        compiled = bare_iterations(
            model.module, keep.batches, n_bare, settings, step_fn=torch.compile
        )
        result |= {"bare_compiled_s": compiled, "ratio_to_compiled": framework / compiled}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kind = "gpu" if args.accelerator == "gpu" else "cpu"
    (out / f"bare_step_{args.dataset}_{kind}.json").write_text(json.dumps(result, indent=2))
    print(
        f"{args.dataset}, {result['device']}, {result['torch_threads']} thread(s): "
        f"framework {framework * 1e3:.1f} ms per iteration, bare loop {bare * 1e3:.1f} ms, "
        f"ratio {framework / bare:.2f}"
        + (f"; compiled bare loop {result['bare_compiled_s'] * 1e3:.1f} ms" if args.compile else "")
    )


if __name__ == "__main__":
    main()
