"""Input validation shared by every estimator: what X may be, and the checks run on it.

Arrays and sparse matrices go through scikit-learn's ``validate_data``; streamed row
storage (large memory maps, h5py and zarr arrays) is checked on its shape and first rows,
and its values as they are read. Bad input gets a ValueError that names the fix.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import validate_data

from ._images import check_two_dimensional
from ._nn import BatchSource

#: The dtypes estimators accept without conversion; anything else becomes float64.
FLOAT_DTYPES = (np.float64, np.float32)

#: Memory maps larger than this (as float32) are read batch by batch, not loaded.
STREAM_BYTES = 1 << 28

#: Largest magnitude accepted in X (float32 squares overflow near 1e19).
MAX_ABS_VALUE = 1e15

#: The widest feature range over the narrowest that makes fit warn (DataScaleWarning).
SCALE_RATIO = 100.0


def hidden_sizes(value, given=None) -> list[int]:
    """``hidden_layer_sizes`` (``value``) as a list of positive ints, or a ValueError.

    ``given`` is what the user passed, for the message (default ``value``).
    """
    sizes = np.atleast_1d(np.asarray(value)).ravel().tolist()
    if any(not float(s).is_integer() or s < 1 for s in sizes):
        shown = value if given is None else given
        raise ValueError(f"hidden_layer_sizes must be positive integers, got {shown!r}.")
    return [int(s) for s in sizes]


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
        with strings_named():
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


@contextmanager
def strings_named():
    """numpy's "could not convert string to float" becomes an error that names the fix."""
    try:
        yield
    except ValueError as exc:
        if "could not convert string" not in str(exc):
            raise
        raise ValueError(
            f"X holds text ({exc}); the estimators read numbers. Encode text or categorical "
            "columns first (e.g. OneHotEncoder or OrdinalEncoder in a ColumnTransformer, "
            "TfidfVectorizer for free text) or drop them."
        ) from None


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
