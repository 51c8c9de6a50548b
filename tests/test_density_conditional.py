import argparse
import math
import warnings

import numpy as np
import pytest
import torch

import nce
from nce.cli import density as density_cli
from nce.cli._table import InputError
from nce.density import ConvergenceWarning, NCEDensity
from nce.density.conditional import AUTO_LOSS_FRACTION, auto_noise_scale
from nce.models import ConditionalMLPEnergy, GaussianEnergy

from conftest import randn


def log_phi(u):
    """An unnormalized, non-Gaussian log density of rows u (..., 2)."""
    return -0.5 * u.square().sum(-1) + torch.cos(2 * u[..., 0]) * u[..., 1]


def gaussian_kernel(sigma):
    return lambda y, x: torch.distributions.Normal(x, sigma).log_prob(y).sum(-1)


def laplace_kernel(scale):
    return lambda y, x: torch.distributions.Laplace(x, scale).log_prob(y).sum(-1)


def reference(log_data, log_noise, x, y, log_kernel):
    """Ceylan & Gutmann (2018), eq. 7 over 2: the general logit G(x, y) = log phi(x) - log phi(y)
    + log p_c(y | x) - log p_c(x | y), one term at a time."""
    n, kappa = log_noise.shape
    total = 0.0
    for i in range(n):
        for j in range(kappa):
            g = (
                log_data[i]
                - log_noise[i, j]
                + log_kernel(y[i, j], x[i])
                - log_kernel(x[i], y[i, j])
            )
            total = total + torch.log1p(torch.exp(-g))
    return total / (n * kappa)


def points(n=5, kappa=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=dtype)
    y = x[:, None, :] + 0.5 * torch.randn(n, kappa, 2, generator=g, dtype=dtype)
    return x, y


@pytest.mark.parametrize(
    "kernel", [gaussian_kernel(0.3), gaussian_kernel(2.0), laplace_kernel(0.7)]
)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_loss_matches_the_paper_for_any_symmetric_noise_density(kernel, dtype, tol):
    # The noise densities cancel: the same loss whichever symmetric kernel drew the points.
    x, y = points(dtype=dtype)
    log_data = log_phi(x).requires_grad_()
    log_noise = log_phi(y).requires_grad_()
    got = nce.conditional_nce(log_data, log_noise)
    leaves = [log_data.detach().double().requires_grad_(), log_noise.detach().double()]
    leaves[1].requires_grad_()
    want = reference(*leaves, x.double(), y.double(), kernel)
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    grads = torch.autograd.grad(got, (log_data, log_noise))
    for a, b in zip(grads, torch.autograd.grad(want, leaves), strict=True):
        torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol)


def test_an_asymmetric_noise_would_not_cancel():
    # The reference can fail: a kernel whose log ratio is not 0 changes the loss.
    x, y = points()
    shifted = lambda y_, x_: torch.distributions.Normal(x_ + 0.5, 1.0).log_prob(y_).sum(-1)  # noqa: E731
    got = nce.conditional_nce(log_phi(x), log_phi(y))
    assert abs(float(got) - float(reference(log_phi(x), log_phi(y), x, y, shifted))) > 1e-3


def test_reductions_and_shift_invariance():
    a, b = randn(6, seed=1), randn(6, 4, seed=2)
    per = nce.conditional_nce(a, b, reduction="none")
    assert per.shape == (6,)
    torch.testing.assert_close(per.mean(), nce.conditional_nce(a, b))
    torch.testing.assert_close(per.sum(), nce.conditional_nce(a, b, reduction="sum"))
    # A log-partition (any constant added to every log density) cancels.
    torch.testing.assert_close(nce.conditional_nce(a - 3.7, b - 3.7), nce.conditional_nce(a, b))
    # Indistinguishable pairs: log 2.
    same = nce.conditional_nce(a.detach(), a.detach()[:, None].expand(6, 4))
    assert abs(float(same) - math.log(2)) < 1e-12


def test_gradcheck_and_half_precision():
    assert torch.autograd.gradcheck(
        lambda a, b: nce.conditional_nce(a, b, reduction="none"), (randn(3), randn(3, 2, seed=1))
    )
    half = nce.conditional_nce(randn(4).half(), randn(4, 2).half())
    assert half.dtype == torch.float16 and torch.isfinite(half)


