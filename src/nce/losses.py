r"""Module wrappers of :mod:`nce.functional`: they hold hyperparameters and learned parameters.

As :class:`torch.nn.CrossEntropyLoss` wraps :func:`torch.nn.functional.cross_entropy`, each module
here validates its hyperparameters at construction and calls its function in ``forward``.

A learnable temperature is stored as a log scale :math:`\log(1/\tau)` and clamped to at most
``log(max_scale)`` (CLIP, Radford et al. 2021, arXiv:2103.00020, uses a maximum scale of 100).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nce._validation import check_in_range, check_int, check_positive, check_reduction
from nce.functional import (
    binary_nce,
    debiased_info_nce,
    info_nce,
    nt_xent,
    pairwise_nce,
    soft_info_nce,
    supervised_info_nce,
)
from nce.functional._common import upcast


class Temperature(nn.Module):
    r"""A temperature :math:`\tau`, fixed or learned as a clamped log scale.

    ``forward()`` returns :math:`\tau = 1/\exp(\min(\log s, \log s_{max}))` where :math:`\log s` is
    the parameter ``log_scale`` (learned) or a buffer (fixed).

    Shape:
        - output: () (a scalar tensor)

    References:
        Radford et al. 2021, CLIP, arXiv:2103.00020 (the learned log scale, clamped at 100).

    Example:
        >>> t = Temperature(0.07, learnable=True)
        >>> round(t().item(), 4)
        0.07
    """

    def __init__(self, temperature: float, learnable: bool = False, max_scale: float = 100.0):
        super().__init__()
        check_positive("temperature", temperature)
        check_positive("max_scale", max_scale)
        if 1.0 / temperature > max_scale:
            raise ValueError(
                f"temperature {temperature} is below 1 / max_scale = {1.0 / max_scale:.6g}"
            )
        log_scale = torch.tensor(-math.log(temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.max_log_scale = math.log(max_scale)

    def forward(self) -> torch.Tensor:
        r"""The temperature :math:`\tau`, a scalar tensor of shape ()."""
        return torch.exp(-self.log_scale.clamp(max=self.max_log_scale))

    def extra_repr(self) -> str:
        learn = isinstance(self.log_scale, nn.Parameter)
        return f"temperature={self().item():.4g}, learnable={learn}"


class _ContrastiveLoss(nn.Module):
    """Holds the temperature (a :class:`Temperature`: ``learn_temperature`` and ``max_scale`` are
    the module's own options, beyond its function's) and the reduction."""

    def __init__(self, temperature, learn_temperature, max_scale, reduction):
        super().__init__()
        check_reduction(reduction)
        self.temperature = Temperature(temperature, learn_temperature, max_scale)
        self.reduction = reduction


class InfoNCE(_ContrastiveLoss):
    r"""Module form of :func:`nce.info_nce`: its keyword options are constructor arguments; the
    per-batch tensors are arguments of ``forward(query, key, negatives=None, *, log_q=None,
    key_ids=None, negative_ids=None)``. ``learn_temperature`` and ``max_scale`` describe the
    :class:`Temperature` module that holds ``temperature``.

    .. math:: \ell_i = \log \sum_{c \in C_i} e^{s_{ic}} - s_{ii},
              \qquad s = \langle q, k\rangle / \tau,

    over the columns :math:`C_i` query i scores (see :func:`nce.info_nce`, which also gives the
    ``log_q`` correction).

    Shape:
        - query, key: (N, D)
        - negatives: (M, D) shared or (N, K, D) per query
        - output: () or (N,) for reduction="none"

    References:
        van den Oord, Li & Vinyals 2018, CPC, arXiv:1807.03748.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        learn_temperature: bool = False,
        max_scale: float = 100.0,
        normalize: bool = True,
        symmetric: bool = False,
        reduction: str = "mean",
        chunk_size: int | None = None,
        gather: bool = False,
        in_batch: bool = False,
        remove_accidental_hits: bool = False,
    ):
        super().__init__(temperature, learn_temperature, max_scale, reduction)
        self.normalize, self.symmetric, self.chunk_size = normalize, symmetric, chunk_size
        self.gather, self.in_batch = gather, in_batch
        self.remove_accidental_hits = remove_accidental_hits

    def forward(self, query, key, negatives=None, *, log_q=None, key_ids=None, negative_ids=None):
        """:func:`nce.info_nce` of the batch with this module's options (shapes above)."""
        return info_nce(
            query,
            key,
            negatives,
            temperature=self.temperature(),
            normalize=self.normalize,
            symmetric=self.symmetric,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
            gather=self.gather,
            in_batch=self.in_batch,
            log_q=log_q,
            remove_accidental_hits=self.remove_accidental_hits,
            key_ids=key_ids,
            negative_ids=negative_ids,
        )


