"""The streaming frequency estimator (Yi et al. 2019, Algorithm 1) and the log-Q correction it
feeds: on a Zipf catalog the corrected in-batch softmax has the full softmax's expected gradient."""

import math

import pytest
import torch

import nce
from nce.retrieval.frequency import FrequencyEstimator

V, EXPONENT = 1000, 1.1


def _zipf():
    p = torch.arange(1, V + 1, dtype=torch.float64) ** -EXPONENT
    return p / p.sum()


def _stream(p, batch, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(p.expand(steps, V), batch, replacement=True, generator=g)


def _trained(p, batch, steps, lr):
    estimator = FrequencyEstimator(2 * V, lr=lr)
    for step, ids in enumerate(_stream(p, batch, steps)):
        estimator.update(ids, step)
    return estimator


def test_converges_to_the_expected_count_per_batch():
    p, batch = _zipf(), 64
    estimator = _trained(p, batch, 3000, lr=0.01)
    want = batch * p[:100]  # the 100 most frequent items: 13 down to 0.04 per batch
    got = estimator.log_q(torch.arange(100)).double().exp()
    relative = ((got - want) / want).abs()
    assert relative.max() < 0.25 and relative.mean() < 0.08, (relative.max(), relative.mean())
    # another batch size scales the expected count
    torch.testing.assert_close(estimator.log_q(torch.arange(5), 128) - math.log(2),
                               estimator.log_q(torch.arange(5)))  # fmt: skip


def _sequential(ids_per_step, num_buckets, lr):
    """Yi et al.'s loop, one occurrence at a time; c occurrences of a bucket in one step are
    spread evenly over the steps since it was last seen."""
    last, gap, first = {}, {}, None
    for step, ids in ids_per_step:
        first = step if first is None else first
        counts = {}
        for i in ids.tolist():
            counts[i % num_buckets] = counts.get(i % num_buckets, 0) + 1
        for h, c in counts.items():
            since = step - last[h] if h in last else step - first + 1
            b = gap.get(h, since / c)
            for _ in range(c):
                b = (1 - lr) * b + lr * since / c
            gap[h], last[h] = b, step
    return gap


def test_vectorized_update_equals_the_sequential_loop_whatever_the_order():
    g = torch.Generator().manual_seed(1)
    batches = [(s * 2 + (s > 3), torch.randint(0, 40, (25,), generator=g)) for s in range(12)]
    a, b = FrequencyEstimator(16, lr=0.2), FrequencyEstimator(16, lr=0.2)
    for step, ids in batches:
        a.update(ids, step)
        b.update(ids.flip(0), step)
    want = _sequential(batches, 16, 0.2)
    for h, value in want.items():
        assert math.isclose(float(a.gap[h]), value, rel_tol=1e-12)
    assert torch.equal(a.gap, b.gap)


def test_state_dict_round_trip_resumes_exactly():
    g = torch.Generator().manual_seed(2)
    a = FrequencyEstimator(50, lr=0.05)
    for step in range(10):
        a.update(torch.randint(0, 80, (30,), generator=g), step)
    b = FrequencyEstimator(50, lr=0.05)
    b.load_state_dict(a.state_dict())
    more = torch.randint(0, 80, (30,), generator=g)
    a.update(more, 12)
    b.update(more, 12)
    ids = torch.arange(80)
    assert torch.equal(a.log_q(ids), b.log_q(ids)) and torch.equal(a.log_q(ids, 7), b.log_q(ids, 7))


def test_unseen_ids_count_as_seen_once_so_far():
    estimator = FrequencyEstimator(10)
    for step in range(4):
        estimator.update(torch.tensor([1, 2]), step)
    assert math.isclose(float(estimator.log_q(torch.tensor([5]))), -math.log(4), rel_tol=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda e: e.update(torch.tensor([-1]), 0), "ids must be >= 0, got -1"),
        (lambda e: e.update(torch.tensor([0.5]), 0), "ids must have an integer dtype"),
        (
            lambda e: (e.update(torch.tensor([1]), 5), e.update(torch.tensor([1]), 4)),
            "step must not decrease: got 4 after 5",
        ),  # fmt: skip
        (lambda e: e.log_q(torch.tensor([1])), "has seen no batch yet"),
        (lambda e: FrequencyEstimator(10, lr=1.0), r"lr must be in \(0, 1\), got 1.0"),
        (lambda e: FrequencyEstimator(0), "num_buckets"),
    ],
)
def test_bad_inputs(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(FrequencyEstimator(10))


def _mean_item_gradient(p, scores, log_q, batch, batches, seed=0):
    """Mean over batches of the in-batch softmax's gradient with respect to the item scores.

    Item j has embedding e_j and score s_j = <u, e_j>; every row of the batch is the query u.
    With normalize=False the gradient with respect to key c is (sum_i G_ic) u, so the gradient
    with respect to the score of the item in column c is <dL/dk_c, u> / <u, u>.
    """
    g = torch.Generator().manual_seed(9)
    u = torch.randn(8, generator=g, dtype=torch.float64)
    items_embedding = torch.randn(V, 8, generator=g, dtype=torch.float64)
    # shift each embedding along u so that its score is exactly scores[j]
    items_embedding += ((scores - items_embedding @ u) / (u @ u)).unsqueeze(1) * u
    total = torch.zeros(V, dtype=torch.float64)
    query = u.expand(batch, 8)
    for items in _stream(p, batch, batches, seed):
        keys = items_embedding[items].requires_grad_()
        loss = nce.info_nce(
            query, keys, normalize=False, temperature=1.0,
            log_q=None if log_q is None else log_q[items],
        )  # fmt: skip
        (grad,) = torch.autograd.grad(loss, keys)
        total.index_add_(0, items, grad @ u / (u @ u))
    return total / batches


def test_corrected_batch_softmax_has_the_full_softmax_gradient_in_expectation():
    # Full softmax, positive y ~ p: E[dL/ds_j] = softmax(s)_j - p_j. The batch softmax whose
    # columns are a batch of B items drawn from p, each logit corrected by log(B p_j), has the
    # same expected gradient up to Monte Carlo noise and an O(1/B) ratio-estimator bias. Compared
    # by popularity class (per-item noise on the rare items is large) and item by item on the top.
    p, batch, batches = _zipf(), 256, 1000
    scores = torch.randn(V, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    full = torch.softmax(scores, 0) - p
    corrected = _mean_item_gradient(p, scores, torch.log(batch * p), batch, batches)
    plain = _mean_item_gradient(p, scores, None, batch, batches)

    def by_popularity(g):  # gradient mass of the items ranked 1, 2-10, 11-100, 101-1000
        return torch.stack([g[a:b].sum() for a, b in ((0, 1), (1, 10), (10, 100), (100, V))])

    error = (by_popularity(corrected) - by_popularity(full)).abs().max()
    plain_error = (by_popularity(plain) - by_popularity(full)).abs().max()
    top = (corrected[:20] - full[:20]).abs().max()
    # measured: 0.006 and 0.0003 corrected, 0.67 and 0.26 uncorrected
    assert error < 0.01 and top < 0.002, (error, top)
    assert plain_error > 0.1, plain_error  # without the correction it does not match


def test_correction_lowers_popular_items():
    # With equal scores, each row's loss is log Q of its positive plus a constant: the popular
    # positive's logit is lowered the most, and as a negative it is pushed down least.
    p, batch = _zipf(), 64
    estimator = _trained(p, batch, 500, lr=0.05)
    items = torch.tensor([0, 10, 100, 900])  # most to least popular
    log_q = estimator.log_q(items).double()
    assert (log_q.diff() < 0).all()  # popular items have the larger expected count
    query = torch.ones(4, 3, dtype=torch.float64, requires_grad=True)
    keys = torch.ones(4, 3, dtype=torch.float64)
    loss = nce.info_nce(query, keys, normalize=False, log_q=log_q, reduction="none")
    assert (loss.diff() < 0).all()  # the popular positive's row has the largest loss
    wrong_sign = nce.info_nce(query, keys, normalize=False, log_q=-log_q, reduction="none")
    assert (wrong_sign.diff() > 0).all()  # adding log Q instead favours popular items