def test_loss_errors():
    with pytest.raises(ValueError, match="log_model_noise must be 2-D"):
        nce.conditional_nce(randn(4), randn(4))
    with pytest.raises(ValueError, match="batch mismatch"):
        nce.conditional_nce(randn(4), randn(3, 2))
    with pytest.raises(ValueError, match="reduction must be one of"):
        nce.conditional_nce(randn(4), randn(4, 2), reduction="avg")


# ----------------------------------------------------------------------------- the estimator


@pytest.fixture(scope="module")
def truth():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 3, generator=g, dtype=torch.float64)
    covariance = A @ A.T / 3 + 0.3 * torch.eye(3, dtype=torch.float64)
    scales = torch.tensor([0.5, 2.0, 10.0], dtype=torch.float64)
    covariance = covariance * torch.outer(scales, scales)
    mean = torch.tensor([3.0, -1.0, 20.0], dtype=torch.float64)
    return torch.distributions.MultivariateNormal(mean, covariance)


@pytest.fixture(scope="module")
def fitted(truth):
    X = truth.sample((4000,))
    est = NCEDensity(GaussianEnergy(3).double(), "conditional", progress=False, random_state=0)
    return est.fit(X), X


def test_gaussian_fit_recovers_mean_covariance_and_log_z(truth, fitted):
    est, X = fitted
    assert est.optimizer_ == "lbfgs" and est.converged_ and 0.05 < est.noise_scale_ < 2
    model = est.model_
    covariance = torch.linalg.inv(model.precision().detach())
    scale = truth.covariance_matrix.diagonal().sqrt()
    assert ((model.mean.detach() - truth.mean) / scale).abs().max() < 0.1
    assert ((covariance - truth.covariance_matrix) / torch.outer(scale, scale)).abs().max() < 0.1
    # No log Z was learned: it comes from importance sampling, and matches the closed form.
    assert abs(est.log_partition_ - float(model.true_log_partition().detach())) < 0.02
    X_test = truth.sample((2000,))
    assert float(truth.log_prob(X_test).mean() - est.score(X_test)) < 0.05


def test_log_ratio_and_partition_function_use_the_fitted_gaussian(fitted):
    est, X = fitted
    ratio = est.log_ratio(X[:5])
    torch.testing.assert_close(ratio, est.score_samples(X[:5]) - est.noise_.log_prob(X[:5]))
    check = est.partition_function(n_samples=20_000, random_state=1)
    assert abs(float(check.learned) - est.log_partition_) < 1e-9
    assert abs(float(check.difference)) < 0.05


def test_round_trip(tmp_path, fitted):
    est, X = fitted
    est.save(tmp_path / "c.pt")
    back = NCEDensity.load(tmp_path / "c.pt")
    assert back.noise == "conditional" and back.noise_scale is None
    assert back.noise_scale_ == est.noise_scale_ and back.log_partition_ == est.log_partition_
    torch.testing.assert_close(back.score_samples(X[:7]), est.score_samples(X[:7]))
    assert back.get_params()["noise"] == "conditional"


def test_given_scale_adam_fresh_noise_warns_when_epochs_run_out():
    X = torch.randn(300, 2, dtype=torch.float64) * torch.tensor([1.0, 5.0], dtype=torch.float64)
    est = NCEDensity(
        "mlp", "conditional", 4, noise_scale=0.3, optimizer="adam", epochs=2, patience=50,
        resample_noise=True, progress=False, random_state=0,
    )  # fmt: skip
    with pytest.warns(ConvergenceWarning, match="raise epochs"):
        est.fit(X)
    assert est.noise_scale_ == 0.3 and est.n_iter_ == 2 and len(est.validation_curve_) == 2
    assert np.isfinite(est.log_partition_)


