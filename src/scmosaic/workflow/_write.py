"""Write step: the integrated MuData, the model and the JSON summary.

Every output is written to a temporary path in its own folder and moved into place only
when writing succeeded, so a failed or interrupted run never leaves a truncated file, and
an existing output is replaced only when asked (``overwrite``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._errors import InputError

if TYPE_CHECKING:
    from ._integrate import Integrated

logger = logging.getLogger(__name__)


# --------------------------------------------------------------- outputs moved into place
def _is_taken(path: Path) -> bool:
    """Whether writing ``path`` would replace something: a file, or a non-empty folder."""
    if path.is_dir():
        return any(path.iterdir())
    return path.exists()


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Raise :class:`InputError` naming the outputs in ``paths`` that exist, unless ``overwrite``."""
    taken = [str(p) for p in paths if _is_taken(p)]
    if taken and not overwrite:
        several = len(taken) > 1
        raise InputError(
            f"output{'s' if several else ''} {', '.join(taken)} already "
            f"exist{'' if several else 's'}; pass --overwrite (overwrite=True) to replace "
            f"{'them' if several else 'it'}, or choose another path"
        )


def _temporary_path(path: Path) -> Path:
    """An unused hidden name next to ``path``, ending like it (writers pick formats by suffix).

    Not created here, so the writer creates it with the usual permissions.
    """
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _move_into_place(temporary: Path, path: Path) -> None:
    if not temporary.is_dir() or not path.exists():
        os.replace(temporary, path)  # atomic within a file system
        return
    # a folder cannot replace a non-empty folder in one step: move the old one aside first
    old = _temporary_path(path)
    os.replace(path, old)
    try:
        os.replace(temporary, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def replace_on_success(*paths: Path | None) -> Iterator[tuple[Path | None, ...]]:
    """Temporary paths to write ``paths`` to, moved onto them when the whole block succeeds.

    Each temporary path is in the folder of its output (so the move is a rename, atomic
    within a file system) and ends with its suffix. If the block raises (or is
    interrupted), the temporaries are removed and ``paths`` are left as they were.

    Parameters
    ----------
    *paths
        Output files or folders; ``None`` gives ``None``.

    Examples
    --------
    >>> with replace_on_success(Path("out.json")) as (tmp,):
    ...     tmp.write_text("{}")
    """
    temporaries = tuple(None if p is None else _temporary_path(p) for p in paths)
    try:
        yield temporaries
    except BaseException:
        for temporary in temporaries:
            if temporary is not None:
                _remove(temporary)
        raise
    for temporary, path in zip(temporaries, paths, strict=True):
        if path is not None:
            _move_into_place(temporary, path)


# ------------------------------------------------------------------------- the outputs
@dataclass(frozen=True)
class OutputFiles:
    """Where a run writes: the integrated ``.h5mu``, the JSON summary, optionally the model."""

    mudata: Path
    summary: Path
    model: Path | None = None

    @classmethod
    def check(
        cls,
        out: str | PathLike[str],
        summary: str | PathLike[str] | None = None,
        save_model: str | PathLike[str] | None = None,
        *,
        overwrite: bool = False,
    ) -> OutputFiles:
        """The output paths (``summary`` defaults to ``out`` with ``.json``), checked.

        Parameters
        ----------
        out
            Output ``.h5mu``.
        summary
            Output JSON summary.
        save_model
            Folder for the trained model.
        overwrite
            Replace outputs that exist (a file, or a non-empty model folder).

        Raises
        ------
        InputError
            ``out`` does not end with ``.h5mu``; ``out`` or ``summary`` is a folder,
            ``save_model`` a file; an output exists and ``overwrite`` is ``False``.
        """
        out = Path(out)
        if out.suffix.lower() != ".h5mu":
            raise InputError(f"output {out} must end with .h5mu")
        summary = Path(summary) if summary is not None else out.with_suffix(".json")
        model = Path(save_model) if save_model is not None else None
        for path in (out, summary):
            if path.is_dir():
                raise InputError(f"output {path} is a folder; give a file name")
        if model is not None and model.exists() and not model.is_dir():
            raise InputError(f"model folder {model} is a file; give a folder name")
        refuse_existing([p for p in (out, summary, model) if p is not None], overwrite)
        return cls(out, summary, model)

    def make_folders(self) -> None:
        """Create the parent folders of the outputs."""
        for path in (self.mudata, self.summary, self.model):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)

    def describe(self) -> dict[str, Any]:
        """The ``outputs`` entry of the run summary (absolute paths)."""
        return {
            "mudata": str(self.mudata.resolve()),
            "summary": str(self.summary.resolve()),
            "model": str(self.model.resolve()) if self.model is not None else None,
        }


def cannot_write(path: Path, err: OSError) -> InputError:
    """The :class:`InputError` for an output that could not be written, naming the output.

    ``err.filename`` is the temporary path; the user knows the output by its own name.
    """
    return InputError(f"cannot write {path}: {err.strerror or err}")


def write(integrated: Integrated, outputs: OutputFiles) -> None:
    """Write step: the integrated MuData and, if asked, the model.

    Both are written to temporary paths and moved into place together when both are
    written: a failure leaves neither (and any previous outputs unchanged).

    Raises
    ------
    InputError
        A file cannot be written.
    """
    logger.info("Writing %s", outputs.mudata)
    target = outputs.mudata
    try:
        with replace_on_success(outputs.mudata, outputs.model) as (mudata, model):
            integrated.mdata.write(mudata)
            if model is not None:
                target = outputs.model
                logger.info("Saving the model to %s", outputs.model)
                integrated.model.save(str(model))
    except OSError as err:
        raise cannot_write(target, err) from err


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_summary(summary: dict[str, Any], path: Path) -> None:
    """Write the run summary as indented JSON (through a temporary file).

    Raises
    ------
    InputError
        The file cannot be written.
    """
    text = json.dumps(summary, indent=2, default=_jsonable) + "\n"
    try:
        with replace_on_success(Path(path)) as (temporary,):
            temporary.write_text(text)
    except OSError as err:
        raise cannot_write(Path(path), err) from err
    logger.info("Wrote %s", path)
