import math

import pytest
import torch

from nce.models import GaussianEnergy


def test_gaussian_energy_log_partition_matches_numerical_integral():
    torch.manual_seed(0)
    model = GaussianEnergy(2).double()
    with torch.no_grad():
        model.mean.copy_(torch.tensor([0.3, -0.2]))
        model.log_diag.copy_(torch.tensor([0.2, -0.4]))
        model.lower.copy_(torch.tensor([[0.0, 0.0], [0.7, 0.0]]))
        grid = torch.linspace(-12, 12, 1201, dtype=torch.float64)
        gx, gy = torch.meshgrid(grid, grid, indexing="xy")
        f = model(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1))
        cell = (grid[1] - grid[0]) ** 2
        numeric = torch.logsumexp(f, 0) + torch.log(cell)
    assert abs((numeric - model.true_log_partition()).item()) < 1e-6


def test_gaussian_energy_normalized_when_log_z_is_true():
    model = GaussianEnergy(3).double()
    with torch.no_grad():
        model.log_z.copy_(model.true_log_partition())
    x = torch.randn(5, 3, dtype=torch.float64)
    reference = torch.distributions.MultivariateNormal(
        torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    )
    torch.testing.assert_close(model.log_prob(x), reference.log_prob(x))
    assert math.isclose(model.true_log_partition().item(), 1.5 * math.log(2 * math.pi))


def test_gaussian_energy_bad_input():
    model = GaussianEnergy(3)
    with pytest.raises(ValueError, match="x has 2 columns but the model has dimension 3"):
        model(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="x must be 2-D"):
        model(torch.zeros(3))
    with pytest.raises(ValueError, match="dim must be >= 1"):
        GaussianEnergy(0)
