import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scmosaic.model._losses import (
    anchor_loss,
    discriminator_loss,
    gaussian_kernel,
    geometric_loss,
    linked_similarity,
    mutual_nearest_neighbors,
    select_anchors,
)


def test_mnn_hand_made():
    p_a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    p_b = torch.tensor([[0.0, 2.0], [3.0, 0.1]])
    idx_a, idx_b = mutual_nearest_neighbors(p_a, p_b, k=1)
    assert sorted(zip(idx_a.tolist(), idx_b.tolist(), strict=True)) == [(0, 1), (1, 0)]
    # k larger than the batch: everything is mutual
    idx_a, _ = mutual_nearest_neighbors(p_a, p_b, k=30)
    assert idx_a.numel() == 6


def test_mnn_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    p_a, p_b, k = torch.randn(40, 5, generator=g), torch.randn(30, 5, generator=g), 4
    cos = torch.nn.functional.cosine_similarity(p_a[:, None], p_b[None], dim=2)
    knn_a = {(i, j) for i in range(40) for j in cos[i].argsort(descending=True)[:k].tolist()}
    knn_b = {(i, j) for j in range(30) for i in cos[:, j].argsort(descending=True)[:k].tolist()}
    idx_a, idx_b = mutual_nearest_neighbors(p_a, p_b, k)
    assert set(zip(idx_a.tolist(), idx_b.tolist(), strict=True)) == knn_a & knn_b


def test_euclidean_similarity_ranks_by_distance_on_the_cosine_scale():
    g = torch.Generator().manual_seed(0)
    p_a, p_b = torch.randn(30, 6, generator=g), torch.randn(20, 6, generator=g)
    euclidean = linked_similarity(p_a, p_b, "euclidean")
    torch.testing.assert_close(euclidean, 1 - torch.cdist(p_a, p_b).pow(2) / 12, atol=1e-5, rtol=0)
    # rows of norm sqrt(d): the same values as the cosine
    u_a = torch.nn.functional.normalize(p_a, dim=1) * 6**0.5
    u_b = torch.nn.functional.normalize(p_b, dim=1) * 6**0.5
    torch.testing.assert_close(
        linked_similarity(u_a, u_b, "euclidean"), linked_similarity(u_a, u_b), atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="Unknown anchor similarity 'manhattan'"):
        linked_similarity(p_a, p_b, "manhattan")


def test_euclidean_anchors_tell_apart_what_the_cosine_cannot():
    """Two cells of b with the same direction but different strength of their linked
    features: the cosine pairs both with each cell of a, the Euclidean similarity pairs each
    with the cell of a of its own strength."""
    p_a = torch.tensor([[1.0, 1.0], [3.0, 3.0]])
    p_b = torch.tensor([[3.1, 2.9], [0.9, 1.1]])
    z = torch.zeros(2, 2)
    pairs = {}
    for kind in ("cosine", "euclidean"):
        idx_a, idx_b = select_anchors(p_a, p_b, z, z, 1, similarity=kind)
        pairs[kind] = sorted(zip(idx_a.tolist(), idx_b.tolist(), strict=True))
    assert pairs["euclidean"] == [(0, 1), (1, 0)]
    assert pairs["cosine"] != pairs["euclidean"]


def test_anchor_loss_empty_is_zero_not_nan():
    z_a = torch.randn(5, 3, requires_grad=True)
    empty = torch.zeros(0, dtype=torch.long)
    loss = anchor_loss(z_a, torch.randn(4, 3), empty, empty)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z_a.grad).all()


def test_anchor_loss_value():
    z_a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    z_b = torch.tensor([[1.0, 3.0]])
    loss = anchor_loss(z_a, z_b, torch.tensor([0, 1]), torch.tensor([0, 0]))
    assert loss.item() == pytest.approx(((1 + 9) / 2 + (0 + 4) / 2) / 2)


def test_gaussian_kernel_matches_broadcast():
    x = torch.randn(20, 7, dtype=torch.float64)
    brute = torch.exp(-((x[:, None] - x[None]) ** 2).sum(-1) / (2 * 7))
    torch.testing.assert_close(gaussian_kernel(x, 7.0), brute)


