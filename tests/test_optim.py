import math

import pytest
import torch
from torch import nn

from nce.optim import LazyAdam, clip_grad_norm_

V, D = 9, 3


def _pair(seed=0):
    """The same embedding and linear head twice: dense for Adam, sparse for LazyAdam."""
    torch.manual_seed(seed)
    dense = nn.Sequential(nn.Embedding(V, D), nn.Linear(D, 1)).double()
    sparse = nn.Sequential(nn.Embedding(V, D, sparse=True), nn.Linear(D, 1)).double()
    sparse.load_state_dict(dense.state_dict())
    return dense, sparse


def _loss(model, ids, seed):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(ids.shape, generator=g, dtype=torch.float64)
    return ((model(ids).squeeze(-1) - target) ** 2).sum()


def test_equals_adam_exactly_when_every_step_reads_every_row():
    dense, sparse = _pair()
    adam = torch.optim.Adam(dense.parameters(), lr=0.1, fused=True)
    lazy = LazyAdam(sparse.parameters(), lr=0.1)
    for step in range(3):
        ids = torch.randperm(V, generator=torch.Generator().manual_seed(step))
        for model, optimizer in ((dense, adam), (sparse, lazy)):
            optimizer.zero_grad()
            _loss(model, ids, step).backward()
            optimizer.step()
        for a, b in zip(dense.parameters(), sparse.parameters(), strict=True):
            assert torch.equal(a, b)
    assert sparse[0].weight.grad.is_sparse


def test_updates_the_rows_read_by_adam_with_one_step_count_and_leaves_the_rest():
    _, model = _pair()
    lr, (b1, b2), eps = 0.05, (0.9, 0.999), 1e-8
    optimizer = LazyAdam(model.parameters(), lr=lr)
    weight = model[0].weight
    theta = weight.detach().clone()
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    for t, ids in enumerate([torch.tensor([1, 4, 4]), torch.tensor([4, 7])], start=1):
        optimizer.zero_grad()
        _loss(model, ids, t).backward()
        grad = weight.grad.to_dense()  # a row read twice: its two gradients summed
        read = torch.zeros(V, dtype=torch.bool)
        read[ids] = True
        before = weight.detach().clone()
        optimizer.step()
        m[read] = b1 * m[read] + (1 - b1) * grad[read]
        v[read] = b2 * v[read] + (1 - b2) * grad[read] ** 2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        theta[read] -= lr * m_hat[read] / (v_hat[read].sqrt() + eps)
        torch.testing.assert_close(weight.detach(), theta, rtol=1e-12, atol=1e-12)
        assert torch.equal(weight[~read], before[~read])
        state = optimizer.state[weight]
        torch.testing.assert_close(state["exp_avg"], m, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(state["exp_avg_sq"], v, rtol=1e-12, atol=1e-15)
        assert state["step"].item() == t


def test_state_dict_resumes_the_same_run():
    _, a = _pair()
    _, b = _pair()
    opt_a, opt_b = LazyAdam(a.parameters(), lr=0.1), LazyAdam(b.parameters(), lr=0.1)
    for optimizer, model in ((opt_a, a), (opt_b, b)):
        optimizer.zero_grad()
        _loss(model, torch.tensor([0, 2, 2]), 0).backward()
        optimizer.step()
    resumed = LazyAdam(b.parameters(), lr=0.5)
    resumed.load_state_dict(opt_b.state_dict())
    for optimizer, model in ((opt_a, a), (resumed, b)):
        optimizer.zero_grad()
        _loss(model, torch.tensor([2, 5]), 1).backward()
        optimizer.step()
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y)


def test_clip_grad_norm_counts_a_repeated_row_once_like_the_dense_gradient():
    dense, sparse = _pair()
    ids = torch.tensor([3, 3, 5, 0])
    _loss(dense, ids, 2).backward()
    _loss(sparse, ids, 2).backward()
    norm_dense = torch.nn.utils.clip_grad_norm_(dense.parameters(), 0.01)
    norm_sparse = clip_grad_norm_(sparse.parameters(), 0.01)
    torch.testing.assert_close(norm_sparse, norm_dense)
    assert norm_dense > 0.01
    for a, b in zip(dense.parameters(), sparse.parameters(), strict=True):
        grad = b.grad.to_dense() if b.grad.is_sparse else b.grad
        torch.testing.assert_close(grad, a.grad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr must be a number > 0"),
        ({"lr": math.nan}, "lr must be a number > 0"),
        ({"betas": (0.9, 1.0)}, r"betas must be two numbers in \[0, 1\)"),
        ({"eps": -1.0}, "eps must be a finite number >= 0"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LazyAdam(nn.Linear(2, 1).parameters(), **kwargs)
