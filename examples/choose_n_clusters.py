"""
Choose the number of clusters with GridSearchCV, without any labels
===================================================================

``DeepEmbeddingClusterer.score`` is the silhouette coefficient of its
predicted clusters, measured in the input space (in [-1, 1], higher is
better). Because it needs no labels and does not depend on the model's own
embedding, ``GridSearchCV`` can compare different ``n_clusters`` with it
directly: no ``y`` and no custom scorer.

The data are synthetic: 600 points in 10 dimensions drawn around 4
well-separated centres (``make_blobs``), so we know the right answer is 4.
The model is a ``Pipeline`` of ``StandardScaler`` and the clusterer; the
search tries ``n_clusters`` in 2..6 with 3-fold cross-validation, and each
candidate is scored by its silhouette on the held-out fold.

Every fit starts by pretraining an autoencoder, and that pretraining does not
depend on ``n_clusters``. With ``memory`` set, the pretrained autoencoder is
cached on disk (keyed on the data and the autoencoder's parameters), so the
search pretrains once per fold, plus once for the final refit on all the
data: 4 pretrainings instead of 16. The example runs the search twice, with
and without ``memory``, and prints both times.

Runtime: about 15 seconds on 2 CPU cores (13 s measured, load average 1.0),
most of it the search without ``memory``. The exact times, and so the
speed-up, vary from machine to machine, and become erratic when other
programs keep the CPU busy.

Run it with::

    python examples/choose_n_clusters.py

.. rubric:: Stored output

The documentation shows the output of one run instead of running this
example at every build: 13 s on 2 CPU cores (load average 1.0); the
speed-up that memory gives depends on the load, as the example's header says.

.. literalinclude:: /gallery_output/choose_n_clusters.txt
   :language: none
"""

import tempfile
import time
import warnings

import numpy as np
import pandas as pd
from joblib import Memory
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_deepunsup import DeepAutoencoder, DeepEmbeddingClusterer

TRUE_N_CLUSTERS = 4
CANDIDATES = [2, 3, 4, 5, 6]

# With a wrong number of clusters, the clustering phase can keep moving
# samples between two clusters that split one true group, and stop at its
# max_iter with a ConvergenceWarning. That is expected while searching (those
# candidates lose anyway), so we silence the warning for this script.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

# 1. Synthetic data with a known number of groups. The labels are kept only
#    to check the answer at the end; the search never sees them.
X, y_true = make_blobs(
    n_samples=600, n_features=10, centers=TRUE_N_CLUSTERS, random_state=0
)
print(f"Data: {X.shape[0]} samples, {X.shape[1]} features, {TRUE_N_CLUSTERS} true groups.\n")


# 2. The model: standardise, then deep embedded clustering on a small
#    autoencoder (10 -> 64 -> 32 -> 2). Its pretraining stops on its own
#    (loss no longer improving) after about 250 epochs. `memory` is left as a
#    parameter so we can run the search with and without it.
def make_model(memory):
    autoencoder = DeepAutoencoder(n_components=2, hidden_layer_sizes=(64, 32), max_iter=400)
    clusterer = DeepEmbeddingClusterer(autoencoder=autoencoder, memory=memory, random_state=0)
    return make_pipeline(StandardScaler(), clusterer)


# In a pipeline, a step's parameter is named "<step name>__<parameter>".
param_grid = {"deepembeddingclusterer__n_clusters": CANDIDATES}


def run_search(memory):
    search = GridSearchCV(make_model(memory), param_grid, cv=KFold(3, shuffle=True, random_state=0))
    start = time.perf_counter()
    search.fit(X)  # no y: the clusterer's own score (silhouette) is used
    return search, time.perf_counter() - start


# 3. The search with a cache: the pretrained autoencoders go to a temporary
#    folder, deleted at the end of the `with` block.
with tempfile.TemporaryDirectory() as cache_dir:
    memory = Memory(location=cache_dir, verbose=0)
    search, seconds_cached = run_search(memory)

# 4. Mean held-out silhouette for each candidate (higher is better).
results = pd.DataFrame(
    {
        "n_clusters": search.cv_results_["param_deepembeddingclusterer__n_clusters"],
        "mean silhouette": search.cv_results_["mean_test_score"],
        "std": search.cv_results_["std_test_score"],
        "rank": search.cv_results_["rank_test_score"],
    }
)
print("Held-out silhouette per n_clusters (mean and std over 3 folds):")
print(results.round(3).to_string(index=False))

best = search.best_params_["deepembeddingclusterer__n_clusters"]
print(f"\nChosen n_clusters: {best} (the true number of groups is {TRUE_N_CLUSTERS}).")
if best != TRUE_N_CLUSTERS:
    raise RuntimeError(f"The search chose {best} clusters instead of {TRUE_N_CLUSTERS}.")

# 5. The refitted best model is an ordinary fitted pipeline. Its clusters
#    match the true groups one to one when every true group falls in a
#    single cluster and no cluster mixes groups.
labels = search.best_estimator_.predict(X)
table = pd.crosstab(y_true, labels, rownames=["true group"], colnames=["cluster"])
print("\nTrue groups (rows) against the clusters of the refitted model (columns):")
print(table.to_string())
nonzero = table.to_numpy() > 0
pure = bool(np.all(nonzero.sum(axis=1) == 1) and np.all(nonzero.sum(axis=0) == 1))
print(f"Clusters and true groups match one to one: {pure}\n")

# 6. The same search without `memory`: every one of the 15 fits (5 candidates
#    x 3 folds), and the final refit, pretrains its own autoencoder.
search_uncached, seconds_uncached = run_search(memory=None)
best_uncached = search_uncached.best_params_["deepembeddingclusterer__n_clusters"]
same_scores = np.allclose(
    search.cv_results_["mean_test_score"], search_uncached.cv_results_["mean_test_score"]
)

print("Time for the whole search (15 fits + 1 refit):")
print(f"  with memory:    {seconds_cached:6.1f} s  (4 pretrainings: 1 per fold, 1 for the refit)")
print(f"  without memory: {seconds_uncached:6.1f} s  (16 pretrainings: 1 per fit)")
print(f"  speed-up:       {seconds_uncached / seconds_cached:6.1f} x")
print(f"Without memory the search also chooses {best_uncached} clusters; "
      f"identical scores: {same_scores}.")
