"""Manual-optimisation training plan alternating discriminator and generator updates."""

from __future__ import annotations

import torch
from scvi.train import TrainingPlan

from ._layout import MosaicBatch
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
        Maximum total gradient norm of the encoder/decoder step (0: no clipping).
    betas
        Adam betas of both optimisers.
    """

    def __init__(
        self,
        module: SCMODALModule,
        *,
        lr: float,
        weight_decay: float,
        n_critic: int,
        gradient_clip_norm: float,
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

    def training_step(self, batch: MosaicBatch, batch_idx: int):
        module: SCMODALModule = self.module
        opt_g, opt_d = self.optimizers()
        inference_outputs = module.inference(**module._get_inference_input(batch))

        loss_d = None
        for _ in range(self.n_critic):
            loss_d = module.discriminator_loss(inference_outputs["z"], batch.batch)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            opt_d.step()

        # Freeze the discriminators so the generator step computes no gradient for them.
        self.toggle_optimizer(opt_g)
        generative_outputs = module.generative(
            **module._get_generative_input(batch, inference_outputs)
        )
        out = module.loss(batch, inference_outputs, generative_outputs)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(out.loss)
        if self.gradient_clip_norm:
            self.clip_gradients(
                opt_g, gradient_clip_val=self.gradient_clip_norm, gradient_clip_algorithm="norm"
            )
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self.n_iterations += 1
        self._log_iteration(out, loss_d)

    def _log_iteration(self, out, loss_d) -> None:
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


class QueryTrainingPlan(SCMODALTrainingPlan):
    """Query mapping: only what the query's new batches use is trained.

    That is the new batches' offsets and the query modalities' adapters (their own first
    encoder layer). Every reference weight, including the offset rows of the batches the
    reference trained each modality on, keeps its value exactly: those gradients are zeroed
    before each Adam step (:meth:`SCMODALModule.zero_known_offset_grads`), and Adam without
    weight decay leaves a parameter whose gradients were always zero unchanged. The loss is
    :meth:`SCMODALModule.query_loss`; each iteration anchors the query's codes to as many
    codes drawn (with replacement) from ``reference_codes``.

    Parameters
    ----------
    module
        The query model's module (the reference's weights with rows for the new batches).
    links
        The reference's links between the query's modalities, as ``(mod_a, mod_b)``; their
        paired cells enter the pair term.
    reference_codes
        ``{modality: codes of reference cells}`` (the reference's latent sketch), or ``None``
        for no anchor term.
    seed
        Seed of the draws from ``reference_codes``.
    lr
        Adam learning rate.
    betas
        Adam betas.
    """

    def __init__(
        self,
        module: SCMODALModule,
        *,
        links: list[tuple[str, str]],
        lr: float,
        reference_codes: dict[str, torch.Tensor] | None = None,
        seed: int = 0,
        betas: tuple[float, float] = (0.9, 0.999),
    ):
        super().__init__(
            module, lr=lr, weight_decay=0.0, n_critic=0, gradient_clip_norm=0.0, betas=betas
        )
        self.links = [tuple(link) for link in links]
        self.reference_codes = dict(reference_codes or {})
        self.generator = torch.Generator().manual_seed(seed)

    def _draw_reference(self, batch: MosaicBatch) -> dict[str, torch.Tensor]:
        drawn = {}
        for m, x in batch.x.items():
            codes = self.reference_codes.get(m)
            if codes is None or len(codes) == 0:
                continue
            rows = torch.randint(len(codes), (x.shape[0],), generator=self.generator)
            drawn[m] = codes[rows].to(x.device)
        return drawn

    def configure_optimizers(self):
        return torch.optim.Adam(
            self.module.query_parameters(), lr=self.lr, betas=self.betas, weight_decay=0.0
        )

    def training_step(self, batch: MosaicBatch, batch_idx: int):
        optimizer = self.optimizers()
        out = self.module.query_loss(batch, self.links, self._draw_reference(batch))
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(out.loss)
        self.module.zero_known_offset_grads()
        optimizer.step()
        self.n_iterations += 1
        self._log_iteration(out, None)
