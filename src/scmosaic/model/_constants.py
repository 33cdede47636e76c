"""Registry keys and the description of a link between two modalities."""

from __future__ import annotations

from typing import NamedTuple


class Link(NamedTuple):
    """Two modalities joined by linked features of equal width.

    Column ``j`` of ``mdata[mod_a].obsm[key_a]`` measures the same thing as column ``j`` of
    ``mdata[mod_b].obsm[key_b]``.
    """

    mod_a: str
    mod_b: str
    key_a: str
    key_b: str

    @property
    def name(self) -> str:
        return f"{self.mod_a}-{self.mod_b}"


def default_link_key(other: str) -> str:
    """The ``.obsm`` key that :func:`scmosaic.pp.link_features` writes, e.g. ``linked_adt``."""
    return f"linked_{other}"


def features_key(modality: str) -> str:
    """Registry key of a modality's full feature matrix."""
    return f"X_{modality}"


def link_key(link_index: int, modality: str) -> str:
    """Registry key of one side of link ``link_index``."""
    return f"link{link_index}_{modality}"


LATENT_OBSM_KEY = "X_scmodal"
