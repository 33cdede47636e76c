"""Time and peak memory of every stage of the README workflow, against the number of cells.

Data: the bundled Hao et al. 2021 subset replicated to ``n`` cells per modality with binomial
thinning, unpaired, raw counts (``scaling.generate``, the generator of
``benchmarks/scaling.py``). Per size, in a fresh subprocess (so peaks do not mix), the
stages a user runs, one after another, each with its defaults:

1. ``link_features``: :func:`scmosaic.pp.link_features` (packaged table, kNN smoothing);
2. ``cca_links``: :func:`scmosaic.pp.cca_links` on the raw counts, ``init="links"``;
3. ``preprocess``: :func:`scmosaic.pp.preprocess` (log-normalisation, HVGs; a new MuData);
4. ``setup``: ``SCMODAL.setup_mudata`` (table links) + ``SCMODAL(mdata)``;
5. ``train``: ``model.train()`` with the default length rule and early stopping;
6. ``latent``: ``model.get_latent_representation(write_obsm=True)``;
7. ``transfer_labels``: :func:`scmosaic.tl.transfer_labels` from RNA to ADT cells.

Neighbour searches use the default ``knn_method="auto"``: exact up to 50,000 cells, a faiss
inverted-file index above. After the ``cca_links`` stage (not timed) the anchor precision of
its scores is measured as in ``benchmarks/cca_scaling.py`` (exact mutual nearest neighbours
of 5,000 random cells per modality), so the approximate search's quality is on record.

Each stage's wall time and the process's peak RSS during it (the kernel's high-water mark is
reset before each stage, so data already resident count) are recorded, with the machine's
threads as a user would have them (no pinning). A size whose subprocess runs past
``--timeout`` seconds is recorded with the stages it finished.

Usage: python benchmarks/workflow_scaling.py [--sizes 10000 100000 1000000] [--timeout 3600]
[--accelerator gpu] [--knn-method exact]. Writes
benchmarks/results/workflow_scaling[_gpu][_exact].{json,md,png} and, on the CPU with the
default search, the README's table (``--knn-method exact`` forces exact search everywhere, for
comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _common import maxrss_gb, reset_peak, update_readme

HERE = Path(__file__).resolve().parent
STAGES = (
    "link_features",
    "cca_links",
    "preprocess",
    "setup",
    "train",
    "latent",
    "transfer_labels",
)


def run_stages(n: int, accelerator: str, knn_method: str = "auto", seed: int = 0):
    """Yield ``(stage, seconds, peak_rss_gb, extra)`` for each stage, in order."""
    import mudata
    from scaling import generate

    import scmosaic

    mudata.set_options(pull_on_update=False)
    mdata = generate(n, seed)
    state: dict = {}

    def link_features():
        scmosaic.pp.link_features(mdata, "adt", "rna", knn_method=knn_method)

    def cca_links():
        cca = scmosaic.pp.cca_links(
            mdata, ("rna", "adt"), init="links", knn_method=knn_method, seed=seed
        )
        return {"n_pivots": cca["n_pivots"]}

    def preprocess():
        state["mdata"] = scmosaic.pp.preprocess(mdata)

    def setup():
        processed = state["mdata"]
        scmosaic.SCMODAL.setup_mudata(processed, modalities=["rna", "adt"], links=[("rna", "adt")])
        state["model"] = scmosaic.SCMODAL(processed, seed=seed)

    def train():
        state["model"].train(accelerator=accelerator, enable_progress_bar=False)
        return {"iterations": int(state["model"].n_iterations_trained_)}

    def latent():
        state["model"].get_latent_representation(write_obsm=True)

    def transfer_labels():
        scmosaic.tl.transfer_labels(state["mdata"], "rna", "adt", "celltype", knn_method=knn_method)

    steps = {
        "link_features": link_features,
        "cca_links": cca_links,
        "preprocess": preprocess,
        "setup": setup,
        "train": train,
        "latent": latent,
        "transfer_labels": transfer_labels,
    }
    for stage in STAGES:
        reset_peak()
        start = time.perf_counter()
        extra = steps[stage]() or {}
        seconds, peak = time.perf_counter() - start, maxrss_gb()
        if stage == "cca_links":  # quality of the scores, after the clock stopped
            from cca_scaling import subsample_anchor_precision

            extra["anchor_precision"] = subsample_anchor_precision(mdata)
        yield stage, seconds, peak, extra


def measure(n: int, accelerator: str, timeout: float, knn_method: str = "auto") -> dict:
    """One size in a subprocess; the stages it finished within ``timeout`` seconds."""
    cmd = [sys.executable, __file__, "--one", str(n), "--accelerator", accelerator]
    cmd += ["--knn-method", knn_method]
    row: dict = {"n_cells_per_modality": n, "stages": {}, "completed": False}
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        out, err, row["completed"] = done.stdout, done.stderr, done.returncode == 0
    except subprocess.TimeoutExpired as stopped:
        out = stopped.stdout.decode() if isinstance(stopped.stdout, bytes) else stopped.stdout
        err = f"stopped after {timeout:.0f} s"
    row["wall_s"] = time.perf_counter() - start
    for line in (out or "").splitlines():
        if line.startswith("STAGE "):
            stage = json.loads(line[6:])
            row["stages"][stage.pop("stage")] = stage
    if not row["completed"]:
        row["error"] = (err or "")[-2000:]
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for stage in STAGES:
        points = [
            (r["n_cells_per_modality"], r["stages"][stage]["seconds"])
            for r in rows
            if stage in r["stages"]
        ]
        if points:
            ax.loglog(*zip(*points, strict=True), "o-", label=stage)
    ax.set_xlabel("cells per modality")
    ax.set_ylabel("seconds")
    ax.set_title("README workflow, time per stage", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: list[dict]) -> str:
    lines = [
        "| cells per modality | " + " | ".join(STAGES) + " | total s | peak RSS GB |",
        "|---|" + "---|" * (len(STAGES) + 2),
    ]
    for r in rows:
        stages = r["stages"]
        cells = [f"{stages[s]['seconds']:.1f}" if s in stages else "not reached" for s in STAGES]
        total = sum(v["seconds"] for v in stages.values())
        peak = max((v["peak_rss_gb"] for v in stages.values()), default=float("nan"))
        lines.append(
            f"| {r['n_cells_per_modality']:,} | " + " | ".join(cells) + f" | {total:.0f}"
            f"{'' if r['completed'] else ' (incomplete)'} | {peak:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per size")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--knn-method", default="auto", choices=["auto", "exact", "approximate"])
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        for stage, seconds, peak, extra in run_stages(args.one, args.accelerator, args.knn_method):
            record = {"stage": stage, "seconds": seconds, "peak_rss_gb": peak, **extra}
            print("STAGE " + json.dumps(record), flush=True)
        return
    rows = []
    for n in args.sizes:
        rows.append(measure(n, args.accelerator, args.timeout, args.knn_method))
        print(json.dumps(rows[-1]), flush=True)
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "workflow_scaling" + ("_gpu" if args.accelerator != "cpu" else "")
    name += "" if args.knn_method == "auto" else f"_{args.knn_method}"
    result = {
        "rows": rows,
        "machine": {
            "processor": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": args.accelerator,
        },
        "knn_method": args.knn_method,
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    text = table(rows)
    (out / f"{name}.md").write_text(
        "# README workflow, time (s) and peak RSS per stage\n\n"
        f"`python benchmarks/workflow_scaling.py`, {platform.machine()} CPU, "
        f"{os.cpu_count()} cores, no thread pinning; device {args.accelerator}; "
        f"knn_method {args.knn_method!r}.\n\n{text}\n"
    )
    plot(rows, out / f"{name}.png")
    default_run = args.accelerator == "cpu" and args.knn_method == "auto"
    if out.resolve() == (HERE / "results").resolve() and default_run:
        update_readme("workflow", text)
    print(text)


if __name__ == "__main__":
    main()
