"""
Sample new images from a convolutional variational autoencoder
==============================================================

``VariationalAutoencoder(image_shape=...)`` is convolutional: strided
convolutions map each image to a Gaussian posterior over the latent
variables, and transposed convolutions map latent codes back to pixels.
X stays a 2-D array, one image a row. Once fitted, ``sample`` draws codes
from the prior and decodes them into new images.

By default the example trains on scikit-learn's 8x8 digits (34 s measured on
2 CPU cores with one other program running, load average 1.7). ``--fashion``
trains on Fashion-MNIST 28x28 images instead (Debian's
``dataset-fashion-mnist`` package, read by
:func:`sk_deepunsup.datasets.load_fashion_mnist`); use a GPU, or ``--n-samples``/``--max-iter`` to keep it short on a
CPU. It saves ``samples.png``: real images on the top rows, samples from the
prior below, and prints the mean ELBO of held-out images beside that of
uniform noise (real images should score far higher). Run it with::

    python examples/sample_images.py
    python examples/sample_images.py --fashion --n-samples 10000 --max-iter 30
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits

from sk_deepunsup import VariationalAutoencoder
from sk_deepunsup.datasets import load_fashion_mnist


def load_images(fashion: bool, n_samples: int):
    if not fashion:
        return (load_digits().data / 16.0)[:n_samples], (8, 8)
    X, _ = load_fashion_mnist()  # its error says how to install the data
    keep = np.random.RandomState(0).permutation(len(X))[:n_samples]
    return X[keep].astype(np.float32) / 255.0, (28, 28)


def save_grid(real, samples, shape, path, per_row=10):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.concatenate([real, samples])
    n_rows = int(np.ceil(len(images) / per_row))
    fig, axes = plt.subplots(n_rows, per_row, figsize=(per_row, n_rows))
    for ax, image in zip(axes.ravel(), images):
        ax.imshow(image.reshape(shape), cmap="gray_r", vmin=0, vmax=1)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].set_title("real", loc="left", fontsize=8)
    axes[len(real) // per_row, 0].set_title("sampled", loc="left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fashion", action="store_true")
    parser.add_argument("--n-samples", type=int, default=70000)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--output", default="samples.png")
    args = parser.parse_args()

    X, shape = load_images(args.fashion, args.n_samples)
    n_test = len(X) // 10
    train, test = X[n_test:], X[:n_test]
    vae = VariationalAutoencoder(
        n_components=8, image_shape=shape, loss="bce", max_iter=args.max_iter,
        random_state=0, verbose=True,
    ).fit(train)
    noise = np.random.RandomState(0).uniform(size=test.shape)
    print(f"mean ELBO: held-out images {vae.score(test):.1f}, uniform noise {vae.score(noise):.1f}")
    save_grid(test[:20], vae.sample(30), shape, args.output)
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
