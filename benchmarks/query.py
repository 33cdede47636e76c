"""Query mapping on the bundled MIDAS/Hao mosaic: new donors onto a trained reference.

Data: ``midas_hao2021_pbmc_mosaic`` (``../shared/data``): donors ``p3_0`` and ``p4_0`` are
paired RNA + ADT, ``p1_0`` RNA only, ``p2_0`` ADT only; labels ``celltype``.

Runs (3 seeds each, one process per run, one thread, this 2-core CPU):

* ``scmosaic_query``: the reference is ``p3_0`` + ``p4_0`` (``pp.link_features`` with the
  packaged table, ``pp.preprocess``, ``setup_mudata(batch_key="batch")``, default preset,
  pairs used), saved to disk; then three queries are mapped from that folder with the public
  API (``prepare_query_mudata`` -> ``load_query_data`` -> ``train()`` with its default
  length): the RNA-only donor ``p1_0``, the ADT-only donor ``p2_0``, and both together.
  ``--reuse-references`` maps onto the references saved by an earlier run instead of
  training them again (their training seconds are kept from that run).
* ``scmosaic_denovo``: the mosaic issue's model, trained on all four donors at once (pairs +
  ``batch_key``), scored on the same cells.
* ``scmosaic_hidden_query`` / ``scmosaic_hidden_denovo``: FOSCTTM where pairs are known: a
  reference trained on ``p3_0`` maps ``p4_0`` with its pairing hidden (RNA and ADT of
  ``p4_0`` as different cells); de novo, ``p3_0`` (paired) and ``p4_0`` (pairing hidden)
  are trained together.
* ``scmosaic_novel``: the reference without its NK cells maps ``p1_0`` + ``p2_0``; the
  AUROC of ``1 - confidence`` (kNN vote, k = 15) and of ``tl.distance_to_reference`` (k =
  15) for telling the query's NK cells from the rest, pooled and per modality.
* ``scvi_scarches`` (peer, RNA side): scvi-tools' SCVI on the reference's RNA counts with
  the settings of scvi-tools' scArches tutorial (``encode_covariates=True``, layer norm,
  no batch norm), ``SCVI.load_query_data`` of ``p1_0``'s RNA, 200 query epochs without
  weight decay.

Scores, the same for every method: label accuracy of the query cells from the reference
cells' labels (kNN vote, k = 15, in the joint space; a reference cell measured in both
modalities votes with the mean of its two codes); batch mixing of query and reference cells
of the same type (scib-metrics' iLISI per cell type, scaled to [0, 1], mean over types with
at least 10 query and 10 reference cells); wall time (reference training, mapping); whether
the reference cells' codes are the same, bit for bit, before and after mapping.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import THREAD_ENV, update_readme
from _data import SHARED

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "query"
DATA = SHARED / "midas_hao2021_pbmc_mosaic" / "quickstart_pbmc_mosaic.h5mu"
REFERENCE_BATCHES = ("p3_0", "p4_0")
RNA_ONLY, ADT_ONLY = "p1_0", "p2_0"
NOVEL_TYPE = "NK"
LABELS, BATCH = "celltype", "batch"
K = 15
# None: the preset's length; --max-steps sets it for a smoke run of the script.
MAX_STEPS = None
# --reuse-references: map onto the references saved by an earlier run (same seeds) instead
# of training them again; their training seconds are kept from that run's JSON.
REUSE_REFERENCES = False
QUERIES = {
    "rna": {"rna": [RNA_ONLY]},
    "adt": {"adt": [ADT_ONLY]},
    "both": {"rna": [RNA_ONLY], "adt": [ADT_ONLY]},
}
RUNS = (
    "scmosaic_query",
    "scmosaic_denovo",
    "scmosaic_hidden_query",
    "scmosaic_hidden_denovo",
    "scmosaic_novel",
    "scvi_scarches",
)


# ---------------------------------------------------------------------------- data


def read_data():
    import mudata

    mudata.set_options(pull_on_update=False)
    return mudata.read_h5mu(DATA)


def select(full, batches: dict[str, list[str]], drop_type: str | None = None):
    """A MuData of the given batches per modality (raw counts), optionally without a type."""
    from scmosaic._mudata import new_mudata

    mods = {}
    for m, keep in batches.items():
        a = full[m]
        rows = a.obs[BATCH].isin(keep).to_numpy()
        if drop_type is not None:
            rows &= (a.obs[LABELS] != drop_type).to_numpy()
        mods[m] = a[rows].copy()
    return new_mudata(mods)


def both(batches) -> dict[str, list[str]]:
    return {"rna": list(batches), "adt": list(batches)}


def hide_pairing(mdata, batch: str):
    """The ADT cells of ``batch`` renamed, so the model sees them as other cells."""
    adt = mdata.mod["adt"]
    hidden = (adt.obs[BATCH] == batch).to_numpy()
    adt.obs["cell_id"] = adt.obs_names.astype(str)
    adt.obs_names = [f"{n}-hidden" if h else n for n, h in zip(adt.obs_names, hidden, strict=True)]
    mdata.update()
    return mdata


# ---------------------------------------------------------------------------- scores


def knn_scores(ref_emb, ref_labels, query_emb, query_labels) -> dict:
    from scmosaic.tl import knn_transfer

    pred, conf = knn_transfer(ref_emb, ref_labels, query_emb, k=K)
    return {
        "accuracy": float(np.mean(pred == query_labels)),
        "mean_confidence": float(conf.mean()),
        "n_cells": len(query_labels),
    }, conf


def mixing(ref_emb, ref_labels, query_emb, query_labels) -> float:
    """Mean over shared cell types of scib-metrics' scaled iLISI of query vs reference."""
    from scib_metrics import ilisi_knn
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    scores = []
    for t in sorted(set(ref_labels) & set(query_labels)):
        r, q = ref_emb[ref_labels == t], query_emb[query_labels == t]
        if len(r) < 10 or len(q) < 10:
            continue
        x = np.vstack([r, q])
        origin = np.array(["reference"] * len(r) + ["query"] * len(q))
        k = min(90, len(x) - 1)
        dist, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
        scores.append(float(ilisi_knn(NeighborsResults(indices=idx, distances=dist), origin)))
    return float(np.mean(scores))


