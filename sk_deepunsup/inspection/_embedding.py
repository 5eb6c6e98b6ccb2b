"""EmbeddingDisplay: a 2-D map of ``transform``, coloured by labels, clusters or scores."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.utils import get_tags

from ._common import autoencoder_of, estimator_name, get_ax, split_pipeline

COLOR_BY = ("auto", "labels", "clusters", "scores", "none")

#: Up to this many distinct labels get a legend; more get a colour bar.
MAX_LEGEND = 20


def _colors(final, Xt, y, color_by, n_samples):
    """``(color_by, colors)``: what colours the points, ``"auto"`` resolved."""
    kind = get_tags(final).estimator_type
    if color_by == "auto":
        if y is not None:
            color_by = "labels"
        elif kind == "clusterer":
            color_by = "clusters"
        elif kind == "outlier_detector":
            color_by = "scores"
        else:
            color_by = "none"
    if color_by == "labels":
        if y is None:
            raise ValueError('color_by="labels" needs y; pass the labels as y=.')
        colors = np.asarray(y)
        if colors.shape != (n_samples,):
            raise ValueError(f"y has shape {colors.shape}, but X has {n_samples} samples.")
        return color_by, colors
    if color_by == "clusters":
        if kind != "clusterer":
            raise ValueError(
                f'color_by="clusters" needs a clusterer, got {type(final).__name__}; '
                'use color_by="scores" or pass y.'
            )
        return color_by, np.asarray(final.predict(Xt))
    if color_by == "scores":
        if not hasattr(final, "score_samples"):
            raise ValueError(
                f'color_by="scores" needs score_samples, which {type(final).__name__} '
                "does not have."
            )
        return color_by, np.asarray(final.score_samples(Xt), dtype=float)
    return color_by, None


class EmbeddingDisplay:
    """The embedding of X as a scatter plot.

    Build it with :meth:`from_estimator`; the constructor only stores data.

    Parameters
    ----------
    embedding : ndarray of shape (n_samples, 2)
        Coordinates to plot (the embedding, or its PCA projection).
    colors : ndarray of shape (n_samples,), default=None
        Value that colours each point: labels, clusters (categorical) or
        scores (continuous).
    color_by : {"labels", "clusters", "scores", "none"}, default="none"
        What ``colors`` are.
    axis_labels : tuple of str, default=("component 1", "component 2")
    estimator_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    scatter_ : matplotlib PathCollection
    colorbar_ : matplotlib Colorbar or None
        For scores, or for more than 20 distinct labels.
    legend_ : matplotlib Legend or None
        For labels and clusters.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    """

    def __init__(
        self,
        *,
        embedding,
        colors=None,
        color_by="none",
        axis_labels=("component 1", "component 2"),
        estimator_name=None,
    ):
        self.embedding = embedding
        self.colors = colors
        self.color_by = color_by
        self.axis_labels = axis_labels
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, X, *, y=None, color_by="auto", ax=None):
        """Embed X with a fitted estimator and plot it.

        Parameters
        ----------
        estimator : estimator or Pipeline
            A fitted autoencoder, clusterer or outlier detector (embedded
            with its autoencoder), or a Pipeline ending in one (X goes
            through the preprocessing steps first).
        X : array-like of shape (n_samples, n_features)
            Data to embed.
        y : array-like of shape (n_samples,), default=None
            Labels to colour by (e.g. known classes).
        color_by : {"auto", "labels", "clusters", "scores", "none"}, default="auto"
            ``"labels"``: ``y``; ``"clusters"``: the clusterer's ``predict``;
            ``"scores"``: ``score_samples`` (outlier scores: higher is more
            normal); ``"auto"``: ``y`` when given, else clusters for a
            clusterer, scores for an outlier detector, else one colour.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.

        Returns
        -------
        display : EmbeddingDisplay
            Its ``embedding`` holds the plotted coordinates: ``transform``'s
            output, projected on its first two principal components when
            ``n_components > 2`` (``axis_labels`` then say "PC").
        """
        if color_by not in COLOR_BY:
            raise ValueError(f"color_by must be one of {COLOR_BY}, got {color_by!r}.")
        pre, final = split_pipeline(estimator)
        Xt = pre.transform(X) if pre is not None else X
        embedder = final if hasattr(final, "transform") else autoencoder_of(final)
        # an inner model was fitted on the outer one's validated array, without X's names
        inner_Xt = Xt.to_numpy() if embedder is not final and hasattr(Xt, "columns") else Xt
        embedding = np.asarray(embedder.transform(inner_Xt), dtype=float)
        color_by, colors = _colors(final, Xt, y, color_by, embedding.shape[0])
        n_components = embedding.shape[1]
        if n_components > 2:
            embedding = PCA(n_components=2, random_state=0).fit_transform(embedding)
            axis_labels = ("PC 1 of the embedding", "PC 2 of the embedding")
        elif n_components == 2:
            axis_labels = ("component 1", "component 2")
        else:
            embedding = np.column_stack([embedding[:, 0], np.arange(embedding.shape[0])])
            axis_labels = ("component 1", "sample index")
        display = cls(
            embedding=embedding,
            colors=colors,
            color_by=color_by,
            axis_labels=axis_labels,
            estimator_name=estimator_name(estimator),
        )
        return display.plot(ax=ax)

    def plot(self, ax=None, *, cmap=None, s=None, alpha=0.8):
        """Draw the scatter plot.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        cmap : str or Colormap, default=None
            ``"tab10"``/``"tab20"`` for labels and clusters (``"viridis"``
            beyond 20 of them), ``"viridis"`` for scores.
        s : float, default=None
            Marker size; matplotlib's default scaled down for many points.
        alpha : float, default=0.8

        Returns
        -------
        display : EmbeddingDisplay
        """
        fig, ax = get_ax(ax)
        import matplotlib
        from matplotlib.lines import Line2D

        emb = np.asarray(self.embedding)
        n = emb.shape[0]
        size = s if s is not None else (20 if n < 500 else 6)
        self.colorbar_ = self.legend_ = None
        categorical = self.color_by in ("labels", "clusters")
        if self.colors is None:
            self.scatter_ = ax.scatter(emb[:, 0], emb[:, 1], s=size, alpha=alpha)
        elif categorical:
            values, codes = np.unique(self.colors, return_inverse=True)
            if len(values) <= MAX_LEGEND:
                palette = matplotlib.colormaps.get_cmap(
                    cmap or ("tab10" if len(values) <= 10 else "tab20")
                )
                rgba = palette(codes % palette.N)
                self.scatter_ = ax.scatter(emb[:, 0], emb[:, 1], c=rgba, s=size, alpha=alpha)
                handles = [
                    Line2D([], [], marker="o", linestyle="", color=palette(i % palette.N))
                    for i in range(len(values))
                ]
                title = "cluster" if self.color_by == "clusters" else "label"
                self.legend_ = ax.legend(handles, [str(v) for v in values], title=title,
                                         loc="best", fontsize="small")
            else:
                self.scatter_ = ax.scatter(
                    emb[:, 0], emb[:, 1], c=codes, cmap=cmap or "viridis", s=size, alpha=alpha
                )
                self.colorbar_ = fig.colorbar(self.scatter_, ax=ax, label=self.color_by)
        else:
            self.scatter_ = ax.scatter(
                emb[:, 0], emb[:, 1], c=self.colors, cmap=cmap or "viridis", s=size, alpha=alpha
            )
            self.colorbar_ = fig.colorbar(
                self.scatter_, ax=ax, label="score (higher is more normal)"
            )
        ax.set_xlabel(self.axis_labels[0])
        ax.set_ylabel(self.axis_labels[1])
        if self.estimator_name:
            ax.set_title(f"{self.estimator_name} embedding")
        self.ax_, self.figure_ = ax, fig
        return self
