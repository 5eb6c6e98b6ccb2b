"""
Recommend films to a few MovieLens-100K users with AutoencoderRecommender
=========================================================================

Ratings of 4 or 5 stars count as "liked". The default model (EASE beside a
Mult-VAE, its L2 penalty and mixing weight chosen on 20 % of each user's liked
films held out inside fit) is fitted on every user's liked films; then, for three users, the script prints a few films
they liked and the five films recommended to them (films they have not rated
highly), by title. A new user, unseen in fit, is folded in from a short
history without refitting.

The data are the ml-100k files that ship with the ``recbole`` package, read by
:func:`sk_deepunsup.datasets.load_movielens_100k` (``pip install --no-deps recbole``;
only its data files are read, recbole itself is not imported). Run::

    python examples/recommend_movies.py

.. rubric:: Stored output

The documentation shows the output of one run instead of running this
example at every build: 20 s on 2 CPU cores (load average 1.3).

.. literalinclude:: /gallery_output/recommend_movies.txt
   :language: none
"""

import numpy as np
import scipy.sparse as sp

from sk_deepunsup import AutoencoderRecommender, interaction_matrix
from sk_deepunsup.datasets import load_movielens_100k


def main():
    _, ratings = load_movielens_100k()  # its error says how to install the data
    titles = ratings.drop_duplicates("item_id").set_index("item_id")
    title = lambda item: f"{titles.movie_title.get(item, '?')} ({titles.release_year.get(item, '?')})"

    X, users, items = interaction_matrix(ratings, "user_id", "item_id", "rating")
    rec = AutoencoderRecommender(threshold=4, random_state=0)
    print(f"fitting on {X.shape[0]} users x {X.shape[1]} films ...")
    rec.fit(X)
    print(f"fitted: EASE l2={rec.l2_:g}, VAE weight mix={rec.mix_:g} "
          f"(validation NDCG@100 {rec.validation_ndcg_:.3f}), {rec.n_iter_} epochs\n")

    chosen = [0, 41, 449]
    top = rec.recommend(X[chosen], n_items=5)
    for row, recommended in zip(chosen, top):
        liked = X[row].indices[np.argsort(-X[row].data, kind="stable")][:3]
        print(f"user {users[row]} rated highest e.g.: " + "; ".join(title(items[i]) for i in liked))
        for rank, i in enumerate(recommended, 1):
            print(f"  {rank}. {title(items[i])}")
        print()

    # A new user: three liked films, never seen in fit (no refit).
    wanted = [50, 172, 181]  # Star Wars, The Empire Strikes Back, Return of the Jedi
    history = sp.csr_matrix(
        (np.full(3, 5.0), (np.zeros(3, int), np.searchsorted(items, wanted))),
        shape=(1, len(items)),
    )
    print("a new user who liked: " + "; ".join(title(i) for i in wanted))
    for rank, i in enumerate(rec.recommend(history, n_items=5)[0], 1):
        print(f"  {rank}. {title(items[i])}")


if __name__ == "__main__":
    main()
