import math

import pytest
import torch

from nce.noise import Noise, Unigram
from nce.output import NCEOutput

V, D, N = 12, 5, 4


class FixedNoise(Noise):
    """Returns a fixed sample; every class has probability ``1 / per_row``."""

    def __init__(self, ids, per_row):
        super().__init__()
        self.register_buffer("ids", ids)
        self.per_row = per_row

    @property
    def event_shape(self):
        return torch.Size([])

    def sample(self, shape=(), generator=None):
        return self.ids.reshape(shape)

    def log_prob(self, ids):
        return torch.full(ids.shape, -math.log(self.per_row), dtype=torch.float64)


def _layer(noise, k, loss, **kw):
    torch.manual_seed(0)
    layer = NCEOutput(V, D, noise, k, loss=loss, **kw).double()
    with torch.no_grad():
        layer.bias.weight.normal_()
    return layer


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, D, generator=g, dtype=torch.float64), torch.tensor([3, 0, 11, 3])


def test_ranking_with_every_other_class_enumerated_is_the_full_softmax():
    hidden, targets = _data()
    others = torch.stack([torch.tensor([c for c in range(V) if c != t]) for t in targets])
    noise = FixedNoise(others, V - 1)  # log(K q) = log((V-1) / (V-1)) = 0
    ranking = _layer(noise, V - 1, "ranking", shared_noise=False)
    full = _layer(noise, V - 1, "full")
    torch.testing.assert_close(ranking(hidden, targets), full(hidden, targets))
    g_rank = torch.autograd.grad(ranking(hidden, targets), list(ranking.parameters()))
    g_full = torch.autograd.grad(full(hidden, targets), list(full.parameters()))
    for a, b in zip(g_rank, g_full, strict=True):
        torch.testing.assert_close(a, b)


