import math

import numpy as np
import pytest
import torch
from test_mi import gaussian_pairs, one_thread  # noqa: F401 (one_thread: an autouse fixture)

from nce.mi import ESTIMATORS, MIEstimate, estimate_mi, influence_values
from nce.mi.estimators import get_estimator
from nce.mi.tre import MLPHeads, QuadraticHeads, bridge_loss
from nce.mi.waymarks import (
    canonical_correlations,
    dimensionwise_waymarks,
    equal_information_alphas,
    gaussian_information,
    linear_alphas,
    linear_waymarks,
    product_samples,
)


def test_linear_waymarks_run_from_the_joint_to_the_product():
    x, y = (torch.as_tensor(a, dtype=torch.float32) for a in gaussian_pairs(500, 3, 2.0))
    xq, yq = product_samples(x, y, torch.Generator().manual_seed(0))
    joint, product = torch.cat([x, y], 1), torch.cat([xq, yq], 1)
    alphas = equal_information_alphas(x, y, 4)
    waymarks = linear_waymarks(joint, product, alphas)
    assert waymarks.shape == (5, 500, 6)
    assert torch.equal(waymarks[0], joint)  # alpha_0 = 0: the joint samples
    assert torch.equal(waymarks[-1], product)  # alpha_K = 1: the product samples
    # the product samples are the rows of x and of y, re-paired
    assert torch.equal(xq.sort(0).values, x.sort(0).values)
    assert torch.equal(yq.sort(0).values, y.sort(0).values)
    k = 2
    a = float(alphas[k])
    expected = math.sqrt(1 - a**2) * joint + a * product
    torch.testing.assert_close(waymarks[k], expected)


def test_equal_information_alphas_split_the_gaussian_information_evenly():
    x, y = (torch.as_tensor(a) for a in gaussian_pairs(5000, 4, 6.0))
    alphas = equal_information_alphas(x, y, 6)
    assert alphas[0] == 0 and alphas[-1] == 1
    assert bool((alphas.diff() > 0).all())
    rho = canonical_correlations(x, y)
    total = gaussian_information(rho, 0.0)
    assert total == pytest.approx(6.0, rel=0.05)
    steps = np.diff([gaussian_information(rho, float(a)) for a in alphas])
    np.testing.assert_allclose(steps, -total / 6, rtol=1e-6)
    # no linear dependence (here a constant x): the evenly spaced weights k / K
    flat = equal_information_alphas(torch.zeros(50, 2), torch.randn(50, 2), 4)
    torch.testing.assert_close(flat, linear_alphas(4))


def test_dimensionwise_waymarks_swap_a_kth_of_each_sides_columns():
    joint, product = torch.zeros(7, 5), torch.ones(7, 5)  # x: 3 columns, y: 2
    waymarks = dimensionwise_waymarks(joint, product, 2, 3)
    assert waymarks.shape == (3, 7, 5)
    assert torch.equal(waymarks[0], joint) and torch.equal(waymarks[-1], product)
    # waymark 1: ceil(3/2) = 2 of x's columns and 1 of y's come from the product
    assert waymarks[1, 0].tolist() == [1, 1, 0, 1, 0]


def test_bridge_heads_score_one_stack_entry_each():
    u = torch.randn(3, 8, 4)
    for model in (QuadraticHeads(4, 3), MLPHeads(4, 3, hidden=8, layers=1)):
        out = model(u)
        assert out.shape == (3, 8)
    model = MLPHeads(4, 3, hidden=8, layers=1)
    torch.testing.assert_close(model(u)[1], model.net(u[1])[:, 1])
    # at zero scores every bridge's logistic loss is 2 log 2
    loss = bridge_loss(QuadraticHeads(4, 3), torch.randn(4, 8, 4)).detach()
    assert float(loss) == pytest.approx(3 * 2 * math.log(2))


def test_tre_goes_through_the_table_of_estimators():
    assert "tre" in ESTIMATORS
    record = get_estimator("tre")
    assert record.telescoping and record.influence is None
    with pytest.raises(ValueError, match="'tre' is not a bound on a score matrix"):
        influence_values("tre", torch.zeros(4, 4))


def test_tre_estimates_a_gaussian_within_ten_percent():
    x, y = gaussian_pairs(4000, 5, 5.0)
    est = estimate_mi(x, y, estimator="tre", random_state=0, progress=False)
    assert isinstance(est, MIEstimate) and est.estimator == "tre"
    assert abs(est.value - 5.0) < 0.5, est
    assert 0 < est.stderr < 0.2
    assert est.waymarks >= 2 and len(est.alphas) == est.waymarks + 1
    assert not est.capped
    assert "not a bound" in str(est)


