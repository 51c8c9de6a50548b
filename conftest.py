"""Settings for every test, the doctests of ``src/nce`` included."""

import torch

# pytest-xdist runs one worker per core: more intra-op threads per worker would oversubscribe the
# cores, and many small operations then spend their time waiting on each other.
torch.set_num_threads(1)
