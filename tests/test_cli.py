"""`scmosaic integrate` and `scmosaic map`: files in, MuData and JSON summary out; exit codes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
from conftest import make_mosaic
from scipy import sparse

from scmosaic.__main__ import main

PROTEINS = {
    "CD3": "CD3E",
    "CD4": "CD4",
    "CD8": "CD8A",
    "CD14": "CD14",
    "CD19": "CD19",
    "CD56": "NCAM1",
    "HLA-DR": "HLA-DRA",
    "CD16": "FCGR3A",
}
FAST = ["--max-steps", "20", "--threads", "1", "--quiet"]


def _counts(n_cells, n_features, types, markers, rng):
    """Poisson counts with a cell-type program; marker columns high in their type."""
    rate = rng.gamma(2.0, 0.5, (3, n_features))
    for t, cols in markers.items():
        rate[t, cols] += 8.0
    return sparse.csr_matrix(rng.poisson(rate[types]).astype(np.float32))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """rna.h5ad (150 x 60 genes), adt.h5ad (120 x 8 proteins), a protein->gene CSV.

    Both files name their cells cell0, cell1, ... so the names overlap.
    """
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    genes = list(PROTEINS.values()) + [f"GENE{i}" for i in range(60 - len(PROTEINS))]
    proteins = list(PROTEINS)
    labels = np.array(["T", "B", "Mono"])
    # T: CD3E/CD4/CD8A, B: CD19/HLA-DRA, Mono: CD14/HLA-DRA/FCGR3A
    markers_rna = {0: [0, 1, 2], 1: [4, 6], 2: [3, 6, 7]}
    out = {}
    for name, n, features, markers in (
        ("rna", 150, genes, markers_rna),
        ("adt", 120, proteins, markers_rna),
    ):
        types = rng.integers(0, 3, n)
        adata = ad.AnnData(
            _counts(n, len(features), types, markers, rng),
            obs=pd.DataFrame(
                {"celltype": pd.Categorical(labels[types])}, index=[f"cell{i}" for i in range(n)]
            ),
            var=pd.DataFrame(index=features),
        )
        adata.layers["raw"] = adata.X.copy()
        path = root / f"{name}.h5ad"
        adata.write_h5ad(path)
        out[name] = path
    table = root / "table.csv"
    pd.DataFrame({"protein": proteins, "genes": list(PROTEINS.values())}).to_csv(table, index=False)
    out["table"] = table
    out["root"] = root
    return out


def _inputs(files):
    return ["--h5ad", f"rna={files['rna']}", "--h5ad", f"adt={files['adt']}"]


def _check_output(out, summary_path, n_rna=150, n_adt=120):
    mdata = md.read_h5mu(out)
    latent_dims = set()
    for m, n in (("rna", n_rna), ("adt", n_adt)):
        latent = mdata[m].obsm["X_scmodal"]
        assert latent.shape[0] == n
        assert np.isfinite(latent).all()
        latent_dims.add(latent.shape[1])
    assert len(latent_dims) == 1
    summary = json.loads(summary_path.read_text())
    assert summary["n_cells"] == {"rna": n_rna, "adt": n_adt}
    assert summary["modalities"] == ["rna", "adt"]
    assert summary["training"]["iterations"] == 20
    assert summary["training"]["train_seconds"] > 0
    assert "loss_total" in summary["final_losses"]
    assert summary["latent_key"] == "X_scmodal"
    return mdata, summary


def test_h5ad_table_links(files, tmp_path, capsys):
    before = ad.read_h5ad(files["adt"]).obs_names.tolist()
    out = tmp_path / "res" / "integrated.h5mu"
    code = main(
        ["integrate", *_inputs(files), "--links", "table", "--table", str(files["table"])]
        + ["--out", str(out), "--save-model", str(tmp_path / "model"), *FAST]
    )
    assert code == 0
    mdata, summary = _check_output(out, out.with_suffix(".json"))
    links = summary["links"]
    assert links["source"] == "table" and links["by"] == "table"
    assert links["n_linked_features"] == 8 and links["modalities"] == ["adt", "rna"]
    assert links["table"] == str(files["table"])
    assert summary["obs_names_prefixed"] is True
    assert mdata["rna"].obs_names[0] == "rna:cell0"
    assert mdata["adt"].obs["original_obs_name"].iloc[0] == "cell0"
    assert mdata["adt"].obsm["linked_rna"].shape == (120, 8)
    assert summary["inputs"]["h5ad"]["rna"] == str(files["rna"].resolve())
    assert (tmp_path / "model" / "model.pt").exists()
    assert summary["outputs"]["model"] == str((tmp_path / "model").resolve())
    # the input file is unchanged; --quiet prints nothing
    assert ad.read_h5ad(files["adt"]).obs_names.tolist() == before
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_names_links_layer_no_preprocess_and_progress_log(files, tmp_path, capsys):
    out = tmp_path / "names.h5mu"
    summary_path = tmp_path / "meta" / "summary.json"
    fast = [a for a in FAST if a != "--quiet"]
    code = main(
        ["integrate", *_inputs(files), "--links", "names", "--layer", "raw", "--no-preprocess"]
        + ["--out", str(out), "--summary", str(summary_path), *fast]
    )
    assert code == 0
    mdata, summary = _check_output(out, summary_path)
    assert summary["links"]["source"] == "names"
    assert summary["links"]["n_linked_features"] == 3  # CD4, CD14, CD19
    assert summary["preprocess"] is False and summary["layer"] == "raw"
    assert mdata["rna"].n_vars == 60  # not reduced to HVGs
    captured = capsys.readouterr()
    for step in ("Reading", "Linking", "Training", "Writing"):
        assert f"scmosaic: {step}" in captured.err
    assert "integrated rna 150, adt 120 cells" in captured.out
    # the CLI leaves no handler behind: library calls stay quiet
    assert logging.getLogger("scmosaic").handlers == []


def test_mudata_input_cca_from_labels(files, tmp_path):
    rna, adt = ad.read_h5ad(files["rna"]), ad.read_h5ad(files["adt"])
    rna.obs_names = [f"r{i}" for i in range(rna.n_obs)]
    extra = ad.AnnData(np.ones((5, 2), np.float32))
    md.MuData({"rna": rna, "adt": adt, "other": extra}).write(tmp_path / "in.h5mu")
    out = tmp_path / "cca.h5mu"
    code = main(
        ["integrate", "--mudata", str(tmp_path / "in.h5mu"), "--modalities", "rna", "adt"]
        + ["--links", "cca", "--cca-init", "labels", "--labels-key", "celltype"]
        + ["--out", str(out), *FAST]
    )
    assert code == 0
    mdata, summary = _check_output(out, out.with_suffix(".json"))
    assert set(mdata.mod) == {"rna", "adt"}
    links = summary["links"]
    assert links["source"] == "cca" and links["init"] == "labels"
    assert links["n_linked_features"] == 7  # capped: 8 proteins -> 7 components
    assert mdata["adt"].obsm["X_cca"].shape == (120, 7)
    assert summary["obs_names_prefixed"] is False


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--h5ad", "rna={missing}", "--h5ad", "adt={adt}"], "{missing}"),
        (["--h5ad", "rna={table}", "--h5ad", "adt={adt}"], "{table}"),
        (["--h5ad", "rna={bad}", "--h5ad", "adt={adt}"], "{bad}"),
        (["--mudata", "{rna}"], "{rna}"),
        (["--h5ad", "rna={rna}", "--h5ad", "adt={adt}", "--modalities", "rna", "prot"], "'prot'"),
        (["--h5ad", "rna={rna}", "--h5ad", "adt={adt}", "--layer", "nope"], "'nope'"),
    ],
    ids=["missing-file", "not-h5ad", "unreadable", "h5ad-as-mudata", "modality", "layer"],
)
def test_input_errors_exit_3(files, tmp_path, capsys, args, needle):
    bad = tmp_path / "broken.h5ad"
    bad.write_text("not hdf5")
    paths = {
        "missing": tmp_path / "nope.h5ad",
        "table": files["table"],
        "bad": bad,
        "rna": files["rna"],
        "adt": files["adt"],
    }
    args = [a.format(**paths) for a in args]
    code = main(
        ["integrate", *args, "--links", "table", "--table", str(files["table"])]
        + ["--out", str(tmp_path / "o.h5mu"), *FAST]
    )
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scmosaic: error: ")
    assert needle.format(**paths) in err[0]
    assert not (tmp_path / "o.h5mu").exists()


def test_data_errors_exit_3(files, tmp_path, capsys):
    base = ["integrate", *_inputs(files), "--out", str(tmp_path / "o.h5mu"), *FAST]
    assert main([*base, "--links", "table", "--table", str(tmp_path / "none.csv")]) == 3
    assert "none.csv" in capsys.readouterr().err
    assert main([*base, "--links", "cca", "--labels-key", "donor"]) == 3
    err = capsys.readouterr().err
    assert "'donor'" in err and "rna" in err
    bad_table = tmp_path / "bad.csv"
    pd.DataFrame({"x": ["CD3"], "y": ["CD3E"]}).to_csv(bad_table, index=False)
    assert main([*base, "--links", "table", "--table", str(bad_table)]) == 3
    assert "bad.csv" in capsys.readouterr().err
    # validation errors from scmosaic: nothing links by name
    unrelated = pd.DataFrame({"protein": ["CD3"], "genes": ["NOTAGENE"]})
    unrelated.to_csv(tmp_path / "unrelated.csv", index=False)
    assert main([*base, "--links", "table", "--table", str(tmp_path / "unrelated.csv")]) == 3
    assert "No feature of 'adt' links" in capsys.readouterr().err


def test_batch_key_makes_a_reference_that_map_extends(files, tmp_path, capsys):
    """integrate --batch-key --save-model writes a reference; map adds a new batch to it."""
    inputs = []
    for name, batches in (("rna", ["d1", "d2"]), ("adt", ["d1", "d3"])):
        adata = ad.read_h5ad(files[name])
        adata.obs["batch"] = [batches[i % 2] for i in range(adata.n_obs)]
        adata.write_h5ad(tmp_path / f"{name}.h5ad")
        inputs += ["--h5ad", f"{name}={tmp_path / f'{name}.h5ad'}"]
    out, reference = tmp_path / "integrated.h5mu", tmp_path / "reference"
    code = main(
        ["integrate", *inputs, "--table", str(files["table"]), "--batch-key", "batch"]
        + ["--out", str(out), "--save-model", str(reference), *FAST]
    )
    assert code == 0
    _, summary = _check_output(out, out.with_suffix(".json"))
    assert summary["batch_key"] == "batch"

    # the saved model is a reference: new RNA cells (files without the column) map onto it
    mapped = tmp_path / "mapped.h5mu"
    code = main(
        ["map", "--reference", str(reference), "--h5ad", f"rna={files['rna']}"]
        + ["--batch", "d9", "--out", str(mapped), *MAP_FAST]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads(mapped.with_suffix(".json").read_text())
    assert summary["batch_key"] == "batch" and summary["new_batches"] == ["d9"]
    latent = md.read_h5mu(mapped)["rna"].obsm["X_scmodal"]
    assert latent.shape[0] == 150 and np.isfinite(latent).all()


def test_missing_batch_key_column_exit_3(files, tmp_path, capsys):
    out = tmp_path / "o.h5mu"
    code = main(
        ["integrate", *_inputs(files), "--table", str(files["table"])]
        + ["--batch-key", "missing_column", "--out", str(out), *FAST]
    )
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scmosaic: error: ")
    # named by the model's registration: the modality and the column
    assert "registering the data" in err[0] and "'rna'" in err[0]
    assert ".obs['missing_column']" in err[0] and "batch_key" in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--links", "table", "--table", "t.csv"],  # no input
        ["--h5ad", "rna=a.h5ad", "--h5ad", "adt=b.h5ad", "--table", "t.csv"],  # no --out
        ["--h5ad", "rna=a.h5ad", "--h5ad", "adt=b.h5ad", "--out", "o.h5mu"],  # table w/o --table
        ["--mudata", "a.h5mu", "--links", "cca", "--out", "o.h5mu"],  # cca labels w/o key
        ["--h5ad", "rna", "--out", "o.h5mu", "--table", "t.csv"],  # not NAME=PATH
        ["--h5ad", "rna=a.h5ad", "--h5ad", "rna=b.h5ad", "--out", "o.h5mu", "--table", "t.csv"],
        ["--mudata", "a.h5mu", "--out", "o.h5mu", "--table", "t.csv", "--max-steps", "0"],
        ["--mudata", "a.h5mu", "--out", "o.h5mu", "--table", "t.csv", "--threads", "0"],
        ["--mudata", "a.h5mu", "--out", "o.h5mu", "--table", "t.csv", "--kind", "x=protein"],
        ["--mudata", "a.h5mu", "--out", "o.h5mu", "--table", "t.csv", "--modalities", "a", "a"],
        ["--h5ad", "rna=a.h5ad", "--out", "o.h5mu", "--table", "t.csv"],  # one modality
        ["--mudata", "a.h5mu", "--out", "o.h5mu", "--table", "t.csv", "--batch-key", ""],
    ],
)
def test_usage_errors_exit_2(args, capsys):
    assert main(["integrate", *args]) == 2
    assert "scmosaic integrate: error:" in capsys.readouterr().err


def test_option_errors_name_the_option(capsys):
    """Values are checked by WorkflowOptions, for both commands, before any work."""
    base = ["--mudata", "a.h5mu", "--out", "o.h5mu", "--table", "t.csv"]
    assert main(["integrate", *base, "--max-steps", "0"]) == 2
    assert "max_steps must be an integer >= 1" in capsys.readouterr().err
    assert main(["integrate", *base, "--kind", "x=protein"]) == 2
    assert "kinds['x'] must be one of 'rna', 'adt', 'atac'" in capsys.readouterr().err
    for steps in ("0", "-1"):
        assert main(["quickstart", "--max-steps", steps]) == 2
        err = capsys.readouterr().err
        assert "scmosaic quickstart: error: max_steps must be an integer >= 1" in err
        assert f"got {steps}" in err and "Traceback" not in err


def test_help_documents_options_and_exit_codes(capsys):
    assert main(["integrate", "--help"]) == 0
    text = capsys.readouterr().out
    expected = (
        ["--mudata", "--h5ad", "--modalities", "--batch-key", "--links", "--table"]
        + ["--cca-init", "--labels-key", "--preprocess", "--max-steps", "--preset", "--seed"]
        + ["--threads", "--accelerator", "--out", "--summary", "--save-model", "--quiet"]
        + ["--verbose"]
        + ["X_scmodal", "exit codes", "scmosaic integrate --h5ad"]
    )
    for option in expected:
        assert option in text


def test_bundled_hao_with_packaged_table(tmp_path):
    import scmosaic

    scmosaic.datasets.hao2021_pbmc_cite().write(tmp_path / "hao.h5mu")
    out = tmp_path / "hao_out.h5mu"
    code = main(
        ["integrate", "--mudata", str(tmp_path / "hao.h5mu"), "--table", "packaged"]
        + ["--out", str(out), *FAST]
    )
    assert code == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["n_cells"] == {"rna": 1200, "adt": 1200}
    # the default links: the packaged table's links beside 20 CCA scores refined from them
    assert summary["links"]["source"] == "table+cca"
    assert summary["links"]["prior"]["table"] == "packaged"
    assert summary["links"]["prior"]["n_linked_features"] > 50
    assert (
        summary["links"]["n_linked_features"] == summary["links"]["prior"]["n_linked_features"] + 20
    )
    assert md.read_h5mu(out)["adt"].obsm["X_scmodal"].shape[0] == 1200


@pytest.mark.slow
def test_quickstart_runs_the_readme_job(tmp_path):
    """The README's first command, with few iterations: outputs written, integration begun."""
    out = tmp_path / "qs"
    code = main(["quickstart", "--out", str(out), "--max-steps", "30", "--threads", "1"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iterations"] == 30
    # Measured at 30 iterations (seed 0): 0.666 / 0.217; untrained codes score near chance.
    assert metrics["label_transfer_mean"] >= 0.55
    assert metrics["foscttm_symmetric_euclidean"] <= 0.30
    assert (out / "umap.png").stat().st_size > 0
    assert (out / "integrated.h5mu").exists()


# ------------------------------------------------------------------ fast help, light parsing
def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "scmosaic", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage: scmosaic" in done.stdout and "integrate" in done.stdout


def test_parsing_and_usage_errors_import_no_heavy_library():
    """--help and usage errors come before torch, scvi-tools, scanpy or mudata load."""
    done = _python(
        """
        import sys
        from scmosaic.__main__ import main

        codes = [
            main(["--help"]),
            main(["integrate", "--help"]),
            main(["quickstart", "--max-steps", "0"]),
            main(["quickstart", "--preset", "fast"]),
            main(["integrate", "--mudata", "a.h5mu", "--out", "o.h5mu"]),  # no --table
            main(["integrate", "--mudata", "a.h5mu", "--table", "t.csv", "--out", "o.h5mu",
                  "--kind", "x=protein"]),
            main(["map", "--help"]),
            main(["map", "--reference", "r", "--h5ad", "rna=a.h5ad", "--out", "o.h5mu",
                  "--max-steps", "0"]),
        ]
        heavy = ("torch", "scvi", "lightning", "scanpy", "mudata", "anndata")
        print(codes, sorted(m for m in heavy if m in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 2, 2, 2, 2, 0, 2] []"


def test_package_loads_submodules_on_first_use():
    done = _python(
        """
        import sys
        import scmosaic

        assert "torch" not in sys.modules, "import scmosaic loaded torch"
        names = set(dir(scmosaic))
        assert set(scmosaic.__all__) <= names and "model" in names, names
        from scmosaic.workflow import WorkflowOptions

        WorkflowOptions(table="packaged")
        assert "torch" not in sys.modules, "the workflow's options loaded torch"
        from scmosaic import *  # noqa: F403

        print(SCMODAL.__name__, pp.preprocess.__name__, workflow.integrate.__name__,
              scmosaic.model.PRESETS["default"] is not None, scmosaic.__version__ != "")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "SCMODAL preprocess integrate True True"


def test_light_names_match_the_model_and_pp():
    """Preset names and modality kinds are read by the CLI from scmosaic._choices."""
    from typing import get_args

    from scmosaic._choices import Kind, PresetName
    from scmosaic.model import PRESETS
    from scmosaic.pp._preprocess import Kind as PreprocessKind

    assert set(get_args(PresetName)) == set(PRESETS)
    assert get_args(Kind) == get_args(PreprocessKind)


def test_command_prints_progress_and_results_only(files, tmp_path):
    """A fresh process: no scvi-tools INFO lines (in colour, on stdout), no library notices."""
    out = tmp_path / "o.h5mu"
    done = subprocess.run(
        [sys.executable, "-m", "scmosaic", "integrate", *_inputs(files), "--table"]
        + [str(files["table"]), "--out", str(out), "--max-steps", "2", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("integrated rna 150, adt 120 cells")
    assert len(done.stdout.strip().splitlines()) == 2
    assert "\x1b[" not in done.stdout + done.stderr  # no colour codes
    progress = done.stderr.strip().splitlines()
    assert progress and all(line.startswith("scmosaic: ") for line in progress), progress


# ------------------------------------------------------------------------ existing outputs
def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("existing", ["out", "summary", "model"])
def test_existing_output_is_refused_before_any_work(files, tmp_path, capsys, existing):
    paths = {"out": tmp_path / "o.h5mu", "summary": tmp_path / "s.json", "model": tmp_path / "m"}
    if existing == "model":
        paths["model"].mkdir()
        (paths["model"] / "model.pt").write_bytes(b"old")
    else:
        paths[existing].write_bytes(b"old")
    before = _listing(tmp_path)
    code = main(
        ["integrate", *_inputs(files), "--table", str(files["table"]), "--out", str(paths["out"])]
        + ["--summary", str(paths["summary"]), "--save-model", str(paths["model"]), *FAST]
    )
    assert code == 3
    err = capsys.readouterr().err
    assert err.startswith("scmosaic: error: output ") and str(paths[existing]) in err
    assert "--overwrite" in err
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("failing", ["mudata", "model"])
def test_failed_write_leaves_old_outputs_and_overwrite_replaces_them(
    files, tmp_path, capsys, monkeypatch, failing
):
    from mudata import MuData

    from scmosaic import SCMODAL

    out, model = tmp_path / "o.h5mu", tmp_path / "model"
    out.write_bytes(b"old")
    out.with_suffix(".json").write_text("old")
    model.mkdir()
    (model / "old.pt").write_bytes(b"old")
    args = ["integrate", *_inputs(files), "--table", str(files["table"]), "--out", str(out)]
    args += ["--save-model", str(model), "--overwrite", *FAST]

    def write_half_then_fail(self, path, *args, **kwargs):
        partial = Path(path)
        if failing == "model":  # SCMODAL.save writes a folder
            partial.mkdir()
            partial = partial / "model.pt"
        partial.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    target = SCMODAL if failing == "model" else MuData
    with monkeypatch.context() as patch:
        patch.setattr(target, "save" if failing == "model" else "write", write_half_then_fail)
        assert main(args) == 3
    err = capsys.readouterr().err
    assert f"cannot write {model if failing == 'model' else out}: No space left" in err
    # nothing half-written, nothing replaced: the h5mu and the model go into place together
    assert _listing(tmp_path) == ["model", "o.h5mu", "o.json"]
    assert out.read_bytes() == b"old" and out.with_suffix(".json").read_text() == "old"
    assert _listing(model) == ["old.pt"]

    assert main(args) == 0
    _check_output(out, out.with_suffix(".json"))
    assert _listing(model) == ["model.pt"]
    assert _listing(tmp_path) == ["model", "o.h5mu", "o.json"]


def test_quickstart_refuses_existing_outputs(tmp_path, capsys):
    folder = tmp_path / "qs"
    folder.mkdir()
    (folder / "metrics.json").write_text("old")
    (folder / "notes.txt").write_text("mine")  # other files in the folder do not matter
    assert main(["quickstart", "--out", str(folder)]) == 3
    err = capsys.readouterr().err
    assert f"output {folder / 'metrics.json'} already exists; pass --overwrite" in err
    assert (folder / "metrics.json").read_text() == "old"
    (tmp_path / "file").write_text("x")
    assert main(["quickstart", "--out", str(tmp_path / "file")]) == 3
    assert "is a file" in capsys.readouterr().err


def test_quickstart_failed_write_leaves_nothing_and_overwrite_works(tmp_path, capsys, monkeypatch):
    from mudata import MuData

    from scmosaic import _quickstart

    folder = tmp_path / "qs"
    folder.mkdir()
    (folder / "metrics.json").write_text("old")
    # the UMAP itself is checked by the slow README test; here any PNG will do
    monkeypatch.setattr(
        _quickstart, "_plot_umap", lambda result, path, seed: path.write_bytes(b"png")
    )
    args = ["quickstart", "--out", str(folder), "--max-steps", "2", "--threads", "1"]
    args += ["--overwrite", "--quiet"]

    def write_half_then_fail(self, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(MuData, "write", write_half_then_fail)
        assert main(args) == 3
    assert f"cannot write {folder / 'integrated.h5mu'}" in capsys.readouterr().err
    assert _listing(folder) == ["metrics.json"]
    assert (folder / "metrics.json").read_text() == "old"

    assert main(args) == 0
    assert _listing(folder) == ["integrated.h5mu", "metrics.json", "umap.png"]
    assert json.loads((folder / "metrics.json").read_text())["iterations"] == 2
    assert md.read_h5mu(folder / "integrated.h5mu")["rna"].obsm["X_scmodal"].shape[0] == 800


# ------------------------------------------------------------------------ scmosaic map
MAP_FAST = ["--max-steps", "20", "--threads", "1", "--quiet"]


def _query_file(path, seed, batch=True, drop=0):
    """An RNA or ADT query of make_mosaic(seed) as integer counts; batches "q_r"/"q_p"."""
    name = path.stem
    adata = make_mosaic(seed=seed)[name].copy()
    adata.X = sparse.csr_matrix(np.round(adata.X.toarray() * 3))
    if batch:
        adata.obs["batch"] = "q_" + adata.obs["batch"].astype(str)
    else:
        del adata.obs["batch"]
    adata[:, drop:].copy().write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def mapping(tmp_path_factory):
    """A small reference trained with batch_key="batch" (saved), and query .h5ad files."""
    from scmosaic import SCMODAL

    root = tmp_path_factory.mktemp("map")
    mdata = make_mosaic()
    SCMODAL.setup_mudata(
        mdata, ["rna", "adt"], links=[("rna", "adt", "linked", "linked")], batch_key="batch"
    )
    model = SCMODAL(mdata, n_latent=4, n_hidden=32, n_hidden_discriminator=32)
    model.train(
        max_steps=20,
        batch_size=32,
        enable_progress_bar=False,
        iterations_per_epoch=10,
        accelerator="cpu",
    )
    model.save(str(root / "reference"))
    return {
        "root": root,
        "reference": root / "reference",
        "rna": _query_file(root / "rna.h5ad", seed=1, drop=3),
        "adt": _query_file(root / "adt.h5ad", seed=2, batch=False),
    }


def test_map_h5ad_onto_reference(mapping, tmp_path, capsys):
    out = tmp_path / "res" / "mapped.h5mu"
    args = ["map", "--reference", str(mapping["reference"]), "--h5ad", f"rna={mapping['rna']}"]
    args += ["--out", str(out), "--save-model", str(tmp_path / "query_model"), *MAP_FAST[:-1]]
    assert main(args) == 0
    mdata = md.read_h5mu(out)
    assert list(mdata.mod) == ["rna"]
    latent = mdata["rna"].obsm["X_scmodal"]
    assert latent.shape == (120, 4) and np.isfinite(latent).all()
    assert mdata["rna"].n_vars == 30  # the reference's features, the 3 dropped ones as zeros
    assert mdata.uns["scmosaic_query"]["rna"]["missing"] == 3
    assert "counts" in mdata["rna"].layers  # preprocessed
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["reference"] == str(mapping["reference"].resolve())
    assert summary["inputs"]["h5ad"]["rna"] == str(mapping["rna"].resolve())
    assert summary["modalities"] == ["rna"] and summary["n_cells"] == {"rna": 120}
    assert summary["n_features"] == {"rna": 30} and summary["features_missing"] == {"rna": 3}
    assert summary["batch_key"] == "batch" and sorted(summary["new_batches"]) == ["q_p", "q_r"]
    assert summary["training"]["iterations"] == 20 and summary["training"]["train_seconds"] > 0
    assert summary["latent_key"] == "X_scmodal" and summary["scmosaic_version"]
    assert summary["outputs"]["model"] == str((tmp_path / "query_model").resolve())
    assert (tmp_path / "query_model" / "model.pt").exists()
    captured = capsys.readouterr()
    assert captured.out.startswith("mapped rna 120 cells onto ")
    assert "2 new batches: q_p, q_r" in captured.out


def test_map_batch_label_for_a_file_without_the_column(mapping, tmp_path, capsys):
    out = tmp_path / "adt.h5mu"
    base = ["map", "--reference", str(mapping["reference"]), "--h5ad", f"adt={mapping['adt']}"]
    base += ["--out", str(out), *MAP_FAST]
    assert main(base) == 3
    err = capsys.readouterr().err
    assert "modality 'adt'" in err and ".obs['batch']" in err and "--batch" in err
    assert not out.exists()
    assert main([*base, "--batch", "donor7"]) == 0
    mdata = md.read_h5mu(out)
    assert mdata["adt"].obsm["X_scmodal"].shape == (120, 4)
    assert set(mdata["adt"].obs["batch"]) == {"donor7"}
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["new_batches"] == ["donor7"] and summary["batch"] == "donor7"
    assert ad.read_h5ad(mapping["adt"]).obs.columns.tolist() == ["celltype", "cell_id"]


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing-reference", "reference folder not found: {missing}"),
        ("no-model", "no saved model in reference folder {empty}"),
        ("unknown-modality", "modality 'prot'"),
        ("existing-output", "output {out} already exists"),
    ],
)
def test_map_input_errors_exit_3(mapping, tmp_path, capsys, case, needle):
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "out": tmp_path / "o.h5mu"}
    paths["empty"].mkdir()
    reference = {"missing-reference": paths["missing"], "no-model": paths["empty"]}.get(
        case, mapping["reference"]
    )
    name = "prot" if case == "unknown-modality" else "rna"
    if case == "existing-output":
        paths["out"].write_bytes(b"old")
    before = _listing(tmp_path)
    code = main(
        ["map", "--reference", str(reference), "--h5ad", f"{name}={mapping['rna']}"]
        + ["--out", str(paths["out"]), *MAP_FAST]
    )
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scmosaic: error: ")
    assert needle.format(**paths) in err[0]
    assert _listing(tmp_path) == before
    if case == "existing-output":
        assert paths["out"].read_bytes() == b"old"


def test_map_reference_without_batch_key_or_shared_features_exit_3(mapping, tmp_path, capsys):
    from scmosaic import SCMODAL

    mdata = make_mosaic(n_per_batch=20)
    SCMODAL.setup_mudata(mdata, ["rna", "adt"], links=[("rna", "adt", "linked", "linked")])
    model = SCMODAL(mdata, n_latent=4, n_hidden=32, n_hidden_discriminator=32)
    model.train(max_steps=1, batch_size=16, enable_progress_bar=False, accelerator="cpu")
    model.save(str(tmp_path / "no_batch"))
    query = ["--h5ad", f"rna={mapping['rna']}", "--out", str(tmp_path / "o.h5mu"), *MAP_FAST]
    assert main(["map", "--reference", str(tmp_path / "no_batch"), *query]) == 3
    err = capsys.readouterr().err
    assert f"reference {tmp_path / 'no_batch'} was trained without a batch key" in err
    # a modality named as the reference's but with other features
    adt_as_rna = ["--h5ad", f"rna={mapping['adt']}", "--batch", "x"]
    args = ["map", "--reference", str(mapping["reference"]), *adt_as_rna]
    assert main([*args, "--out", str(tmp_path / "o.h5mu"), *MAP_FAST]) == 3
    assert "Query modality 'rna' shares no feature with the reference" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--h5ad", "rna=q.h5ad", "--out", "o.h5mu"],  # no --reference
        ["--reference", "r", "--h5ad", "rna=q.h5ad"],  # no --out
        ["--reference", "r", "--out", "o.h5mu"],  # no input
        ["--reference", "r", "--h5ad", "rna=q.h5ad", "--out", "o.h5mu", "--max-steps", "0"],
        ["--reference", "r", "--h5ad", "rna=q.h5ad", "--out", "o.h5mu", "--modalities"],
        ["--reference", "r", "--mudata", "q.h5mu", "--out", "o.h5mu", "--modalities", "a", "a"],
        ["--reference", "r", "--h5ad", "rna=q.h5ad", "--out", "o.h5mu", "--no-preprocess"]
        + ["--layer", "counts"],
    ],
)
def test_map_usage_errors_exit_2(args, capsys):
    assert main(["map", *args]) == 2
    assert "scmosaic map: error:" in capsys.readouterr().err


def test_map_help_documents_options_and_exit_codes(capsys):
    from scmosaic.model._presets import QUERY_MAX_STEPS

    assert main(["map", "--help"]) == 0
    text = capsys.readouterr().out
    expected = ["--reference", "--mudata", "--h5ad", "--modalities", "--batch", "--preprocess"]
    expected += ["--max-steps", "--seed", "--accelerator", "--out", "--summary", "--save-model"]
    expected += ["--overwrite", "--verbose", "X_scmodal", "scmosaic_query", "exit codes"]
    expected += ["scmosaic map --reference", f"(default: {QUERY_MAX_STEPS})"]
    for option in expected:
        assert option in text
    assert "--preset" not in text
