"""Write step: the integrated MuData, the model and the JSON summary."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import InputError
from ._integrate import Integrated

logger = logging.getLogger(__name__)


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
    ) -> OutputFiles:
        """The output paths (``summary`` defaults to ``out`` with ``.json``), checked.

        Raises
        ------
        InputError
            ``out`` does not end with ``.h5mu``.
        """
        out = Path(out)
        if out.suffix.lower() != ".h5mu":
            raise InputError(f"output {out} must end with .h5mu")
        summary = Path(summary) if summary is not None else out.with_suffix(".json")
        return cls(out, summary, Path(save_model) if save_model is not None else None)

    def make_folders(self) -> None:
        """Create the parent folders of the output files."""
        for path in (self.mudata, self.summary):
            path.parent.mkdir(parents=True, exist_ok=True)

    def describe(self) -> dict[str, Any]:
        """The ``outputs`` entry of the run summary (absolute paths)."""
        return {
            "mudata": str(self.mudata.resolve()),
            "summary": str(self.summary.resolve()),
            "model": str(self.model.resolve()) if self.model is not None else None,
        }


def write(integrated: Integrated, outputs: OutputFiles) -> None:
    """Write step: the integrated MuData and, if asked, the model (overwritten).

    Raises
    ------
    InputError
        A file cannot be written.
    """
    logger.info("Writing %s", outputs.mudata)
    try:
        integrated.mdata.write(outputs.mudata)
        if outputs.model is not None:
            logger.info("Saving the model to %s", outputs.model)
            integrated.model.save(str(outputs.model), overwrite=True)
    except OSError as err:
        name = err.filename or outputs.mudata
        raise InputError(f"cannot write {name}: {err.strerror or err}") from err


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
    """Write the run summary as indented JSON.

    Raises
    ------
    InputError
        The file cannot be written.
    """
    try:
        path.write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n")
    except OSError as err:
        raise InputError(f"cannot write {path}: {err.strerror or err}") from err
    logger.info("Wrote %s", path)
