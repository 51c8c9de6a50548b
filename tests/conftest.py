import pytest
import torch


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def randn(*shape, dtype=torch.float64, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(requires_grad)


def grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def assert_close_grads(loss_a, loss_b, tensors_a, tensors_b, **tol):
    torch.testing.assert_close(loss_a, loss_b, **tol)
    for ga, gb in zip(grads(loss_a, *tensors_a), grads(loss_b, *tensors_b), strict=True):
        torch.testing.assert_close(ga, gb, **tol)
