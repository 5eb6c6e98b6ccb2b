"""ClusterExplanationDisplay: what makes each cluster, drawn."""

from __future__ import annotations

import numpy as np

from ._clusters import explain_clusters
from ._common import get_ax

KINDS = ("auto", "heatmap", "bars", "prototypes")

#: features each cluster adds to the heatmap's columns
HEATMAP_FEATURES = 3


def _panels(ax, n_panels, n_cols, size):
    """A grid of axes: a new figure (``size`` inches a panel), or ``ax``'s place split."""
    from ._common import import_pyplot

    plt = import_pyplot()
    n_rows = int(np.ceil(n_panels / n_cols))
    if ax is None:
        figure = plt.figure(figsize=(size[0] * n_cols, size[1] * n_rows + 0.4))
        grid = figure.add_gridspec(n_rows, n_cols)
    else:
        figure = ax.figure
        grid = ax.get_subplotspec().subgridspec(n_rows, n_cols)
        ax.remove()
    axes = np.array([figure.add_subplot(grid[i // n_cols, i % n_cols]) for i in range(n_panels)])
    return figure, axes


class ClusterExplanationDisplay:
    """What distinguishes each cluster: a heatmap, term bars or prototype images.

    Build it with :meth:`from_estimator` or :meth:`from_explanation`; the
    constructor only stores the explanation.

    Parameters
    ----------
    explanation : ClusterExplanation
        The result of :func:`explain_clusters`.
    prototype_images : dict or None, default=None
        Cluster -> array of shape ``(n_prototypes, *image_shape)``, drawn by
        ``kind="prototypes"``.

    Attributes
    ----------
    ax_ : matplotlib Axes or ndarray of Axes
        One Axes for the heatmap, one per cluster otherwise.
    figure_ : matplotlib Figure
    """

    def __init__(self, explanation, *, prototype_images=None):
        self.explanation = explanation
        self.prototype_images = prototype_images

    @classmethod
    def from_estimator(cls, model, X, *, kind="auto", ax=None, **kwargs):
        """Explain a fitted clusterer's clusters of X and draw them.

        Parameters
        ----------
        model : estimator or Pipeline
            As in :func:`explain_clusters`.
        X : array-like, DataFrame, sparse matrix or raw input of the pipeline
            The samples to explain.
        kind : {"auto", "heatmap", "bars", "prototypes"}, default="auto"
            See :meth:`plot`.
        ax : matplotlib Axes, default=None
            Where to draw (split into panels for ``"bars"`` and
            ``"prototypes"``); a new figure when None.
        **kwargs
            Passed to :func:`explain_clusters` (``n_features``,
            ``n_prototypes``, ``image_shape``, ...).

        Returns
        -------
        display : ClusterExplanationDisplay
        """
        explanation = explain_clusters(model, X, **kwargs)
        return cls.from_explanation(explanation, X=X, kind=kind, ax=ax)

    @classmethod
    def from_explanation(cls, explanation, *, X=None, kind="auto", ax=None):
        """Draw an explanation :func:`explain_clusters` returned.

        Parameters
        ----------
        explanation : ClusterExplanation
        X : array-like of shape (n_samples, n_pixels), default=None
            The explained samples, needed to draw prototype images.
        kind : {"auto", "heatmap", "bars", "prototypes"}, default="auto"
            See :meth:`plot`.
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : ClusterExplanationDisplay
        """
        images = None
        if explanation.image_shape is not None and X is not None and not hasattr(X, "columns"):
            data = np.asarray(X)
            if data.ndim == 2 and data.shape[1] == int(np.prod(explanation.image_shape)):
                images = {
                    c: data[rows].reshape(len(rows), *explanation.image_shape)
                    for c, rows in explanation.prototypes.items()
                }
        return cls(explanation, prototype_images=images).plot(kind=kind, ax=ax)

    def plot(self, *, kind="auto", ax=None):
        """Draw the explanation.

        Parameters
        ----------
        kind : {"auto", "heatmap", "bars", "prototypes"}, default="auto"
            ``"heatmap"``: the effect size (``2 * AUC - 1``) of each cluster
            (row) on the features that are among any cluster's three most
            distinctive (columns); ``"bars"``: one panel per cluster with its
            top features' scores (terms, for text); ``"prototypes"``: each
            cluster's prototypes as images (a row per cluster). ``"auto"``:
            prototypes for images, bars for sparse features, else a heatmap.
        ax : matplotlib Axes, default=None

        Returns
        -------
        self : ClusterExplanationDisplay
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        if kind == "auto":
            if self.prototype_images is not None:
                kind = "prototypes"
            else:
                kind = "bars" if self.explanation.sparse else "heatmap"
        if kind == "prototypes" and self.prototype_images is None:
            raise ValueError(
                "kind='prototypes' draws images: build the display with from_estimator or "
                "from_explanation(explanation, X=X), with image_shape known."
            )
        getattr(self, f"_plot_{kind}")(ax)
        return self

    def _plot_heatmap(self, ax):
        table = self.explanation.features
        columns = list(dict.fromkeys(table[table["rank"] <= HEATMAP_FEATURES]["feature"]))
        values = self.explanation.effect_sizes.loc[:, columns].to_numpy()
        figure, ax = get_ax(ax)
        image = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks(range(len(columns)), [str(c) for c in columns], rotation=90)
        ax.set_yticks(range(values.shape[0]), [str(c) for c in self.explanation.sizes.index])
        ax.set_ylabel("cluster")
        figure.colorbar(image, ax=ax, label="effect size (2 AUC - 1)")
        self.figure_, self.ax_ = figure, ax

    def _plot_bars(self, ax):
        table = self.explanation.features
        clusters = list(self.explanation.sizes.index)
        figure, axes = _panels(ax, len(clusters), min(4, len(clusters)), (2.6, 1.9))
        for panel, cluster in zip(axes, clusters):
            rows = table[table["cluster"] == cluster]
            panel.barh(range(len(rows))[::-1], rows["score"], color="tab:blue")
            panel.set_yticks(range(len(rows))[::-1], [str(f) for f in rows["feature"]])
            panel.set_title(f"cluster {cluster} ({self.explanation.sizes[cluster]})", fontsize=9)
            panel.tick_params(labelsize=7)
        figure.tight_layout()
        self.figure_, self.ax_ = figure, axes

    def _plot_prototypes(self, ax):
        clusters = list(self.explanation.sizes.index)
        n_cols = max(len(v) for v in self.prototype_images.values())
        figure, axes = _panels(ax, len(clusters) * n_cols, n_cols, (0.9, 0.9))
        for i, cluster in enumerate(clusters):
            images = self.prototype_images[cluster]
            for j in range(n_cols):
                panel = axes[i * n_cols + j]
                panel.set_axis_off()
                if j < len(images):
                    image = images[j]
                    image = np.moveaxis(image, 0, -1) if image.ndim == 3 else image
                    panel.imshow(np.squeeze(image), cmap="gray_r")
                if j == 0:
                    panel.set_title(f"cluster {cluster}", fontsize=7, loc="left")
        figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.95, hspace=0.35)
        self.figure_, self.ax_ = figure, axes
