import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from torch.distributions import Independent, MultivariateNormal, Normal

from nce.noise import (
    Box,
    DistributionNoise,
    Gaussian,
    GaussianMixture,
    Noise,
    Uniform,
    Unigram,
    as_noise,
)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def reconstructed(noise: Unigram) -> np.ndarray:
    """(a_i + sum over j with b_j = i of (1 - a_j)) / V: the distribution the tables sample."""
    alias_prob = noise.alias_prob.numpy()
    mass = alias_prob.copy()
    np.add.at(mass, noise.alias_index.numpy(), 1.0 - alias_prob)
    return mass / noise.num_classes


def two_blobs(n=300, dtype=torch.float64):
    g = generator(1)
    left = torch.randn(n, 2, generator=g, dtype=dtype) * 0.5 - 2
    right = (
        torch.randn(n, 2, generator=g, dtype=dtype)
        @ torch.tensor([[1.0, 0.3], [0.0, 0.5]], dtype=dtype)
        + 2
    )
    return torch.cat([left, right])


def all_noises():
    return [
        Uniform(7),
        Unigram(torch.tensor([3.0, 0.0, 1.0, 5.0])),
        Box(torch.zeros(2), torch.ones(2)),
        Gaussian(torch.zeros(2), torch.eye(2)),
        GaussianMixture(torch.ones(2), torch.zeros(2, 2), torch.eye(2).repeat(2, 1, 1)),
        as_noise(Independent(Normal(torch.zeros(2), torch.ones(2)), 1)),
    ]


# ----------------------------------------------------------------------------- protocol


def test_noise_is_abstract():
    with pytest.raises(TypeError):
        Noise()


@pytest.mark.parametrize("noise", all_noises(), ids=lambda n: type(n).__name__)
def test_protocol_shapes_and_no_parameters(noise):
    assert isinstance(noise, (Noise, torch.nn.Module))
    assert list(noise.parameters()) == []
    for shape in [(), 5, (4, 3), (0,)]:
        y = noise.sample(shape, generator=generator())
        batch = (shape,) if isinstance(shape, int) else shape
        assert y.shape == torch.Size(batch) + noise.event_shape
        if y.numel() or not isinstance(noise, DistributionNoise):  # torch's Independent fails
            assert noise.log_prob(y).shape == torch.Size(batch)
    y = noise.sample((50,), generator=generator())
    assert torch.isfinite(noise.log_prob(y)).all()