def test_tre_passes_log_n_where_infonce_cannot():
    """With 300 held-out rows log M = 5.7 nats caps InfoNCE; TRE is not capped."""
    x, y = gaussian_pairs(1000, 4, 9.0, seed=2)
    tre = estimate_mi(x, y, estimator="tre", waymarks=4, random_state=0, progress=False)
    assert tre.value > tre.log_n_cap + 1
    assert abs(tre.value - 9.0) < 0.9, tre
    assert not tre.capped


def test_dimensionwise_mixing_and_the_mlp_heads():
    x, y = gaussian_pairs(3000, 4, 4.0, seed=3)
    est = estimate_mi(
        x, y, estimator="tre", waymarks=4, waymark_mixing="dimensionwise", random_state=0,
        progress=False,
    )  # fmt: skip
    assert est.alphas is None
    assert abs(est.value - 4.0) < 0.4, est
    mlp = estimate_mi(
        x, y, estimator="tre", waymarks=2, critic="concat", hidden=32, layers=1, max_steps=200,
        random_state=0, progress=False,
    )  # fmt: skip
    assert isinstance(mlp.critic, MLPHeads)
    assert abs(mlp.value - 4.0) < 1.0, mlp


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(estimator="tre", waymarks=0), r"waymarks must be >= 1"),
        (dict(estimator="tre", waymarks=2.5), r"waymarks"),
        (dict(estimator="infonce", waymarks=4), r"waymarks applies to estimator='tre' only"),
        (dict(estimator="nwj", waymark_mixing="dimensionwise"), r"waymark_mixing applies"),
        (dict(estimator="tre", waymark_mixing="geometric"), r"waymark_mixing must be one of"),
        (dict(estimator="tre", critic="separable"), r"critic must be one of \('quadratic'"),
    ],
)
def test_tre_rejects_bad_options(kwargs, message):
    x, y = gaussian_pairs(100, 2, 1.0)
    with pytest.raises((ValueError, TypeError), match=message):
        estimate_mi(x, y, progress=False, **kwargs)


def test_command_line_runs_tre(tmp_path, capsys):
    import argparse
    import json

    from nce.cli import mi

    x, y = gaussian_pairs(1000, 2, 3.0, seed=4)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",")
    np.savetxt(tmp_path / "y.csv", y, delimiter=",")
    parser = argparse.ArgumentParser()
    mi.add_arguments(parser)
    out = tmp_path / "mi.json"
    argv = [tmp_path / "x.csv", tmp_path / "y.csv", "--estimator", "tre", "--waymarks", "3"]
    args = parser.parse_args([str(a) for a in [*argv, "--json", out, "--no-progress"]])
    assert mi.run(args) == 0
    assert "not a bound" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["estimator"] == "tre" and result["critic"] == "quadratic"
    assert result["capped"] is False and abs(result["value"] - 3.0) < 0.4


def test_gaussian_start_is_the_log_ratio_of_the_fitted_gaussians():
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    waymarks = torch.stack([torch.randn(400, 3, generator=g) * s + s for s in (0.5, 1.0, 2.0)])
    model = QuadraticHeads(3, 2).initialize_gaussian(waymarks)
    u = torch.randn(20, 3, generator=g).double()
    fitted = [
        stats.multivariate_normal(w.mean(0).double().numpy(), np.cov(w.double().numpy().T, ddof=0))
        for w in waymarks
    ]
    with torch.no_grad():
        scores = model.double()(u.unsqueeze(0).expand(2, 20, 3))
    for k in range(2):
        expected = fitted[k].logpdf(u.numpy()) - fitted[k + 1].logpdf(u.numpy())
        np.testing.assert_allclose(scores[k].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_logistic_training_alone_reaches_the_truth():
    """A quadratic critic passed as a module starts at zero: the estimate is the NCE fit."""
    x, y = gaussian_pairs(4000, 3, 4.0, seed=5)
    critic = QuadraticHeads(6, 3)
    est = estimate_mi(x, y, estimator="tre", waymarks=3, critic=critic, random_state=0,
                      progress=False)  # fmt: skip
    assert est.critic is critic and est.best_step > 0
    assert abs(est.value - 4.0) < 0.4, est
