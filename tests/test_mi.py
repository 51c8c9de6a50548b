import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nce.mi import (
    ConcatCritic,
    MIEstimate,
    SeparableCritic,
    dv_bound,
    estimate_mi,
    influence_values,
    info_nce_bound,
    infonce_bound,
    js_bound,
    js_objective,
    mine_bound,
    nwj_bound,
    smile_bound,
)
from nce.mi.estimators import ESTIMATORS, get_estimator
from nce.mi.standardize import average_ranks, normal_scores, zscore


@pytest.fixture(autouse=True)
def one_thread():
    """Small networks gain nothing from intra-op threads, and lose a lot on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def scores(n=7, seed=0, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, n, generator=g, dtype=dtype)).requires_grad_()


def gaussian_pairs(n, d, mi, seed=0):
    """x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps: I(X; Y) = mi nats exactly."""
    rng = np.random.default_rng(seed)
    rho = math.sqrt(1 - math.exp(-2 * mi / d))
    x = rng.standard_normal((n, d))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))


def optimal_scores(x, y, mi):
    """log p(y_j | x_i) - log p(y_j) for the Gaussian pair: the optimal critic of every bound."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    d = x.shape[1]
    rho2 = 1 - math.exp(-2 * mi / d)
    s2 = 1 - rho2
    diff = y.unsqueeze(0) - math.sqrt(rho2) * x.unsqueeze(1)
    return -(diff**2).sum(-1) / (2 * s2) - 0.5 * d * math.log(s2) + (y**2).sum(-1).unsqueeze(0) / 2


# Naive float64 loops written from the papers' equations.


def naive_infonce(s):
    n = len(s)
    total = 0.0
    for i in range(n):
        total += s[i][i] - math.log(sum(math.exp(s[i][j]) for j in range(n)) / n)
    return total / n


def naive_negatives(s, f=lambda v: math.exp(v)):
    n = len(s)
    return sum(f(s[i][j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))


def naive_positives(s):
    return sum(s[i][i] for i in range(len(s))) / len(s)


def naive_nwj(s):
    return naive_positives(s) - naive_negatives(s) / math.e


def naive_dv(s):
    return naive_positives(s) - math.log(naive_negatives(s))


def naive_smile(s, tau):
    return naive_positives(s) - math.log(
        naive_negatives(s, lambda v: min(max(math.exp(v), math.exp(-tau)), math.exp(tau)))
    )


def naive_js_value(s):
    return 1 + naive_positives(s) - naive_negatives(s)


def naive_js_objective(s):
    n = len(s)
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    positive = -sum(softplus(-s[i][i]) for i in range(n)) / n
    return positive - naive_negatives(s, softplus)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "bound,naive",
    [
        (info_nce_bound, naive_infonce),
        (nwj_bound, naive_nwj),
        (dv_bound, naive_dv),
        (lambda s: smile_bound(s, 1.5), lambda s: naive_smile(s, 1.5)),
        (lambda s: smile_bound(s, None), naive_dv),
        (js_bound, naive_js_value),
        (js_objective, naive_js_objective),
        (lambda s: mine_bound(s, 0.7), naive_dv),
    ],
)
def test_bounds_match_naive_loops(bound, naive, seed):
    s = scores(seed=seed)
    expected = naive(s.detach().tolist())
    assert float(bound(s).detach()) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert float(bound(s.detach().float())) == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("bound", [info_nce_bound, nwj_bound, dv_bound, js_objective])
def test_gradcheck(bound):
    assert torch.autograd.gradcheck(bound, (scores(n=5),))


def test_mine_gradient_uses_the_moving_average():
    s = scores()
    (grad,) = torch.autograd.grad(mine_bound(s, 0.7), s)
    e = s.detach().exp()
    n = len(s)
    off = 1 - torch.eye(n, dtype=s.dtype)
    expected = torch.eye(n, dtype=s.dtype) / n - e * off / (n * (n - 1)) / 0.7
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("bound", [js_bound, lambda s: smile_bound(s, 2.0)])
def test_js_trained_bounds_carry_the_js_gradient(bound):
    s = scores()
    (got,) = torch.autograd.grad(bound(s), s)
    (want,) = torch.autograd.grad(js_objective(s), s)
    torch.testing.assert_close(got, want)


