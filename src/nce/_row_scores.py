r"""Scores of each context against its own rows of a table, without copying the rows out.

For hidden states :math:`h_n` and a table of rows :math:`u_m`, per-row classes
:math:`c_{n,k}` ask for the scores :math:`s_{n,k} = h_n^\top u_{c_{n,k}}`. Gathering the
:math:`N K` rows first writes an (N, K, D) copy, and its gradient another, then adds it back row by
row: memory-bound. Written with the (N, M) 0/1 pattern :math:`A_{n,m} = [m \in c_n]` as a sparse
matrix (compressed rows, K entries per row, repeats allowed), the three products are sparse ones
that read the rows in place:

.. math:: s = (H U^\top)|_A,\qquad \frac{\partial L}{\partial H} = G_A U,\qquad
          \frac{\partial L}{\partial U} = G_A^\top H,

with :math:`G_A` the gradient of the scores on the pattern: a sampled product (SDDMM) forward and
two sparse-by-dense products backward, O(N·K·D) arithmetic and no (N, K, D) tensor.
"""

from __future__ import annotations

import warnings

import torch
from torch.autograd.function import once_differentiable

SPARSE_DTYPES = (torch.float32, torch.float64)


def row_dot(hidden: torch.Tensor, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    r""":math:`s_{n,k} = h_n^\top u_{\mathrm{index}_{n,k}}`, differentiable in ``hidden`` and
    ``rows``.

    Shape:
        - hidden: (N, D); rows: (M, D) of the same dtype; index: (N, K) int64 in [0, M)
        - output: (N, K)

    The sparse products run on CPU in float32 and float64 with K ≤ M (torch's sampled product
    holds at most M entries per row); otherwise the rows are gathered.
    """
    sparse = hidden.dtype in SPARSE_DTYPES and hidden.device.type == "cpu"
    if sparse and index.shape[1] <= rows.shape[0]:
        return _RowDot.apply(hidden, rows, index)
    picked = rows.index_select(0, index.reshape(-1)).view(*index.shape, -1)
    return torch.bmm(picked, hidden.unsqueeze(-1)).squeeze(-1)


def _csr(crow, col, values, size) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


class _RowDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, rows, index):
        n, k = index.shape
        crow = torch.arange(0, n * k + 1, k, device=index.device)
        col = index.reshape(-1)
        pattern = _csr(crow, col, hidden.new_zeros(n * k), (n, rows.shape[0]))
        scores = torch.sparse.sampled_addmm(pattern, hidden, rows.T, beta=0.0).values()
        ctx.save_for_backward(hidden, rows, index)
        return scores.view(n, k)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        hidden, rows, index = ctx.saved_tensors
        n, k = index.shape
        grad = grad.contiguous().view(-1)
        col = index.reshape(-1)
        grad_hidden = grad_rows = None
        if ctx.needs_input_grad[0]:
            crow = torch.arange(0, n * k + 1, k, device=index.device)
            grad_hidden = _csr(crow, col, grad, (n, rows.shape[0])) @ rows
        if ctx.needs_input_grad[1]:
            order = torch.sort(col, stable=True).indices
            counts = torch.bincount(col, minlength=rows.shape[0])
            crow_t = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
            contexts = torch.div(order, k, rounding_mode="floor")
            grad_rows = _csr(crow_t, contexts, grad[order], (rows.shape[0], n)) @ hidden
        return grad_hidden, grad_rows, None
