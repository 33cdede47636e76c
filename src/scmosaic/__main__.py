"""Command line entry point: ``scmosaic quickstart`` (or ``python -m scmosaic quickstart``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)

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
