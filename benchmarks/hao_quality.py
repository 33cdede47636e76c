"""SCMODAL quality on the bundled Hao 2021 subset (EVALUATION.md protocol, pairing hidden).

Trains with the given preset(s) and seeds and records, every ``--every`` iterations,
label-transfer accuracy (1-NN, both directions, mean, macro-F1), symmetric Euclidean FOSCTTM
and the MaxFuse-convention FOSCTTM, with wall time. Writes one JSON per run to
``benchmarks/results/hao_quality/`` and prints a markdown table of the final values.

Usage: python benchmarks/hao_quality.py --presets default reference --seeds 0 1 2 --steps 10000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mudata
import numpy as np
import scvi
from lightning.pytorch.callbacks import Callback

import scmosaic
from scmosaic.metrics import foscttm, foscttm_maxfuse, label_transfer_accuracy

# pp settings that go with each preset: the reference links are unsmoothed and normalised
# on the linked block; scmosaic's default links are library-normalised and kNN-smoothed.
LINK_SETTINGS = {
    "reference": {"normalization": "reference", "smooth_neighbors": 0},
    "default": {},
}


def prepare(preset: str, seed: int, mode: str = "shuffle"):
    mdata = scmosaic.datasets.hide_pairing(
        scmosaic.datasets.hao2021_pbmc_cite(), mode=mode, seed=seed
    )
    scmosaic.pp.link_features(mdata, "adt", "rna", **LINK_SETTINGS[preset])
    mdata = scmosaic.pp.preprocess(mdata)
    scmosaic.SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=[("rna", "adt")])
    return mdata


def evaluate(model, mdata, paired: bool = True) -> dict:
    latent = model.get_latent_representation()
    rna, adt = mdata["rna"], mdata["adt"]
    acc = label_transfer_accuracy(
        latent["rna"], rna.obs["celltype"].to_numpy(), latent["adt"], adt.obs["celltype"].to_numpy()
    )
    out = {
        "label_transfer_rna_to_adt": acc["a_to_b"],
        "label_transfer_adt_to_rna": acc["b_to_a"],
        "label_transfer_mean": acc["mean"],
        "macro_f1": acc["macro_f1"],
    }
    if paired:
        partner = {c: i for i, c in enumerate(adt.obs["cell_id"])}
        order = np.array([partner[c] for c in rna.obs["cell_id"]])
        out["foscttm_symmetric_euclidean"] = foscttm(latent["rna"], latent["adt"][order])
        out["foscttm_one_sided_euclidean"] = foscttm(
            latent["rna"], latent["adt"][order], symmetric=False
        )
        out["foscttm_maxfuse"] = foscttm_maxfuse(latent["rna"], latent["adt"][order])
    return out


class Trajectory(Callback):
    def __init__(self, model, mdata, every: int, paired: bool):
        self.model, self.mdata, self.every, self.paired = model, mdata, every, paired
        self.records: list[dict] = []
        self.train_seconds = 0.0
        self._t = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.train_seconds += time.perf_counter() - self._t
        it = pl_module.n_iterations
        if it % self.every == 0:
            rec = {"iteration": it, "train_seconds": self.train_seconds}
            rec.update(evaluate(self.model, self.mdata, self.paired))
            pl_module.module.train()
            self.records.append(rec)
            print(json.dumps(rec), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", nargs="+", default=["default", "reference"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--mode", default="shuffle", choices=["shuffle", "halves"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "hao_quality"))
    args = parser.parse_args()
    mudata.set_options(pull_on_update=False)
    scvi.settings.num_threads = args.threads
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for preset in args.presets:
        for seed in args.seeds:
            mdata = prepare(preset, seed, args.mode)
            model = scmosaic.SCMODAL(mdata, preset=preset, seed=seed)
            traj = Trajectory(model, mdata, args.every, paired=args.mode == "shuffle")
            model.train(max_steps=args.steps, enable_progress_bar=False, callbacks=[traj])
            final = {"preset": preset, "seed": seed, "mode": args.mode, **traj.records[-1]}
            record = {**final, "trajectory": traj.records}
            name = f"{preset}_{args.mode}_seed{seed}_steps{final['iteration']}.json"
            (out / name).write_text(json.dumps(record, indent=2))
            rows.append(final)
    keys = [k for k in rows[0] if k not in ("preset", "seed", "mode")]
    print("| preset | seed | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for r in rows:
        vals = " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys)
        print(f"| {r['preset']} | {r['seed']} | {vals} |")


if __name__ == "__main__":
    main()
