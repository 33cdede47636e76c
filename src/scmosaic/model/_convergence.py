"""Early stopping on an unsupervised convergence criterion: stable cross-modal neighbours.

Every ``every`` iterations the codes of a fixed subsample of each modality are computed, and
for each link every cell's ``k`` nearest neighbours among the other modality's subsample are
found (both directions). The criterion is the mean Jaccard index between these neighbour sets
and the previous check's: it rises while the alignment still reorganises and levels off at
the rate at which minibatch noise alone moves neighbours. Training stops at the first check
whose agreement exceeds the best so far by less than ``min_relative_gain`` (a fraction of it),
``patience`` checks in a row, once ``min_iterations`` are done. The gain is relative because
the level the agreement reaches differs between data sets. It needs neither labels nor pairing; the measurements
that chose it are in the user guide (``benchmarks/early_stopping.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

logger = logging.getLogger(__name__)

AGREEMENT_KEY = "neighbor_agreement"
# Iteration of each check, logged next to the agreement so that model.history explains itself.
CHECK_ITERATION_KEY = "convergence_check_iteration"


def cross_modal_neighbors(codes_a: torch.Tensor, codes_b: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each row of ``codes_a``'s ``k`` nearest rows of ``codes_b`` (Euclidean)."""
    k = min(k, codes_b.shape[0])
    return torch.cdist(codes_a, codes_b).topk(k, dim=1, largest=False).indices


def neighbor_agreement(previous: torch.Tensor, current: torch.Tensor) -> float:
    """Mean over rows of the Jaccard index between two ``(n, k)`` neighbour index arrays.

    Rows hold indices of distinct neighbours; 1 means the same sets, 0 disjoint sets.
    """
    if previous.shape != current.shape:
        raise ValueError(f"Neighbour arrays differ in shape: {previous.shape} vs {current.shape}.")
    k = current.shape[1]
    shared = (previous.unsqueeze(2) == current.unsqueeze(1)).any(dim=2).sum(dim=1)
    return float((shared / (2 * k - shared)).mean())


@dataclass
class ConvergenceRule:
    """When to stop: see the module docstring.

    Parameters
    ----------
    every
        Iterations between checks.
    min_relative_gain
        Progress is an agreement above ``(1 + min_relative_gain)`` times its best so far.
    patience
        Checks in a row without progress before stopping.
    min_iterations
        No stop before this many iterations.
    """

    every: int
    min_relative_gain: float
    patience: int
    min_iterations: int
    best: float = -np.inf
    stale_checks: int = 0
    trajectory: list[tuple[int, float]] = field(default_factory=list)

    def update(self, iteration: int, agreement: float) -> bool:
        """Record a check; ``True`` when training should stop."""
        self.trajectory.append((iteration, agreement))
        if agreement > self.best * (1 + self.min_relative_gain):
            self.stale_checks = 0
        else:
            self.stale_checks += 1
        self.best = max(self.best, agreement)
        return iteration >= self.min_iterations and self.stale_checks >= self.patience


class ConvergenceStopping(Callback):
    """Lightning callback that evaluates :class:`ConvergenceRule` and stops training.

    Parameters
    ----------
    inputs
        ``{modality: (features, batch indices or None)}`` of the fixed subsample, as the
        module's ``encode`` takes them.
    links
        Pairs of linked modalities whose neighbours are compared.
    rule
        The stopping rule (its state is updated in place).
    n_neighbors
        ``k`` of the cross-modal neighbour sets.
    """

    def __init__(
        self,
        inputs: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]],
        links: Sequence[tuple[str, str]],
        rule: ConvergenceRule,
        n_neighbors: int,
    ):
        self.inputs = dict(inputs)
        self.links = [tuple(link) for link in links]
        self.rule = rule
        self.n_neighbors = n_neighbors
        self._previous: list[torch.Tensor] | None = None
        self._next_check = rule.every

    @torch.inference_mode()
    def _neighbors(self, module) -> list[torch.Tensor]:
        was_training = module.training
        module.eval()
        device = next(module.parameters()).device
        try:
            codes = {
                m: module.encode(m, x.to(device), None if b is None else b.to(device))
                for m, (x, b) in self.inputs.items()
            }
        finally:
            module.train(was_training)
        return [
            cross_modal_neighbors(codes[a], codes[b], self.n_neighbors)
            for mod_a, mod_b in self.links
            for a, b in ((mod_a, mod_b), (mod_b, mod_a))
        ]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        iteration = pl_module.n_iterations
        if iteration < self._next_check:
            return
        self._next_check = iteration + self.rule.every
        current = self._neighbors(pl_module.module)
        previous, self._previous = self._previous, current
        # The first check has nothing to agree with: NaN in the history and no decision.
        agreement = np.nan
        if previous is not None:
            pairs = zip(previous, current, strict=True)
            agreement = float(np.mean([neighbor_agreement(p, c) for p, c in pairs]))
        # Every process computes the same value (same weights, same subsample).
        sync = trainer.world_size > 1
        for key, value in ((AGREEMENT_KEY, agreement), (CHECK_ITERATION_KEY, float(iteration))):
            pl_module.log(key, value, on_epoch=True, on_step=False, sync_dist=sync)
        if previous is None:
            return
        best = self.rule.best
        # Under DDP, reduce the decision so that no process stops alone.
        stop = trainer.strategy.reduce_boolean_decision(
            self.rule.update(iteration, agreement), all=False
        )
        if stop:
            trainer.should_stop = True
            logger.info(
                "Early stopping after %d iterations: the cross-modal neighbour agreement "
                "between checks %d iterations apart (%.3f) rose less than %g%% above its best "
                "(%.3f) for %d check(s).",
                iteration,
                self.rule.every,
                agreement,
                100 * self.rule.min_relative_gain,
                best,
                self.rule.patience,
            )