class CLIPLoss(InfoNCE):
    r"""CLIP's symmetric InfoNCE (:func:`nce.info_nce` with ``symmetric=True``) with a learned
    temperature (initial 0.07, maximum scale 100): ``forward(query, key, *, key_ids=None)``.
    It takes :class:`InfoNCE`'s options except those the symmetric loss does not define
    (``symmetric`` itself, explicit negatives with ``in_batch``, and ``log_q``).

    .. math:: \ell = \tfrac12\big(\ell^{q \to k} + \ell^{k \to q}\big),

    the mean of the in-batch InfoNCE losses of the queries against the keys and of the keys
    against the queries.

    Shape:
        - query, key: (N, D)
        - output: () or (N,) for reduction="none"

    References:
        Radford et al. 2021, CLIP, arXiv:2103.00020.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        *,
        learn_temperature: bool = True,
        max_scale: float = 100.0,
        normalize: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
        gather: bool = False,
        remove_accidental_hits: bool = False,
    ):
        super().__init__(
            temperature,
            learn_temperature=learn_temperature,
            max_scale=max_scale,
            normalize=normalize,
            symmetric=True,
            reduction=reduction,
            chunk_size=chunk_size,
            gather=gather,
            remove_accidental_hits=remove_accidental_hits,
        )

    def forward(self, query, key, *, key_ids=None):
        """The symmetric loss of the batch: query (N, D), key (N, D)."""
        return super().forward(query, key, key_ids=key_ids)


class NTXent(_ContrastiveLoss):
    r"""Module form of :func:`nce.nt_xent`; ``forward(view1, view2)``.

    .. math:: \ell_i = \log\sum_{j \ne i} e^{z_i \cdot z_j/\tau} - z_i \cdot z_{t(i)}/\tau

    over the 2N L2-normalized views, :math:`t(i)` the twin of view i.

    Shape:
        - view1, view2: (N, D)
        - output: () or (2N,) for reduction="none"

    References:
        Chen et al. 2020, SimCLR, arXiv:2002.05709.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        *,
        learn_temperature: bool = False,
        max_scale: float = 100.0,
        reduction: str = "mean",
        chunk_size: int | None = None,
        gather: bool = False,
    ):
        super().__init__(temperature, learn_temperature, max_scale, reduction)
        self.chunk_size, self.gather = chunk_size, gather

    def forward(self, view1, view2):
        """:func:`nce.nt_xent` of the two views (shapes above)."""
        return nt_xent(
            view1,
            view2,
            temperature=self.temperature(),
            reduction=self.reduction,
            chunk_size=self.chunk_size,
            gather=self.gather,
        )