@settings(max_examples=100, deadline=None)
@given(
    arrays(
        np.float64,
        st.integers(2, 12).map(lambda n: (n, n)),
        elements=st.floats(-1e4, 1e4, allow_nan=False),
    )
)
def test_infonce_never_exceeds_log_n(s):
    n = s.shape[0]
    assert float(info_nce_bound(torch.from_numpy(s))) <= math.log(n) + 1e-9


def test_infonce_reaches_log_n_for_a_perfect_critic():
    assert float(info_nce_bound(1e4 * torch.eye(64, dtype=torch.float64))) == pytest.approx(
        math.log(64)
    )


def test_shift_invariance_and_shift_sensitivity():
    s = scores()
    torch.testing.assert_close(dv_bound(s + 3), dv_bound(s))
    torch.testing.assert_close(info_nce_bound(s + 3), info_nce_bound(s))
    assert float(nwj_bound(s + 3).detach()) != pytest.approx(float(nwj_bound(s).detach()))


@pytest.mark.parametrize("mi", [0.5, 2.0])
def test_optimal_gaussian_critic_gives_the_true_mi(mi):
    """NWJ (at f + 1), DV and js are unbiased/consistent at the optimal critic; InfoNCE sits below
    min(true MI, log N)."""
    n, reps = 256, 40
    values = {name: [] for name in ("nwj", "dv", "js", "infonce")}
    for rep in range(reps):
        x, y = gaussian_pairs(n, 2, mi, seed=rep)
        s = optimal_scores(x, y, mi)
        values["nwj"].append(float(nwj_bound(s + 1)))
        values["dv"].append(float(dv_bound(s)))
        values["js"].append(float(js_bound(s)))
        values["infonce"].append(float(info_nce_bound(s)))
    for name in ("nwj", "dv", "js"):
        v = np.asarray(values[name])
        assert abs(v.mean() - mi) < 4 * v.std() / math.sqrt(reps) + 0.01, name
    v = np.asarray(values["infonce"])
    assert v.max() <= math.log(n)
    assert v.mean() < min(mi, math.log(n)) + 2 * v.std() / math.sqrt(reps)


@pytest.mark.parametrize("estimator", ["infonce", "nwj", "mine", "smile", "js"])
def test_influence_standard_error_matches_the_spread(estimator):
    """Delta-method stderr from one block ≈ standard deviation over independent blocks."""
    m, reps, mi = 200, 60, 1.0
    values, stderrs = [], []
    for rep in range(reps):
        x, y = gaussian_pairs(m, 1, mi, seed=100 + rep)
        s = optimal_scores(x, y, mi) + (1.0 if estimator == "nwj" else 0.0)
        value, psi = influence_values(estimator, s)
        assert float(psi.mean()) == pytest.approx(value, abs=1e-9)
        values.append(value)
        stderrs.append(float(psi.std()) / math.sqrt(m))
    ratio = np.std(values) / np.mean(stderrs)
    assert 0.6 < ratio < 1.6, ratio


@pytest.mark.parametrize(
    "bad,message",
    [
        (torch.randn(3, 4), r"square"),
        (torch.randn(1, 1), r"N >= 2"),
        (torch.randn(4), r"2-D"),
        (torch.full((3, 3), math.nan), r"NaN"),
        (torch.ones(3, 3, dtype=torch.long), r"floating"),
    ],
)
@pytest.mark.parametrize("bound", [info_nce_bound, nwj_bound, dv_bound, smile_bound, js_bound])
def test_bounds_reject_bad_scores(bound, bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        bound(bad)


def test_mine_rejects_bad_moving_average():
    with pytest.raises(ValueError, match="moving_average must be finite and > 0"):
        mine_bound(scores(), 0.0)
    with pytest.raises(ValueError, match="moving_average must be finite and > 0"):
        mine_bound(scores(), math.inf)
    with pytest.raises(TypeError, match="moving_average"):
        mine_bound(scores(), "1")


def test_critics_score_every_pair():
    x, y = torch.randn(5, 3), torch.randn(4, 2)
    sep, cat = SeparableCritic(3, 2, hidden=8), ConcatCritic(3, 2, hidden=8)
    assert sep(x, y).shape == cat(x, y).shape == (5, 4)
    torch.testing.assert_close(cat(x, y)[1, 2], cat(x[1:2], y[2:3])[0, 0])


# estimate_mi: small, fast runs.


class DistanceCritic(torch.nn.Module):
    """f(x, y) = -scale (x - y)^2 for one column each: sharp for a large scale, worse than a
    constant for a negative one."""

    def __init__(self, scale):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, x, y):
        return -self.scale * (x - y.T) ** 2


