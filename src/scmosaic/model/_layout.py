"""What a registered MuData holds, parsed once at setup: modalities, links and their keys.

:class:`DataLayout` is the only place that knows which registry keys belong to which modality
and link. The data module loads the keys it lists, and :meth:`DataLayout.structure` turns
the loaders' ``{modality: {registry_key: tensor}}`` into a :class:`MosaicBatch`, so the training
plan and the module work with named fields and never assemble key strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .._keys import (
    batch_registry_key,
    features_registry_key,
    link_registry_key,
    linked_obsm_key,
)


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


def parse_links(
    links: Sequence[Sequence[str]], modalities: Sequence[str], allow_empty: bool = False
) -> tuple[Link, ...]:
    """Normalise user links (``(a, b)`` or ``(a, b, key_a, key_b)``) to :class:`Link` records."""
    if isinstance(links, str) or not isinstance(links, Sequence):
        raise ValueError(
            "links must be a non-empty list such as [('rna', 'adt')] or "
            "[('rna', 'adt', 'linked_adt', 'linked_rna')]."
        )
    if len(links) == 0 and not allow_empty:
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
class PairedCells:
    """Cells measured in both modalities of a link, drawn together: row ``i`` of ``x_a``
    and row ``i`` of ``x_b`` are the same cell. ``batch_a`` / ``batch_b`` are their global
    batch indices (``None`` without a batch key)."""

    x_a: torch.Tensor
    x_b: torch.Tensor
    batch_a: torch.Tensor | None = None
    batch_b: torch.Tensor | None = None


@dataclass
class MosaicBatch:
    """One training minibatch, with named fields instead of registry keys.

    ``x`` holds the registered (unscaled) features of the sampled cells, per modality;
    ``linked`` the linked features ``(P_a, P_b)`` of the sampled cells of both sides, per
    link, in link order; ``batch`` each sampled cell's global batch index per modality
    (``None`` without a batch key); ``pairs`` the paired cells drawn for each link (``None``
    for a link without pairs, or when pairs are not used); ``bridges`` the bridge features
    ``(B_a, B_b)`` of the sampled cells per link (``None`` for a link without them;
    ``_bridge.py``).
    """

    x: dict[str, torch.Tensor]
    linked: list[tuple[torch.Tensor, torch.Tensor]]
    batch: dict[str, torch.Tensor] | None = None
    pairs: list[PairedCells | None] = field(default_factory=list)
    bridges: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)

    @property
    def n_obs(self) -> int:
        """Cells in the batch, summed over modalities."""
        return sum(v.shape[0] for v in self.x.values())


def pairs_key(link_index: int) -> str:
    """Name of the paired-cell loader of a link in the combined loader's batch."""
    return f"pairs{link_index}"


def bridge_key(link_index: int) -> str:
    """Name under which a link's bridge features travel with each modality's minibatch."""
    return f"bridge{link_index}"


@dataclass(frozen=True)
class DataLayout:
    """The registered modalities, links and batches, and the registry keys each modality loads.

    ``batches`` holds, per modality, its batch categories in the order of its registry codes
    (empty without a batch key); the global batch index of a cell is the position of its
    category in :attr:`batch_categories`, the ordered union over modalities.

    A query layout (:meth:`scmosaic.SCMODAL.load_query_data`) holds the modalities the query has
    (one is enough), the reference's links between them (for paired cells), no linked
    features (``query=True``), and the reference's batches as ``known_batches``: they keep
    their global indices and the query's new batches come after them.
    """

    modalities: tuple[str, ...]
    links: tuple[Link, ...]
    batch_key: str | None = None
    batches: tuple[tuple[str, ...], ...] = ()
    known_batches: tuple[str, ...] = ()
    query: bool = False

    @classmethod
    def from_setup(
        cls,
        modalities: Sequence[str],
        links: Sequence[Sequence[str]],
        batch_key: str | None = None,
        batches: Mapping[str, Sequence[str]] | None = None,
        known_batches: Sequence[str] = (),
        query: bool = False,
    ) -> DataLayout:
        """Parse the arguments of ``setup_mudata`` (``batches``: categories per modality)."""
        per_modality = tuple(tuple(str(c) for c in (batches or {}).get(m, ())) for m in modalities)
        return cls(
            tuple(modalities),
            parse_links(links, modalities, allow_empty=query),
            batch_key,
            per_modality,
            tuple(str(c) for c in known_batches),
            query,
        )

    @property
    def batch_categories(self) -> tuple[str, ...]:
        """Known batches, then every batch of every modality, in order of first appearance."""
        return tuple(
            dict.fromkeys([*self.known_batches, *(c for cats in self.batches for c in cats)])
        )

    def modality_batches(self, modality: str) -> list[int]:
        """Global indices of the batches of ``modality``, in its registry-code order."""
        if not self.batch_key:
            return []
        position = {c: i for i, c in enumerate(self.batch_categories)}
        return [position[c] for c in self.batches[self.modalities.index(modality)]]

    def registry_keys(self, modality: str) -> list[str]:
        """Registry keys of ``modality``: features, its side of each link, then its batch."""
        keys = [features_registry_key(modality)]
        for link in () if self.query else self.links:
            keys += [registry for mod, _, registry in link.sides if mod == modality]
        if self.batch_key:
            keys.append(batch_registry_key(modality))
        return keys

    def _global_batch(self, modality: str, tensors: Mapping[str, torch.Tensor]):
        if not self.batch_key:
            return None
        codes = tensors[batch_registry_key(modality)].reshape(-1).long()
        to_global = torch.as_tensor(self.modality_batches(modality), device=codes.device)
        return to_global[codes]

    def structure(self, tensors: Mapping[str, Mapping]) -> MosaicBatch:
        """The :class:`MosaicBatch` of the loaders' ``{modality: {registry_key: tensor}}``.

        Paired-cell loaders appear as ``{pairs_key(i): {"a": tensors, "b": tensors}}``.
        """
        x = {m: tensors[m][features_registry_key(m)] for m in self.modalities}
        linked = [
            tuple(tensors[mod][registry] for mod, _, registry in link.sides)
            for link in (() if self.query else self.links)
        ]
        batch = None
        if self.batch_key:
            batch = {m: self._global_batch(m, tensors[m]) for m in self.modalities}
        pairs = []
        for link in self.links:
            drawn = tensors.get(pairs_key(link.index))
            if drawn is None:
                pairs.append(None)
                continue
            a, b = drawn["a"], drawn["b"]
            pairs.append(
                PairedCells(
                    a[features_registry_key(link.mod_a)],
                    b[features_registry_key(link.mod_b)],
                    self._global_batch(link.mod_a, a),
                    self._global_batch(link.mod_b, b),
                )
            )
        bridges = []
        for link in () if self.query else self.links:
            key = bridge_key(link.index)
            has = key in tensors[link.mod_a] and key in tensors[link.mod_b]
            bridges.append((tensors[link.mod_a][key], tensors[link.mod_b][key]) if has else None)
        return MosaicBatch(x=x, linked=linked, batch=batch, pairs=pairs, bridges=bridges)
