"""Command line: ``scmosaic quickstart`` and ``scmosaic integrate`` (or ``python -m scmosaic``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
import warnings
from typing import get_args

from ._quickstart import run_quickstart
from .model import PRESETS
from .workflow import (
    PACKAGED_TABLE,
    Accelerator,
    CcaInit,
    InputError,
    LinkSource,
    OptionsError,
    WorkflowOptions,
    integrate_files,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INPUT = 3

_INTEGRATE_EPILOG = """\
examples:
  # one .h5ad per modality (raw counts), ADT->gene links from your CSV table
  scmosaic integrate --h5ad rna=rna.h5ad --h5ad adt=adt.h5ad \\
      --links table --table adt_genes.csv --out integrated.h5mu

  # a MuData file, scmosaic's packaged human ADT table, 2,000 iterations on a GPU
  scmosaic integrate --mudata cite.h5mu --modalities rna adt --links table \\
      --table packaged --max-steps 2000 --accelerator gpu --out integrated.h5mu

  # no table: CCA linked features initialised from labels known in both modalities
  scmosaic integrate --mudata in.h5mu --links cca --cca-init labels \\
      --labels-key celltype --out integrated.h5mu

outputs:
  OUT (.h5mu)    the two integrated modalities (log-normalised, HVGs, raw counts in
                 .layers["counts"] unless --no-preprocess) with the joint latent codes in
                 .obsm["X_scmodal"] of each; linked features in .obsm["linked_<other>"]
                 (table/names) or .obsm["X_cca"] (cca)
  SUMMARY (.json) inputs, modalities, cell counts, link source and report (number of
                 linked features), iterations, training seconds, final losses
                 (model.history), scmosaic version, output paths

exit codes:
  0  success
  1  unexpected failure (rerun with --verbose for the traceback)
  2  usage error (bad or missing options)
  3  input or data error (missing, unreadable or wrong-type file, unknown modality,
     table or key, data that fail validation); the message names the culprit
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


def _add_training_arguments(group, accelerator: bool = True) -> None:
    """Options of the fit step, shared by both commands; values are checked by WorkflowOptions."""
    group.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="training iterations (default: the preset's; default preset 1,000-2,000 by data "
        "size, reference preset 10,000)",
    )
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=WorkflowOptions.preset,
        help="model preset: scmosaic's default or the published scMODAL reference values "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=WorkflowOptions.seed,
        metavar="N",
        help="seed of weights, sampling, CCA (%(default)s)",
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


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
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
    inputs.add_argument(
        "--modalities",
        nargs=2,
        metavar=("A", "B"),
        help="the two modalities to integrate (default: all, if there are exactly two)",
    )
    inputs.add_argument(
        "--layer",
        help="layer with raw counts in both modalities (default: .X)",
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
        "both modalities; cca: canonical correlation scores (--cca-init). Default: %(default)s",
    )
    linking.add_argument(
        "--table",
        metavar="CSV|packaged",
        help="protein->gene table: a CSV (columns protein,genes[,aliases]; MaxFuse, TEA-seq "
        "and totalVI layouts are read too) or 'packaged' for scmosaic's human ADT table. "
        "Required by --links table; with --links cca --cca-init links it gives the prior "
        "links (default there: shared names)",
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
        help="CCA components, capped at what the data allow (default: %(default)s)",
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    outputs = parser.add_argument_group("output")
    outputs.add_argument("--out", required=True, metavar="PATH", help="output .h5mu")
    outputs.add_argument(
        "--summary", metavar="PATH", help="output JSON summary (default: OUT with .json)"
    )
    outputs.add_argument(
        "--save-model", metavar="DIR", help="also save the trained model here (overwritten)"
    )
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("--quiet", "-q", action="store_true", help="log errors only")
    talk.add_argument("--verbose", "-v", action="store_true", help="log debug messages")


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
    training.add_argument(
        "--preprocess",
        action=argparse.BooleanOptionalAction,
        default=WorkflowOptions.preprocess,
        help="normalise + log1p + highly variable genes (scmosaic.pp.preprocess); with "
        "--no-preprocess .X must already be log-normalised. Default: --preprocess",
    )
    _add_training_arguments(training)
    _add_output_arguments(parser)
    return parser


def _add_quickstart(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "quickstart",
        help="Integrate RNA with ADT on the bundled Hao 2021 PBMC subset (pairing hidden), "
        "print label-transfer accuracy and FOSCTTM, write a UMAP PNG.",
    )
    parser.add_argument("--out", default="scmosaic_quickstart", help="output folder")
    _add_training_arguments(parser, accelerator=False)
    return parser


@contextlib.contextmanager
def _cli_logging(quiet: bool, verbose: bool):
    """Log scmosaic's progress to stderr while the command runs; restore everything after."""
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("scmosaic: %(message)s"))
    handler.setLevel(level)
    package = logging.getLogger("scmosaic")
    noisy = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "scvi")]
    saved = (package.level, package.propagate, [lg.level for lg in noisy])
    package.addHandler(handler)
    package.setLevel(level)
    package.propagate = False
    if not verbose:
        for lg in noisy:
            lg.setLevel(logging.WARNING if not quiet else logging.ERROR)
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            yield
    finally:
        package.removeHandler(handler)
        package.setLevel(saved[0])
        package.propagate = saved[1]
        for lg, lvl in zip(noisy, saved[2], strict=True):
            lg.setLevel(lvl)


