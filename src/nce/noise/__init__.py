r"""Noise distributions for noise-contrastive estimation.

NCE learns :math:`\log p_\theta(u) - \log q(u)` by telling data from noise :math:`q`, so a noise
must be sampled and evaluated, and must stay fixed while the model learns. Each noise here is a
:class:`torch.nn.Module` whose state is buffers (never parameters), with
``sample(shape, generator=None)`` and ``log_prob(x)`` as in :mod:`torch.distributions`:

* class ids: :class:`Uniform` (:math:`1/V`) and :class:`Unigram` (:math:`\propto c_i^{3/4}`,
  alias-method sampling, the :math:`\log Q` correction of sampled softmax);
* points of :math:`R^D`: :class:`Box`, :class:`Gaussian` and :class:`GaussianMixture`, each with a
  ``fit(X)`` classmethod;
* any :class:`torch.distributions.Distribution`, through :func:`as_noise`.
"""

from nce.noise.base import Noise
from nce.noise.box import Box
from nce.noise.distribution import DistributionNoise, as_noise
from nce.noise.gaussian import Gaussian
from nce.noise.mixture import GaussianMixture
from nce.noise.uniform import Uniform
from nce.noise.unigram import Unigram

__all__ = [
    "Box",
    "DistributionNoise",
    "Gaussian",
    "GaussianMixture",
    "Noise",
    "Uniform",
    "Unigram",
    "as_noise",
]
