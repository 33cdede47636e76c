"""The bundled Hao et al. 2021 PBMC CITE-seq subset."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

from mudata import MuData

from .._mudata import read_mudata

_FILE = "hao2021_pbmc_cite_subset.h5mu"


def hao2021_pbmc_cite(path: str | Path | None = None) -> MuData:
    """Hao et al. 2021 PBMC CITE-seq subset: 1,600 cells, 500 genes, 224 ADTs.

    Four donors at day 0 (400 cells each, stratified by cell type): ``p1_0`` has RNA only,
    ``p2_0`` ADT only, ``p3_0`` and ``p4_0`` both (800 paired cells). Raw counts (CSR);
    level-1 labels in ``.obs["celltype"]`` (8 types) and batches in ``.obs["batch"]`` of each
    modality. Bundled with the package, so no download is needed.

    Source: the MIDAS quick-start file (``labomics/midas``,
    ``src/scmidas/data/quickstart_pbmc_mosaic.h5mu``, MIT licence, He et al., Nat. Biotechnol.
    2024), built from Hao Y. et al. "Integrated analysis of multimodal single-cell data",
    Cell 184:3573 (2021), GEO GSE164378.

    Parameters
    ----------
    path
        Read this file instead of the bundled copy.

    Returns
    -------
    MuData with modalities ``"rna"`` (1,200 x 500) and ``"adt"`` (1,200 x 224).

    Examples
    --------
    >>> mdata = scmosaic.datasets.hao2021_pbmc_cite()
    >>> mdata["adt"].obs["celltype"].value_counts()
    """
    if path is not None:
        return read_mudata(path)
    with as_file(files("scmosaic.datasets").joinpath("data", _FILE)) as bundled:
        return read_mudata(bundled)
