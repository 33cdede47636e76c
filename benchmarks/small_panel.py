"""Small imaging-like protein panels against RNA (issue 17, item 3).

Imaging proteomics (CODEX, CyCIF, IMC) measures 20-50 markers, not the hundreds of a
CITE-seq panel. The scenario: the Hao subset with the pairing hidden (``hide_pairing``,
``"shuffle"``, as ``compare.py``), its ADT panel cut to ``CODEX_PANEL``, integrated with
the RNA by each method; the full 224-ADT panel in the same runs for reference.

``CODEX_PANEL``: the 46 protein features of the tonsil CODEX data (Kennedy-Darling et al.
2021) that MaxFuse's CODEX tutorial integrates with RNA (``protein_features`` in
``docs/tonsil_codex_rnaseq.ipynb`` of shuxiaoc/maxfuse), as far as the Hao panel measures
them: 37 markers. Absent from Hao: Vimentin, Ki67, cytokeratin, collagen IV, CD7, CD49f,
CD5, CD104, FAP-alpha. Where Hao has two antibody clones of a marker (CD3, CD4, CD38, CD45,
CD56, CD11b), the first (``.1``) is used; CD66 is ``cd66a.c.e``, E-cadherin ``cd324``.

Methods, same protocol, seeds 0-2, one CPU thread: scmosaic through the README workflow
with its default preset and packaged table; MaxFuse with ``compare.py``'s settings (its
CITE-seq tutorial; its CODEX tutorial uses the same graph, pivot and CCA settings except
larger batches and ``filter_prop=0.3`` for propagated matches). Scores from
``compare.score``: label transfer (1-NN both ways), macro-F1, FOSCTTM.

Usage:
    python benchmarks/small_panel.py --seeds 0 1 2 --jobs 2
    python benchmarks/small_panel.py --report
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from _common import grid_main, run_workflow, update_readme
from _data import workflow_options
from compare import cell, fit_maxfuse, score, unpaired_data

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "small_panel"
METHODS = ["scmosaic", "maxfuse"]
PANELS = ["codex", "full"]
# MaxFuse's CODEX tutorial markers, in its order, as Hao names them (see the docstring).
CODEX_PANEL = [
    "cd38.1", "cd19", "cd31", "cd22", "cd8", "cd90", "cd123", "cd15", "cd3.1", "cd152",
    "cd21", "cd2", "cd66a.c.e", "cd81", "hla.dr", "cd57", "cd4.1", "cd278", "podoplanin",
    "cd45ra", "cd34", "cd54", "cd9", "igm", "cd117", "cd56.1", "cd279", "cd45.1", "cd16",
    "cd63", "cd11b.1", "cd1c", "cd40", "cd274", "cd27", "cd273", "cd324",
]  # fmt: skip


def panel_data(panel: str, seed: int):
    """Hao with the pairing hidden (shuffle), ADTs cut to the panel."""
    mdata = unpaired_data("hao", "shuffle", seed)
    if panel == "codex":
        missing = [m for m in CODEX_PANEL if m not in mdata["adt"].var_names]
        if missing:
            raise KeyError(f"Markers absent from the Hao panel: {missing}")
        mdata.mod["adt"] = mdata["adt"][:, CODEX_PANEL].copy()
        mdata.update()
    return mdata


def run_one(method: str, panel: str, seed: int) -> dict:
    import mudata
    import torch

    mudata.set_options(pull_on_update=False)
    torch.set_num_threads(1)
    mdata = panel_data(panel, seed)
    if method == "scmosaic":
        run = run_workflow(mdata, workflow_options("hao", seed=seed), seed)
        scored, emb_rna, emb_adt = run.processed, run.latent["rna"], run.latent["adt"]
        report = run.linked.report
        info = {
            "seconds": run.seconds,
            "iterations": run.model.n_iterations_trained_,
            "linked_proteins": int((report["status"] == "linked").sum()),
        }
    else:
        scored, fusor, seconds, info = fit_maxfuse(mdata, "hao", seed)
        emb_rna, emb_adt = fusor.get_embedding(
            active_arr1=fusor.active_arr1, active_arr2=fusor.active_arr2
        )
        emb_rna, emb_adt = np.asarray(emb_rna), np.asarray(emb_adt)
        info = info | {"seconds": seconds}
    return {
        "method": method,
        "panel": panel,
        "seed": seed,
        "n_markers": int(mdata["adt"].n_vars),
        **info,
        **score(scored, "hao", "shuffle", emb_rna, emb_adt),
    }


def report() -> tuple[str, str]:
    """The results table (medians [min-max] of the seeds) and the verdict below it."""
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    lines = [
        "| panel | method | seeds | markers | label transfer | macro-F1 | FOSCTTM "
        "| FOSCTTM MaxFuse-style | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    medians = {}
    for panel in PANELS:
        for method in METHODS:
            rs = [r for r in runs if r["panel"] == panel and r["method"] == method]
            if not rs:
                continue
            medians[panel, method] = {
                k: np.median([r[k] for r in rs])
                for k in ("label_transfer_mean", "foscttm_symmetric_euclidean")
            }
            lines.append(
                f"| {panel} | {method} | {len(rs)} | {rs[0]['n_markers']} "
                f"| {cell([r['label_transfer_mean'] for r in rs], 3)} "
                f"| {cell([r['macro_f1_mean'] for r in rs], 3)} "
                f"| {cell([r['foscttm_symmetric_euclidean'] for r in rs], 3)} "
                f"| {cell([r['foscttm_maxfuse'] for r in rs], 3)} "
                f"| {cell([r['seconds'] for r in rs], 0)} |"
            )
    verdict = []
    ours, theirs = medians.get(("codex", "scmosaic")), medians.get(("codex", "maxfuse"))
    if ours and theirs:
        wins = [
            ours["label_transfer_mean"] > theirs["label_transfer_mean"],
            ours["foscttm_symmetric_euclidean"] < theirs["foscttm_symmetric_euclidean"],
        ]
        verdict.append(
            f"- {len(CODEX_PANEL)}-marker panel: scmosaic {ours['label_transfer_mean']:.3f} / "
            f"FOSCTTM {ours['foscttm_symmetric_euclidean']:.3f}, MaxFuse "
            f"{theirs['label_transfer_mean']:.3f} / {theirs['foscttm_symmetric_euclidean']:.3f}: "
            + ("scmosaic better on both." if all(wins) else "scmosaic not better on both.")
        )
    return "\n".join(lines), "\n".join(verdict)


def finish() -> None:
    table, verdict = report()
    text = f"{table}\n\n{verdict}\n"
    (RESULTS / "small_panel.md").write_text(text)
    update_readme("small_panel", table)
    print(text)


def main() -> None:
    grid_main(
        __file__, __doc__, METHODS, "panel", PANELS, run_one, OUT,
        lambda method, panel, seed: f"hao_{panel}_{method}_seed{seed}.json", finish,
    )  # fmt: skip


if __name__ == "__main__":
    main()
