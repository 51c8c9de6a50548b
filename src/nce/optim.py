r"""Adam for models whose embeddings have sparse gradients: one optimizer for every parameter.

An output layer over V classes trained by sampling (:class:`nce.output.NCEOutput`) reads only the
rows of the targets and the noise classes, so with ``sparse=True`` its gradient holds those rows
alone. A dense Adam step would still read and write all V rows of the weights and of both moment
buffers, an O(V·D) pass that costs more than the sampled forward and backward together.
:class:`LazyAdam` takes the model's parameters as they come:

* a dense gradient gets the Adam update of :class:`torch.optim.Adam` (Kingma & Ba 2015,
  arXiv:1412.6980), computed by the same code (its fused kernel, ``fused=True``, one pass over
  the weights and moments):

  .. math:: m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,
            \quad \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}
            \frac{m}{\sqrt{v / (1-\beta_2^t)} + \epsilon};

* a sparse gradient (rows :math:`R` read this step) gets the same update on the rows of
  :math:`R` alone — their parameters and their two moments — and leaves every other row, and its
  moments, untouched: the "lazy" Adam of TensorFlow's ``LazyAdamOptimizer`` and of
  :class:`torch.optim.SparseAdam`, with one step count :math:`t` per parameter tensor. A step whose
  gradient reads every row is exactly the dense Adam step.

The lazy update differs from dense Adam only in rows not read, where dense Adam keeps moving the
weights by their decaying momentum; large-vocabulary language models train this way (Jozefowicz
et al. 2016, arXiv:1602.02410).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.adam import adam

__all__ = ["LazyAdam", "clip_grad_norm_"]


class LazyAdam(torch.optim.Optimizer):
    r"""Adam that updates only the rows a sparse gradient holds, and every parameter with a dense
    one: pass all of a model's parameters, sparse embeddings and dense weights alike. For each
    row :math:`r` of the rows :math:`R` read this step (every entry for a dense gradient):

    .. math:: m_r \leftarrow \beta_1 m_r + (1-\beta_1) g_r,\quad
              v_r \leftarrow \beta_2 v_r + (1-\beta_2) g_r^2,\quad
              \theta_r \leftarrow \theta_r - \frac{\eta}{1-\beta_1^t}
              \frac{m_r}{\sqrt{v_r / (1-\beta_2^t)} + \epsilon}.

    Args:
        params: the parameters (or parameter groups) to optimize.
        lr: the learning rate :math:`\eta`.
        betas: :math:`(\beta_1, \beta_2)`, the moments' decay rates.
        eps: :math:`\epsilon`, added to the bias-corrected root of the second moment.

    Shape:
        - a sparse gradient of a (V, D) parameter holds R rows (repeated rows are summed); the step
          costs O(R·D) for it, dense gradients O(numel) as in :class:`torch.optim.Adam`.

    References:
        Kingma & Ba (2015), arXiv:1412.6980 (Adam); Jozefowicz et al. (2016), arXiv:1602.02410
        (sparse updates for large-vocabulary language models).

    The state (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter) has the layout of
    :class:`torch.optim.Adam`'s.

    Example:
        >>> import torch
        >>> from nce.output import NCEOutput
        >>> layer = NCEOutput(1000, 32, noise=torch.arange(1000, 0, -1), num_samples=25,
        ...                   sparse=True)
        >>> optimizer = LazyAdam(layer.parameters(), lr=1e-3)
        >>> layer(torch.randn(8, 32), torch.randint(0, 1000, (8,))).backward()
        >>> optimizer.step()
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr must be a number > 0, got {lr!r}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if not (isinstance(eps, (int, float)) and eps >= 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        super().__init__(params, {"lr": float(lr), "betas": tuple(betas), "eps": float(eps)})

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps, scatters = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                param, m, v, grad = p, state["exp_avg"], state["exp_avg_sq"], p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, grad = grad.indices()[0], grad.values()
                    param, m, v = (t.index_select(0, rows) for t in (p, m, v))
                    whole = (p, state["exp_avg"], state["exp_avg_sq"])
                    scatters.append((rows, zip(whole, (param, m, v), strict=True)))
                params.append(param)
                grads.append(grad)
                exp_avgs.append(m)
                exp_avg_sqs.append(v)
                steps.append(state["step"])
            if not params:
                continue
            beta1, beta2 = group["betas"]
            adam(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=0.0,
                eps=group["eps"],
                maximize=False,
                fused=all(p.device.type in ("cpu", "cuda") for p in params) or None,
            )
            for rows, pairs in scatters:
                for whole, part in pairs:
                    whole.index_copy_(0, rows, part)
        return loss


@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    r"""Scale the gradients so that their joint Euclidean norm is at most ``max_norm``, as
    :func:`torch.nn.utils.clip_grad_norm_` does, sparse gradients included (each is coalesced
    first, so a row read twice counts once, with its summed gradient):

    .. math:: g \leftarrow g \cdot \min\Big(1, \frac{c}{\lVert (g_1, \dots, g_P) \rVert_2
              + 10^{-6}}\Big).

    Args:
        parameters: the parameters whose ``.grad`` is clipped in place.
        max_norm: c, the largest joint norm kept.

    Shape:
        - each gradient: the shape of its parameter, dense or sparse (rows of a (V, D) table)
        - output: () (0-dim)

    Returns:
        The joint norm before clipping, a 0-dim tensor.

    References:
        Pascanu, Mikolov & Bengio (2013), arXiv:1211.5063 (gradient clipping by norm).
    """
    parameters = [p for p in parameters if p.grad is not None]
    if not any(p.grad.is_sparse for p in parameters):
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    for p in parameters:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    values = [p.grad.values() if p.grad.is_sparse else p.grad for p in parameters]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in values]))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:  # torch multiplies by the clamped 1.0 otherwise: the same gradients
        for g in values:
            g.mul_(scale)
    return total
