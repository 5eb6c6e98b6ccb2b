"""Test set-up for both tests/ and the doctests in sk_deepunsup/."""

import os

# scikit-learn's array-API estimator check skips itself unless scipy's array
# API support is switched on before scipy is imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import torch  # noqa: E402

# The tests fit tiny networks: one thread is as fast, and it keeps OpenMP's
# spinning threads from slowing every matrix product by orders of magnitude
# when the machine is busy with other work.
torch.set_num_threads(1)
