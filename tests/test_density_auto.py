"""NCEDensity's data-size defaults (nce.density.defaults): noise_ratio="auto", and the scikit-learn
side of a default fit (numpy in, numpy out; model selection over "auto")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nce.density import NCEDensity, defaults


def correlated(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    chol = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    return torch.randn(n, 2, generator=g, dtype=torch.float64) @ chol.T + 3.0


@pytest.mark.parametrize(
    ("n_train", "expected"), [(10, 2000.0), (200, 100.0), (2000, 10.0), (50_000, 10.0)]
)
def test_auto_noise_ratio_draws_at_least_20000_points_and_never_less_than_10(n_train, expected):
    assert defaults.noise_ratio("auto", n_train) == pytest.approx(expected)
    assert defaults.noise_ratio(3, n_train) == 3
    assert math.ceil(defaults.noise_ratio("auto", n_train) * n_train) >= min(
        defaults.AUTO_NOISE_SAMPLES, 10 * n_train
    )


def test_auto_noise_ratio_is_resolved_on_the_training_rows_and_kept_by_save(tmp_path):
    X = correlated(250)
    est = NCEDensity("gaussian", noise_ratio="auto", progress=False, random_state=0).fit(X)
    n_train = 250 - round(0.1 * 250)
    assert est.noise_ratio == "auto"  # the parameter stays as given, for clone and get_params
    assert est.noise_ratio_ == pytest.approx(20_000 / n_train)
    assert est.n_noise_samples_ == math.ceil(est.noise_ratio_ * n_train)
    assert abs(est.log_partition_ - float(est.model_.true_log_partition().detach())) < 0.02
    est.save(tmp_path / "d.pt")
    loaded = NCEDensity.load(tmp_path / "d.pt")
    assert loaded.noise_ratio_ == est.noise_ratio_ and loaded.noise_ratio == "auto"
    fixed = NCEDensity("gaussian", progress=False, random_state=0).fit(X)
    assert fixed.noise_ratio_ == 10 and fixed.n_noise_samples_ == 10 * n_train


def test_noise_ratio_takes_no_other_string():
    with pytest.raises(TypeError, match='noise_ratio must be a number, got str .*"auto"'):
        NCEDensity(noise_ratio="large")
    with pytest.raises(ValueError, match="noise_ratio must be a finite number > 0"):
        NCEDensity(noise_ratio=-1.0)


def test_numpy_in_numpy_out_and_grid_search_over_auto():
    model_selection = pytest.importorskip("sklearn.model_selection")
    X = correlated(300, seed=1).numpy()
    est = NCEDensity("gaussian", noise_ratio="auto", progress=False, random_state=0).fit(X)
    for values in (est.score_samples(X), est.log_ratio(X)):
        assert isinstance(values, np.ndarray) and values.shape == (300,)
    assert isinstance(est.score(X), float | np.floating)
    tensor = est.score_samples(torch.as_tensor(X))
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_allclose(tensor.numpy(), est.score_samples(X))
    search = model_selection.GridSearchCV(
        NCEDensity("gaussian", progress=False, random_state=0),
        {"noise_ratio": [2, "auto"]},
        cv=2,
    ).fit(X)
    assert search.best_params_["noise_ratio"] in (2, "auto")
    assert np.isfinite(search.best_score_)


def test_auto_optimizer_fits_networks_with_adam_and_small_models_without_one_with_lbfgs():
    from nce.models import GaussianEnergy, ICAEnergy, MLPEnergy

    assert defaults.optimizer("auto", GaussianEnergy(21)) == "lbfgs"  # 484 parameters
    assert defaults.optimizer("auto", ICAEnergy(22)) == "lbfgs"  # 485
    assert defaults.optimizer("auto", GaussianEnergy(22)) == "adam"  # 529
    assert defaults.optimizer("auto", MLPEnergy(2, hidden=(4,))) == "adam"
    assert defaults.optimizer("lbfgs", MLPEnergy(2, hidden=(4,))) == "lbfgs"


def test_a_default_fit_on_near_collinear_columns_keeps_its_log_partition():
    """A fourth column equal to the sum of two others up to 1e-7: an unregularized full-batch
    network grows a spike along it where no noise point lands, and its learned log Z falls
    far below the true one; the default fit stays within 0.1 of the sampled log Z."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(300, 3, generator=g, dtype=torch.float64)
    X = torch.cat([A, A[:, :1] + A[:, 1:2] + 1e-7 * torch.randn(300, 1, generator=g)], 1)
    est = NCEDensity(progress=False, random_state=0).fit(X.numpy())
    assert est.optimizer_ == "adam"
    check = est.partition_function(n_samples=50_000, random_state=0)
    assert abs(float(check.difference)) < 0.1
    assert np.isfinite(est.score_samples(X.numpy())).all()


@pytest.mark.parametrize(("n_train", "expected"), [(20, 32), (900, 90), (2560, 256), (10**6, 256)])
def test_auto_batch_size_gives_about_ten_adam_steps_per_epoch_within_32_and_256(n_train, expected):
    assert defaults.batch_size("auto", n_train) == expected
    assert defaults.batch_size(7, n_train) == 7


def test_auto_batch_size_is_resolved_on_the_training_rows():
    X = correlated(400)
    assert NCEDensity().batch_size == 256
    est = NCEDensity(batch_size="auto", epochs=1, progress=False, random_state=0)
    with pytest.warns(UserWarning, match="raise epochs"):
        est.fit(X)
    assert est.optimizer_ == "adam" and est.batch_size_ == 36  # ceil(360 / 10)
    with pytest.raises(TypeError, match="batch_size"):
        NCEDensity(batch_size="large")


def test_auto_resample_noise_is_fresh_for_adam_and_fixed_for_lbfgs():
    assert defaults.resample_noise("auto", "adam") is True
    assert defaults.resample_noise("auto", "lbfgs") is False
    assert defaults.resample_noise(False, "adam") is False
    X = correlated(200)
    est = NCEDensity("gaussian", progress=False, random_state=0).fit(X)
    assert est.resample_noise == "auto" and est.optimizer_ == "lbfgs"
    assert est.resample_noise_ is False
    with pytest.warns(UserWarning, match="raise epochs"):
        est = NCEDensity(epochs=2, progress=False, random_state=0).fit(X)
    assert est.optimizer_ == "adam" and est.resample_noise_ is True