def test_geometric_loss_identical_geometry_hits_clamp():
    x = torch.randn(15, 4)
    loss = geometric_loss(gaussian_kernel(x, 4.0), x, max_similarity=0.975)
    assert loss.item() == pytest.approx(-0.975)
    loss_free = geometric_loss(gaussian_kernel(x, 4.0), x, max_similarity=1.0)
    assert loss_free.item() == pytest.approx(-1.0, abs=1e-6)


def test_discriminator_loss_values_and_clamp():
    zero = torch.zeros(3)
    assert discriminator_loss(zero, zero).item() == pytest.approx(
        2 * torch.log(torch.tensor(2.0)).item()
    )
    huge = torch.full((3,), 1e4)
    # clamped at 50: softplus(50) = 50
    assert discriminator_loss(-huge, huge).item() == pytest.approx(100.0, rel=1e-6)


def test_mnn_from_similarity_hand_made():
    from scmosaic.model._losses import mutual_nearest_from_similarity

    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.7], [0.0, 0.6, 0.5]])
    idx_a, idx_b = mutual_nearest_from_similarity(sim, k=1)
    # row maxima: 0->0, 1->0, 2->1; column maxima: 0->0, 1->2, 2->1
    assert sorted(zip(idx_a.tolist(), idx_b.tolist(), strict=True)) == [(0, 0), (2, 1)]


def _mutual_pairs_oracle(sim, k: int, local_k: int) -> set[tuple[int, int]]:
    """Set-based oracle of mutual_nearest_from_similarity (distinct similarities)."""
    n_a, n_b = len(sim), len(sim[0])

    def mutual(kk):
        top_a = [set(sorted(range(n_b), key=lambda j: -sim[i][j])[:kk]) for i in range(n_a)]
        top_b = [set(sorted(range(n_a), key=lambda i: -sim[i][j])[:kk]) for j in range(n_b)]
        return {(i, j) for i in range(n_a) for j in range(n_b) if j in top_a[i] and i in top_b[j]}

    wide = mutual(k)
    if not 0 < local_k < k:
        return wide
    close = mutual(local_k)
    covered_a, covered_b = {i for i, _ in close}, {j for _, j in close}
    return close | {(i, j) for i, j in wide if i not in covered_a and j not in covered_b}


def test_local_k_keeps_close_partners_only_where_a_cell_has_them():
    from scmosaic.model._losses import mutual_nearest_from_similarity

    sim = torch.tensor([[0.3, 0.7, 0.5, 1.1], [1.0, 0.9, 0.8, 0.1], [0.2, 0.0, 0.6, 0.4]])

    def pairs(**kwargs):
        idx_a, idx_b = mutual_nearest_from_similarity(sim, k=2, **kwargs)
        return set(zip(idx_a.tolist(), idx_b.tolist(), strict=True))

    assert pairs() == {(0, 1), (0, 3), (1, 0), (1, 1), (2, 2), (2, 3)}
    # a0-b3 and a1-b0 are each other's closest cells: they keep only those pairs. a2 has no
    # partner at k=1, so it keeps its k=2 pair with b2, but not with b3 (which has a0).
    assert pairs(local_k=1) == {(0, 3), (1, 0), (2, 2)}
    assert pairs(local_k=2) == pairs() == pairs(local_k=5)


@given(
    n_a=st.integers(1, 7),
    n_b=st.integers(1, 7),
    k=st.integers(1, 6),
    local_k=st.integers(0, 7),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=150, deadline=None)
def test_local_k_matches_the_oracle(n_a, n_b, k, local_k, seed):
    from scmosaic.model._losses import mutual_nearest_from_similarity

    generator = torch.Generator().manual_seed(seed)
    # distinct similarities, so top-k lists have no ties
    sim = torch.randperm(n_a * n_b, generator=generator).reshape(n_a, n_b).float()
    idx_a, idx_b = mutual_nearest_from_similarity(sim, k, local_k)
    got = set(zip(idx_a.tolist(), idx_b.tolist(), strict=True))
    assert len(got) == idx_a.numel()
    assert got == _mutual_pairs_oracle(sim.tolist(), k, local_k)
