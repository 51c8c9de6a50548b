"""The Gaussian-start critic of estimate_mi: CCA fit, closed-form log-ratio, zero residual."""

import math

import numpy as np
import pytest
import torch

from nce.mi import estimate_mi
from nce.mi.critics import build_critic
from nce.mi.gaussian_critic import (
    GaussianCritic,
    GaussianSeparableCritic,
    canonical_pairs,
    choose_pairs,
    noise_edge,
)


def gaussian_pairs(n, d, mi, seed):
    rho = math.sqrt(1 - math.exp(-2 * mi / d))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, rho * x + math.sqrt(1 - rho**2) * torch.randn(n, d, generator=g, dtype=torch.float64)


def log_ratio_reference(x, y, cov):
    """log N((x, y); 0, cov) - log N(x; 0, cov_xx) - log N(y; 0, cov_yy), float64, row by row."""
    dx = x.shape[1]

    def log_normal(u, c):
        return torch.distributions.MultivariateNormal(
            torch.zeros(len(c), dtype=c.dtype), c
        ).log_prob(u)

    joint = log_normal(torch.cat([x, y], 1), cov)
    return joint - log_normal(x, cov[:dx, :dx]) - log_normal(y, cov[dx:, dx:])


def test_noise_edge_is_wachters_upper_edge():
    p, q = 3 / 100, 5 / 100
    assert noise_edge(3, 5, 100) == pytest.approx(
        (math.sqrt(p * (1 - q)) + math.sqrt(q * (1 - p))) ** 2
    )
    assert noise_edge(60, 50, 100) == 1.0


def test_canonical_pairs_recover_the_correlations_and_whiten():
    x, y = gaussian_pairs(20_000, 3, 1.5, 0)
    rho, a, b, mean_x, mean_y = canonical_pairs(x, y)
    expected = math.sqrt(1 - math.exp(-2 * 1.5 / 3))
    assert rho.shape == (3,) and torch.allclose(
        rho, torch.full((3,), expected, dtype=rho.dtype), atol=0.01
    )
    u, v = (x - mean_x) @ a.T, (y - mean_y) @ b.T
    n = x.shape[0]
    assert torch.allclose(u.T @ u / n, torch.eye(3, dtype=u.dtype), atol=1e-8)
    assert torch.allclose(v.T @ v / n, torch.eye(3, dtype=v.dtype), atol=1e-8)
    assert torch.allclose(u.T @ v / n, torch.diag(rho), atol=1e-8)


def test_gaussian_critic_matches_the_closed_form_log_ratio_in_float64():
    # two canonical pairs of correlations 0.8 and 0.5 seen through rotations of x and of y (one
    # sign flipped): the critic with those projections scores the log-ratio of the three densities
    rho = torch.tensor([0.8, 0.5], dtype=torch.float64)
    rot_x = torch.linalg.qr(torch.randn(2, 2, generator=torch.Generator().manual_seed(2)).double())[
        0
    ]
    rot_y = torch.linalg.qr(torch.randn(2, 2, generator=torch.Generator().manual_seed(3)).double())[
        0
    ]
    flip = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    cross = rot_x @ torch.diag(rho) @ flip @ rot_y.T  # cov(x, y) for x = rot_x u, y = rot_y flip v
    cov = torch.eye(4, dtype=torch.float64)
    cov[:2, 2:], cov[2:, :2] = cross, cross.T
    critic = GaussianCritic(2, 2).double()
    critic.keep(2, {"project_x": rot_x.T, "project_y": (rot_y @ flip).T, "z": torch.atanh(rho)})
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(6, 2, generator=g).double(), torch.randn(5, 2, generator=g).double()
    scores = critic(x, y)
    assert scores.shape == (6, 5)
    pairs = torch.cat([x.repeat_interleave(5, 0), y.repeat(6, 1)], 1)
    expected = log_ratio_reference(pairs[:, :2], pairs[:, 2:], cov).reshape(6, 5)
    assert torch.allclose(scores, expected, atol=1e-10)


def test_fitted_critic_approaches_the_true_log_ratio():
    g = torch.Generator().manual_seed(2)
    m = torch.randn(4, 4, generator=g, dtype=torch.float64)
    cov = m @ m.T + 4 * torch.eye(4, dtype=torch.float64)
    z = torch.randn(200_000, 4, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    critic = GaussianCritic(2, 2).double().initialize(z[:, :2], z[:, 2:])
    x, y = z[:50, :2], z[:50, 2:]
    pairs = torch.cat([x.repeat_interleave(50, 0), y.repeat(50, 1)], 1)
    expected = log_ratio_reference(pairs[:, :2], pairs[:, 2:], cov).reshape(50, 50)
    assert float((critic(x, y) - expected).abs().mean()) < 0.02


@pytest.mark.parametrize(("rank", "weak"), [(1, False), (20, True)])
def test_choose_pairs_keeps_a_low_rank_dependence_alone_and_a_weak_full_one_whole(rank, weak):
    from nce.mi.estimators import get_estimator
    from nce.mi.train import held_out_bound

    g = torch.Generator().manual_seed(rank)
    rho = 0.3 if weak else 0.9
    x = torch.randn(3000, 20, generator=g)
    y = torch.randn(3000, 20, generator=g)
    y[:, :rank] = rho * x[:, :rank] + math.sqrt(1 - rho**2) * y[:, :rank]
    critic = GaussianCritic(20, 20).initialize(x[:2000], y[:2000])
    record = get_estimator("infonce")
    kept = choose_pairs(
        critic, lambda: held_out_bound(critic, record, x[2000:], y[2000:], 5.0), 2000
    )
    assert len(critic.z) == kept
    assert kept == 1 if not weak else kept >= 16


def test_gaussian_separable_critic_starts_at_its_gaussian_part_and_trains_both():
    x, y = gaussian_pairs(500, 3, 1.0, 3)
    critic = GaussianSeparableCritic(3, 3, hidden=8).initialize(x.float(), y.float())
    xs, ys = x[:7].float(), y[:9].float()
    assert torch.equal(critic(xs, ys), critic.gaussian(xs, ys) + critic.residual.bias)
    critic(xs, ys).sum().backward()
    assert critic.gaussian.z.grad is not None and critic.residual.h.net[-1].weight.grad is not None
    assert isinstance(build_critic("gaussian-separable", 3, 3, hidden=8, layers=1, embed_dim=4),
                      GaussianSeparableCritic)  # fmt: skip


def test_default_estimate_in_20_dimensions_is_right_from_the_gaussian_start():
    # 20 + 20-D, I = 2 on 5000 rows, 50 training steps: the Gaussian start, measured before the
    # first step, is what puts the estimate near the truth (held-out se about 0.05)
    x, y = gaussian_pairs(5000, 20, 2.0, 4)
    est = estimate_mi(x.numpy(), y.numpy(), max_steps=50, random_state=0, progress=False)
    assert est.steps[0] == 0 and est.best_step == 0
    assert abs(est.value - 2.0) < 0.15


def test_heavy_tailed_dependence_without_correlation_is_learned_by_the_residual():
    # a shared chi-square scale: uncorrelated columns, so the Gaussian part keeps nothing, and
    # the residual must find the dependence
    rng = np.random.default_rng(5)
    z = rng.standard_normal((2000, 2)) / np.sqrt(rng.chisquare(1, size=(2000, 1)))
    est = estimate_mi(z[:, :1], z[:, 1:], max_steps=300, random_state=0, progress=False)
    assert est.best_step > 0 and est.value > 0.1
