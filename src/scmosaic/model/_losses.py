"""Loss terms of scMODAL as pure functions of tensors.

Every function is stateless so that each term can be tested on hand-made inputs and
reused outside the training plan. Shapes: ``B`` cells per minibatch, ``d`` features,
``L`` latent dimensions.
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F

from .._choices import AnchorSimilarity

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
    p_a: torch.Tensor, p_b: torch.Tensor, k: int = 30, local_k: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mutual nearest neighbours between two minibatches by cosine similarity.

    A pair ``(i, j)`` is kept when ``j`` is among the ``k`` most similar cells of ``b`` for
    cell ``i`` of ``a`` and ``i`` is among the ``k`` most similar cells of ``a`` for ``j``.
    Computed with one ``B_a x B_b`` similarity matmul and two top-k calls, on the device
    of the inputs. ``local_k``: see :func:`mutual_nearest_from_similarity`.

    Returns
    -------
    Index tensors ``(idx_a, idx_b)`` of equal length (possibly empty).
    """
    return mutual_nearest_from_similarity(linked_similarity(p_a, p_b), k, local_k)


@torch.no_grad()
def mutual_nearest_from_similarity(
    sim: torch.Tensor, k: int, local_k: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual ``k`` nearest neighbours from a ``B_a x B_b`` similarity matrix.

    With ``0 < local_k < k`` each cell's anchors come from the smallest neighbourhood that
    has any: a cell with a mutual pair within ``local_k`` keeps only those, and a pair within
    ``k`` is kept only when neither of its cells has one. A cell of a population with a few
    cells per minibatch then keeps its few close partners instead of also pairing with up to
    ``k`` cells of a large neighbouring population, while cells in sparser regions still
    find partners (``benchmarks/rare_types.py``).
    """
    top_a = sim.topk(min(k, sim.shape[1]), dim=1).indices  # sorted: closest first
    top_b = sim.topk(min(k, sim.shape[0]), dim=0).indices
    mutual = _in_top(sim, top_a, top_b)
    if 0 < local_k < k:
        close = _in_top(sim, top_a[:, :local_k], top_b[:local_k])
        wide = mutual & ~close.any(dim=1, keepdim=True) & ~close.any(dim=0, keepdim=True)
        mutual = close | wide
    idx_a, idx_b = torch.nonzero(mutual, as_tuple=True)
    return idx_a, idx_b


def _in_top(sim: torch.Tensor, top_a: torch.Tensor, top_b: torch.Tensor) -> torch.Tensor:
    """Boolean ``B_a x B_b`` mask of pairs in both top lists (rows of ``a``, columns of ``b``)."""
    in_top_of_a = torch.zeros_like(sim, dtype=torch.bool).scatter_(1, top_a, True)
    in_top_of_b = torch.zeros_like(sim, dtype=torch.bool).scatter_(0, top_b, True)
    return in_top_of_a & in_top_of_b


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||x_i - y_j||^2`` for all row pairs in the matmul form: memory ``O(B_x B_y + B d)``,
    never ``B_x x B_y x d`` (rounding below 0 clamped)."""
    return (x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2.0 * (x @ y.T)).clamp_min(0.0)


def linked_similarity(
    p_a: torch.Tensor, p_b: torch.Tensor, kind: AnchorSimilarity = "cosine"
) -> torch.Tensor:
    """``B_a x B_b`` similarity of linked features by which minibatch anchors are chosen.

    ``"cosine"`` (the reference): cosine similarity. ``"euclidean"``:
    ``1 - ||p_a - p_b||^2 / (2 d)`` for ``d`` linked features, which ranks pairs by Euclidean
    distance on the cosine's scale (for z-scored features, whose squared norm is about
    ``d``, the two agree when both norms are ``sqrt(d)``), so weights added to it keep their
    meaning. Unlike the cosine it also compares how strongly each cell expresses its linked
    features, not only their proportions.
    """
    if kind == "cosine":
        return F.normalize(p_a, dim=1) @ F.normalize(p_b, dim=1).T
    if kind == "euclidean":
        return 1.0 - squared_distances(p_a, p_b) / (2.0 * p_a.shape[1])
    choices = " or ".join(repr(c) for c in get_args(AnchorSimilarity))
    raise ValueError(f"Unknown anchor similarity {kind!r}; choose {choices}.")


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
    local_k: int = 0,
    similarity: AnchorSimilarity = "cosine",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor pairs of a minibatch: mutual nearest neighbours of
    ``s(P) + b * bridge + w * cos(z)``.

    ``s(P)`` compares the linked features ``p_a``, ``p_b`` (:func:`linked_similarity` of kind
    ``similarity``). With ``latent_weight`` 0 and no ``bridge`` only they choose anchors (the
    reference, with the cosine); with ``w > 0`` the current latent codes help; with bridge
    features ``(B_a, B_b)`` (similarity of each cell to paired landmark cells, ``_bridge.py``)
    their cosine similarity, centred and scaled to the spread of ``s(P)`` so that ``b`` means
    the same on any data, helps too. ``local_k``: see :func:`mutual_nearest_from_similarity`.
    """
    sim = linked_similarity(p_a, p_b, similarity)
    total = sim
    if bridge is not None and bridge_weight > 0:
        b_sim = F.normalize(bridge[0], dim=1) @ F.normalize(bridge[1], dim=1).T
        scale = sim.std() / b_sim.std().clamp_min(1e-12)
        total = total + bridge_weight * scale * (b_sim - b_sim.mean())
    if latent_weight > 0:
        total = total + latent_weight * (F.normalize(z_a, dim=1) @ F.normalize(z_b, dim=1).T)
    return mutual_nearest_from_similarity(total, k, local_k)


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

    Squared distances by :func:`squared_distances` (the matmul form).
    """
    return torch.exp(-squared_distances(x, x) / (2.0 * bandwidth))


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
