"""Command line: ``scmosaic quickstart``, ``integrate`` and ``map`` (or ``python -m scmosaic``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import TypeVar, get_args

# Only what parsing needs: the options and errors of the workflow import nothing heavy, so
# --help and usage errors come before torch and scvi-tools load (seconds).
from ._choices import PresetName
from .workflow import (
    PACKAGED_TABLE,
    Accelerator,
    CcaInit,
    InputError,
    LinkSource,
    OptionsError,
    WorkflowOptions,
)
from .workflow._options import CCA_COMPONENTS

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INPUT = 3

T = TypeVar("T")

_INTEGRATE_EPILOG = """\
examples:
  # one .h5ad per modality (raw counts), ADT->gene links from your CSV table
  scmosaic integrate --h5ad rna=rna.h5ad --h5ad adt=adt.h5ad \\
      --links table --table adt_genes.csv --out integrated.h5mu

  # a MuData file, scmosaic's packaged ADT table, 2,000 iterations on a GPU
  scmosaic integrate --mudata cite.h5mu --modalities rna adt --links table \\
      --table packaged --max-steps 2000 --accelerator gpu --out integrated.h5mu

  # no table: CCA linked features initialised from labels known in both modalities
  scmosaic integrate --mudata in.h5mu --links cca --cca-init labels \\
      --labels-key celltype --out integrated.h5mu

  # batches in .obs["donor"]; the saved model is a reference for scmosaic map
  scmosaic integrate --mudata in.h5mu --table packaged --batch-key donor \\
      --save-model reference_model/ --out integrated.h5mu

outputs:
  OUT (.h5mu)    the two integrated modalities (normalised, HVGs, raw counts in
                 .layers["counts"] unless --no-preprocess) with the joint latent codes in
                 .obsm["X_scmodal"] of each; linked features in .obsm["linked_<other>"]
                 (table/names) or .obsm["X_cca"] (cca)
  SUMMARY (.json) inputs, modalities, cell counts, batch key, link source and report
                 (number of linked features), iterations, training seconds, final losses
                 (model.history), scmosaic version, output paths
{outputs_note}
{exit_codes}"""

# Shared by the epilogs of integrate and map.
_OUTPUTS_NOTE = """\
  An output that exists stops the run before any work, unless --overwrite. Outputs are
  written to hidden temporary files next to them and renamed into place once written,
  so a failed run leaves no truncated file.
"""

_EXIT_CODES = """\
exit codes:
  0  success
  1  unexpected failure (rerun with --verbose for the traceback)
  2  usage error (bad or missing options)
  3  input or data error ({input_errors}); the message names the culprit
"""

_MAP_EPILOG = """\
examples:
  # new RNA cells (raw counts, with the reference's batch column) onto a saved reference
  scmosaic map --reference reference_model/ --h5ad rna=new_rna.h5ad --out mapped.h5mu

  # files without the batch column: one batch label for all their cells; keep the model
  scmosaic map --reference reference_model/ --h5ad rna=rna.h5ad --h5ad adt=adt.h5ad \\
      --batch donor7 --save-model query_model/ --out mapped.h5mu

  # one modality of a MuData file, 500 iterations on a GPU
  scmosaic map --reference reference_model/ --mudata new.h5mu --modalities rna \\
      --max-steps 500 --accelerator gpu --out mapped.h5mu

reference:
  a folder written by model.save(DIR) of an SCMODAL trained with
  setup_mudata(..., batch_key=KEY), or by scmosaic integrate --batch-key KEY
  --save-model DIR. Each query modality must be one of the reference's
  and have .obs[KEY] (or use --batch). Only the new batches' offsets and adapters are trained; the
  reference's weights stay frozen, so query cells land in the reference's latent space.

