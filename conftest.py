"""Test set-up for both tests/ and the doctests in sk_deepunsup/."""

import os

# scikit-learn's array-API estimator check skips itself unless scipy's array
# API support is switched on before scipy is imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import importlib.util  # noqa: E402

import torch  # noqa: E402

# The Displays' doctests need matplotlib (the "plot" extra); without it they
# are not collected, so the rest of the suite runs.
if importlib.util.find_spec("matplotlib") is None:
    collect_ignore_glob = ["sk_deepunsup/inspection/*.py"]

# The tests fit tiny networks: one thread is as fast, and it keeps OpenMP's
# spinning threads from slowing every matrix product by orders of magnitude
# when the machine is busy with other work.
torch.set_num_threads(1)
