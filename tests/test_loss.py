"""Multi-positive Barlow Twins: equals the paper with singleton groups, invariances, gradients, learning."""

from __future__ import annotations

import torch

from spotifai.loss import barlow_twins_loss, cross_correlation, playlist_and_track_loss


def _paper_loss(z_a: torch.Tensor, z_b: torch.Tensor, lambd: float) -> torch.Tensor:
    """Zbontar et al. (2021), Eq. 1-2: C_ij = sum_b za_bi zb_bj / (sqrt(sum_b za_bi^2) sqrt(sum_b zb_bj^2))
    on mean-centred embeddings; L = sum_i (1 - C_ii)^2 + lambd sum_i sum_{j != i} C_ij^2.  Written with loops over
    dimensions, in float64, independently of the implementation."""
    a = (z_a - z_a.mean(0)).double()
    b = (z_b - z_b.mean(0)).double()
    d = a.shape[1]
    loss = torch.zeros((), dtype=torch.float64)
    for i in range(d):
        for j in range(d):
            c = (a[:, i] * b[:, j]).sum() / (a[:, i].pow(2).sum().sqrt() * b[:, j].pow(2).sum().sqrt())
            loss = loss + ((1 - c) ** 2 if i == j else lambd * c**2)
    return loss


def test_singleton_groups_equal_standard_barlow_twins():
    torch.manual_seed(0)
    for n, d in [(16, 6), (7, 3), (40, 10)]:
        z_a, z_b = torch.randn(n, d) * 3 + 1, torch.randn(n, d) * 0.5 - 2
        z_b[:, 0] += z_a[:, 0]  # some correlation
        ours = barlow_twins_loss(z_a, z_b, torch.arange(n), lambd=0.05, eps=0.0)
        assert torch.allclose(ours.double(), _paper_loss(z_a, z_b, 0.05), rtol=1e-4, atol=1e-5)


def test_group_average_matches_explicit_W():
    torch.manual_seed(1)
    n, d = 12, 5
    z_a, z_b = torch.randn(n, d), torch.randn(n, d)
    groups = torch.tensor([7, 7, 7, 2, 2, 9, 3, 3, 3, 3, 9, 100])
    one_hot = (groups[:, None] == groups.unique()[None, :]).float()  # G (n, k)
    w = one_hot @ torch.diag(1 / one_hot.sum(0)) @ one_hot.T
    a = (z_a - z_a.mean(0)) / z_a.std(0, unbiased=False)
    b = (z_b - z_b.mean(0)) / z_b.std(0, unbiased=False)
    expected = a.T @ w @ b / n
    assert torch.allclose(cross_correlation(z_a, z_b, groups, eps=0.0), expected, atol=1e-5)
    # ... = average over all positive pairs, each anchor row weighted equally
    pairs = (
        sum(
            torch.outer(a[i], b[j]) / (groups == groups[i]).sum()
            for i in range(n)
            for j in range(n)
            if groups[i] == groups[j]
        )
        / n
    )
    assert torch.allclose(expected, pairs, atol=1e-5)


def test_permutation_invariance():
    torch.manual_seed(2)
    n, d = 24, 8
    z_a, z_b = torch.randn(n, d), torch.randn(n, d)
    groups = torch.arange(n) // 4
    base = barlow_twins_loss(z_a, z_b, groups)
    # permute rows within each group, independently for the two views
    perm_a = torch.cat([torch.randperm(4) + 4 * g for g in range(6)])
    perm_b = torch.cat([torch.randperm(4) + 4 * g for g in range(6)])
    assert torch.allclose(barlow_twins_loss(z_a[perm_a], z_b[perm_b], groups), base, atol=1e-5)
    # permute whole rows (groups travel with their rows) and relabel the groups
    perm = torch.randperm(n)
    relabel = torch.tensor([50, 3, 11, 0, 7, 42])
    assert torch.allclose(barlow_twins_loss(z_a[perm], z_b[perm], relabel[groups[perm]]), base, atol=1e-5)
    # but mixing rows across groups changes it
    assert not torch.allclose(barlow_twins_loss(z_a, z_b[torch.randperm(n)], groups), base, atol=1e-5)


def test_finite_gradients_tiny_and_large():
    torch.manual_seed(3)
    for n, d, k in [(2, 4, 1), (2, 4, 2), (4096, 512, 256)]:
        z_a = torch.randn(n, d, requires_grad=True)
        z_b = torch.randn(n, d, requires_grad=True)
        loss = barlow_twins_loss(z_a, z_b, torch.arange(n) % k)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z_a.grad).all() and torch.isfinite(z_b.grad).all()
    # constant columns (zero variance) stay finite thanks to eps
    z = torch.ones(3, 4, requires_grad=True)
    loss = barlow_twins_loss(z, z * 2, torch.tensor([0, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_bf16_inputs_give_float32_loss():
    z = torch.randn(8, 4).bfloat16()
    assert barlow_twins_loss(z, z, torch.arange(8) // 2).dtype == torch.float32


def test_optimizer_steps_lower_the_loss():
    """Toy problem: 8 groups of 6 noisy samples around a group centre; a linear projector learns group-invariance."""
    torch.manual_seed(4)
    groups = torch.arange(48) // 6
    centres = torch.randn(8, 16)
    x_a = centres[groups] + 0.3 * torch.randn(48, 16)
    x_b = centres[groups] + 0.3 * torch.randn(48, 16)
    proj = torch.nn.Linear(16, 8)
    opt = torch.optim.Adam(proj.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = barlow_twins_loss(proj(x_a), proj(x_b), groups)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_playlist_and_track_loss_adds_the_standard_barlow_twins_term():
    g = torch.Generator().manual_seed(3)
    z_a, z_b = torch.randn(12, 6, generator=g), torch.randn(12, 6, generator=g)
    groups = torch.arange(12) // 4
    playlist = barlow_twins_loss(z_a, z_b, groups)
    track = barlow_twins_loss(z_a, z_b, torch.arange(12))
    assert torch.equal(playlist_and_track_loss(z_a, z_b, groups, 0.0), playlist)
    assert torch.allclose(playlist_and_track_loss(z_a, z_b, groups, 0.5), playlist + 0.5 * track)
    # the track term is the per-row (standard) loss: shuffling rows of one view inside a group changes it
    perm = torch.tensor([1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    assert torch.allclose(barlow_twins_loss(z_a, z_b[perm], groups), playlist, atol=1e-5)
    assert not torch.allclose(playlist_and_track_loss(z_a, z_b[perm], groups, 1.0), playlist + track, atol=1e-5)
