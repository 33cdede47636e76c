"""Loss terms of scMODAL as pure functions of tensors.

Every function is stateless so that each term can be tested on hand-made inputs and
reused outside the training plan. Shapes: ``B`` cells per minibatch, ``d`` features,
``L`` latent dimensions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOGIT_CLAMP = 50.0


def discriminator_loss(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a link discriminator, modality ``a`` labelled 1.

    ``mean softplus(-D(z_a)) + mean softplus(D(z_b))`` with logits clamped to
    ``[-50, 50]`` as in the reference.
    """
    logits_a = logits_a.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
    logits_b = logits_b.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
    return F.softplus(-logits_a).mean() + F.softplus(logits_b).mean()


def mse(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over cells and features (reconstruction and latent cycle)."""
    return F.mse_loss(input, target)


@torch.no_grad()
def mutual_nearest_neighbors(
    p_a: torch.Tensor, p_b: torch.Tensor, k: int = 30
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mutual nearest neighbours between two minibatches by cosine similarity.

    A pair ``(i, j)`` is kept when ``j`` is among the ``k`` most similar cells of ``b`` for
    cell ``i`` of ``a`` and ``i`` is among the ``k`` most similar cells of ``a`` for ``j``.
    Computed with one ``B_a x B_b`` similarity matmul and two top-k calls, on the device
    of the inputs.

    Returns
    -------
    Index tensors ``(idx_a, idx_b)`` of equal length (possibly empty).
    """
    return mutual_nearest_from_similarity(F.normalize(p_a, dim=1) @ F.normalize(p_b, dim=1).T, k)


@torch.no_grad()
def mutual_nearest_from_similarity(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual ``k`` nearest neighbours from a ``B_a x B_b`` similarity matrix."""
    k_a = min(k, sim.shape[1])
    k_b = min(k, sim.shape[0])
    in_topk_of_a = torch.zeros_like(sim, dtype=torch.bool)
    in_topk_of_a.scatter_(1, sim.topk(k_a, dim=1).indices, True)
    in_topk_of_b = torch.zeros_like(sim, dtype=torch.bool)
    in_topk_of_b.scatter_(0, sim.topk(k_b, dim=0).indices, True)
    idx_a, idx_b = torch.nonzero(in_topk_of_a & in_topk_of_b, as_tuple=True)
    return idx_a, idx_b


@torch.no_grad()
def select_anchors(
    p_a: torch.Tensor,
    p_b: torch.Tensor,
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    k: int,
    latent_weight: float = 0.0,
    bridge: tuple[torch.Tensor, torch.Tensor] | None = None,
    bridge_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor pairs of a minibatch: mutual nearest neighbours of
    ``cos(P) + b * bridge + w * cos(z)``.

    With ``latent_weight`` 0 and no ``bridge`` only the linked features ``p_a``, ``p_b``
    choose anchors (the reference); with ``w > 0`` the current latent codes help; with bridge
    features ``(B_a, B_b)`` (similarity of each cell to paired landmark cells, ``_bridge.py``)
    their cosine similarity, centred and scaled to the spread of ``cos(P)`` so that ``b`` means
    the same on any data, helps too.
    """
    if latent_weight <= 0 and (bridge is None or bridge_weight <= 0):
        return mutual_nearest_neighbors(p_a, p_b, k)
    sim = F.normalize(p_a, dim=1) @ F.normalize(p_b, dim=1).T
    total = sim
    if bridge is not None and bridge_weight > 0:
        b_sim = F.normalize(bridge[0], dim=1) @ F.normalize(bridge[1], dim=1).T
        scale = sim.std() / b_sim.std().clamp_min(1e-12)
        total = total + bridge_weight * scale * (b_sim - b_sim.mean())
    if latent_weight > 0:
        total = total + latent_weight * (F.normalize(z_a, dim=1) @ F.normalize(z_b, dim=1).T)
    return mutual_nearest_from_similarity(total, k)


def anchor_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, idx_a: torch.Tensor, idx_b: torch.Tensor
) -> torch.Tensor:
    """Mean squared latent distance of anchor pairs; exactly 0 when there is no pair.

    (The reference divides by the pair count and returns NaN for an empty minibatch.)
    """
    if idx_a.numel() == 0:
        return z_a.sum() * 0.0  # keeps the graph and the device
    return (z_a[idx_a] - z_b[idx_b]).pow(2).mean()


def gaussian_kernel(x: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``exp(-||x_i - x_j||^2 / (2 * bandwidth))`` from a ``B x B`` distance matrix.

    Uses the matmul form of the squared distance: memory ``O(B^2 + B d)``, never ``B x B x d``.
    """
    sq_norm = x.pow(2).sum(1)
    sq_dist = (sq_norm[:, None] + sq_norm[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
    return torch.exp(-sq_dist / (2.0 * bandwidth))


def geometric_loss(
    kernel_x: torch.Tensor, z: torch.Tensor, max_similarity: float = 0.975
) -> torch.Tensor:
    """Negative mean row-wise cosine similarity of input- and latent-space kernels.

    Parameters
    ----------
    kernel_x
        Gaussian kernel of the inputs (``gaussian_kernel(x, d)``); constant in training.
    z
        Latent codes of the same cells.
    max_similarity
        Per-row similarities are clamped at this value, so rows already well preserved stop
        contributing gradient.
    """
    kernel_z = gaussian_kernel(z, float(z.shape[1]))
    similarity = F.cosine_similarity(kernel_x, kernel_z, dim=1)
    return -similarity.clamp(max=max_similarity).mean()
