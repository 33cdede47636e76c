"""Read step: input files in, one MuData of the two modalities to integrate out."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._mudata import new_mudata, read_mudata
from ._errors import InputError, OptionsError, as_input_error
from ._options import PACKAGED_TABLE, WorkflowOptions

if TYPE_CHECKING:
    from mudata import MuData

logger = logging.getLogger(__name__)

ORIGINAL_OBS_NAME_KEY = "original_obs_name"
"""``.obs`` column that keeps a cell's name from its file when names were prefixed."""


def check_file(path: Path, suffixes: Sequence[str], what: str, hint: str = "") -> None:
    """Raise :class:`InputError` unless ``path`` is an existing file with one of ``suffixes``."""
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if not path.is_file():
        raise InputError(f"{what} is not a file: {path}")
    if path.suffix.lower() not in suffixes:
        raise InputError(
            f"{what} {path} is not a {'/'.join(suffixes)} file{'; ' + hint if hint else ''}"
        )


@dataclass(frozen=True)
class InputFiles:
    """The files a run reads: one ``.h5mu`` or one ``.h5ad`` per modality, checked to exist."""

    mudata: Path | None
    h5ad: dict[str, Path]

    @classmethod
    def check(
        cls,
        mudata: str | PathLike[str] | None = None,
        h5ad: Mapping[str, str | PathLike[str]] | None = None,
    ) -> InputFiles:
        """The input files, checked before anything is read.

        Raises
        ------
        OptionsError
            Both or neither of ``mudata`` and ``h5ad``, or fewer than two ``h5ad`` files.
        InputError
            A file is missing or has the wrong suffix.
        """
        if (mudata is None) == (not h5ad):
            raise OptionsError("give either mudata (one .h5mu) or h5ad files (one per modality)")
        if mudata is not None:
            path = Path(mudata)
            check_file(path, (".h5mu",), "input", "use h5ad files (--h5ad NAME=PATH)")
            return cls(path, {})
        paths = {str(name): Path(p) for name, p in h5ad.items()}
        if len(paths) < 2:
            raise OptionsError(
                f"give at least two h5ad files (--h5ad NAME=PATH), got {list(paths)}"
            )
        for name, path in paths.items():
            check_file(path, (".h5ad",), f"input file of {name!r}")
        return cls(None, paths)

    @property
    def name(self) -> str:
        """How messages name the input."""
        return str(self.mudata) if self.mudata is not None else "the h5ad files"

    def describe(self) -> dict[str, Any]:
        """The ``inputs`` entry of the run summary (absolute paths)."""
        if self.mudata is not None:
            return {"mudata": str(self.mudata.resolve())}
        return {"h5ad": {m: str(p.resolve()) for m, p in self.h5ad.items()}}


def check_table_file(table: Any) -> None:
    """Check a CSV ``table`` before the heavy work: it exists and reads as a protein table."""
    from ..pp import load_adt_gene_table

    if not isinstance(table, str | PathLike) or str(table) == PACKAGED_TABLE:
        return  # the packaged table or a mapping: nothing to read
    path = Path(table)
    check_file(path, (".csv", ".tsv", ".txt"), "table")
    with as_input_error(f"table {path}"):
        load_adt_gene_table(path)


def _read_files(files: InputFiles) -> dict[str, Any]:
    """Every modality of the input files as an AnnData."""
    import anndata as ad

    if files.mudata is not None:
        logger.info("Reading %s", files.mudata)
        try:
            mdata = read_mudata(files.mudata)
        except Exception as err:  # h5py, anndata and mudata raise many kinds
            raise InputError(f"cannot read {files.mudata} as .h5mu: {err}") from err
        if not mdata.mod:
            raise InputError(f"{files.mudata} holds no modality")
        return dict(mdata.mod)
    adatas = {}
    for name, path in files.h5ad.items():
        logger.info("Reading %s=%s", name, path)
        try:
            adatas[name] = ad.read_h5ad(path)
        except Exception as err:
            raise InputError(f"cannot read {path} as .h5ad: {err}") from err
    return adatas


def _check_modality(name: str, adata: Any, where: Path, options: WorkflowOptions) -> None:
    """The modality is not empty and has the layer and labels the options ask for."""
    if adata.n_obs < 2 or adata.n_vars < 1:
        raise InputError(f"modality {name!r} ({where}) is empty: {adata.shape}")
    if options.layer is not None and options.layer not in adata.layers:
        raise InputError(
            f"layer {options.layer!r} not in modality {name!r} ({where}); "
            f"it has {list(adata.layers)}"
        )
    needs_labels = options.link_prior is None  # CCA from labels
    if needs_labels and options.labels_key not in adata.obs:
        raise InputError(
            f"labels key {options.labels_key!r} not in .obs of modality {name!r} "
            f"({where}); it has {list(adata.obs.columns)}"
        )


def _unique_obs_names(adatas: dict[str, Any], files: InputFiles) -> bool:
    """Make obs names unique within each modality and, if they overlap, across modalities.

    Cells of separate .h5ad files are different cells: names that overlap are prefixed with
    ``"<modality>:"`` (originals kept in ``.obs["original_obs_name"]``). Only the objects in
    memory change, never the files. Returns whether names were prefixed.
    """
    for name, adata in adatas.items():
        if not adata.obs_names.is_unique:
            logger.warning("Duplicate obs names in %s (%s) made unique", name, files.h5ad[name])
            adata.obs_names_make_unique()
    seen: set[str] = set()
    overlap = False
    for adata in adatas.values():
        names = set(adata.obs_names)
        overlap |= not seen.isdisjoint(names)
        seen |= names
    if overlap:
        logger.info("Cell names overlap across files: prefixing them with '<modality>:'")
        for name, adata in adatas.items():
            adata.obs[ORIGINAL_OBS_NAME_KEY] = adata.obs_names.to_numpy()
            adata.obs_names = [f"{name}:{cell}" for cell in adata.obs_names]
    return overlap


def read(files: InputFiles, options: WorkflowOptions) -> tuple[MuData, bool]:
    """Read step: the two modalities to integrate as one MuData.

    Parameters
    ----------
    files
        The input files (:meth:`InputFiles.check`).
    options
        The run's options: ``modalities``, and the ``layer`` and ``labels_key`` each
        modality must have.

    Returns
    -------
    The MuData of the two modalities (in the order of ``options.modalities``) and whether
    cell names of ``.h5ad`` files were prefixed with ``"<modality>:"`` because they overlap.

    Raises
    ------
    InputError
        An unreadable file, a missing modality, layer or labels key, an empty modality.
    """

    adatas = _read_files(files)
    modalities = options.pair(adatas, files.name)
    adatas = {m: adatas[m] for m in modalities}
    for m, adata in adatas.items():
        _check_modality(m, adata, files.mudata or files.h5ad[m], options)
    renamed = _unique_obs_names(adatas, files) if files.mudata is None else False
    return new_mudata(adatas), renamed
