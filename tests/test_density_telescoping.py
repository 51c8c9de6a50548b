import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nce.density import NCEDensity
from nce.density.telescoping import (
    WaymarkChain,
    bridge_log_ratios,
    gaussian_kl_alphas,
    telescoping_loss,
    waymark_samples,
)
from nce.models import GaussianEnergy, ICAEnergy, MLPEnergy
from nce.noise import Box, Gaussian
from nce.waymarks import equal_share_alphas, linear_alphas

D = 2
MEAN = torch.tensor([10.0, 0.0], dtype=torch.float64)
SCALE = 0.5


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def far_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return MEAN + SCALE * torch.randn(n, D, generator=g, dtype=torch.float64)


def wide_noise():
    return Gaussian(torch.zeros(D, dtype=torch.float64), 4.0 * torch.eye(D, dtype=torch.float64))


def true_log_ratio(X):
    truth = torch.distributions.MultivariateNormal(MEAN, SCALE**2 * torch.eye(D, dtype=MEAN.dtype))
    return truth.log_prob(X) - wide_noise().log_prob(X)


@pytest.fixture(scope="module")
def far_fits():
    """Data 20 of their standard deviations from a wide noise: one ratio, and K = 6 bridges."""
    X = far_data(800, 0)
    fits = {}
    for waymarks in (None, 6):
        fits[waymarks] = NCEDensity(
            GaussianEnergy(D).double(), wide_noise(), 5, waymarks=waymarks, progress=False,
            random_state=0,
        ).fit(X)  # fmt: skip
    return fits


def test_telescoped_log_ratio_crosses_the_chasm_where_one_ratio_fails(far_fits):
    X_test = far_data(2000, 1)
    truth = true_log_ratio(X_test)
    errors = {
        k: float((torch.as_tensor(est.log_ratio(X_test)) - truth).mean().abs())
        for k, est in far_fits.items()
    }
    assert errors[6] < 0.25 < 3.0 < errors[None]
    est = far_fits[6]
    # The learned log Z is that of the fitted Gaussian (normalized through the chain).
    assert abs(est.log_partition_ - float(est.model_.true_log_partition().detach())) < 0.1
    assert est.converged_ and est.n_iter_ == len(est.loss_curve_) >= 1
    assert len(est.validation_curve_) == est.n_iter_


def test_bridges_sum_to_the_log_ratio_and_match_the_gaussian_waymarks(far_fits):
    est = far_fits[6]
    X = far_data(50, 2)
    bridges = bridge_log_ratios(est, X)
    assert bridges.shape == (6, 50)
    torch.testing.assert_close(bridges.sum(0), torch.as_tensor(est.log_ratio(X)))
    assert [type(m) for m in est.waymark_models_] == [GaussianEnergy] * 5
    # Waymark k of linear mixing, in the fit's standardized coordinates u = (x - a) / s, is
    # N(c_k m_u, c_k^2 S_u + a_k^2 S_q): map back and compare each bridge with the closed form.
    shift, scale = est.standardization_
    alphas = est.waymark_alphas_
    keep = (1 - alphas**2).sqrt()
    noise = wide_noise()
    m_u, s_u = (MEAN - shift) / scale, torch.diag(SCALE**2 / scale**2)
    m_q, s_q = -shift / scale, noise.covariance / torch.outer(scale, scale)
    logs = []
    for c, a in zip(keep.tolist(), alphas.tolist(), strict=True):
        mean = scale * (c * m_u + a * m_q) + shift
        cov = torch.outer(scale, scale) * (c**2 * s_u + a**2 * s_q)
        logs.append(torch.distributions.MultivariateNormal(mean, cov).log_prob(X))
    closed = torch.stack([logs[k] - logs[k + 1] for k in range(6)])
    assert float((bridges - closed).mean(1).abs().max()) < 0.25


