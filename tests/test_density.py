import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

import nce
from nce.density import NCEDensity, PartitionEstimate
from nce.models import ConditionalMLPEnergy, EnergyModel, GaussianEnergy, ICAEnergy, MLPEnergy
from nce.noise import Box, Gaussian


@pytest.fixture(autouse=True)
def one_thread():
    """Small fits run faster, and steadier, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def correlated(n=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    chol = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    return (
        torch.tensor([1.0, -2.0], dtype=torch.float64)
        + torch.randn(n, 2, generator=g, dtype=torch.float64) @ chol.T
    )


def lbfgs(**kwargs):
    options = dict(optimizer="lbfgs", validation_fraction=0.0, progress=False, random_state=0)
    options.update(kwargs)
    return options


# ----------------------------------------------------------------------------- the NCE optimum


class TableEnergy(EnergyModel):
    """A free unnormalized log-probability per point of a finite support {0, ..., K-1}."""

    def __init__(self, k):
        super().__init__(1)
        self.f = torch.nn.Parameter(torch.zeros(k, dtype=torch.float64))

    def forward(self, x):
        return self.f[x[:, 0].long()]


def finite_support_problem():
    """Data and noise as multisets whose empirical laws are exactly p_d and q: the NCE loss on
    them is the expected loss."""
    data_counts = torch.tensor([1, 2, 3, 4, 10])  # p_d = counts / 20
    noise_counts = torch.tensor([6, 6, 6, 6, 6])  # q uniform; ν = 30 / 20
    x = torch.repeat_interleave(torch.arange(5), data_counts).double()[:, None]
    y = torch.repeat_interleave(torch.arange(5), noise_counts).double()[:, None]
    p_d = data_counts.double() / data_counts.sum()
    q = noise_counts.double() / noise_counts.sum()
    return x, y, p_d, q


def expected_nce_loss(model, x, y, q):
    return nce.binary_nce(
        model.log_prob(x), q.log()[x[:, 0].long()], model.log_prob(y), q.log()[y[:, 0].long()]
    )


def test_nce_expected_loss_is_stationary_exactly_at_the_data_density():
    x, y, p_d, q = finite_support_problem()
    model = TableEnergy(5).double()
    shift = 0.7  # any unnormalized f = log p_d + c with log Z = c
    with torch.no_grad():
        model.f.copy_(p_d.log() + shift)
        model.log_z.fill_(shift)
    loss = expected_nce_loss(model, x, y, q)
    grads = torch.autograd.grad(loss, [model.f, model.log_z])
    assert max(float(g.abs().max()) for g in grads) < 1e-12
    # Moving away from p_d, or mis-normalizing, increases the expected loss.
    for direction in torch.eye(6, dtype=torch.float64):
        with torch.no_grad():
            model.f.copy_(p_d.log() + shift + 0.05 * direction[:5])
            model.log_z.fill_(shift + 0.05 * float(direction[5]))
        assert expected_nce_loss(model, x, y, q) > loss


def test_nce_minimizer_recovers_the_data_density_and_its_log_partition():
    x, y, p_d, q = finite_support_problem()
    model = TableEnergy(5).double()
    with torch.no_grad():
        model.f.copy_(torch.tensor([0.3, -1.0, 2.0, 0.5, -0.2]))
    optimizer = torch.optim.LBFGS(
        model.parameters(),
        max_iter=500,
        tolerance_grad=1e-13,
        tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = expected_nce_loss(model, x, y, q)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        torch.testing.assert_close(model.f - model.log_z, p_d.log(), atol=1e-6, rtol=0)
        true_log_z = torch.logsumexp(model.f, 0)  # Z = sum over the support of exp f
        assert abs(float(model.log_z - true_log_z)) < 1e-6


# ----------------------------------------------------------------------------- fitting


def test_gaussian_energy_log_z_matches_closed_form_and_truth():
    X = correlated(2000)
    est = NCEDensity("gaussian", noise_ratio=10, **lbfgs()).fit(X)
    model = est.model_
    assert abs(est.log_partition_ - float(model.true_log_partition().detach())) < 0.02
    covariance = torch.tensor([[1.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
    true_log_z = 0.5 * float(torch.logdet(2 * math.pi * covariance))
    assert abs(est.log_partition_ - true_log_z) < 0.05
    with torch.no_grad():
        torch.testing.assert_close(
            model.precision(), torch.linalg.inv(covariance), atol=0.15, rtol=0
        )
    check = est.partition_function(n_samples=50_000, random_state=0)
    assert isinstance(check, PartitionEstimate)
    assert abs(float(check.difference)) < 3 * float(check.stderr) + 0.01
    exact = est.partition_function("exact")
    assert float(exact.stderr) == 0 and exact.n_samples == 0
    assert abs(float(exact.log_z) - float(model.true_log_partition().detach())) < 1e-12
    assert est.score_samples(X).shape == (2000,)
    assert est.score(X).shape == ()
    assert est.n_iter_ >= 1 and est.fit_time_ > 0 and est.n_features_in_ == 2


def test_adam_with_early_stopping_on_held_out_objective():
    X = correlated(600, seed=1)
    est = NCEDensity(
        MLPEnergy(2, hidden=(16,)).double(),
        noise_ratio=5,
        lr=1e-2,
        batch_size=128,
        epochs=40,
        patience=3,
        progress=False,
        random_state=0,
    ).fit(X)
    assert 1 <= est.n_iter_ <= 40
    assert len(est.validation_curve_) == est.n_iter_ == len(est.loss_curve_)
    check = est.partition_function(n_samples=20_000, random_state=1)
    assert abs(float(check.difference)) < 0.1
    assert bool(torch.isfinite(est.score_samples(X)).all())


def test_fresh_noise_each_epoch_and_random_state_reproducibility():
    X = correlated(400, seed=2).numpy()
    options = dict(resample_noise=True, epochs=5, progress=False, random_state=3)
    a = NCEDensity("gaussian", **options).fit(X)
    b = NCEDensity("gaussian", **options).fit(X)
    assert a.log_partition_ == b.log_partition_
    c = NCEDensity("gaussian", **{**options, "random_state": 4}).fit(X)
    assert a.log_partition_ != c.log_partition_
    torch.testing.assert_close(a.score_samples(X[:5]), b.score_samples(X[:5]))


def test_numpy_float32_input_gives_a_float32_model():
    X = correlated(300).numpy().astype(np.float32)
    est = NCEDensity("gaussian", epochs=3, progress=False, random_state=0).fit(X)
    # numpy in, numpy out; a tensor in, a tensor out.
    assert isinstance(est.score_samples(X), np.ndarray) and est.score_samples(X).dtype == np.float32
    assert isinstance(est.log_ratio(X), np.ndarray) and est.log_ratio(X).shape == (300,)
    assert est.score_samples(torch.from_numpy(X)).dtype == torch.float32


@pytest.mark.parametrize("noise", ["mixture", "box", "distribution"])
def test_noise_choices(noise):
    X = correlated(500, seed=3)
    if noise == "distribution":
        noise = MultivariateNormal(X.mean(0), 2 * torch.cov(X.T))
    est = NCEDensity("gaussian", noise=noise, noise_components=2, **lbfgs()).fit(X)
    assert abs(est.log_partition_ - float(est.model_.true_log_partition().detach())) < 0.1
    ratio = est.log_ratio(X)
    torch.testing.assert_close(ratio, est.score_samples(X) - est.noise_.log_prob(X))


def test_box_noise_ratio_is_infinite_outside_the_box():
    X = correlated(500, seed=4)
    est = NCEDensity("gaussian", noise="box", **lbfgs()).fit(X)
    far = torch.tensor([[100.0, 100.0]], dtype=torch.float64)
    assert est.log_ratio(far).item() == math.inf


def test_conditional_model_learns_a_context_dependent_log_partition():
    g = torch.Generator().manual_seed(0)
    c = torch.rand(1500, 1, generator=g, dtype=torch.float64) * 2 - 1
    x = 2 * c + (0.3 + 0.5 * (c + 1)) * torch.randn(1500, 1, generator=g, dtype=torch.float64)
    model = ConditionalMLPEnergy(1, context_dim=1, hidden=(16,)).double()
    est = NCEDensity(model, noise_ratio=5, lr=2e-2, epochs=60, progress=False, random_state=0)
    est.fit(x, context=c)
    assert est.log_partition_ is None
    grid = torch.tensor([[-0.8], [0.0], [0.8]], dtype=torch.float64)
    check = est.partition_function(n_samples=20_000, random_state=0, context=grid)
    assert check.log_z.shape == (3,)
    assert float(check.difference.abs().max()) < 0.2
    scores = est.score_samples(x[:10], context=c[:10])
    assert scores.shape == (10,)
    with pytest.raises(ValueError, match=r"is conditional: pass context of shape \(10, 1\)"):
        est.score_samples(x[:10])


# ----------------------------------------------------------------------------- persistence


def test_save_load_round_trip_gives_identical_scores(tmp_path, monkeypatch):
    X = correlated(400, seed=5)
    est = NCEDensity(MLPEnergy(2, hidden=(8,)).double(), epochs=4, progress=False).fit(X)
    path = tmp_path / "model.pt"
    est.save(path, metadata={"columns": ["a", "b"]})
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    calls = []
    load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = NCEDensity.load(path)
    assert calls == [True]
    assert torch.equal(loaded.score_samples(X), est.score_samples(X))
    assert torch.equal(loaded.log_ratio(X), est.log_ratio(X))
    assert loaded.log_partition_ == est.log_partition_
    assert loaded.metadata_ == {"columns": ["a", "b"]}
    assert loaded.loss_curve_ == est.loss_curve_
    a = est.partition_function(n_samples=1000, random_state=0)
    b = loaded.partition_function(n_samples=1000, random_state=0)
    assert torch.equal(a.log_z, b.log_z)


def test_load_custom_model_and_noise_need_instances(tmp_path):
    class Quadratic(EnergyModel):
        def __init__(self):
            super().__init__(2)
            self.a = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

        def forward(self, x):
            return -0.5 * self.a * x.square().sum(1)

    X = correlated(300, seed=6)
    noise = Independent(Normal(X.mean(0), 2 * X.std(0)), 1)
    est = NCEDensity(Quadratic().double(), noise=noise, **lbfgs()).fit(X)
    path = tmp_path / "custom.pt"
    est.save(path)
    with pytest.raises(ValueError, match="custom model of class 'Quadratic'"):
        NCEDensity.load(path)
    with pytest.raises(ValueError, match="custom noise of class 'DistributionNoise'"):
        NCEDensity.load(path, model=Quadratic())
    loaded = NCEDensity.load(path, model=Quadratic(), noise=noise)
    assert torch.equal(loaded.score_samples(X), est.score_samples(X))


def test_load_rejects_files_that_are_not_saved_estimators(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        NCEDensity.load(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a saved NCEDensity"):
        NCEDensity.load(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="no 'nce.NCEDensity' header"):
        NCEDensity.load(other)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "flow"}, ValueError, "model must be one of .*'mlp'.* got 'flow'"),
        ({"model": torch.nn.Linear(2, 1)}, TypeError, "model must be an nce.models.EnergyModel"),
        ({"noise": "laplace"}, ValueError, "noise must be one of .* got 'laplace'"),
        ({"noise": 3}, TypeError, "noise must be a nce.noise.Noise or a torch.distributions"),
        ({"noise_ratio": 0}, ValueError, "noise_ratio must be a finite number > 0, got 0"),
        ({"noise_ratio": "10"}, TypeError, "noise_ratio must be a number, got str"),
        ({"optimizer": "sgd"}, ValueError, "optimizer must be one of .* got 'sgd'"),
        ({"lr": -1.0}, ValueError, "lr must be a finite number > 0, got -1.0"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
        ({"epochs": 2.5}, TypeError, "epochs must be an int, got float"),
        ({"resample_noise": "yes"}, TypeError, "resample_noise must be a bool or .auto., got str"),
        ({"validation_fraction": 1.0}, ValueError, r"validation_fraction must lie in \[0.0, 1.0\)"),
        ({"patience": 0}, ValueError, "patience must be >= 1, got 0"),
        ({"tol": -1e-3}, ValueError, r"tol must lie in \[0.0, inf\), got -0.001"),
        ({"lbfgs_steps": 0}, ValueError, "lbfgs_steps must be >= 1, got 0"),
        ({"noise_components": 0}, ValueError, "noise_components must be >= 1, got 0"),
        ({"box_margin": -0.1}, ValueError, r"box_margin must lie in \[0.0, inf\)"),
        ({"progress": 1}, TypeError, "progress must be a bool, got int"),
        ({"random_state": "0"}, TypeError, "random_state must be None, an int or a torch.Gen"),
        ({"random_state": -1}, ValueError, "random_state must be >= 0, got -1"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        NCEDensity(**kwargs)


def test_noise_sharing_trainable_parameters_with_the_model_is_refused():
    model = GaussianEnergy(2)
    shared = Independent(Normal(model.mean, torch.ones(2)), 1)
    with pytest.raises(ValueError, match="noise shares the memory of parameter 'mean'"):
        NCEDensity(model, noise=shared)
    detached = Independent(Normal(model.mean.detach(), torch.ones(2)), 1)
    with pytest.raises(ValueError, match="noise shares the memory of parameter 'mean'"):
        NCEDensity(model, noise=detached)
    copied = Independent(Normal(model.mean.detach().clone(), torch.ones(2)), 1)
    NCEDensity(model, noise=copied)
    derived = Independent(Normal(2 * model.mean, torch.ones(2)), 1)
    with pytest.raises(ValueError, match="computed from other parameters"):
        NCEDensity(model, noise=derived)
    noise = Gaussian(torch.zeros(2), torch.eye(2))
    noise.mean.requires_grad_(True)
    with pytest.raises(ValueError, match="noise holds a trainable tensor 'mean'"):
        NCEDensity(model, noise=noise)
    # A named model is built at fit time: the check runs there.
    with pytest.raises(ValueError, match="noise holds a trainable tensor 'mean'"):
        NCEDensity("gaussian", noise=noise).fit(correlated(50))


def test_bad_fit_and_scoring_input():
    est = NCEDensity("gaussian", epochs=2, progress=False, random_state=0)
    with pytest.raises(ValueError, match="not fitted yet: call fit"):
        est.score_samples(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="not fitted yet"):
        est.partition_function()
    with pytest.raises(ValueError, match="not fitted yet"):
        est.save("never.pt")
    with pytest.raises(ValueError, match=r"X must be 2-D, got shape \(5,\)"):
        est.fit(np.zeros(5))
    with pytest.raises(ValueError, match="X contains 1 NaN or Inf"):
        est.fit(np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 0.0]]))
    with pytest.raises(TypeError, match="X must hold numbers"):
        est.fit(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="X has 1 row"):
        est.fit(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="context was given but the model"):
        est.fit(correlated(50), context=np.zeros((50, 1)))
    with pytest.raises(ValueError, match="X has 3 columns but the model has dimension 2"):
        NCEDensity(GaussianEnergy(2)).fit(np.arange(30.0).reshape(10, 3) % 7)
    with pytest.raises(ValueError, match="validation_fraction = 0.1 leaves 0 held-out"):
        est.fit(correlated(4))
    box = Box(torch.tensor([0.0, 0.0], dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="noise gives zero density to .* row"):
        NCEDensity("gaussian", noise=box).fit(correlated(50))
    wrong = Gaussian(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"noise has event shape \(3,\) but X has shape"):
        NCEDensity("gaussian", noise=wrong).fit(correlated(50))
    est.fit(correlated(100))
    with pytest.raises(ValueError, match="X has 3 columns but the model was fitted on 2"):
        est.score_samples(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="method must be 'importance' or 'exact', got 'mc'"):
        est.partition_function("mc")
    with pytest.raises(ValueError, match="n_samples must be >= 2, got 1"):
        est.partition_function(n_samples=1)
    with pytest.raises(ValueError, match="MLPEnergy has no closed-form log-partition"):
        NCEDensity("mlp", epochs=1, progress=False).fit(correlated(50)).partition_function("exact")
    with pytest.raises(TypeError, match="metadata must be a dict or None, got list"):
        est.save("x.pt", metadata=[1])


def test_models_from_names_start_at_the_data():
    X = correlated(200, seed=7)
    for name, cls in (("mlp", MLPEnergy), ("gaussian", GaussianEnergy), ("ica", ICAEnergy)):
        est = NCEDensity(name, epochs=1, progress=False, random_state=0).fit(X)
        assert type(est.model_) is cls
        assert "NCEDensity(model='" in repr(est)


def test_numpy_hyperparameters_and_metadata_save_and_load(tmp_path):
    X = np.random.default_rng(0).normal(size=(200, 2))
    est = NCEDensity("gaussian", noise_ratio=np.float64(5), epochs=2, progress=False)
    est.fit(X).save(tmp_path / "m.pt", metadata={"scale": np.float64(2.0), "n": [np.int64(3)]})
    loaded = NCEDensity.load(tmp_path / "m.pt")
    assert loaded.metadata_ == {"scale": 2.0, "n": [3]}
    with pytest.raises(TypeError, match=r"metadata\['bad'\] must hold numbers"):
        est.save(tmp_path / "n.pt", metadata={"bad": object()})


def test_box_noise_covers_the_held_out_rows():
    # An outlying row is held out for about half of the seeds; the box must still cover it.
    X = np.random.default_rng(0).normal(size=(20, 2))
    X[0] = 50.0
    for seed in range(8):
        est = NCEDensity("gaussian", "box", validation_fraction=0.5, epochs=1,
                         batch_size=10, progress=False, random_state=seed)  # fmt: skip
        est.fit(X)
        # Every row, held out or not, lies inside the box: finite noise and ratio everywhere.
        assert np.isfinite(est.noise_.log_prob(torch.from_numpy(X)).numpy()).all()
        assert np.isfinite(est.log_ratio(X)).all()


def test_half_precision_and_too_few_noise_draws_are_refused():
    X = torch.randn(100, 2)
    with pytest.raises(TypeError, match="X must be float32 or float64 to fit"):
        NCEDensity("gaussian", progress=False).fit(X.half())
    with pytest.raises(ValueError, match="gives 1 noise draws for 9 minibatches"):
        NCEDensity(
            "gaussian", optimizer="adam", noise_ratio=0.001, batch_size=10, progress=False
        ).fit(X)


# ----------------------------------------------------------------------------- what users get wrong


@pytest.mark.parametrize("model", ["gaussian", "ica", "mlp"])
def test_a_constant_column_is_refused_by_the_library(model):
    X = correlated(200).numpy()
    X[:, 1] = 3.0
    with pytest.raises(ValueError, match=r"X is constant in column\(s\) 1: a density cannot"):
        NCEDensity(model, epochs=1, progress=False).fit(X)


def test_far_rows_score_minus_infinity_never_nan():
    X = correlated(400)
    for model in ("gaussian", "mlp"):
        est = NCEDensity(model, epochs=2, progress=False, random_state=0).fit(X)
        rows = [[1e200, 0.0], [1e160, -1e160], [0.0, 1.7e308], [1.0, -2.0]]
        far = torch.tensor(rows, dtype=torch.float64)
        log_p, ratio = est.score_samples(far), est.log_ratio(far)
        assert not log_p.isnan().any() and not ratio.isnan().any()
        assert (log_p[:3] == -math.inf).all() and (ratio[:3] == -math.inf).all()
        assert ratio[3].isfinite()


def test_divergence_is_reported_as_divergence_naming_lr():
    X = correlated(300)
    est = NCEDensity("mlp", optimizer="adam", lr=1e6, epochs=5, progress=False, random_state=0)
    with pytest.raises(nce.DivergenceError, match=r"the fit diverged in epoch \d+: .*"
                       r"NaN or infinite.*lower lr \(now 1e\+06\)") as info:  # fmt: skip
        est.fit(X)
    assert info.value.option == "lr" and info.value.epoch >= 1
    assert "--lr (now 1e+06)" in info.value.describe("--lr")


def test_sizes_beyond_memory_are_refused_before_allocating():
    X = correlated(100)
    est = NCEDensity("gaussian", noise_ratio=1e15, progress=False, random_state=0)
    message = r"noise sample needs 1e\+17 rows \(.*\) but .* is available: lower noise_ratio"
    with pytest.raises(nce.density.FitMemoryError, match=message):
        est.fit(X)
    fitted = NCEDensity("gaussian", epochs=1, progress=False, random_state=0).fit(X)
    with pytest.raises(
        MemoryError, match=r"importance sample needs 1e\+15 rows .* lower n_samples"
    ):
        fitted.partition_function(n_samples=10**15)


def test_old_names_keep_working_with_a_deprecation_warning():
    X = correlated(100)
    with pytest.warns(DeprecationWarning, match="use epochs="):
        est = NCEDensity("gaussian", max_epochs=1, progress=False)
    assert est.epochs == 1
    with pytest.warns(DeprecationWarning, match='use noise="box"'):
        est = NCEDensity("gaussian", noise="uniform", epochs=1, progress=False).fit(X)
    assert est.noise == "box" and isinstance(est.noise_, Box)


def test_fitting_leaves_the_global_generator_alone():
    before = torch.random.get_rng_state()
    NCEDensity("mlp", epochs=1, progress=False, random_state=0).fit(correlated(100))
    NCEDensity("mlp", epochs=1, progress=False).fit(correlated(100))
    assert torch.equal(before, torch.random.get_rng_state())


def test_a_model_not_finite_on_the_held_out_rows_at_its_start_is_bad_input():
    model = GaussianEnergy(2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    estimator = NCEDensity(model, init="keep", standardize=False, progress=False)
    with pytest.raises(ValueError, match="held-out rows at the model's starting point"):
        estimator.fit(torch.randn(200, 2))


def _gaussian_fit():
    X = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return NCEDensity("gaussian", optimizer="lbfgs", progress=False, random_state=0).fit(X)


def test_partition_function_warns_when_the_learned_log_z_fails_its_check():
    import warnings

    from nce.density import NormalizationWarning

    est = _gaussian_fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged fit passes its own check silently
        check = est.partition_function(n_samples=20_000, random_state=0)
    assert abs(float(check.difference)) < 0.1
    with torch.no_grad():
        est.model_.log_z += 0.5  # as a fit that stopped far from NCE's optimum would leave it
    with pytest.warns(NormalizationWarning, match=r"differs .* by 0\.5\d\d nats, more than 0\.1"):
        est.partition_function(n_samples=20_000, random_state=0)
    with torch.no_grad():
        est.model_.log_z -= 0.5
        est.model_.log_diag.fill_(4.0)  # 50 times narrower than the noise: heavy weights
    with pytest.warns(NormalizationWarning, match="effective size of .* the check is unreliable"):
        est.partition_function(n_samples=20_000, random_state=0)
