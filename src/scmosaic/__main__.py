"""Command line: ``scmosaic quickstart`` and ``scmosaic integrate`` (or ``python -m scmosaic``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
import warnings

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


def _name_path(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, path


def _name_kind(value: str) -> tuple[str, str]:
    name, sep, kind = value.partition("=")
    if not sep or not name or kind not in ("rna", "adt", "atac"):
        raise argparse.ArgumentTypeError(f"expected NAME=rna|adt|atac, got {value!r}")
    return name, kind


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


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
    linking = parser.add_argument_group("linked features")
    linking.add_argument(
        "--links",
        choices=["table", "names", "cca"],
        default="table",
        help="table: protein->gene table (--table); names: features with the same name in "
        "both modalities; cca: canonical correlation scores (--cca-init). Default: table",
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
        choices=["labels", "links"],
        default="labels",
        help="prior of --links cca: labels (--labels-key, known in both modalities) or "
        "links (--table, else shared names). Default: labels",
    )
    linking.add_argument(
        "--labels-key", metavar="KEY", help=".obs column with labels in both modalities"
    )
    linking.add_argument(
        "--cca-components",
        type=_positive,
        default=10,
        metavar="N",
        help="CCA components, capped at what the data allow (default: 10)",
    )
    prep = parser.add_argument_group("preprocessing and training")
    prep.add_argument(
        "--preprocess",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="normalise + log1p + highly variable genes (scmosaic.pp.preprocess); with "
        "--no-preprocess .X must already be log-normalised. Default: --preprocess",
    )
    prep.add_argument(
        "--max-steps",
        type=_positive,
        default=None,
        metavar="N",
        help="training iterations (default: the preset's; default preset 1,000-2,000 by data "
        "size, reference preset 10,000)",
    )
    prep.add_argument(
        "--preset",
        choices=["default", "reference"],
        default="default",
        help="model preset: scmosaic's default or the published scMODAL reference values "
        "(default: default)",
    )
    prep.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of weights, sampling, CCA (0)"
    )
    prep.add_argument(
        "--threads",
        type=_positive,
        default=None,
        metavar="N",
        help="torch CPU threads (default: torch's choice)",
    )
    prep.add_argument(
        "--accelerator",
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="Lightning accelerator (default: auto, a GPU if there is one)",
    )
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


def _integrate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.links == "table" and args.table is None:
        parser.error("--links table needs --table CSV (or --table packaged)")
    if args.links == "cca" and args.cca_init == "labels" and not args.labels_key:
        parser.error("--links cca --cca-init labels needs --labels-key KEY")
    h5ad = None
    if args.h5ad:
        names = [name for name, _ in args.h5ad]
        if len(set(names)) != len(names):
            parser.error(f"--h5ad names must differ, got {names}")
        if len(names) < 2:
            parser.error("give --h5ad NAME=PATH for at least two modalities")
        h5ad = dict(args.h5ad)

    from ._integrate import InputError, run_integrate

    with _cli_logging(args.quiet, args.verbose):
        try:
            summary = run_integrate(
                args.out,
                mudata=args.mudata,
                h5ad=h5ad,
                modalities=args.modalities,
                links=args.links,
                table=args.table,
                cca_init=args.cca_init,
                labels_key=args.labels_key,
                cca_components=args.cca_components,
                kinds=dict(args.kind),
                preprocess=args.preprocess,
                layer=args.layer,
                max_steps=args.max_steps,
                preset=args.preset,
                seed=args.seed,
                threads=args.threads,
                accelerator=args.accelerator,
                summary=args.summary,
                save_model=args.save_model,
                progress_bar=not args.quiet and sys.stderr.isatty(),
            )
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
        n_cells = ", ".join(f"{m} {n}" for m, n in summary["n_cells"].items())
        print(
            f"integrated {n_cells} cells with {summary['links']['n_linked_features']} linked "
            f"features ({summary['links']['source']}); {summary['training']['iterations']} "
            f"iterations in {summary['training']['train_seconds']:.0f} s\n"
            f"wrote {summary['outputs']['mudata']} (.obsm['X_scmodal']) and "
            f"{summary['outputs']['summary']}"
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
    quick = commands.add_parser(
        "quickstart",
        help="Integrate RNA with ADT on the bundled Hao 2021 PBMC subset (pairing hidden), "
        "print label-transfer accuracy and FOSCTTM, write a UMAP PNG.",
    )
    quick.add_argument("--out", default="scmosaic_quickstart", help="output folder")
    quick.add_argument("--max-steps", type=int, default=None, help="training iterations")
    quick.add_argument("--preset", default="default", choices=["default", "reference"])
    quick.add_argument("--seed", type=int, default=0)
    quick.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    integrate = _add_integrate(commands)
    try:
        args = parser.parse_args(argv)
        if args.command == "integrate":
            return _integrate(integrate, args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        if exc.code is None:
            return EXIT_OK
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    from ._quickstart import run_quickstart

    metrics = run_quickstart(args.out, args.max_steps, args.preset, args.seed, args.threads)
    print(
        f"label transfer (1-NN): ADT->RNA {metrics['label_transfer_adt_to_rna']:.3f}, "
        f"RNA->ADT {metrics['label_transfer_rna_to_adt']:.3f}, "
        f"mean {metrics['label_transfer_mean']:.3f}\n"
        f"FOSCTTM (symmetric, Euclidean): {metrics['foscttm_symmetric_euclidean']:.3f}\n"
        f"trained {metrics['iterations']} iterations in {metrics['train_seconds']:.0f} s; "
        f"outputs in {args.out}/ (umap.png, metrics.json, integrated.h5mu)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