@pytest.mark.parametrize("noise", all_noises(), ids=lambda n: type(n).__name__)
def test_same_seed_same_samples(noise):
    a = noise.sample((3, 100), generator=generator(7))
    b = noise.sample((3, 100), generator=generator(7))
    c = noise.sample((3, 100), generator=generator(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("noise", all_noises()[:5], ids=lambda n: type(n).__name__)
def test_sample_arguments_are_checked(noise):
    with pytest.raises(TypeError, match="shape must be an int or a tuple of ints"):
        noise.sample(2.5)
    with pytest.raises(ValueError, match="shape must hold sizes >= 0"):
        noise.sample((3, -1))
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got int"):
        noise.sample(3, generator=0)


@pytest.mark.parametrize(
    "noise",
    [
        Box(torch.zeros(2), torch.ones(2)),
        Gaussian(torch.zeros(2), torch.eye(2)),
        GaussianMixture(torch.ones(2), torch.zeros(2, 2), torch.eye(2).repeat(2, 1, 1)),
    ],
    ids=lambda n: type(n).__name__,
)
def test_continuous_noise_moves_to_float64(noise):
    x = noise.sample(10, generator=generator())
    noise = noise.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in noise.buffers())
    assert noise.sample(10, generator=generator()).dtype == torch.float64
    assert noise.log_prob(x.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="x has 3 columns but the noise has dimension 2"):
        noise.log_prob(torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        noise.log_prob(torch.zeros(4, 2, dtype=torch.long))


def test_state_dict_round_trip():
    fitted = Gaussian.fit(two_blobs())
    fresh = Gaussian(torch.ones(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    fresh.load_state_dict(fitted.state_dict())
    x = two_blobs()[:5]
    assert torch.equal(fresh.log_prob(x), fitted.log_prob(x))


# ----------------------------------------------------------------------------- Uniform


def test_uniform():
    noise = Uniform(10)
    ids = noise.sample(100_000, generator=generator())
    assert ids.dtype == torch.int64
    assert 0 <= int(ids.min()) and int(ids.max()) <= 9
    assert chisquare(torch.bincount(ids, minlength=10).numpy()).pvalue > 1e-3
    assert torch.allclose(noise.log_prob(torch.tensor([[0, 9]])), torch.full((1, 2), -math.log(10)))
    assert noise.to(torch.float64).log_prob(torch.tensor(3)).dtype == torch.float64
    assert noise.event_shape == torch.Size()
    assert Uniform(1).sample(5).tolist() == [0] * 5


def test_uniform_bad_inputs():
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        Uniform(0)
    with pytest.raises(TypeError, match="n must be an int, got float"):
        Uniform(2.5)
    with pytest.raises(TypeError, match="n must be an int, got bool"):
        Uniform(True)
    noise = Uniform(4)
    with pytest.raises(ValueError, match=r"ids holds class id 4, outside \[0, 4\)"):
        noise.log_prob(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"ids holds class id -1"):
        noise.log_prob(torch.tensor([-1, 2]))
    with pytest.raises(TypeError, match="ids must have an integer dtype, got torch.float32"):
        noise.log_prob(torch.tensor([0.0, 1.0]))


# ----------------------------------------------------------------------------- Unigram

COUNTS = [
    [1.0, 1.0, 1.0, 1.0],
    [5.0, 3.0, 0.0, 2.0],
    [0.0, 0.0, 7.0],
    [42.0],
    [1e-3, 1e6, 0.0, 3.5, 0.0],
    (torch.arange(300, dtype=torch.float64) ** 2).tolist(),
    torch.randint(0, 1000, (1000,), generator=generator(3)).tolist(),
]


@pytest.mark.parametrize("counts", COUNTS, ids=lambda c: f"V={len(c)}")
@pytest.mark.parametrize("power", [0.75, 1.0, 0.0, 2.0])
def test_alias_tables_reconstruct_probabilities(counts, power):
    noise = Unigram(counts, power=power)
    c = np.asarray(counts, dtype=np.float64)
    weights = np.where(c > 0, np.where(c > 0, c, 1.0) ** power, 0.0)
    np.testing.assert_allclose(noise.probs.numpy(), weights / weights.sum(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(reconstructed(noise), noise.probs.numpy(), rtol=0, atol=1e-12)
    assert noise.probs.dtype == noise.alias_prob.dtype == torch.float64
    assert noise.alias_index.dtype == torch.int64
    assert ((noise.alias_prob >= 0) & (noise.alias_prob <= 1)).all()
    zero = torch.nonzero(torch.tensor(c) == 0).flatten()
    assert (noise.alias_prob[zero] == 0).all()
    assert not torch.isin(noise.alias_index, zero).any()


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(
        st.one_of(st.just(0.0), st.floats(1e-3, 1e6), st.integers(1, 10**9).map(float)),
        min_size=1,
        max_size=200,
    ).filter(lambda c: any(x > 0 for x in c)),
    power=st.floats(0.0, 2.0),
)
def test_alias_tables_reconstruct_random_counts(counts, power):
    noise = Unigram(counts, power=power)
    np.testing.assert_allclose(reconstructed(noise), noise.probs.numpy(), rtol=0, atol=1e-12)
    assert abs(float(noise.probs.sum()) - 1) < 1e-12
    zero = torch.nonzero(torch.tensor(counts) == 0).flatten()
    assert (noise.probs[zero] == 0).all() and (noise.alias_prob[zero] == 0).all()
    assert not torch.isin(noise.alias_index, zero).any()


def test_unigram_chi_square_and_zero_counts_never_drawn():
    counts = torch.randint(0, 500, (60,), generator=generator(5)).double()
    counts[[0, 17, 59]] = 0
    noise = Unigram(counts)
    n = 10**6
    ids = noise.sample(n, generator=generator(0))
    observed = torch.bincount(ids, minlength=60).double()
    assert observed[counts == 0].sum() == 0
    seen = counts > 0
    expected = noise.probs[seen] * n
    assert chisquare(observed[seen].numpy(), expected.numpy()).pvalue > 1e-3


def test_unigram_values():
    noise = Unigram(torch.tensor([16, 1, 0, 1]), power=0.5)
    assert noise.num_classes == 4
    assert noise.event_shape == torch.Size()
    assert torch.allclose(noise.probs, torch.tensor([4, 1, 0, 1], dtype=torch.float64) / 6)
    ids = torch.tensor([[0, 1], [2, 3]])
    expected = torch.tensor([[4 / 6, 1 / 6], [0, 1 / 6]], dtype=torch.float64).log()
    assert torch.equal(noise.log_prob(ids), expected)
    assert noise.log_prob(torch.tensor(2)) == -math.inf
    assert torch.allclose(noise.log_expected_count(ids, num_samples=12), expected + math.log(12))
    sample = noise.sample((3, 4), generator=generator())
    assert sample.shape == (3, 4) and sample.dtype == torch.int64
    assert Unigram([3]).sample(10).tolist() == [0] * 10


def test_unigram_accepts_arrays_and_casts():
    a, b = Unigram(np.array([1, 2, 3])), Unigram(torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(a.probs, b.probs)
    half = b.to(torch.float32)
    assert half.log_prob(torch.tensor([0])).dtype == torch.float32
    assert half.sample(5, generator=generator()).dtype == torch.int64


@pytest.mark.parametrize(
    "counts, error, match",
    [
        ([1.0, -2.0, -1.0], ValueError, r"counts contains 2 negative value\(s\)"),
        ([1.0, float("nan")], ValueError, r"counts contains 1 NaN or Inf value\(s\)"),
        ([1.0, float("inf")], ValueError, r"counts contains 1 NaN or Inf value\(s\)"),
        ([0.0, 0.0], ValueError, "counts are all zero"),
        ([[1.0, 2.0]], ValueError, r"counts must be 1-D, got shape \(1, 2\)"),
        ([], ValueError, "counts is empty"),
        (torch.tensor([True, False]), TypeError, "counts must hold real numbers"),
        ("abc", TypeError, "counts must be a tensor or an array of numbers, got str"),
    ],
)
def test_unigram_bad_counts(counts, error, match):
    with pytest.raises(error, match=match):
        Unigram(counts)


def test_unigram_bad_arguments():
    with pytest.raises(ValueError, match=r"power must lie in \[0.0, inf\), got -0.5"):
        Unigram([1.0, 2.0], power=-0.5)
    with pytest.raises(ValueError, match="power must lie in"):
        Unigram([1.0, 2.0], power=float("inf"))
    with pytest.raises(ValueError, match="power must lie in"):
        Unigram([1.0, 2.0], power=float("nan"))
    with pytest.raises(TypeError, match="power must be a number, got str"):
        Unigram([1.0, 2.0], power="0.75")
    noise = Unigram([1.0, 2.0])
    with pytest.raises(ValueError, match=r"ids holds class id 2, outside \[0, 2\)"):
        noise.log_prob(torch.tensor([2]))
    with pytest.raises(TypeError, match="ids must have an integer dtype"):
        noise.log_prob(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        noise.log_expected_count(torch.tensor([1]), num_samples=0)


# ----------------------------------------------------------------------------- Box


def test_box_log_prob_inside_and_outside():
    noise = Box(torch.tensor([0.0, -1.0]), torch.tensor([2.0, 3.0]))
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.5, 0.0], [1.0, -1.1]])
    expected = torch.tensor([-math.log(8), -math.log(8), -math.inf, -math.inf])
    assert torch.equal(noise.log_prob(x), expected)
    assert noise.log_prob(torch.zeros(3, 5, 2)).shape == (3, 5)
    y = noise.sample(10_000, generator=generator())
    assert torch.isfinite(noise.log_prob(y)).all()
    assert torch.allclose(y.mean(0), torch.tensor([1.0, 1.0]), atol=0.05)


def test_box_fit():
    X = np.array([[0.0, 10.0], [1.0, 14.0], [0.5, 12.0]])
    noise = Box.fit(X, margin=0.25)
    assert noise.low.dtype == torch.float64
    assert torch.equal(noise.low, torch.tensor([-0.25, 9.0], dtype=torch.float64))
    assert torch.equal(noise.high, torch.tensor([1.25, 15.0], dtype=torch.float64))
    assert Box.fit(X.astype(np.float32)).low.dtype == torch.float32
    assert torch.isfinite(Box.fit(torch.tensor(X), margin=0).log_prob(torch.tensor(X))).all()


def test_box_bad_inputs():
    with pytest.raises(ValueError, match=r"high must exceed low in every dimension, got low\[1\]"):
        Box(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"low has shape \(2,\) but high has \(3,\)"):
        Box(torch.zeros(2), torch.ones(3))
    with pytest.raises(ValueError, match=r"low must be 1-D, got shape \(2, 2\)"):
        Box(torch.zeros(2, 2), torch.ones(2, 2))
    with pytest.raises(TypeError, match="dtype mismatch"):
        Box(torch.zeros(2), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"high contains 1 NaN or Inf"):
        Box(torch.zeros(2), torch.tensor([1.0, math.inf]))
    with pytest.raises(ValueError, match=r"X is constant in column\(s\) \[1\]"):
        Box.fit(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"margin must lie in \[0.0, inf\), got -0.1"):
        Box.fit(torch.eye(2), margin=-0.1)
    with pytest.raises(ValueError, match=r"X contains 1 NaN or Inf"):
        Box.fit(torch.tensor([[0.0, 1.0], [math.nan, 2.0]]))
    with pytest.raises(ValueError, match="x has 3 columns but the noise has dimension 2"):
        Box(torch.zeros(2), torch.ones(2)).log_prob(torch.zeros(3))


# ----------------------------------------------------------------------------- Gaussian


def test_gaussian_fit_matches_numpy():
    X = two_blobs()
    noise = Gaussian.fit(X)
    Xn = X.numpy()
    cov = np.cov(Xn, rowvar=False)
    cov += 1e-6 * np.diag(np.diag(cov))
    np.testing.assert_allclose(noise.mean.numpy(), Xn.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(noise.covariance.numpy(), cov, rtol=1e-12, atol=1e-12)
    assert noise.mean.dtype == torch.float64
    assert Gaussian.fit(X.float()).mean.dtype == torch.float32
    assert Gaussian.fit(Xn.astype(np.float32)).mean.dtype == torch.float32
    assert Gaussian.fit(Xn).mean.dtype == torch.float64
    assert Gaussian.fit(Xn.round().astype(np.int64)).mean.dtype == torch.float64
    np.testing.assert_allclose(Gaussian.fit(Xn).covariance.numpy(), cov, rtol=1e-12)


def test_gaussian_fit_collinear_columns_get_a_ridge():
    x = torch.randn(100, 1, generator=generator(), dtype=torch.float64)
    noise = Gaussian.fit(torch.cat([x, 2 * x], dim=1))
    assert torch.isfinite(noise.log_prob(torch.zeros(2, dtype=torch.float64)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_log_prob_matches_multivariate_normal(dtype):
    A = torch.randn(4, 4, generator=generator(2), dtype=torch.float64)
    covariance = (A @ A.T + 0.5 * torch.eye(4, dtype=torch.float64)).to(dtype)
    mean = torch.randn(4, generator=generator(3), dtype=dtype)
    noise = Gaussian(mean, covariance)
    x = torch.randn(3, 5, 4, generator=generator(4), dtype=dtype) * 2
    reference = MultivariateNormal(mean.double(), covariance.double()).log_prob(x.double())
    tolerance = 1e-12 if dtype == torch.float64 else 1e-4
    assert noise.log_prob(x).dtype == dtype
    torch.testing.assert_close(noise.log_prob(x).double(), reference, rtol=tolerance, atol=0)
    assert noise.log_prob(torch.zeros(0, 4, dtype=dtype)).shape == (0,)


def test_gaussian_samples_have_the_right_moments():
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    covariance = torch.tensor([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]]).double()
    y = Gaussian(mean, covariance).sample(200_000, generator=generator())
    assert y.shape == (200_000, 3) and y.dtype == torch.float64
    torch.testing.assert_close(y.mean(0), mean, rtol=0, atol=0.02)
    torch.testing.assert_close(torch.cov(y.T), covariance, rtol=0, atol=0.03)


def test_gaussian_bad_inputs():
    with pytest.raises(ValueError, match=r"X must be 2-D, got shape \(10,\)"):
        Gaussian.fit(torch.randn(10))
    with pytest.raises(ValueError, match=r"X must be 2-D, got shape \(10,\)"):
        Gaussian.fit(np.zeros(10))
    with pytest.raises(ValueError, match=r"X has 1 row\(s\) but Gaussian.fit needs at least 2"):
        Gaussian.fit(torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"X contains 2 NaN or Inf value\(s\)"):
        Gaussian.fit(np.array([[0.0, np.inf], [1.0, 2.0], [np.nan, 1.0]]))
    # Integer data follow the library's one dtype rule: they become float64.
    assert Gaussian.fit(torch.tensor([[0, 1], [2, 0], [1, 3]])).mean.dtype == torch.float64
    with pytest.raises(TypeError, match="X must hold numbers"):
        Gaussian.fit(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="X is constant in every column"):
        Gaussian.fit(torch.ones(5, 2))
    with pytest.raises(ValueError, match=r"covariance must have shape \(2, 2\) to match mean"):
        Gaussian(torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="covariance is not positive definite"):
        Gaussian(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="covariance is not symmetric"):
        Gaussian(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(TypeError, match="dtype mismatch: mean is torch.float32"):
        Gaussian(torch.zeros(2), torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="x has 3 columns but the noise has dimension 5"):
        Gaussian(torch.zeros(5), torch.eye(5)).log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"x must have a last dimension of size 5"):
        Gaussian(torch.zeros(5), torch.eye(5)).log_prob(torch.tensor(1.0))


# ----------------------------------------------------------------------------- GaussianMixture


def test_gaussian_mixture_matches_sklearn():
    from sklearn.mixture import GaussianMixture as EM

    X = two_blobs()
    noise = GaussianMixture.fit(X, n_components=2, random_state=0)
    em = EM(2, covariance_type="full", random_state=0).fit(X.numpy())
    x = torch.randn(50, 2, generator=generator(9), dtype=torch.float64) * 3
    np.testing.assert_allclose(noise.log_prob(x).numpy(), em.score_samples(x.numpy()), atol=1e-5)
    assert noise.weights.dtype == torch.float64
    assert GaussianMixture.fit(X.float(), 2, random_state=0).means.dtype == torch.float32
    assert GaussianMixture.fit(X.numpy().astype(np.float32), 2).means.dtype == torch.float32


def test_gaussian_mixture_log_prob_is_the_mixture():
    weights = torch.tensor([0.2, 0.8], dtype=torch.float64)
    means = torch.tensor([[0.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
    covariances = torch.stack([torch.eye(2), torch.tensor([[2.0, 0.5], [0.5, 1.0]])]).double()
    noise = GaussianMixture(weights * 5, means, covariances)
    x = torch.randn(4, 6, 2, generator=generator(), dtype=torch.float64)
    density = sum(
        w * MultivariateNormal(m, c).log_prob(x).exp()
        for w, m, c in zip(weights, means, covariances, strict=True)
    )
    torch.testing.assert_close(noise.log_prob(x), density.log(), rtol=1e-12, atol=0)
    torch.testing.assert_close(noise.weights, weights)


def test_gaussian_mixture_samples():
    weights = torch.tensor([0.3, 0.0, 0.7], dtype=torch.float64)
    means = torch.tensor([[-10.0], [0.0], [10.0]], dtype=torch.float64)
    noise = GaussianMixture(weights, means, torch.ones(3, 1, 1, dtype=torch.float64))
    y = noise.sample((100, 1000), generator=generator())
    assert y.shape == (100, 1000, 1)
    left = (y < -5).double().mean()
    assert abs(float(left) - 0.3) < 0.01
    assert ((y - 10).abs() < 6).logical_or((y + 10).abs() < 6).all()
    torch.testing.assert_close(y[y > 0].mean(), torch.tensor(10.0).double(), rtol=0, atol=0.02)


def test_gaussian_mixture_bad_inputs():
    X = two_blobs(20)
    with pytest.raises(ValueError, match="n_components must be >= 1, got 0"):
        GaussianMixture.fit(X, 0)
    with pytest.raises(ValueError, match=r"n_components must be <= the number of rows of X \(40\)"):
        GaussianMixture.fit(X, 41)
    with pytest.raises(TypeError, match="n_components must be an int, got float"):
        GaussianMixture.fit(X, 2.0)
    with pytest.raises(ValueError, match=r"X must be 2-D, got shape \(40,\)"):
        GaussianMixture.fit(X[:, 0], 2)
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        GaussianMixture.fit(torch.tensor([[0.0, 1.0], [math.nan, 0.0]]), 1)
    eye = torch.eye(2).repeat(2, 1, 1)
    with pytest.raises(ValueError, match=r"weights contains 1 negative value\(s\)"):
        GaussianMixture(torch.tensor([1.0, -1.0]), torch.zeros(2, 2), eye)
    with pytest.raises(ValueError, match="weights are all zero"):
        GaussianMixture(torch.zeros(2), torch.zeros(2, 2), eye)
    with pytest.raises(ValueError, match=r"weights has shape \(3,\) but means has \(2, 2\)"):
        GaussianMixture(torch.ones(3), torch.zeros(2, 2), eye)
    with pytest.raises(ValueError, match=r"covariances must have shape \(2, 2, 2\)"):
        GaussianMixture(torch.ones(2), torch.zeros(2, 2), torch.eye(3).repeat(2, 1, 1))
    bad = eye.clone()
    bad[1] = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match=r"covariances\[1\] is not positive definite"):
        GaussianMixture(torch.ones(2), torch.zeros(2, 2), bad)
    with pytest.raises(ValueError, match="x has 3 columns but the noise has dimension 2"):
        GaussianMixture(torch.ones(2), torch.zeros(2, 2), eye).log_prob(torch.zeros(3))


# ----------------------------------------------------------------------------- as_noise


def test_as_noise_returns_noise_unchanged():
    noise = Uniform(3)
    assert as_noise(noise) is noise


def test_as_noise_wraps_a_distribution():
    distribution = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    noise = as_noise(distribution)
    assert isinstance(noise, DistributionNoise) and isinstance(noise, Noise)
    assert noise.event_shape == (3,)
    assert list(noise.parameters()) == []
    g = generator(11)
    a, b = noise.sample((4, 2), generator=g), noise.sample((4, 2), generator=g)
    assert a.shape == (4, 2, 3) and not torch.equal(a, b)
    assert torch.equal(a, noise.sample((4, 2), generator=generator(11)))
    assert torch.equal(noise.log_prob(a), distribution.log_prob(a))


def test_as_noise_leaves_the_global_rng_alone():
    noise = as_noise(Normal(0.0, 1.0))
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    noise.sample(10, generator=generator())
    assert torch.equal(torch.rand(5), expected)


def test_as_noise_rejects_other_objects():
    with pytest.raises(TypeError, match="noise must be a nce.noise.Noise or .* got str"):
        as_noise("gaussian")
    with pytest.raises(TypeError, match="prior must be .* got Tensor"):
        as_noise(torch.zeros(3), name="prior")
    with pytest.raises(TypeError, match="distribution must be a torch.distributions.Distribution"):
        DistributionNoise(Uniform(3))


def test_fits_of_low_rank_float32_data_stay_positive_definite():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(1000, 20, generator=g) @ torch.randn(20, 784, generator=g)
    assert torch.isfinite(Gaussian.fit(X).log_prob(X[:5])).all()
    Y = (torch.randn(500, 3, generator=g) @ torch.randn(3, 30, generator=g)) * 100
    assert torch.isfinite(GaussianMixture.fit(Y, 2, random_state=0).log_prob(Y[:5])).all()
    with pytest.raises(TypeError, match="X must be float32 or float64 for Gaussian.fit"):
        Gaussian.fit(X[:, :3].half())
    with pytest.raises(TypeError, match="X must be float32 or float64 for GaussianMixture.fit"):
        GaussianMixture.fit(X[:, :3].bfloat16(), 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_and_mixture_log_prob_far_out_is_minus_infinity_never_nan(dtype):
    X = torch.randn(300, 2, generator=generator(0), dtype=dtype)
    big = torch.finfo(dtype).max
    far = torch.tensor([[big, -big], [big / 3, big / 3], [1e-3, -big]], dtype=dtype)
    for noise in (Gaussian.fit(X), GaussianMixture.fit(X, 2, random_state=0)):
        assert (noise.log_prob(far) == -math.inf).all()
        assert noise.log_prob(X[:3]).isfinite().all()


def test_gaussian_fit_says_when_values_are_too_large_for_the_dtype():
    X = torch.randn(100, 2, generator=generator(1))
    with pytest.raises(ValueError, match=r"X has values up to .*e\+20: its covariance reaches .*"
                       r"beyond the largest torch.float32.*rescale or standardize it"):  # fmt: skip
        Gaussian.fit(X * 1e20)
    assert Gaussian.fit((X * 1e20).double()).covariance.isfinite().all()
    too_large = r"values up to .*e\+300, too large for its covariance in float64 \(the squares"
    with pytest.raises(ValueError, match=too_large):
        Gaussian.fit(X.double() * 1e300)
