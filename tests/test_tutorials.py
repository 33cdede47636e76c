"""Execute the tutorial notebooks with short training so they cannot silently rot."""

from pathlib import Path

import pytest
from conftest import SHARED_DATA, shared_file

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.ipynb"))

# Tutorials that read data from ../shared/data rather than the bundled subset.
SHARED_INPUTS = {
    "rna_atac_gene_activity": ("muon_multiome_pbmc_tiny", "test_rna_atac.h5mu"),
    "mosaic_batches_pairs": ("midas_hao2021_pbmc_mosaic", "quickstart_pbmc_mosaic.h5mu"),
    "query_mapping": ("midas_hao2021_pbmc_mosaic", "quickstart_pbmc_mosaic.h5mu"),
}


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_executes(path, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if path.stem in SHARED_INPUTS:
        shared_file(*SHARED_INPUTS[path.stem])  # skips when the data are absent
        monkeypatch.setenv("SCMOSAIC_SHARED_DATA", str(SHARED_DATA))
    monkeypatch.setenv("SCMOSAIC_TUTORIAL_STEPS", "50")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    errors = [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    images = [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    assert len(images) >= 3  # e.g. training curves, joint UMAP, a diagnostic plot
