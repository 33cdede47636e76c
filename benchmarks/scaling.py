"""How SCMODAL's costs grow with the number of cells: 10^3 ... 10^6 cells per modality.

Data generator: the bundled Hao et al. 2021 subset replicated to ``n`` cells per modality
with binomial thinning (``_data.replicate``: cells drawn with replacement, counts
thinned by ``p ~ U(0.8, 1)``, one seed per modality so the two are unpaired), generated in
blocks of 100,000 cells so the generator's own peak stays small. Counts stay float32 CSR;
links are computed from them, then they are log-normalised in place (``normalize_total`` +
``log1p``, sparse); all 500 genes and 224 ADTs are used.

Per size, in a fresh subprocess (so peaks do not mix):

- ``links_s``: :func:`scmosaic.pp.link_features` (packaged table, no kNN smoothing);
- ``setup_s``: ``SCMODAL.setup_mudata`` + ``SCMODAL(...)`` (feature statistics, chunked);
- ``iteration_s``: median wall time of one training iteration (default preset), over 100
  iterations after 20 warm-up ones (one torch thread);
- ``inference_s`` and ``inference_peak_rss_gb``: ``get_latent_representation()`` of all
  cells of both modalities, and the process's peak RSS during that call (the kernel's
  high-water mark is reset just before it, so data already resident count, the
  generator's transient peak does not);
- ``peak_rss_gb``: the subprocess's peak RSS over everything.

The fitted slope of log(iteration time) against log(cells) between 10^4 and 10^6 is the
acceptance number (< 0.1: iteration cost independent of data size), and inference at 10^6
cells x 2 modalities must peak under 8 GB.

With ``--mosaic`` the same for the mosaic layout (``generate``): half the cells of each
modality paired, two batches per modality, ``batch_key``; the model then also trains on paired
minibatches and computes bridge features before training (counted in ``fit_other_s``).

Usage: python benchmarks/scaling.py [--sizes 1000 10000 100000 1000000] [--accelerator gpu]
[--mosaic]. Writes benchmarks/results/scaling[_mosaic][_gpu].json and .png (log-log plot with
the slope).
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

from _common import THREAD_ENV, IterationTimer, maxrss_gb, reset_peak
from _data import replicate, workflow_options

BLOCK = 100_000


def generate(n: int, seed: int, mosaic: bool = False):
    """Two log-normalised sparse modalities of ``n`` replicated Hao cells each.

    Unpaired by default. With ``mosaic``, half the cells of each modality are replicates of the
    Hao subset's CITE-seq cells drawn identically in both modalities under one obs_name
    (paired, batch ``"paired"``), the other half replicates of any cell of that modality
    (batch ``"rna_only"`` / ``"adt_only"``): the layout of MIDAS's mosaic at scale.
    """
    import anndata as ad
    import mudata

    import scmosaic

    hao = scmosaic.datasets.hao2021_pbmc_cite()
    shared = hao["rna"].obs_names.intersection(hao["adt"].obs_names)
    mods = {}
    for k, name in enumerate(("rna", "adt")):
        blocks = []
        for start in range(0, n, BLOCK):
            size = min(BLOCK, n - start)
            if not mosaic:
                blocks.append(replicate(hao[name], size, seed * 10 + k + start, f"{name}{start}_"))
                continue
            n_paired = size // 2
            # same seed and prefix in both modalities: the same source cells, the same names
            paired = replicate(hao[name][shared], n_paired, seed * 10 + start, f"p{start}_")
            paired.obs["batch"] = "paired"
            alone = replicate(
                hao[name], size - n_paired, seed * 10 + k + 5 + start, f"{name}{start}_"
            )
            alone.obs["batch"] = f"{name}_only"
            blocks.append(ad.concat([paired, alone]))
        adata = ad.concat(blocks) if len(blocks) > 1 else blocks[0]
        del blocks
        if mosaic:
            adata.obs["batch"] = adata.obs["batch"].astype("category")
        mods[name] = adata
    return mudata.MuData(mods)


def log_normalise(mdata) -> None:
    """``normalize_total`` + ``log1p`` of every modality in place (sparse, no copy)."""
    import scanpy as sc

    for adata in mdata.mod.values():
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)


def measure(n: int, accelerator: str, mosaic: bool = False, seed: int = 0) -> dict:
    import mudata
    import numpy as np
    import torch

    from scmosaic import workflow

    mudata.set_options(pull_on_update=False)
    # links from the raw counts, then log-normalised in place (no preprocess copy); links
    # without kNN smoothing
    options = workflow_options(
        "hao",
        link_kwargs={"smooth_neighbors": 0},
        preprocess=False,
        max_steps=120,
        seed=seed,
        threads=1,
        accelerator=accelerator,
        batch_key="batch" if mosaic else None,
    )
    torch.set_num_threads(1)
    row: dict = {"n_cells_per_modality": n}
    start = time.perf_counter()
    mdata = generate(n, seed, mosaic)
    row["generate_s"] = time.perf_counter() - start

    start = time.perf_counter()
    linked = workflow.link(mdata, options)  # from the raw counts
    row["links_s"] = time.perf_counter() - start
    log_normalise(mdata)

    start = time.perf_counter()
    model = workflow.build_model(mdata, linked, options)
    row["setup_s"] = time.perf_counter() - start

    timer = IterationTimer()
    start = time.perf_counter()
    workflow.fit(model, options, callbacks=[timer])
    # fit's time outside the timed iterations: data module set-up, minibatch loading and,
    # with pairs, the bridge features
    row["fit_other_s"] = time.perf_counter() - start - float(np.sum(timer.times))
    times = np.array(timer.times[20:])
    row["iteration_s"] = float(np.median(times))
    row["iteration_p10_s"] = float(np.percentile(times, 10))
    row["iteration_p90_s"] = float(np.percentile(times, 90))

    peak_so_far = maxrss_gb()  # generation, links, setup and training
    reset = reset_peak()
    start = time.perf_counter()
    latent = model.get_latent_representation()
    row["inference_s"] = time.perf_counter() - start
    row["inference_peak_rss_gb"] = maxrss_gb() if reset else None
    row["latent_shape"] = {m: list(z.shape) for m, z in latent.items()}
    row["peak_rss_gb"] = max(peak_so_far, maxrss_gb())
    row["device"] = (
        torch.cuda.get_device_name(0)
        if accelerator != "cpu" and torch.cuda.is_available()
        else f"CPU ({platform.machine()}), 1 torch thread"
    )
    return row


def slope(rows: list[dict], lo: int = 10_000) -> float | None:
    import numpy as np

    pts = [
        (r["n_cells_per_modality"], r["iteration_s"])
        for r in rows
        if r["n_cells_per_modality"] >= lo
    ]
    if len(pts) < 2:
        return None
    x, y = np.log10([p[0] for p in pts]), np.log10([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def plot(rows: list[dict], fitted: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n_cells_per_modality"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for key, label in (
        ("iteration_s", "one training iteration"),
        ("inference_s", "inference, all cells"),
        ("setup_s", "setup (feature statistics)"),
        ("links_s", "linked features"),
    ):
        ax.loglog(n, [r[key] for r in rows], "o-", label=label)
    ax.set_xlabel("cells per modality")
    ax.set_ylabel("seconds")
    title = "iteration slope (10^4-10^6): " + (f"{fitted:.3f}" if fitted is not None else "n/a")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--mosaic",
        action="store_true",
        help="half the cells paired, two batches per modality, batch_key (scaling_mosaic.json)",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        row = measure(args.one, args.accelerator, args.mosaic)
        print("ROW " + json.dumps(row), flush=True)
        return
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--accelerator", args.accelerator]
        cmd += ["--mosaic"] if args.mosaic else []
        done = subprocess.run(
            cmd, env=os.environ | THREAD_ENV, capture_output=True, text=True, check=False
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("ROW ")]
        if done.returncode != 0 or not lines:
            print(f"FAILED n={n}:\n{done.stderr[-3000:]}", flush=True)
            continue
        rows.append(json.loads(lines[-1][4:]))
        print(json.dumps(rows[-1]), flush=True)
    fitted = slope(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ("_mosaic" if args.mosaic else "") + ("_gpu" if args.accelerator != "cpu" else "")
    result = {
        "rows": rows,
        "iteration_slope_1e4_1e6": fitted,
        "layout": "mosaic: half paired, batch_key" if args.mosaic else "unpaired, no batch_key",
        "machine": {"processor": platform.machine(), "cpu_count": os.cpu_count()},
    }
    (out / f"scaling{suffix}.json").write_text(json.dumps(result, indent=2))
    plot(rows, fitted, out / f"scaling{suffix}.png")
    print(
        "| cells per modality | links s | setup s | s / iteration | inference s | "
        "inference peak RSS GB | peak RSS GB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n_cells_per_modality']:,} | {r['links_s']:.1f} | {r['setup_s']:.1f} | "
            f"{r['iteration_s']:.4f} | {r['inference_s']:.1f} | "
            f"{r['inference_peak_rss_gb'] or float('nan'):.2f} | {r['peak_rss_gb']:.2f} |"
        )
    print(f"iteration slope 10^4-10^6: {fitted}")


if __name__ == "__main__":
    main()