class SupervisedInfoNCE(_ContrastiveLoss):
    r"""Module form of :func:`nce.supervised_info_nce`; ``forward(embeddings, labels)``.

    .. math:: \ell_i = \log\sum_{a \ne i} e^{s_{ia}}
              - \frac{1}{|P(i)|}\sum_{p \in P(i)} s_{ip}, \qquad s = z z^\top / \tau,

    with :math:`P(i)` the other rows of row i's label.

    Shape:
        - embeddings: (N, D)
        - labels: (N,)
        - output: () or (N,) for reduction="none"

    References:
        Khosla et al. 2020, Supervised Contrastive Learning, arXiv:2004.11362.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        learn_temperature: bool = False,
        max_scale: float = 100.0,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ):
        super().__init__(temperature, learn_temperature, max_scale, reduction)
        self.chunk_size = chunk_size

    def forward(self, embeddings, labels):
        """:func:`nce.supervised_info_nce` of the batch (shapes above)."""
        return supervised_info_nce(
            embeddings,
            labels,
            temperature=self.temperature(),
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )


class DebiasedInfoNCE(_ContrastiveLoss):
    r"""Module form of :func:`nce.debiased_info_nce`; ``forward(query, key)``.

    .. math:: \ell_i = \log\big(e^{s_{ii}} + N_g(i)\big) - s_{ii}, \qquad s = q k^\top / t,

    with :math:`N_g(i)` the debiased (``tau_plus``), hardness-weighted (``beta``) mass of the
    N - 1 in-batch negatives given in :func:`nce.debiased_info_nce`.

    Shape:
        - query, key: (N, D)
        - output: () or (N,) for reduction="none"

    References:
        Chuang et al. 2020, Debiased Contrastive Learning, arXiv:2007.00224;
        Robinson et al. 2021, Contrastive Learning with Hard Negative Samples, arXiv:2010.04592.
    """

    def __init__(
        self,
        tau_plus: float,
        beta: float = 0.0,
        temperature: float = 0.5,
        *,
        learn_temperature: bool = False,
        max_scale: float = 100.0,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ):
        super().__init__(temperature, learn_temperature, max_scale, reduction)
        check_in_range("tau_plus", tau_plus, 0.0, 1.0)
        check_in_range("beta", beta, 0.0, math.inf)
        self.tau_plus, self.beta, self.chunk_size = tau_plus, beta, chunk_size

    def forward(self, query, key):
        """:func:`nce.debiased_info_nce` of the batch (shapes above)."""
        return debiased_info_nce(
            query,
            key,
            tau_plus=self.tau_plus,
            beta=self.beta,
            temperature=self.temperature(),
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )


class SoftInfoNCE(_ContrastiveLoss):
    r"""Module form of :func:`nce.soft_info_nce`; ``forward(query, key, targets)``.

    .. math:: \ell_i = \log\sum_l e^{s_{il}} - \sum_j t_{ij} s_{ij}, \qquad s = q k^\top/\tau.

    Shape:
        - query: (N, D), key: (M, D), targets: (N, M)
        - output: () or (N,) for reduction="none"

    References:
        Li et al. 2021, ALBEF (contrastive loss against soft targets), arXiv:2107.07651.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        learn_temperature: bool = False,
        max_scale: float = 100.0,
        normalize: bool = True,
        reduction: str = "mean",
    ):
        super().__init__(temperature, learn_temperature, max_scale, reduction)
        self.normalize = normalize

    def forward(self, query, key, targets):
        """:func:`nce.soft_info_nce` of the batch (shapes above)."""
        return soft_info_nce(
            query,
            key,
            targets,
            temperature=self.temperature(),
            normalize=self.normalize,
            reduction=self.reduction,
        )


class BinaryNCE(nn.Module):
    r"""Module form of :func:`nce.binary_nce` for an unnormalized model with a log-partition.

    ``forward(model_data, noise_data, model_noise, noise_noise)`` takes the model's
    *unnormalized* log densities :math:`f(u)` and uses :math:`\log p_m = f - \log Z`, where
    :math:`\log Z` is the parameter ``log_z`` (``log_z="learned"``, initialised at 0) or a fixed
    number (0 is self-normalization):

    .. math:: \ell = -\frac{1}{N}\Big[\sum_i \log\sigma(G(x_i)) + \sum_j \log\sigma(-G(y_j))\Big],
              \qquad G(u) = f(u) - \log Z - \log\nu - \log p_n(u).

    Shape:
        - model_data, noise_data: (N,)
        - model_noise, noise_noise: (N, K) or (M,)
        - output: () or (N,) for reduction="none"

    References:
        Gutmann & Hyvärinen 2012, JMLR 13:307 (self-normalization: Mnih & Teh 2012,
        arXiv:1206.6426).

    Example:
        >>> loss = BinaryNCE()  # log Z learned
        >>> [name for name, _ in loss.named_parameters()]
        ['log_z']
    """

    def __init__(
        self,
        log_z: str | float = "learned",
        *,
        noise_ratio: float | None = None,
        reduction: str = "mean",
    ):
        super().__init__()
        check_reduction(reduction)
        if noise_ratio is not None:
            check_positive("noise_ratio", noise_ratio)
        if log_z == "learned":
            self.log_z = nn.Parameter(torch.zeros(()))
        elif (
            isinstance(log_z, (int, float)) and not isinstance(log_z, bool) and math.isfinite(log_z)
        ):
            self.register_buffer("log_z", torch.tensor(float(log_z)))
        else:
            raise ValueError(f"log_z must be 'learned' or a finite number, got {log_z!r}")
        self.noise_ratio, self.reduction = noise_ratio, reduction

    def forward(self, model_data, noise_data, model_noise, noise_noise):
        r""":func:`nce.binary_nce` with :math:`\log Z` subtracted from the model terms."""
        out_dtype = model_data.dtype
        model_data, noise_data, model_noise, noise_noise = upcast(
            model_data, noise_data, model_noise, noise_noise
        )
        log_z = self.log_z.to(model_data.dtype)
        return binary_nce(
            model_data - log_z,
            noise_data,
            model_noise - log_z,
            noise_noise,
            noise_ratio=self.noise_ratio,
            reduction=self.reduction,
        ).to(out_dtype)