outputs:
  OUT (.h5mu)    the query modalities as mapped: normalised (raw counts in
                 .layers["counts"]) unless --no-preprocess, holding the reference's
                 features in its order (those the query lacks are zeros, counted in
                 .uns["scmosaic_query"]), latent codes in .obsm["X_scmodal"] of each
  SUMMARY (.json) inputs, reference, modalities, cell counts, features missing per
                 modality, batch key and new batches, iterations, training seconds,
                 final losses, scmosaic version, output paths
{outputs_note}
{exit_codes}"""

_INTEGRATE_EPILOG = _INTEGRATE_EPILOG.format(
    outputs_note=_OUTPUTS_NOTE,
    exit_codes=_EXIT_CODES.format(
        input_errors="missing, unreadable or wrong-type file, unknown modality,\n"
        "     table or key, data that fail validation, an output that exists without\n"
        "     --overwrite or cannot be written"
    ),
)
_MAP_EPILOG = _MAP_EPILOG.format(
    outputs_note=_OUTPUTS_NOTE,
    exit_codes=_EXIT_CODES.format(
        input_errors="missing reference folder or model.pt, reference without\n"
        "     batch key, missing, unreadable or wrong-type file, modality the input lacks or\n"
        "     the reference never saw, missing batch column, no feature shared with the\n"
        "     reference, an output that exists without --overwrite or cannot be\n"
        "     written"
    ),
)

_QUICKSTART_EPILOG = """\
outputs (in --out):
  umap.png, metrics.json, integrated.h5mu; if the folder holds any of them the run stops
  before any work, unless --overwrite. They are written to hidden temporary files and
  renamed into place once all are written, so a failed run leaves none of them.

exit codes:
  0  success
  1  unexpected failure (rerun with --verbose for the traceback)
  2  usage error (bad option, e.g. --max-steps 0)
  3  an output file exists without --overwrite, or cannot be written
"""


def _name_value(value: str, what: str) -> tuple[str, str]:
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME={what}, got {value!r}")
    return name, rest


def _name_path(value: str) -> tuple[str, str]:
    return _name_value(value, "PATH")


def _name_kind(value: str) -> tuple[str, str]:
    # the kind itself is checked by WorkflowOptions, with the other options
    return _name_value(value, "KIND")


def _add_training_arguments(
    group,
    accelerator: bool = True,
    preset: bool = True,
    max_steps_help: str = "training iterations, a fixed number (default: the preset's; the "
    "default preset stops once converged, after at most 1,000-2,000 by data size; reference "
    "preset 10,000)",
    seed_help: str = "seed of weights, sampling, CCA",
) -> None:
    """Options of the fit step, shared by the commands; values are checked by their options."""
    group.add_argument("--max-steps", type=int, default=None, metavar="N", help=max_steps_help)
    if preset:
        group.add_argument(
            "--preset",
            choices=get_args(PresetName),
            default=WorkflowOptions.preset,
            help="model preset: scmosaic's default or the published scMODAL reference values "
            "(default: %(default)s)",
        )
    group.add_argument(
        "--seed",
        type=int,
        default=WorkflowOptions.seed,
        metavar="N",
        help=f"{seed_help} (%(default)s)",
    )
    group.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads (default: torch's choice)",
    )
    if accelerator:
        group.add_argument(
            "--accelerator",
            choices=get_args(Accelerator),
            default=WorkflowOptions.accelerator,
            help="Lightning accelerator (default: %(default)s; auto: a GPU if there is one)",
        )


def _add_input_arguments(parser: argparse.ArgumentParser, query: bool = False) -> None:
    """Input files, modalities, counts layer, kinds; ``query``: map's (any modalities)."""
    inputs = parser.add_argument_group("input (one of --mudata / --h5ad is required)")
    source = inputs.add_mutually_exclusive_group(required=True)
    source.add_argument("--mudata", metavar="PATH", help="input .h5mu file")
    source.add_argument(
        "--h5ad",
        metavar="NAME=PATH",
        type=_name_path,
        action="append",
        help="a .h5ad file holding modality NAME (repeat for each modality; cells are "
        "treated as unpaired, names overlapping between files get a 'NAME:' prefix in the "
        "output, the files are not changed)",
    )
    if query:
        inputs.add_argument(
            "--modalities",
            nargs="+",
            metavar="NAME",
            help="the modalities to map, each one of the reference's (default: all)",
        )
        inputs.add_argument(
            "--batch",
            metavar="LABEL",
            help="batch label for every query cell, written into the reference's batch-key "
            "column (default: each modality's own column, which must exist)",
        )
    else:
        inputs.add_argument(
            "--modalities",
            nargs=2,
            metavar=("A", "B"),
            help="the two modalities to integrate (default: all, if there are exactly two)",
        )
        inputs.add_argument(
            "--batch-key",
            metavar="COLUMN",
            help=".obs column naming each cell's batch (donor, sample) in both modalities; "
            "the model corrects batches, and a model saved with --save-model is a reference "
            "that scmosaic map can extend with new batches (default: no batches)",
        )
    inputs.add_argument(
        "--layer",
        help="layer with raw counts in every modality, read by preprocessing (default: .X)"
        if query
        else "layer with raw counts in both modalities (default: .X)",
    )
    inputs.add_argument(
        "--kind",
        metavar="NAME=KIND",
        type=_name_kind,
        action="append",
        default=[],
        help="kind (rna, adt, atac) of a modality whose name does not tell it; names such "
        "as rna, gex, adt, protein, atac are recognised",
    )