def test_waymarks_none_is_single_ratio_nce_unchanged():
    X = far_data(300, 3)
    kwargs = dict(optimizer="lbfgs", epochs=3, progress=False, random_state=0)
    default = NCEDensity(GaussianEnergy(D).double(), **kwargs).fit(X)
    explicit = NCEDensity(GaussianEnergy(D).double(), waymarks=None, **kwargs).fit(X)
    assert NCEDensity().get_params()["waymarks"] is None
    assert NCEDensity().get_params()["waymark_mixing"] == "linear"
    for a, b in zip(default.model_.parameters(), explicit.model_.parameters(), strict=True):
        assert torch.equal(a, b)
    assert default.loss_curve_ == explicit.loss_curve_
    assert not hasattr(default, "waymark_models_")


def test_telescoping_loss_matches_a_float64_loop_and_its_gradient():
    g = torch.Generator().manual_seed(0)
    models = [GaussianEnergy(D).double(), MLPEnergy(D, hidden=4).double()]
    for m in models:
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    noise = wide_noise()
    chain = WaymarkChain(models, noise)
    data, draws = far_data(5, 4), noise.sample((15,), generator=g)
    alphas = torch.tensor([0.0, 0.6, 1.0], dtype=torch.float64)
    samples = waymark_samples(data, draws, 2, "linear", alphas)
    assert torch.equal(samples[2], draws) and torch.equal(samples[0], data)
    paired = data[torch.arange(15) % 5]
    torch.testing.assert_close(samples[1], 0.8 * paired + 0.6 * draws)
    loss = telescoping_loss(chain, samples, 3.0)

    def log_p(k, u):
        return models[k].log_prob(u) if k < 2 else noise.log_prob(u)

    expected = 0.0
    for k, nu in ((0, 3.0), (1, 1.0)):
        pos = [log_p(k, u[None]) - math.log(nu) - log_p(k + 1, u[None]) for u in samples[k]]
        neg = [log_p(k, u[None]) - math.log(nu) - log_p(k + 1, u[None]) for u in samples[k + 1]]
        n = len(pos)
        expected = (
            expected + (sum(F.softplus(-v) for v in pos) + sum(F.softplus(v) for v in neg)) / n
        )
    torch.testing.assert_close(loss, expected.squeeze(), rtol=1e-12, atol=1e-12)
    params = (models[0].mean, models[0].log_z, *list(models[1].parameters())[:2])
    assert torch.autograd.gradcheck(lambda *_: telescoping_loss(chain, samples, 3.0), params)


def test_bridges_are_invariant_to_the_chain_and_telescope():
    models = [GaussianEnergy(D).double(), GaussianEnergy(D).double(), GaussianEnergy(D).double()]
    with torch.no_grad():
        models[1].mean.fill_(1.0)
        models[2].log_diag.fill_(-0.5)
    chain = WaymarkChain(models, wide_noise())
    X = far_data(7, 5)
    bridges = chain.bridges(X)
    torch.testing.assert_close(bridges.sum(0), models[0].log_prob(X) - wide_noise().log_prob(X))
    # Far outside both densities the bridges are -inf, never NaN.
    assert not torch.isnan(chain.bridges(torch.full((1, D), 1e200, dtype=torch.float64))).any()


def test_equal_divergence_spacing():
    X = far_data(4000, 6)
    noise = wide_noise().sample((4000,), generator=torch.Generator().manual_seed(1))
    alphas = gaussian_kl_alphas(X, noise, 4)
    assert alphas[0] == 0 and alphas[-1] == 1 and bool((alphas.diff() > 0).all())
    # Each bridge removes a quarter of the Gaussian divergence (checked against a direct formula).
    mp, sp = X.mean(0), X.T.cov()
    mq, sq = noise.mean(0), noise.T.cov()
    q = torch.distributions.MultivariateNormal(mq, sq)

    def kl(a):
        c = math.sqrt(1 - a * a)
        p = torch.distributions.MultivariateNormal(c * mp + a * mq, c * c * sp + a * a * sq)
        return float(torch.distributions.kl_divergence(p, q))

    shares = [kl(a) / kl(0.0) for a in alphas.tolist()]
    np.testing.assert_allclose(shares, [1, 0.75, 0.5, 0.25, 0], atol=1e-3)
    # Data and noise with equal moments: no divergence, equal steps.
    assert torch.equal(gaussian_kl_alphas(noise, noise, 3), linear_alphas(3))
    assert torch.equal(equal_share_alphas(lambda a: 0.0, 2), linear_alphas(2))


