"""NCEDensity's defaults: fits that converge from a model instance, log densities in the user's
units after the internal standardization, raw tables, and scikit-learn model selection."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from nce.density import ConvergenceWarning, NCEDensity
from nce.models import GaussianEnergy, MLPEnergy


def made_up_gaussian(dim: int, seed: int) -> torch.distributions.MultivariateNormal:
    """A correlated Gaussian with a mean away from the origin and column scales over e^{±2}."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    scales = torch.exp(torch.randn(dim, generator=g, dtype=torch.float64))
    covariance = (A @ A.T / dim + 0.3 * torch.eye(dim, dtype=torch.float64)) * torch.outer(
        scales, scales
    )
    mean = 3 * torch.randn(dim, generator=g, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(mean, covariance)


@pytest.mark.parametrize("dim", [2, 5])
def test_a_model_instance_converges_with_the_defaults(dim):
    truth = made_up_gaussian(dim, seed=dim)
    torch.manual_seed(dim)
    X, X_test = truth.sample((20_000,)), truth.sample((5_000,))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = NCEDensity(GaussianEnergy(dim).double(), progress=False, random_state=0).fit(X)
    assert est.converged_ and est.optimizer_ == "lbfgs"
    assert abs(float(truth.log_prob(X_test).mean()) - float(est.score(X_test))) < 0.02
    closed_form = float(est.model_.true_log_partition().detach())
    assert abs(est.log_partition_ - closed_form) < 0.05


def test_a_fit_that_runs_out_of_epochs_warns_once_naming_epochs():
    X = made_up_gaussian(3, seed=0).sample((2000,))
    with pytest.warns(ConvergenceWarning, match="raise epochs") as record:
        est = NCEDensity(MLPEnergy(3, hidden=(32, 32)).double(), epochs=1, progress=False).fit(X)
    assert len([w for w in record if w.category is ConvergenceWarning]) == 1
    assert not est.converged_ and est.n_iter_ == 1


def test_a_trained_instance_is_not_restarted_from_the_data():
    X = made_up_gaussian(2, seed=1).sample((500,))
    model = GaussianEnergy(2).double()
    model.load_state_dict({k: v + 0.5 for k, v in model.state_dict().items()})
    assert model.trained

    def refuse(_):
        raise AssertionError("init_from_data was called on a trained model")

    model.init_from_data = refuse
    NCEDensity(model, epochs=1, progress=False).fit(X)
    fresh = GaussianEnergy(2).double()
    NCEDensity(fresh, epochs=1, init="keep", progress=False)  # accepted
    with pytest.raises(ValueError, match="init must be one of"):
        NCEDensity(fresh, init="random")


def test_log_densities_stay_in_the_users_units():
    X = made_up_gaussian(3, seed=2).sample((3000,))
    scale = torch.tensor([1000.0, 1.0, 0.01], dtype=torch.float64)
    a = NCEDensity("gaussian", progress=False, random_state=0).fit(X)
    b = NCEDensity("gaussian", progress=False, random_state=0).fit(X * scale)
    log_det = float(scale.log().sum())
    torch.testing.assert_close(a.score_samples(X) - log_det, b.score_samples(X * scale))
    assert abs(a.log_partition_ + log_det - b.log_partition_) < 1e-6
    torch.testing.assert_close(a.log_ratio(X), b.log_ratio(X * scale))
    check = b.partition_function(n_samples=20_000, random_state=0)
    assert abs(float(check.difference)) < 0.02
    assert abs(b.log_partition_ - float(b.model_.true_log_partition().detach())) < 0.01


def test_raw_table_with_columns_of_very_different_units():
    datasets = pytest.importorskip("sklearn.datasets")
    X = datasets.load_breast_cancer().data  # areas in the thousands next to ratios near 0.1
    est = NCEDensity(progress=False, random_state=0).fit(X)
    assert isinstance(est.score_samples(X), np.ndarray)
    check = est.partition_function(n_samples=50_000, random_state=0)
    assert abs(float(check.difference)) < 0.1


def test_grid_search_selects_by_held_out_log_likelihood():
    model_selection = pytest.importorskip("sklearn.model_selection")
    base = pytest.importorskip("sklearn.base")
    X = made_up_gaussian(2, seed=3).sample((600,)).numpy()
    est = NCEDensity("gaussian", progress=False, random_state=0)
    clone = base.clone(est)
    assert clone.get_params() == est.get_params() and clone is not est
    search = model_selection.GridSearchCV(est, {"noise_ratio": [2, 10]}, cv=2).fit(X)
    assert search.best_params_["noise_ratio"] in (2, 10)
    assert np.isfinite(search.best_score_)
    assert isinstance(search.best_estimator_.score(X), float | np.floating)
    with pytest.raises(ValueError, match="invalid parameter"):
        est.set_params(learning_rate=1.0)
    with pytest.raises(ValueError, match="noise_ratio"):
        est.set_params(noise_ratio=-1)
    assert est.set_params(noise_ratio=5).noise_ratio == 5