def reference_codes(model, mdata):
    """One code per reference cell (the mean of its modalities' codes) and its label."""
    joint = model.get_joint_representation(mdata)
    labels = mdata["rna"].obs[LABELS].astype(str).reindex(joint.index)
    fill = mdata["adt"].obs[LABELS].astype(str)
    labels = labels.fillna(fill.reindex(joint.index)).to_numpy()
    return joint.drop(columns="n_modalities").to_numpy(), labels


def score_query(ref_emb, ref_labels, latent: dict, query) -> dict:
    out = {}
    for m, codes in latent.items():
        labels = query[m].obs[LABELS].astype(str).to_numpy()
        scores, _ = knn_scores(ref_emb, ref_labels, codes, labels)
        scores["mixing_ilisi"] = mixing(ref_emb, ref_labels, codes, labels)
        out[m] = scores
    return out


# ---------------------------------------------------------------------------- scmosaic


def prepare(mdata, reference: bool):
    import scmosaic

    if reference:
        scmosaic.pp.link_features(mdata, "adt", "rna")
        return scmosaic.pp.preprocess(mdata)
    return scmosaic.pp.preprocess(mdata, n_top_genes=None)  # the reference picks features


def train_reference(mdata, seed: int, folder: Path | None = None):
    """Train (and save to ``folder``) a reference; with ``--reuse-references`` a reference
    already saved in ``folder`` is loaded instead (its seconds are then ``None``)."""
    import scmosaic

    start = time.perf_counter()
    processed = prepare(mdata, reference=True)
    scmosaic.SCMODAL.setup_mudata(
        processed, modalities=["rna", "adt"], links=[("rna", "adt")], batch_key=BATCH
    )
    if REUSE_REFERENCES and folder is not None and (folder / "model.pt").exists():
        return scmosaic.SCMODAL.load(str(folder), adata=processed), processed, None
    model = scmosaic.SCMODAL(processed, seed=seed)
    model.train(max_steps=MAX_STEPS, enable_progress_bar=False)
    seconds = time.perf_counter() - start
    if folder is not None:
        model.save(str(folder), overwrite=True)
    return model, processed, seconds