def test_auto_scale_sets_the_starting_loss():
    x = torch.randn(500, 4, dtype=torch.float64)
    model = GaussianEnergy(4).double()
    g = torch.Generator().manual_seed(0)
    eps = auto_noise_scale(model, x, torch.ones(4, dtype=torch.float64), 10, g)
    e = torch.randn(500, 10, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        y = (x[:, None] + eps * e).reshape(-1, 4)
        loss = nce.conditional_nce(model(x), model(y).reshape(500, 10))
    assert abs(float(loss) / math.log(2) - AUTO_LOSS_FRACTION) < 0.03
    # For the standard normal, G ~ s z + s^2 / 2 with s = eps sqrt(D): eps about 1.2 / sqrt(D).
    assert 0.4 < eps < 0.8


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"noise_scale": 0}, ValueError, "noise_scale must be a finite number > 0, got 0"),
        ({"noise_scale": -1.0}, ValueError, "noise_scale must be a finite number > 0"),
        ({"noise_scale": "big"}, TypeError, "noise_scale must be a number, got str"),
        ({"noise_ratio": 2.5}, ValueError, "whole number >= 1 with noise='conditional'"),
        ({"noise": "gaussian", "noise_scale": 0.1}, ValueError,
         "noise_scale is only used with noise='conditional'.*noise = 'gaussian'"),
    ],
)  # fmt: skip
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        NCEDensity(**{"noise": "conditional", **kwargs})


def test_set_params_checks_the_pair_and_context_models_are_refused():
    est = NCEDensity(noise="conditional", noise_scale=0.2)
    with pytest.raises(ValueError, match="noise_scale is only used"):
        est.set_params(noise="box")
    assert est.set_params(noise="box", noise_scale=None).noise == "box"
    model = ConditionalMLPEnergy(2, context_dim=1, hidden=4)
    with pytest.raises(ValueError, match="takes a context"):
        NCEDensity(model, "conditional", progress=False).fit(torch.randn(20, 2), torch.randn(20, 1))


def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="nce density")
    density_cli.add_arguments(parser)
    return density_cli.run(parser.parse_args(list(argv)))


def test_cli_conditional_fit(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "data.csv"
    rows = rng.normal(size=(200, 3)) @ np.triu(np.ones((3, 3)))
    data.write_text("a,b,c\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows))
    out = tmp_path / "m.pt"
    args = ("fit", str(data), "--model", "gaussian", "--noise", "conditional", "--no-progress")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        code = run_cli(*args, "--noise-scale", "0.25", "--is-samples", "5000", "-o", str(out))
    assert code == 0
    text = capsys.readouterr().out
    assert "importance-sampled after the conditional fit (noise scale 0.25" in text
    assert NCEDensity.load(out).noise_scale_ == 0.25
    with pytest.raises(InputError, match="--noise-scale is only used with --noise conditional"):
        run_cli("fit", str(data), "--noise-scale", "0.2", "-o", str(tmp_path / "x.pt"))
    with pytest.raises(InputError, match="--noise-scale must be a finite number > 0, got 0"):
        run_cli(*args, "--noise-scale", "0", "-o", str(tmp_path / "x.pt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "m.pt"]


class NaNEnergy(nce.models.EnergyModel):
    def forward(self, x):
        return x.sum(1) * math.nan


def test_a_model_not_finite_at_its_start_is_bad_input():
    with pytest.raises(ValueError, match="starting point, while choosing noise_scale"):
        NCEDensity(NaNEnergy(2), "conditional", progress=False).fit(torch.randn(30, 2))
    with pytest.raises(ValueError, match="starting point, before any training step"):
        NCEDensity(
            NaNEnergy(2), "conditional", noise_scale=0.1, validation_fraction=0, progress=False
        ).fit(torch.randn(30, 2))


def test_waymarks_need_a_noise_distribution():
    with pytest.raises(ValueError, match="waymarks bridge the data and a noise distribution"):
        NCEDensity(noise="conditional", waymarks=2)


def test_noise_ratio_auto_draws_a_whole_number_around_each_datum():
    X = torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    est = NCEDensity(
        "gaussian", "conditional", noise_ratio="auto", noise_scale=0.3, epochs=2, progress=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
    assert est.noise_ratio_ == pytest.approx(20_000 / 360)
    assert np.isfinite(est.log_partition_)
