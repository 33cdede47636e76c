"""The scMODAL network: per-modality encoders and decoders, one discriminator per link."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scvi.module.base import BaseModuleClass, LossOutput
from torch import nn

from ._layout import MosaicBatch, PairedCells
from ._losses import (
    anchor_loss,
    discriminator_loss,
    gaussian_kernel,
    geometric_loss,
    mse,
    mutual_nearest_neighbors,
    select_anchors,
)


def _mlp(n_in: int, n_hidden: int, n_out: int, n_hidden_layers: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_hidden_layers):
        layers += [nn.Linear(n_in if i == 0 else n_hidden, n_hidden), nn.ReLU()]
    layers.append(nn.Linear(n_hidden, n_out))
    return nn.Sequential(*layers)


class Standardizer(nn.Module):
    """Centring and scaling with fixed statistics, clipped at ``+-clip`` (0: no clipping).

    ``mean`` is per feature; ``std`` per feature (z-scores) or one value repeated (a
    modality-wide scale, ``SCMODAL(feature_scale=...)``).

    Statistics are buffers, so they are saved with the model and a reloaded model scales new
    data exactly as it scaled the training data; sparse input stays sparse until a minibatch.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, clip: float):
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.asarray(std), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return x.clamp(-self.clip, self.clip) if self.clip else x

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class SCMODALModule(BaseModuleClass):
    """Encoders, decoders and link discriminators of scMODAL with its loss terms.

    Training follows scvi-tools' contract: :meth:`inference` encodes a :class:`MosaicBatch`,
    :meth:`generative` decodes the codes and :meth:`loss` returns the encoder/decoder loss;
    :meth:`discriminator_loss` is the adversary's side. Defaults of every setting live in
    ``scmosaic.model.PRESETS``; the module takes them all explicitly.

    Parameters
    ----------
    feature_statistics
        ``{modality: (mean, std)}`` per-feature statistics of the registered data, in
        registration order; inputs are z-scored with them (the number of features of each
        modality is the length of its statistics).
    links
        Pairs of modality names; one discriminator and one anchor term per pair.
    n_latent
        Dimension of the shared latent space.
    n_hidden
        Width of the hidden layer of encoders and decoders.
    n_hidden_discriminator
        Width of the two hidden layers of each discriminator.
    lambda_gan, lambda_ae, lambda_latent_cycle, lambda_mnn, lambda_geo
        Weights of the adversarial, reconstruction, latent-cycle, anchor and geometric terms.
    n_neighbors_mnn
        ``k`` of the mutual nearest neighbours on linked features within a minibatch.
    n_neighbors_mnn_local
        A cell with a mutual nearest neighbour within this smaller ``k`` keeps only those
        anchors (0: every cell keeps its pairs within ``n_neighbors_mnn``).
    max_geo_similarity
        Clamp of the per-cell kernel similarity in the geometric term.
    clip
        Clip of the z-scored inputs (0: no clipping).
    init_std
        Standard deviation of the normal initialisation of all weights and biases (0: PyTorch's
        default initialisation).
    latent_anchor_weight
        Weight ``w`` of the latent similarity when choosing anchors (0: linked features only).
    anchor_similarity
        How linked features are compared when choosing anchors: ``"cosine"`` or
        ``"euclidean"`` (``_losses.linked_similarity``).
    bridge_anchor_weight
        Weight of the bridge features' similarity when choosing anchors of a link with paired
        cells (``_bridge.py``; used when the minibatch carries them).
    """

    def __init__(
        self,
        feature_statistics: Mapping[str, tuple[np.ndarray, np.ndarray]],
        links: Sequence[tuple[str, str]],
        *,
        n_latent: int,
        n_hidden: int,
        n_hidden_discriminator: int,
        lambda_gan: float,
        lambda_ae: float,
        lambda_latent_cycle: float,
        lambda_mnn: float,
        lambda_geo: float,
        n_neighbors_mnn: int,
        n_neighbors_mnn_local: int,
        max_geo_similarity: float,
        clip: float,
        init_std: float,
        latent_anchor_weight: float,
        anchor_similarity: str,
        bridge_anchor_weight: float,
        lambda_batch: float,
        lambda_pair: float,
        n_batches: int = 0,
        modality_batches: Mapping[str, Sequence[int]] | None = None,
    ):
        super().__init__()
        self.modalities = list(feature_statistics)
        self.links = [tuple(link) for link in links]
        self.n_latent = n_latent
        self.lambdas = {
            "adversarial": lambda_gan,
            "reconstruction": lambda_ae,
            "latent_cycle": lambda_latent_cycle,
            "anchor": lambda_mnn,
            "geometric": lambda_geo,
            "batch": lambda_batch,
            "pair": lambda_pair,
        }
        self.n_batches = n_batches
        # Batch discriminators only for modalities with two batches or more; each predicts the
        # position of a cell's batch among its modality's batches.
        self.modality_batches = {
            m: list(batches) for m, batches in (modality_batches or {}).items() if len(batches) > 1
        }
        self.n_neighbors_mnn = n_neighbors_mnn
        self.n_neighbors_mnn_local = n_neighbors_mnn_local
        self.max_geo_similarity = max_geo_similarity
        self.latent_anchor_weight = latent_anchor_weight
        self.anchor_similarity = anchor_similarity
        self.bridge_anchor_weight = bridge_anchor_weight

        n_features = {m: len(mean) for m, (mean, _) in feature_statistics.items()}
        self.standardizers = nn.ModuleDict(
            {m: Standardizer(mean, std, clip) for m, (mean, std) in feature_statistics.items()}
        )
        self.encoders = nn.ModuleDict(
            {m: _mlp(d, n_hidden, n_latent) for m, d in n_features.items()}
        )
        self.decoders = nn.ModuleDict(
            {m: _mlp(n_latent, n_hidden, d) for m, d in n_features.items()}
        )
        self.discriminators = nn.ModuleList(
            [_mlp(n_latent, n_hidden_discriminator, 1, n_hidden_layers=2) for _ in self.links]
        )
        self.batch_discriminators = nn.ModuleDict(
            {
                m: _mlp(n_latent, n_hidden_discriminator, len(batches), n_hidden_layers=2)
                for m, batches in self.modality_batches.items()
            }
        )
        for m, batches in self.modality_batches.items():
            local = torch.full((max(n_batches, 1),), -1, dtype=torch.long)
            local[torch.as_tensor(batches)] = torch.arange(len(batches))
            self.register_buffer(f"_local_batch_{m}", local, persistent=False)
        # With batches, the first layer of every encoder and decoder adds a learned offset per
        # batch: the same function as one-hot batch columns, but a new batch (query mapping)
        # is a new row that leaves the computation for known batches unchanged to the bit.
        self.encoder_batch_offsets = nn.ModuleDict(
            {m: nn.Embedding(n_batches, n_hidden) for m in n_features} if n_batches else {}
        )
        self.decoder_batch_offsets = nn.ModuleDict(
            {m: nn.Embedding(n_batches, n_hidden) for m in n_features} if n_batches else {}
        )
        # Query models only (add_query_adapters): a first encoder layer of their own for the
        # cells of new batches; cells of the reference's batches never pass through it.
        self.query_input_layers = nn.ModuleDict()
        if init_std:
            for p in self.parameters():
                nn.init.normal_(p, 0.0, init_std)
        else:  # as PyTorch initialises the columns of a linear layer
            for m, d in n_features.items():
                for offsets, fan_in in (
                    (self.encoder_batch_offsets, d + n_batches),
                    (self.decoder_batch_offsets, n_latent + n_batches),
                ):
                    if m in offsets:
                        bound = 1 / math.sqrt(fan_in)
                        nn.init.uniform_(offsets[m].weight, -bound, bound)

    # ------------------------------------------------------------------ networks
    def generator_parameters(self) -> list[nn.Parameter]:
        """Parameters of all encoders and decoders (one optimiser)."""
        return [
            *self.encoders.parameters(),
            *self.decoders.parameters(),
            *self.batch_offset_parameters(),
        ]

    def batch_offset_parameters(self) -> list[nn.Parameter]:
        """The per-batch offsets of encoders and decoders (row ``i``: global batch ``i``)."""
        return [
            *self.encoder_batch_offsets.parameters(),
            *self.decoder_batch_offsets.parameters(),
        ]

    def add_query_adapters(self, known_batches: Mapping[str, Sequence[int]]) -> None:
        """Make this the module of a query model.

        ``known_batches`` gives, per query modality, the global indices of the batches the
        reference trained that modality on. The other batches are new in that modality: its
        cells of new batches enter the encoder through a first layer of their own (a copy of
        the reference's, set with the weights), and only the new batches' offset rows learn.
        """
        for m, known in known_batches.items():
            first = self.encoders[m][0]
            self.query_input_layers[m] = nn.Linear(first.in_features, first.out_features).to(
                first.weight.device
            )
            mask = torch.zeros(max(self.n_batches, 1), dtype=torch.bool)
            mask[torch.as_tensor(list(known), dtype=torch.long)] = True
            self.register_buffer(f"_known_batch_{m}", mask, persistent=False)

    def _known_rows(self, modality: str) -> torch.Tensor | None:
        """Which batches of ``modality`` the reference knows (``None``: not a query modality)."""
        return getattr(self, f"_known_batch_{modality}", None)

    def zero_known_offset_grads(self) -> None:
        """Zero the gradients of every offset row the reference trained (all rows of the
        modalities the query lacks), so that Adam leaves them exactly as they are."""
        for offsets in (self.encoder_batch_offsets, self.decoder_batch_offsets):
            for m, table in offsets.items():
                if table.weight.grad is None:
                    continue
                known = self._known_rows(m)
                if known is None:
                    table.weight.grad.zero_()
                else:
                    table.weight.grad[known.to(table.weight.device)] = 0

    def query_parameters(self) -> list[nn.Parameter]:
        """What query mapping trains: the offsets (only their new rows) and the adapters."""
        return [*self.batch_offset_parameters(), *self.query_input_layers.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """Parameters of all link and batch discriminators (a second optimiser)."""
        return [*self.discriminators.parameters(), *self.batch_discriminators.parameters()]

    def _conditioned(
        self,
        mlp: nn.Sequential,
        offsets: nn.ModuleDict,
        modality: str,
        h,
        batch,
        adapters: nn.ModuleDict | None = None,
    ) -> torch.Tensor:
        """``mlp(h)`` with each row's batch offset added after the first linear layer (and,
        for rows of new batches of a query model, its adapter as that layer)."""
        if not self.n_batches:
            return mlp(h)
        if batch is None:
            raise ValueError("This model was trained with batches: give each cell's batch.")
        batch = batch.long()
        hidden = mlp[0](h)
        if adapters is not None and modality in adapters:
            # Rows of known batches keep the reference's values exactly.
            new = ~self._known_rows(modality)[batch]
            hidden = torch.where(new.unsqueeze(1), adapters[modality](h), hidden)
        return mlp[1:](hidden + offsets[modality](batch))

    def encode(
        self, modality: str, x: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Latent codes of registered (unscaled) features ``x`` of ``modality``."""
        return self._encode_scaled(modality, self.standardizers[modality](x), batch)

    def _encode_scaled(self, modality: str, x_scaled: torch.Tensor, batch=None) -> torch.Tensor:
        return self._conditioned(
            self.encoders[modality],
            self.encoder_batch_offsets,
            modality,
            x_scaled,
            batch,
            self.query_input_layers,
        )

    def decode(
        self, modality: str, z: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Features of ``modality`` generated from ``z``, in z-scored space."""
        return self._conditioned(
            self.decoders[modality], self.decoder_batch_offsets, modality, z, batch
        )

    def scale(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Features of ``modality`` in the registered (log) space, z-scored and clipped."""
        return self.standardizers[modality](x)

    def unscale(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Z-scored features of ``modality`` back in the registered (log) space."""
        return self.standardizers[modality].inverse(x)

    def discriminate(self, link_index: int, z: torch.Tensor) -> torch.Tensor:
        return self.discriminators[link_index](z).squeeze(-1)

    # ------------------------------------------------ BaseModuleClass interface
    def _get_inference_input(self, tensors: MosaicBatch) -> dict:
        return {"x": tensors.x, "batch": tensors.batch}

    def _get_generative_input(self, tensors: MosaicBatch, inference_outputs: dict) -> dict:
        return {"z": inference_outputs["z"], "batch": tensors.batch}

    def inference(self, x: Mapping[str, torch.Tensor], batch: Mapping | None = None) -> dict:
        """Z-scored inputs ``x_scaled`` and latent codes ``z``, per modality."""
        batch = batch or {}
        x_scaled = {m: self.standardizers[m](x[m]) for m in self.modalities}
        z = {m: self._encode_scaled(m, x_scaled[m], batch.get(m)) for m in self.modalities}
        return {"x_scaled": x_scaled, "z": z}

    def generative(self, z: Mapping[str, torch.Tensor], batch: Mapping | None = None) -> dict:
        """Reconstructions ``x_hat`` (z-scored space), per modality."""
        batch = batch or {}
        return {"x_hat": {m: self.decode(m, z[m], batch.get(m)) for m in self.modalities}}

    def loss(
        self, tensors: MosaicBatch, inference_outputs: dict, generative_outputs: dict
    ) -> LossOutput:
        """All encoder/decoder loss terms of one iteration, weighted and summed."""
        x, z = inference_outputs["x_scaled"], inference_outputs["z"]
        x_hat = generative_outputs["x_hat"]
        terms = {
            "reconstruction": sum(mse(x_hat[m], x[m]) for m in self.modalities),
            "geometric": self._geometric(x, z),
        }
        terms.update(self._link_terms(z, tensors.linked, tensors.batch or {}, tensors.bridges))
        terms["batch"] = self._batch_confusion(z, tensors.batch or {})
        terms["pair"] = self._pair_term(tensors.pairs, self.links)
        n_pairs = terms.pop("n_anchor_pairs")
        return self._weighted(terms, n_pairs, tensors.n_obs)

    def _weighted(self, terms: dict, n_anchor_pairs: int, n_obs: int) -> LossOutput:
        """The weighted sum of ``terms``, each also logged, with the anchor pair count."""
        # Summed in the order of self.lambdas (adversarial first), as the reference does.
        total = sum(self.lambdas[name] * terms[name] for name in self.lambdas if name in terms)
        metrics = {f"loss_{name}": value.detach() for name, value in terms.items()}
        # on the loss terms' device, so the plan sums all metrics there as one vector
        metrics["n_anchor_pairs"] = terms["reconstruction"].new_tensor(float(n_anchor_pairs))
        return LossOutput(
            loss=total,
            reconstruction_loss=terms["reconstruction"].detach(),
            n_obs_minibatch=n_obs,
            extra_metrics=metrics,
        )

    def sample(self, *args, **kwargs):
        raise NotImplementedError("scMODAL is not a generative model of counts; nothing to sample.")

    # ------------------------------------------------------------ loss terms
    def _geometric(self, x: Mapping[str, torch.Tensor], z: Mapping[str, torch.Tensor]):
        geometric = z[self.modalities[0]].new_zeros(())
        for m in self.modalities:
            with torch.no_grad():
                kernel_x = gaussian_kernel(x[m], float(x[m].shape[1]))
            geometric = geometric + geometric_loss(kernel_x, z[m], self.max_geo_similarity)
        return geometric

    def _cycle(self, source: str, target: str, z: torch.Tensor, batch) -> torch.Tensor:
        """``E_target(G_target(z))`` of codes of ``source`` cells (their batches kept)."""
        return self._encode_scaled(target, self.decode(target, z, batch), batch)

    def _link_terms(
        self, z: Mapping[str, torch.Tensor], linked, batch: Mapping, bridges=None
    ) -> dict:
        """Adversarial, latent-cycle and anchor terms summed over links."""
        zero = z[self.modalities[0]].new_zeros(())
        adversarial = latent_cycle = anchor = zero
        n_pairs = 0
        bridges = bridges or [None] * len(self.links)
        for i, ((a, b), (p_a, p_b), bridge) in enumerate(
            zip(self.links, linked, bridges, strict=True)
        ):
            adversarial = adversarial - discriminator_loss(
                self.discriminate(i, z[a]), self.discriminate(i, z[b])
            )
            latent_cycle = latent_cycle + mse(self._cycle(a, b, z[a], batch.get(a)), z[a])
            latent_cycle = latent_cycle + mse(self._cycle(b, a, z[b], batch.get(b)), z[b])
            idx_a, idx_b = select_anchors(
                p_a,
                p_b,
                z[a],
                z[b],
                self.n_neighbors_mnn,
                self.latent_anchor_weight,
                bridge,
                self.bridge_anchor_weight,
                self.n_neighbors_mnn_local,
                self.anchor_similarity,
            )
            n_pairs += idx_a.numel()
            anchor = anchor + anchor_loss(z[a], z[b], idx_a, idx_b)
        return {
            "adversarial": adversarial,
            "latent_cycle": latent_cycle,
            "anchor": anchor,
            "n_anchor_pairs": n_pairs,
        }

    def _local_batch(self, modality: str, batch: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"_local_batch_{modality}")[batch.long()]

    def _batch_confusion(self, z: Mapping[str, torch.Tensor], batch: Mapping) -> torch.Tensor:
        """Cross-entropy of each batch discriminator's prediction to the uniform one: 0 at its
        minimum (log K subtracted), where the codes tell nothing of a cell's batch."""
        total = z[self.modalities[0]].new_zeros(())
        for m, batches in self.modality_batches.items():
            log_p = F.log_softmax(self.batch_discriminators[m](z[m]), dim=1)
            total = total - log_p.mean() - math.log(len(batches))
        return total

    def query_loss(
        self,
        tensors: MosaicBatch,
        links: Sequence[tuple[str, str]],
        reference_codes: Mapping[str, torch.Tensor] | None = None,
    ) -> LossOutput:
        """Loss of query mapping (new offsets and adapters), on the query's modalities only.

        Reconstruction of each modality; the pair term over ``links`` (the reference's links
        between the query's modalities) for paired cells; and, given ``reference_codes`` (codes
        of reference cells of the same modality, per modality), the anchor term between each
        query code and its mutual nearest reference codes (cosine, ``n_neighbors_mnn``), which
        pulls the query's batches onto the reference. The reference's weights are frozen and
        only the new batches' offsets and the adapters learn from this loss.
        """
        batch = tensors.batch or {}
        x = {m: self.standardizers[m](v) for m, v in tensors.x.items()}
        z = {m: self._encode_scaled(m, x[m], batch.get(m)) for m in x}
        anchor = self.standardizers[self.modalities[0]].mean.new_zeros(())
        n_pairs = 0
        for m, reference in (reference_codes or {}).items():
            idx_q, idx_r = mutual_nearest_neighbors(z[m], reference, self.n_neighbors_mnn)
            n_pairs += idx_q.numel()
            anchor = anchor + anchor_loss(z[m], reference, idx_q, idx_r)
        terms = {
            "reconstruction": sum(mse(self.decode(m, z[m], batch.get(m)), x[m]) for m in x),
            "pair": self._pair_term(tensors.pairs, links),
            "anchor": anchor,
        }
        return self._weighted(terms, n_pairs, tensors.n_obs)

    def _pair_term(
        self, pairs: Sequence[PairedCells | None], links: Sequence[tuple[str, str]]
    ) -> torch.Tensor:
        """Paired cells of ``links``: equal codes in both modalities, and each modality decoded
        from the other's code (cross-modal reconstruction)."""
        total = self.standardizers[self.modalities[0]].mean.new_zeros(())
        for (a, b), drawn in zip(links, pairs or [None] * len(links), strict=True):
            if drawn is None:
                continue
            x_a = self.standardizers[a](drawn.x_a)
            x_b = self.standardizers[b](drawn.x_b)
            z_a = self._encode_scaled(a, x_a, drawn.batch_a)
            z_b = self._encode_scaled(b, x_b, drawn.batch_b)
            total = total + mse(z_a, z_b)
            total = total + mse(self.decode(b, z_a, drawn.batch_b), x_b)
            total = total + mse(self.decode(a, z_b, drawn.batch_a), x_a)
        return total

    def discriminator_loss(
        self, z: Mapping[str, torch.Tensor], batch: Mapping | None = None
    ) -> torch.Tensor:
        """Link discriminators' BCE plus batch discriminators' cross-entropy, on detached codes."""
        loss = sum(
            discriminator_loss(
                self.discriminate(i, z[a].detach()), self.discriminate(i, z[b].detach())
            )
            for i, (a, b) in enumerate(self.links)
        )
        for m in self.modality_batches:
            logits = self.batch_discriminators[m](z[m].detach())
            loss = loss + F.cross_entropy(logits, self._local_batch(m, batch[m]))
        return loss