FAST = dict(max_steps=200, progress=False, random_state=0)


def test_estimate_gaussian_close_to_truth():
    x, y = gaussian_pairs(1000, 1, 1.0)
    est = estimate_mi(x, y, **FAST)
    assert isinstance(est, MIEstimate)
    assert abs(est.value - 1.0) < 0.15
    assert 0 < est.stderr < 0.1
    assert est.log_n_cap == pytest.approx(math.log(300))
    assert not est.capped
    assert len(est.steps) == len(est.valid_curve) == len(est.train_curve) > 0
    assert est.best_step in est.steps
    assert "nats" in str(est)


def test_independent_data_gives_about_zero():
    rng = np.random.default_rng(1)
    est = estimate_mi(rng.standard_normal((800, 3)), rng.standard_normal(800), **FAST)
    assert abs(est.value) < 0.05


def test_capped_when_truth_exceeds_log_n():
    x, y = gaussian_pairs(300, 1, 7.0)  # 90 held-out rows: log 90 = 4.5 < 7
    est = estimate_mi(x, y, **FAST)
    assert est.capped
    assert est.value <= est.log_n_cap


def test_converged_tells_patience_from_running_out_of_steps():
    x, y = gaussian_pairs(1000, 1, 1.0)
    cut_short = estimate_mi(x, y, max_steps=20, eval_every=10, progress=False, random_state=0)
    assert not cut_short.converged  # 2 measurements, patience 10
    assert "max_steps ran out" in str(cut_short)
    patient = estimate_mi(x, y, max_steps=4000, eval_every=10, patience=2, progress=False)
    assert patient.converged and patient.steps[-1] < 4000
    assert "max_steps" not in str(patient)


def test_default_embedding_reaches_every_dependent_direction():
    # The separable critic's bilinear part has rank <= K: K grows with the dimension.
    x, y = gaussian_pairs(200, 40, 1.0)
    assert estimate_mi(x, y[:, :3], max_steps=2, progress=False).critic.embed_dim == 80
    x, y = gaussian_pairs(200, 2, 1.0)
    assert estimate_mi(x, y, max_steps=2, progress=False).critic.embed_dim == 32
    assert estimate_mi(x, y, max_steps=2, embed_dim=5, progress=False).critic.embed_dim == 5


def test_capped_when_the_training_batch_limits_the_critic():
    # 300 held-out rows (log M = 5.7) but minibatches of 8 pairs: InfoNCE training saturates
    # near log 8 = 2.1, far below the truth of 4 nats.
    x, y = gaussian_pairs(1000, 1, 4.0)
    est = estimate_mi(x, y, batch_size=8, **FAST)
    assert est.log_batch_cap == pytest.approx(math.log(8))
    assert est.value < est.log_n_cap - 1.5  # not capped by the evaluation block...
    assert est.capped  # ...but by the training batch
    nwj = estimate_mi(x, y, estimator="nwj", batch_size=8, **FAST)
    assert nwj.capped == (nwj.value >= nwj.log_n_cap - 1.5)  # NWJ's objective has no log B cap


@pytest.mark.parametrize("estimator", ["nwj", "mine", "smile", "js"])
def test_every_estimator_runs_and_is_roughly_right(estimator):
    x, y = gaussian_pairs(600, 1, 0.5)
    est = estimate_mi(x, y, estimator=estimator, max_steps=150, progress=False, random_state=0)
    assert est.estimator == estimator
    assert abs(est.value - 0.5) < 0.25


def test_tensor_and_numpy_inputs_agree_and_seed_reproduces():
    x, y = gaussian_pairs(400, 2, 0.5)
    a = estimate_mi(x, y, max_steps=60, progress=False, random_state=3)
    b = estimate_mi(
        torch.from_numpy(x).float(),
        torch.from_numpy(y),
        max_steps=60,
        progress=False,
        random_state=3,
    )
    assert a.value == pytest.approx(b.value, abs=1e-5)


def test_custom_critic_and_concat():
    x, y = gaussian_pairs(400, 1, 0.5)
    est = estimate_mi(x, y, critic=ConcatCritic(1, 1, hidden=16), max_steps=50, progress=False)
    assert math.isfinite(est.value)
    est = estimate_mi(x, y, critic="concat", hidden=16, max_steps=50, progress=False)
    assert est.log_n_cap == pytest.approx(math.log(120))


