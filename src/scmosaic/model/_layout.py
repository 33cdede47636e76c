"""What a registered MuData holds, parsed once at setup: modalities, links and their keys.

:class:`DataLayout` is the only place that knows which registry keys belong to which modality
and link. The data module loads the keys it lists, and :meth:`DataLayout.structure` turns
the loaders' ``{modality: {registry_key: tensor}}`` into a :class:`MosaicBatch`, so the training
plan and the module work with named fields and never assemble key strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .._keys import features_registry_key, link_registry_key, linked_obsm_key


@dataclass(frozen=True)
class Link:
    """Two modalities joined by linked features of equal width.

    Column ``j`` of ``mdata[mod_a].obsm[key_a]`` measures the same thing as column ``j`` of
    ``mdata[mod_b].obsm[key_b]``. ``index`` is the link's position in the registration; it
    numbers the link's discriminator and registry keys.
    """

    index: int
    mod_a: str
    mod_b: str
    key_a: str
    key_b: str

    @property
    def name(self) -> str:
        return f"{self.mod_a}-{self.mod_b}"

    @property
    def sides(self) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
        """``(modality, obsm key, registry key)`` of side a, then side b."""
        return (
            (self.mod_a, self.key_a, link_registry_key(self.index, self.mod_a)),
            (self.mod_b, self.key_b, link_registry_key(self.index, self.mod_b)),
        )


def parse_links(links: Sequence[Sequence[str]], modalities: Sequence[str]) -> tuple[Link, ...]:
    """Normalise user links (``(a, b)`` or ``(a, b, key_a, key_b)``) to :class:`Link` records."""
    if isinstance(links, str) or not isinstance(links, Sequence) or len(links) == 0:
        raise ValueError(
            "links must be a non-empty list such as [('rna', 'adt')] or "
            "[('rna', 'adt', 'linked_adt', 'linked_rna')]."
        )
    parsed = []
    for index, spec in enumerate(links):
        spec = tuple(spec)
        if len(spec) == 2:
            a, b = spec
            link = Link(index, a, b, linked_obsm_key(b), linked_obsm_key(a))
        elif len(spec) == 4:
            link = Link(index, *spec)
        else:
            raise ValueError(
                f"Link {spec!r} must be (mod_a, mod_b) or (mod_a, mod_b, obsm_key_a, obsm_key_b)."
            )
        for mod in (link.mod_a, link.mod_b):
            if mod not in modalities:
                raise ValueError(
                    f"Link {link.name!r} names modality {mod!r}, which is not among the "
                    f"registered modalities {list(modalities)}."
                )
        if link.mod_a == link.mod_b:
            raise ValueError(f"Link {link.name!r} joins a modality with itself.")
        parsed.append(link)
    return tuple(parsed)


@dataclass
class MosaicBatch:
    """One training minibatch, with named fields instead of registry keys.

    ``x`` holds the registered (unscaled) features of the sampled cells, per modality;
    ``linked`` the linked features ``(P_a, P_b)`` of the sampled cells of both sides, per
    link, in link order.
    """

    x: dict[str, torch.Tensor]
    linked: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def n_obs(self) -> int:
        """Cells in the batch, summed over modalities."""
        return sum(v.shape[0] for v in self.x.values())


@dataclass(frozen=True)
class DataLayout:
    """The registered modalities and links, and the registry keys each modality loads."""

    modalities: tuple[str, ...]
    links: tuple[Link, ...]

    @classmethod
    def from_setup(cls, modalities: Sequence[str], links: Sequence[Sequence[str]]) -> DataLayout:
        """Parse the ``modalities`` and ``links`` arguments of ``setup_mudata``."""
        return cls(tuple(modalities), parse_links(links, modalities))

    def registry_keys(self, modality: str) -> list[str]:
        """Registry keys of ``modality``: its features, then its side of each of its links."""
        keys = [features_registry_key(modality)]
        for link in self.links:
            keys += [registry for mod, _, registry in link.sides if mod == modality]
        return keys

    def structure(self, tensors: Mapping[str, Mapping[str, torch.Tensor]]) -> MosaicBatch:
        """The :class:`MosaicBatch` of the loaders' ``{modality: {registry_key: tensor}}``."""
        x = {m: tensors[m][features_registry_key(m)] for m in self.modalities}
        linked = [
            tuple(tensors[mod][registry] for mod, _, registry in link.sides) for link in self.links
        ]
        return MosaicBatch(x=x, linked=linked)
