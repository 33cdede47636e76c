"""The workflow's options and steps that need no training: checks, link step, file checks."""

from __future__ import annotations

import dataclasses
import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from mudata import MuData
from scipy import sparse

from scmosaic.workflow import (
    InputError,
    InputFiles,
    OptionsError,
    OutputFiles,
    WorkflowOptions,
    link,
    preprocess,
)
from scmosaic.workflow._link import block_weights

# shared feature names (CD4, CD19) are what name links need
pytestmark = pytest.mark.filterwarnings("ignore:var_names are not unique")
VALID = {"table": "packaged"}


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        ({"max_steps": 0}, ["max_steps", ">= 1", "None", "got 0"]),
        ({"max_steps": 2.5}, ["max_steps", ">= 1", "got 2.5"]),
        ({"max_steps": True}, ["max_steps", "got True"]),
        ({"cca_components": 0}, ["cca_components", ">= 1", "got 0"]),
        ({"n_top_genes": -5}, ["n_top_genes", ">= 1", "None (all)", "got -5"]),
        ({"threads": 0}, ["threads", ">= 1", "got 0"]),
        ({"seed": -1}, ["seed", ">= 0", "got -1"]),
        ({"links": "shared"}, ["links", "'table', 'names', 'cca', 'table+cca'", "'shared'"]),
        ({"cca_init": "pca"}, ["cca_init", "'labels', 'links'", "'pca'"]),
        ({"preset": "fast"}, ["preset", "'default', 'reference'", "'fast'"]),
        ({"accelerator": "tpu"}, ["accelerator", "'auto', 'cpu', 'gpu'", "'tpu'"]),
        ({"kinds": {"prot": "protein"}}, ["kinds['prot']", "'rna', 'adt', 'atac'", "'protein'"]),
        ({"modalities": ("rna", "rna")}, ["modalities", "two different"]),
        ({"modalities": ("rna", "adt", "atac")}, ["modalities", "two different"]),
        ({"modalities": "ra"}, ["modalities", "two different"]),
        ({"preprocess": "yes"}, ["preprocess", "True or False"]),
        ({"progress_bar": 1}, ["progress_bar", "True or False"]),
        ({"layer": ""}, ["layer", "non-empty string"]),
        ({"batch_key": ""}, ["batch_key", "non-empty string or None", "got ''"]),
        ({"batch_key": 3}, ["batch_key", "non-empty string or None", "got 3"]),
        ({"table": 3}, ["table", "CSV path", "'packaged'", "int"]),
        ({"table": None}, ["links='table+cca' needs table", "'packaged'"]),
        ({"table": None, "links": "table+cca"}, ["links='table+cca' needs table"]),
        ({"links": "cca", "labels_key": None}, ["cca_init='labels' needs labels_key"]),
        ({"link_kwargs": {"by": "names"}}, ["link_kwargs", "['by']"]),
    ],
)
def test_bad_option_names_itself_and_what_it_accepts(changes, needles):
    with pytest.raises(OptionsError) as info:
        WorkflowOptions(**{**VALID, **changes})
    for needle in needles:
        assert needle in str(info.value)


def test_options_are_normalised_frozen_and_rechecked_by_replace():
    options = WorkflowOptions(
        modalities=["rna", "adt"], table="packaged", kinds={"rna": "rna"}, max_steps=5
    )
    assert options.modalities == ("rna", "adt")
    assert options.max_steps == 5 and options.preset == "default"
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_steps = 10
    assert dataclasses.replace(options, max_steps=None).max_steps is None
    with pytest.raises(OptionsError, match="max_steps"):
        dataclasses.replace(options, max_steps=-3)
    # a CCA prior without a table links by names; with labels no table is needed at all
    assert WorkflowOptions(links="cca", cca_init="links").table is None
    assert WorkflowOptions(links="cca", labels_key="celltype").labels_key == "celltype"


def test_pair_and_kind_of_check_against_the_data():
    options = WorkflowOptions(table="packaged", kinds={"protein_panel": "adt"})
    assert options.pair(["rna", "adt"]) == ("rna", "adt")
    with pytest.raises(InputError, match=r"has 3 modalities .*--modalities"):
        options.pair(["rna", "adt", "atac"], "in.h5mu")
    chosen = dataclasses.replace(options, modalities=("rna", "prot"))
    with pytest.raises(InputError, match=r"modality 'prot' is not in in\.h5mu"):
        chosen.pair(["rna", "adt"], "in.h5mu")
    assert options.kind_of("protein_panel") == "adt"
    assert options.kind_of("gex") == "rna"
    with pytest.raises(InputError, match=r"kind of modality 'panel'.*--kind panel=adt"):
        options.kind_of("panel")


def _cells(n_cells, features, rng, prefix):
    counts = sparse.csr_matrix(rng.poisson(2.0, (n_cells, len(features))).astype(np.float32))
    obs = pd.DataFrame(
        {"celltype": pd.Categorical(rng.choice(["T", "B"], n_cells))},
        index=[f"{prefix}{i}" for i in range(n_cells)],
    )
    return ad.AnnData(counts, obs=obs, var=pd.DataFrame(index=features))


