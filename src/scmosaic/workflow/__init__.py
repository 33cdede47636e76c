"""The integration workflow in named steps: the command line, quick start and benchmarks run it.

One :class:`WorkflowOptions` object, checked once when it is made, drives every step:

* :func:`read`: input files (:class:`InputFiles`) -> one MuData of the two modalities;
* :func:`link`: linked features from a protein -> gene table, shared names or CCA
  (:class:`Linked`);
* :func:`preprocess`: log-normalisation and highly variable genes;
* :func:`build_model` and :func:`fit`: register the data, build and train SCMODAL;
* :func:`write`: the integrated MuData and the model (:class:`OutputFiles`);
* :func:`summarise`: the run summary that :func:`write_summary` writes as JSON.

:func:`integrate` chains link, preprocess and fit on a MuData in memory;
:func:`integrate_files` is the ``scmosaic integrate`` job, files in and files out.
:func:`map_files` is the ``scmosaic map`` job: new cells mapped onto a saved reference
model (:class:`MapOptions`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._errors import InputError, OptionsError
    from ._files import integrate_files
    from ._fit import build_model, fit
    from ._integrate import Integrated, integrate
    from ._link import Linked, link
    from ._map import MapOptions, Mapped, map_files
    from ._options import PACKAGED_TABLE, Accelerator, CcaInit, LinkSource, WorkflowOptions
    from ._preprocess import preprocess
    from ._read import InputFiles, read
    from ._summary import summarise
    from ._write import OutputFiles, write, write_summary

__all__ = [
    "PACKAGED_TABLE",
    "Accelerator",
    "CcaInit",
    "LinkSource",
    "InputError",
    "InputFiles",
    "Integrated",
    "Linked",
    "MapOptions",
    "Mapped",
    "OptionsError",
    "OutputFiles",
    "WorkflowOptions",
    "build_model",
    "fit",
    "integrate",
    "integrate_files",
    "link",
    "map_files",
    "preprocess",
    "read",
    "summarise",
    "write",
    "write_summary",
]

# Each name loads its module on first use (PEP 562): the options and errors import nothing
# heavy, so the command line checks its arguments before torch and scvi-tools load.
_MODULE_OF = {
    "InputError": "_errors",
    "OptionsError": "_errors",
    "integrate_files": "_files",
    "build_model": "_fit",
    "fit": "_fit",
    "Integrated": "_integrate",
    "integrate": "_integrate",
    "Linked": "_link",
    "link": "_link",
    "MapOptions": "_map",
    "Mapped": "_map",
    "map_files": "_map",
    "PACKAGED_TABLE": "_options",
    "Accelerator": "_options",
    "CcaInit": "_options",
    "LinkSource": "_options",
    "WorkflowOptions": "_options",
    "preprocess": "_preprocess",
    "InputFiles": "_read",
    "read": "_read",
    "summarise": "_summary",
    "OutputFiles": "_write",
    "write": "_write",
    "write_summary": "_write",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
