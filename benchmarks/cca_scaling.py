"""Wall time and peak memory of ``scmosaic.pp.cca_links`` and ``diagonal_cca`` at scale.

Target (issue): peak memory under 4 GB for 100,000 x 100,000 cells, sparse CSR input.

Data generator: the bundled Hao et al. 2021 PBMC CITE-seq subset
(``scmosaic.datasets.hao2021_pbmc_cite()``: RNA 1,200 x 500 and ADT 1,200 x 224 raw counts,
CSR) replicated to ``n`` cells per modality. For each modality independently (its own
seed, so the two modalities are unpaired), ``n`` of its cells are drawn with replacement
and each drawn cell's counts are binomially thinned, ``Binomial(count, p_cell)`` with
``p_cell ~ Uniform(0.8, 1.0)``; zeros produced by the thinning are removed, so the matrix
stays sparse (RNA about 8 % non-zero, ADT about 94 %) and keeps the real cells' structure.
``.obs["celltype"]`` is copied from the drawn cell. The matrices stay float32 CSR.

Methods (each measured in a fresh subprocess, so peaks do not mix):

- ``link_features``: ``scmosaic.pp.link_features(mdata, "adt", "rna", smooth_neighbors=0)``
  (full ADT->gene table; the kNN smoothing is off, as recommended for cca_links input).
- ``cca_links:links``: the above, then ``cca_links(mdata, ("rna", "adt"), init="links")``
  with default parameters (n_components=10, n_pcs=40, n_iterations=3, n_neighbors=15).
  Only ``cca_links`` is timed; ``link_features`` time is reported beside it.
- ``cca_links:labels``: ``cca_links(..., init="labels", labels_key="celltype")``.
- ``diagonal_cca``: two replicated RNA sets (different seeds, hence different cells) that
  share all 500 gene names, ``diagonal_cca(mdata, ("rna", "rna2"))`` (n_components=20).

Memory (GB = 1024**3 bytes; ``ru_maxrss`` is in KiB on Linux): ``call_peak_rss_gb`` is
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` just after the measured call, with the
kernel's high-water mark reset (``/proc/self/clear_refs`` <- ``5``) just before it, so it is
the peak RSS of the process during the call (imports and data included, as resident
then); ``rss_before_gb`` is the resident size just before the call (imports, data and, for
``cca_links:links``, the linked features), so ``call_peak - rss_before`` is what the call
itself added. ``peak_rss_gb`` is the peak of the whole subprocess (data generation
included). Without the reset (not Linux) the call peak is null.

BLAS/OpenMP threads are pinned to 1 (``OMP_NUM_THREADS`` etc. in the subprocess
environment): oversubscription on a small shared machine made cca_links ~30x slower.

``--knn-method`` (``exact``, the default, ``approximate`` or ``auto``) is passed to ``cca_links``.
Rows measured before that option existed used exact search and are marked ``exact``.
``anchor_precision`` (quality of the scores): label agreement of the mutual nearest
neighbours of the scores on 5,000 random cells per modality, measured after the timed call.

Usage: python benchmarks/cca_scaling.py [--sizes 1000 10000 100000] [--methods ...]
[--knn-method exact|approximate|auto] [--merge]. Writes benchmarks/results/cca_scaling.json
and .md and prints the markdown table; ``--merge`` keeps the rows already there that this
run does not remeasure.
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

from _common import THREAD_ENV, maxrss_gb, reset_peak, rss_gb
from _data import replicate

METHODS = ["link_features", "cca_links:links", "cca_links:labels", "diagonal_cca"]
TARGET_GB = 4.0


def build(method: str, n: int, seed: int = 0):
    import mudata
    from mudata import MuData

    import scmosaic

    mudata.set_options(pull_on_update=False)
    hao = scmosaic.datasets.hao2021_pbmc_cite()
    if method == "diagonal_cca":
        mods = {
            "rna": replicate(hao["rna"], n, seed, "a"),
            "rna2": replicate(hao["rna"], n, seed + 1, "b"),
        }
    else:
        mods = {
            "rna": replicate(hao["rna"], n, seed, "r"),
            "adt": replicate(hao["adt"], n, seed + 1, "p"),
        }
    return MuData(mods)


def run_one(method: str, n: int, knn_method: str = "exact") -> dict:
    """Build the data, run one method, return its measurements (in this process)."""
    import scmosaic

    t0 = time.perf_counter()
    mdata = build(method, n)
    result: dict = {"build_s": time.perf_counter() - t0}
    result["nnz"] = {m: int(mdata.mod[m].X.nnz) for m in mdata.mod}
    if method == "cca_links:links":
        t0 = time.perf_counter()
        scmosaic.pp.link_features(mdata, "adt", "rna", smooth_neighbors=0)
        result["link_features_s"] = time.perf_counter() - t0
        result["n_linked"] = int(mdata["rna"].obsm["linked_adt"].shape[1])

    build_peak = maxrss_gb()
    result["rss_before_gb"] = rss_gb("VmRSS")
    reset = reset_peak()
    t0 = time.perf_counter()
    if method == "link_features":
        scmosaic.pp.link_features(mdata, "adt", "rna", smooth_neighbors=0)
        result["n_linked"] = int(mdata["rna"].obsm["linked_adt"].shape[1])
    elif method == "cca_links:links":
        summary = scmosaic.pp.cca_links(mdata, ("rna", "adt"), init="links", knn_method=knn_method)
    elif method == "cca_links:labels":
        summary = scmosaic.pp.cca_links(
            mdata, ("rna", "adt"), init="labels", labels_key="celltype", knn_method=knn_method
        )
    elif method == "diagonal_cca":
        summary = scmosaic.pp.diagonal_cca(mdata, ("rna", "rna2"))
    else:
        raise ValueError(f"Unknown method {method!r}.")
    result["time_s"] = time.perf_counter() - t0
    call_peak = maxrss_gb()
    result["call_peak_rss_gb"] = call_peak if reset else None
    result["peak_rss_gb"] = max(build_peak, call_peak)
    if method.startswith("cca_links"):
        result["anchor_precision"] = subsample_anchor_precision(mdata)
        result["n_pivots"] = summary["n_pivots"]
        result["correlations"] = [round(c, 4) for c in summary["correlations"][:3]]
    elif method == "diagonal_cca":
        result["singular_values"] = [round(s, 2) for s in summary["singular_values"][:3]]
    return result


def subsample_anchor_precision(mdata, n_cells: int = 5_000, k: int = 15) -> float:
    """Quality of the canonical scores: label agreement of their mutual nearest neighbours
    (exact, k = 15) on a random ``n_cells`` of each modality (after the timed call)."""
    import numpy as np

    from scmosaic.metrics import anchor_precision
    from scmosaic.pp import mutual_nearest_pairs

    rng = np.random.default_rng(0)
    picks = {
        m: rng.choice(mdata[m].n_obs, min(n_cells, mdata[m].n_obs), replace=False)
        for m in ("rna", "adt")
    }
    scores = {m: mdata[m].obsm["X_cca"].to_numpy()[picks[m]] for m in picks}
    labels = {m: mdata[m].obs["celltype"].to_numpy()[picks[m]] for m in picks}
    ia, ib, _ = mutual_nearest_pairs(scores["rna"], scores["adt"], k, knn_method="exact")
    return float(anchor_precision(ia, ib, labels["rna"], labels["adt"]))


def measure(method: str, n: int, timeout: float, knn_method: str = "exact") -> dict:
    """Run ``--one method --n n`` in a fresh subprocess with 1 BLAS/OpenMP thread."""
    env = {**os.environ, **THREAD_ENV, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, __file__, "--one", method, "--n", str(n), "--knn-method", knn_method]
    row = {"method": method.split(":")[0], "init": (method.split(":") + [None])[1], "n": n}
    if method.startswith("cca_links"):
        row["knn_method"] = knn_method
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**row, "status": f"timeout after {timeout:.0f} s"}
    row["subprocess_wall_s"] = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {**row, "status": f"failed (rc {proc.returncode})", "stderr": proc.stderr[-2000:]}
    return {**row, "status": "ok", **json.loads(lines[-1])}


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    header = (
        "| method | init | kNN | cells per modality | time (s) | call peak RSS (GB) | "
        "added by call (GB) | process peak RSS (GB) | < 4 GB | notes |\n"
        "|---|---|---|---:|---:|---:|---:|---:|:-:|---|\n"
    )
    out = []
    for r in rows:
        if r["status"] != "ok":
            out.append(
                f"| {r['method']} | {r['init'] or '-'} | {r.get('knn_method', '-')} | {r['n']:,} "
                f"| - | - | - | - | - | {r['status']} |"
            )
            continue
        notes = []
        if "link_features_s" in r:
            notes.append(f"link_features {r['link_features_s']:.1f} s before (not timed)")
        if "n_pivots" in r:
            notes.append(f"pivots {r['n_pivots']}")
        if "anchor_precision" in r:
            notes.append(f"anchor precision {r['anchor_precision']:.3f}")
        ok = "yes" if r["peak_rss_gb"] < TARGET_GB else "NO"
        added = None
        if r["call_peak_rss_gb"] is not None and r["rss_before_gb"] is not None:
            added = r["call_peak_rss_gb"] - r["rss_before_gb"]
        out.append(
            f"| {r['method']} | {r['init'] or '-'} | {r.get('knn_method', '-')} | {r['n']:,} "
            f"| {r['time_s']:.1f} | "
            f"{_fmt(r['call_peak_rss_gb'])} | {_fmt(added)} | {r['peak_rss_gb']:.2f} | "
            f"{ok} | {'; '.join(notes)} |"
        )
    return header + "\n".join(out) + "\n"


def machine() -> dict:
    import numpy as np
    import scipy
    import sklearn

    import scmosaic

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "load_average_at_start": os.getloadavg(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "scmosaic": scmosaic.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1_000, 10_000, 100_000])
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--timeout", type=float, default=900.0, help="per measurement, s")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--knn-method", default="exact", choices=["auto", "exact", "approximate"])
    parser.add_argument("--merge", action="store_true")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.n, args.knn_method)), flush=True)
        return

    info = machine()
    rows = []
    for n in args.sizes:
        for method in args.methods:
            row = measure(method, n, args.timeout, args.knn_method)
            rows.append(row)
            print(json.dumps(row), flush=True)
    previous = Path(args.out) / "cca_scaling.json"
    if args.merge and previous.exists():
        key = ("method", "init", "knn_method", "n")
        old = json.loads(previous.read_text())["results"]
        for r in old:  # rows from before knn_method existed were exact searches
            if r["method"] == "cca_links":
                r.setdefault("knn_method", "exact")
        new = {tuple(r.get(k) for k in key) for r in rows}
        rows = [r for r in old if tuple(r.get(k) for k in key) not in new] + rows
        rows.sort(key=lambda r: (r["n"], r["method"], r["init"] or "", r.get("knn_method", "")))
    result = {
        "description": "scmosaic.pp.cca_links / diagonal_cca scaling on replicated Hao cells",
        "target_peak_gb": TARGET_GB,
        "threads": THREAD_ENV,
        "rss_unit": "GB = 1024**3 bytes; ru_maxrss KiB / 1024**2",
        "machine": info,
        "results": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cca_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    md = table(rows)
    (out / "cca_scaling.md").write_text(
        "# cca_links / diagonal_cca scaling\n\n"
        f"Machine: {info['cpu']}, {info['cpu_count']} cores (shared), "
        f"{info['memory_gb']} GB; threads pinned to 1.\n\n" + md
    )
    print(md)


if __name__ == "__main__":
    main()
