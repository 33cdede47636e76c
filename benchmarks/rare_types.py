"""Why rare cell types blur (issue 17, item 1): anchor precision per cell type.

SCMODAL's anchor term pulls together mutual nearest neighbours (cosine, ``k`` =
``n_neighbors_mnn``) of the linked features within each minibatch (500 cells per modality
in both presets). A type with ``n`` cells per minibatch has at most ``n`` true partners
there, so a cell of a rare type (SLN's pDCs: about 2 per minibatch) with ``k = 30`` has
mostly partners of other types; its anchors then pull it into a large neighbouring
population. This script measures that directly, without training: the linked features of
the README workflow (``scmosaic.workflow.link`` + ``preprocess``), minibatches drawn as in
training (500 + 500 cells without replacement, 30 draws per seed), mutual nearest pairs by
:func:`scmosaic.pp.mutual_nearest_pairs` for several rules (``k`` = 30, 10, 5, and
``k`` = 30 with local anchors first, ``n_neighbors_local`` = 5), and per type the fraction of
anchor pairs touching that type whose two cells share the label (precision) and the number
of such pairs per minibatch; also each type's 1-NN label transfer on the linked features
alone, to show whether the linked features separate the type at all.

Datasets: the Hao subset (pairing hidden, shuffled), PBMC 10k (shuffled; main and fine
labels), SLN (unpaired; coarse labels). Seeds 0-2.

``--train`` then trains SCMODAL through the README workflow (default preset, early stopping,
one CPU thread) with each ``--k`` and the preset's other settings unless ``--local-k``,
``--batch-size`` or ``--n-hidden`` (encoders, decoders and discriminators) say otherwise,
and scores 1-NN label transfer (both directions), macro-F1 and each type's F1 (mean of both
directions), and FOSCTTM where the pairing is known. Each trained run's JSON records its
settings; the tables list every configuration found, the preset's first.

Usage:
    python benchmarks/rare_types.py --seeds 0 1 2            # anchors only (a minute)
    python benchmarks/rare_types.py --train --seeds 0 1 2 --jobs 2          # k = 30, 10, 5
    python benchmarks/rare_types.py --train --k 30 --local-k 0 --jobs 2     # without local anchors
    python benchmarks/rare_types.py --report
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from _common import launch_all, update_readme
from _data import workflow_options
from compare import cell, unpaired_data

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "rare_types"
DATASETS = {
    "hao": ["celltype"],
    "pbmc10k": ["label_main_rna", "label_fine_rna"],
    "sln": ["coarse_type"],
}
# (k, local k) of the anchor rules scored without training; keyed "30", ..., "30/5"
ANCHOR_RULES = ((30, 0), (10, 0), (5, 0), (30, 5))


def rule_key(k: int, local_k: int) -> str:
    return f"{k}/{local_k}" if local_k else str(k)


def rule_name(k: int, local_k: int) -> str:
    return f"k={k}, local k={local_k}" if local_k else f"k={k}"


TRAIN_K = (30, 10, 5)
BATCH = 500


class Config(NamedTuple):
    """What a trained run changed: ``n_neighbors_mnn``, cells per minibatch, hidden units
    (encoders, decoders, discriminators) and ``n_neighbors_mnn_local``."""

    k: int
    batch_size: int
    n_hidden: int
    local_k: int


def preset_config() -> Config:
    from scmosaic.model import PRESETS

    module, train = PRESETS["default"].module, PRESETS["default"].train
    return Config(
        module.n_neighbors_mnn, train.batch_size, module.n_hidden, module.n_neighbors_mnn_local
    )


# runs recorded before a setting was varied ran with these values
RECORDED_BEFORE = {"batch_size": 500, "n_hidden": 512, "local_k": 0}
DRAWS = 30


def prepared(dataset: str, seed: int):
    """The README workflow's link and preprocessing on ``dataset`` (pairing hidden by
    shuffling where it is known): the preprocessed MuData and the link step's result."""
    from scmosaic import workflow

    mdata = unpaired_data(dataset, "unpaired" if dataset == "sln" else "shuffle", seed)
    options = workflow_options(dataset, seed=seed)
    linked = workflow.link(mdata, options)
    return workflow.preprocess(mdata, options), linked


