"""Helpers shared by the benchmark scripts: thread pinning, memory and iteration timing.

* ``THREAD_ENV``: environment that pins BLAS/OpenMP/numba to one thread (subprocesses).
* ``rss_gb``, ``maxrss_gb``, ``reset_peak``: resident and peak memory of this process.
* ``IterationTimer``: Lightning callback with the wall time of every training iteration.
* ``run_workflow``: the README workflow on a MuData, timed end to end and training alone.
* ``launch_one``, ``launch_all``: runs of a script, each in a fresh single-threaded process;
  ``peer_python``: the interpreter of a peer's own virtual environment.
* ``grid_main``: the command line of a script that runs methods x datasets (or panels) x seeds.
* ``update_readme``: replace a results table of the repository's README with a regenerated one.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from scmosaic.workflow import Linked

# Oversubscription on a small shared machine made cca_links ~30x slower.
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def rss_gb(field: str = "VmRSS") -> float | None:
    """``VmRSS`` (or another field) of this process from ``/proc/self/status``, in GB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def maxrss_gb() -> float:
    """Peak RSS of this process in GB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark of this process; ``False`` where not Linux."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class IterationTimer(Callback):
    """Wall time of every training iteration; on a GPU queued kernels are waited for."""

    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)


@dataclasses.dataclass
class WorkflowRun:
    """What :func:`run_workflow` measured."""

    processed: object  # the preprocessed MuData the model was trained on
    latent: dict
    model: object
    linked: Linked
    seconds: float  # linking, preprocessing, setup, training and latent codes
    train_seconds: float


def run_workflow(mdata, options, seed: int, **model_kwargs) -> WorkflowRun:
    """Link, preprocess, train (``options``) and embed ``mdata`` as the README does.

    Timed from linking to the latent codes, as ``compare.py`` times ``scmodal_table``.
    ``model_kwargs``: settings of :class:`scmosaic.SCMODAL` that differ from the preset's.
    """
    import scvi

    from scmosaic import SCMODAL, workflow

    start = time.perf_counter()
    linked = workflow.link(mdata, options)
    processed = workflow.preprocess(mdata, options)
    scvi.settings.seed = seed
    model = workflow.build_model(processed, linked, options)
    if model_kwargs:  # the data are registered; the same model with other settings
        model = SCMODAL(processed, preset=options.preset, seed=options.seed, **model_kwargs)
    train_seconds = workflow.fit(model, options)
    latent = model.get_latent_representation()
    seconds = time.perf_counter() - start
    return WorkflowRun(processed, latent, model, linked, seconds, train_seconds)


VENVS = Path(__file__).parent / ".venvs"


def peer_python(peer: str) -> str:
    """The interpreter of ``benchmarks/.venvs/<peer>`` where it exists (a peer whose pins
    conflict with scmosaic's lives there), else this one."""
    python = VENVS / peer / "bin" / "python"
    return str(python) if python.exists() else sys.executable


def launch_one(script: str, *args, threads: int = 1, python: str | None = None) -> str:
    """``script --one args...`` in a fresh process of ``threads`` threads (its own wall time),
    run by ``python`` (default: this interpreter; e.g. a peer's virtual environment).

    Returns the run's last line of output, or the end of its stderr if it failed.
    """
    cmd = [python or sys.executable, script, "--one", *map(str, args)]
    env = os.environ | {key: str(threads) for key in THREAD_ENV}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        return f"FAILED {' '.join(map(str, args))}:\n{done.stderr[-3000:]}"
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else f"done {' '.join(map(str, args))}"


def launch_all(script: str, runs: list[tuple], jobs: int, python=None) -> None:
    """:func:`launch_one` for every run, ``jobs`` at a time, printing each outcome;
    ``python(run)`` may name the interpreter of a run (``None``: this one)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(run: tuple) -> str:
        return launch_one(script, *run, python=python(run) if python else None)

    with ThreadPoolExecutor(jobs) as pool:
        for line in pool.map(one, runs):
            print(line, flush=True)


def grid_main(script, description, methods, axis, values, run_one, out, file_name, finish):
    """Command line of a script that runs ``methods`` x ``values`` of ``axis`` x seeds.

    ``--methods``, ``--<axis>s``, ``--seeds`` choose the runs, each launched in its own
    process (``--jobs`` at a time; a peer's in its virtual environment, :func:`peer_python`)
    as ``script --one METHOD VALUE SEED``, which writes ``run_one(method, value, seed)`` to
    ``out / file_name(method, value, seed)`` as JSON. ``finish()`` then writes the report;
    ``--report`` only does that.
    """
    import argparse
    import json

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--methods", nargs="+", default=methods, choices=methods)
    parser.add_argument(f"--{axis}s", nargs="+", default=values, choices=values, dest="values")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 per core)")
    parser.add_argument("--report", action="store_true", help="only write the report")
    parser.add_argument(
        "--one", nargs=3, metavar=("METHOD", axis.upper(), "SEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        method, value, seed = args.one[0], args.one[1], int(args.one[2])
        record = run_one(method, value, seed)
        out.mkdir(parents=True, exist_ok=True)
        (out / file_name(method, value, seed)).write_text(json.dumps(record, indent=2))
        print(f"{method} {value} seed {seed}: done", flush=True)
        return
    if not args.report:
        runs = [(m, v, s) for v in args.values for m in args.methods for s in args.seeds]
        launch_all(script, runs, args.jobs, python=lambda run: peer_python(run[0]))
    finish()


README = Path(__file__).parent.parent / "README.md"


def update_readme(name: str, table: str, readme: Path = README) -> None:
    """Replace the text between ``<!-- name table -->`` and ``<!-- /name table -->`` in the
    README with ``table``, so that the README's results are the script's, not retyped."""
    start, end = f"<!-- {name} table -->", f"<!-- /{name} table -->"
    text = readme.read_text()
    if start not in text or end not in text:
        raise KeyError(f"README.md has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table.strip()}\n{end}{tail}")
