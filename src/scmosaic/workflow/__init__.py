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
"""

from __future__ import annotations

from ._errors import InputError, OptionsError
from ._files import integrate_files
from ._fit import build_model, fit
from ._integrate import Integrated, integrate
from ._link import Linked, link
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
    "OptionsError",
    "OutputFiles",
    "WorkflowOptions",
    "build_model",
    "fit",
    "integrate",
    "integrate_files",
    "link",
    "preprocess",
    "read",
    "summarise",
    "write",
    "write_summary",
]
