"""The ``scmosaic map`` job: new cells mapped onto a saved reference model, files in and out.

The steps: check the paths (before anything heavy is imported), read the reference's batch
key and modalities, read the query files, label batches, preprocess, then the model's query
mapping (:meth:`~scmosaic.SCMODAL.prepare_query_mudata`,
:meth:`~scmosaic.SCMODAL.load_query_data`, a short training of the new batches' offsets
and adapters) and the latent codes; the outputs are written as ``scmosaic integrate`` writes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from .._choices import Kind
from ._errors import InputError, OptionsError, as_input_error
from ._options import (
    Accelerator,
    _check_choice,
    _check_flag,
    _check_integer,
    _check_name,
)
from ._read import InputFiles, check_file

if TYPE_CHECKING:
    import numpy as np
    from mudata import MuData

    from ..model import SCMODAL
    from ..model._query import ReferenceParts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MapOptions:
    """Settings of one query mapping run (``scmosaic map``), checked when made.

    A value out of range raises :class:`~scmosaic.workflow.OptionsError` naming the option;
    checks that need the data or the reference are made by :func:`map_files`.

    Parameters
    ----------
    modalities
        Modalities of the input to map (default: all of them); each must be one of the
        reference's.
    batch
        Label written into the reference's ``batch_key`` column of every query cell
        (replacing the column if the input has it); ``None``: the input's column is used.
    kinds
        Kind (``"rna"``, ``"adt"``, ``"atac"``) of modalities whose names do not tell it;
        used by preprocessing.
    preprocess
        Run :func:`scmosaic.pp.preprocess` with all features kept (RNA: log1p, ADT: CLR);
        the reference's features are then selected by name. With ``False`` ``.X`` must be
        preprocessed as the reference's data were.
    layer
        Layer with raw counts in every modality (default ``.X``); needs ``preprocess``.
    max_steps
        Training iterations of the query model (``None``: the model's query
        default, 300).
    seed
        Seed of the minibatch sampling.
    threads
        Torch CPU threads (``None``: torch's choice).
    accelerator
        Lightning accelerator.
    progress_bar
        Show Lightning's progress bar while training.

    Examples
    --------
    >>> from scmosaic.workflow import MapOptions
    >>> options = MapOptions(batch="donor7", max_steps=500)
    """

    modalities: tuple[str, ...] | None = None
    batch: str | None = None
    kinds: Mapping[str, Kind] = field(default_factory=dict)
    preprocess: bool = True
    layer: str | None = None
    max_steps: int | None = None
    seed: int = 0
    threads: int | None = None
    accelerator: Accelerator = "auto"
    progress_bar: bool = False

    def __post_init__(self) -> None:
        if self.modalities is not None and not isinstance(self.modalities, str):
            object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "kinds", dict(self.kinds or {}))
        if self.modalities is not None and (
            isinstance(self.modalities, str)
            or not self.modalities
            or len(set(self.modalities)) != len(self.modalities)
            or not all(isinstance(m, str) and m for m in self.modalities)
        ):
            raise OptionsError(
                f"modalities must be different modality names, got {self.modalities!r}"
            )
        for name, kind in self.kinds.items():
            _check_choice(f"kinds[{name!r}]", kind, get_args(Kind))
        _check_name("batch", self.batch)
        _check_flag("preprocess", self.preprocess)
        _check_name("layer", self.layer)
        if self.layer is not None and not self.preprocess:
            raise OptionsError(
                "layer names the raw counts that preprocessing reads; with preprocess=False "
                "(--no-preprocess) the model reads .X"
            )
        _check_integer("max_steps", self.max_steps, 1, none_means="the query default")
        _check_integer("seed", self.seed, 0)
        _check_integer("threads", self.threads, 1, none_means="torch's choice")
        _check_choice("accelerator", self.accelerator, get_args(Accelerator))
        _check_flag("progress_bar", self.progress_bar)


@dataclass(frozen=True)
class Mapped:
    """The result of mapping a query: what :func:`~scmosaic.workflow.write` writes.

    Parameters
    ----------
    mdata
        The query as the model saw it (prepared by
        :meth:`~scmosaic.SCMODAL.prepare_query_mudata`), latent codes in
        ``.obsm["X_scmodal"]`` of each modality.
    model
        The trained query model.
    train_seconds
        Training wall time.
    latent
        ``{modality: latent codes}``, rows in the order of ``mdata[modality]``.
    new_batches
        The query's batches the reference did not know (their offsets and adapters were trained).
    """

    mdata: MuData
    model: SCMODAL
    train_seconds: float
    latent: dict[str, np.ndarray]
    new_batches: list[str]


# ----------------------------------------------------------------------------- checks
def check_reference(reference: str | PathLike[str]) -> Path:
    """The reference folder, checked to hold a saved model (``model.pt``).

    Raises
    ------
    InputError
        The folder does not exist, is a file, or holds no ``model.pt``.
    """
    path = Path(reference)
    if not path.exists():
        raise InputError(f"reference folder not found: {path}")
    if not path.is_dir():
        raise InputError(
            f"reference {path} is not a folder; give the folder a model was saved to "
            "(model.save(DIR), --save-model DIR)"
        )
    if not (path / "model.pt").is_file():
        raise InputError(
            f"no saved model in reference folder {path}: expected {path / 'model.pt'}, "
            "written by model.save(DIR) (--save-model DIR)"
        )
    return path


def _input_files(
    mudata: str | PathLike[str] | None, h5ad: Mapping[str, str | PathLike[str]] | None
) -> InputFiles:
    """The input files; unlike integration, a single ``.h5ad`` file (one modality) will do."""
    if mudata is None and h5ad and len(h5ad) == 1:
        ((name, path),) = ((str(n), Path(p)) for n, p in h5ad.items())
        check_file(path, (".h5ad",), f"input file of {name!r}")
        return InputFiles(None, {name: path})
    return InputFiles.check(mudata, h5ad)


def _read_reference(path: Path) -> ReferenceParts:
    """What mapping needs of the reference: its batch key, modalities and batches."""
    from ..model._query import read_reference

    try:
        with as_input_error(f"reference {path}"):
            parts = read_reference(path)
    except InputError:
        raise
    except Exception as err:  # torch and pickle raise many kinds on a damaged file
        raise InputError(f"cannot read the reference model in {path}: {err}") from err
    if not parts.batch_key:
        raise InputError(
            f"reference {path} was trained without a batch key, so it has no batch offsets "
            "to fit for new cells; train the reference with `scmosaic integrate --batch-key "
            "KEY --save-model DIR` or SCMODAL.setup_mudata(..., batch_key=KEY)"
        )
    return parts


# ------------------------------------------------------------------------------ steps
def _read_query(
    files: InputFiles, options: MapOptions, reference: Path, parts: ReferenceParts
) -> tuple[MuData, bool]:
    """The query modalities as one MuData, each with the reference's batch column."""
    from .._mudata import new_mudata
    from ._read import _read_files, _unique_obs_names

    adatas = _read_files(files)
    available = list(adatas)
    chosen = list(options.modalities or available)
    for m in chosen:
        if m not in adatas:
            raise InputError(f"modality {m!r} is not in {files.name}; it has {available}")
    known = list(parts.setup_args["modalities"])
    for m in chosen:
        if m not in known:
            raise InputError(
                f"modality {m!r} of {files.name} is not one of the reference's {known} "
                f"({reference}); name it as the reference does or choose the modalities "
                "to map (--modalities)"
            )
    adatas = {m: adatas[m] for m in chosen}
    key = parts.batch_key
    for m, adata in adatas.items():
        where = files.mudata or files.h5ad[m]
        if adata.n_obs < 1 or adata.n_vars < 1:
            raise InputError(f"modality {m!r} ({where}) is empty: {adata.shape}")
        if options.batch is not None:
            if key in adata.obs:
                logger.info("Replacing .obs[%r] of %s with %r (--batch)", key, m, options.batch)
            adata.obs[key] = options.batch
        elif key not in adata.obs:
            raise InputError(
                f"modality {m!r} ({where}) has no .obs[{key!r}], the reference's batch key; "
                "add the column, or give every query cell one batch label (--batch LABEL)"
            )
    renamed = _unique_obs_names(adatas, files) if files.mudata is None else False
    return new_mudata(adatas), renamed


def _preprocess(query: MuData, options: MapOptions) -> MuData:
    """Log-normalise every query modality, all features kept (the reference's are picked later)."""
    from ..pp import preprocess

    if not options.preprocess:
        return query
    modalities = list(query.mod)
    logger.info("Preprocessing %s", ", ".join(modalities))
    with as_input_error("preprocessing"):
        return preprocess(
            query,
            kinds={m: k for m, k in options.kinds.items() if m in query.mod},
            counts_layer=options.layer,
            n_top_genes=None,
        )


def _map_query(query: MuData, reference: Path, options: MapOptions) -> Mapped:
    """Prepare the query, build the query model, train its offsets and adapters, embed it."""
    import scvi

    from ..model import SCMODAL

    if options.threads is not None:
        scvi.settings.num_threads = options.threads
    logger.info("Mapping %s onto %s", ", ".join(query.mod), reference)
    with as_input_error(f"mapping onto reference {reference}"):
        prepared = SCMODAL.prepare_query_mudata(query, reference)
        model = SCMODAL.load_query_data(prepared, reference)
    known = set(model.reference_architecture["batch_categories"])
    new_batches = [str(c) for c in model.layout.batch_categories if c not in known]
    start = time.perf_counter()
    model.train(
        max_steps=options.max_steps,
        accelerator=options.accelerator,
        seed=options.seed,
        enable_progress_bar=options.progress_bar,
    )
    seconds = time.perf_counter() - start
    logger.info("Trained %d iterations in %.1f s", model.n_iterations_trained_, seconds)
    latent = model.get_latent_representation(write_obsm=True)
    return Mapped(prepared, model, seconds, latent, new_batches)


def _summarise(
    mapped: Mapped,
    options: MapOptions,
    parts: ReferenceParts,
    *,
    inputs: dict[str, Any],
    reference: str,
    obs_names_prefixed: bool,
    outputs: dict[str, Any],
    total_seconds: float,
) -> dict[str, Any]:
    """The run summary that ``scmosaic map`` writes as JSON."""
    from .._keys import QUERY_UNS_KEY
    from .._version import __version__
    from ._summary import run_summary, training_summary

    mdata, model = mapped.mdata, mapped.model
    report = mdata.uns[QUERY_UNS_KEY]
    modalities = list(mdata.mod)
    return {
        "scmosaic_version": __version__,
        "inputs": inputs,
        "reference": reference,
        "modalities": modalities,
        "n_cells": {m: int(mdata[m].n_obs) for m in modalities},
        "n_features": {m: int(report[m]["n_features"]) for m in modalities},
        "features_missing": {m: int(report[m]["missing"]) for m in modalities},
        "obs_names_prefixed": obs_names_prefixed,
        "preprocess": options.preprocess,
        "layer": options.layer,
        "batch_key": parts.batch_key,
        "batch": options.batch,
        "new_batches": mapped.new_batches,
        "training": training_summary(model, options, mapped.train_seconds),
        **run_summary(model, outputs, total_seconds),
    }


# -------------------------------------------------------------------------------- job
def map_files(
    reference: str | PathLike[str],
    out: str | PathLike[str],
    options: MapOptions | None = None,
    *,
    mudata: str | PathLike[str] | None = None,
    h5ad: Mapping[str, str | PathLike[str]] | None = None,
    summary: str | PathLike[str] | None = None,
    save_model: str | PathLike[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Map new cells from files onto a saved reference model and write the result.

    Paths are checked before anything heavy is imported or run; then, each step logged at
    INFO on the ``scmosaic`` logger: the reference's batch key and modalities are read,
    the query is read (``mudata``, or ``h5ad`` files, one modality each: a single one will
    do), its cells get a batch label (``options.batch``) or must have the reference's
    batch column, it is preprocessed (all features kept), and then
    :meth:`~scmosaic.SCMODAL.prepare_query_mudata` selects the reference's features by
    name, :meth:`~scmosaic.SCMODAL.load_query_data` builds the query model (reference
    weights frozen, one new offset per new batch, an adapter per modality),
    :meth:`~scmosaic.SCMODAL.train` fits those and
    :meth:`~scmosaic.SCMODAL.get_latent_representation` embeds the query
    cells in the reference's latent space. The input files and the reference are never
    changed; outputs are written through temporary files as by
    :func:`~scmosaic.workflow.integrate_files`.

    Parameters
    ----------
    reference
        Folder of a reference model saved with :meth:`scmosaic.SCMODAL.save`, trained with
        ``setup_mudata(..., batch_key=...)``.
    out
        Output ``.h5mu``: the prepared query modalities (preprocessed unless
        ``options.preprocess`` is ``False``, the reference's features in its order, absent
        ones zero) with the latent codes in ``.obsm["X_scmodal"]`` of each and the feature
        report in ``.uns["scmosaic_query"]``. Parent folders are created.
    options
        The run's options (default: :class:`MapOptions()`).
    mudata
        Input ``.h5mu`` (exclusive with ``h5ad``).
    h5ad
        ``{modality name: path}`` of ``.h5ad`` files, one modality each, cells unpaired.
    summary
        Output JSON (default: ``out`` with the suffix ``.json``).
    save_model
        Folder for the query model (:meth:`scmosaic.SCMODAL.save`; default: not saved).
    overwrite
        Replace outputs that exist (``out``, ``summary``, a non-empty ``save_model``
        folder); by default the run refuses to start.

    Returns
    -------
    The summary written to ``summary``: inputs, reference, modalities, cell counts, the
    reference's features and how many each modality lacked, batch key and new batches,
    training (iterations, seconds), final losses, scmosaic version, output paths.

    Raises
    ------
    OptionsError
        Both or neither of ``mudata`` and ``h5ad``.
    InputError
        A missing reference folder or ``model.pt``, a reference without batch key,
        missing or unreadable files, an output that exists (unless ``overwrite``), a
        modality the input lacks or the reference never saw, a missing batch column,
        no feature shared with the reference, data that validation rejects.

    Examples
    --------
    >>> from scmosaic.workflow import MapOptions, map_files
    >>> summary = map_files(
    ...     "reference_model/", "mapped.h5mu", MapOptions(batch="donor7"), h5ad={"rna": "new.h5ad"}
    ... )
    >>> summary["new_batches"], summary["training"]["iterations"]
    """
    from ._write import OutputFiles, write, write_summary  # numpy: not needed to check options

    start = time.perf_counter()
    options = options if options is not None else MapOptions()
    outputs = OutputFiles.check(out, summary, save_model, overwrite=overwrite)
    reference = check_reference(reference)
    if outputs.model is not None and outputs.model.resolve() == reference.resolve():
        raise InputError(f"--save-model {outputs.model} is the reference folder; choose another")
    files = _input_files(mudata, h5ad)
    # the heavy steps (scvi-tools, torch) load only once the paths are known to be good
    import mudata as md

    outputs.make_folders()
    with md.set_options(pull_on_update=False):
        parts = _read_reference(reference)
        query, prefixed = _read_query(files, options, reference, parts)
        query = _preprocess(query, options)
        mapped = _map_query(query, reference, options)
        write(mapped, outputs)  # writes .mdata and .model, as of an integration
    result = _summarise(
        mapped,
        options,
        parts,
        inputs=files.describe(),
        reference=str(reference.resolve()),
        obs_names_prefixed=prefixed,
        outputs=outputs.describe(),
        total_seconds=time.perf_counter() - start,
    )
    write_summary(result, outputs.summary)
    return result
