import pytest
import torch

from scmosaic.model._losses import (
    anchor_loss,
    discriminator_loss,
    gaussian_kernel,
    geometric_loss,
    mutual_nearest_neighbors,
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