def linked_features(dataset: str, seed: int):
    """The workflow's linked features of both modalities and the data they belong to."""
    processed, linked = prepared(dataset, seed)
    a, b = linked.modalities
    keys = linked.info["obsm_keys"]
    return processed, (a, b), (processed[a].obsm[keys[a]], processed[b].obsm[keys[b]])


def labels_of(adata, key: str) -> np.ndarray:
    return np.array([v if isinstance(v, str) else None for v in adata.obs[key]], dtype=object)


def per_type(la, lb, ia, ib, types) -> dict[str, list[float]]:
    """type -> [precision of the pairs touching it, their count]."""
    pa, pb = la[ia], lb[ib]
    both = np.array([x is not None and y is not None for x, y in zip(pa, pb, strict=True)])
    out = {}
    for t in types:
        touch = both & ((pa == t) | (pb == t))
        out[t] = [float((pa[touch] == pb[touch]).mean()) if touch.any() else float("nan"),
                  int(touch.sum())]  # fmt: skip
    return out


def run(dataset: str, seed: int) -> dict:
    from scmosaic.metrics import label_transfer_accuracy
    from scmosaic.pp import mutual_nearest_pairs

    processed, (a, b), (p_a, p_b) = linked_features(dataset, seed)
    p_a, p_b = np.asarray(p_a, dtype=np.float32), np.asarray(p_b, dtype=np.float32)
    record = {"dataset": dataset, "seed": seed, "labels": {}}
    rng = np.random.default_rng(seed)
    draws = [
        (rng.choice(len(p_a), min(BATCH, len(p_a)), replace=False),
         rng.choice(len(p_b), min(BATCH, len(p_b)), replace=False))
        for _ in range(DRAWS)
    ]  # fmt: skip
    for key in DATASETS[dataset]:
        la, lb = labels_of(processed[a], key), labels_of(processed[b], key)
        types = sorted({t for t in la if t is not None} | {t for t in lb if t is not None})
        transfer = label_transfer_accuracy(p_a, la, p_b, lb)
        result = {
            "cells_per_minibatch": {
                t: float(BATCH * ((la == t).mean() + (lb == t).mean()) / 2) for t in types
            },
            "linked_label_transfer": float(transfer["mean"]),
            "linked_macro_f1": float(transfer["macro_f1"]),
            "anchors": {},
        }
        for k, local_k in ANCHOR_RULES:
            pairs = [
                mutual_nearest_pairs(p_a[ia], p_b[ib], k, n_neighbors_local=local_k)[:2]
                for ia, ib in draws
            ]
            ia = np.concatenate([ia[i] for (ia, _), (i, _) in zip(draws, pairs, strict=True)])
            ib = np.concatenate([ib[j] for (_, ib), (_, j) in zip(draws, pairs, strict=True)])
            stats = per_type(la, lb, ia, ib, types)
            # fraction of a minibatch's cells (both modalities) with at least one anchor
            anchored = [
                (len(np.unique(i)) + len(np.unique(j))) / (len(da) + len(db))
                for (da, db), (i, j) in zip(draws, pairs, strict=True)
            ]
            both = np.array(
                [x is not None and y is not None for x, y in zip(la[ia], lb[ib], strict=True)]
            )
            result["anchors"][rule_key(k, local_k)] = {
                "precision": float((la[ia][both] == lb[ib][both]).mean()),
                "pairs_per_minibatch": float(len(ia) / DRAWS),
                "cells_anchored": float(np.mean(anchored)),
                "per_type": {t: [p, n / DRAWS] for t, (p, n) in stats.items()},
            }
        record["labels"][key] = result
    return record


