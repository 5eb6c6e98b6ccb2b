"""Machinery shared by every estimator: parameters, data, devices, seeds, pickling.

This is the only place where the scikit-learn layer meets torch tensors.
"""

from __future__ import annotations

import copy
import io
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ._images import check_two_dimensional
from ._nn import ACTIVATIONS, ThreadPolicy, distributed
from ._nn.data import (
    BatchSource,
    SparseRowSource,
    StreamedRowSource,
    TensorSource,
    chunk_rows,
)

#: The dtypes estimators accept without conversion; anything else becomes float64.
FLOAT_DTYPES = (np.float64, np.float32)

#: Rows per chunk at inference (fewer for wide data); results do not depend on it.
INFERENCE_CHUNK = 8192

#: Sparse formats accepted; others (and dense formats) are converted to CSR.
SPARSE_FORMATS = ("csr", "csc", "coo")

#: Memory maps larger than this (as float32) are read batch by batch, not loaded.
STREAM_BYTES = 1 << 28

#: Constraints of the training parameters that every estimator shares.
TRAINING_CONSTRAINTS = {
    "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "device": [str, torch.device],
    "n_threads": [None, StrOptions({"adaptive"}), Interval(Integral, 1, None, closed="left")],
}

#: Constraints of the network-shape parameters of the autoencoders.
NETWORK_CONSTRAINTS = {
    "n_components": [Interval(Integral, 1, None, closed="left")],
    "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
    "activation": [StrOptions(set(ACTIVATIONS))],
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "batch_norm": ["boolean"],
    "alpha": [Interval(Real, 0, None, closed="left")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "shuffle": ["boolean"],
    "warm_start": ["boolean"],
}


#: Largest magnitude accepted in X (float32 squares overflow near 1e19).
MAX_ABS_VALUE = 1e15

#: The widest feature range over the narrowest that makes fit warn (DataScaleWarning).
SCALE_RATIO = 100.0

#: ``batch_size="auto"``, clipped to the number of samples (images: see _images)
AUTO_BATCH_SIZE = 256


def hidden_sizes(value, given=None) -> list[int]:
    """``hidden_layer_sizes`` (``value``) as a list of positive ints, or a ValueError.

    ``given`` is what the user passed, for the message (default ``value``).
    """
    sizes = np.atleast_1d(np.asarray(value)).ravel().tolist()
    if any(not float(s).is_integer() or s < 1 for s in sizes):
        shown = value if given is None else given
        raise ValueError(f"hidden_layer_sizes must be positive integers, got {shown!r}.")
    return [int(s) for s in sizes]


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


def to_tensor(X: np.ndarray, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """Validated array -> tensor on ``device``; never writes to ``X``."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    arr = np.ascontiguousarray(X, dtype=np_dtype)
    if not arr.flags.writeable:  # torch.from_numpy warns on read-only memory
        arr = arr.copy()
    return torch.from_numpy(arr).to(device)


def is_streamed(X) -> bool:
    """Whether X is row storage to read batch by batch instead of loading.

    Large numpy memory maps (over :data:`STREAM_BYTES` as float32), and
    2-D row-sliceable stores that are not arrays in memory (h5py datasets,
    zarr arrays: objects with ``shape``, ``dtype`` and ``__getitem__``).
    Lists, numpy arrays, sparse matrices, pandas objects, tensors and lazy
    arrays that compute themselves (dask) are not.
    """
    if isinstance(X, np.memmap):
        return X.ndim == 2 and X.shape[0] * X.shape[1] * 4 > STREAM_BYTES
    if (
        isinstance(X, (np.ndarray, list, tuple, torch.Tensor))
        or sp.issparse(X)
        or hasattr(X, "iloc")
        or hasattr(X, "compute")
        or hasattr(X, "__array_namespace__")
    ):
        return False
    shape = getattr(X, "shape", None)
    return (
        shape is not None
        and len(shape) == 2
        and hasattr(X, "dtype")
        and hasattr(X, "__getitem__")
    )


def validate_input(estimator, X, *, reset: bool, training: bool = False):
    """Validate X for ``fit`` (``training``) or inference; never copies streamed data.

    Dense input becomes a float array, sparse input CSR (both through
    scikit-learn's ``validate_data``). Streamed input (see :func:`is_streamed`)
    is checked on its shape and first rows only; its values are checked as
    they are read.
    """
    check_two_dimensional(X)  # images as 3-D/4-D arrays: the error shows the fix
    check_numeric_columns(X)
    min_samples = 2 if training else 1
    if not is_streamed(X):
        X = validate_data(
            estimator,
            X,
            accept_sparse="csr",
            dtype=FLOAT_DTYPES,
            ensure_min_samples=min_samples,
            reset=reset,
        )
        check_magnitude(X)
        if training:
            warn_feature_scales(estimator, X)
        return X
    if X.shape[0] < min_samples:
        raise ValueError(
            f"Found array with {X.shape[0]} sample(s) (shape={tuple(X.shape)}) while a "
            f"minimum of {min_samples} is required."
        )
    if np.dtype(X.dtype).kind not in "fiub":
        raise ValueError(
            f"X has dtype {X.dtype}; numeric data is needed. Convert it to float32."
        )
    validate_data(estimator, np.asarray(X[:min_samples]), dtype=FLOAT_DTYPES, reset=reset)
    return X


def check_numeric_columns(X) -> None:
    """A data frame's non-numeric columns are named in the error, with the fix."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(X, "columns"):
        return
    import pandas as pd

    bad = [
        str(c)
        for c, dt in zip(X.columns, dtypes)
        if not (pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt))
    ]
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise ValueError(
            f"X has {len(bad)} non-numeric column(s): {shown}. Encode them first (e.g. "
            "OneHotEncoder or OrdinalEncoder in a ColumnTransformer) or drop them."
        )


def check_magnitude(X) -> None:
    """Refuse values so large that float32 squares and sums overflow (NaN results)."""
    values = X.data if sp.issparse(X) else X
    if values.size == 0:
        return
    largest = max(float(values.max()), -float(values.min()))  # no |X| copy
    if largest > MAX_ABS_VALUE:
        raise ValueError(
            f"X has values as large as {largest:.3g}; the networks compute in float32, "
            f"where values beyond {MAX_ABS_VALUE:.0e} overflow. Scale X first (e.g. "
            "sklearn.preprocessing.StandardScaler, or a log transform)."
        )


class DataScaleWarning(UserWarning):
    """Features on very different scales: distances and losses follow the widest."""


def warn_feature_scales(estimator, X) -> None:
    """Warn when the widest feature's range exceeds the narrowest's :data:`SCALE_RATIO` times."""
    if sp.issparse(X) or X.shape[0] < 2:
        return
    ranges = np.ptp(X, axis=0)
    ranges = ranges[ranges > 0]
    if ranges.size < 2 or ranges.max() <= SCALE_RATIO * ranges.min():
        return
    warnings.warn(
        f"{type(estimator).__name__}: X's features span very different ranges (from "
        f"{ranges.min():.3g} to {ranges.max():.3g}), so the widest dominate every "
        "distance and loss and the model may ignore the rest (for a clusterer: "
        "everything in one or a few clusters). Scale X first: "
        "make_pipeline(StandardScaler(), estimator) or MinMaxScaler.",
        DataScaleWarning,
        stacklevel=4,
    )


def as_dense(X) -> np.ndarray:
    """Validated X as an in-memory array (sparse densified, streamed data loaded)."""
    if sp.issparse(X):
        return X.toarray()
    if is_streamed(X):
        return np.asarray(X[: X.shape[0]], dtype=data_dtype(X))
    return X


def data_dtype(X) -> np.dtype:
    """float64 for float64 input, else float32 (as the outputs are)."""
    return np.dtype(np.float64) if np.dtype(X.dtype) == np.float64 else np.dtype(np.float32)


def make_source(X, device: torch.device, dtype=torch.float32, *, training: bool) -> BatchSource:
    """The batch source for validated X.

    Dense data for training is copied to ``device`` whole (the fast path);
    dense data for inference, sparse data and streamed data are read chunk
    by chunk, so nothing but a chunk is ever densified.
    """
    if sp.issparse(X):
        return SparseRowSource.from_csr(X, device, dtype)
    if training and not is_streamed(X):
        return TensorSource(to_tensor(X, device, dtype))
    return StreamedRowSource(X, device, dtype)


def non_finite_error() -> ValueError:
    """The error for NaN or infinity found in data that is read as it streams."""
    return ValueError(
        "Input X contains NaN or infinity; remove or impute those values "
        "(e.g. with sklearn.impute.SimpleImputer)."
    )


def check_finite_range(source: BatchSource) -> tuple[float, float]:
    """The smallest and largest value of streamed data; ValueError if not finite."""
    lo, hi = source.value_range()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise non_finite_error()
    return lo, hi


def inference_dtype(X, device: torch.device) -> torch.dtype:
    """float64 for float64 input on the CPU, else float32.

    Training is float32. On the CPU, float64 input is run through a float64
    copy of the network so that a row's output does not depend on which other
    rows share its batch (float32 matrix products change with the batch shape).
    """
    if data_dtype(X) == np.float64 and device.type == "cpu":
        return torch.float64
    return torch.float32


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def infer(module: nn.Module, X, forward, n_threads: int | None = None) -> np.ndarray:
    """``forward(module, batch)`` over X in chunks; a numpy array of X's dtype.

    X is a validated dense array, a CSR matrix or streamed storage; each chunk
    is densified alone. ``forward`` may return one tensor or a tuple of
    tensors (then a tuple of arrays is returned). ``n_threads`` as in
    :class:`~._nn.ThreadPolicy` (torch's setting is restored afterwards).
    """
    device = module_device(module)
    dtype = inference_dtype(X, device)
    if dtype != next(module.parameters()).dtype:
        module = copy.deepcopy(module).to(dtype)
    module.eval()
    source = make_source(X, device, dtype, training=False)
    check_chunks = is_streamed(X)
    out_dtype = data_dtype(X)
    outs = []
    rows = chunk_rows(source.n_features, INFERENCE_CHUNK)
    policy = ThreadPolicy(
        n_threads if device.type == "cpu" else torch.get_num_threads(),
        module=module,
        rows=min(rows, source.n_samples),
        training=False,
    )
    with policy, torch.inference_mode():
        for xb in source.chunks(rows):
            if check_chunks and not bool(torch.isfinite(xb).all()):
                raise non_finite_error()
            with policy.step():
                out = forward(module, xb)
            outs.append(out if isinstance(out, tuple) else (out,))
    results = tuple(
        torch.cat([o[i] for o in outs]).cpu().numpy().astype(out_dtype, copy=False)
        for i in range(len(outs[0]))
    )
    return results if len(results) > 1 else results[0]


def warn_not_converged(estimator, history) -> None:
    if not (history.converged or history.interrupted or history.stopped_early):
        warnings.warn(
            f"{type(estimator).__name__}: maximum iterations "
            f"(max_iter={estimator.max_iter}) reached and the optimization hasn't "
            "converged yet. Increase max_iter or tol.",
            ConvergenceWarning,
        )


class TorchStateMixin:
    """Device-safe pickling of the torch objects held in fitted attributes.

    Networks are stored as state dicts and rebuilt from the estimator's
    parameters (:meth:`_rebuild_module`) on unpickling, after a dry build on
    the ``meta`` device showed that the parameters describe exactly the
    stored weights; a user's own module (a custom encoder) is pickled as a
    skeleton without its tensors. All tensors are serialised with
    ``torch.save`` into one byte string and read back with
    ``torch.load(weights_only=True)`` and ``map_location``: on the device
    they were fitted on when it is available, otherwise on the CPU (with a
    warning), so a model fitted on a GPU unpickles on a CPU-only machine.
    Unpickling never calls ``torch.load(weights_only=False)``: the classes
    an unpickler creates are those the pickle names, so an allow-list
    unpickler decides them. Pickle files run code when loaded: load them only
    from trusted sources, and use :func:`sk_deepunsup.save` and
    :func:`sk_deepunsup.load` otherwise.
    """

    def _rebuild_module(self, name: str):
        """An untrained network of the fitted shape for attribute ``name``, or None.

        The hook of :func:`sk_deepunsup.load` and of unpickling: the saved
        weights are loaded into it. This default serves estimators whose
        ``module_`` comes from ``_build_module(n_features, hidden, generator)``;
        estimators with other networks override it.
        """
        if name == "module_" and hasattr(self, "_build_module") and hasattr(self, "_hidden_sizes"):
            return self._build_module(self.n_features_in_, self._hidden_sizes(), make_generator(0))
        return None

    def _rebuildable(self, name: str, module: nn.Module) -> bool:
        """Whether pickling may store ``module`` as a state dict (see _rebuild_module)."""
        if not type(module).__module__.startswith("sk_deepunsup."):
            return False
        if type(self)._rebuild_module is not TorchStateMixin._rebuild_module:
            return True
        return name == "module_" and hasattr(self, "_build_module") and hasattr(self, "_hidden_sizes")

    def __getstate__(self):
        from ._torch_state import holds_tensor, pack_module

        state = super().__getstate__()
        torch_items = {k: v for k, v in state.items() if holds_tensor(v) or isinstance(v, nn.Module)}
        if not torch_items:
            return state
        state = {k: v for k, v in state.items() if k not in torch_items}
        safe = {"tensors": {}, "state_dicts": {}, "packed": {}}
        for name, value in torch_items.items():
            if not isinstance(value, nn.Module):
                safe["tensors"][name] = value
            elif self._rebuildable(name, value):
                safe["state_dicts"][name] = value.state_dict()
            else:  # the user's module: its classes go into this pickle, its tensors not
                state[name], safe["packed"][name] = pack_module(value)
        buffer = io.BytesIO()
        torch.save(safe, buffer)
        state["_torch_payload"] = buffer.getvalue()
        return state

    def __setstate__(self, state):
        from ._torch_state import rebuild_checked, tensor_layout, unpack_module

        payload = state.pop("_torch_payload", None)
        if "_torch_modules" in state:
            raise ValueError(
                f"this pickle of {type(self).__name__} holds torch modules pickled whole "
                "(written by sk_deepunsup 0.1.0 or earlier), which only an unsafe "
                "torch.load could read. Unpickle it with that version and pickle it again."
            )
        if payload is None:
            super().__setstate__(state)
            return
        fitted_on = torch.device(state.get("device_", "cpu"))
        target = fitted_on
        if not device_available(fitted_on):
            warnings.warn(
                f"{type(self).__name__} was fitted on {fitted_on}, which is not "
                "available here; it was loaded on the CPU.",
                UserWarning,
            )
            target = torch.device("cpu")
            state["device_"] = "cpu"
        safe = torch.load(io.BytesIO(payload), map_location=target, weights_only=True)
        if not isinstance(safe, dict) or not {"tensors", "state_dicts"} <= set(safe):
            raise ValueError(f"the pickle of {type(self).__name__} is corrupt.")
        for name, tensors in safe.get("packed", {}).items():
            state[name] = unpack_module(state.get(name), tensors, f"{type(self).__name__}.{name}")
        state.update(safe["tensors"])
        super().__setstate__(state)
        # The user's modules came with their classes in the pickle; without them
        # the parameters alone describe the networks, checked before building.
        custom = any(isinstance(v, nn.Module) for v in vars(self).values())
        for name, state_dict in safe["state_dicts"].items():
            if custom:
                module = self._rebuild_module(name)
            else:
                module = rebuild_checked(self, name, tensor_layout(state_dict))
            module.load_state_dict(state_dict)
            setattr(self, name, module.to(target))


class TorchEstimatorMixin(TorchStateMixin):
    """Seeding and device helpers for estimators; mix in left of ``BaseEstimator``."""

    #: Set only once training succeeded (``n_features_in_`` is set earlier, by
    #: data validation, and would make a failed fit look fitted).
    _fitted_attribute = "module_"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, self._fitted_attribute)

    def _validated(self, X):
        """X checked for inference: fitted estimator, same features as in fit."""
        check_is_fitted(self)
        return validate_input(self, X, reset=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _training_seed(self, first_call: bool) -> int:
        """A fresh seed for this training call, reproducible from random_state.

        The first call draws a base seed from ``random_state``; calls that
        continue training (``warm_start``, ``partial_fit``) derive theirs from
        it and the number of epochs done, so each gets new permutations.
        """
        if first_call:
            # one seed for every rank of a data-parallel fit (random_state=None too)
            self._base_seed = distributed.broadcast_object(draw_seed(self.random_state))
            return self._base_seed
        return derive_seed(self._base_seed, self.n_iter_)

    def _resolve_batch_size(self, n_samples: int) -> int:
        if self.batch_size == "auto":
            return min(self._auto_batch_size(), n_samples)
        return min(self.batch_size, n_samples)

    def _auto_batch_size(self) -> int:
        """What ``batch_size="auto"`` means before clipping to the samples."""
        return AUTO_BATCH_SIZE


def check_loss_range(source: BatchSource, loss: str, streamed: bool) -> None:
    """Values that ``loss`` can model; streamed data are also checked for NaN here.

    ``"bce"`` models Bernoulli pixels: values in [0, 1]. ``"multinomial"``
    models counts (or TF-IDF weights): values >= 0, and not all zero.
    """
    if not streamed and loss not in ("bce", "multinomial"):
        return
    lo, hi = check_finite_range(source)
    if loss == "bce" and (lo < 0.0 or hi > 1.0):
        raise ValueError(
            f"loss='bce' needs X in [0, 1], got values in [{lo:.4g}, {hi:.4g}]. Scale X "
            "with sklearn.preprocessing.MinMaxScaler or use loss='mse'."
        )
    if loss == "multinomial" and lo < 0.0:
        raise ValueError(
            f"loss='multinomial' needs non-negative X (counts or TF-IDF weights), got a "
            f"minimum of {lo:.4g}. Use loss='mse' for centred or signed data."
        )


__all__ = [
    "FLOAT_DTYPES",
    "INFERENCE_CHUNK",
    "NETWORK_CONSTRAINTS",
    "TRAINING_CONSTRAINTS",
    "TorchEstimatorMixin",
    "TorchStateMixin",
    "DataScaleWarning",
    "as_dense",
    "check_finite_range",
    "check_loss_range",
    "data_dtype",
    "is_streamed",
    "make_source",
    "non_finite_error",
    "validate_input",
    "derive_seed",
    "device_available",
    "draw_seed",
    "infer",
    "inference_dtype",
    "make_generator",
    "module_device",
    "resolve_device",
    "to_tensor",
    "warn_not_converged",
]
