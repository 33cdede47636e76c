"""Nearest-neighbour search in the workflow: exact against approximate, on its own problems.

Data: ``scaling.generate(n)`` (the bundled Hao subset replicated to ``n`` unpaired cells per
modality, raw counts). The three searches of the README workflow, built with the public API:

- ``pca``: a modality's 30 principal components against themselves (``link_features``'
  smoothing; ``scanpy.pp.pca`` of the log-normalised, scaled RNA), self matching;
- ``linked``: the z-scored linked features of the two modalities (``link_features``, no
  smoothing), the initial matching of ``cca_links``;
- ``cca``: the two modalities' canonical scores (``cca_links``, ``init="links"``), the
  matching of its re-matching rounds.

Each is matched by :func:`scmosaic.pp.mutual_nearest_pairs` (cosine, k = 15 both ways) with
``knn_method="exact"`` (the truth) and ``"approximate"`` (scmosaic's faiss inverted-file
index), and, for comparison, with the same mutual-neighbour rule on a faiss HNSW graph
(M = 32, efConstruction 80, efSearch 128): time of the matching and the fraction of the exact
mutual pairs found (recall) and of the found pairs that are exact (precision). Threads: the
machine's (no pinning).

Usage: python benchmarks/knn_search.py [--n 100000]. Writes
benchmarks/results/knn_search.{json,md} and the README's table (``--report``: the tables
only, from the saved JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from _common import update_readme

HERE = Path(__file__).resolve().parent
K = 15


def problems(n: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three search problems at ``n`` cells per modality."""
    import mudata
    import scanpy as sc
    from scaling import generate

    import scmosaic

    mudata.set_options(pull_on_update=False)
    mdata = generate(n, seed)
    rna = mdata["rna"].copy()
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    sc.pp.scale(rna, max_value=10)
    pcs = sc.pp.pca(rna.X, n_comps=30, random_state=seed)
    scmosaic.pp.link_features(mdata, "adt", "rna", smooth_neighbors=0)
    linked = (
        mdata["rna"].obsm["linked_adt"].to_numpy(),
        mdata["adt"].obsm["linked_rna"].to_numpy(),
    )
    scmosaic.pp.cca_links(mdata, ("rna", "adt"), init="links", seed=seed)
    cca = (mdata["rna"].obsm["X_cca"].to_numpy(), mdata["adt"].obsm["X_cca"].to_numpy())
    return {"pca": (pcs, pcs), "linked": linked, "cca": cca}


def hnsw_mutual_pairs(x_a: np.ndarray, x_b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest pairs (cosine) with faiss HNSW kNN queries both ways."""
    import faiss

    def unit(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def knn(data, queries):
        index = faiss.IndexHNSWFlat(data.shape[1], 32)
        index.hnsw.efConstruction = 80
        index.add(data)
        index.hnsw.efSearch = 128
        return index.search(queries, k)[1]

    a, b = unit(x_a), unit(x_b)
    ab, ba = knn(b, a), knn(a, b)
    pairs = {(i, j) for i in range(len(a)) for j in ab[i]}
    mutual = sorted((i, j) for j in range(len(b)) for i in ba[j] if (i, j) in pairs)
    return np.array([p[0] for p in mutual]), np.array([p[1] for p in mutual])


def measure(x_a: np.ndarray, x_b: np.ndarray) -> dict:
    from scmosaic.pp import mutual_nearest_pairs

    def timed(find):
        start = time.perf_counter()
        ia, ib = find()[:2]
        return time.perf_counter() - start, set(zip(ia.tolist(), ib.tolist(), strict=True))

    runs = {
        method: timed(lambda m=method: mutual_nearest_pairs(x_a, x_b, K, knn_method=m))
        for method in ("exact", "approximate")
    }
    runs["hnsw"] = timed(lambda: hnsw_mutual_pairs(x_a, x_b, K))
    truth = runs["exact"][1]
    return {
        method: {
            "seconds": seconds,
            "pairs": len(found),
            "recall": len(found & truth) / max(len(truth), 1),
            "precision": len(found & truth) / max(len(found), 1),
        }
        for method, (seconds, found) in runs.items()
    }


def table(result: dict) -> str:
    lines = [
        "| search | dimensions | method | seconds | mutual pairs | recall | precision |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, row in result["problems"].items():
        for method, m in row["methods"].items():
            lines.append(
                f"| {name} | {row['dimensions']} | {method} | {m['seconds']:.1f} | "
                f"{m['pairs']:,} | {m['recall']:.4f} | {m['precision']:.4f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--report", action="store_true", help="tables from the saved JSON only")
    args = parser.parse_args()
    out = Path(args.out)
    if args.report:
        write_report(json.loads((out / "knn_search.json").read_text()), out)
        return
    result = {
        "n_cells_per_modality": args.n,
        "k": K,
        "machine": {"processor": platform.machine(), "cpu_count": os.cpu_count()},
        "problems": {},
    }
    for name, (x_a, x_b) in problems(args.n).items():
        result["problems"][name] = {"dimensions": x_a.shape[1], "methods": measure(x_a, x_b)}
        print(name, json.dumps(result["problems"][name]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "knn_search.json").write_text(json.dumps(result, indent=2))
    write_report(result, out)


def write_report(result: dict, out: Path) -> None:
    """``knn_search.md`` and, for the repository's results, the README's table."""
    n, text = result["n_cells_per_modality"], table(result)
    cores = result["machine"]["cpu_count"]
    (out / "knn_search.md").write_text(
        f"# Mutual nearest pairs: exact vs approximate search, {n:,} cells per modality\n\n"
        f"`python benchmarks/knn_search.py --n {n}`; {cores} cores, no pinning.\n\n{text}\n"
    )
    if out.resolve() == (HERE / "results").resolve():
        update_readme("knn", text)
    print(text)


if __name__ == "__main__":
    main()