@pytest.fixture
def mdata():
    rng = np.random.default_rng(0)
    genes = ["CD3E", "CD4", "CD19", "MS4A1"] + [f"G{i}" for i in range(26)]
    return MuData(
        {
            "rna": _cells(40, genes, rng, "r"),
            "adt": _cells(30, ["CD3", "CD4", "CD19", "CD20"], rng, "a"),
        }
    )


def test_link_step_table_names_and_cca(mdata):
    table = {"CD3": "CD3E", "CD4": "CD4", "CD19": "CD19", "CD20": "MS4A1"}
    options = WorkflowOptions(links="table", table=table, link_kwargs={"smooth_neighbors": 0})
    linked = link(mdata, options)
    assert linked.modalities == ("rna", "adt") and linked.spec == ("rna", "adt")
    assert linked.info["modalities"] == ["adt", "rna"]  # the protein side first
    assert linked.info["n_linked_features"] == 4 and linked.info["table"] == table
    assert mdata["adt"].obsm["linked_rna"].shape == (30, 4)
    assert (linked.report["status"] == "linked").sum() == 4

    names = link(mdata, WorkflowOptions(links="names"))
    assert names.info["source"] == "names" and names.info["n_linked_features"] == 2  # CD4, CD19

    cca = link(mdata, WorkflowOptions(links="cca", labels_key="celltype", cca_components=50))
    assert cca.spec == ("rna", "adt", "X_cca", "X_cca")
    assert cca.report is None and "prior" not in cca.info
    assert cca.info["n_linked_features"] == 3  # capped: 4 proteins -> 3 components
    assert mdata["rna"].obsm["X_cca"].shape == (40, 3)


@pytest.mark.parametrize("source", ["table+cca", "names+cca"])
def test_link_step_keeps_links_beside_their_cca_scores(mdata, source):
    table = {"CD3": "CD3E", "CD4": "CD4", "CD19": "CD19", "CD20": "MS4A1"}
    options = WorkflowOptions(
        links=source, table=table if source == "table+cca" else None, cca_components=2
    )
    linked = link(mdata, options)
    assert linked.spec == ("rna", "adt", "X_linked_cca", "X_linked_cca")
    assert linked.info["source"] == source and linked.info["init"] == "links"
    assert linked.info["prior"]["source"] == source.removesuffix("+cca")
    for m, other in (("rna", "adt"), ("adt", "rna")):
        obsm = mdata[m].obsm
        links, scores = obsm[f"linked_{other}"], obsm["X_cca"]
        both = obsm["X_linked_cca"]
        assert list(both.columns) == [*links.columns, *scores.columns]
        w_links, w_scores = block_weights(links.shape[1], 2)
        np.testing.assert_allclose(both.to_numpy(), np.hstack([links * w_links, scores * w_scores]))
    assert linked.info["n_linked_features"] == linked.info["prior"]["n_linked_features"] + 2


@pytest.mark.parametrize(
    ("links", "link_kwargs", "smoothed"),
    [
        # links that only choose CCA's pivots: both sides smoothed
        ("cca", {}, ("adt", "rna")),
        # links also trained on: the gene side only, as pp.link_features does by default
        ("table+cca", {}, ("rna",)),
        ("table", {}, ("rna",)),
        # the user's choice wins
        ("cca", {"smooth_modalities": "rna"}, ("rna",)),
    ],
)
def test_table_links_smoothed_on_both_sides_where_they_only_choose_pivots(
    mdata, links, link_kwargs, smoothed
):
    import scmosaic

    table = {"CD3": "CD3E", "CD4": "CD4", "CD19": "CD19", "CD20": "MS4A1"}
    expected = mdata.copy()
    scmosaic.pp.link_features(expected, "adt", "rna", table=table, smooth_modalities=smoothed)
    init = {"cca_init": "links"} if links == "cca" else {}
    options = WorkflowOptions(
        links=links, table=table, cca_components=2, link_kwargs=link_kwargs, **init
    )
    link(mdata, options)
    for m, other in (("rna", "adt"), ("adt", "rna")):
        key = f"linked_{other}"
        np.testing.assert_allclose(mdata[m].obsm[key], expected[m].obsm[key])


@pytest.mark.parametrize(("n_links", "n_scores"), [(95, 20), (13, 20), (1, 1), (4, 2)])
def test_block_weights_give_links_and_scores_equal_shares(n_links, n_scores):
    w_links, w_scores = block_weights(n_links, n_scores)
    # z-scored columns: each block then holds half of the expected squared norm
    assert w_links**2 * n_links == pytest.approx(w_scores**2 * n_scores)
    assert w_links**2 * n_links + w_scores**2 * n_scores == pytest.approx(n_links + n_scores)


def test_cca_components_default_depends_on_the_link_source():
    assert WorkflowOptions(links="cca", labels_key="celltype").n_cca_components == 10
    assert WorkflowOptions(links="table+cca", table="packaged").n_cca_components == 20
    assert WorkflowOptions(links="names+cca").n_cca_components == 20
    assert WorkflowOptions(links="names+cca", cca_components=3).n_cca_components == 3
    assert WorkflowOptions(table="packaged").n_cca_components == 20  # the default: table+cca
    assert WorkflowOptions(links="table", table="packaged").n_cca_components is None


