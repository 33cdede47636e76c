"""Time to quality: SCMODAL's quality along training, per preset, dataset and seed.

EVALUATION.md protocol with the pairing hidden (``hide_pairing``, shuffled or two halves).
Every ``--every`` iterations the run records label-transfer accuracy (1-NN, both directions,
mean, macro-F1), symmetric Euclidean FOSCTTM and the MaxFuse-convention FOSCTTM, with the
training wall time so far (evaluation excluded). Each preset gets the linked features that go
with it (``LINK_SETTINGS``). One JSON per run goes to ``benchmarks/results/time_to_quality/``.

``--summarize`` reads those files and answers issue 5's question: at which iteration and wall
time does the default preset first reach the reference preset's final label transfer and
FOSCTTM (each within ``--tolerance``, medians over seeds), as a fraction of the reference's
wall time. It writes ``results/time_to_quality.md``.

Usage:
    python benchmarks/time_to_quality.py --dataset hao --presets reference --seeds 0 1 2
    python benchmarks/time_to_quality.py --dataset pbmc10k --presets default --seeds 0 --every 500
    python benchmarks/time_to_quality.py --summarize
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"

# pp settings that go with each preset: the reference links are unsmoothed and normalised
# on the linked block; scmosaic's default links are library-normalised and kNN-smoothed.
LINK_SETTINGS = {
    "reference": {"normalization": "reference", "smooth_neighbors": 0},
    "default": {},
}


def prepare(dataset: str, options, mode: str = "shuffle"):
    """The data with the pairing hidden, linked with the preset's settings and preprocessed."""
    import dataclasses

    from _data import load

    import scmosaic
    from scmosaic import workflow

    options = dataclasses.replace(options, link_kwargs=LINK_SETTINGS[options.preset])
    mdata = load(dataset)
    if mode != "unpaired":  # truly unpaired data (sln) have no pairing to hide
        mdata = scmosaic.datasets.hide_pairing(mdata, mode=mode, seed=options.seed)
    linked = workflow.link(mdata, options)
    mdata = workflow.preprocess(mdata, options)
    return mdata, linked, options


def evaluate(model, mdata, labels_key: str, paired: bool = True) -> dict:
    import scmosaic
    from scmosaic.metrics import foscttm, foscttm_maxfuse, label_transfer_accuracy

    latent = model.get_latent_representation()
    rna, adt = mdata["rna"], mdata["adt"]
    acc = label_transfer_accuracy(
        latent["rna"],
        rna.obs[labels_key].to_numpy(),
        latent["adt"],
        adt.obs[labels_key].to_numpy(),
    )
    out = {
        "label_transfer_rna_to_adt": acc["a_to_b"],
        "label_transfer_adt_to_rna": acc["b_to_a"],
        "label_transfer_mean": acc["mean"],
        "macro_f1": acc["macro_f1"],
    }
    if paired:
        order = scmosaic.datasets.pairing_order(mdata, "rna", "adt")
        out["foscttm_symmetric_euclidean"] = foscttm(latent["rna"], latent["adt"][order])
        out["foscttm_maxfuse"] = foscttm_maxfuse(latent["rna"], latent["adt"][order])
    return out


def trajectory_callback(model, mdata, labels_key: str, every: int, paired: bool):
    """A Lightning callback that evaluates every ``every`` iterations (outside the timer)."""
    from lightning.pytorch.callbacks import Callback

    class Trajectory(Callback):
        def __init__(self):
            self.records: list[dict] = []
            self.train_seconds = 0.0
            self._t = 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self._t = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.train_seconds += time.perf_counter() - self._t
            self._t = None
            if pl_module.n_iterations % every == 0:
                self.record(pl_module)

        def on_train_end(self, trainer, pl_module):
            if self._t is not None:  # stopped inside an epoch (max_steps not a multiple of it)
                self.train_seconds += time.perf_counter() - self._t
            if not self.records or self.records[-1]["iteration"] != pl_module.n_iterations:
                self.record(pl_module)

        def record(self, pl_module):
            rec = {"iteration": pl_module.n_iterations, "train_seconds": self.train_seconds}
            rec.update(evaluate(model, mdata, labels_key, paired))
            pl_module.module.train()
            self.records.append(rec)
            print(json.dumps(rec), flush=True)

    return Trajectory()