class SigLIPLoss(nn.Module):
    r"""SigLIP's loss (Zhai et al. 2023, arXiv:2303.15343) with a learned temperature and bias:
    module form of :func:`nce.pairwise_nce`; ``forward(query, key, labels=None)``.

    The temperature is learned as a log scale :math:`t = \log(1/\tau)`, initialised at
    :math:`\log 10` (:math:`\tau = 0.1`) and clamped to a maximum scale of 100, as in
    :class:`CLIPLoss`; the bias :math:`b` is a parameter initialised at ``bias``.

    Why the bias matters: each pair is a binary NCE problem whose logit is
    :math:`\log p_m - \log p_n - \log Z - \log \nu`. The similarity learns the log ratio; the bias
    stands for :math:`-\log Z - \log \nu`, the prior log-odds of a positive among the N pairs of a
    query's row. While the scores are still uninformative the best constant logit is the one whose
    :math:`\sigma(b)` is the fraction of positives, :math:`1/N`: :math:`b = -\log(N - 1)
    \approx -\log N`, the start that matches the prior at any batch size (the paper's -10 matches
    it for :math:`N \approx e^{10} \approx 22{,}000`). The bias also sets which negatives are
    pushed: a negative's gradient is :math:`\sigma(s_{ij})`, and with :math:`\tau = 0.1` the scores
    lie in :math:`[b - 10, b + 10]`. At :math:`b = -10` only negatives with a cosine near 1 push
    (hard negatives) while each positive pulls with weight near 1; at :math:`b = -\log N` all N - 1
    negatives together push as hard as the positive pulls. Which start trains better is measured
    on a small two-tower model in ``BENCHMARKS.md`` ("SigLIP's bias"), at several batch sizes.

    Args:
        temperature: initial :math:`\tau > 0`, at least 1/100.
        bias: initial bias, a finite number.
        normalize, reduction, chunk_size, gather: as for :func:`nce.pairwise_nce`.

    Example:
        >>> import torch
        >>> loss = SigLIPLoss(temperature=0.1, bias=-10.0)
        >>> loss(torch.randn(256, 32), torch.randn(256, 32)).shape
        torch.Size([])
    """

    def __init__(
        self,
        temperature: float = 0.1,
        bias: float = -10.0,
        *,
        normalize: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
        gather: bool = False,
    ):
        super().__init__()
        check_reduction(reduction)
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias):
            raise ValueError(f"bias must be a finite number, got {bias!r}")
        if chunk_size is not None:
            check_int("chunk_size", chunk_size, minimum=1)
        self.temperature = Temperature(temperature, learnable=True)
        self.bias = nn.Parameter(torch.tensor(float(bias)))
        self.normalize, self.reduction = normalize, reduction
        self.chunk_size, self.gather = chunk_size, gather

    def forward(self, query, key, labels=None):
        """:func:`nce.pairwise_nce`: query, key (N, D), labels (N,) or None; output ()."""
        return pairwise_nce(
            query,
            key,
            temperature=self.temperature(),
            bias=self.bias,
            labels=labels,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
            gather=self.gather,
        )
