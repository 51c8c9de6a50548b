import math

import pytest
import torch

from nce.models import ConditionalMLPEnergy, EnergyModel, GaussianEnergy, ICAEnergy, MLPEnergy


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


# ------------------------------------------------------------------------ ICA, MLP, conditional


def _grid_log_integral(f, half_width, points):
    grid = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    with torch.no_grad():
        values = f(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1))
    return torch.logsumexp(values, 0) + 2 * torch.log(grid[1] - grid[0])


def test_ica_energy_log_partition_matches_numerical_integral():
    model = ICAEnergy(2).double()
    with torch.no_grad():
        model.demixing.copy_(torch.tensor([[1.2, 0.4], [-0.3, 0.9]], dtype=torch.float64))
    numeric = _grid_log_integral(model, 30.0, 2401)
    closed = 0.5 * 2 * math.log(2) - math.log(abs(1.2 * 0.9 + 0.4 * 0.3))
    assert abs(model.true_log_partition().item() - closed) < 1e-12
    assert abs(numeric.item() - closed) < 2e-3


def test_ica_energy_is_product_of_unit_variance_laplace_sources():
    torch.manual_seed(0)
    model = ICAEnergy(4).double()
    with torch.no_grad():
        model.demixing.copy_(torch.randn(4, 4, dtype=torch.float64) + 3 * torch.eye(4))
        model.log_z.copy_(model.true_log_partition())
    x = torch.randn(6, 4, dtype=torch.float64)
    laplace = torch.distributions.Laplace(0.0, 1 / math.sqrt(2))
    s = x @ model.demixing.detach().T
    reference = laplace.log_prob(s).sum(1) + torch.linalg.slogdet(model.demixing.detach())[1]
    torch.testing.assert_close(model.log_prob(x), reference)
    assert math.isclose(laplace.variance.item(), 1.0, rel_tol=1e-6)


def test_ica_init_from_data_whitens():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(5000, 3, generator=g, dtype=torch.float64) @ torch.tensor(
        [[2.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.3, 0.5]], dtype=torch.float64
    )
    model = ICAEnergy(3).double().init_from_data(X)
    white = X @ model.demixing.detach().T
    # Whitened up to the covariance's relative ridge of 1e-6.
    torch.testing.assert_close(
        torch.cov(white.T), torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-5
    )
    assert math.isclose(model.log_z.item(), model.true_log_partition().item())


def test_mlp_energy_is_bounded_network_on_a_gaussian_and_integrable():
    torch.manual_seed(0)
    model = MLPEnergy(2, hidden=(16, 16)).double()
    x = torch.randn(7, 2, dtype=torch.float64)
    # The last layer starts at zero: the untrained model is the standard normal's energy.
    torch.testing.assert_close(model(x), -0.5 * x.square().sum(1))
    with torch.no_grad():
        for p in model.net.parameters():
            p.normal_(0.0, 1.0)
    last = model.net[-1]
    bound = float((last.weight.abs().sum() + last.bias.abs()).detach())
    far = 1e3 * torch.randn(100, 2, dtype=torch.float64)
    with torch.no_grad():
        h = model(far) + 0.5 * model.whiten(far).square().sum(1)
    assert bool((h.abs() <= bound + 1e-9).all())
    numeric = _grid_log_integral(model, 12.0, 801)
    assert math.isfinite(numeric.item())
    assert abs(numeric.item() - math.log(2 * math.pi)) <= bound + 1e-6


def test_mlp_init_from_data_matches_data_gaussian():
    g = torch.Generator().manual_seed(1)
    X = 3.0 + 2.0 * torch.randn(4000, 2, generator=g, dtype=torch.float64)
    model = MLPEnergy(2, hidden=8).double().init_from_data(X)
    reference = torch.distributions.MultivariateNormal(X.mean(0), torch.cov(X.T))
    torch.testing.assert_close(model.log_prob(X[:5]), reference.log_prob(X[:5]), atol=1e-5, rtol=0)
    assert model.config() == {"dim": 2, "hidden": [8]}
    assert MLPEnergy(**model.config()).hidden == (8,)


def test_conditional_energy_log_partition_depends_on_context():
    torch.manual_seed(0)
    model = ConditionalMLPEnergy(2, context_dim=3, hidden=(8,))
    with torch.no_grad():
        model.log_z_net[-1].weight.normal_()
    x, c = torch.randn(5, 2), torch.randn(5, 3)
    log_z = model.log_partition(c)
    assert log_z.shape == (5,) and log_z.std() > 0
    torch.testing.assert_close(model.log_prob(x, c), model(x, c) - log_z)
    assert model.conditional and not MLPEnergy(2).conditional
    assert ConditionalMLPEnergy(**model.config()).context_dim == 3


def test_energy_models_bad_input():
    with pytest.raises(ValueError, match="x has 3 columns but the model has dimension 4"):
        ICAEnergy(4)(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="hidden must be an int or a non-empty tuple"):
        MLPEnergy(2, hidden=())
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        MLPEnergy(2, hidden=(8, 0))
    with pytest.raises(ValueError, match="context_dim must be >= 1"):
        ConditionalMLPEnergy(2, context_dim=0)
    model = ConditionalMLPEnergy(2, context_dim=3, hidden=4)
    with pytest.raises(ValueError, match=r"is conditional: a context of shape \(N, 3\)"):
        model(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="context has 2 columns but the model has context"):
        model(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"batch mismatch: x has shape \(4, 2\) but context"):
        model(torch.zeros(4, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="GaussianEnergy is unconditional but a context"):
        GaussianEnergy(2).log_prob(torch.zeros(4, 2), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="X needs at least 2 rows"):
        GaussianEnergy(2).init_from_data(torch.zeros(1, 2))
    assert isinstance(MLPEnergy(2), EnergyModel)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["gaussian", "ica", "mlp", "conditional"])
def test_far_points_give_minus_infinity_or_finite_never_nan(name, dtype):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 2, generator=g, dtype=dtype) @ torch.tensor(
        [[1.0, 0.0], [-0.8, 0.6]], dtype=dtype
    )
    model = {
        "gaussian": lambda: GaussianEnergy(2),
        "ica": lambda: ICAEnergy(2),
        "mlp": lambda: MLPEnergy(2, hidden=8),
        "conditional": lambda: ConditionalMLPEnergy(2, context_dim=1, hidden=8),
    }[name]().to(dtype)
    model.init_from_data(X)
    big = torch.finfo(dtype).max
    far = torch.tensor(
        [[0.0, 0.0], [1e10, 0.0], [big / 4, -big / 4], [big, big], [-big, big], [1e-30, big]],
        dtype=dtype,
    )
    args = (far, torch.zeros(far.shape[0], 1, dtype=dtype)) if name == "conditional" else (far,)
    with torch.no_grad():
        values = model(*args)
    assert not values.isnan().any(), values
    assert values[0].isfinite() and (values[1:] < values[0]).all() and values[3] == -math.inf
    # Rows that did not overflow are computed exactly as before the scaling.
    near = X[:5] * 1e3
    args = (near, torch.zeros(5, 1, dtype=dtype)) if name == "conditional" else (near,)
    with torch.no_grad():
        if name == "ica":
            plain = -math.sqrt(2) * (near @ model.demixing.T).abs().sum(1)
        else:
            z = model.whiten(near)
            inputs = z if name != "conditional" else torch.cat([z, args[1]], 1)
            plain = model.net(inputs).squeeze(-1) if name in ("mlp", "conditional") else 0
            plain = plain - 0.5 * z.square().sum(1)
        torch.testing.assert_close(model(*args), plain, rtol=0, atol=0)