def _add_link_arguments(parser: argparse.ArgumentParser) -> None:
    linking = parser.add_argument_group("linked features")
    linking.add_argument(
        "--links",
        choices=get_args(LinkSource),
        default=WorkflowOptions.links,
        help="table: protein->gene table (--table); names: features with the same name in "
        "both modalities; cca: canonical correlation scores (--cca-init); table+cca, "
        "names+cca: those links and the CCA scores refined from them, side by side. "
        "Default: %(default)s",
    )
    linking.add_argument(
        "--table",
        metavar="CSV|packaged",
        help="protein->gene table: a CSV (columns protein,genes[,aliases]; MaxFuse, TEA-seq "
        "and totalVI layouts are read too) or 'packaged' for scmosaic's ADT table (human or "
        "mouse, from the case of the gene names). "
        "Required by --links table and table+cca; with --links cca --cca-init links it "
        "gives the prior links (default there: shared names)",
    )
    linking.add_argument(
        "--cca-init",
        choices=get_args(CcaInit),
        default=WorkflowOptions.cca_init,
        help="prior of --links cca: labels (--labels-key, known in both modalities) or "
        "links (--table, else shared names). Default: %(default)s",
    )
    linking.add_argument(
        "--labels-key", metavar="KEY", help=".obs column with labels in both modalities"
    )
    linking.add_argument(
        "--cca-components",
        type=int,
        default=WorkflowOptions.cca_components,
        metavar="N",
        help="CCA components, capped at what the data allow (default: "
        + ", ".join(f"{n} with --links {source}" for source, n in CCA_COMPONENTS.items())
        + ")",
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    outputs = parser.add_argument_group("output")
    outputs.add_argument("--out", required=True, metavar="PATH", help="output .h5mu")
    outputs.add_argument(
        "--summary", metavar="PATH", help="output JSON summary (default: OUT with .json)"
    )
    outputs.add_argument("--save-model", metavar="DIR", help="also save the trained model here")
    _add_overwrite_argument(outputs, "OUT, SUMMARY and a non-empty --save-model folder")
    _add_talk_arguments(parser)


def _add_overwrite_argument(group, what: str) -> None:
    group.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace existing outputs ({what}); without it the run refuses to start",
    )


def _add_talk_arguments(parser: argparse.ArgumentParser) -> None:
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    talk.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="log debug messages and scvi-tools' and Lightning's INFO messages; print the "
        "traceback of a failure",
    )


def _add_integrate(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "integrate",
        help="Integrate two unpaired modalities from .h5mu/.h5ad files with SCMODAL.",
        description="Integrate two modalities whose cells differ (e.g. RNA and ADT) with\n"
        "SCMODAL: read the files, build linked features from raw counts, preprocess,\n"
        "train, and write the integrated MuData and a JSON summary. Progress is logged\n"
        "to stderr.",
        epilog=_INTEGRATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_arguments(parser)
    _add_link_arguments(parser)
    training = parser.add_argument_group("preprocessing and training")
    _add_preprocess_argument(
        training,
        "normalise (RNA: log1p, ADT: CLR) + highly variable genes (scmosaic.pp.preprocess); with "
        "--no-preprocess .X must already be normalised",
    )
    _add_training_arguments(training)
    _add_output_arguments(parser)
    return parser


def _add_preprocess_argument(group, what: str) -> None:
    group.add_argument(
        "--preprocess",
        action=argparse.BooleanOptionalAction,
        default=WorkflowOptions.preprocess,
        help=f"{what}. Default: --preprocess",
    )


def _add_map(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "map",
        help="Map new cells onto a saved reference model (query mapping).",
        description="Map new cells (a query) onto a reference SCMODAL saved with\n"
        "model.save(DIR): read the files, preprocess, select the reference's features,\n"
        "train the new batches' offsets and adapters with the reference's weights frozen,\n"
        "and write the query's latent codes and a JSON summary. Progress is logged to stderr.",
        epilog=_MAP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--reference",
        required=True,
        metavar="DIR",
        help="folder of the reference model (model.save(DIR), holding model.pt), trained "
        "with a batch key",
    )
    _add_input_arguments(parser, query=True)
    training = parser.add_argument_group("preprocessing and training")
    _add_preprocess_argument(
        training,
        "normalise (RNA: log1p, ADT: CLR) with all features kept (scmosaic.pp.preprocess), then the "
        "reference's features are selected by name; with --no-preprocess .X must already "
        "be preprocessed as the reference's data were",
    )
    _add_training_arguments(
        training,
        preset=False,
        max_steps_help="training iterations of the query (default: 300)",
        seed_help="seed of the minibatch sampling",
    )
    _add_output_arguments(parser)
    return parser


def _add_quickstart(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "quickstart",
        help="Integrate RNA with ADT on the bundled Hao 2021 PBMC subset (pairing hidden), "
        "print label-transfer accuracy and FOSCTTM, write a UMAP PNG.",
        epilog=_QUICKSTART_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", default="scmosaic_quickstart", help="output folder (default: %(default)s)"
    )
    _add_overwrite_argument(parser, "umap.png, metrics.json, integrated.h5mu in --out")
    _add_training_arguments(parser, accelerator=False)
    _add_talk_arguments(parser)
    return parser


# What libraries print that a user of the command line cannot act on; --verbose shows it.
# Loggers: scvi-tools' registration notes (in colour, on stdout) and Lightning's INFO lines.
_LIBRARY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "scvi")
# Warnings: mudata's about feature names shared across modalities (a protein and its gene
# named alike, e.g. CD4), which are separate features and what name links rely on.
_LIBRARY_WARNINGS = ((UserWarning, "mudata", r"var_names are not unique"),)


