"""Manual-optimisation training plan alternating discriminator and generator updates."""

from __future__ import annotations

import torch
from scvi.train import TrainingPlan

from ._constants import features_key, link_key
from ._module import SCMODALModule


class SCMODALTrainingPlan(TrainingPlan):
    """One iteration = ``n_critic`` discriminator steps, then one encoder/decoder step.

    Parameters
    ----------
    module
        The :class:`~scmosaic.model.SCMODALModule` to train.
    lr
        Adam learning rate of both optimisers.
    weight_decay
        L2 penalty added to the gradient by Adam (not decoupled AdamW), as in the reference.
    n_critic
        Discriminator updates per iteration.
    gradient_clip_norm
        Maximum total gradient norm of the encoder/decoder step (``None``: no clipping).
    betas
        Adam betas of both optimisers.
    """

    def __init__(
        self,
        module: SCMODALModule,
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
        n_critic: int = 5,
        gradient_clip_norm: float | None = 5.0,
        betas: tuple[float, float] = (0.9, 0.999),
    ):
        super().__init__(module, lr=lr, weight_decay=weight_decay)
        self.automatic_optimization = False
        self.n_critic = n_critic
        self.gradient_clip_norm = gradient_clip_norm
        self.betas = tuple(betas)
        # Lightning's global_step counts optimiser steps (1 + n_critic per iteration).
        self.n_iterations = 0

    def configure_optimizers(self):
        def adam(params):
            return torch.optim.Adam(
                params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay
            )

        return [
            adam(self.module.generator_parameters()),
            adam(self.module.discriminator_parameters()),
        ]

    def _unpack(self, batch: dict) -> tuple[dict, list]:
        module = self.module
        x = {m: batch[m][features_key(m)] for m in module.modalities}
        linked = [
            (batch[a][link_key(i, a)], batch[b][link_key(i, b)])
            for i, (a, b) in enumerate(module.links)
        ]
        return x, linked

    def training_step(self, batch: dict, batch_idx: int):
        module: SCMODALModule = self.module
        opt_g, opt_d = self.optimizers()
        x_raw, linked = self._unpack(batch)
        x = {m: module.standardize(m, v) for m, v in x_raw.items()}
        z = {m: module.encoders[m](x[m]) for m in module.modalities}

        loss_d = None
        for _ in range(self.n_critic):
            loss_d = module.discriminator_loss(z)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            opt_d.step()

        # Freeze the discriminators so the generator step computes no gradient for them.
        self.toggle_optimizer(opt_g)
        out = module.generator_loss(x, z, linked)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(out.loss)
        if self.gradient_clip_norm is not None:
            self.clip_gradients(
                opt_g, gradient_clip_val=self.gradient_clip_norm, gradient_clip_algorithm="norm"
            )
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self.n_iterations += 1

        n_obs = out.n_obs_minibatch
        log = {"loss_total": out.loss.detach(), **out.extra_metrics}
        if loss_d is not None:
            log["loss_discriminator"] = loss_d.detach()
        # Under distributed training, epoch means are averaged over processes.
        sync = self.trainer.world_size > 1
        self.log_dict(
            log, on_step=False, on_epoch=True, batch_size=n_obs, prog_bar=False, sync_dist=sync
        )
        self.log(
            "train_loss",
            out.loss.detach(),
            on_epoch=True,
            batch_size=n_obs,
            prog_bar=True,
            sync_dist=sync,
        )

    def validation_step(self, batch, batch_idx):  # no validation split for unpaired data
        return None
