"""Devices and seeds: where a fit runs and the random numbers it draws.

``device`` parameters resolve here (``"auto"``, a CUDA device per local rank under a
launcher); seeds come from ``random_state`` without touching numpy's global generator.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._nn import distributed


def resolve_device(device) -> torch.device:
    """Turn the ``device`` parameter into an available ``torch.device``.

    ``"auto"`` is CUDA when available, else the CPU. Raises ``ValueError``
    naming the problem for unknown or unavailable devices.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return distributed.local_device(
            torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(
                f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda', "
                "'cuda:N' or 'mps'."
            ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r} was requested but CUDA is not available "
                "on this machine; use device='cpu' or device='auto'."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r} was requested but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(
                "device='mps' was requested but MPS is not available on this "
                "machine; use device='cpu' or device='auto'."
            )
    elif dev.type != "cpu":
        raise ValueError(
            f"device={str(device)!r} is not supported; use 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'."
        )
    return distributed.local_device(dev)  # "cuda" is cuda:LOCAL_RANK under a launcher


def device_available(device: torch.device) -> bool:
    try:
        resolve_device(device)
    except ValueError:
        return False
    return True


def draw_seed(random_state) -> int:
    """A 31-bit seed from ``random_state``, never touching numpy's global RNG.

    ``None`` draws fresh operating-system entropy instead of consuming the
    global ``np.random`` state (so fitting never changes it).
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def derive_seed(base_seed: int, counter: int) -> int:
    """The seed of the ``counter``-th training call of an estimator."""
    return int(np.random.SeedSequence([base_seed, counter]).generate_state(1)[0] >> 1)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
