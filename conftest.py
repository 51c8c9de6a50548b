"""Settings for every test, the doctests of ``src/nce`` included."""

import numpy as np
import pytest
import torch

# pytest-xdist runs one worker per core: more intra-op threads per worker would oversubscribe the
# cores, and many small operations then spend their time waiting on each other.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded_doctests(request):
    """Seed the global generators before each doctest, so an example's printed value is its own."""
    if isinstance(request.node, pytest.DoctestItem):
        torch.manual_seed(0)
        np.random.seed(0)
    yield
