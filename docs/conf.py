"""Sphinx configuration of the scmosaic documentation.

Build (from the repository root)::

    python -m sphinx -W -b html docs docs/_build/html

Cross-links to anndata, mudata, scanpy, scvi-tools, torch, numpy, pandas and Python need
internet access, so intersphinx is off by default (CI builds offline); enable it with
``SCMOSAIC_DOCS_INTERSPHINX=1``.
"""

from __future__ import annotations

import os
from datetime import datetime
from importlib.metadata import metadata

# -- Project information -----------------------------------------------------

info = metadata("scmosaic")
project = info["Name"]
author = info.get("Author") or "scmosaic developers"
copyright = f"{datetime.now():%Y}, {author}"
version = info["Version"]
release = info["Version"]
repository_url = "https://github.com/scverse/scmosaic"

# -- General configuration ---------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
]

templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "_templates",
    "Thumbs.db",
    ".DS_Store",
    "**.ipynb_checkpoints",
    "README.md",
]
source_suffix = {".rst": "restructuredtext", ".ipynb": "myst-nb", ".md": "myst-nb"}
master_doc = "index"
default_role = "literal"
pygments_style = "default"

# -- MyST / myst-nb ----------------------------------------------------------

nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = [
    "amsmath",
    "colon_fence",
    "deflist",
    "dollarmath",
    "html_image",
    "html_admonition",
]
myst_heading_anchors = 3
myst_url_schemes = ("http", "https", "mailto")

# -- autodoc / autosummary / napoleon ----------------------------------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "groupwise"
autodoc_default_options = {"show-inheritance": False}
autoclass_content = "class"  # the class docstring holds the parameters
autodoc_inherit_docstrings = False  # undocumented overrides must not show Lightning/torch docs
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = False  # descriptive return lines ("A new MuData ...") are not types
napoleon_use_param = True
napoleon_custom_sections = [("Params", "Parameters")]
typehints_defaults = "braces"
always_document_param_types = True
typehints_document_rtype = True

# -- intersphinx (opt-in: needs internet) ------------------------------------

INTERSPHINX = os.environ.get("SCMOSAIC_DOCS_INTERSPHINX", "0").lower() in {"1", "true", "yes"}
intersphinx_mapping = (
    {
        "python": ("https://docs.python.org/3", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "mudata": ("https://mudata.readthedocs.io/en/latest/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "lightning": ("https://lightning.ai/docs/pytorch/stable/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "pandas": ("https://pandas.pydata.org/pandas-docs/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "sklearn": ("https://scikit-learn.org/stable/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
    }
    if INTERSPHINX
    else {}
)
intersphinx_timeout = 30

# -- nitpicky: every internal cross-reference must resolve -------------------

nitpicky = True
_THIRD_PARTY = (
    "anndata", "mudata", "scanpy", "scvi", "torch", "lightning", "numpy", "np", "pandas",
    "pd", "scipy", "sklearn", "collections", "os", "pathlib", "typing", "numbers",
    "matplotlib", "faiss", "dataclasses",
)  # fmt: skip
nitpick_ignore_regex = [
    # Type-hint aliases and names that no inventory documents.
    ("py:class", r"(numpy\.typing\.)?ArrayLike"),
    ("py:class", r"torch\.nn\.(parameter\.)?Parameter"),
    # Unqualified third-party names as they appear in docstrings and annotations.
    (
        "py:class",
        r"(MuData|AnnData|DataFrame|Tensor|ndarray|LightningDataModule|"
        r"DataLoader|AnnDataManager|LossOutput|PathLike|TableLike|Module|Sequential)",
    ),
    # `tuple[str, ...]` in annotations.
    ("py:data", r"Ellipsis"),
    # Private module paths that autodoc-typehints emits and no inventory lists.
    ("py:class", r"(mudata|anndata|scvi|lightning|torch)\..*\._.*"),
]
if not INTERSPHINX:
    # Offline build: third-party targets cannot resolve; internal ones still must.
    _pattern = rf"({'|'.join(_THIRD_PARTY)})(\..+)?"
    nitpick_ignore_regex += [
        (f"py:{role}", _pattern)
        for role in ("class", "func", "meth", "mod", "obj", "attr", "data", "exc")
    ]

# -- HTML --------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_title = project
html_theme_options = {
    "repository_url": repository_url,
    "use_repository_button": True,
    "path_to_docs": "docs/",
    "navigation_with_keys": False,
}
html_show_sphinx = False
