"""Every device and precision: half precision at extreme logits, and no per-tile host reads.

The in-batch losses run on the CPU here and, where a GPU is present, on CUDA too (the CUDA cases
are skipped elsewhere; CI never needs a GPU). Two properties the GPU path depends on:

* float16 and bfloat16 inputs at τ = 0.01 with near-duplicate pairs (logits near 1/τ = 100)
  give a finite loss and gradients that match the float64 loss of the same rounded inputs;
* the number of values read back to the host per forward + backward does not grow with the number
  of tiles (``chunk_size``): on CUDA each read is a device synchronization, so a read per tile
  would stall the GPU once per tile.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import nce

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="needs CUDA"))]
HALF = [torch.float16, torch.bfloat16]
TAU = 0.01
LABELS = 8


def _losses():
    """name -> loss of (a, b) with chunk_size c and temperature t (τ = 0.01 by default)."""
    return {
        "info_nce": lambda a, b, c, t=TAU: nce.info_nce(a, b, temperature=t, chunk_size=c),
        "info_nce symmetric": lambda a, b, c, t=TAU: nce.info_nce(
            a, b, temperature=t, symmetric=True, chunk_size=c
        ),
        "nt_xent": lambda a, b, c, t=TAU: nce.nt_xent(a, b, temperature=t, chunk_size=c),
        "pairwise_nce": lambda a, b, c, t=TAU: nce.pairwise_nce(
            a, b, temperature=t, chunk_size=c
        ),
        "supervised_info_nce": lambda a, b, c, t=TAU: nce.supervised_info_nce(
            torch.cat([a, b]), torch.arange(2 * a.shape[0], device=a.device) % LABELS,
            temperature=t, chunk_size=c,
        ),  # fmt: skip
        "debiased_info_nce": lambda a, b, c, t=TAU: nce.debiased_info_nce(
            a, b, tau_plus=0.1, temperature=t, chunk_size=c
        ),
    }


LOSSES = _losses()


def _near_duplicates(n: int, d: int, device, dtype, seed: int = 0):
    """Rows clustered around one direction and pairs closer still: every cosine is above 0.99,
    so at τ = 0.01 every logit, positive or negative, is near 100 (and the loss is not 0)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, d, generator=g, dtype=torch.float64)
    a = base + 0.03 * torch.randn(n, d, generator=g, dtype=torch.float64)
    b = a + 0.01 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return a.to(device, dtype), b.to(device, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("chunk", [None, 16])
def test_half_precision_at_tau_001_is_finite_and_matches_float64(device, dtype, name, chunk):
    loss_fn = LOSSES[name]
    a, b = _near_duplicates(48, 16, device, dtype)
    rows = torch.nn.functional.normalize(torch.cat([a, b]).double(), dim=1)
    assert float((rows @ rows.T).min()) / TAU > 99.0  # every logit is near 100
    a.requires_grad_()
    b.requires_grad_()
    loss = loss_fn(a, b, chunk)
    assert loss.dtype == dtype and torch.isfinite(loss)
    ga, gb = torch.autograd.grad(loss, (a, b))
    assert ga.dtype == dtype and torch.isfinite(ga).all() and torch.isfinite(gb).all()
    # the float64 loss of the same rounded inputs, on the CPU
    a64, b64 = (x.detach().cpu().double().requires_grad_() for x in (a, b))
    want = loss_fn(a64, b64, None)
    want_a, want_b = torch.autograd.grad(want, (a64, b64))
    assert float(want.detach()) > 1.0  # far from saturated: the comparison below means something
    # the half-precision result is the float32 computation rounded once to the output dtype
    torch.testing.assert_close(loss.detach().cpu().double(), want.detach(), rtol=5e-3, atol=0.0)
    scale = float(torch.cat([want_a, want_b]).abs().max())
    for got, expected in ((ga, want_a), (gb, want_b)):
        torch.testing.assert_close(
            got.cpu().double() / scale, expected / scale, rtol=0.0, atol=1e-2
        )


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", list(LOSSES))
def test_cuda_float32_matches_cpu_float64(name):
    loss_fn = LOSSES[name]
    a, b = _near_duplicates(300, 32, "cuda", torch.float32, seed=1)
    a.requires_grad_()
    b.requires_grad_()
    got = loss_fn(a, b, 64)
    ga, gb = torch.autograd.grad(got, (a, b))
    a64, b64 = (x.detach().cpu().double().requires_grad_() for x in (a, b))
    want = loss_fn(a64, b64, None)
    want_a, want_b = torch.autograd.grad(want, (a64, b64))
    torch.testing.assert_close(got.detach().cpu().double(), want.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ga.cpu().double(), want_a, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(gb.cpu().double(), want_b, rtol=1e-3, atol=1e-5)


class _HostReads(TorchDispatchMode):
    """Counts the operations that copy a tensor's value to the host (``.item()``, ``bool()``,
    ``float()``): on CUDA each one waits for the device."""

    READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.READS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _host_reads(loss_fn, chunk, device, temperature) -> int:
    a, b = _near_duplicates(512, 16, device, torch.float32, seed=2)
    a, b = a.requires_grad_(), b.requires_grad_()
    with _HostReads() as reads:
        loss_fn(a, b, chunk, temperature).backward()
    return reads.count


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("temperature", [TAU, 0.1])
def test_host_reads_do_not_grow_with_the_number_of_tiles(device, name, temperature):
    # τ = 0.01 takes the tiles with running maxima (CUDA's path at every τ); on the CPU τ = 0.1
    # takes the tiles exponentiated without maxima.
    loss_fn = LOSSES[name]
    counts = {chunk: _host_reads(loss_fn, chunk, device, temperature) for chunk in (256, 64, 16)}
    assert len(set(counts.values())) == 1, counts  # 2, 8 and 32 row blocks: the same reads
    assert counts[16] <= 6, counts  # a few per call (argument checks, the overflow check)
