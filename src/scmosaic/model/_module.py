"""The scMODAL network: per-modality encoders and decoders, one discriminator per link."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from ._constants import features_key
from ._losses import (
    anchor_loss,
    discriminator_loss,
    gaussian_kernel,
    geometric_loss,
    mse,
    mutual_nearest_from_similarity,
    mutual_nearest_neighbors,
)


def _mlp(n_in: int, n_hidden: int, n_out: int, n_hidden_layers: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_hidden_layers):
        layers += [nn.Linear(n_in if i == 0 else n_hidden, n_hidden), nn.ReLU()]
    layers.append(nn.Linear(n_hidden, n_out))
    return nn.Sequential(*layers)


class Standardizer(nn.Module):
    """Per-feature z-scoring with fixed statistics, clipped at ``+-clip``.

    Statistics are buffers, so they are saved with the model and a reloaded model scales new
    data exactly as it scaled the training data; sparse input stays sparse until a minibatch.
    """

    def __init__(self, n_features: int, clip: float | None):
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return x.clamp(-self.clip, self.clip) if self.clip else x

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class SCMODALModule(BaseModuleClass):
    """Encoders, decoders and link discriminators of scMODAL with its loss terms.

    Parameters
    ----------
    n_features
        Number of input features per modality, in registration order.
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
    max_geo_similarity
        Clamp of the per-cell kernel similarity in the geometric term.
    clip
        Clip of the z-scored inputs (``None`` or 0: no clipping).
    init_std
        Standard deviation of the normal initialisation of all weights and biases (the
        reference uses 0.1); ``None`` or 0 keeps PyTorch's default initialisation.
    """

    def __init__(
        self,
        n_features: dict[str, int],
        links: Sequence[tuple[str, str]],
        n_latent: int = 20,
        n_hidden: int = 512,
        n_hidden_discriminator: int = 512,
        lambda_gan: float = 1.0,
        lambda_ae: float = 10.0,
        lambda_latent_cycle: float = 10.0,
        lambda_mnn: float = 1.0,
        lambda_geo: float = 10.0,
        n_neighbors_mnn: int = 30,
        max_geo_similarity: float = 0.975,
        clip: float | None = 10.0,
        init_std: float | None = 0.1,
        latent_anchor_weight: float = 0.0,
    ):
        super().__init__()
        self.modalities = list(n_features)
        self.links = [tuple(link) for link in links]
        self.n_latent = n_latent
        self.lambda_gan = lambda_gan
        self.lambda_ae = lambda_ae
        self.lambda_latent_cycle = lambda_latent_cycle
        self.lambda_mnn = lambda_mnn
        self.lambda_geo = lambda_geo
        self.n_neighbors_mnn = n_neighbors_mnn
        self.max_geo_similarity = max_geo_similarity
        self.latent_anchor_weight = latent_anchor_weight

        self.standardizers = nn.ModuleDict(
            {m: Standardizer(d, clip) for m, d in n_features.items()}
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
        if init_std:
            for p in self.parameters():
                nn.init.normal_(p, 0.0, init_std)

    # ------------------------------------------------------------------ networks
    def generator_parameters(self) -> list[nn.Parameter]:
        """Parameters of all encoders and decoders (one optimiser)."""
        return [*self.encoders.parameters(), *self.decoders.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """Parameters of all link discriminators (a second optimiser)."""
        return list(self.discriminators.parameters())

    def standardize(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return self.standardizers[modality](x)

    def encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Latent codes of raw (unscaled) features ``x`` of ``modality``."""
        return self.encoders[modality](self.standardize(modality, x))

    def decode(self, modality: str, z: torch.Tensor) -> torch.Tensor:
        """Features of ``modality`` generated from ``z``, in z-scored space."""
        return self.decoders[modality](z)

    def discriminate(self, link_index: int, z: torch.Tensor) -> torch.Tensor:
        return self.discriminators[link_index](z).squeeze(-1)

    # ------------------------------------------------ BaseModuleClass interface
    def _modality_of(self, tensors: dict[str, torch.Tensor]) -> str:
        for m in self.modalities:
            if features_key(m) in tensors:
                return m
        raise KeyError(f"None of {[features_key(m) for m in self.modalities]} is in the batch.")

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        modality = self._modality_of(tensors)
        return {"x": tensors[features_key(modality)], "modality": modality}

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {"z": inference_outputs["z"], "modality": inference_outputs["modality"]}

    @auto_move_data
    def inference(self, x: torch.Tensor, modality: str) -> dict:
        return {"z": self.encode(modality, x), "modality": modality}

    @auto_move_data
    def generative(self, z: torch.Tensor, modality: str) -> dict:
        return {"x_hat": self.decode(modality, z)}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Reconstruction loss of a single-modality batch (used by ``module(tensors)``).

        Training uses :meth:`discriminator_loss` and :meth:`generator_loss` on batches with
        all modalities.
        """
        modality = inference_outputs["modality"]
        x = self.standardize(modality, tensors[features_key(modality)])
        recon = mse(generative_outputs["x_hat"], x)
        return LossOutput(loss=recon, reconstruction_loss=recon, n_obs_minibatch=x.shape[0])

    def sample(self, *args, **kwargs):
        raise NotImplementedError("scMODAL is not a generative model of counts; nothing to sample.")

    # ------------------------------------------------------------ training
    def discriminator_loss(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum over links of the discriminator BCE on detached latents."""
        return sum(
            discriminator_loss(
                self.discriminate(i, z[a].detach()), self.discriminate(i, z[b].detach())
            )
            for i, (a, b) in enumerate(self.links)
        )

    def generator_loss(
        self,
        x: dict[str, torch.Tensor],
        z: dict[str, torch.Tensor],
        linked: Sequence[tuple[torch.Tensor, torch.Tensor]],
    ) -> LossOutput:
        """All encoder/decoder loss terms of one iteration.

        Parameters
        ----------
        x
            Z-scored inputs per modality.
        z
            Latent codes ``E_m(x_m)`` per modality (with gradient).
        linked
            Linked features ``(P_a, P_b)`` of each link, in link order.
        """
        reconstruction = sum(mse(self.decode(m, z[m]), x[m]) for m in self.modalities)
        geometric = z[self.modalities[0]].new_zeros(())
        for m in self.modalities:
            with torch.no_grad():
                kernel_x = gaussian_kernel(x[m], float(x[m].shape[1]))
            geometric = geometric + geometric_loss(kernel_x, z[m], self.max_geo_similarity)

        adversarial = latent_cycle = anchor = geometric.new_zeros(())
        n_pairs = 0
        for i, ((a, b), (p_a, p_b)) in enumerate(zip(self.links, linked, strict=True)):
            adversarial = adversarial - discriminator_loss(
                self.discriminate(i, z[a]), self.discriminate(i, z[b])
            )
            latent_cycle = latent_cycle + mse(self.encoders[b](self.decode(b, z[a])), z[a])
            latent_cycle = latent_cycle + mse(self.encoders[a](self.decode(a, z[b])), z[b])
            if self.latent_anchor_weight > 0:
                sim = F.normalize(p_a, dim=1) @ F.normalize(p_b, dim=1).T
                z_sim = F.normalize(z[a].detach(), dim=1) @ F.normalize(z[b].detach(), dim=1).T
                idx_a, idx_b = mutual_nearest_from_similarity(
                    sim + self.latent_anchor_weight * z_sim, self.n_neighbors_mnn
                )
            else:
                idx_a, idx_b = mutual_nearest_neighbors(p_a, p_b, self.n_neighbors_mnn)
            n_pairs += idx_a.numel()
            anchor = anchor + anchor_loss(z[a], z[b], idx_a, idx_b)

        total = (
            self.lambda_gan * adversarial
            + self.lambda_ae * reconstruction
            + self.lambda_latent_cycle * latent_cycle
            + self.lambda_mnn * anchor
            + self.lambda_geo * geometric
        )
        n_obs = sum(v.shape[0] for v in x.values())
        metrics = {
            "loss_adversarial": adversarial.detach(),
            "loss_reconstruction": reconstruction.detach(),
            "loss_latent_cycle": latent_cycle.detach(),
            "loss_anchor": anchor.detach(),
            "loss_geometric": geometric.detach(),
            "n_anchor_pairs": torch.tensor(float(n_pairs)),
        }
        return LossOutput(
            loss=total,
            reconstruction_loss=reconstruction.detach(),
            n_obs_minibatch=n_obs,
            extra_metrics=metrics,
        )