def run(args) -> None:
    import mudata
    import torch
    from _data import LABELS, workflow_options

    from scmosaic import workflow

    mudata.set_options(pull_on_update=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for preset in args.presets:
        for seed in args.seeds:
            options = workflow_options(
                args.dataset, preset=preset, seed=seed, max_steps=args.steps, threads=args.threads
            )
            mdata, linked, options = prepare(args.dataset, options, args.mode)
            model = workflow.build_model(mdata, linked, options)
            traj = trajectory_callback(
                model, mdata, LABELS[args.dataset], args.every, paired=args.mode == "shuffle"
            )
            workflow.fit(model, options, callbacks=[traj])
            record = {
                "dataset": args.dataset,
                "preset": preset,
                "seed": seed,
                "mode": args.mode,
                "threads": args.threads,
                "torch_threads": torch.get_num_threads(),
                "device": platform.processor() or platform.machine(),
                **traj.records[-1],
                "trajectory": traj.records,
            }
            name = f"{args.dataset}_{preset}_{args.mode}_seed{seed}.json"
            (out / name).write_text(json.dumps(record, indent=2))


# ---------------------------------------------------------------------------- summary

METRICS = {"label_transfer_mean": +1, "foscttm_symmetric_euclidean": -1}


def first_reaching(trajectories: list[list[dict]], target: dict, tol: float) -> dict | None:
    """First checkpoint where the median over seeds is within ``tol`` of ``target`` (or better)."""
    common = sorted(set.intersection(*({r["iteration"] for r in t} for t in trajectories)))
    for it in common:
        recs = [next(r for r in t if r["iteration"] == it) for t in trajectories]
        med = {m: float(np.median([r[m] for r in recs])) for m in METRICS}
        if all(sign * (med[m] - target[m]) >= -tol for m, sign in METRICS.items()):
            seconds = float(np.median([r["train_seconds"] for r in recs]))
            return {"iteration": it, "train_seconds": seconds, **med}
    return None


def summarize(folder: Path, tol: float) -> str:
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    lines = [
        "| data | preset | seeds | iterations | train wall time (s, median) | label transfer "
        "| FOSCTTM (symmetric) | FOSCTTM (MaxFuse-style) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdict = []
    for dataset in sorted({r["dataset"] for r in runs}):
        final = {}
        for preset in ("reference", "default"):
            rs = [r for r in runs if r["dataset"] == dataset and r["preset"] == preset]
            if not rs:
                continue
            med = {  # unpaired data (sln) have no FOSCTTM
                k: float(np.median([r.get(k, np.nan) for r in rs]))
                for k in ("iteration", "train_seconds", *METRICS, "foscttm_maxfuse")
            }
            final[preset] = (rs, med)
            lines.append(
                f"| {dataset} | {preset} | {len(rs)} | {med['iteration']:.0f} "
                f"| {med['train_seconds']:.0f} | {med['label_transfer_mean']:.3f} "
                f"| {med['foscttm_symmetric_euclidean']:.3f} | {med['foscttm_maxfuse']:.3f} |"
            )
        if len(final) < 2:
            continue
        ref_runs, ref = final["reference"]
        def_runs, default = final["default"]
        hit = first_reaching([r["trajectory"] for r in def_runs], ref, tol)
        if hit is None:
            verdict.append(f"- {dataset}: the default preset never reached the reference's final.")
            continue
        verdict.append(
            f"- {dataset}: the reference ends at label transfer {ref['label_transfer_mean']:.3f}, "
            f"FOSCTTM {ref['foscttm_symmetric_euclidean']:.3f} after "
            f"{ref['train_seconds']:.0f} s; the default preset is within {tol} of both (or "
            f"better) at iteration {hit['iteration']} ({hit['label_transfer_mean']:.3f}, "
            f"{hit['foscttm_symmetric_euclidean']:.3f}) after {hit['train_seconds']:.0f} s, "
            f"{100 * hit['train_seconds'] / ref['train_seconds']:.1f}% of the reference's time; "
            f"its full run ({default['iteration']:.0f} iterations, "
            f"{default['train_seconds']:.0f} s) is "
            f"{100 * default['train_seconds'] / ref['train_seconds']:.1f}%."
        )
    return "\n".join(lines + [""] + verdict) + "\n"


def plot(folder: Path, path: Path) -> None:
    """Label transfer and FOSCTTM against training wall time, every run, per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    datasets = sorted({r["dataset"] for r in runs})
    fig, axes = plt.subplots(2, len(datasets), figsize=(5 * len(datasets), 7), squeeze=False)
    colours = {"reference": "tab:grey", "default": "tab:blue"}
    for col, dataset in enumerate(datasets):
        for run in (r for r in runs if r["dataset"] == dataset):
            t = [r["train_seconds"] for r in run["trajectory"]]
            for row, metric in enumerate(METRICS):
                axes[row, col].plot(  # unpaired data (sln) have no FOSCTTM: NaN, not drawn
                    t,
                    [r.get(metric, np.nan) for r in run["trajectory"]],
                    marker=".",
                    color=colours[run["preset"]],
                    label=f"{run['preset']} (seed {run['seed']})",
                    alpha=0.8,
                )
        axes[0, col].set_title(dataset)
        axes[0, col].set_ylabel("label transfer (1-NN, mean)")
        axes[1, col].set_ylabel("FOSCTTM (symmetric)")
        axes[1, col].set_xlabel("training wall time (s, 1 CPU thread)")
        for ax in axes[:, col]:
            ax.set_xscale("log")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="hao", choices=["hao", "pbmc10k", "sln"])
    parser.add_argument("--presets", nargs="+", default=["default", "reference"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument(
        "--mode", default="shuffle", choices=["shuffle", "halves", "unpaired"], help="sln: unpaired"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "time_to_quality"))
    parser.add_argument("--summarize", action="store_true")
    parser.add_argument("--tolerance", type=float, default=0.01)
    args = parser.parse_args()
    if args.summarize:
        text = summarize(Path(args.out), args.tolerance)
        (RESULTS / "time_to_quality.md").write_text(text)
        plot(Path(args.out), RESULTS / "time_to_quality.png")
        print(text)
    else:
        run(args)


if __name__ == "__main__":
    main()