@contextlib.contextmanager
def _cli_output(quiet: bool, verbose: bool):
    """Log scmosaic's progress to stderr while the command runs; restore everything after.

    Only this process's command changes: the ``scmosaic`` logger gets a handler and the
    library loggers a level for the duration, and warnings are filtered in a
    :func:`warnings.catch_warnings` block, so ``main()`` called from Python leaves no trace.
    """
    # scvi-tools (and the Lightning it imports) set their loggers' levels when imported, which
    # would undo ours: import them first. Usage errors have been reported before this point.
    import scvi  # noqa: F401

    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("scmosaic: %(message)s"))
    handler.setLevel(level)
    package = logging.getLogger("scmosaic")
    libraries = [logging.getLogger(name) for name in _LIBRARY_LOGGERS]
    saved = (package.level, package.propagate, [lg.level for lg in libraries])
    package.addHandler(handler)
    package.setLevel(level)
    package.propagate = False
    if not verbose:
        for lg in libraries:
            lg.setLevel(logging.ERROR if quiet else logging.WARNING)
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            elif not verbose:
                for category, module, message in _LIBRARY_WARNINGS:
                    warnings.filterwarnings("ignore", message, category, module)
            yield
    finally:
        package.removeHandler(handler)
        package.setLevel(saved[0])
        package.propagate = saved[1]
        for lg, lvl in zip(libraries, saved[2], strict=True):
            lg.setLevel(lvl)


def _error(message: str) -> None:
    print(f"scmosaic: error: {message}", file=sys.stderr)


def _options(parser: argparse.ArgumentParser, make: Callable[..., T] = WorkflowOptions, **settings):
    """The run's options (``make(**settings)``); a bad value is a usage error (exit code 2)."""
    try:
        return make(**settings)
    except OptionsError as err:
        parser.error(str(err))


def _training_settings(args: argparse.Namespace) -> dict:
    """The values of the flags that _add_training_arguments added to the command."""
    names = ("max_steps", "preset", "seed", "threads", "accelerator")
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def _h5ad_files(parser: argparse.ArgumentParser, pairs: list[tuple[str, str]] | None):
    """``--h5ad NAME=PATH`` flags as ``{name: path}``; a name given twice is a usage error."""
    if not pairs:
        return None
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        parser.error(f"--h5ad names must differ, got {names}")
    return dict(pairs)


def _report(summary: dict, done: str) -> None:
    """Print what a run did (``done``, then its iterations) and what it wrote."""
    print(
        f"{done}; {summary['training']['iterations']} iterations in "
        f"{summary['training']['train_seconds']:.0f} s\n"
        f"wrote {summary['outputs']['mudata']} (.obsm[{summary['latent_key']!r}]) and "
        f"{summary['outputs']['summary']}"
    )


def _cell_counts(summary: dict) -> str:
    return ", ".join(f"{m} {n}" for m, n in summary["n_cells"].items())