def map_query(query_raw, reference, seed: int):
    """Map a query with the public API; codes, the query model and the seconds it took."""
    import scvi

    import scmosaic

    scvi.settings.seed = seed
    start = time.perf_counter()
    processed = prepare(query_raw, reference=False)
    query = scmosaic.SCMODAL.prepare_query_mudata(processed, reference)
    model = scmosaic.SCMODAL.load_query_data(query, reference)
    model.train(enable_progress_bar=False)
    latent = model.get_latent_representation()
    return latent, model, query, time.perf_counter() - start


def run_query(seed: int, out: Path) -> dict:
    full = read_data()
    folder = out / "models" / f"reference_seed{seed}"
    model, ref, ref_seconds = train_reference(select(full, both(REFERENCE_BATCHES)), seed, folder)
    ref_emb, ref_labels = reference_codes(model, ref)
    before = model.get_latent_representation()
    row = {"reference_seconds": ref_seconds, "reference_iterations": model.n_iterations_trained_}
    for name, batches in QUERIES.items():
        latent, query_model, query, seconds = map_query(select(full, batches), folder, seed)
        after = query_model.get_latent_representation(ref)
        row[name] = {
            "seconds": seconds,
            "iterations": query_model.n_iterations_trained_,
            "missing_features": {m: v["missing"] for m, v in query.uns["scmosaic_query"].items()},
            "reference_codes_unchanged": all(np.array_equal(before[m], after[m]) for m in before),
            **score_query(ref_emb, ref_labels, latent, query),
        }
    return row


def run_denovo(seed: int) -> dict:
    full = read_data()
    batches = {"rna": [*REFERENCE_BATCHES, RNA_ONLY], "adt": [*REFERENCE_BATCHES, ADT_ONLY]}
    model, processed, seconds = train_reference(select(full, batches), seed)
    codes = model.get_latent_representation()
    in_ref = {m: processed[m].obs[BATCH].isin(REFERENCE_BATCHES).to_numpy() for m in codes}
    joint = model.get_joint_representation()
    ref_cells = processed["rna"].obs_names[in_ref["rna"]].astype(str)
    ref_emb = joint.loc[ref_cells].drop(columns="n_modalities").to_numpy()
    ref_labels = processed["rna"].obs.loc[ref_cells, LABELS].astype(str).to_numpy()
    row = {"seconds": seconds, "iterations": model.n_iterations_trained_}
    for name, m in (("rna", "rna"), ("adt", "adt")):
        query = processed[m][~in_ref[m]]
        labels = query.obs[LABELS].astype(str).to_numpy()
        scores, _ = knn_scores(ref_emb, ref_labels, codes[m][~in_ref[m]], labels)
        scores["mixing_ilisi"] = mixing(ref_emb, ref_labels, codes[m][~in_ref[m]], labels)
        row[name] = {m: scores}
    return row


def foscttm_of(latent, mdata, batch: str) -> float:
    from scmosaic.metrics import foscttm

    rna, adt = mdata["rna"], mdata["adt"]
    rows_rna = np.flatnonzero((rna.obs[BATCH] == batch).to_numpy())
    ids = rna.obs_names[rows_rna].astype(str)
    position = {c: i for i, c in enumerate(adt.obs["cell_id"].astype(str))}
    rows_adt = np.array([position[c] for c in ids])
    return float(foscttm(latent["rna"][rows_rna], latent["adt"][rows_adt]))


