"""ReconstructionDisplay: originals beside reconstructions (images) or per-feature errors."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_array

from ._common import autoencoder_of, estimator_name, import_pyplot, split_pipeline


def _can_invert(pre) -> bool:
    return all(hasattr(step, "inverse_transform") for _, step in pre.steps)


def _as_image(row, image_shape):
    """One row as an image: (h, w), (h, w, c), or channels-first (c, h, w) with c in 1, 3, 4."""
    img = np.asarray(row, dtype=float).reshape(image_shape)
    if img.ndim == 3 and image_shape[0] in (1, 3, 4) and image_shape[-1] not in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    return img


class ReconstructionDisplay:
    """Originals and the autoencoder's reconstructions of them.

    With ``image_shape`` the first ``n_images`` samples are drawn as a grid:
    originals on the top row, reconstructions below. Otherwise (tabular
    data) each feature's mean squared reconstruction error is drawn as a
    bar, named from ``feature_names_in_``.

    Build it with :meth:`from_estimator`; the constructor only stores data.

    Parameters
    ----------
    originals : ndarray of shape (n_samples, n_features)
    reconstructions : ndarray of shape (n_samples, n_features)
    image_shape : tuple of int, default=None
        Shape of one sample as an image: ``(height, width)``,
        ``(height, width, channels)`` or ``(channels, height, width)``.
    feature_names : array-like of str, default=None
        Names of the bars in tabular mode; ``x0, x1, ...`` when None.
    estimator_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    errors_ : ndarray of shape (n_features,)
        Mean squared reconstruction error of each feature, over the samples
        shown (all of X in tabular mode, the first ``n_images`` for images).
    image_ : matplotlib AxesImage or None
        The grid, in image mode.
    bars_ : matplotlib BarContainer or None
        The per-feature errors, in tabular mode.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    """

    def __init__(
        self,
        *,
        originals,
        reconstructions,
        image_shape=None,
        feature_names=None,
        estimator_name=None,
    ):
        self.originals = originals
        self.reconstructions = reconstructions
        self.image_shape = image_shape
        self.feature_names = feature_names
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, X, *, image_shape=None, n_images=8, ax=None):
        """Reconstruct X with a fitted estimator and plot originals beside it.

        Parameters
        ----------
        estimator : estimator or Pipeline
            A fitted autoencoder, or a clusterer or outlier detector (their
            autoencoder reconstructs), or a Pipeline ending in one. Errors
            per feature are measured in the space the autoencoder sees
            (after the Pipeline's preprocessing, where features are on
            comparable scales). Images are shown in X's own units when
            every preprocessing step has ``inverse_transform``.
        X : array-like of shape (n_samples, n_features)
            Data to reconstruct.
        image_shape : tuple of int, default=None
            Draw samples as images of this shape. When None, the
            estimator's own ``image_shape`` attribute is used if it has one
            (not None); otherwise the per-feature errors are drawn.
        n_images : int, default=8
            Number of samples (the first ones) in the image grid.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.

        Returns
        -------
        display : ReconstructionDisplay
        """
        pre, final = split_pipeline(estimator)
        autoencoder = autoencoder_of(final)
        if not hasattr(autoencoder, "inverse_transform"):
            raise TypeError(
                f"{type(final).__name__} has no decoder to reconstruct with (it "
                f"embeds with a {type(autoencoder).__name__}); pass a model built on "
                "an autoencoder, e.g. DeepEmbeddingClusterer(autoencoder=DeepAutoencoder())."
            )
        Xt = pre.transform(X) if pre is not None else X
        recon = autoencoder.inverse_transform(autoencoder.transform(Xt))
        originals = check_array(Xt, dtype=np.float64)
        if image_shape is None:
            for candidate in (final, autoencoder):
                if getattr(candidate, "image_shape", None) is not None:
                    image_shape = candidate.image_shape
                    break
        if image_shape is None:
            # per-feature errors in the space the autoencoder sees (scaled),
            # where they are comparable across features
            if pre is not None:
                names = pre.get_feature_names_out() if hasattr(pre, "get_feature_names_out") \
                    else None
            else:
                names = getattr(final, "feature_names_in_", None)
        else:
            names = None
            image_shape = tuple(int(s) for s in np.atleast_1d(image_shape))
            n_images = int(n_images)
            if pre is not None and _can_invert(pre):  # images in X's own units
                recon = pre.inverse_transform(np.asarray(recon)[:n_images])
                originals = check_array(X, dtype=np.float64)
            if int(np.prod(image_shape)) != originals.shape[1]:
                raise ValueError(
                    f"image_shape={image_shape} holds {int(np.prod(image_shape))} values, "
                    f"but X has {originals.shape[1]} features."
                )
            originals, recon = originals[:n_images], np.asarray(recon)[:n_images]
        display = cls(
            originals=originals,
            reconstructions=np.asarray(recon, dtype=np.float64),
            image_shape=image_shape,
            feature_names=names,
            estimator_name=estimator_name(estimator),
        )
        return display.plot(ax=ax)

    def plot(self, ax=None, *, cmap="gray"):
        """Draw the image grid or the per-feature error bars.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        cmap : str, default="gray"
            Colour map of single-channel images.

        Returns
        -------
        display : ReconstructionDisplay
        """
        originals = np.asarray(self.originals, dtype=float)
        recon = np.asarray(self.reconstructions, dtype=float)
        self.errors_ = np.mean((originals - recon) ** 2, axis=0)
        self.image_ = self.bars_ = None
        if ax is None:
            if self.image_shape is not None:
                figsize = (max(4.0, 1.2 * len(originals)), 3.0)
            else:
                figsize = (max(6.4, 0.3 * originals.shape[1]), 4.8)
            _, ax = import_pyplot().subplots(figsize=figsize)
        fig = ax.figure
        if self.image_shape is not None:
            self._plot_images(ax, originals, recon, cmap)
        else:
            self._plot_errors(ax)
        self.ax_, self.figure_ = ax, fig
        return self

    def _plot_images(self, ax, originals, recon, cmap):
        tiles = [[_as_image(r, self.image_shape) for r in rows] for rows in (originals, recon)]
        h, w = tiles[0][0].shape[:2]
        pad = max(1, h // 8)
        extra = tiles[0][0].shape[2:]
        n = len(originals)
        grid = np.full((2 * h + 3 * pad, n * w + (n + 1) * pad, *extra), np.nan)
        for r in range(2):
            for c in range(n):
                top, left = pad + r * (h + pad), pad + c * (w + pad)
                grid[top : top + h, left : left + w] = tiles[r][c]
        lo = np.nanmin(originals) if originals.size else 0.0
        hi = np.nanmax(originals) if originals.size else 1.0
        if extra:  # colour images: imshow wants values in [0, 1]
            grid = np.clip((grid - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
            grid = np.where(np.isnan(grid), 1.0, grid)
            self.image_ = ax.imshow(grid, interpolation="nearest")
        else:
            self.image_ = ax.imshow(
                grid, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest"
            )
        ax.set_xticks([])
        ax.set_yticks([pad + h / 2, 2 * pad + 1.5 * h])
        ax.set_yticklabels(["original", "reconstruction"])
        ax.tick_params(axis="y", length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        title = "Reconstructions"
        if self.estimator_name:
            title = f"{self.estimator_name}: reconstructions"
        ax.set_title(title)

    def _plot_errors(self, ax):
        n_features = len(self.errors_)
        names = (
            [str(n) for n in self.feature_names]
            if self.feature_names is not None
            else [f"x{i}" for i in range(n_features)]
        )
        positions = np.arange(n_features)
        self.bars_ = ax.bar(positions, self.errors_, color="C0")
        ax.set_xticks(positions)
        ax.set_xticklabels(names, rotation=90, fontsize="small" if n_features > 15 else None)
        ax.set_ylabel("mean squared reconstruction error")
        title = "Reconstruction error per feature"
        if self.estimator_name:
            title = f"{self.estimator_name}: {title[0].lower()}{title[1:]}"
        ax.set_title(title)
        ax.figure.tight_layout()
