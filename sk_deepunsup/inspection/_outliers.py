"""explain_outliers: which features make each sample an outlier, named in the user's features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._user_space import as_dense_float, check_positive_int, resolve_user_space


@dataclass
class OutlierExplanation:
    """What :func:`explain_outliers` found; print it for a text summary.

    Attributes
    ----------
    contributions : pandas.DataFrame of shape (n_samples, n_features)
        The detector's ``feature_contributions``, one column per feature,
        indexed like X; each row sums to the sample's outlyingness.
    scores : pandas.Series
        The outlyingness, ``-score_samples`` (higher is more outlying).
    top : pandas.DataFrame
        One row per (sample, rank), the most outlying samples first and each
        sample's most blamed features first: ``sample`` (X's index),
        ``rank``, ``feature``, ``contribution``, ``share`` (of the sample's
        outlyingness) and ``value`` (the feature's value in X).
    """

    contributions: object
    scores: object
    top: object

    def summary(self, n_samples: int = 5) -> str:
        """The most outlying samples, each with its most blamed features."""
        lines = []
        for sample in self.scores.sort_values(ascending=False).index[:n_samples]:
            rows = self.top[self.top["sample"] == sample]
            blamed = ", ".join(
                f"{f} = {v:.4g} ({100 * s:.0f}%)"
                for f, v, s in zip(rows["feature"], rows["value"], rows["share"])
            )
            lines.append(f"sample {sample}: outlyingness {self.scores[sample]:.3g}; {blamed}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def explain_outliers(model, X, *, n_features=3):
    """Why each sample is (or is not) an outlier: the features that carry its score.

    Parameters
    ----------
    model : estimator or Pipeline
        A fitted outlier detector with ``feature_contributions``
        (:class:`~sk_deepunsup.AutoencoderOutlierDetector`), or a Pipeline
        ending in one. The Pipeline's steps run first; features are named
        after X's columns when the steps keep them (scalers), else after the
        steps' ``get_feature_names_out``.
    X : array-like or DataFrame of shape (n_samples, n_features)
        Samples to explain.
    n_features : int, default=3
        Features listed per sample in ``top``.

    Returns
    -------
    explanation : OutlierExplanation
        ``contributions``, ``scores`` and ``top``, all pandas, whatever the
        pipeline's ``set_output``.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sk_deepunsup import AutoencoderOutlierDetector
    >>> from sk_deepunsup.inspection import explain_outliers
    >>> rng = np.random.RandomState(0)
    >>> X = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    >>> model = make_pipeline(StandardScaler(), AutoencoderOutlierDetector(random_state=0)).fit(X)
    >>> odd = X.iloc[:1].assign(c=8.0)
    >>> explain_outliers(model, odd, n_features=1).top["feature"].tolist()
    ['c']
    """
    import pandas as pd

    n_features = check_positive_int(n_features, "n_features")
    space = resolve_user_space(model, X)
    final = space.final
    if not hasattr(final, "feature_contributions"):
        raise TypeError(
            f"{type(final).__name__} has no feature_contributions; pass a fitted "
            "AutoencoderOutlierDetector (or a Pipeline ending in one)."
        )
    values = np.asarray(final.feature_contributions(space.model_input), dtype=np.float64)
    names, shown = space.names, space.features
    if len(names) != values.shape[1]:  # the steps changed the features: name their outputs
        names = np.asarray(model[:-1].get_feature_names_out(), dtype=object)
        shown = space.model_input
    shown = as_dense_float(shown)
    index = space.index if space.index is not None else pd.RangeIndex(values.shape[0])
    contributions = pd.DataFrame(values, index=index, columns=[str(n) for n in names])
    scores = pd.Series(values.sum(axis=1), index=index, name="outlyingness")
    n_top = min(n_features, values.shape[1])
    order = np.argsort(-values, axis=1, kind="stable")[:, :n_top]
    by_score = np.argsort(-scores.to_numpy(), kind="stable")
    rows = np.repeat(by_score, n_top)
    cols = order[by_score].ravel()
    total = np.where(scores.to_numpy() > 0, scores.to_numpy(), 1.0)
    top = pd.DataFrame(
        {
            "sample": index[rows],
            "rank": np.tile(np.arange(1, n_top + 1), len(by_score)),
            "feature": np.asarray(contributions.columns)[cols],
            "contribution": values[rows, cols],
            "share": values[rows, cols] / total[rows],
            "value": shown[rows, cols],
        }
    )
    return OutlierExplanation(contributions=contributions, scores=scores, top=top)