def run_hidden_query(seed: int, out: Path) -> dict:
    full = read_data()
    folder = out / "models" / f"reference_p3_seed{seed}"
    _, _, ref_seconds = train_reference(select(full, both(["p3_0"])), seed, folder)
    query_raw = hide_pairing(select(full, both(["p4_0"])), "p4_0")
    latent, model, query, seconds = map_query(query_raw, folder, seed)
    return {
        "reference_seconds": ref_seconds,
        "seconds": seconds,
        "n_pairs_used": int(sum(len(r[0]) for r in model._pairs().values())),
        "foscttm": foscttm_of(latent, query, "p4_0"),
    }


def run_hidden_denovo(seed: int) -> dict:
    full = read_data()
    mdata = hide_pairing(select(full, both(REFERENCE_BATCHES)), "p4_0")
    model, processed, seconds = train_reference(mdata, seed)
    return {
        "seconds": seconds,
        "n_pairs": int(sum(len(r[0]) for r in model._pairs().values())),
        "foscttm": foscttm_of(model.get_latent_representation(), processed, "p4_0"),
    }


def run_novel(seed: int, out: Path) -> dict:
    from sklearn.metrics import roc_auc_score

    full = read_data()
    folder = out / "models" / f"reference_no{NOVEL_TYPE}_seed{seed}"
    reference = select(full, both(REFERENCE_BATCHES), drop_type=NOVEL_TYPE)
    model, ref, ref_seconds = train_reference(reference, seed, folder)
    ref_emb, ref_labels = reference_codes(model, ref)
    latent, _, query, seconds = map_query(select(full, QUERIES["both"]), folder, seed)
    row = {"reference_seconds": ref_seconds, "seconds": seconds}
    from scmosaic.tl import distance_to_reference

    confidence, distance, novel = [], [], []
    for m, codes in latent.items():
        labels = query[m].obs[LABELS].astype(str).to_numpy()
        scores, conf = knn_scores(ref_emb, ref_labels, codes, labels)
        is_novel = labels == NOVEL_TYPE
        far = distance_to_reference(ref_emb, codes, k=K)
        scores["novel_auroc"] = float(roc_auc_score(is_novel, 1 - conf))
        scores["novel_auroc_distance"] = float(roc_auc_score(is_novel, far))
        row[m] = scores
        confidence.append(conf)
        distance.append(far)
        novel.append(is_novel)
    confidence, distance, novel = map(np.concatenate, (confidence, distance, novel))
    row["novel_auroc"] = float(roc_auc_score(novel, 1 - confidence))
    row["novel_auroc_distance"] = float(roc_auc_score(novel, distance))
    row["n_novel"] = int(novel.sum())
    return row


# ---------------------------------------------------------------------------- peer


def run_scvi(seed: int) -> dict:
    import scvi

    full = read_data()
    scvi.settings.seed = seed
    ref = full["rna"][full["rna"].obs[BATCH].isin(REFERENCE_BATCHES).to_numpy()].copy()
    query = full["rna"][(full["rna"].obs[BATCH] == RNA_ONLY).to_numpy()].copy()
    start = time.perf_counter()
    scvi.model.SCVI.setup_anndata(ref, batch_key=BATCH)
    arches = {
        "use_layer_norm": "both",
        "use_batch_norm": "none",
        "encode_covariates": True,
        "dropout_rate": 0.2,
        "n_layers": 2,
    }
    model = scvi.model.SCVI(ref, **arches)
    model.train(enable_progress_bar=False)
    ref_seconds = time.perf_counter() - start
    ref_emb = model.get_latent_representation()
    start = time.perf_counter()
    scvi.model.SCVI.prepare_query_anndata(query, model)
    query_model = scvi.model.SCVI.load_query_data(query, model)
    query_model.train(max_epochs=200, plan_kwargs={"weight_decay": 0.0}, enable_progress_bar=False)
    codes = query_model.get_latent_representation()
    seconds = time.perf_counter() - start
    ref_labels = ref.obs[LABELS].astype(str).to_numpy()
    labels = query.obs[LABELS].astype(str).to_numpy()
    scores, _ = knn_scores(ref_emb, ref_labels, codes, labels)
    scores["mixing_ilisi"] = mixing(ref_emb, ref_labels, codes, labels)
    return {
        "reference_seconds": ref_seconds,
        "seconds": seconds,
        "settings": {**arches, "query_epochs": 200, "query_weight_decay": 0.0},
        "version": scvi.__version__,
        "rna": {"rna": scores},
    }


