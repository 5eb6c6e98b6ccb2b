"""The torch core: plain ``nn.Module``s, losses and the training engine.

This subpackage never imports scikit-learn; the estimators in the parent
package are thin layers over it.
"""

from . import distributed
from .conv import FlatOutput, ImageInput, build_conv_autoencoder
from .data import BatchSource, SparseRowSource, StreamedRowSource, TensorSource, chunk_rows
from .losses import (
    RECONSTRUCTION_LOSSES,
    clustering_objective,
    decode_output,
    elbo,
    elbo_objective,
    gaussian_kl,
    kl_clustering_loss,
    multinomial_log_likelihood,
    reconstruction_loss,
    reconstruction_objective,
    SoftAssignment,
    student_t_assignment,
    target_distribution,
)
from .modules import (
    ACTIVATIONS,
    MLP,
    Autoencoder,
    PosteriorMean,
    ClusteringAutoencoder,
    NormalizedInput,
    VAEModule,
    build_autoencoder,
    set_generator,
)
from .neighbors import (
    NEIGHBOR_LOSSES,
    EdgeSampler,
    Embedder,
    FixedProjection,
    LinearDecay,
    infonce_edge_loss,
    neighbor_embedding_objective,
    umap_edge_loss,
)
from .dec import TargetUpdater
from .optim import FlatAdam
from .recommend import (
    L2_LADDER,
    Blend,
    ItemItem,
    check_ease_memory,
    ease_scorer,
    ease_solve,
    ease_spectrum,
    standardize_rows,
)
from .threads import ThreadPolicy
from .callbacks import (
    Callback,
    Checkpoint,
    DistributedSync,
    EarlyStopping,
    ProgressBar,
    all_finite,
    snapshot,
)
from .training import History, NonFiniteLossError, Trainer, TrainingInterrupted

__all__ = [
    "ACTIVATIONS",
    "RECONSTRUCTION_LOSSES",
    "L2_LADDER",
    "Blend",
    "FlatOutput",
    "ImageInput",
    "ItemItem",
    "NormalizedInput",
    "build_conv_autoencoder",
    "check_ease_memory",
    "chunk_rows",
    "ease_scorer",
    "ease_solve",
    "ease_spectrum",
    "multinomial_log_likelihood",
    "standardize_rows",
    "distributed",
    "BatchSource",
    "SparseRowSource",
    "StreamedRowSource",
    "TensorSource",
    "ThreadPolicy",
    "MLP",
    "NEIGHBOR_LOSSES",
    "Embedder",
    "Autoencoder",
    "Callback",
    "Checkpoint",
    "DistributedSync",
    "EarlyStopping",
    "ProgressBar",
    "ClusteringAutoencoder",
    "FlatAdam",
    "History",
    "NonFiniteLossError",
    "TargetUpdater",
    "Trainer",
    "TrainingInterrupted",
    "VAEModule",
    "PosteriorMean",
    "SoftAssignment",
    "build_autoencoder",
    "clustering_objective",
    "decode_output",
    "elbo",
    "elbo_objective",
    "gaussian_kl",
    "EdgeSampler",
    "FixedProjection",
    "LinearDecay",
    "infonce_edge_loss",
    "neighbor_embedding_objective",
    "kl_clustering_loss",
    "reconstruction_loss",
    "reconstruction_objective",
    "set_generator",
    "all_finite",
    "snapshot",
    "student_t_assignment",
    "target_distribution",
    "umap_edge_loss",
]