def test_box_noise_dimensionwise_mlp_waymarks_and_adam():
    """A narrow Gaussian in a box: waymark samples outside the box are handled (their bridge to
    the noise is +inf), the intermediate waymarks get MLP energies, and Adam runs the fit."""
    g = torch.Generator().manual_seed(7)
    X = 0.1 * torch.randn(400, 2, generator=g, dtype=torch.float64)
    box = Box(
        torch.full((2,), -1.0, dtype=torch.float64), torch.full((2,), 1.0, dtype=torch.float64)
    )
    for mixing in ("linear", "dimensionwise"):
        est = NCEDensity(
            GaussianEnergy(2).double(), box, 2, optimizer="adam", lr=1e-2, epochs=3,
            waymarks=2, waymark_mixing=mixing, progress=False, random_state=0,
        )  # fmt: skip
        with pytest.warns(UserWarning, match="raise epochs"):
            est.fit(X)
        assert [type(m) for m in est.waymark_models_] == [MLPEnergy]
        assert est.optimizer_ == "adam" and est.n_iter_ == 3
        assert np.isfinite(est.score_samples(X.numpy())).all()
        assert (est.waymark_alphas_ is None) == (mixing == "dimensionwise")


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"waymarks": 0}, ValueError, "waymarks must be >= 1, got 0"),
        ({"waymarks": 2.0}, TypeError, "waymarks must be an int, got float"),
        ({"waymarks": True}, TypeError, "waymarks must be an int, got bool"),
        ({"waymarks": 2, "waymark_mixing": "dimension"}, ValueError, "waymark_mixing must be"),
    ],
)
def test_bad_waymark_options_are_refused(options, error, match):
    with pytest.raises(error, match=match):
        NCEDensity(**options)
    with pytest.raises(error, match=match):
        NCEDensity().set_params(**options)


def test_waymarks_refused_where_they_cannot_apply():
    X = far_data(100, 8)
    est = NCEDensity("gaussian", waymarks=3, waymark_mixing="dimensionwise", progress=False)
    with pytest.raises(ValueError, match="waymarks = 3 exceeds the 2 columns of X"):
        est.fit(X)
    unfitted = NCEDensity(waymarks=2)
    with pytest.raises(ValueError, match="not fitted"):
        bridge_log_ratios(unfitted, X)
    single = NCEDensity("gaussian", epochs=1, progress=False).fit(X)
    with pytest.raises(ValueError, match="fitted with waymarks"):
        bridge_log_ratios(single, X)


def test_save_and_load_keep_the_waymarks(tmp_path):
    X = far_data(200, 9)
    est = NCEDensity(
        ICAEnergy(D).double(), wide_noise(), 2, waymarks=2, epochs=1, progress=False,
        random_state=0,
    )  # fmt: skip
    with pytest.warns(UserWarning):
        est.fit(X)
    path = tmp_path / "tre.pt"
    est.save(path)
    loaded = NCEDensity.load(path)
    assert loaded.waymarks == 2 and loaded.waymark_mixing == "linear"
    assert loaded.get_params()["waymarks"] == 2
    torch.testing.assert_close(loaded.waymark_alphas_, est.waymark_alphas_)
    torch.testing.assert_close(loaded.score_samples(X), est.score_samples(X))
    assert loaded.log_partition_ == est.log_partition_
    assert loaded.converged_ == est.converged_ and loaded.n_iter_ == est.n_iter_
    with pytest.raises(ValueError, match="not saved"):
        bridge_log_ratios(loaded, X)
