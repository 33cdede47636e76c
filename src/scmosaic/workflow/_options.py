"""The options of one workflow run, validated once, when they are made.

Nothing heavy is imported here: the command line builds its options, and reports a bad
value as a usage error, before torch and scvi-tools load.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Literal, get_args

from .._choices import Kind, PresetName
from ._errors import InputError, OptionsError

logger = logging.getLogger(__name__)

LinkSource = Literal["table", "names", "cca", "table+cca", "names+cca"]
"""Where the linked features come from: a protein -> gene table, shared names, CCA, or
table / name links together with the CCA scores refined from them."""

CcaInit = Literal["labels", "links"]
"""Prior of CCA linked features: labels known in both modalities, or table/name links."""

Accelerator = Literal["auto", "cpu", "gpu"]
"""Lightning accelerators the workflow offers."""

PACKAGED_TABLE = "packaged"
"""Value of ``table`` that selects scmosaic's packaged ADT -> gene table (human or mouse,
chosen from the case of the gene names; ``link_kwargs={"species": ...}`` forces one)."""

# Canonical components of CCA linked features unless cca_components says: 10 as the only
# link; 20 beside table or name links, where finer states gain from more of them (SLN fine
# labels, weighted blocks, seed 0: 0.714 with 20, 0.702 with 10; user guide, "Fine states
# across modalities").
CCA_COMPONENTS = {"cca": 10, "table+cca": 20, "names+cca": 20}

# Arguments of pp.link_features that the link step sets from the options itself.
_LINK_STEP_ARGUMENTS = ("mdata", "mod_a", "mod_b", "by", "table", "counts_layer")


def _listing(values: Sequence[Any]) -> str:
    return ", ".join(repr(v) for v in values)


def _check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise OptionsError(f"{name} must be one of {_listing(allowed)}, got {value!r}")


def _check_integer(name: str, value: Any, minimum: int, none_means: str | None = None) -> None:
    """``value`` is an integer >= ``minimum`` (or ``None`` where ``none_means`` says what)."""
    if value is None and none_means is not None:
        return
    # bool is an int subclass, but True iterations is a mistake, not a number
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        accepted = f"an integer >= {minimum}" + (f" or None ({none_means})" if none_means else "")
        raise OptionsError(f"{name} must be {accepted}, got {value!r}")


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise OptionsError(f"{name} must be True or False, got {value!r}")


def _check_name(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise OptionsError(f"{name} must be a non-empty string or None, got {value!r}")


@dataclass(frozen=True)
class WorkflowOptions:
    """Settings of one run of the workflow: link, preprocess, fit.

    One object carries every setting of ``scmosaic integrate``, ``scmosaic quickstart``
    and the benchmark scripts. It is checked once, when it is made (also by
    :func:`dataclasses.replace`): a value out of range or a combination that cannot work
    raises :class:`~scmosaic.workflow.OptionsError` naming the option and what it accepts.
    Checks that need the data (a modality's kind, a key in ``.obs``) are made by the steps.

    Parameters
    ----------
    modalities
        The two modalities to integrate (default: all, if the data have exactly two).
    links
        Source of the linked features: ``"table"`` (protein -> gene ``table``), ``"names"``
        (features with the same name in both), ``"cca"`` (canonical correlation scores) or
        ``"table+cca"`` / ``"names+cca"``: the table or name links and the canonical scores
        refined from them (``cca_init="links"``) as the columns of one link, each block
        weighted to count half of the anchors' similarity. Where cell states differ in
        features the links miss, the scores add them: the default, ``"table+cca"``, matched
        cells and fine labels better than ``"table"`` on the Hao subset, PBMC 10k (pairing
        hidden) and mouse SLN (README, "Side by side").
    table
        Protein -> gene table: a CSV path (layouts of :func:`scmosaic.pp.load_adt_gene_table`),
        ``"packaged"`` for scmosaic's ADT table (human or mouse, detected from the gene
        names; :func:`scmosaic.pp.link_features`'s ``species``) or a ``{protein: "GENE1/GENE2"}``
        mapping. Required for ``links="table"`` and ``"table+cca"``; with ``links="cca",
        cca_init="links"`` it selects table links as the CCA prior (``None``: shared names).
    cca_init
        Prior of ``links="cca"``: ``"labels"`` (``.obs[labels_key]`` in both modalities)
        or ``"links"`` (table or name links). ``"table+cca"`` and ``"names+cca"`` always
        start from their links.
    labels_key
        ``.obs`` column with cell labels in both modalities, for ``cca_init="labels"``.
    cca_components
        Canonical components (capped at what the data allow); ``None``: 10 with
        ``links="cca"``, 20 beside table or name links (``"table+cca"``, ``"names+cca"``).
    link_kwargs
        Further arguments of :func:`scmosaic.pp.link_features` (e.g. ``smooth_neighbors=0``);
        the modalities, ``by``, ``table`` and ``counts_layer`` come from the options.
    kinds
        Kind (``"rna"``, ``"adt"``, ``"atac"``) of modalities whose names do not tell it;
        used by preprocessing and to find the protein side of a table.
    preprocess
        Run :func:`scmosaic.pp.preprocess` (RNA: log1p, ADT: CLR, highly variable genes);
        with ``False`` ``.X`` must already be normalised.
    layer
        Layer with raw counts in both modalities (default ``.X``).
    batch_key
        Column of every modality's ``.obs`` naming each cell's batch (donor, sample);
        registered with ``SCMODAL.setup_mudata(batch_key=...)`` so that the model corrects
        batches and can later map new batches (``scmosaic map``). ``None``: no batches.
    n_top_genes
        Highly variable genes kept for RNA/ATAC by preprocessing (``None``: all).
    max_steps
        Training iterations (``None``: the preset's).
    preset
        Model preset (``scmosaic.model.PRESETS``).
    seed
        Seed of weights, minibatch sampling, CCA and (quick start) the pairing shuffle.
    threads
        Torch CPU threads (``None``: torch's choice).
    accelerator
        Lightning accelerator.
    progress_bar
        Show Lightning's progress bar while training.

    Examples
    --------
    >>> from scmosaic.workflow import WorkflowOptions
    >>> options = WorkflowOptions(table="packaged", max_steps=2000)
    >>> WorkflowOptions(table="packaged", max_steps=0)
    Traceback (most recent call last):
    OptionsError: max_steps must be an integer >= 1 or None (the preset's), got 0
    """

    modalities: tuple[str, str] | None = None
    links: LinkSource = "table+cca"
    table: str | PathLike[str] | Mapping[str, str] | None = None
    cca_init: CcaInit = "labels"
    labels_key: str | None = None
    cca_components: int | None = None
    link_kwargs: Mapping[str, Any] = field(default_factory=dict)
    kinds: Mapping[str, Kind] = field(default_factory=dict)
    preprocess: bool = True
    layer: str | None = None
    batch_key: str | None = None
    n_top_genes: int | None = 2000
    max_steps: int | None = None
    preset: PresetName = "default"
    seed: int = 0
    threads: int | None = None
    accelerator: Accelerator = "auto"
    progress_bar: bool = False

    def __post_init__(self) -> None:
        # frozen: normalise the containers through object.__setattr__, then check
        if self.modalities is not None and not isinstance(self.modalities, str):
            object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "kinds", dict(self.kinds or {}))
        object.__setattr__(self, "link_kwargs", dict(self.link_kwargs or {}))
        self._check_data_options()
        self._check_link_options()
        self._check_training_options()

    def _check_data_options(self) -> None:
        if self.modalities is not None and (
            isinstance(self.modalities, str)
            or len(self.modalities) != 2
            or len(set(self.modalities)) != 2
            or not all(isinstance(m, str) and m for m in self.modalities)
        ):
            raise OptionsError(
                f"modalities must be two different modality names, got {self.modalities!r}"
            )
        kinds = get_args(Kind)
        for name, kind in self.kinds.items():
            _check_choice(f"kinds[{name!r}]", kind, kinds)
        _check_flag("preprocess", self.preprocess)
        _check_name("layer", self.layer)
        _check_name("batch_key", self.batch_key)
        _check_integer("n_top_genes", self.n_top_genes, 1, none_means="all")

    def _check_link_options(self) -> None:
        _check_choice("links", self.links, get_args(LinkSource))
        _check_choice("cca_init", self.cca_init, get_args(CcaInit))
        _check_name("labels_key", self.labels_key)
        _check_integer("cca_components", self.cca_components, 1, none_means="the source's default")
        if self.table is not None and not isinstance(self.table, str | PathLike | Mapping):
            raise OptionsError(
                f"table must be a CSV path, {PACKAGED_TABLE!r} or a {{protein: genes}} mapping, "
                f"got {type(self.table).__name__}"
            )
        if self.link_prior == "table" and self.table is None:
            raise OptionsError(
                f"links={self.links!r} needs table: a CSV path, {PACKAGED_TABLE!r} or a "
                "{protein: genes} mapping"
            )
        if self.link_prior is None and not self.labels_key:
            raise OptionsError(
                "links='cca' with cca_init='labels' needs labels_key: an .obs column with "
                "labels in both modalities"
            )
        if self.links.startswith("names") and self.table is not None:
            logger.warning("The table is not used with links=%r", self.links)
        fixed = sorted(set(self.link_kwargs) & set(_LINK_STEP_ARGUMENTS))
        if fixed:
            raise OptionsError(
                f"link_kwargs must not set {fixed}: the link step takes them from modalities, "
                "links, table and layer"
            )

    def _check_training_options(self) -> None:
        _check_integer("max_steps", self.max_steps, 1, none_means="the preset's")
        _check_choice("preset", self.preset, get_args(PresetName))
        _check_integer("seed", self.seed, 0)
        _check_integer("threads", self.threads, 1, none_means="torch's choice")
        _check_choice("accelerator", self.accelerator, get_args(Accelerator))
        _check_flag("progress_bar", self.progress_bar)

    @property
    def link_prior(self) -> Literal["table", "names"] | None:
        """Which feature links the link step computes (:func:`scmosaic.pp.link_features`
        ``by``): the source itself, the source before ``"+cca"``, for ``links="cca"`` the
        CCA prior (table links if a table is given, else names), ``None`` for CCA from
        labels."""
        if self.links == "cca":
            if self.cca_init == "labels":
                return None
            return "table" if self.table is not None else "names"
        return self.links.removesuffix("+cca")

    @property
    def n_cca_components(self) -> int | None:
        """Canonical components the link step asks for (``cca_components``, or the
        source's default; ``None`` for table or name links alone)."""
        if self.cca_components is not None:
            return self.cca_components
        return CCA_COMPONENTS.get(self.links)

    # ------------------------------------------------------------ checks against the data
    def pair(self, available: Sequence[str], source: str = "the MuData") -> tuple[str, str]:
        """The two modalities to integrate among ``available`` (those of ``source``).

        Raises
        ------
        InputError
            ``modalities`` names one that ``source`` lacks, or it was not given and
            ``source`` does not have exactly two.
        """
        available = list(available)
        if self.modalities is None:
            if len(available) != 2:
                raise InputError(
                    f"{source} has {len(available)} modalities {available}; "
                    "choose two (--modalities A B)"
                )
            return available[0], available[1]
        for m in self.modalities:
            if m not in available:
                raise InputError(f"modality {m!r} is not in {source}; it has {available}")
        return self.modalities

    def kind_of(self, modality: str) -> Kind:
        """The kind of ``modality``: from ``kinds``, else from its name.

        Raises
        ------
        InputError
            ``kinds`` does not name it and its name does not tell.
        """
        from ..pp._preprocess import infer_kind

        if modality in self.kinds:
            return self.kinds[modality]
        try:
            return infer_kind(modality)
        except ValueError:
            raise InputError(
                f"cannot tell the kind of modality {modality!r} from its name; pass "
                f"kinds={{{modality!r}: {' | '.join(map(repr, get_args(Kind)))}}} "
                f"(--kind {modality}=adt)"
            ) from None
