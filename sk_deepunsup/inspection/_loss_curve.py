"""LossCurveDisplay: training and validation loss per epoch, and label changes."""

from __future__ import annotations

import numpy as np

from ._common import estimator_name, get_ax, split_pipeline


class LossCurveDisplay:
    """Training loss per epoch, with the validation loss and DEC's label changes.

    Build it with :meth:`from_estimator`; the constructor only stores data.

    Parameters
    ----------
    loss_curve : array-like of shape (n_epochs,)
        Mean training loss of each epoch.
    validation_loss_curve : array-like of shape (n_epochs,), default=None
        Validation loss of each epoch (``early_stopping=True``).
    label_changes : array-like, default=None
        Share of samples that changed cluster at each target update of a
        :class:`~sk_deepunsup.DeepEmbeddingClusterer`.
    label_change_epochs : array-like, default=None
        Epoch (fractional) at which each label change was measured: the
        clusterer's fitted ``label_change_epochs_``. None spreads the changes
        evenly over the epochs.
    estimator_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The training loss.
    validation_line_ : matplotlib Line2D or None
    label_changes_line_ : matplotlib Line2D or None
    label_changes_ax_ : matplotlib Axes or None
        The right-hand axis of the label changes.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sk_deepunsup import DeepAutoencoder
    >>> from sk_deepunsup.inspection import LossCurveDisplay
    >>> X = np.random.RandomState(0).normal(size=(100, 4))
    >>> ae = DeepAutoencoder(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X)
    >>> disp = LossCurveDisplay.from_estimator(ae)
    >>> len(disp.line_.get_ydata())
    5
    """

    def __init__(
        self,
        *,
        loss_curve,
        validation_loss_curve=None,
        label_changes=None,
        label_change_epochs=None,
        estimator_name=None,
    ):
        self.loss_curve = loss_curve
        self.validation_loss_curve = validation_loss_curve
        self.label_changes = label_changes
        self.label_change_epochs = label_change_epochs
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, ax=None):
        """Plot the loss curves of a fitted estimator.

        Parameters
        ----------
        estimator : estimator or Pipeline
            A fitted autoencoder, clusterer (its clustering phase; label
            changes on the right axis) or outlier detector (its autoencoder),
            or a Pipeline ending in one.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.

        Returns
        -------
        display : LossCurveDisplay
        """
        _, final = split_pipeline(estimator)
        source = final
        if not hasattr(source, "loss_curve_") and hasattr(source, "autoencoder_"):
            source = source.autoencoder_
        if not hasattr(source, "loss_curve_"):
            raise TypeError(
                f"{type(final).__name__} records no loss_curve_; pass an estimator of "
                "sk_deepunsup (or a Pipeline ending in one)."
            )
        display = cls(
            loss_curve=list(source.loss_curve_),
            validation_loss_curve=getattr(source, "validation_loss_curve_", None),
            label_changes=getattr(source, "label_changes_", None),
            label_change_epochs=getattr(source, "label_change_epochs_", None),
            estimator_name=estimator_name(estimator),
        )
        return display.plot(ax=ax)

    def plot(self, ax=None):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.

        Returns
        -------
        display : LossCurveDisplay
            ``self``, with ``figure_`` and ``ax_`` set.
        """
        created = ax is None
        fig, ax = get_ax(ax)
        epochs = np.arange(1, len(self.loss_curve) + 1)
        (self.line_,) = ax.plot(epochs, self.loss_curve, label="training loss", color="C0")
        self.validation_line_ = None
        if self.validation_loss_curve is not None:
            (self.validation_line_,) = ax.plot(
                epochs, self.validation_loss_curve, label="validation loss", color="C1"
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        handles = [h for h in (self.line_, self.validation_line_) if h is not None]
        self.label_changes_ax_ = self.label_changes_line_ = None
        if self.label_changes is not None and len(self.label_changes):
            twin = ax.twinx()
            x = (
                self.label_change_epochs
                if self.label_change_epochs is not None
                else np.linspace(1, len(self.loss_curve), len(self.label_changes))
            )
            (self.label_changes_line_,) = twin.plot(
                x, self.label_changes, color="C2", marker=".", label="labels changed"
            )
            twin.set_ylabel("share of labels changed")
            twin.set_ylim(bottom=0)
            self.label_changes_ax_ = twin
            handles.append(self.label_changes_line_)
        ax.legend(handles=handles, loc="best")
        if self.estimator_name:
            ax.set_title(self.estimator_name)
        if created:  # room for the right-hand axis label
            fig.tight_layout()
        self.ax_, self.figure_ = ax, fig
        return self
