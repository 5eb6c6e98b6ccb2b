"""feature_attributions: which features place a sample where the model puts it.

Integrated gradients (Sundararajan et al., 2017), computed by captum, of a
differentiable output of the model (its code, map coordinates or cluster
probabilities) with respect to the features the model takes in. They are
complete: a sample's attributions add up to ``f(x) - f(baseline)``.
"""

from __future__ import annotations

import copy

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._user_space import as_dense_float, resolve_user_space

OUTPUTS = ("auto", "transform", "predict_proba")

#: rows of the integration path per forward pass
INTERNAL_BATCH = 4096


def _import_captum():
    try:
        from captum.attr import IntegratedGradients
    except ImportError as exc:
        raise ImportError(
            "feature_attributions computes integrated gradients with captum: "
            'pip install "sk-deepunsup[explain]"'
        ) from exc
    return IntegratedGradients


def differentiable_output(final, output):
    """The torch module behind ``final``'s ``transform`` or ``predict_proba``, and its name."""
    if output == "auto":
        output = "predict_proba" if hasattr(final, "get_assignment_module") else "transform"
    if output == "predict_proba":
        if not hasattr(final, "get_assignment_module"):
            raise TypeError(
                f"{type(final).__name__} has no differentiable predict_proba; use "
                "output='transform', or a DeepEmbeddingClusterer."
            )
        return final.get_assignment_module(), output
    if not hasattr(final, "get_encoder"):
        raise TypeError(
            f"{type(final).__name__} has no encoder to differentiate; pass a fitted "
            "DeepAutoencoder, VariationalAutoencoder, NeighborEmbedding or "
            "DeepEmbeddingClusterer (or a Pipeline ending in one)."
        )
    return final.get_encoder(), output


def _output_names(final, output, n_outputs):
    if output == "predict_proba":
        classes = getattr(final, "classes_", np.arange(n_outputs))
        return [f"cluster {c}" for c in classes]
    try:
        return [str(n) for n in final.get_feature_names_out()]
    except (AttributeError, ValueError):
        return [f"output {i}" for i in range(n_outputs)]


def _baseline_row(baseline, inputs):
    if baseline is None:
        if inputs.shape[0] < 2:
            raise ValueError(
                "With one sample, the default baseline (the mean of X) is the sample itself; "
                "pass baseline=X_train (its mean is used) or one row of baseline values."
            )
        return inputs.mean(axis=0)
    baseline = np.asarray(baseline, dtype=np.float64)
    if baseline.ndim == 2:
        baseline = baseline.mean(axis=0)
    if baseline.shape != (inputs.shape[1],):
        raise ValueError(
            f"baseline has shape {baseline.shape}; pass one value per input feature "
            f"({inputs.shape[1]}) or reference rows of that width."
        )
    return baseline