def test_full_is_cross_entropy_and_log_prob_is_normalized():
    hidden, targets = _data()
    layer = _layer(torch.ones(V), 3, "full")
    logp = layer.log_prob(hidden)
    torch.testing.assert_close(torch.logsumexp(logp, 1), torch.zeros(N, dtype=torch.float64))
    torch.testing.assert_close(layer(hidden, targets), -logp[torch.arange(N), targets].mean())
    logits = hidden @ layer.embedding.weight.T + layer.bias.weight.T
    torch.testing.assert_close(layer.log_partition(hidden), torch.logsumexp(logits, 1))


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("log_z", ["learned", "context", 0.0])
def test_nce_matches_mnih_teh_reference(shared, log_z):
    hidden, targets = _data()
    counts = torch.arange(1, V + 1, dtype=torch.float64)
    layer = _layer(counts, 6, "nce", shared_noise=shared, log_z=log_z)
    if log_z == "context":
        with torch.no_grad():
            layer.log_z.weight.normal_()
    g = torch.Generator().manual_seed(5)
    loss = layer(hidden, targets, generator=g)
    ids = Unigram(counts).sample(
        (6,) if shared else (N, 6), generator=torch.Generator().manual_seed(5)
    )
    q = Unigram(counts).probs

    def score(w, i):
        s = hidden[i] @ layer.embedding.weight[w] + layer.bias.weight[w, 0]
        return s - layer.nce_log_partition(hidden)[i]

    total = 0.0
    for i in range(N):
        delta = score(targets[i], i) - math.log(6) - torch.log(q[targets[i]])
        total = total - torch.nn.functional.logsigmoid(delta)
        for w in ids if shared else ids[i]:
            delta = score(w, i) - math.log(6) - torch.log(q[w])
            total = total - torch.log1p(-torch.sigmoid(delta))
    want = total / N
    torch.testing.assert_close(loss, want)
    params = [p for p in layer.parameters()]
    for a, b in zip(
        torch.autograd.grad(loss, params), torch.autograd.grad(want, params), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_ranking_masks_accidental_hits():
    hidden, targets = _data()
    ids = torch.tensor([3, 5, 0, 7])  # shared: hits targets 3 and 0
    layer = _layer(FixedNoise(ids, 4), 4, "ranking", remove_accidental_hits=True)
    loss = layer(hidden, targets)
    s = hidden @ layer.embedding.weight.T + layer.bias.weight.T
    total = 0.0
    for i in range(N):
        logits = [s[i, targets[i]]] + [s[i, w] for w in ids if w != targets[i]]
        total = total - (logits[0] - torch.logsumexp(torch.stack(logits), 0))
    torch.testing.assert_close(loss, total / N)


def test_generator_fixes_the_negatives():
    hidden, targets = _data()
    layer = _layer(torch.arange(1, V + 1), 5, "ranking")
    a = layer(hidden, targets, generator=torch.Generator().manual_seed(3))
    b = layer(hidden, targets, generator=torch.Generator().manual_seed(3))
    c = layer(hidden, targets, generator=torch.Generator().manual_seed(4))
    assert a == b and a != c


def test_sparse_gradients_touch_only_the_rows_read():
    hidden, targets = _data()
    layer = _layer(torch.arange(1, V + 1), 3, "nce", sparse=True)
    layer(hidden, targets, generator=torch.Generator().manual_seed(0)).backward()
    assert layer.embedding.weight.grad.is_sparse


def test_bad_arguments():
    hidden, targets = _data()
    with pytest.raises(ValueError, match="loss must be one of"):
        NCEOutput(V, D, torch.ones(V), 3, loss="softmax")
    with pytest.raises(ValueError, match="remove_accidental_hits applies to loss='ranking'"):
        NCEOutput(V, D, torch.ones(V), 3, loss="nce", remove_accidental_hits=True)
    with pytest.raises(ValueError, match="noise is over 5 classes but num_classes is 12"):
        NCEOutput(V, D, torch.ones(5), 3)
    with pytest.raises(ValueError, match="log_z must be 'learned', 'context' or a finite number"):
        NCEOutput(V, D, torch.ones(V), 3, log_z="auto")
    layer = _layer(torch.ones(V), 3, "nce")
    with pytest.raises(ValueError, match="targets holds class id 12, outside"):
        layer(hidden, torch.tensor([0, 1, 2, 12]))
    with pytest.raises(ValueError, match="hidden has 4 columns but the layer has dim 5"):
        layer(hidden[:, :4], targets)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        NCEOutput(V, D, torch.ones(V), 0)
    with pytest.raises(ValueError, match="sparse=True needs loss='nce' or 'ranking'"):
        NCEOutput(V, D, torch.ones(V), 3, loss="full", sparse=True)


def test_target_the_noise_never_draws_is_refused_with_the_reason():
    hidden, targets = _data()
    counts = torch.ones(V)
    counts[3] = 0  # targets hold class 3
    layer = _layer(counts, 3, "nce")
    with pytest.raises(ValueError, match=r"class\(es\) 3 to which the noise gives probability 0"):
        layer(hidden, targets)
    with pytest.raises(ValueError, match="smooth the noise counts"):
        layer(hidden, targets)
    assert torch.isfinite(layer(hidden, torch.tensor([0, 1, 2, 4])))
    ranking = _layer(counts, 3, "ranking")  # the softmax losses never read q(target)
    assert torch.isfinite(ranking(hidden, targets, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("loss", ["nce", "ranking", "full"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_hidden_of_another_dtype_gets_one_clear_error(loss, dtype):
    hidden, targets = _data()  # float64 data, and a float64 layer below
    layer = _layer(torch.ones(V), 3, loss)
    message = rf"hidden has dtype {dtype} but the layer's weights are torch.float64"
    with pytest.raises(TypeError, match=message):
        layer(hidden.to(dtype), targets)
    with pytest.raises(TypeError, match=message):
        layer.log_prob(hidden.to(dtype))


@pytest.mark.parametrize("loss", ["nce", "ranking", "full"])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_every_loss_takes_every_integer_target_dtype(loss, dtype):
    hidden, targets = _data()
    layer = _layer(torch.arange(1, V + 1), 3, loss)
    want = layer(hidden, targets, generator=torch.Generator().manual_seed(2))
    got = layer(hidden, targets.to(dtype), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(got, want)


def test_log_partition_model_is_a_deprecated_name_of_nce_log_partition():
    hidden, _ = _data()
    layer = _layer(torch.ones(V), 3, "nce", log_z="context")
    with pytest.warns(DeprecationWarning, match="use nce_log_partition"):
        old = layer.log_partition_model(hidden)
    torch.testing.assert_close(old, layer.nce_log_partition(hidden))
    with pytest.raises(ValueError, match="has no NCE log Z; see log_partition"):
        _layer(torch.ones(V), 3, "full").nce_log_partition(hidden)


@pytest.mark.parametrize("sparse", [False, True])
def test_per_row_noise_scored_by_gathering_or_by_one_product_gives_the_same_loss_and_gradients(
    sparse,
):
    hidden, targets = _data()
    hidden.requires_grad_()
    results = []
    for ratio in (0.0, math.inf):  # always the per-row dot products, always the dense product
        layer = _layer(torch.arange(1, V + 1), 3, "nce", shared_noise=False, sparse=sparse)
        layer.product_ratio = ratio
        loss = layer(hidden, targets, generator=torch.Generator().manual_seed(2))
        grads = torch.autograd.grad(loss, [hidden, *layer.parameters()])
        results.append([loss, *(g.to_dense() if g.is_sparse else g for g in grads)])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


def test_row_dot_gradients_match_finite_differences_with_repeated_rows():
    from nce._row_scores import row_dot

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    rows = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    for k in (3, 6):  # K > M takes the gathered path
        index = torch.randint(0, 4, (5, k), generator=g)
        index[0, :2] = 1  # a row read twice by one context
        torch.testing.assert_close(
            row_dot(hidden, rows, index), torch.einsum("nd,nkd->nk", hidden, rows[index])
        )
        assert torch.autograd.gradcheck(lambda h, u, i=index: row_dot(h, u, i), (hidden, rows))


def test_sparse_gradients_can_be_switched_on_after_construction():
    hidden, targets = _data()
    layer = _layer(torch.arange(1, V + 1), 3, "nce", shared_noise=False)
    layer.sparse = True
    layer(hidden, targets, generator=torch.Generator().manual_seed(0)).backward()
    assert layer.embedding.weight.grad.is_sparse and layer.bias.weight.grad.is_sparse
    read = layer.embedding.weight.grad.coalesce().indices()[0]
    assert set(targets.tolist()) <= set(read.tolist()) and len(read) == len(set(read.tolist()))
    with pytest.raises(ValueError, match="sparse=True needs loss='nce' or 'ranking'"):
        _layer(torch.ones(V), 3, "full").sparse = True
    with pytest.raises(TypeError, match="sparse must be a bool"):
        layer.sparse = 1
