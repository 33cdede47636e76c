"""The ``scmosaic integrate`` job: files in, integrated MuData and a JSON summary out."""

from __future__ import annotations

import time
from collections.abc import Mapping
from os import PathLike
from typing import Any

from ._options import WorkflowOptions
from ._read import InputFiles, check_table_file, read
from ._write import OutputFiles, write, write_summary


def integrate_files(
    out: str | PathLike[str],
    options: WorkflowOptions,
    *,
    mudata: str | PathLike[str] | None = None,
    h5ad: Mapping[str, str | PathLike[str]] | None = None,
    summary: str | PathLike[str] | None = None,
    save_model: str | PathLike[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Integrate two unpaired modalities from files and write the result.

    Paths are checked before anything heavy is imported or run; then the steps, each logged at INFO on
    the ``scmosaic`` logger: :func:`~scmosaic.workflow.read` ``mudata`` (one ``.h5mu``) or
    the ``h5ad`` files (one per modality; cell names that overlap between files are
    prefixed with ``"<modality>:"``), :func:`~scmosaic.workflow.integrate` (link,
    preprocess, fit), :func:`~scmosaic.workflow.write` and
    :func:`~scmosaic.workflow.summarise`. The input files are never changed, and every
    output is written to a temporary path next to it and moved into place only once
    written, so a failed run leaves no truncated output.

    Parameters
    ----------
    out
        Output ``.h5mu``: the two integrated modalities (preprocessed unless
        ``options.preprocess`` is ``False``) with the joint latent codes in
        ``.obsm["X_scmodal"]`` of each, the linked features in ``.obsm["linked_<other>"]``
        (table/names links, and as CCA prior), ``.obsm["X_cca"]`` (CCA links) and
        ``.obsm["X_linked_cca"]`` (both side by side: ``"table+cca"``, ``"names+cca"``).
        Parent folders are created.
    options
        The run's options.
    mudata
        Input ``.h5mu`` (exclusive with ``h5ad``).
    h5ad
        ``{modality name: path}`` of ``.h5ad`` files, one modality each, cells unpaired.
    summary
        Output JSON (default: ``out`` with the suffix ``.json``).
    save_model
        Folder for :meth:`scmosaic.SCMODAL.save` (default: not saved).
    overwrite
        Replace outputs that exist (``out``, ``summary``, a non-empty ``save_model``
        folder); by default the run refuses to start.

    Returns
    -------
    The summary written to ``summary`` (:func:`~scmosaic.workflow.summarise`).

    Raises
    ------
    OptionsError
        Both or neither of ``mudata`` and ``h5ad``, or fewer than two ``h5ad`` files.
    InputError
        Missing or unreadable files, an output that exists (unless ``overwrite``), unknown
        modalities or keys, or data that scmosaic's validation rejects.

    Examples
    --------
    >>> from scmosaic.workflow import WorkflowOptions, integrate_files
    >>> summary = integrate_files(
    ...     "out.h5mu",
    ...     WorkflowOptions(table="packaged"),
    ...     h5ad={"rna": "rna.h5ad", "adt": "adt.h5ad"},
    ... )
    >>> summary["links"]["n_linked_features"], summary["training"]["iterations"]
    """
    start = time.perf_counter()
    outputs = OutputFiles.check(out, summary, save_model, overwrite=overwrite)
    files = InputFiles.check(mudata, h5ad)
    check_table_file(options.table)
    # the heavy steps (scvi-tools, torch) load only once the paths are known to be good
    import mudata as md

    from ._integrate import integrate
    from ._summary import summarise

    outputs.make_folders()
    with md.set_options(pull_on_update=False):
        mdata, prefixed = read(files, options)
        integrated = integrate(mdata, options)
        write(integrated, outputs)
    result = summarise(
        integrated,
        options,
        inputs=files.describe(),
        obs_names_prefixed=prefixed,
        outputs=outputs.describe(),
        total_seconds=time.perf_counter() - start,
    )
    write_summary(result, outputs.summary)
    return result
