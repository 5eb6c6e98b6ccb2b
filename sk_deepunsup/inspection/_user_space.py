"""The space an explanation speaks in: the user's own features, with their names.

A model is an estimator or a ``Pipeline`` ending in one. Its explanations name
the features of the first numeric form of X:

- X itself when it is a numeric table (a DataFrame's columns, the pipeline's
  ``feature_names_in_``, ``pixel[r, c]`` names for images, else ``x0, x1, ...``);
- otherwise (raw text, categorical columns) the output of the fewest leading
  pipeline steps that make it numeric, named by their ``get_feature_names_out``
  (a vectorizer's terms, a one-hot encoder's categories).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted


@dataclass
class UserSpace:
    """What an explanation needs: the model's last step and X in two forms."""

    final: object  # the last estimator
    model_input: object  # X as the last step sees it (after the preprocessing)
    features: object  # X in the user's features (ndarray or sparse matrix)
    names: np.ndarray  # a name per column of ``features``
    index: object  # X's row index (a DataFrame's) or None


def _is_numeric_table(X) -> bool:
    if sp.issparse(X):
        return True
    if hasattr(X, "dtypes"):  # a DataFrame: every column numeric or boolean
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        return all(is_numeric_dtype(dtype) or is_bool_dtype(dtype) for dtype in X.dtypes)
    array = np.asarray(X)
    return array.ndim == 2 and (np.issubdtype(array.dtype, np.number) or array.dtype == bool)


def as_float_table(X):
    """A float64 array, or a CSR matrix for sparse X."""
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float64)
    return np.asarray(X, dtype=np.float64)


def as_dense_float(X) -> np.ndarray:
    """X as a dense float64 array (a sparse matrix densified)."""
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


def check_positive_int(value, name):
    """``value`` as an int, or a ValueError naming ``name``."""
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def image_feature_names(image_shape) -> np.ndarray:
    """``pixel[r, c]`` (``pixel[ch, r, c]`` for several channels) in C order."""
    shape = tuple(int(s) for s in image_shape)
    index = np.indices(shape).reshape(len(shape), -1).T
    if len(shape) == 3 and shape[0] == 1:
        index = index[:, 1:]
    return np.array([f"pixel[{', '.join(map(str, i))}]" for i in index], dtype=object)


def model_image_shape(final):
    """The image shape a fitted model was built for, or None."""
    for owner in (final, getattr(final, "autoencoder_", None), getattr(final, "autoencoder", None)):
        shape = getattr(owner, "image_shape", None)
        if shape is not None:
            return tuple(shape)
    return None


def _named_columns(model, final, X, n_columns, image_shape):
    if hasattr(X, "columns"):
        return np.asarray([str(c) for c in X.columns], dtype=object)
    for owner in (model, final):
        names = getattr(owner, "feature_names_in_", None)
        if names is not None and len(names) == n_columns:
            return np.asarray(names, dtype=object)
    if image_shape is not None and int(np.prod(image_shape)) == n_columns:
        return image_feature_names(image_shape)
    return np.array([f"x{i}" for i in range(n_columns)], dtype=object)


def _through_steps(model, X):
    """X after the fewest leading steps that make it a numeric table, their names, and
    how many steps that took."""
    for stop in range(1, len(model)):
        head = model[:stop]
        out = head.transform(X)
        if _is_numeric_table(out):
            try:
                names = head.get_feature_names_out()
            except (AttributeError, ValueError, TypeError) as exc:
                raise ValueError(
                    f"The pipeline's step {model.steps[stop - 1][0]!r} cannot name its output "
                    f"features ({exc}); pass feature_names=... with one name per column it "
                    "outputs, or pass X already transformed to a numeric table."
                ) from exc
            return out, np.asarray(names, dtype=object), stop
    raise ValueError(
        "X is not a numeric table and no step of the pipeline makes it one; pass a numeric "
        "array, DataFrame or sparse matrix."
    )


def resolve_user_space(model, X, *, feature_names=None, image_shape=None) -> UserSpace:
    """Split ``model`` and express ``X`` in the user's features (see the module docstring)."""
    check_is_fitted(model)
    pipeline = isinstance(model, Pipeline)
    final = model[-1] if pipeline else model
    index = getattr(X, "index", None)
    image_shape = image_shape if image_shape is not None else model_image_shape(final)
    if _is_numeric_table(X):
        features, done = X, 0
        names = _named_columns(model, final, X, X.shape[1], image_shape)
    elif pipeline:
        features, names, done = _through_steps(model, X)
    else:
        raise TypeError(
            f"X of type {type(X).__name__} is not a numeric table; pass a numeric array, "
            "DataFrame or sparse matrix, or a Pipeline whose first steps make X numeric."
        )
    # the rest of the preprocessing continues from where the user's features stopped
    model_input = features
    if pipeline and done < len(model) - 1:
        model_input = model[done:-1].transform(features)
    features = as_float_table(features)
    if feature_names is not None:
        names = np.asarray(feature_names, dtype=object)
        if names.shape != (features.shape[1],):
            raise ValueError(
                f"feature_names has {names.size} names for {features.shape[1]} features; pass "
                "one name per column of X (after the steps that make it numeric)."
            )
    return UserSpace(final, model_input, features, names, index)