def test_rank_standardization_is_invariant_to_monotone_maps():
    x, y = gaussian_pairs(500, 1, 0.5)
    a = estimate_mi(x, y, max_steps=50, progress=False, random_state=0)
    b = estimate_mi(np.exp(x), y**3, max_steps=50, progress=False, random_state=0)
    assert a.value == pytest.approx(b.value, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(y=np.zeros((9, 1)) + np.arange(9)[:, None]), r"x has 10 rows but y has 9"),
        (dict(x=np.ones(1), y=np.ones(1)), r"at least 2 rows"),
        (dict(x=np.arange(4.0), y=np.arange(4.0)), r"at least 2 training and 2 held-out"),
        (dict(x=np.c_[np.arange(10.0), np.ones(10)]), r"x column 1 is constant"),
        (dict(x=np.r_[np.arange(9.0), np.nan]), r"x contains 1 NaN"),
        (dict(estimator="mutual"), r"estimator must be one of"),
        (dict(critic="bilinear"), r"critic must be one of"),
        (dict(validation_fraction=1.0), r"validation_fraction must lie in \(0, 1\)"),
        (dict(lr=0.0), r"lr must be a finite number > 0"),
        (dict(random_state=-1), r"random_state must be >= 0"),
        (dict(random_state="0"), r"random_state must be None, an int or a torch.Generator"),
        (dict(standardize="robust"), r"standardize must be one of"),
        (dict(batch_size=1), r"batch_size must be >= 2"),
        (dict(max_steps=0), r"max_steps must be >= 1"),
        (dict(x=np.zeros((10, 2, 2))), r"x must be 1-D or 2-D"),
        (dict(x=np.array(["a"] * 10)), r"x must hold numbers"),
        (dict(random_state=2**64), r"random_state must be below 2\*\*64"),
        (
            dict(x=np.arange(10.0) * 1e39, standardize="none"),
            r"x column 0 has values beyond float32",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:x column 0 has root mean square")
def test_estimate_rejects_bad_input(kwargs, message):
    args = dict(x=np.arange(10.0), y=np.arange(10.0)[::-1].copy())
    args.update(kwargs)
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises((ValueError, TypeError), match=message):
        estimate_mi(x, y, progress=False, **args)


def test_log_n_cap_bounds_infonce_on_uneven_blocks():
    # Five held-out rows in blocks of 3 and 2: the cap is the size-weighted mean of log M_b.
    x = np.arange(20.0)
    est = estimate_mi(
        x, x.copy(), critic=DistanceCritic(1e3), validation_fraction=0.25, eval_batch_size=4,
        max_steps=1, standardize="none", progress=False, random_state=0,
    )  # fmt: skip
    assert est.n_valid == 5
    assert est.log_n_cap == pytest.approx(0.6 * math.log(3) + 0.4 * math.log(2))
    assert est.value <= est.log_n_cap + 1e-9


# Standardization: nothing lost silently.

QUICK = dict(max_steps=20, eval_every=10, progress=False, random_state=0)


def test_zscore_refuses_a_column_it_would_collapse():
    # One value near the float64 maximum: the z-scores of the 599 others agree to 1e-308 and
    # merge, so the column would carry nothing (the estimate came out as 0 with no word).
    x, y = gaussian_pairs(600, 1, 1.0)
    x[5, 0] = 1.7e308
    with pytest.raises(ValueError, match=r"standardize='zscore' merges the values of x column 0"):
        estimate_mi(x, y, standardize="zscore", **QUICK)
    assert estimate_mi(x, y, **QUICK).value > 0.3  # rank standardization keeps the information


def test_zscore_of_huge_values_does_not_overflow():
    x, y = gaussian_pairs(600, 1, 1.0)
    torch.testing.assert_close(
        zscore(torch.from_numpy(x * 1e306)), zscore(torch.from_numpy(x)), rtol=1e-12, atol=1e-12
    )
    huge = estimate_mi(x * 1e306, y, standardize="zscore", **QUICK)
    plain = estimate_mi(x, y, standardize="zscore", **QUICK)
    assert huge.value == pytest.approx(plain.value, abs=1e-4)


def test_none_refuses_a_column_float32_cannot_resolve():
    x, y = gaussian_pairs(400, 1, 1.0)
    nearly_constant = 1 + 1e-9 * x
    with (
        pytest.raises(ValueError, match=r"standardize='none' merges the values of x column 0"),
        pytest.warns(UserWarning, match=r"standard deviation 9\.9\de-10"),
    ):
        estimate_mi(nearly_constant, y, standardize="none", **QUICK)
    # zscore and rank see through the offset
    assert estimate_mi(nearly_constant, y, standardize="zscore", **QUICK).value == pytest.approx(
        estimate_mi(x, y, standardize="zscore", **QUICK).value, abs=1e-4
    )


@pytest.mark.filterwarnings("ignore:the held-out estimate is")
def test_none_warns_about_columns_far_from_unit_scale():
    x, y = gaussian_pairs(400, 2, 1.0)
    with pytest.warns(UserWarning, match=r"y column 1 .* standardize='none'"):
        estimate_mi(x, y * [1.0, 1e5], standardize="none", **QUICK)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate_mi(x, y, standardize="none", **QUICK)


def test_an_estimate_below_zero_warns():
    x, y = gaussian_pairs(400, 1, 2.0)
    with pytest.warns(UserWarning, match=r"below 0 .* mutual information is never negative"):
        backwards = DistanceCritic(-50.0)  # scores the true partner lowest
        est = estimate_mi(x, y, critic=backwards, max_steps=1, lr=1e-8, progress=False)
    assert est.value < 0


def test_rank_standardization_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(0)
    a = np.c_[
        rng.standard_normal(2000), np.round(rng.standard_normal(2000), 1), rng.integers(0, 4, 2000)
    ]
    ranks = average_ranks(torch.from_numpy(a)).numpy()
    np.testing.assert_array_equal(ranks, stats.rankdata(a, axis=0))
    want = special.ndtri((stats.rankdata(a, axis=0) - 0.5) / len(a))
    got = normal_scores(torch.from_numpy(a)).numpy()
    # torch's and scipy's ndtri agree to a few float64 ulps, and exactly in the float32 the
    # critic sees
    np.testing.assert_array_max_ulp(got, want, maxulp=4)
    np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32))


