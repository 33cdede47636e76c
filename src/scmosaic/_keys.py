"""Every key scmosaic reads or writes: ``.obsm`` / ``.uns`` / ``.layers`` names and registry keys.

Keys belong to the package, not to one submodule: :mod:`scmosaic.pp`, :mod:`scmosaic.tl`,
:mod:`scmosaic.pl`, the model and the command line all import them from here (as scvi-tools
does with ``REGISTRY_KEYS``). Registry keys name the tensors of one modality or one side of a
link in scvi-tools' registry; only :mod:`scmosaic.model._layout` turns them into a structured
minibatch, so the training plan and the module never assemble key strings.
"""

from __future__ import annotations

# ---------------------------------------------------------------- keys written into MuData
LATENT_OBSM_KEY = "X_scmodal"
"""``.obsm`` key of each modality's latent codes (``get_latent_representation(write_obsm=True)``)."""

CCA_OBSM_KEY = "X_cca"
"""``.obsm`` key of the canonical variates written by :func:`scmosaic.pp.cca_links`."""

LINKED_CCA_OBSM_KEY = "X_linked_cca"
"""``.obsm`` key of prior links and the canonical scores refined from them side by side,
each block weighted to count equally, written by the workflow's link step with
``links="table+cca"`` or ``"names+cca"``."""

CCA_UNS_KEY = "scmosaic_cca"
"""``.uns`` key of the summary written by :func:`scmosaic.pp.cca_links`."""

PREPROCESS_UNS_KEY = "scmosaic_preprocess"
"""``.uns`` key of the settings recorded by :func:`scmosaic.pp.preprocess`."""

GENE_ACTIVITY_UNS_KEY = "scmosaic_gene_activity"
"""``.uns`` key of the settings recorded by :func:`scmosaic.pp.gene_activity`."""

QUERY_UNS_KEY = "scmosaic_query"
"""``.uns`` key of the feature report written by :meth:`SCMODAL.prepare_query_mudata`."""

COUNTS_LAYER = "counts"
"""Layer in which :func:`scmosaic.pp.preprocess` keeps the raw counts."""

CELL_ID_OBS_KEY = "cell_id"
"""``.obs`` column in which :func:`scmosaic.datasets.hide_pairing` keeps the original cell name."""


def linked_obsm_key(other: str) -> str:
    """The ``.obsm`` key that :func:`scmosaic.pp.link_features` writes, e.g. ``linked_adt``."""
    return f"linked_{other}"


# ------------------------------------------------------------------ scvi-tools registry keys
def features_registry_key(modality: str) -> str:
    """Registry key of a modality's full feature matrix."""
    return f"X_{modality}"


def link_registry_key(link_index: int, modality: str) -> str:
    """Registry key of one side (``modality``) of link number ``link_index``."""
    return f"link{link_index}_{modality}"


def batch_registry_key(modality: str) -> str:
    """Registry key of a modality's batch codes (``setup_mudata(batch_key=...)``)."""
    return f"batch_{modality}"


JOINT_LATENT_OBSM_KEY = LATENT_OBSM_KEY
"""``mdata.obsm`` key of the joint code per cell (``get_joint_representation(write_obsm=True)``)."""