def train(dataset: str, seed: int, config: Config) -> dict:
    """Per-type label transfer of SCMODAL (default preset but for ``config``)."""
    import scvi
    import torch
    from sklearn.metrics import f1_score
    from sklearn.neighbors import NearestNeighbors

    import scmosaic
    from scmosaic import workflow
    from scmosaic.metrics import foscttm, label_transfer_accuracy

    torch.set_num_threads(1)
    processed, linked = prepared(dataset, seed)
    scvi.settings.seed = seed
    scmosaic.SCMODAL.setup_mudata(
        processed, modalities=list(linked.modalities), links=[linked.spec]
    )
    model = scmosaic.SCMODAL(
        processed,
        seed=seed,
        n_neighbors_mnn=config.k,
        n_hidden=config.n_hidden,
        n_hidden_discriminator=config.n_hidden,
        n_neighbors_mnn_local=config.local_k,
    )
    seconds = workflow.fit(
        model, workflow_options(dataset, seed=seed), batch_size=config.batch_size
    )
    latent = model.get_latent_representation()
    a, b = linked.modalities
    record = {"dataset": dataset, **config._asdict(), "seed": seed, "seconds": seconds,
              "iterations": model.n_iterations_trained_, "labels": {}}  # fmt: skip
    if dataset != "sln":
        order = scmosaic.datasets.pairing_order(processed, a, b)
        record["foscttm"] = float(foscttm(latent[a], latent[b][order]))
    for key in DATASETS[dataset]:
        la, lb = labels_of(processed[a], key), labels_of(processed[b], key)
        acc = label_transfer_accuracy(latent[a], la, latent[b], lb)
        types = sorted({t for t in la if t is not None} | {t for t in lb if t is not None})
        f1 = []  # per type, a -> b then b -> a
        for (z_ref, y_ref), (z_query, y_query) in (
            ((latent[a], la), (latent[b], lb)),
            ((latent[b], lb), (latent[a], la)),
        ):
            known = np.array([y is not None for y in y_query])
            nearest = NearestNeighbors(n_neighbors=1).fit(z_ref).kneighbors(z_query[known])[1]
            predicted = y_ref[nearest[:, 0]].astype(str)
            truth = y_query[known].astype(str)
            f1.append(f1_score(truth, predicted, labels=types, average=None, zero_division=0))
        record["labels"][key] = {
            "label_transfer": float(acc["mean"]),
            "macro_f1": float(acc["macro_f1"]),
            "f1_per_type": {t: float(v) for t, v in zip(types, (f1[0] + f1[1]) / 2, strict=True)},
        }
    return record


def report(runs: list[dict]) -> str:
    lines = []
    for dataset, keys in DATASETS.items():
        for key in keys:
            rs = [r["labels"][key] for r in runs if r["dataset"] == dataset]
            if not rs:
                continue
            types = sorted(
                rs[0]["cells_per_minibatch"], key=lambda t: rs[0]["cells_per_minibatch"][t]
            )
            rules = [r for r in ANCHOR_RULES if all(rule_key(*r) in x["anchors"] for x in rs)]
            keys_ = [rule_key(*r) for r in rules]
            lines += [
                f"### {dataset}, `{key}` ({len(rs)} seeds; medians)",
                "",
                "| type | cells per minibatch | "
                + " | ".join(f"anchor precision {rule_name(*r)} (pairs)" for r in rules)
                + " |",
                "|---|---|" + "---|" * len(rules),
            ]
            for t in types:
                cells = [
                    "{:.2f} ({:.0f})".format(
                        np.nanmedian([r["anchors"][key_]["per_type"][t][0] for r in rs]),
                        np.median([r["anchors"][key_]["per_type"][t][1] for r in rs]),
                    )
                    for key_ in keys_
                ]
                n = np.median([r["cells_per_minibatch"][t] for r in rs])
                lines.append(f"| {t} | {n:.1f} | " + " | ".join(cells) + " |")
            overall = [
                "{:.3f} ({:.0f})".format(
                    np.median([r["anchors"][key_]["precision"] for r in rs]),
                    np.median([r["anchors"][key_]["pairs_per_minibatch"] for r in rs]),
                )
                for key_ in keys_
            ]
            lines.append("| all | – | " + " | ".join(overall) + " |")
            if all("cells_anchored" in r["anchors"][key_] for r in rs for key_ in keys_):
                anchored = [
                    f"{np.median([r['anchors'][key_]['cells_anchored'] for r in rs]):.2f}"
                    for key_ in keys_
                ]
                lines.append("| cells with an anchor | – | " + " | ".join(anchored) + " |")
            lines.append("")
            linked = np.median([r["linked_label_transfer"] for r in rs])
            f1 = np.median([r["linked_macro_f1"] for r in rs])
            lines += [
                f"1-NN label transfer on the linked features alone: {linked:.3f} (macro-F1 {f1:.3f}).",
                "",
            ]
    return "\n".join(lines)


