r"""Output layers over huge vocabularies that train without the full softmax.

A model over V classes scores class :math:`w` in context :math:`h` (a hidden state) as
:math:`s(w, h) = h^\top u_w + b_w`; the exact softmax needs all V scores for every context. Noise
classes :math:`\hat w_1..\hat w_K \sim q` (a smoothed unigram) replace them:

* ``loss="nce"`` — binary NCE (Mnih & Teh 2012, arXiv:1206.6426): the unnormalized
  :math:`\log p(w|h) = s(w, h) - \log Z(h)` against the noise, :math:`\nu = K`, with
  :math:`\log Z` learned (a scalar, or a linear function of the context) or fixed; fixed at 0 it
  is self-normalization (Mnih & Teh 2012; Vaswani et al. 2013).
* ``loss="ranking"`` — ranking NCE / sampled softmax (Jean et al. 2015, arXiv:1412.2007): the
  softmax over the target and the noise classes, each noise logit corrected by the log of its
  expected count, :math:`\log(K q(\hat w))`. With every other class enumerated once it is the
  exact softmax.
* ``loss="full"`` — the exact softmax, the reference.

Noise is shared by the batch (Zoph et al. 2016; Jozefowicz et al. 2016), K draws per step, or
drawn per example. The biases start at :math:`\log q(w)`, so the untrained layer is the noise
distribution itself: normalized, and every NCE logit at :math:`-\log K` (Mnih & Teh 2012).
Only the rows of the targets and the noise classes are read (an index select), never the (N, V)
logits, unless ``loss="full"``.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from nce._row_scores import row_dot
from nce._validation import check_ids, check_int, check_tensor
from nce.functional import binary_nce, info_nce
from nce.noise import Noise, Unigram

LOSSES = ("nce", "ranking", "full")


class NCEOutput(nn.Module):
    r"""An output layer over ``num_classes`` classes, trained by NCE, ranking NCE or full softmax.

    Args:
        num_classes: V.
        dim: D, the size of the hidden state.
        noise: the noise over class ids — a :class:`nce.noise.Unigram` (or any noise over ids
            with ``sample`` and ``log_prob``), or class counts, smoothed with power 0.75.
        num_samples: K, noise classes per step (shared) or per example.
        loss: "nce" | "ranking" | "full".
        shared_noise: one set of K noise classes for the whole batch (default), or K per example.
        remove_accidental_hits: for "ranking", drop noise classes equal to the target (their
            logits get the dtype's finite minimum). Refused for "nce", whose consistency needs the
            noise sample as drawn.
        log_z: for "nce": "learned" (a scalar), "context" (a linear function of the hidden state,
            :math:`\log Z(h) = h^\top a + c`) or a fixed number (0: self-normalization). The
            softmax losses normalize by themselves and have no log Z.
        sparse: sparse gradients for the output embeddings and biases (settable later as
            ``layer.sparse``): train with :class:`nce.optim.LazyAdam` over all the model's
            parameters, and the step reads and writes only the rows of the classes scored, not
            all V (``torch.optim.Adam`` refuses sparse gradients).

    Attributes:
        product_ratio: per-example noise is scored by one dense product with the M distinct
            classes drawn when M ≤ ``product_ratio`` · (K + 1), else by per-row sparse products
            (see :meth:`scores`); both give the same values and gradients.

    Shape:
        - hidden: (N, D), of the layer's dtype; targets: (N,) of any integer dtype
        - forward: () the mean training loss
        - log_prob: (N, V); log_partition, nce_log_partition: (N,)

    Binary NCE compares the model with the noise at the target, :math:`\log q(w)`: a target class
    that the noise gives probability 0 cannot be scored, and ``forward`` refuses it (smooth the
    counts, e.g. ``counts + 1``, or use a noise that covers every class).

    References:
        Mnih & Teh 2012, A fast and simple algorithm for training neural probabilistic language
        models, arXiv:1206.6426; Jean et al. 2015, On Using Very Large Target Vocabulary for
        Neural Machine Translation, arXiv:1412.2007.

    Example:
        >>> import torch
        >>> layer = NCEOutput(1000, 32, noise=torch.arange(1000, 0, -1), num_samples=25)
        >>> loss = layer(torch.randn(8, 32), torch.randint(0, 1000, (8,)))
        >>> loss.shape
        torch.Size([])
    """

    product_ratio: float = 3.0

    def __init__(
        self,
        num_classes: int,
        dim: int,
        noise,
        num_samples: int,
        loss: str = "nce",
        *,
        shared_noise: bool = True,
        remove_accidental_hits: bool = False,
        log_z: str | float = "learned",
        sparse: bool = False,
    ):
        super().__init__()
        check_int("num_classes", num_classes, minimum=2)
        check_int("dim", dim, minimum=1)
        check_int("num_samples", num_samples, minimum=1)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if remove_accidental_hits and loss == "nce":
            raise ValueError(
                "remove_accidental_hits applies to loss='ranking'; binary NCE needs the noise "
                "sample as drawn"
            )
        if not isinstance(noise, Noise):
            noise = Unigram(noise, power=0.75)
        num_noise_classes = getattr(noise, "num_classes", None)
        if num_noise_classes is not None and num_noise_classes != num_classes:
            raise ValueError(
                f"noise is over {num_noise_classes} classes but num_classes is {num_classes}"
            )
        self.num_classes, self.dim, self.num_samples = num_classes, dim, num_samples
        self.loss, self.shared_noise = loss, shared_noise
        self.remove_accidental_hits = remove_accidental_hits
        self.noise = noise
        self.embedding = nn.Embedding(num_classes, dim)
        self.bias = nn.Embedding(num_classes, 1)
        self.sparse = sparse
        nn.init.normal_(self.embedding.weight, std=dim**-0.5)
        with torch.no_grad():  # start at the noise: normalized, every NCE logit at -log K
            log_q = noise.log_prob(torch.arange(num_classes)).clamp(min=-50.0)
            self.bias.weight.copy_(log_q.to(self.bias.weight.dtype).unsqueeze(1))
        self.log_z_mode = _check_log_z(log_z) if loss == "nce" else "unused"
        if self.log_z_mode == "learned":
            self.log_z = nn.Parameter(torch.zeros(()))
        elif self.log_z_mode == "context":
            self.log_z = nn.Linear(dim, 1)
            nn.init.zeros_(self.log_z.weight)
            nn.init.zeros_(self.log_z.bias)
        elif self.log_z_mode == "fixed":
            self.register_buffer("log_z", torch.tensor(float(log_z)))

    def scores(self, hidden: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        r"""Unnormalized scores :math:`s(w, h)`: classes (K,) give (N, K), classes (N, K) give
        (N, K) (each row its own classes).

        Per-row classes are scored by whichever is cheaper for their number M of distinct
        classes: the N·K dot products of each context with its own rows (sparse products that
        read the rows in place, O(N·K·D)), or one dense product of the hidden states with the M
        distinct rows, (N, D) × (D, M), from which the N·K scores are picked (O(N·M·D) at
        matrix-product speed). The product is taken when M ≤ ``product_ratio`` · K (the
        crossover measured in BENCHMARKS.md); both give the same values and gradients. Either
        way each distinct class's row is looked up once, so a sparse gradient holds M rows.
        """
        if classes.dim() == 1:
            u, b = self.embedding(classes), self.bias(classes).squeeze(-1)
            return hidden @ u.T + b
        distinct, inverse = torch.unique(classes, return_inverse=True)
        u, b = self.embedding(distinct), self.bias(distinct).squeeze(-1)
        if distinct.numel() <= self.product_ratio * classes.shape[1]:
            return (hidden @ u.T + b).gather(1, inverse)
        return row_dot(hidden, u, inverse) + b.take(inverse)

    @property
    def sparse(self) -> bool:
        """Whether the output embeddings and biases get sparse gradients (only the rows read)."""
        return self.embedding.sparse

    @sparse.setter
    def sparse(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"sparse must be a bool, got {type(value).__name__}")
        if value and self.loss == "full":
            raise ValueError("sparse=True needs loss='nce' or 'ranking': 'full' reads every row")
        self.embedding.sparse = self.bias.sparse = value

    def nce_log_partition(self, hidden: torch.Tensor) -> torch.Tensor:
        r"""The :math:`\log Z(h)` that ``loss="nce"`` subtracts from the scores (set by ``log_z``:
        learned, a linear function of the context, or fixed), (N,); compare it with the exact
        :meth:`log_partition`."""
        if self.log_z_mode == "unused":
            raise ValueError(
                f"loss={self.loss!r} normalizes by itself and has no NCE log Z; see "
                "log_partition(hidden)"
            )
        if self.log_z_mode == "context":
            return self.log_z(hidden).squeeze(-1)
        return self.log_z.expand(hidden.shape[0])

    def log_partition_model(self, hidden: torch.Tensor) -> torch.Tensor:
        """Deprecated name of :meth:`nce_log_partition` (removed in the next release)."""
        warnings.warn(
            "NCEOutput.log_partition_model is deprecated and will be removed in the next release; "
            "use nce_log_partition",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.nce_log_partition(hidden)

    def forward(self, hidden, targets, generator: torch.Generator | None = None) -> torch.Tensor:
        """The mean training loss (shape ()) of the targets (N,) given the hidden states (N, D):
        binary NCE, ranking NCE or the full softmax cross-entropy, as ``loss`` says; the noise
        classes are drawn from ``generator``."""
        hidden, targets = self._check(hidden, targets)
        if self.loss == "nce":
            log_q_targets = self._noise_log_prob_of_targets(targets).to(hidden.dtype)
        if self.loss == "full":
            logits = hidden @ self.embedding.weight.T + self.bias.weight.squeeze(-1)
            return F.cross_entropy(logits, targets)
        shape = (self.num_samples,) if self.shared_noise else (hidden.shape[0], self.num_samples)
        noise_ids = self.noise.sample(shape, generator=generator).to(targets.device)
        if self.loss == "ranking":
            return self._ranking(hidden, targets, noise_ids)
        log_z = self.nce_log_partition(hidden)
        if self.shared_noise:
            target_scores = self.scores(hidden, targets.unsqueeze(1)).squeeze(1) - log_z
            noise_scores = self.scores(hidden, noise_ids) - log_z.unsqueeze(1)
        else:  # one lookup of the distinct classes among the targets and their noise
            classes = torch.cat([targets.unsqueeze(1), noise_ids], 1)
            both = self.scores(hidden, classes) - log_z.unsqueeze(1)
            target_scores, noise_scores = both[:, 0], both[:, 1:]
        log_q_noise = self.noise.log_prob(noise_ids).to(hidden.dtype)
        return binary_nce(
            target_scores,
            log_q_targets,
            noise_scores,
            log_q_noise.expand_as(noise_scores),
        )

    def _ranking(self, hidden, targets, noise_ids) -> torch.Tensor:
        # s(w, h) = [h, 1] · [u_w, b_w]: InfoNCE with unnormalized dot products, temperature 1.
        ones = hidden.new_ones(hidden.shape[0], 1)
        query = torch.cat([hidden, ones], 1)
        key = torch.cat([self.embedding(targets), self.bias(targets)], 1)
        negatives = torch.cat([self.embedding(noise_ids), self.bias(noise_ids)], -1)
        log_q = math.log(self.num_samples) + self.noise.log_prob(noise_ids).to(hidden.dtype)
        return info_nce(
            query,
            key,
            negatives,
            temperature=1.0,
            normalize=False,
            log_q=log_q,
            remove_accidental_hits=self.remove_accidental_hits,
            key_ids=targets,
            negative_ids=noise_ids,
        )

    def log_prob(self, hidden: torch.Tensor) -> torch.Tensor:
        """Exact normalized log-probabilities of every class, (N, V)."""
        hidden = self._check(hidden)[0]
        return torch.log_softmax(hidden @ self.embedding.weight.T + self.bias.weight.T, 1)

    def log_partition(self, hidden: torch.Tensor) -> torch.Tensor:
        r"""The exact :math:`\log Z(h) = \log\sum_w e^{s(w, h)}` of the unnormalized scores, (N,):
        near 0 when the layer self-normalizes."""
        hidden = self._check(hidden)[0]
        return torch.logsumexp(hidden @ self.embedding.weight.T + self.bias.weight.T, 1)

    def _noise_log_prob_of_targets(self, targets: torch.Tensor) -> torch.Tensor:
        r""":math:`\log q(w)` of each target, refusing a class the noise never draws."""
        log_q = self.noise.log_prob(targets)
        impossible = ~torch.isfinite(log_q)
        if bool(impossible.any()):
            classes = sorted({int(c) for c in targets[impossible]})
            shown = ", ".join(map(str, classes[:5])) + (", ..." if len(classes) > 5 else "")
            raise ValueError(
                f"targets hold class(es) {shown} to which the noise gives probability 0: binary "
                "NCE compares the model with the noise at the target and cannot score them; "
                "smooth the noise counts (e.g. counts + 1) or use a noise over every class"
            )
        return log_q

    def _check(self, hidden, targets=None):
        check_tensor("hidden", hidden, 2)
        if hidden.shape[1] != self.dim:
            raise ValueError(
                f"hidden has {hidden.shape[1]} columns but the layer has dim {self.dim}"
            )
        weight_dtype = self.embedding.weight.dtype
        if hidden.dtype != weight_dtype:
            raise TypeError(
                f"hidden has dtype {hidden.dtype} but the layer's weights are {weight_dtype}: "
                f"convert hidden.to({weight_dtype}) or the layer with layer.to({hidden.dtype})"
            )
        if targets is not None:
            check_ids("targets", targets, shape=hidden.shape[:1], num_classes=self.num_classes)
            targets = targets.long()
        return hidden, targets

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, dim={self.dim}, loss={self.loss!r}, "
            f"num_samples={self.num_samples}, shared_noise={self.shared_noise}, "
            f"log_z={self.log_z_mode!r}"
        )


def _check_log_z(log_z) -> str:
    if log_z in ("learned", "context"):
        return log_z
    if isinstance(log_z, (int, float)) and not isinstance(log_z, bool) and math.isfinite(log_z):
        return "fixed"
    raise ValueError(f"log_z must be 'learned', 'context' or a finite number, got {log_z!r}")