def _error(message: str) -> None:
    print(f"scmosaic: error: {message}", file=sys.stderr)


def _options(parser: argparse.ArgumentParser, **settings):
    """The run's WorkflowOptions; a bad value is a usage error (exit code 2)."""
    try:
        return WorkflowOptions(**settings)
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


def _report(summary: dict) -> None:
    n_cells = ", ".join(f"{m} {n}" for m, n in summary["n_cells"].items())
    print(
        f"integrated {n_cells} cells with {summary['links']['n_linked_features']} linked "
        f"features ({summary['links']['source']}); {summary['training']['iterations']} "
        f"iterations in {summary['training']['train_seconds']:.0f} s\n"
        f"wrote {summary['outputs']['mudata']} (.obsm[{summary['latent_key']!r}]) and "
        f"{summary['outputs']['summary']}"
    )


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
        progress_bar=not args.quiet and sys.stderr.isatty(),
        **_training_settings(args),
    )
    h5ad = _h5ad_files(parser, args.h5ad)
    with _cli_logging(args.quiet, args.verbose):
        try:
            summary = integrate_files(
                args.out,
                options,
                mudata=args.mudata,
                h5ad=h5ad,
                summary=args.summary,
                save_model=args.save_model,
            )
        except OptionsError as err:  # the input files given do not make a run
            parser.error(str(err))
        except InputError as err:
            if args.verbose:
                traceback.print_exc()
            _error(str(err))
            return EXIT_INPUT
        except Exception as err:  # anything else is unexpected: code 1
            if args.verbose:
                traceback.print_exc()
            _error(
                f"unexpected failure ({type(err).__name__}: {err}); "
                "rerun with --verbose for the traceback"
            )
            return EXIT_FAILURE
    if not args.quiet:
        _report(summary)
    return EXIT_OK


def _quickstart(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    options = _options(
        parser,
        table=PACKAGED_TABLE,
        progress_bar=sys.stderr.isatty(),
        **_training_settings(args),
    )
    metrics = run_quickstart(args.out, options)
    print(
        f"label transfer (1-NN): ADT->RNA {metrics['label_transfer_adt_to_rna']:.3f}, "
        f"RNA->ADT {metrics['label_transfer_rna_to_adt']:.3f}, "
        f"mean {metrics['label_transfer_mean']:.3f}\n"
        f"FOSCTTM (symmetric, Euclidean): {metrics['foscttm_symmetric_euclidean']:.3f}\n"
        f"trained {metrics['iterations']} iterations in {metrics['train_seconds']:.0f} s; "
        f"outputs in {args.out}/ (umap.png, metrics.json, integrated.h5mu)"
    )
    return EXIT_OK


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
    run = {"quickstart": _quickstart, "integrate": _integrate}
    subparsers = {"quickstart": _add_quickstart(commands), "integrate": _add_integrate(commands)}
    try:
        args = parser.parse_args(argv)
        return run[args.command](subparsers[args.command], args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        if exc.code is None:
            return EXIT_OK
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