def config(run: dict) -> Config:
    """The configuration of a trained run."""
    return Config(**{f: run.get(f, RECORDED_BEFORE.get(f)) for f in Config._fields})


def configs(runs: list[dict]) -> list[Config]:
    """The trained configurations, the preset's first."""
    default = preset_config()
    return sorted(
        {config(r) for r in runs},
        key=lambda c: (c != default, -c.n_hidden, c.local_k, c.batch_size, -c.k),
    )


def describe(c: Config) -> str:
    """``k`` with what differs from the preset (README table)."""
    default = preset_config()
    extra = [f"batch {c.batch_size}"] * (c.batch_size != default.batch_size)
    extra += [f"{c.n_hidden} units"] * (c.n_hidden != default.n_hidden)
    extra += [f"local k {c.local_k}"] * (c.local_k != default.local_k)
    return ", ".join([str(c.k), *extra]) + (" (default)" if c == default else "")


def train_report(runs: list[dict]) -> str:
    """Default k against each other k: label transfer, macro-F1, FOSCTTM, F1 per type."""
    lines = []
    for dataset, keys in DATASETS.items():
        for key in keys:
            by_k = {
                c: [r for r in runs if r["dataset"] == dataset and config(r) == c]
                for c in configs(runs)
            }
            by_k = {c: rs for c, rs in by_k.items() if rs}
            if not by_k:
                continue
            types = list(next(iter(by_k.values()))[0]["labels"][key]["f1_per_type"])
            header = ["n_neighbors_mnn", "batch size", "hidden units", "local k", "seeds"]
            header += ["iterations"]
            header += ["train (s)", "label transfer"]
            header += ["macro-F1"]
            header += ["FOSCTTM"] if dataset != "sln" else []
            lines += [
                f"### {dataset}, `{key}`: trained (medians [min-max] of the seeds)",
                "",
                "| " + " | ".join(header + types) + " |",
                "|" + "---|" * (len(header) + len(types)),
            ]
            for c, rs in by_k.items():
                row = [*map(str, c), str(len(rs))]
                row += [cell([r[f] for r in rs], 0) for f in ("iterations", "seconds")]
                row += [
                    cell([r["labels"][key][m] for r in rs], 3)
                    for m in ("label_transfer", "macro_f1")
                ]
                row += [cell([r["foscttm"] for r in rs], 3)] if dataset != "sln" else []
                row += [
                    f"{np.median([r['labels'][key]['f1_per_type'][t] for r in rs]):.2f}"
                    for t in types
                ]
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    return "\n".join(lines)


README_KEYS = {"hao": "celltype", "pbmc10k": "label_main_rna", "sln": "coarse_type"}
README_NAMES = {"hao": "Hao subset", "pbmc10k": "PBMC 10k", "sln": "mouse SLN"}