def test_link_step_errors_are_input_errors(mdata):
    unknown = WorkflowOptions(table="packaged", modalities=("rna", "adt"), kinds={"adt": "rna"})
    with pytest.raises(InputError, match="exactly one protein"):
        link(mdata, unknown)
    with pytest.raises(InputError, match=r"linking adt and rna by table: No feature"):
        link(mdata, WorkflowOptions(table={"CD3": "NOTAGENE"}))


def test_preprocess_step_follows_the_options(mdata):
    assert preprocess(mdata, WorkflowOptions(table="packaged", preprocess=False)) is mdata
    processed = preprocess(mdata, WorkflowOptions(table="packaged", n_top_genes=10))
    assert processed["rna"].n_vars == 10 and processed["adt"].n_vars == 4
    assert "counts" in processed["rna"].layers


def test_input_and_output_files_are_checked_before_reading(tmp_path):
    with pytest.raises(OptionsError, match="either mudata"):
        InputFiles.check()
    with pytest.raises(OptionsError, match="either mudata"):
        InputFiles.check(tmp_path / "a.h5mu", {"rna": tmp_path / "r.h5ad"})
    with pytest.raises(OptionsError, match="at least two h5ad"):
        InputFiles.check(h5ad={"rna": tmp_path / "r.h5ad"})
    with pytest.raises(InputError, match="not found"):
        InputFiles.check(tmp_path / "missing.h5mu")
    (tmp_path / "r.h5ad").write_text("x")
    with pytest.raises(InputError, match=r"input file of 'adt' not found"):
        InputFiles.check(h5ad={"rna": tmp_path / "r.h5ad", "adt": tmp_path / "a.h5ad"})
    with pytest.raises(InputError, match="must end with .h5mu"):
        OutputFiles.check(tmp_path / "out.h5ad")
    outputs = OutputFiles.check(tmp_path / "sub" / "out.h5mu")
    assert outputs.summary == tmp_path / "sub" / "out.json" and outputs.model is None
    assert not (tmp_path / "sub").exists()  # folders only when the run starts
    outputs.make_folders()
    assert (tmp_path / "sub").is_dir()


def test_existing_outputs_are_refused_unless_overwrite(tmp_path):
    out = tmp_path / "out.h5mu"
    out.write_bytes(b"old")
    with pytest.raises(InputError, match=r"output .*out\.h5mu already exists; pass --overwrite"):
        OutputFiles.check(out)
    assert OutputFiles.check(out, overwrite=True).mudata == out
    (tmp_path / "out.json").write_text("{}")
    with pytest.raises(InputError, match=r"outputs .*out\.h5mu, .*out\.json already exist"):
        OutputFiles.check(out)
    model = tmp_path / "model"
    model.mkdir()  # an empty folder replaces nothing
    assert OutputFiles.check(tmp_path / "new.h5mu", save_model=model).model == model
    (model / "model.pt").write_bytes(b"old")
    with pytest.raises(InputError, match=r"output .*model already exists"):
        OutputFiles.check(tmp_path / "new.h5mu", save_model=model)
    with pytest.raises(InputError, match="is a folder"):
        OutputFiles.check(tmp_path / "new.h5mu", summary=model, overwrite=True)
    with pytest.raises(InputError, match="is a file"):
        OutputFiles.check(tmp_path / "new.h5mu", save_model=out, overwrite=True)


def test_replace_on_success_moves_outputs_into_place_only_when_written(tmp_path):
    from scmosaic.workflow._write import replace_on_success

    file, folder = tmp_path / "a.h5mu", tmp_path / "model"
    file.write_bytes(b"old")
    folder.mkdir()
    (folder / "old.pt").write_bytes(b"old")
    for failure in (RuntimeError("mid-write"), KeyboardInterrupt()):
        with pytest.raises(type(failure)), replace_on_success(file, folder, None) as staged:
            new_file, new_folder, nothing = staged
            assert new_file.parent == tmp_path and new_file.suffix == ".h5mu"
            assert nothing is None
            new_file.write_bytes(b"partial")
            new_folder.mkdir()
            raise failure
        # the old outputs are untouched and no temporary is left behind
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5mu", "model"]
        assert file.read_bytes() == b"old" and os.listdir(folder) == ["old.pt"]

    with replace_on_success(file, folder) as (new_file, new_folder):
        new_file.write_bytes(b"new")
        new_folder.mkdir()
        (new_folder / "model.pt").write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5mu", "model"]
    assert file.read_bytes() == b"new" and os.listdir(folder) == ["model.pt"]


def test_every_public_name_loads_on_first_use():
    import scmosaic
    from scmosaic import workflow

    for package in (scmosaic, workflow):
        assert set(package.__all__) <= set(dir(package))
        for name in package.__all__:
            assert getattr(package, name) is not None, name
    assert workflow.OutputFiles.__module__ == "scmosaic.workflow._write"
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        workflow.nothing  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        scmosaic.nothing  # noqa: B018
