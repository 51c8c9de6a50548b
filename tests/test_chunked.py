import pytest
import torch

import nce
from nce.chunked import grad_cache


def _net(dropout):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(16, 4)
    ).double()


def _loss(z1, z2):
    return nce.nt_xent(z1, z2, temperature=0.3)


def _grads(net):
    return [p.grad.clone() for p in net.parameters()]


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(13, 6, generator=g, dtype=torch.float64), torch.randn(
        13, 6, generator=g, dtype=torch.float64
    )


def test_equals_full_batch_step_without_dropout():
    x1, x2 = _inputs()
    net = _net(0.0)
    _loss(net(x1), net(x2)).backward()
    want = _grads(net)
    net.zero_grad()
    grad_cache(_loss, [(net, x1), (net, x2)], sub_batch_size=5)
    for a, b in zip(_grads(net), want, strict=True):
        torch.testing.assert_close(a, b)


def test_equals_full_batch_step_with_dropout_masks_replayed():
    # The full-batch reference draws its dropout masks sub-batch by sub-batch from the same seed,
    # in one graph; cached gradients must reproduce it exactly.
    x1, x2 = _inputs()
    net = _net(0.5)
    torch.manual_seed(42)
    z1 = torch.cat([net(c) for c in x1.split(5)])
    z2 = torch.cat([net(c) for c in x2.split(5)])
    want_loss = _loss(z1, z2)
    want_loss.backward()
    want = _grads(net)
    after_reference = torch.rand(1)
    net.zero_grad()
    torch.manual_seed(42)
    loss = grad_cache(_loss, [(net, x1), (net, x2)], sub_batch_size=5)
    torch.testing.assert_close(loss, want_loss.detach())
    for a, b in zip(_grads(net), want, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(torch.rand(1), after_reference)  # random stream continues alike


def test_batch_norm_statistics_are_updated_once_per_sub_batch():
    x1, x2 = _inputs()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8)).double()
    reference = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8)).double()
    reference.load_state_dict(net.state_dict())
    _loss(reference(x1), reference(x2)).backward()
    grad_cache(_loss, [(net, x1), (net, x2)], sub_batch_size=13)
    for name, buffer in net.named_buffers():
        torch.testing.assert_close(buffer, dict(reference.named_buffers())[name], msg=name)
    for a, b in zip(_grads(net), _grads(reference), strict=True):
        torch.testing.assert_close(a, b)


def test_frozen_encoder_unused_embeddings_and_upstream_inputs():
    x1, x2 = _inputs()
    net = _net(0.0)
    frozen = _net(0.0).requires_grad_(False)
    _loss(net(x1), frozen(x2)).backward()
    want = _grads(net)
    net.zero_grad()
    grad_cache(_loss, [(net, x1), (frozen, x2)], sub_batch_size=5)
    for a, b in zip(_grads(net), want, strict=True):
        torch.testing.assert_close(a, b)
    net.zero_grad()
    grad_cache(lambda z1, z2: z1.square().sum(), [(net, x1), (net, x2)], sub_batch_size=5)
    assert all(p.grad is not None for p in net.parameters())
    # Inputs made by an upstream graph: the gradient reaches its leaves once, whole.
    w = torch.eye(6, dtype=torch.float64, requires_grad=True)
    _loss(net(x1 @ w), net(x2 @ w)).backward()
    want_w = w.grad.clone()
    w.grad = None
    grad_cache(_loss, [(net, x1 @ w), (net, x2 @ w)], sub_batch_size=5)
    torch.testing.assert_close(w.grad, want_w)


def test_bad_arguments():
    net = _net(0.0)
    x1, x2 = _inputs()
    with pytest.raises(ValueError, match="sub_batch_size must be >= 1"):
        grad_cache(_loss, [(net, x1), (net, x2)], sub_batch_size=0)
    with pytest.raises(ValueError, match="encoders is empty"):
        grad_cache(_loss, [], sub_batch_size=2)
    with pytest.raises(TypeError, match=r"encoders\[1\] must be an \(encoder, inputs\) pair"):
        grad_cache(_loss, [(net, x1), x2], sub_batch_size=2)
    with pytest.raises(ValueError, match="scalar"):
        grad_cache(lambda a, b: torch.cat([a, b]), [(net, x1), (net, x2)], sub_batch_size=4)