# Names, the estimator table and random states.


def test_old_keywords_warn_and_still_work():
    x, y = gaussian_pairs(300, 1, 0.5)
    new = estimate_mi(x, y, lr=1e-3, validation_fraction=0.4, **QUICK)
    with pytest.warns(DeprecationWarning, match=r"learning_rate= is deprecated.*use lr="):
        old = estimate_mi(x, y, learning_rate=1e-3, validation_fraction=0.4, **QUICK)
    assert old.value == new.value
    with pytest.warns(DeprecationWarning, match=r"valid_fraction= is deprecated.*validation_frac"):
        old = estimate_mi(x, y, lr=1e-3, valid_fraction=0.4, **QUICK)
    assert old.value == new.value and old.n_valid == 120
    with pytest.raises(TypeError, match="got both lr= and its old name learning_rate="):
        estimate_mi(x, y, lr=1e-3, learning_rate=1e-3, **QUICK)


def test_infonce_bound_is_a_deprecated_alias():
    s = scores()
    with pytest.warns(DeprecationWarning, match="use info_nce_bound"):
        old = infonce_bound(s)
    assert torch.equal(old, info_nce_bound(s))


def test_info_nce_is_an_alias_of_infonce():
    x, y = gaussian_pairs(300, 1, 0.5)
    alias = estimate_mi(x, y, estimator="info_nce", **QUICK)
    assert alias.estimator == "infonce"
    assert alias.value == estimate_mi(x, y, estimator="infonce", **QUICK).value


@pytest.mark.parametrize("name", [n for n in ESTIMATORS if not get_estimator(n).telescoping])
def test_each_estimators_influence_averages_to_its_held_out_bound(name):
    record = get_estimator(name)
    s = scores(n=9).detach()
    value, psi = record.influence(s, 1.5)
    assert value == pytest.approx(float(record.held_out_bound(s, 1.5)), abs=1e-12)
    assert float(psi.mean()) == pytest.approx(value, abs=1e-12)


def test_random_state_generator_and_global_generator_untouched():
    x, y = gaussian_pairs(300, 1, 0.5)
    before = torch.random.get_rng_state()
    options = dict(max_steps=20, eval_every=10, progress=False)
    a = estimate_mi(x, y, random_state=torch.Generator().manual_seed(5), **options)
    b = estimate_mi(x, y, random_state=torch.Generator().manual_seed(5), **options)
    assert a.value == b.value
    assert torch.equal(before, torch.random.get_rng_state())
