"""The SCMODAL model class: registration, training and outputs."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np
import pandas as pd
import torch
from mudata import MuData
from scvi.data import AnnDataManager
from scvi.data._manager import AnnDataManagerValidationCheck
from scvi.data.fields import MuDataLayerField, MuDataObsmField
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from ._constants import LATENT_OBSM_KEY, Link, features_key, link_key
from ._data_module import UnpairedDataModule, iterate_chunks
from ._module import SCMODALModule
from ._presets import default_max_steps, get_preset, resolve
from ._training_plan import SCMODALTrainingPlan
from ._validation import parse_links, validate_setup

logger = logging.getLogger(__name__)


def _n_devices(devices) -> int:
    if isinstance(devices, list | tuple):
        return len(devices)
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    return 1  # "auto" / "-1": decided by Lightning


def _drop_advertisements(record: logging.LogRecord) -> bool:
    # Also Lightning's "stopped: `max_steps=N`" notice: N counts optimiser steps, not the
    # iterations the user asked for, so it reads as a wrong number.
    return not str(record.msg).startswith(("💡 Tip", "`Trainer.fit` stopped: `max_steps="))


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
        preset's value.
    n_latent
        Dimension of the joint latent space (reference 20).
    n_hidden
        Hidden width of encoders and decoders (reference 512).
    n_hidden_discriminator
        Hidden width of the discriminators (reference 512).
    lambda_gan, lambda_ae, lambda_latent_cycle, lambda_mnn, lambda_geo
        Loss weights (reference 1, 10, 10, 1, 10).
    n_neighbors_mnn
        ``k`` of the minibatch mutual nearest neighbours on linked features (reference 30).
    max_geo_similarity
        Clamp of the geometric term's per-cell similarity (reference 0.975).
    clip
        Inputs are z-scored per feature with the statistics of ``mdata`` and clipped at
        ``+-clip`` (reference 10; 0 disables clipping).
    init_std
        Normal initialisation scale of all weights (reference 0.1; 0 = PyTorch default).
    latent_anchor_weight
        Anchors are mutual nearest neighbours of ``cos(P_a, P_b) + w * cos(z_a, z_b)``:
        with ``w > 0`` the current latent codes (all features) help choose anchors
        (reference 0: linked features only).
    seed
        Seed of the weight initialisation and of minibatch sampling.

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
        preset: Literal["default", "reference"] = "default",
        n_latent: int | None = None,
        n_hidden: int | None = None,
        n_hidden_discriminator: int | None = None,
        lambda_gan: float | None = None,
        lambda_ae: float | None = None,
        lambda_latent_cycle: float | None = None,
        lambda_mnn: float | None = None,
        lambda_geo: float | None = None,
        n_neighbors_mnn: int | None = None,
        max_geo_similarity: float | None = None,
        clip: float | None = None,
        init_std: float | None = None,
        latent_anchor_weight: float | None = None,
        seed: int = 0,
    ):
        super().__init__(mdata)
        self.preset = preset
        self.seed = seed
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
            max_geo_similarity=max_geo_similarity,
            clip=clip,
            init_std=init_std,
            latent_anchor_weight=latent_anchor_weight,
        )
        n_features = {m: self.adata.mod[m].n_vars for m in self.modalities}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = self._module_cls(
                n_features=n_features,
                links=[(link.mod_a, link.mod_b) for link in self.links],
                **module_kwargs,
            )
        self._set_feature_statistics()
        self._model_summary_string = (
            f"SCMODAL ({preset} preset) of {', '.join(self.modalities)} with "
            f"{len(self.links)} link(s); latent {module_kwargs['n_latent']}, "
            f"hidden {module_kwargs['n_hidden']}."
        )
        self.init_params_ = self._get_init_params(locals())
        self.n_iterations_trained_ = 0

    # ------------------------------------------------------------------ setup
    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        modalities: Sequence[str],
        links: Sequence[Sequence[str]],
        layers: dict[str, str | None] | None = None,
        **kwargs,
    ) -> None:
        """Register the modalities and linked features of ``mdata``.

        Nothing in ``mdata`` is changed, except that scvi-tools records the registration in
        ``mdata.uns["_scvi_uuid"]`` / ``["_scvi_manager_uuid"]`` and may store a registered
        matrix as C-contiguous or CSR (values unchanged).

        Parameters
        ----------
        mdata
            MuData with one AnnData per modality. The modalities' cells may be different
            (unpaired), identical (paired) or partly shared: each modality is sampled on its
            own and pairing is never used.
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
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields`.

        Examples
        --------
        >>> scmosaic.SCMODAL.setup_mudata(
        ...     mdata, modalities=["rna", "adt"], links=[("rna", "adt")]
        ... )
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        modalities = list(modalities)
        layers = dict(layers or {})
        parsed = parse_links(links, modalities)
        validate_setup(mdata, modalities, parsed, layers)
        fields = [
            MuDataLayerField(
                features_key(m), layers.get(m), mod_key=m, is_count_data=False, mod_required=True
            )
            for m in modalities
        ]
        for i, link in enumerate(parsed):
            for mod, key in ((link.mod_a, link.key_a), (link.mod_b, link.key_b)):
                fields.append(
                    MuDataObsmField(link_key(i, mod), key, mod_key=mod, mod_required=True)
                )
        adata_manager = AnnDataManager(
            fields=fields,
            setup_method_args=setup_method_args,
            validation_checks=AnnDataManagerValidationCheck(check_fully_paired_mudata=False),
        )
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def setup_anndata(cls, *args, **kwargs):
        """Not supported: SCMODAL needs a MuData with one AnnData per modality."""
        raise NotImplementedError("SCMODAL integrates several modalities: use setup_mudata.")

    # ------------------------------------------------------------ properties
    @property
    def _setup_args(self) -> dict:
        return self.adata_manager.registry["setup_args"]

    @property
    def modalities(self) -> list[str]:
        """Registered modalities, in order."""
        return list(self._setup_args["modalities"])

    @property
    def links(self) -> list[Link]:
        """Registered links with their ``.obsm`` keys."""
        return parse_links(self._setup_args["links"], self.modalities)

    def _modality_keys(self) -> dict[str, list[str]]:
        keys = {m: [features_key(m)] for m in self.modalities}
        for i, link in enumerate(self.links):
            keys[link.mod_a].append(link_key(i, link.mod_a))
            keys[link.mod_b].append(link_key(i, link.mod_b))
        return keys

    def _set_feature_statistics(self, chunk_size: int = 4096) -> None:
        """Per-feature mean and std (ddof=1, 0 -> 1) of each modality, computed in chunks."""
        for m in self.modalities:
            total = sq_total = None
            n = 0
            for chunk in iterate_chunks(self.adata_manager, m, [features_key(m)], chunk_size):
                x = chunk[features_key(m)].double()
                total = x.sum(0) if total is None else total + x.sum(0)
                sq_total = x.pow(2).sum(0) if sq_total is None else sq_total + x.pow(2).sum(0)
                n += x.shape[0]
            mean = total / n
            var = (sq_total / n - mean.pow(2)).clamp_min(0.0) * (n / max(n - 1, 1))
            std = var.sqrt()
            std[std == 0] = 1.0
            standardizer = self.module.standardizers[m]
            standardizer.mean.copy_(mean.float())
            standardizer.std.copy_(std.float())

    # -------------------------------------------------------------- training
    def train(
        self,
        max_steps: int | None = None,
        batch_size: int | None = None,
        n_critic: int | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        gradient_clip_norm: float | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        seed: int | None = None,
        iterations_per_epoch: int = 100,
        data_on_device: bool | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train the model for ``max_steps`` iterations.

        One iteration samples ``batch_size`` cells of every modality (with replacement),
        takes ``n_critic`` discriminator steps and one encoder/decoder step. Arguments left
        at ``None`` take the model's preset value.

        Parameters
        ----------
        max_steps
            Number of iterations (reference 10,000), not optimiser steps. The default
            preset trains for about 625 passes over the largest modality, between 1,000 and
            2,000 iterations.
        batch_size
            Cells per modality per iteration (reference 500).
        n_critic
            Discriminator updates per iteration (reference 5).
        lr
            Adam learning rate (reference 1e-3).
        weight_decay
            Adam L2 penalty (reference 1e-3).
        gradient_clip_norm
            Gradient norm clip of the encoder/decoder step (reference 5).
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
            epoch for every loss term and the anchor pair count.
        data_on_device
            Hold the registered data as tensors on the training device and gather each
            minibatch there, instead of slicing it from host memory and copying it every
            iteration. ``None`` (default): on a GPU when the data (sparse matrices stay
            sparse) take at most half of its free memory and the MuData is not backed.
            The minibatches drawn, and hence the trained model, are the same either way.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``enable_progress_bar=False``).

        Examples
        --------
        >>> model.train(max_steps=2000)
        >>> model.history["loss_anchor"].plot()
        """
        settings = resolve(
            get_preset(self.preset).train,
            max_steps=max_steps,
            batch_size=batch_size,
            n_critic=n_critic,
            lr=lr,
            weight_decay=weight_decay,
            gradient_clip_norm=gradient_clip_norm,
        )
        if settings["max_steps"] is None:
            largest = max(self.adata.mod[m].n_obs for m in self.modalities)
            settings["max_steps"] = default_max_steps(largest, settings["batch_size"])
        n_iter = int(settings["max_steps"])
        if n_iter < 1:
            raise ValueError(f"max_steps must be a positive number of iterations, got {n_iter}.")
        iterations_per_epoch = min(iterations_per_epoch, n_iter)
        data_module = self._data_module_cls(
            self.adata_manager,
            self._modality_keys(),
            batch_size=settings["batch_size"],
            iterations_per_epoch=iterations_per_epoch,
            seed=self.seed if seed is None else seed,
            data_on_device=data_on_device,
        )
        plan = self._training_plan_cls(
            self.module,
            lr=settings["lr"],
            weight_decay=settings["weight_decay"],
            n_critic=settings["n_critic"],
            gradient_clip_norm=settings["gradient_clip_norm"],
        )
        trainer_kwargs.setdefault("check_val_every_n_epoch", None)
        # The data module samples per modality and per process itself: Lightning must not
        # wrap its samplers in a DistributedSampler.
        trainer_kwargs.setdefault("use_distributed_sampler", False)
        if _n_devices(devices) > 1:
            # Discriminator steps leave encoder/decoder parameters without gradients.
            trainer_kwargs.setdefault("strategy", "ddp_find_unused_parameters_true")
        # Epoch means are logged by the plan; per-step logging would only warn on short epochs.
        trainer_kwargs.setdefault("log_every_n_steps", iterations_per_epoch)
        with _quiet_lightning():
            runner = TrainRunner(
                self,
                training_plan=plan,
                data_splitter=data_module,
                max_epochs=math.ceil(n_iter / iterations_per_epoch),
                # Lightning counts optimiser steps: 1 + n_critic per iteration.
                max_steps=n_iter * (1 + settings["n_critic"]),
                accelerator=accelerator,
                devices=devices,
                **trainer_kwargs,
            )
            runner()
        self.n_iterations_trained_ += plan.n_iterations

    # --------------------------------------------------------------- outputs
    def _manager_for(self, mdata: MuData | None) -> AnnDataManager:
        mdata = self._validate_anndata(mdata)
        return self.get_anndata_manager(mdata, required=True)

    def _check_modality(self, modality: str, role: str) -> None:
        if modality not in self.modalities:
            raise ValueError(
                f"{role} modality {modality!r} is not registered; registered: {self.modalities}."
            )

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
            Modalities to embed (default: all).
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
        manager = self._manager_for(mdata)
        modalities = list(modalities or self.modalities)
        self.module.eval()
        latent = {}
        for m in modalities:
            self._check_modality(m, "Requested")
            chunks = [
                self.module.encode(m, batch[features_key(m)].to(self.device)).cpu()
                for batch in iterate_chunks(manager, m, [features_key(m)], batch_size)
            ]
            latent[m] = torch.cat(chunks).numpy()
            if write_obsm:
                manager.adata.mod[m].obsm[obsm_key] = latent[m]
        return latent

    @torch.inference_mode()
    def get_imputed_features(
        self,
        source: str,
        target: str,
        mdata: MuData | None = None,
        space: Literal["scaled", "log"] = "scaled",
        batch_size: int = 2048,
    ) -> pd.DataFrame:
        """Cross-modal imputation ``G_target(E_source(x_source))`` for the source's cells.

        Parameters
        ----------
        source
            Modality whose cells are imputed, e.g. ``"rna"``.
        target
            Modality whose features are predicted, e.g. ``"adt"``.
        mdata
            MuData of the same layout as the training data (default: the training data).
        space
            ``"scaled"``: z-scored space of the target (what the decoder outputs);
            ``"log"``: un-scaled with the target's stored feature mean and std, i.e. the
            space of the registered target layer (log-normalised values).
        batch_size
            Cells per chunk.

        Returns
        -------
        DataFrame of shape ``(source cells, target features)`` indexed by the source's
        ``obs_names`` with the target's ``var_names`` as columns.

        Examples
        --------
        >>> adt_from_rna = model.get_imputed_features("rna", "adt", space="log")
        """
        self._check_if_trained(warn=True)
        self._check_modality(source, "Source")
        self._check_modality(target, "Target")
        if space not in ("scaled", "log"):
            raise ValueError(f"space must be 'scaled' or 'log', got {space!r}.")
        manager = self._manager_for(mdata)
        self.module.eval()
        chunks = []
        for batch in iterate_chunks(manager, source, [features_key(source)], batch_size):
            x_hat = self.module.decode(
                target, self.module.encode(source, batch[features_key(source)].to(self.device))
            )
            if space == "log":
                x_hat = self.module.standardizers[target].inverse(x_hat)
            chunks.append(x_hat.cpu())
        return pd.DataFrame(
            torch.cat(chunks).numpy(),
            index=manager.adata.mod[source].obs_names.copy(),
            columns=self.adata.mod[target].var_names.copy(),
        )