# ---------------------------------------------------------------------------- driver


def run_one(name: str, seed: int, out: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    runs = {
        "scmosaic_query": lambda: run_query(seed, out),
        "scmosaic_denovo": lambda: run_denovo(seed),
        "scmosaic_hidden_query": lambda: run_hidden_query(seed, out),
        "scmosaic_hidden_denovo": lambda: run_hidden_denovo(seed),
        "scmosaic_novel": lambda: run_novel(seed, out),
        "scvi_scarches": lambda: run_scvi(seed),
    }
    row = {"run": name, "seed": seed, **runs[name]()}
    previous = out / f"{name}_seed{seed}.json"
    if row.get("reference_seconds", 0) is None and previous.exists():
        row["reference_seconds"] = json.loads(previous.read_text()).get("reference_seconds")
        row["reference_reused"] = True
    import scmosaic

    row["scmosaic_version"] = scmosaic.__version__
    (out / f"{name}_seed{seed}.json").write_text(json.dumps(row, indent=2))
    return row


def launch(name: str, seed: int, out: Path) -> str:
    log = out / "logs" / f"{name}_seed{seed}.log"
    env = os.environ | THREAD_ENV | {"PYTHONWARNINGS": "ignore", "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, __file__, "--out", str(out), "--one", name, str(seed)]
    if MAX_STEPS is not None:
        cmd += ["--max-steps", str(MAX_STEPS)]
    if REUSE_REFERENCES:
        cmd.append("--reuse-references")
    start = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    status = "done" if rc == 0 else f"FAILED (rc {rc}, log {log})"
    return f"{time.strftime('%H:%M:%S')} {status} {name} seed {seed} in {time.perf_counter() - start:.0f} s"


# ---------------------------------------------------------------------------- report


def _load(out: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for path in sorted(out.glob("*_seed*.json")):
        row = json.loads(path.read_text())
        rows.setdefault(row["run"], []).append(row)
    return rows


def _cell(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = float(np.median(values))
    if len(values) == 1:
        return f"{med:.3f} (1 seed)"
    return f"{med:.3f} ({min(values):.3f}-{max(values):.3f})"


def _seconds(values) -> str:
    values = [v for v in values if v is not None]
    return f"{np.median(values):.0f}" if values else "-"


def report(out: Path) -> str:
    rows = _load(out)

    def get(run, *path):
        values = []
        for row in rows.get(run, []):
            value = row
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            values.append(value)
        return values

    lines = [
        "| Query | Method | Label accuracy | Mixing (iLISI) | Mapping s | Reference s |",
        "|---|---|---|---|---|---|",
    ]
    for query, m in (("rna", "rna"), ("adt", "adt"), ("both", "rna"), ("both", "adt")):
        what = {"rna": "RNA-only p1_0", "adt": "ADT-only p2_0"}[m]
        what += " (mapped with p2_0)" if query == "both" and m == "rna" else ""
        what += " (mapped with p1_0)" if query == "both" and m == "adt" else ""
        lines.append(
            f"| {what} | scmosaic query mapping | {_cell(get('scmosaic_query', query, m, 'accuracy'))}"
            f" | {_cell(get('scmosaic_query', query, m, 'mixing_ilisi'))}"
            f" | {_seconds(get('scmosaic_query', query, 'seconds'))}"
            f" | {_seconds(get('scmosaic_query', 'reference_seconds'))} |"
        )
        if query != "both":
            lines.append(
                f"| {what} | scmosaic de novo (4 donors) "
                f"| {_cell(get('scmosaic_denovo', m, m, 'accuracy'))}"
                f" | {_cell(get('scmosaic_denovo', m, m, 'mixing_ilisi'))} | - "
                f"| {_seconds(get('scmosaic_denovo', 'seconds'))} |"
            )
        if query == "rna":
            lines.append(
                f"| {what} | scVI + scArches (RNA only) "
                f"| {_cell(get('scvi_scarches', 'rna', 'rna', 'accuracy'))}"
                f" | {_cell(get('scvi_scarches', 'rna', 'rna', 'mixing_ilisi'))}"
                f" | {_seconds(get('scvi_scarches', 'seconds'))}"
                f" | {_seconds(get('scvi_scarches', 'reference_seconds'))} |"
            )
    unchanged = [v for q in QUERIES for v in get("scmosaic_query", q, "reference_codes_unchanged")]
    lines += [
        "",
        "| Pairs known (p4_0 mapped with pairing hidden) | FOSCTTM | s |",
        "|---|---|---|",
        f"| query onto a p3_0 reference | {_cell(get('scmosaic_hidden_query', 'foscttm'))} "
        f"| {_seconds(get('scmosaic_hidden_query', 'seconds'))} |",
        f"| de novo (p3_0 paired + p4_0 hidden) | {_cell(get('scmosaic_hidden_denovo', 'foscttm'))} "
        f"| {_seconds(get('scmosaic_hidden_denovo', 'seconds'))} |",
        "",
        f"Novel type ({NOVEL_TYPE} removed from the reference; p1_0 + p2_0 mapped): AUROC for "
        f"its query cells of 1 - confidence {_cell(get('scmosaic_novel', 'novel_auroc'))} "
        f"(RNA {_cell(get('scmosaic_novel', 'rna', 'novel_auroc'))}, ADT "
        f"{_cell(get('scmosaic_novel', 'adt', 'novel_auroc'))}), of the distance to the "
        f"reference (`tl.distance_to_reference`, k = {K}) "
        f"{_cell(get('scmosaic_novel', 'novel_auroc_distance'))} (RNA "
        f"{_cell(get('scmosaic_novel', 'rna', 'novel_auroc_distance'))}, ADT "
        f"{_cell(get('scmosaic_novel', 'adt', 'novel_auroc_distance'))}).",
        f"Reference cells' codes unchanged bit for bit after mapping: {sum(map(bool, unchanged))}"
        f" of {len(unchanged)} mappings.",
        "",
        "Medians of the seeds (range in brackets); seconds are medians, one thread.",
    ]
    text = "\n".join(lines) + "\n"
    (out / "query.md").write_text(text)
    if out.resolve() == RESULTS.resolve():
        update_readme("query", text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--rerun", action="store_true", help="rerun runs whose JSON exists")
    parser.add_argument(
        "--report", action="store_true", help="only write query.md and the README's table"
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="reference iterations (smoke runs only)"
    )
    parser.add_argument(
        "--reuse-references",
        action="store_true",
        help="map onto references saved by an earlier run (results/query/models)",
    )
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    global MAX_STEPS, REUSE_REFERENCES
    MAX_STEPS = args.max_steps
    REUSE_REFERENCES = args.reuse_references
    if args.one:
        row = run_one(args.one[0], int(args.one[1]), out)
        print(json.dumps(row, indent=2))
        return
    if not args.report:
        todo = [
            (name, seed)
            for seed in args.seeds
            for name in args.runs
            if args.rerun or not (out / f"{name}_seed{seed}.json").exists()
        ]
        with ThreadPoolExecutor(args.jobs) as pool:
            for line in pool.map(lambda run: launch(*run, out), todo):
                print(line, flush=True)
    print(report(out))


if __name__ == "__main__":
    main()
