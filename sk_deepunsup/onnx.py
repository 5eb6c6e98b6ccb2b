"""Export to ONNX through skl2onnx, the way scikit-learn models are exported.

Importing this module registers converters for every estimator of the
package with skl2onnx, after which ``skl2onnx.to_onnx`` converts them and
pipelines that contain them::

    import sk_deepunsup.onnx  # registers the converters
    from skl2onnx import to_onnx

    onx = to_onnx(pipeline, X[:1])  # X[:1] fixes the input's type and width

:func:`register` does the same explicitly (it is idempotent), and
:func:`to_onnx` registers and converts in one call. Each estimator's own
network (its ``get_encoder()``; the clusterer's ``get_assignment_module()``)
is traced by torch's exporter into the graph, so onnxruntime (or any ONNX
runtime) serves the model without Python or torch.
Needs the ``onnx`` extra: ``pip install "sk-deepunsup[onnx]"``.

Outputs: the autoencoders and ``NeighborEmbedding`` give ``variable``
(``transform``); the clusterer
``label`` (``predict``) and ``probabilities`` (``predict_proba``); the
outlier detector ``label`` (``predict``, +1 / -1) and ``scores``
(``decision_function``).
"""

from __future__ import annotations

__all__ = ["register", "to_onnx"]

_REGISTERED = False


def register() -> None:
    """Register this package's skl2onnx converters (safe to call repeatedly).

    Raises
    ------
    ImportError
        When skl2onnx is not installed; the message names the pip extra.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    from ._onnx import register_converters

    register_converters()
    _REGISTERED = True


def to_onnx(model, X, **kwargs):
    """Convert ``model`` (an estimator or pipeline) with ``skl2onnx.to_onnx``.

    Parameters
    ----------
    model : estimator or Pipeline
        Fitted; this package's estimators may appear anywhere a
        scikit-learn estimator may.
    X : ndarray of shape (n_samples, n_features)
        Example input (``X[:1]`` is enough); its dtype, float32 or float64,
        is the ONNX input's type.
    **kwargs
        Passed on to ``skl2onnx.to_onnx`` (``target_opset``, ``options``...).

    Returns
    -------
    onx : onnx.ModelProto
    """
    register()
    from skl2onnx import to_onnx as skl2onnx_to_onnx

    return skl2onnx_to_onnx(model, X, **kwargs)


try:  # register on import when skl2onnx is there; register() explains otherwise
    register()
except ImportError:
    pass