def feature_attributions(
    model, X, *, baseline=None, output="auto", n_steps=64, return_names=False
):
    """Per-sample, per-feature attributions of a model's learned output.

    For each sample, how much each input feature moves the model's output
    away from its value at ``baseline``: the integrated gradients of the
    output along the straight path from the baseline to the sample.
    Attributions are complete: ``attributions[i].sum(axis=0)`` equals
    ``f(X[i]) - f(baseline)`` up to the integration error.

    Parameters
    ----------
    model : estimator or Pipeline
        A fitted :class:`~sk_deepunsup.NeighborEmbedding`,
        :class:`~sk_deepunsup.DeepAutoencoder`,
        :class:`~sk_deepunsup.VariationalAutoencoder` or
        :class:`~sk_deepunsup.DeepEmbeddingClusterer`, or a Pipeline ending
        in one. The Pipeline's steps run first; attributions are to the
        features the last step takes in (the user's own features when the
        steps only scale them, as ``StandardScaler`` does: integrated
        gradients do not change under a per-feature scaling).
    X : array-like of shape (n_samples, n_features)
        Samples to explain.
    baseline : None, array-like of shape (n_features,) or (n_rows, n_features)
        The reference point, in the last step's input space. None: the mean
        of X (pass the training data, or its rows as ``baseline``, to explain
        new samples against the training mean); 2-D: the mean of its rows.
    output : {"auto", "transform", "predict_proba"}, default="auto"
        What to explain: the code or map coordinates (``"transform"``), or
        the clusterer's soft assignment (``"predict_proba"``, why a sample
        is in cluster c). ``"auto"``: ``predict_proba`` for a clusterer,
        else ``transform``.
    n_steps : int, default=64
        Points of the Gauss-Legendre rule along the path.
    return_names : bool, default=False
        Also return the feature and output names.

    Returns
    -------
    attributions : ndarray of shape (n_samples, n_features, n_outputs)
    feature_names, output_names : lists of str
        Only when ``return_names=True``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_deepunsup import DeepAutoencoder
    >>> from sk_deepunsup.inspection import feature_attributions
    >>> X = load_digits().data[:200] / 16
    >>> model = DeepAutoencoder(n_components=2, max_iter=5, random_state=0).fit(X)
    >>> attributions = feature_attributions(model, X[:10])
    >>> attributions.shape
    (10, 64, 2)
    """
    IntegratedGradients = _import_captum()
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}.")
    if not isinstance(n_steps, (int, np.integer)) or isinstance(n_steps, bool) or n_steps < 2:
        raise ValueError(f"n_steps must be an int >= 2, got {n_steps!r}.")
    check_is_fitted(model)
    space = resolve_user_space(model, X)
    inputs = _model_inputs(space)
    module, output = differentiable_output(space.final, output)
    attributions = _integrated_gradients(
        IntegratedGradients, module, inputs, _baseline_row(baseline, inputs), int(n_steps)
    )
    if not return_names:
        return attributions
    n_in = inputs.shape[1]
    names = space.names if len(space.names) == n_in else _input_names(model, n_in)
    outputs = _output_names(space.final, output, attributions.shape[2])
    return attributions, list(map(str, names)), outputs


def _model_inputs(space):
    """X as the last step takes it, dense float64, checked against its width."""
    inputs = as_dense_float(space.model_input)
    n_in = getattr(space.final, "n_features_in_", inputs.shape[1])
    if inputs.shape[1] != n_in:
        raise ValueError(
            f"X has {inputs.shape[1]} features after the pipeline's steps, but "
            f"{type(space.final).__name__} is expecting {n_in} features as input."
        )
    return inputs


def _integrated_gradients(IntegratedGradients, module, inputs, reference, n_steps):
    """captum's integrated gradients of every output of ``module``, in float64."""
    import torch

    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    module = copy.deepcopy(module).to(torch.float64).eval()  # the model's own stays as it is
    x = torch.as_tensor(inputs, dtype=torch.float64, device=device)
    base = torch.as_tensor(reference, dtype=torch.float64, device=device).expand_as(x)
    with torch.no_grad():
        n_outputs = module(x[:1]).shape[1]
    explainer = IntegratedGradients(module)
    per_output = [
        explainer.attribute(
            x,
            baselines=base,
            target=target,
            n_steps=n_steps,
            method="gausslegendre",
            internal_batch_size=INTERNAL_BATCH,
        )
        .detach()
        .cpu()
        .numpy()
        for target in range(n_outputs)
    ]
    return np.stack(per_output, axis=2)


def _input_names(model, n_in):
    """Names of the last step's inputs: the preprocessing's output names."""
    try:
        return [str(n) for n in model[:-1].get_feature_names_out()]
    except (AttributeError, TypeError, ValueError):
        return [f"x{i}" for i in range(n_in)]


def attribution_summary(model, X, **kwargs):
    """Which features drive each output overall: the mean absolute attribution over X.

    Parameters
    ----------
    model : estimator or Pipeline
        As in :func:`feature_attributions`.
    X : array-like of shape (n_samples, n_features)
        Samples to average over (usually the training data).
    **kwargs
        Passed to :func:`feature_attributions` (``baseline``, ``output``,
        ``n_steps``).

    Returns
    -------
    summary : pandas.DataFrame of shape (n_features, n_outputs)
        Indexed by feature name, one column per output (map axis, code
        dimension or cluster), sorted by the features' largest value.
    """
    import pandas as pd

    attributions, features, outputs = feature_attributions(model, X, return_names=True, **kwargs)
    table = pd.DataFrame(np.abs(attributions).mean(axis=0), index=features, columns=outputs)
    return table.loc[table.max(axis=1).sort_values(ascending=False, kind="stable").index]
