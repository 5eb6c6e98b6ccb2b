"""
Generate new handwritten digits with a variational autoencoder
==============================================================

A ``VariationalAutoencoder`` learns to map each 8x8 digit image to a
distribution over 8 latent variables and back. Once fitted it is a
generative model: ``sample`` draws latent codes from the standard normal
prior and decodes them into new images, and ``score`` gives the mean
evidence lower bound (ELBO), a lower bound of the log-likelihood of the data
under the model, so data that look like the training digits score higher
than data that do not.

The example:

* fits the model on 80% of the digits, scaled to [0, 1] by dividing by 16;
* draws 8 new digits with ``vae.sample(8)`` and prints them as ASCII art,
  each with the digit a simple classifier (trained on the real images)
  thinks it shows;
* compares ``score`` on the 20% held-out digits with ``score`` on uniform
  noise;
* reconstructs a few held-out digits with ``inverse_transform(transform(X))``
  and prints them under the originals.

Settings: ``loss="bce"`` (a Bernoulli likelihood per pixel, natural for
intensities in [0, 1]) gave more digit-like samples than the default
``loss="gaussian"``, whose samples were sharper but more often smudges
(judged by eye and by how confidently a classifier recognised them). The
ELBO is estimated from random draws, so the training loss is noisy; with
the default ``n_iter_no_change=10``, training stops after about 110 epochs
whatever ``max_iter`` is. We use ``max_iter=400, n_iter_no_change=30``:
training then runs for about 375 epochs and stops on its own, and the
samples come out visibly cleaner.

Runtime: about 10-40 seconds on 2 CPU cores (10 s measured with one other
program running, load average 1.6; 36 s at load average 4).

Run it with::

    python examples/sample_digits.py
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from sk_deepunsup import VariationalAutoencoder

# Characters from blank to full ink, for intensities 0..1.
SHADES = " .:-=+*#%@"


def ascii_digits(images, captions, per_row=4):
    """Draw 8x8 images with values in [0, 1] side by side, captions below.

    At most ``per_row`` images per block, so the output fits in 80 columns.
    """
    blocks = []
    for start in range(0, len(images), per_row):
        rows = []
        for r in range(8):
            cells = []
            for image in images[start : start + per_row]:
                pixels = np.clip(np.asarray(image).reshape(8, 8)[r], 0, 1)
                # each pixel is drawn two characters wide so the digit looks square
                shades = [SHADES[int(round(v * (len(SHADES) - 1)))] for v in pixels]
                cells.append("".join(c * 2 for c in shades))
            rows.append(" | ".join(cells))
        rows.append(" | ".join(f"{c:<16}" for c in captions[start : start + per_row]))
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


# 1. Load the digits and scale the pixels from 0..16 to [0, 1], as the
#    Bernoulli likelihood of loss="bce" requires. Keep 20% aside to check
#    that the model scores unseen digits well.
X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
print(f"Training on {len(X_train)} digits, holding out {len(X_test)}.\n")

# 2. Fit the VAE: 64 pixels -> 128 -> 64 -> 8 latent variables, and back.
vae = VariationalAutoencoder(
    n_components=8, loss="bce", max_iter=400, n_iter_no_change=30, random_state=0
)
vae.fit(X_train)
print(f"Trained for {vae.n_iter_} epochs; final loss (negative ELBO per image): "
      f"{vae.loss_curve_[-1]:.1f} nats.\n")

# 3. Sample 8 new digits from the prior. Each pixel is the decoder's mean,
#    the probability that the pixel is inked, so the images are a little
#    blurrier than real ones. Since random_state is an int, sample returns
#    the same images on every call.
samples = vae.sample(8)

# A plain classifier trained on the real training digits tells us which
# digit each sample looks like, and how sure it is.
classifier = LogisticRegression(max_iter=2000).fit(X_train, y_train)
proba = classifier.predict_proba(samples)
captions = [f"like {p.argmax()} ({p.max():.0%})" for p in proba]
print("8 new digits drawn with vae.sample(8), and the digit a classifier sees in each:")
print(ascii_digits(samples, captions))
print()

# 4. score: the mean ELBO per image, in nats (higher is more likely). Unseen
#    real digits should score close to the training digits, and far above
#    images of uniform random noise.
noise = np.random.RandomState(0).uniform(size=X_test.shape)
score_train = vae.score(X_train)
score_test = vae.score(X_test)
score_noise = vae.score(noise)
print("Mean ELBO (a lower bound of the log-likelihood per image; higher is better):")
print(f"  training digits:  {score_train:8.1f}")
print(f"  held-out digits:  {score_test:8.1f}")
print(f"  uniform noise:    {score_noise:8.1f}")
print(f"Held-out digits score higher than noise: {score_test > score_noise}\n")

# 5. Reconstruction: encode held-out digits to their 8 latent means with
#    transform, and decode them back with inverse_transform.
originals = X_test[:4]
codes = vae.transform(originals)
reconstructions = vae.inverse_transform(codes)
print(
    f"4 held-out digits (top) and their reconstructions from {codes.shape[1]} "
    "numbers each (bottom):"
)
print(ascii_digits(originals, [f"digit {label}" for label in y_test[:4]]))
print()
print(ascii_digits(reconstructions, ["reconstructed"] * 4))

# The same over all held-out digits, as numbers.
all_reconstructions = vae.inverse_transform(vae.transform(X_test))
error = np.mean(np.abs(all_reconstructions - X_test))
print(f"\nMean absolute pixel error over all {len(X_test)} held-out digits: {error:.3f} "
      "(pixels are in [0, 1]).")