def readme_table(anchor_runs: list[dict], runs: list[dict]) -> str:
    """Per dataset and k: label transfer, macro-F1, FOSCTTM and the rarest type's F1
    ("other", a mixed bag, is not a type)."""
    lines = [
        "| data | k (minibatch) | label transfer | macro-F1 | FOSCTTM | rarest type | its F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, key in README_KEYS.items():
        sizes = [
            r["labels"][key]["cells_per_minibatch"] for r in anchor_runs if r["dataset"] == dataset
        ]
        if not sizes:
            continue
        rarest = min((t for t in sizes[0] if t != "other"), key=lambda t: sizes[0][t])
        for c in configs(runs):
            rs = [r for r in runs if r["dataset"] == dataset and config(r) == c]
            if not rs:
                continue
            fos = np.median([r["foscttm"] for r in rs]) if "foscttm" in rs[0] else None
            row = [
                README_NAMES[dataset],
                describe(c),
                f"{np.median([r['labels'][key]['label_transfer'] for r in rs]):.3f}",
                f"{np.median([r['labels'][key]['macro_f1'] for r in rs]):.3f}",
                "–" if fos is None else f"{fos:.3f}",
                f"{rarest} ({sizes[0][rarest]:.1f} per minibatch)",
                f"{np.median([r['labels'][key]['f1_per_type'][rarest] for r in rs]):.2f}",
            ]
            lines.append(
                "| " + " | ".join(row) + (" |" if len(rs) == 3 else f" ({len(rs)} seeds) |")
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train", action="store_true", help="train SCMODAL per k (slow)")
    parser.add_argument("--k", nargs="+", type=int, default=list(TRAIN_K), help="k to train")
    parser.add_argument(
        "--batch-size", type=int, help="cells per modality per minibatch (the preset's)"
    )
    parser.add_argument("--n-hidden", type=int, help="hidden units to train (the preset's)")
    parser.add_argument("--local-k", type=int, help="n_neighbors_mnn_local (the preset's)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel")
    parser.add_argument("--report", action="store_true")
    parser.add_argument(
        "--one",
        nargs=6,
        metavar=("DATASET", "SEED", "K", "BATCH", "HIDDEN", "LOCAL_K"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "train").mkdir(exist_ok=True)
    if args.one:
        dataset, seed, values = args.one[0], int(args.one[1]), map(int, args.one[2:])
        c = Config(*values)
        record = train(dataset, seed, c)
        default = preset_config()
        name = f"{dataset}_k{c.k}"
        name += "" if c.batch_size == default.batch_size else f"_b{c.batch_size}"
        name += "" if c.n_hidden == default.n_hidden else f"_h{c.n_hidden}"
        name += "" if c.local_k == default.local_k else f"_l{c.local_k}"
        (OUT / "train" / f"{name}_seed{seed}.json").write_text(json.dumps(record, indent=1))
        print(f"{dataset} {describe(c)} seed {seed}: done", flush=True)
        return
    if args.train:
        default = preset_config()
        settings = [
            default.batch_size if args.batch_size is None else args.batch_size,
            default.n_hidden if args.n_hidden is None else args.n_hidden,
            default.local_k if args.local_k is None else args.local_k,
        ]
        todo = [
            (d, s, *Config(k, *settings)) for d in args.datasets for s in args.seeds for k in args.k
        ]
        launch_all(__file__, todo, args.jobs)
    elif not args.report:
        for dataset in args.datasets:
            for seed in args.seeds:
                record = run(dataset, seed)
                (OUT / f"{dataset}_seed{seed}.json").write_text(json.dumps(record, indent=1))
                print(f"{dataset} seed {seed}: done", flush=True)
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    trained = [json.loads(p.read_text()) for p in sorted((OUT / "train").glob("*.json"))]
    text = report(runs) + "\n" + train_report(trained)
    if trained:
        update_readme("rare_types", readme_table(runs, trained))
    (RESULTS / "rare_types.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
