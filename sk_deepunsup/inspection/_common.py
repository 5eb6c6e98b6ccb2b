"""Helpers shared by the Displays: lazy matplotlib and estimator unwrapping."""

from __future__ import annotations

from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted


def import_pyplot():
    """``matplotlib.pyplot``, or an ImportError that names the pip extra."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "The sk_deepunsup.inspection Displays need matplotlib: "
            'pip install "sk-deepunsup[plot]"'
        ) from exc
    return plt


def get_ax(ax):
    """``(figure, ax)``: a new figure and axes when ``ax`` is None."""
    plt = import_pyplot()
    if ax is None:
        _, ax = plt.subplots()
    return ax.figure, ax


def split_pipeline(estimator):
    """``(preprocessing or None, final estimator)``, after a fitted check."""
    check_is_fitted(estimator)
    if isinstance(estimator, Pipeline):
        final = estimator[-1]
        pre = estimator[:-1] if len(estimator) > 1 else None
        return pre, final
    return None, estimator


def autoencoder_of(estimator):
    """The fitted autoencoder behind ``estimator`` (itself, or its ``autoencoder_``)."""
    if hasattr(estimator, "inverse_transform") and hasattr(estimator, "module_"):
        return estimator
    inner = getattr(estimator, "autoencoder_", None)
    if inner is not None:
        return inner
    raise TypeError(
        f"{type(estimator).__name__} has no autoencoder; pass a DeepAutoencoder, "
        "VariationalAutoencoder, DeepEmbeddingClusterer or AutoencoderOutlierDetector "
        "(or a Pipeline ending in one)."
    )


def estimator_name(estimator) -> str:
    _, final = (None, estimator[-1]) if isinstance(estimator, Pipeline) else (None, estimator)
    return type(final).__name__