def _run(
    parser: argparse.ArgumentParser, args: argparse.Namespace, job: Callable[[], T]
) -> tuple[T | None, int]:
    """Run ``job`` with the command's output settings: its result and the exit code.

    :class:`OptionsError` is a usage error (``parser.error``, exit code 2);
    :class:`InputError` (code 3) and unexpected exceptions (code 1) are reported in one
    line, with the traceback under ``--verbose``.
    """
    with _cli_output(args.quiet, args.verbose):
        try:
            return job(), EXIT_OK
        except OptionsError as err:  # the files given do not make a run
            parser.error(str(err))
        except InputError as err:
            if args.verbose:
                traceback.print_exc()
            _error(str(err))
            return None, EXIT_INPUT
        except Exception as err:  # anything else is unexpected: code 1
            if args.verbose:
                traceback.print_exc()
            _error(
                f"unexpected failure ({type(err).__name__}: {err}); "
                "rerun with --verbose for the traceback"
            )
            return None, EXIT_FAILURE


def _integrate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    options = _options(
        parser,
        modalities=args.modalities,
        links=args.links,
        table=args.table,
        cca_init=args.cca_init,
        labels_key=args.labels_key,
        cca_components=args.cca_components,
        kinds=dict(args.kind),
        preprocess=args.preprocess,
        layer=args.layer,
        batch_key=args.batch_key,
        progress_bar=not args.quiet and sys.stderr.isatty(),
        **_training_settings(args),
    )
    h5ad = _h5ad_files(parser, args.h5ad)
    from .workflow import integrate_files

    summary, code = _run(
        parser,
        args,
        lambda: integrate_files(
            args.out,
            options,
            mudata=args.mudata,
            h5ad=h5ad,
            summary=args.summary,
            save_model=args.save_model,
            overwrite=args.overwrite,
        ),
    )
    if code == EXIT_OK and not args.quiet:
        links = summary["links"]
        _report(
            summary,
            f"integrated {_cell_counts(summary)} cells with {links['n_linked_features']} "
            f"linked features ({links['source']})",
        )
    return code


def _map(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .workflow import MapOptions  # light: its module imports nothing heavy at the top

    options = _options(
        parser,
        MapOptions,
        modalities=args.modalities,
        batch=args.batch,
        kinds=dict(args.kind),
        preprocess=args.preprocess,
        layer=args.layer,
        progress_bar=not args.quiet and sys.stderr.isatty(),
        **_training_settings(args),
    )
    h5ad = _h5ad_files(parser, args.h5ad)
    from .workflow import map_files

    summary, code = _run(
        parser,
        args,
        lambda: map_files(
            args.reference,
            args.out,
            options,
            mudata=args.mudata,
            h5ad=h5ad,
            summary=args.summary,
            save_model=args.save_model,
            overwrite=args.overwrite,
        ),
    )
    if code == EXIT_OK and not args.quiet:
        new = summary["new_batches"]
        _report(
            summary,
            f"mapped {_cell_counts(summary)} cells onto {summary['reference']} "
            f"({len(new)} new batch{'es' if len(new) != 1 else ''}: {', '.join(new) or '-'})",
        )
    return code


def _quickstart(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    options = _options(
        parser,
        table=PACKAGED_TABLE,
        progress_bar=not args.quiet and sys.stderr.isatty(),
        **_training_settings(args),
    )
    from ._quickstart import run_quickstart

    metrics, code = _run(
        parser, args, lambda: run_quickstart(args.out, options, overwrite=args.overwrite)
    )
    if code == EXIT_OK and not args.quiet:
        print(
            f"label transfer (1-NN): ADT->RNA {metrics['label_transfer_adt_to_rna']:.3f}, "
            f"RNA->ADT {metrics['label_transfer_rna_to_adt']:.3f}, "
            f"mean {metrics['label_transfer_mean']:.3f}\n"
            f"FOSCTTM (symmetric, Euclidean): {metrics['foscttm_symmetric_euclidean']:.3f}\n"
            f"trained {metrics['iterations']} iterations in {metrics['train_seconds']:.0f} s; "
            f"outputs in {args.out}/ (umap.png, metrics.json, integrated.h5mu)"
        )
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 1 failure, 2 usage, 3 input).

    Examples
    --------
    >>> from scmosaic.__main__ import main
    >>> main(["integrate", "--mudata", "cite.h5mu", "--table", "packaged", "--out", "out.h5mu"])
    0
    """
    parser = argparse.ArgumentParser(prog="scmosaic", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = {"quickstart": _quickstart, "integrate": _integrate, "map": _map}
    subparsers = {
        "quickstart": _add_quickstart(commands),
        "integrate": _add_integrate(commands),
        "map": _add_map(commands),
    }
    try:
        args = parser.parse_args(argv)
        return run[args.command](subparsers[args.command], args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        if exc.code is None:
            return EXIT_OK
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
