"""The SCMODAL model class: registration, training and outputs."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
import torch
from mudata import MuData
from scvi.data import AnnDataManager
from scvi.data._manager import AnnDataManagerValidationCheck
from scvi.data.fields import MuDataCategoricalObsField, MuDataLayerField, MuDataObsmField
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from .._checks import check_positive_int, get_modality
from .._choices import AnchorSimilarity, FeatureScale, PresetName
from .._keys import (
    JOINT_LATENT_OBSM_KEY,
    LATENT_OBSM_KEY,
    QUERY_UNS_KEY,
    batch_registry_key,
    features_registry_key,
)
from .._mudata import new_mudata
from .._stats import feature_mean_std
from ..tl._impute import IMPUTATION_NEIGHBORS, average_rows, neighbor_weights
from ._bridge import CHUNK, MIN_LANDMARKS, bridge_features, principal_components
from ._convergence import ConvergenceRule, ConvergenceStopping
from ._data_module import UnpairedDataModule
from ._features import (
    check_normalization,
    feature_order,
    iterate_rows,
    preprocess_record,
    registered_matrix,
)
from ._layout import DataLayout, Link, bridge_key
from ._module import SCMODALModule
from ._presets import (
    EARLY_STOPPING,
    ITERATIONS_PER_EPOCH,
    QUERY_LR,
    QUERY_MAX_STEPS,
    SKETCH_SIZE,
    check_interval,
    default_max_steps,
    document_presets,
    get_preset,
    resolve,
)
from ._query import ReferenceParts, align_features, query_state_dict, read_reference
from ._training_plan import QueryTrainingPlan, SCMODALTrainingPlan
from ._validation import validate_setup

logger = logging.getLogger(__name__)


def _n_devices(devices) -> int:
    if isinstance(devices, list | tuple):
        return len(devices)
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    return 1  # "auto" / "-1": decided by Lightning


_LIGHTNING_NOISE = (
    "💡 Tip",
    # N counts optimiser steps, not the iterations the user asked for: it reads as wrong.
    "`Trainer.fit` stopped: `max_steps=",
    # The device banner, on every train(): scmosaic logs one line with the device instead.
    "GPU available:",
    "TPU available:",
    "HPU available:",
)


def _drop_advertisements(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_LIGHTNING_NOISE)


def _drop_info(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


@contextmanager
def _scvi_info_hidden() -> Iterator[None]:
    """Hide scvi-tools' INFO lines (column names of .obsm arrays, "already downloaded" on
    load): nothing for a user to act on. Its warnings are kept."""
    # scvi-tools logs through module loggers below "scvi", whose handlers print them:
    # logger filters do not apply to propagated records, handler filters do.
    handlers = logging.getLogger("scvi").handlers
    for handler in handlers:
        handler.addFilter(_drop_info)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(_drop_info)


def _trains_on_cpu(accelerator: str) -> bool:
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


@contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """torch's deterministic algorithms while training, the caller's setting restored after.

    On the CPU this makes a seed reproduce the same latents for a given number of threads
    (about 3% slower per iteration): the gradient of the anchor gathers is otherwise summed
    in an order that depends on thread timing.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn_only)


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's product tips and its own internal deprecation notice while training.

    Device messages and every warning a user can act on are kept.
    """
    from lightning_utilities.core import rank_zero

    # The logger Lightning currently emits through (it differs if pytorch_lightning is imported).
    lightning_logger = rank_zero.log
    lightning_logger.addFilter(_drop_advertisements)
    try:
        with warnings.catch_warnings():
            # Lightning calls a torch API it deprecated itself (torch >= 2.10): not actionable.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        lightning_logger.removeFilter(_drop_advertisements)


@contextmanager
def _only_query_trainable(module, enabled: bool) -> Iterator[None]:
    """Query mapping: no gradient for any weight but the query's (restored after)."""
    if not enabled:
        yield
        return
    offsets = {id(p) for p in module.query_parameters()}
    frozen = [p for p in module.parameters() if id(p) not in offsets and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


# Training-preset settings that belong to the training plan.
_PLAN_SETTINGS = ("lr", "weight_decay", "n_critic", "gradient_clip_norm")


def _first_given(*values):
    return next(v for v in values if v is not None)


def _merge_kwargs(name: str, kwargs: dict | None, **explicit) -> dict:
    """``kwargs`` plus the explicit arguments that are not ``None``; each key given once."""
    merged = dict(kwargs or {})
    for key, value in explicit.items():
        if value is None:
            continue
        if key in merged:
            raise ValueError(f"{key!r} was given both as an argument and in {name}; give it once.")
        merged[key] = value
    return merged


def _registry_fields(layout: DataLayout, layers: dict) -> list:
    """scvi-tools fields of every registry key of ``layout``."""
    fields = [
        MuDataLayerField(
            features_registry_key(m),
            layers.get(m),
            mod_key=m,
            is_count_data=False,
            mod_required=True,
        )
        for m in layout.modalities
    ]
    fields += [
        MuDataObsmField(registry, key, mod_key=mod, mod_required=True)
        for link in (() if layout.query else layout.links)
        for mod, key, registry in link.sides
    ]
    if layout.batch_key:
        fields += [
            MuDataCategoricalObsField(
                batch_registry_key(m), layout.batch_key, mod_key=m, mod_required=True
            )
            for m in layout.modalities
        ]
    return fields


def _log_start(trainer, n_iter: int, stop_early: bool = False) -> None:
    device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    logger.info(
        "Training SCMODAL for %s%d iterations on %d %s device(s).",
        "at most " if stop_early else "",
        n_iter,
        trainer.num_devices,
        device,
    )


def _check_query_modalities(query: MuData, parts: ReferenceParts) -> None:
    known = parts.setup_args["modalities"]
    unknown = [m for m in query.mod if m not in known]
    if unknown:
        raise ValueError(
            f"Query modalities {unknown} were never seen by the reference, which was trained "
            f"on {list(known)}; drop them from the query (or rename them to the reference's)."
        )


def _check_registered(mdata) -> None:
    if not isinstance(mdata, MuData):
        raise TypeError(f"SCMODAL needs a MuData, got {type(mdata).__name__}.")
    if SCMODAL._get_most_recent_anndata_manager(mdata) is None:
        raise ValueError(
            "This MuData is not registered with SCMODAL: call "
            "SCMODAL.setup_mudata(mdata, modalities=[...], links=[...]) first."
        )


def _check_accelerator(accelerator: str) -> None:
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise RuntimeError(
            f"accelerator={accelerator!r} but torch {torch.__version__} ({build}) sees no GPU; "
            "train with accelerator='cpu' (or 'auto'), or install a CUDA build of torch."
        )


def _set_trainer_defaults(trainer_kwargs: dict, devices, iterations_per_epoch: int) -> None:
    """Lightning settings SCMODAL needs unless the user set them."""
    trainer_kwargs.setdefault("check_val_every_n_epoch", None)
    # The data module samples per modality and per process itself: Lightning must not
    # wrap its samplers in a DistributedSampler.
    trainer_kwargs.setdefault("use_distributed_sampler", False)
    if _n_devices(devices) > 1:
        # Discriminator steps leave encoder/decoder parameters without gradients.
        trainer_kwargs.setdefault("strategy", "ddp_find_unused_parameters_true")
    # Epoch means are logged by the plan; per-step logging would only warn on short epochs.
    trainer_kwargs.setdefault("log_every_n_steps", iterations_per_epoch)


@document_presets
class SCMODAL(BaseModelClass):
    """scMODAL: adversarial alignment of modalities whose cells differ.

    Each modality ``m`` has an encoder ``E_m`` into a shared latent space and a decoder
    ``G_m`` back; one discriminator per link makes the latent distributions of the two
    linked modalities indistinguishable, while mutual nearest neighbours on the linked
    features anchor cells of equal type, and reconstruction, latent-cycle and geometric
    terms keep each modality's structure (Wang et al., Nat. Commun. 2025).

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata`.
    preset
        ``"default"`` (scmosaic's recommended settings) or ``"reference"`` (the published
        scMODAL defaults, exactly). Every argument below left at ``None`` takes the
        preset's value (given in brackets; ``scmosaic.model.PRESETS``).
    n_latent
        Dimension of the joint latent space ({n_latent}).
    n_hidden
        Hidden width of encoders and decoders ({n_hidden}).
    n_hidden_discriminator
        Hidden width of the discriminators ({n_hidden_discriminator}).
    lambda_gan, lambda_ae, lambda_latent_cycle, lambda_mnn, lambda_geo
        Loss weights of the adversarial, reconstruction, latent-cycle, anchor and geometric
        terms ({lambda_gan}; {lambda_ae}; {lambda_latent_cycle}; anchor: {lambda_mnn};
        {lambda_geo}).
    n_neighbors_mnn
        ``k`` of the minibatch mutual nearest neighbours on linked features
        ({n_neighbors_mnn}).
    n_neighbors_mnn_local
        A smaller ``k`` tried first: a cell with a mutual nearest neighbour among its
        ``n_neighbors_mnn_local`` closest cells of the other modality keeps only those anchors,
        so a cell of a small population is not pulled towards a large neighbouring one; a
        cell without one keeps its pairs within ``n_neighbors_mnn``. 0 turns this off
        ({n_neighbors_mnn_local}).
    max_geo_similarity
        Clamp of the geometric term's per-cell similarity ({max_geo_similarity}).
    clip
        Inputs are centred per feature with the statistics of ``mdata``, scaled (see
        ``feature_scale``) and clipped at ``+-clip``; 0 disables clipping ({clip}).
    init_std
        Normal initialisation scale of all weights; 0 keeps PyTorch's default initialisation
        ({init_std}).
    latent_anchor_weight
        Anchors are mutual nearest neighbours of ``cos(P_a, P_b) + w * cos(z_a, z_b)``:
        with ``w > 0`` the current latent codes (all features) help choose anchors; 0 uses
        linked features only ({latent_anchor_weight}).
    anchor_similarity
        How the linked features ``P`` are compared when anchors are chosen: ``"cosine"``
        (the reference) or ``"euclidean"``, ``1 - ||P_a - P_b||^2 / (2 d)`` for ``d`` linked
        features, on the cosine's scale (``cos`` in the formula above is then this), which
        also tells cells apart by how strongly they express their linked features
        ({anchor_similarity}).
    lambda_batch
        Weight of the batch term: with ``setup_mudata(batch_key=...)``, encoders and decoders
        read each cell's batch and, in each modality with two batches or more, a batch
        discriminator is trained while the codes are pushed to tell it nothing of the batch
        ({lambda_batch}).
    lambda_pair
        Weight of the pair term: cells measured in two linked modalities (the same
        ``obs_name`` in both) get equal codes and each modality is decoded from the other's
        code ({lambda_pair}).
    bridge_anchor_weight
        With paired cells, anchors of the other cells also weigh how alike their
        similarities to the paired cells are in each modality (bridge features, computed at
        the start of :meth:`train`, nothing is written to ``mdata``); 0 uses linked
        features and codes only ({bridge_anchor_weight}).
    use_pairs
        Use the paired cells of the MuData (``False``: treat every modality's cells as
        unpaired, as scmosaic 0.1 did).
    feature_scale
        ``{{modality: "feature" | "modality"}}``: divide each centred feature by its own
        standard deviation (z-scores), or all of a modality's features by one scale, the
        mean of their standard deviations (the features keep their relative spread). A
        modality not named takes the ``"scale"`` that :func:`scmosaic.pp.preprocess` recorded
        in its ``.uns["scmosaic_preprocess"]`` (``"modality"`` for CLR-normalised proteins),
        else ``"feature"``.
    seed
        Seed of the weight initialisation and of minibatch sampling.
    reference_architecture
        Set by :meth:`load_query_data` (and restored by :meth:`load`) for a query model: the
        reference's modalities, features, links and batches. Leave it at ``None``.

    Examples
    --------
    >>> import scmosaic
    >>> mdata = scmosaic.datasets.hao2021_pbmc_cite()
    >>> scmosaic.pp.link_features(mdata, "adt", "rna")  # on raw counts, all genes
    >>> mdata = scmosaic.pp.preprocess(mdata)
    >>> scmosaic.SCMODAL.setup_mudata(mdata, modalities=["rna", "adt"], links=[("rna", "adt")])
    >>> model = scmosaic.SCMODAL(mdata)
    >>> model.train(max_steps=2000)
    >>> latent = model.get_latent_representation()
    """

    _module_cls = SCMODALModule
    _training_plan_cls = SCMODALTrainingPlan
    _data_module_cls = UnpairedDataModule

    def __init__(
        self,
        mdata: MuData,
        preset: PresetName = "default",
        n_latent: int | None = None,
        n_hidden: int | None = None,
        n_hidden_discriminator: int | None = None,
        lambda_gan: float | None = None,
        lambda_ae: float | None = None,
        lambda_latent_cycle: float | None = None,
        lambda_mnn: float | None = None,
        lambda_geo: float | None = None,
        n_neighbors_mnn: int | None = None,
        n_neighbors_mnn_local: int | None = None,
        max_geo_similarity: float | None = None,
        clip: float | None = None,
        init_std: float | None = None,
        latent_anchor_weight: float | None = None,
        anchor_similarity: AnchorSimilarity | None = None,
        lambda_batch: float | None = None,
        lambda_pair: float | None = None,
        bridge_anchor_weight: float | None = None,
        use_pairs: bool = True,
        feature_scale: dict[str, FeatureScale] | None = None,
        seed: int = 0,
        reference_architecture: dict | None = None,
    ):
        _check_registered(mdata)
        super().__init__(mdata)
        self.preset = preset
        self.seed = seed
        self.reference_architecture = reference_architecture
        if self._setup_args.get("_query", False) != bool(reference_architecture):
            raise ValueError(
                "A query MuData is mapped with SCMODAL.load_query_data(query, reference), "
                "and a model of its own needs SCMODAL.setup_mudata without _query."
            )
        module_kwargs = resolve(
            get_preset(preset).module,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_hidden_discriminator=n_hidden_discriminator,
            lambda_gan=lambda_gan,
            lambda_ae=lambda_ae,
            lambda_latent_cycle=lambda_latent_cycle,
            lambda_mnn=lambda_mnn,
            lambda_geo=lambda_geo,
            n_neighbors_mnn=n_neighbors_mnn,
            n_neighbors_mnn_local=n_neighbors_mnn_local,
            max_geo_similarity=max_geo_similarity,
            clip=clip,
            init_std=init_std,
            latent_anchor_weight=latent_anchor_weight,
            anchor_similarity=anchor_similarity,
            lambda_batch=lambda_batch,
            lambda_pair=lambda_pair,
            bridge_anchor_weight=bridge_anchor_weight,
        )
        if not isinstance(use_pairs, bool):
            raise TypeError(f"use_pairs must be True or False, got {use_pairs!r}.")
        self.use_pairs = use_pairs
        self.feature_scale = self._resolve_feature_scale(feature_scale)
        layout = self.layout
        if reference_architecture is None:
            links = [(link.mod_a, link.mod_b) for link in layout.links]
            modality_batches = {m: layout.modality_batches(m) for m in layout.modalities}
        else:  # the reference's network; its weights are loaded by load_query_data / load
            links = [tuple(link) for link in reference_architecture["links"]]
            modality_batches = reference_architecture["modality_batches"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = self._module_cls(
                feature_statistics=self._feature_statistics(),
                links=links,
                n_batches=len(layout.batch_categories) if layout.batch_key else 0,
                modality_batches=modality_batches,
                **module_kwargs,
            )
            if reference_architecture is not None:
                known = reference_architecture["modality_batches"]
                self.module.add_query_adapters({m: known[m] for m in self.modalities})
        role = "query model" if reference_architecture else f"{preset} preset"
        self._model_summary_string = (
            f"SCMODAL ({role}) of {', '.join(self.module.modalities)} with "
            f"{len(links)} link(s); latent {module_kwargs['n_latent']}, "
            f"hidden {module_kwargs['n_hidden']}."
        )
        self.init_params_ = self._get_init_params(locals())
        self.n_iterations_trained_ = 0
        # Saved with the model (scvi-tools saves attributes ending in "_"): new data are
        # matched to these names, whatever their order.
        self.trained_features_ = (
            self._registered_features()
            if reference_architecture is None
            else {m: list(v) for m, v in reference_architecture["features"].items()}
        )
        # Also saved: how pp.preprocess normalised each modality, so that new data
        # normalised otherwise are refused rather than silently mis-scaled.
        self.normalization_ = (
            {
                m: found
                for m in self.modalities
                if (found := preprocess_record(self.adata.mod[m]).get("normalization"))
            }
            if reference_architecture is None
            else dict(reference_architecture.get("normalization") or {})
        )

    # ------------------------------------------------------------------ setup
    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        modalities: Sequence[str],
        links: Sequence[Sequence[str]],
        layers: dict[str, str | None] | None = None,
        batch_key: str | None = None,
        _query: bool = False,
        **kwargs,
    ) -> None:
        """Register the modalities, linked features and batches of ``mdata``.

        Nothing in ``mdata`` is changed, except that scvi-tools records the registration in
        ``mdata.uns["_scvi_uuid"]`` / ``["_scvi_manager_uuid"]``, may store a registered
        matrix as C-contiguous or CSR (values unchanged) and, with ``batch_key``, writes the
        batch codes to ``mdata.mod[m].obs["_scvi_batch_<m>"]``.

        Parameters
        ----------
        mdata
            MuData with one AnnData per modality. The modalities' cells may be different
            (unpaired), identical (paired) or partly shared: a cell whose ``obs_name`` is in
            two linked modalities is the same cell (MuData's convention), and the model uses
            such pairs unless ``SCMODAL(use_pairs=False)``.
        modalities
            Names of the modalities to integrate (at least two), e.g. ``["rna", "adt"]``.
        links
            Pairs of modalities whose cells are anchored through linked features; one
            discriminator per link. Each is ``(mod_a, mod_b)``, using the ``.obsm`` keys
            ``"linked_<mod_b>"`` in ``mod_a`` and ``"linked_<mod_a>"`` in ``mod_b`` (written
            by :func:`scmosaic.pp.link_features`), or ``(mod_a, mod_b, key_a, key_b)`` with
            explicit ``.obsm`` keys (any two matrices of equal width).
        layers
            Layer holding each modality's log-normalised features (``None`` or missing:
            ``.X``), e.g. as produced by :func:`scmosaic.pp.preprocess`.
        batch_key
            Column of every modality's ``.obs`` naming each cell's batch (donor, sample,
            run). Labels are categories (numbers are read as labels); a batch may exist in
            one modality or several. A column only in ``mdata.obs`` must first be copied to
            the modalities (``mdata.pull_obs([batch_key])``). Missing labels and batches of
            one cell are refused.
        _query
            Register a query for :meth:`load_query_data`, which sets it (one modality is
            enough and no linked features are read).
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields`.

        Examples
        --------
        >>> scmosaic.SCMODAL.setup_mudata(
        ...     mdata, modalities=["rna", "adt"], links=[("rna", "adt")]
        ... )
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        layout = DataLayout.from_setup(modalities, links, batch_key, query=_query)
        layers = dict(layers or {})
        validate_setup(mdata, layout, layers)
        fields = _registry_fields(layout, layers)
        adata_manager = AnnDataManager(
            fields=fields,
            setup_method_args=setup_method_args,
            validation_checks=AnnDataManagerValidationCheck(check_fully_paired_mudata=False),
        )
        with _scvi_info_hidden():
            adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def load(cls, dir_path: str, adata: MuData | None = None, **kwargs) -> SCMODAL:
        """Load a saved model; with ``adata``, its features are matched to the trained ones.

        Parameters
        ----------
        dir_path
            Folder written by :meth:`save`.
        adata
            MuData to attach (default: the one saved with ``save_anndata=True``). Each
            modality must hold every trained feature (matched by name, any order).
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load` (e.g. ``accelerator``).
        """
        if not (Path(dir_path) / "model.pt").is_file():
            raise FileNotFoundError(
                f"No saved SCMODAL in {str(dir_path)!r}: expected {Path(dir_path) / 'model.pt'}, "
                "written by model.save(dir_path)."
            )
        with warnings.catch_warnings(), _scvi_info_hidden():
            # scvi-tools compares the concatenated var_names in order; scmosaic matches
            # each modality's features by name below and says what is missing.
            warnings.filterwarnings(
                "ignore", message=r"`var_names` for the loaded `model` does not match"
            )
            warnings.filterwarnings("ignore", message=r"The method mod_names is deprecated")
            model = super().load(dir_path, adata=adata, **kwargs)
        for m in model.modalities:
            feature_order(model.adata.mod[m].var_names, model._trained_features(m), m)
        return model

    # ---------------------------------------------------------- query mapping
    @staticmethod
    def prepare_query_mudata(query: MuData, reference: SCMODAL | str | Path) -> MuData:
        """A copy of ``query`` whose modalities hold exactly the reference's features.

        Each modality's features are matched to the reference's trained ones by name and put
        in their order (``.X`` and every layer); features the query lacks are filled with
        zeros (logged; a warning below 80% present). ``query`` itself is not changed.

        Parameters
        ----------
        query
            New cells, with any of the reference's modalities (one is enough), each with the
            reference's ``batch_key`` column in ``.obs``.
        reference
            The trained reference model, or the folder it was saved to.

        Returns
        -------
        A new MuData for :meth:`load_query_data`. Its ``.uns["scmosaic_query"]`` records,
        per modality, how many of the reference's features it holds and which it lacked.

        Raises
        ------
        ValueError
            If a query modality is not one of the reference's, or shares no feature with it.
        """
        with _scvi_info_hidden():
            parts = read_reference(reference)
        if not isinstance(query, MuData):
            raise TypeError(f"query must be a MuData, got {type(query).__name__}.")
        _check_query_modalities(query, parts)
        modalities, report = {}, {}
        for m in parts.setup_args["modalities"]:
            if m not in query.mod:
                continue
            check_normalization(query.mod[m], m, (parts.normalization or {}).get(m))
            trained = parts.trained_features[m]
            modalities[m], missing = align_features(query.mod[m], trained, m)
            report[m] = {"n_features": len(trained), "missing": missing}
        prepared = new_mudata(modalities)
        prepared.uns[QUERY_UNS_KEY] = report
        return prepared

    @classmethod
    def load_query_data(cls, query: MuData, reference: SCMODAL | str | Path) -> SCMODAL:
        """A query model: the reference's network, extended to the query's new batches.

        As scArches does for scvi-tools' models, the registry of the reference is transferred
        to ``query``, each new batch (of the reference's ``batch_key``) gets its own offset in
        the first layer of every encoder and decoder, set to zero, each query modality gets
        an adapter (a first encoder layer of its own for the cells of new batches, a copy of
        the reference's), and every reference weight is frozen: :meth:`train` then fits only
        the new offsets and the adapters, on the query's cells alone (a few hundred
        iterations), and codes of reference cells stay exactly what the reference gives them.
        A query may hold any of the reference's modalities, with or without paired cells.

        Parameters
        ----------
        query
            New cells, prepared by :meth:`prepare_query_mudata` (each modality holds the
            reference's features in its order). It is registered as ``setup_mudata`` does,
            which writes ``.obs["_scvi_batch_<m>"]`` of its modalities.
        reference
            The trained reference model (trained with ``batch_key``), or the folder it was
            saved to.

        Returns
        -------
        The query model. Its :meth:`get_latent_representation` embeds query cells (and,
        given their MuData, reference cells) in the reference's latent space.

        Examples
        --------
        >>> query = scmosaic.SCMODAL.prepare_query_mudata(new_mdata, "reference_model/")
        >>> query_model = scmosaic.SCMODAL.load_query_data(query, "reference_model/")
        >>> query_model.train()
        >>> latent = query_model.get_latent_representation()
        """
        with _scvi_info_hidden():
            parts = read_reference(reference)
        if not isinstance(query, MuData):
            raise TypeError(f"query must be a MuData, got {type(query).__name__}.")
        if not parts.batch_key:
            raise ValueError(
                "The reference was trained without batch_key, so it has no batch offsets to "
                "fit for new samples. Embed the query directly with "
                "reference.get_latent_representation(query), or train the reference with "
                "SCMODAL.setup_mudata(..., batch_key=...)."
            )
        _check_query_modalities(query, parts)
        present = [m for m in parts.setup_args["modalities"] if m in query.mod]
        for m in present:
            if list(query.mod[m].var_names) != parts.trained_features[m]:
                raise ValueError(
                    f"Query modality {m!r} does not hold the reference's "
                    f"{len(parts.trained_features[m])} features in their order; prepare it "
                    "with SCMODAL.prepare_query_mudata(query, reference) first."
                )
        layers = parts.setup_args.get("layers") or {}
        cls.setup_mudata(
            query,
            modalities=present,
            links=[link for link in parts.links if link[0] in present and link[1] in present],
            layers={m: layer for m, layer in layers.items() if m in present},
            batch_key=parts.batch_key,
            _query=True,
        )
        model = cls(query, **parts.model_kwargs(), reference_architecture=parts.architecture())
        model.module.load_state_dict(
            query_state_dict(parts.state_dict, model.module.n_batches, present)
        )
        model.latent_sketch_ = parts.latent_sketch
        new = model._new_batches()
        known = [c for c in model.layout.batch_categories if c not in new]
        logger.info(
            "Query of %s: %d new batch(es) %s to fit, reference weights frozen; batches the "
            "reference knows (encoded as the reference's): %s.",
            ", ".join(f"{m} ({query.mod[m].n_obs} cells)" for m in present),
            len(new),
            new[:5],
            known[:5],
        )
        return model

    def _new_batches(self) -> list[str]:
        """A query model's batches that its reference did not train in the same modality."""
        if not self.reference_architecture:
            return []
        known = self.reference_architecture["modality_batches"]
        layout = self.layout
        index = {c: i for i, c in enumerate(layout.batch_categories)}
        new = [
            c
            for m, batches in zip(layout.modalities, layout.batches, strict=True)
            for c in batches
            if index[c] not in known[m]
        ]
        return list(dict.fromkeys(new))

    @classmethod
    def setup_anndata(cls, *args, **kwargs):
        """Not supported: SCMODAL needs a MuData with one AnnData per modality."""
        raise NotImplementedError("SCMODAL integrates several modalities: use setup_mudata.")

    # ------------------------------------------------------------ properties
    @property
    def _setup_args(self) -> dict:
        return self.adata_manager.registry["setup_args"]

    @property
    def layout(self) -> DataLayout:
        """The registered modalities, links and batches, from the setup arguments."""
        args = self._setup_args
        batch_key = args.get("batch_key")
        batches = None
        if batch_key:
            batches = {
                m: self.adata_manager.get_state_registry(batch_registry_key(m)).categorical_mapping
                for m in args["modalities"]
            }
        known = (self.reference_architecture or {}).get("batch_categories", ())
        return DataLayout.from_setup(
            args["modalities"],
            args["links"],
            batch_key,
            batches,
            known_batches=known,
            query=args.get("_query", False),
        )

    @property
    def modalities(self) -> list[str]:
        """Registered modalities, in order."""
        return list(self._setup_args["modalities"])

    @property
    def links(self) -> list[Link]:
        """Registered links with their ``.obsm`` keys."""
        return list(self.layout.links)

    def _resolve_feature_scale(self, feature_scale: dict | None) -> dict[str, str]:
        """``feature_scale`` checked, completed for every modality from its preprocessing record."""
        feature_scale = dict(feature_scale or {})
        choices = get_args(FeatureScale)
        for m, scale in feature_scale.items():
            if m not in self.modalities:
                raise ValueError(
                    f"feature_scale names modality {m!r}, which is not registered; "
                    f"registered: {self.modalities}."
                )
            if scale not in choices:
                raise ValueError(f"feature_scale[{m!r}] must be one of {choices}, got {scale!r}.")
        for m in self.modalities:
            if m not in feature_scale:
                feature_scale[m] = preprocess_record(self.adata.mod[m]).get("scale", "feature")
        return feature_scale

    def _feature_statistics(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per-feature mean and scale of each registered modality: the std (ddof=1, 0 -> 1),
        or with ``feature_scale`` ``"modality"`` the mean of the features' stds.

        A query model gets placeholders of the reference's sizes: its statistics are the
        reference's, loaded with the weights.
        """
        if self.reference_architecture:
            return {
                m: (np.zeros(len(names)), np.ones(len(names)))
                for m, names in self.reference_architecture["features"].items()
            }
        statistics = {}
        for m in self.modalities:
            mean, std = feature_mean_std(
                self.adata_manager.get_from_registry(features_registry_key(m))
            )
            if self.feature_scale[m] == "modality":
                std = np.full_like(std, std.mean())
            statistics[m] = (mean, std)
        return statistics

    # -------------------------------------------------------------- training
    @document_presets
    def train(
        self,
        max_steps: int | Literal["auto"] | None = None,
        batch_size: int | None = None,
        n_critic: int | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        gradient_clip_norm: float | None = None,
        early_stopping: bool | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        seed: int | None = None,
        iterations_per_epoch: int | None = None,
        data_on_device: bool | None = None,
        plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        deterministic: bool | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train the model for ``max_steps`` iterations.

        One iteration samples ``batch_size`` cells of every modality (with replacement),
        takes ``n_critic`` discriminator steps and one encoder/decoder step. Arguments left
        at ``None`` take the model's preset value (in brackets).

        A query model (:meth:`load_query_data`) trains only its new batches' offsets and its
        adapters, one Adam step per iteration: there ``max_steps`` defaults to
        {query_max_steps} and ``lr`` to {query_lr}, and ``n_critic``, ``weight_decay`` and
        ``gradient_clip_norm`` do not apply.

        Parameters
        ----------
        max_steps
            Number of iterations, not optimiser steps ({max_steps}). ``"auto"``: about 625
            passes over the largest modality, between 1,000 and 2,000 iterations. With early
            stopping it is the most that are trained.
        batch_size
            Cells per modality per iteration ({batch_size}).
        n_critic
            Discriminator updates per iteration ({n_critic}).
        lr
            Adam learning rate ({lr}).
        weight_decay
            Adam L2 penalty ({weight_decay}).
        gradient_clip_norm
            Gradient norm clip of the encoder/decoder step; 0 disables it
            ({gradient_clip_norm}).
        early_stopping
            Stop once the latent space has converged ({early_stopping}; ``None``: the
            preset's value unless ``max_steps`` is an int, which keeps meaning a fixed
            length). Every {early_stopping_every} iterations
            ({early_stopping_every_small_data} where {early_stopping_every} iterations pass over
            the largest modality more than {early_stopping_small_data_passes} times and there is
            no ``batch_key``: batches mix more slowly than modalities agree;
            ``iterations_per_epoch`` must divide it), each cell of a fixed subsample (at most
            {early_stopping_subsample} per modality, drawn with ``seed``) gets its
            {early_stopping_n_neighbors} nearest neighbours in the linked modality; training stops after at least
            {early_stopping_min_iterations} iterations once the mean Jaccard agreement of
            these sets with the previous check's rises less than a fraction
            {early_stopping_min_relative_gain} above its best. Labels and pairing are not used. The
            agreement and the iteration of each check are in ``model.history``
            (``"neighbor_agreement"``, ``"convergence_check_iteration"``), and a log line
            says why training stopped. Not available for query models.
        accelerator, devices
            Passed to Lightning, e.g. ``accelerator="gpu"``. With ``devices`` > 1 training
            is distributed (DDP, ``strategy="ddp_find_unused_parameters_true"`` unless a
            ``strategy`` is given): each process samples its own ``batch_size`` cells per
            modality, so the effective minibatch is ``devices * batch_size``, and gradients
            are averaged. Run it from a script: Lightning's launcher re-runs the script for
            the other processes (not possible from a notebook).
        seed
            Seed of the minibatch sampling (default: the model's ``seed``).
        iterations_per_epoch
            Iterations per logging epoch: ``model.history`` holds one row (the mean) per
            epoch for every loss term and the anchor pair count. ``None``: the interval of
            the early-stopping checks when they are on, else {iterations_per_epoch}.
        data_on_device
            Hold the registered data as tensors on the training device and gather each
            minibatch there. ``None``: on a GPU when the data take at most half of its free
            memory and the MuData is not backed. The minibatches drawn are the same either way.
        plan_kwargs
            Further arguments of :class:`~scmosaic.model.SCMODALTrainingPlan` (e.g.
            ``betas``), as in other scvi-tools models; also accepts ``lr``, ``weight_decay``,
            ``n_critic`` and ``gradient_clip_norm``, each given only one way.
        datasplitter_kwargs
            Further arguments of :class:`~scmosaic.model.UnpairedDataModule`, like the data
            splitter arguments of other scvi-tools models.
        deterministic
            Use torch's deterministic algorithms while training (the global setting is
            restored afterwards), so that the same ``seed`` gives the same latents for a
            given number of torch threads. ``None``: on when training on the CPU (it costs
            about 3% there), off on a GPU. Different thread counts or devices still differ
            slightly (floating-point sums in another order); see the user guide.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``enable_progress_bar=False``).

        Examples
        --------
        >>> model.train(max_steps=2000)
        >>> model.history["loss_anchor"].plot()
        """
        plan_settings = _merge_kwargs(
            "plan_kwargs",
            plan_kwargs,
            lr=lr,
            weight_decay=weight_decay,
            n_critic=n_critic,
            gradient_clip_norm=gradient_clip_norm,
        )
        settings = resolve(
            get_preset(self.preset).train,
            max_steps=max_steps,
            batch_size=batch_size,
            early_stopping=early_stopping,
            **{k: plan_settings.pop(k, None) for k in _PLAN_SETTINGS},
        )
        # A max_steps of the user's means a fixed length unless early stopping is asked for.
        stop_early = settings["early_stopping"] and (
            early_stopping is not None or max_steps in (None, "auto")
        )
        seed = self.seed if seed is None else seed
        self._check_registered_features()
        if self.reference_architecture and not self._new_batches():
            warnings.warn(
                "Every batch of this query is one the reference was trained on (in the same "
                "modality): its cells are encoded with the reference's own weights and there "
                "is nothing to fit.",
                UserWarning,
                stacklevel=2,
            )
            self.is_trained_ = True
            return
        if self.reference_architecture:
            if early_stopping:
                raise ValueError(
                    "early_stopping=True is not available for query models: query mapping "
                    "trains a fixed, short number of iterations (max_steps)."
                )
            stop_early = False
            # Query mapping: a short fit of the new batches' offsets, one step per iteration.
            n_iter = QUERY_MAX_STEPS if max_steps in (None, "auto") else int(max_steps)
            plan = QueryTrainingPlan(
                self.module,
                links=[(link.mod_a, link.mod_b) for link in self.layout.links],
                lr=_first_given(lr, (plan_kwargs or {}).get("lr"), QUERY_LR),
                reference_codes=self._reference_codes(),
                seed=seed,
                **plan_settings,
            )
            steps_per_iteration = 1
        else:
            n_iter = self._n_iterations(settings["max_steps"], settings["batch_size"])
            plan = self._training_plan_cls(
                self.module, **{k: settings[k] for k in _PLAN_SETTINGS}, **plan_settings
            )
            steps_per_iteration = 1 + settings["n_critic"]
        every = check_interval(
            self._n_cells_largest(), settings["batch_size"], self.module.n_batches
        )
        if iterations_per_epoch is None:
            iterations_per_epoch = every if stop_early else ITERATIONS_PER_EPOCH
        iterations_per_epoch = min(iterations_per_epoch, n_iter)
        if stop_early and n_iter > every and every % iterations_per_epoch:
            raise ValueError(
                f"Early stopping checks every {every} iterations, at the end of a logging "
                f"epoch: iterations_per_epoch must divide {every}, got "
                f"{iterations_per_epoch}. Pass another iterations_per_epoch, or "
                "early_stopping=False (or a max_steps) for a fixed length."
            )
        pairs = self._pairs() if self.use_pairs else None
        data_module = self._data_module_cls(
            self.adata_manager,
            self.layout,
            batch_size=settings["batch_size"],
            iterations_per_epoch=iterations_per_epoch,
            seed=seed,
            **_merge_kwargs(
                "datasplitter_kwargs",
                datasplitter_kwargs,
                data_on_device=data_on_device,
                pairs=pairs,
                extra_arrays=self._bridge_features(pairs, seed),
            ),
        )
        _check_accelerator(accelerator)
        _set_trainer_defaults(trainer_kwargs, devices, iterations_per_epoch)
        if stop_early:
            trainer_kwargs["callbacks"] = [
                *(trainer_kwargs.get("callbacks") or []),
                self._convergence_stopping(seed, every),
            ]
        deterministic = _trains_on_cpu(accelerator) if deterministic is None else deterministic
        # Inference leaves the module in eval mode; Lightning would warn about it.
        self.module.train()
        with (
            _quiet_lightning(),
            _deterministic(deterministic),
            _only_query_trainable(self.module, bool(self.reference_architecture)),
        ):
            runner = TrainRunner(
                self,
                training_plan=plan,
                data_splitter=data_module,
                max_epochs=math.ceil(n_iter / iterations_per_epoch),
                # Lightning counts optimiser steps: 1 + n_critic per iteration.
                max_steps=n_iter * steps_per_iteration,
                accelerator=accelerator,
                devices=devices,
                **trainer_kwargs,
            )
            _log_start(runner.trainer, n_iter, stop_early)
            runner()
        self.n_iterations_trained_ += plan.n_iterations
        if not self.reference_architecture:
            self.latent_sketch_ = self._latent_sketch()

    def _convergence_stopping(self, seed: int, every: int) -> ConvergenceStopping:
        """The early-stopping callback: checks every ``every`` iterations on a fixed subsample."""
        inputs = {}
        for m, rows in self._subsample_rows(EARLY_STOPPING.subsample, seed).items():
            _, chunks = self._registered_rows(None, m, len(rows), rows)
            inputs[m] = next(chunks)
        rule = ConvergenceRule(
            every=every,
            min_relative_gain=EARLY_STOPPING.min_relative_gain,
            patience=EARLY_STOPPING.patience,
            min_iterations=EARLY_STOPPING.min_iterations,
        )
        links = [(link.mod_a, link.mod_b) for link in self.layout.links]
        return ConvergenceStopping(inputs, links, rule, EARLY_STOPPING.n_neighbors)

    @torch.inference_mode()
    def _latent_sketch(self) -> dict[str, np.ndarray]:
        """Codes of up to ``SKETCH_SIZE`` cells per modality (drawn with the model's seed).

        Saved with the model: query mapping anchors new batches to them, so it needs neither
        the reference data nor their features.
        """
        self.module.eval()
        return {
            m: self._encode(None, m, 2048, rows)[1].numpy()
            for m, rows in self._subsample_rows(SKETCH_SIZE, self.seed).items()
        }

    def _subsample_rows(self, size: int, seed: int) -> dict[str, np.ndarray]:
        """Sorted rows of at most ``size`` cells per modality, drawn without replacement."""
        rng = np.random.default_rng(seed)
        rows = {}
        for m in self.modalities:
            n_obs = self.adata.mod[m].n_obs
            rows[m] = np.sort(rng.choice(n_obs, min(size, n_obs), replace=False))
        return rows

    def _reference_codes(self) -> dict[str, torch.Tensor] | None:
        """The reference's latent sketch, for the anchor term of query mapping."""
        sketch = getattr(self, "latent_sketch_", None)
        if not sketch:
            logger.info(
                "The reference has no latent sketch (saved by an older scmosaic): the query is "
                "mapped without anchors to the reference's codes."
            )
            return None
        return {m: torch.as_tensor(np.asarray(codes)) for m, codes in sketch.items()}

    def _n_iterations(self, max_steps: int | str, batch_size: int) -> int:
        """Iterations to train: ``max_steps``, or the data-size rule for ``"auto"``."""
        if max_steps == "auto":
            return default_max_steps(self._n_cells_largest(), batch_size)
        return int(max_steps)

    def _n_cells_largest(self) -> int:
        return max(self.adata.mod[m].n_obs for m in self.modalities)

    # --------------------------------------------------------------- outputs
    def _trained_features(self, modality: str) -> list[str]:
        """Names of the features ``modality`` was trained on, in the encoder's order."""
        return self.trained_features_[modality]

    def _registered_features(self) -> dict[str, list[str]]:
        return {
            m: list(self.adata_manager.get_state_registry(features_registry_key(m))["column_names"])
            for m in self.modalities
        }

    def _check_registered_features(self) -> None:
        """Training reads the registered data in registry order: it must be the trained order."""
        for m, names in self._registered_features().items():
            if feature_order(pd.Index(names), self._trained_features(m), m) is not None:
                raise ValueError(
                    f"The features of modality {m!r} are the trained ones in another order; "
                    "inference matches them by name, but to train further put them in the "
                    f"trained order first: mdata.mod[{m!r}][:, model.trained_features_[{m!r}]]."
                )

    def _registered_rows(
        self, mdata: MuData | None, modality: str, chunk_size: int, rows: np.ndarray | None = None
    ):
        """The cells of ``modality`` in ``mdata`` (or its sorted ``rows``) and their trained
        features and batches, in chunks.

        Features are matched to the trained ones by name; linked features are not read.
        """
        adata = get_modality(self.adata if mdata is None else mdata, modality)
        if mdata is not None:  # the model's own data were recorded when it was made
            check_normalization(adata, modality, self.normalization_.get(modality))
        columns = feature_order(adata.var_names, self._trained_features(modality), modality)
        layer = self._layer(modality)
        matrix = registered_matrix(adata, layer, modality)
        batches = self._cell_batches(adata, modality)
        if rows is not None:
            matrix = matrix[rows]
            batches = None if batches is None else batches[rows]
        chunks = (
            (x, None if batches is None else batches[i * chunk_size : (i + 1) * chunk_size])
            for i, x in enumerate(iterate_rows(matrix, columns, chunk_size))
        )
        return adata, chunks

    def _layer(self, modality: str) -> str | None:
        """The layer ``modality`` was trained on (a query model: its reference's)."""
        layers = (self.reference_architecture or {}).get("layers")
        if layers is None:
            layers = self._setup_args["layers"] or {}
        return layers.get(modality)

    def _encode(self, mdata, modality: str, chunk_size: int, rows=None) -> tuple:
        """``(adata, codes)`` of the cells of ``modality`` (on the CPU), in chunks."""
        adata, chunks = self._registered_rows(mdata, modality, chunk_size, rows)
        codes = [self.module.encode(modality, *self._on_device(x, b)).cpu() for x, b in chunks]
        return adata, torch.cat(codes) if codes else torch.zeros((0, self.module.n_latent))

    def _cell_batches(self, adata, modality: str) -> torch.Tensor | None:
        """Global batch index of each cell of ``adata`` (``None`` without a batch key)."""
        layout = self.layout
        if not layout.batch_key:
            return None
        if layout.batch_key not in adata.obs:
            raise KeyError(
                f"Modality {modality!r} has no .obs[{layout.batch_key!r}], the batch_key the "
                "model was trained with."
            )
        labels = adata.obs[layout.batch_key].astype(str)
        known = pd.Index(layout.batch_categories)
        index = known.get_indexer(labels)
        if (index < 0).any():
            unknown = sorted(set(labels[index < 0]))[:5]
            raise ValueError(
                f"Modality {modality!r} has batches the model was not trained on: {unknown}; "
                f"known batches: {list(known)}."
            )
        return torch.as_tensor(index)

    def _pairs(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Rows of the cells present in both modalities of each link (same ``obs_name``)."""
        pairs = {}
        for link in self.links:
            names_a = self.adata.mod[link.mod_a].obs_names
            names_b = self.adata.mod[link.mod_b].obs_names
            rows_a = np.flatnonzero(names_a.isin(names_b))
            rows_b = names_b.get_indexer(names_a[rows_a])
            pairs[link.index] = (rows_a, rows_b)
        return pairs

    def _bridge_features(self, pairs: dict | None, seed: int) -> dict[str, dict]:
        """``{modality: {bridge_key(link): cells x landmarks}}`` for links with enough pairs
        (none for a query model: it chooses no anchors between modalities)."""
        if not pairs or self.reference_architecture or self.module.bridge_anchor_weight <= 0:
            return {}
        codes: dict[str, np.ndarray] = {}
        extra: dict[str, dict] = {}
        for link in self.links:
            rows_a, rows_b = pairs.get(link.index, ((), ()))
            if len(rows_a) < MIN_LANDMARKS:
                continue
            for m in (link.mod_a, link.mod_b):
                if m not in codes:
                    codes[m] = principal_components(
                        lambda m=m: self._scaled_chunks(m), self.adata.mod[m].n_obs, seed
                    )
            bridges = bridge_features(codes[link.mod_a], codes[link.mod_b], rows_a, rows_b, seed)
            logger.info(
                "Anchors of link %s-%s also use each cell's similarity to %d paired cells.",
                link.mod_a,
                link.mod_b,
                bridges[0].shape[1],
            )
            for m, matrix in zip((link.mod_a, link.mod_b), bridges, strict=True):
                extra.setdefault(m, {})[bridge_key(link.index)] = matrix
        return extra

    def _scaled_chunks(self, modality: str):
        """The registered features of ``modality`` as the encoders see them (z-scored,
        clipped), as numpy chunks of rows."""
        matrix = registered_matrix(self.adata.mod[modality], self._layer(modality), modality)
        with torch.no_grad():
            for chunk in iterate_rows(matrix, None, CHUNK):
                yield self.module.scale(modality, chunk.to(self.module.device)).cpu().numpy()

    def _on_device(self, x: torch.Tensor, batch: torch.Tensor | None) -> tuple:
        return x.to(self.device), None if batch is None else batch.to(self.device)

    def _check_modality(self, modality: str, role: str) -> None:
        if modality not in self.module.modalities:
            raise ValueError(
                f"{role} modality {modality!r} is not one the model was trained on: "
                f"{self.module.modalities}."
            )

    def _modalities_of(self, mdata: MuData | None) -> list[str]:
        """The model's modalities that ``mdata`` holds (default: the registered ones)."""
        if mdata is None:
            return self.modalities
        present = [m for m in self.module.modalities if m in getattr(mdata, "mod", {})]
        if not present:
            raise ValueError(
                f"The MuData has none of the model's modalities {self.module.modalities}; "
                f"it has {list(getattr(mdata, 'mod', {}))}."
            )
        return present

    @torch.inference_mode()
    def get_latent_representation(
        self,
        mdata: MuData | None = None,
        modalities: Sequence[str] | None = None,
        batch_size: int = 2048,
        write_obsm: bool = False,
        obsm_key: str = LATENT_OBSM_KEY,
    ) -> dict[str, np.ndarray]:
        """Joint latent codes of every cell of each modality.

        Computed in chunks of ``batch_size`` cells in inference mode; nothing is written
        unless ``write_obsm`` is set.

        Parameters
        ----------
        mdata
            MuData of the same layout as the training data (default: the training data).
            It may be backed (``mudata.read_h5mu(path, backed=True)``): cells are then read
            from disk ``batch_size`` at a time, so memory holds one chunk plus the output.
        modalities
            Modalities to embed (default: every modality of the model that ``mdata`` has).
        batch_size
            Cells per chunk.
        write_obsm
            Also store each modality's latent in ``mdata.mod[m].obsm[obsm_key]``.
        obsm_key
            Key used with ``write_obsm`` (default ``"X_scmodal"``).

        Returns
        -------
        ``{modality: array of shape (n_cells_of_modality, n_latent)}``

        Examples
        --------
        >>> latent = model.get_latent_representation(write_obsm=True)
        >>> sc.pp.neighbors(mdata["rna"], use_rep="X_scmodal")
        """
        self._check_if_trained(warn=True)
        modalities = list(modalities or self._modalities_of(mdata))
        for m in modalities:
            self._check_modality(m, "Requested")
        self.module.eval()
        latent = {}
        for m in modalities:
            adata, codes = self._encode(mdata, m, batch_size)
            latent[m] = codes.numpy()
            if write_obsm:
                adata.obsm[obsm_key] = latent[m]
        return latent

    def get_joint_representation(
        self,
        mdata: MuData | None = None,
        batch_size: int = 2048,
        write_obsm: bool = False,
        obsm_key: str = JOINT_LATENT_OBSM_KEY,
    ) -> pd.DataFrame:
        """One code per cell of the MuData: the mean of its modalities' codes.

        A cell measured in several registered modalities (the same ``obs_name`` in each)
        gets the mean of its codes there; a cell measured in one gets that modality's code.

        Parameters
        ----------
        mdata
            MuData of the same layout as the training data (default: the training data).
        batch_size
            Cells per chunk.
        write_obsm
            Also store the codes, in the order of ``mdata.obs_names``, in
            ``mdata.obsm[obsm_key]``.
        obsm_key
            Key used with ``write_obsm`` (default ``"X_scmodal"``).

        Returns
        -------
        DataFrame of shape ``(cells, n_latent)`` indexed by the cells' ``obs_names`` (the
        MuData's order where it has one), with a column ``n_modalities`` of how many
        modalities each code averages.

        Examples
        --------
        >>> joint = model.get_joint_representation(write_obsm=True)
        >>> sc.pp.neighbors(mdata, use_rep="X_scmodal")
        """
        mdata = self.adata if mdata is None else mdata
        latent = self.get_latent_representation(mdata, batch_size=batch_size)
        frames = [
            pd.DataFrame(codes, index=mdata.mod[m].obs_names.astype(str))
            for m, codes in latent.items()
        ]
        stacked = pd.concat(frames)
        grouped = stacked.groupby(level=0, sort=False)
        joint = grouped.mean()
        joint.columns = [f"z{j}" for j in range(joint.shape[1])]
        joint["n_modalities"] = grouped.size()
        order = pd.Index(mdata.obs_names.astype(str))
        aligned = len(order) == len(joint) and order.isin(joint.index).all()
        if aligned:
            joint = joint.loc[order]
        if write_obsm:
            if not aligned:
                raise ValueError(
                    "mdata.obs_names are not the cells of its modalities; call mdata.update() "
                    "first so that mdata.obsm can hold one code per cell."
                )
            mdata.obsm[obsm_key] = joint.drop(columns="n_modalities").to_numpy(np.float32)
        return joint

    @torch.inference_mode()
    def get_imputed_features(
        self,
        source: str,
        target: str,
        mdata: MuData | None = None,
        space: Literal["scaled", "log"] = "scaled",
        batch_size: int = 2048,
        method: Literal["neighbors", "decoder"] = "neighbors",
        n_neighbors: int = IMPUTATION_NEIGHBORS,
    ) -> pd.DataFrame:
        """Cross-modal imputation: the target's features for each cell of the source.

        ``method="neighbors"`` (default): a weighted mean of the measured target values of
        the ``n_neighbors`` target cells nearest to each source cell in the joint latent
        space, the weights a Gaussian kernel of the distance whose width is the cell's
        distance to its 30th nearest target cell (its ``n_neighbors``-th if fewer; user
        guide, "Cross-modal imputation").
        The target cells are those of the model's registered data (the training data, or a
        query model's query); a paired cell's own measurement is among its neighbours.
        ``method="decoder"``: the decoder's prediction ``G_target(E_source(x_source))``, which
        needs no target cells (e.g. a query model whose query lacks the target modality).
        On the benchmark sets the neighbours' mean correlates better with held-out
        measurements (user guide, "Imputation").

        Parameters
        ----------
        source
            Modality whose cells are imputed, e.g. ``"rna"``.
        target
            Modality whose features are predicted, e.g. ``"adt"``.
        mdata
            MuData holding the source cells, of the same layout as the training data
            (default: the registered data).
        space
            ``"scaled"``: the target's z-scored space (what the model's encoders see and its
            decoder outputs); ``"log"``: the space of the registered target layer
            (log-normalised values).
        batch_size
            Cells per chunk.
        method
            ``"neighbors"`` or ``"decoder"``.
        n_neighbors
            Target cells weighed per source cell (``method="neighbors"``; capped at the
            number of target cells).

        Returns
        -------
        DataFrame of shape ``(source cells, target features)`` indexed by the source's
        ``obs_names`` with the target's ``var_names`` as columns.

        Raises
        ------
        ValueError
            ``method="neighbors"`` while the registered data hold no cell of ``target``.

        Examples
        --------
        >>> adt_from_rna = model.get_imputed_features("rna", "adt", space="log")
        """
        self._check_if_trained(warn=True)
        self._check_modality(source, "Source")
        self._check_modality(target, "Target")
        if space not in ("scaled", "log"):
            raise ValueError(f"space must be 'scaled' or 'log', got {space!r}.")
        if method not in ("neighbors", "decoder"):
            raise ValueError(f"method must be 'neighbors' or 'decoder', got {method!r}.")
        self.module.eval()
        if method == "neighbors":
            check_positive_int(n_neighbors, "n_neighbors")
            adata, imputed = self._impute_from_neighbors(
                source, target, mdata, space, batch_size, n_neighbors
            )
        else:
            adata, imputed = self._impute_from_decoder(source, target, mdata, space, batch_size)
        return pd.DataFrame(
            imputed,
            index=adata.obs_names.copy(),
            columns=pd.Index(self._trained_features(target)),
        )

    def _impute_from_decoder(self, source, target, mdata, space, batch_size) -> tuple:
        adata, rows = self._registered_rows(mdata, source, batch_size)
        chunks = []
        for x, b in rows:
            x, b = self._on_device(x, b)
            # Decoded with each source cell's batch (an unseen one adds no batch shift).
            x_hat = self.module.decode(target, self.module.encode(source, x, b), b)
            if space == "log":
                x_hat = self.module.unscale(target, x_hat)
            chunks.append(x_hat.cpu())
        n_features = len(self._trained_features(target))
        imputed = torch.cat(chunks).numpy() if chunks else np.zeros((0, n_features), np.float32)
        return adata, imputed

    def _impute_from_neighbors(self, source, target, mdata, space, batch_size, k) -> tuple:
        if target not in self.adata.mod or self.adata.mod[target].n_obs == 0:
            raise ValueError(
                f"method='neighbors' averages the measured {target!r} cells of the model's "
                f"registered data, and it has none; use method='decoder'."
            )
        adata, source_codes = self._encode(mdata, source, batch_size)
        _, target_codes = self._encode(None, target, batch_size)
        weights = neighbor_weights(source_codes.numpy(), target_codes.numpy(), k)
        _, rows = self._registered_rows(None, target, batch_size)
        values = (
            x if space == "log" else self.module.scale(target, x.to(self.device)).cpu()
            for x, _ in rows
        )
        return adata, average_rows(weights, (v.numpy() for v in values))
