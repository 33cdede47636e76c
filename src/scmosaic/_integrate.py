"""The ``scmosaic integrate`` job: files in, integrated MuData and a JSON summary out."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

#: Value of ``table`` that selects scmosaic's packaged human ADT -> gene table.
PACKAGED_TABLE = "packaged"
#: ``.obsm`` key of the CCA scores written with ``links="cca"``.
CCA_KEY = "X_cca"
_KINDS = ("rna", "adt", "atac")


class InputError(ValueError):
    """Bad input: a missing or unreadable file, an unknown modality or key, invalid data.

    The command line reports it as ``scmosaic: error: <message>`` and exits with code 3.
    """


@contextlib.contextmanager
def _as_input_error(context: str) -> Iterator[None]:
    """Re-raise scmosaic's validation errors of a step as :class:`InputError`."""
    try:
        yield
    except InputError:
        raise
    except (ValueError, KeyError, TypeError, NotImplementedError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise InputError(f"{context}: {message}") from err


def _check_file(path: Path, suffixes: Sequence[str], what: str, hint: str = "") -> None:
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if not path.is_file():
        raise InputError(f"{what} is not a file: {path}")
    if path.suffix.lower() not in suffixes:
        raise InputError(
            f"{what} {path} is not a {'/'.join(suffixes)} file{'; ' + hint if hint else ''}"
        )


def _read_inputs(
    mudata_path: Path | None, h5ad_paths: dict[str, Path]
) -> tuple[dict[str, Any], dict[str, Path]]:
    """The modalities as AnnData objects and the file each came from."""
    import anndata as ad
    import mudata as md

    if mudata_path is not None:
        logger.info("Reading %s", mudata_path)
        try:
            mdata = md.read_h5mu(mudata_path)
        except Exception as err:  # h5py, anndata and mudata raise many kinds
            raise InputError(f"cannot read {mudata_path} as .h5mu: {err}") from err
        if not mdata.mod:
            raise InputError(f"{mudata_path} holds no modality")
        return dict(mdata.mod), dict.fromkeys(mdata.mod, mudata_path)
    adatas = {}
    for name, path in h5ad_paths.items():
        logger.info("Reading %s=%s", name, path)
        try:
            adatas[name] = ad.read_h5ad(path)
        except Exception as err:
            raise InputError(f"cannot read {path} as .h5ad: {err}") from err
    return adatas, dict(h5ad_paths)


def _unique_obs_names(adatas: dict[str, Any], sources: dict[str, Path]) -> bool:
    """Make obs names unique within each modality and, if they overlap, across modalities.

    Cells of separate .h5ad files are different cells: names that overlap are prefixed with
    ``"<modality>:"`` (originals kept in ``.obs["original_obs_name"]``). Only the objects in
    memory change, never the files. Returns whether names were prefixed.
    """
    for name, adata in adatas.items():
        if not adata.obs_names.is_unique:
            logger.warning("Duplicate obs names in %s (%s) made unique", name, sources[name])
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
            adata.obs["original_obs_name"] = adata.obs_names.to_numpy()
            adata.obs_names = [f"{name}:{cell}" for cell in adata.obs_names]
    return overlap


def _kind(modality: str, kinds: Mapping[str, str]) -> str:
    from .pp._preprocess import infer_kind

    if modality in kinds:
        return kinds[modality]
    try:
        return infer_kind(modality)
    except ValueError:
        raise InputError(
            f"cannot tell the kind of modality {modality!r} from its name; "
            f"pass kinds={{{modality!r}: 'rna' | 'adt' | 'atac'}} (--kind {modality}=adt)"
        ) from None


def _protein_and_gene(modalities: Sequence[str], kinds: Mapping[str, str]) -> tuple[str, str]:
    """Which modality holds proteins (kind ``adt``) for a protein -> gene table."""
    found = {m: _kind(m, kinds) for m in modalities}
    proteins = [m for m, k in found.items() if k == "adt"]
    if len(proteins) != 1:
        raise InputError(
            f"a protein -> gene table needs exactly one protein (adt) modality, got kinds "
            f"{found}; set the kinds with --kind NAME=adt / kinds={{NAME: 'adt'}}"
        )
    gene = next(m for m in modalities if m != proteins[0])
    return proteins[0], gene


def _cca_components(adatas: Sequence[Any], requested: int, n_pcs: int = 40) -> int:
    """``requested`` capped at the principal components each modality allows."""
    cap = min(min(n_pcs, a.n_obs - 1, a.n_vars - 1) for a in adatas)
    if cap < 1:
        raise InputError("too few cells or features for CCA linked features")
    if requested > cap:
        logger.info("CCA components lowered from %d to %d (data size)", requested, cap)
    return min(requested, cap)


def _final_losses(history: Mapping[str, Any] | None) -> dict[str, float | None]:
    out = {}
    for key, frame in (history or {}).items():
        try:
            value = float(np.asarray(frame, dtype=float).ravel()[-1])
        except (TypeError, ValueError, IndexError):
            continue
        out[key] = value if math.isfinite(value) else None
    return out


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def run_integrate(
    out: str | Path,
    *,
    mudata: str | Path | None = None,
    h5ad: Mapping[str, str | Path] | None = None,
    modalities: Sequence[str] | None = None,
    links: Literal["table", "names", "cca"] = "table",
    table: str | Path | None = None,
    cca_init: Literal["links", "labels"] = "labels",
    labels_key: str | None = None,
    cca_components: int = 10,
    kinds: Mapping[str, str] | None = None,
    preprocess: bool = True,
    layer: str | None = None,
    n_top_genes: int | None = 2000,
    max_steps: int | None = None,
    preset: Literal["default", "reference"] = "default",
    seed: int = 0,
    threads: int | None = None,
    accelerator: str = "auto",
    summary: str | Path | None = None,
    save_model: str | Path | None = None,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Integrate two unpaired modalities from files and write the result.

    Steps (each logged at INFO on ``logging.getLogger("scmosaic._integrate")``):

    1. read ``mudata`` (one ``.h5mu``) or the ``h5ad`` files (one ``.h5ad`` per modality;
       cell names that overlap between files are prefixed with ``"<modality>:"``);
    2. link features on the raw counts (``.X`` or ``layer``):
       :func:`scmosaic.pp.link_features` with a protein -> gene ``table`` or shared feature
       ``"names"``, or :func:`scmosaic.pp.cca_links` (``"cca"``, initialised from labels
       or from table/name links);
    3. :func:`scmosaic.pp.preprocess` (unless ``preprocess=False``: ``.X`` must then
       already be log-normalised);
    4. :meth:`scmosaic.SCMODAL.setup_mudata`, training, and
       :meth:`~scmosaic.SCMODAL.get_latent_representation` with ``write_obsm=True``;
    5. write ``out`` (``.h5mu``), the JSON ``summary`` and optionally the model.

    The input files are never changed.

    Parameters
    ----------
    out
        Output ``.h5mu``: the two integrated modalities (preprocessed unless
        ``preprocess=False``) with the joint latent codes in ``.obsm["X_scmodal"]`` of each,
        the linked features in ``.obsm["linked_<other>"]`` (table/names links, and as CCA
        prior) or ``.obsm["X_cca"]`` (CCA links). Parent folders are created.
    mudata
        Input ``.h5mu`` (exclusive with ``h5ad``).
    h5ad
        ``{modality name: path}`` of ``.h5ad`` files, one modality each, cells unpaired.
    modalities
        The two modalities to integrate (default: all, if there are exactly two).
    links
        Source of the linked features: ``"table"`` (protein -> gene ``table``), ``"names"``
        (features with the same name in both) or ``"cca"`` (canonical correlation scores).
    table
        Protein -> gene table: a CSV path (layouts of :func:`scmosaic.pp.load_adt_gene_table`)
        or ``"packaged"`` for scmosaic's human ADT table. Required for ``links="table"``;
        with ``links="cca", cca_init="links"`` it selects table links as the CCA prior
        (default: shared names).
    cca_init
        Prior of ``links="cca"``: ``"labels"`` (``.obs[labels_key]`` in both modalities)
        or ``"links"`` (table or name links).
    labels_key
        ``.obs`` column with cell labels in both modalities, for ``cca_init="labels"``.
    cca_components
        Canonical components (capped at what the data allow).
    kinds
        Kind (``"rna"``, ``"adt"``, ``"atac"``) of modalities whose names do not tell it;
        used by preprocessing and to find the protein side of a table.
    preprocess
        Run :func:`scmosaic.pp.preprocess` (normalisation, log1p, highly variable genes).
    layer
        Layer with raw counts in both modalities (default ``.X``).
    n_top_genes
        Highly variable genes kept for RNA/ATAC by preprocessing (``None``: all).
    max_steps
        Training iterations (default: the preset's).
    preset
        Model preset, ``"default"`` or ``"reference"``.
    seed
        Seed of weights, minibatch sampling and CCA.
    threads
        Torch CPU threads (default: torch's choice).
    accelerator
        Lightning accelerator: ``"auto"``, ``"cpu"`` or ``"gpu"``.
    summary
        Output JSON (default: ``out`` with the suffix ``.json``).
    save_model
        Folder for :meth:`scmosaic.SCMODAL.save` (overwritten; default: not saved).
    progress_bar
        Show Lightning's progress bar while training.

    Returns
    -------
    The summary written to ``summary``: inputs, modalities and cell counts, link source
    and report, training (iterations, seconds), final values of every ``model.history``
    key, scmosaic version, output paths.

    Raises
    ------
    InputError
        Missing or unreadable files, unknown modalities or keys, or data that scmosaic's
        validation rejects (a :class:`ValueError`).

    Examples
    --------
    >>> from scmosaic._integrate import run_integrate
    >>> summary = run_integrate(
    ...     "out.h5mu", h5ad={"rna": "rna.h5ad", "adt": "adt.h5ad"}, table="packaged"
    ... )
    >>> summary["links"]["n_linked_features"], summary["training"]["iterations"]
    """
    import mudata as md
    import scvi
    from mudata import MuData

    import scmosaic

    start = time.perf_counter()
    kinds = dict(kinds or {})
    for name, kind in kinds.items():
        if kind not in _KINDS:
            raise InputError(f"kind of {name!r} must be one of {_KINDS}, got {kind!r}")
    if (mudata is None) == (not h5ad):
        raise InputError("give either mudata (one .h5mu) or h5ad files (one per modality)")
    if links not in ("table", "names", "cca"):
        raise InputError(f"links must be 'table', 'names' or 'cca', got {links!r}")
    if links == "table" and table is None:
        raise InputError("links='table' needs a table (a CSV path or 'packaged')")
    if links == "names" and table is not None:
        logger.warning("The table is not used with links='names'")
    if links == "cca" and cca_init not in ("labels", "links"):
        raise InputError(f"cca_init must be 'labels' or 'links', got {cca_init!r}")
    if links == "cca" and cca_init == "labels" and not labels_key:
        raise InputError("links='cca' with cca_init='labels' needs labels_key")
    if max_steps is not None and max_steps < 1:
        raise InputError(f"max_steps must be a positive number of iterations, got {max_steps}")

    # ---- paths, checked before any heavy work
    out = Path(out)
    if out.suffix.lower() != ".h5mu":
        raise InputError(f"output {out} must end with .h5mu")
    summary_path = Path(summary) if summary is not None else out.with_suffix(".json")
    mudata_path = Path(mudata) if mudata is not None else None
    h5ad_paths = {str(k): Path(v) for k, v in (h5ad or {}).items()}
    if mudata_path is not None:
        _check_file(mudata_path, (".h5mu",), "input", "use h5ad files (--h5ad NAME=PATH)")
    else:
        if len(h5ad_paths) < 2:
            raise InputError(f"give at least two h5ad files, got {list(h5ad_paths)}")
        for name, path in h5ad_paths.items():
            _check_file(path, (".h5ad",), f"input file of {name!r}")
    table_arg: str | None = None
    if table is not None:
        if str(table) == PACKAGED_TABLE:
            table_arg = None  # link_features' packaged human table
        else:
            table_path = Path(table)
            _check_file(table_path, (".csv", ".tsv", ".txt"), "table")
            with _as_input_error(f"table {table_path}"):
                scmosaic.pp.load_adt_gene_table(table_path)
            table_arg = str(table_path)
    for path in (out, summary_path):
        path.parent.mkdir(parents=True, exist_ok=True)

    if threads is not None:
        scvi.settings.num_threads = threads

    with md.set_options(pull_on_update=False):
        # ---- read
        adatas, sources = _read_inputs(mudata_path, h5ad_paths)
        source_name = str(mudata_path) if mudata_path is not None else "the h5ad files"
        if modalities is None:
            if len(adatas) != 2:
                raise InputError(
                    f"{source_name} has {len(adatas)} modalities {list(adatas)}; "
                    "choose two (--modalities A B)"
                )
            modalities = list(adatas)
        modalities = list(modalities)
        if len(modalities) != 2 or modalities[0] == modalities[1]:
            raise InputError(f"give two different modalities, got {modalities}")
        for m in modalities:
            if m not in adatas:
                raise InputError(f"modality {m!r} is not in {source_name}; it has {list(adatas)}")
        adatas = {m: adatas[m] for m in modalities}
        for m, adata in adatas.items():
            if adata.n_obs < 2 or adata.n_vars < 1:
                raise InputError(f"modality {m!r} ({sources[m]}) is empty: {adata.shape}")
            if layer is not None and layer not in adata.layers:
                raise InputError(
                    f"layer {layer!r} not in modality {m!r} ({sources[m]}); "
                    f"it has {list(adata.layers)}"
                )
            if labels_key is not None and links == "cca" and cca_init == "labels":
                if labels_key not in adata.obs:
                    raise InputError(
                        f"labels key {labels_key!r} not in .obs of modality {m!r} "
                        f"({sources[m]}); it has {list(adata.obs.columns)}"
                    )
        renamed = _unique_obs_names(adatas, sources) if mudata_path is None else False
        mdata = MuData(adatas)
        mod_a, mod_b = modalities

        # ---- link
        link_info: dict[str, Any] = {"source": links}
        link_spec: tuple[str, ...] = (mod_a, mod_b)
        prior = links if links != "cca" else ("table" if table is not None else "names")
        if links != "cca" or cca_init == "links":
            if prior == "table":
                proteins, genes = _protein_and_gene(modalities, kinds)
                link_pair = (proteins, genes)
                link_info["table"] = PACKAGED_TABLE if table_arg is None else table_arg
            else:
                link_pair = (mod_a, mod_b)
            logger.info("Linking %s and %s by %s", *link_pair, prior)
            with _as_input_error(f"linking {link_pair[0]} and {link_pair[1]} by {prior}"):
                report = scmosaic.pp.link_features(
                    mdata, *link_pair, by=prior, table=table_arg, counts_layer=layer
                )
            first, second = link_pair
            status = report["status"].value_counts()
            link_info.update(
                by=prior,
                modalities=list(link_pair),
                # columns of the linked-feature matrices (a multi-gene protein gives several)
                n_linked_features=int(mdata[first].obsm[f"linked_{second}"].shape[1]),
                # features of the first modality with a partner in the second
                n_matched_features=int(status.get("linked", 0)),
                status_counts={str(k): int(v) for k, v in status.items()},
                obsm_keys={first: f"linked_{second}", second: f"linked_{first}"},
            )
            if links == "cca":
                link_info = {"source": "cca", "prior": dict(link_info, source=prior)}
        if links == "cca":
            n_components = _cca_components(list(adatas.values()), cca_components)
            logger.info("Learning CCA linked features (init=%s)", cca_init)
            with _as_input_error(f"CCA links of {mod_a} and {mod_b}"):
                cca = scmosaic.pp.cca_links(
                    mdata,
                    (mod_a, mod_b),
                    init=cca_init,
                    n_components=n_components,
                    labels_key=labels_key,
                    layer=layer,
                    key_added=CCA_KEY,
                    seed=seed,
                )
            link_info.update(
                init=cca_init,
                labels_key=labels_key if cca_init == "labels" else None,
                n_linked_features=n_components,
                correlations=cca["correlations"],
                n_pivots=cca["n_pivots"],
                obsm_keys={mod_a: CCA_KEY, mod_b: CCA_KEY},
            )
            link_spec = (mod_a, mod_b, CCA_KEY, CCA_KEY)

        # ---- preprocess and register
        if preprocess:
            logger.info("Preprocessing %s", ", ".join(modalities))
            with _as_input_error("preprocessing"):
                mdata = scmosaic.pp.preprocess(
                    mdata,
                    modalities=modalities,
                    kinds={m: _kind(m, kinds) for m in modalities},
                    counts_layer=layer,
                    n_top_genes=n_top_genes,
                )
        with _as_input_error("registering the data"):
            scmosaic.SCMODAL.setup_mudata(mdata, modalities=modalities, links=[link_spec])
            model = scmosaic.SCMODAL(mdata, preset=preset, seed=seed)

        # ---- train
        steps = max_steps if max_steps is not None else "the preset's"
        logger.info("Training SCMODAL (%s preset, %s iterations)", preset, steps)
        train_start = time.perf_counter()
        model.train(max_steps=max_steps, accelerator=accelerator, enable_progress_bar=progress_bar)
        train_seconds = time.perf_counter() - train_start
        logger.info("Trained %d iterations in %.1f s", model.n_iterations_trained_, train_seconds)
        model.get_latent_representation(write_obsm=True)

        # ---- write
        logger.info("Writing %s", out)
        try:
            mdata.write(out)
            if save_model is not None:
                logger.info("Saving the model to %s", save_model)
                model.save(str(save_model), overwrite=True)
        except OSError as err:
            raise InputError(f"cannot write {err.filename or out}: {err.strerror or err}") from err

    result = {
        "scmosaic_version": scmosaic.__version__,
        "inputs": (
            {"mudata": str(mudata_path.resolve())}
            if mudata_path is not None
            else {"h5ad": {m: str(p.resolve()) for m, p in h5ad_paths.items()}}
        ),
        "modalities": modalities,
        "n_cells": {m: int(mdata[m].n_obs) for m in modalities},
        "n_features": {m: int(mdata[m].n_vars) for m in modalities},
        "obs_names_prefixed": renamed,
        "preprocess": bool(preprocess),
        "layer": layer,
        "links": link_info,
        "training": {
            "preset": preset,
            "max_steps": max_steps,
            "iterations": int(model.n_iterations_trained_),
            "train_seconds": train_seconds,
            "seed": seed,
            "threads": threads,
            "accelerator": accelerator,
            "device": str(model.device),
        },
        "final_losses": _final_losses(model.history),
        "latent_key": "X_scmodal",
        "outputs": {
            "mudata": str(out.resolve()),
            "summary": str(summary_path.resolve()),
            "model": str(Path(save_model).resolve()) if save_model is not None else None,
        },
        "total_seconds": time.perf_counter() - start,
    }
    try:
        summary_path.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
    except OSError as err:
        raise InputError(f"cannot write {summary_path}: {err.strerror or err}") from err
    logger.info("Wrote %s", summary_path)
    return result
