"""The ``sk-deepunsup`` command: cluster a CSV or Parquet file from the shell."""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import normalized_mutual_info_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from . import __version__
from ._clustering import DeepEmbeddingClusterer
from ._nn import TrainingInterrupted
from .metrics import clustering_accuracy

PROG = "sk-deepunsup"
READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


class InputError(Exception):
    """A usage or input problem: reported on one line, exit status 2."""


def make_clusterer(n_clusters, seed, verbose):
    """Build the clusterer that ``cluster`` fits (after min-max scaling).

    Parameters
    ----------
    n_clusters : int
        Number of clusters.
    seed : int
        ``random_state`` of the clusterer.
    verbose : bool
        Show progress bars on stderr.

    Returns
    -------
    clusterer : DeepEmbeddingClusterer
    """
    return DeepEmbeddingClusterer(n_clusters=n_clusters, random_state=seed, verbose=verbose)


def _names(columns, limit=10):
    shown = ", ".join(repr(str(c)) for c in list(columns)[:limit])
    return shown + (f" and {len(columns) - limit} more" if len(columns) > limit else "")


def _count(text, minimum):
    if not text.strip().isdigit() or int(text) < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return int(text)


def _build_parser():
    """The parser of ``sk-deepunsup`` and its ``cluster`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Deep unsupervised learning as scikit-learn estimators."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cluster = commands.add_parser(
        "cluster",
        help="cluster the rows of a table with DeepEmbeddingClusterer",
        description="Min-max scale the rows of DATA, cluster them with "
        "DeepEmbeddingClusterer and write one 'cluster' label per row as CSV. "
        "Without DATA, cluster scikit-learn's digits and compare ACC and NMI "
        "with k-means'.",
    )
    options = [
        (["data"], dict(nargs="?", metavar="DATA", help="CSV (.csv) or Parquet "
         "(.parquet, .pq) file with one sample per row and only numeric columns; "
         "omit it for the digits demo")),
        (["-k", "--n-clusters"], dict(type=lambda s: _count(s, 1), metavar="K",
         help="number of clusters (default: 8 with DATA, 10 for the digits)")),
        (["-o", "--output"], dict(metavar="FILE", help="write the labels as CSV "
         "to FILE instead of standard output")),
        (["--seed"], dict(type=lambda s: _count(s, 0), default=0, metavar="S",
         help="random seed of the clusterer and of k-means (default: 0)")),
        (["-v", "--verbose"], dict(action="store_true", help="show progress bars, "
         "status lines and warnings on stderr")),
        (["--drop"], dict(action="extend", nargs="+", default=[], metavar="COL",
         help="leave out column COL of DATA (repeatable; takes several names)")),
    ]
    for flags, kwargs in options:
        cluster.add_argument(*flags, **kwargs)
    return parser


def read_table(path, drop=()):
    """Read DATA into a frame of numeric columns, refusing what cannot be clustered.

    Parameters
    ----------
    path : str or Path
        A ``.csv``, ``.parquet`` or ``.pq`` file.
    drop : sequence of str, default=()
        Columns to leave out.

    Returns
    -------
    frame : pandas.DataFrame
        The remaining columns, all numeric, with no missing or infinite value.

    Raises
    ------
    InputError
        On an unsupported extension, an unreadable, empty or non-numeric file,
        or an unknown column in ``drop``.
    """
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"cannot read DATA '{path}': unsupported extension "
                         f"{path.suffix!r}; use a file ending in {', '.join(READERS)}")
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise InputError(f"DATA '{path}' {what}; pass an existing CSV or Parquet file")
    try:
        frame = reader(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"DATA '{path}' is empty; it needs a header row and data rows")
    except (ValueError, OSError, ImportError) as exc:
        raise InputError(f"cannot read DATA '{path}': {exc}") from exc
    if frame.empty:
        raise InputError(f"DATA '{path}' has no data rows; it needs one row per sample")
    names = {str(c): c for c in frame.columns}
    unknown = [c for c in drop if c not in names]
    if unknown:
        raise InputError(f"--drop names column(s) {_names(unknown)}, not in DATA "
                         f"'{path}'; its columns are {_names(names)}")
    frame = frame.drop(columns=[names[c] for c in dict.fromkeys(drop)])
    if frame.shape[1] == 0:
        raise InputError(f"DATA '{path}' has no columns left to cluster; drop fewer")
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise InputError(f"DATA '{path}' has non-numeric column(s) {_names(bad)}; "
                         "leave them out with --drop COL or encode them as numbers")
    frame = frame.astype(np.float64)
    nonfinite = frame.columns[~np.isfinite(frame.to_numpy()).all(axis=0)]
    if len(nonfinite):
        raise InputError(f"DATA '{path}' has missing (NaN) or infinite values in "
                         f"column(s) {_names(nonfinite)}; fill them in or --drop them")
    return frame


def _status(verbose, message):
    if verbose:
        print(message, file=sys.stderr)


def _fit_predict(estimator, X, verbose):
    """Fit ``MinMaxScaler() + estimator`` on X; return the labels and the seconds."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", TrainingInterrupted)  # Ctrl-C aborts the run
        start = time.perf_counter()
        labels = make_pipeline(MinMaxScaler(), estimator).fit_predict(X)
        seconds = time.perf_counter() - start
    for warning in caught:
        _status(verbose, f"{PROG}: warning: {' '.join(str(warning.message).split())}")
    return np.asarray(labels, dtype=np.int64), seconds


def _cluster(args):
    """Run ``sk-deepunsup cluster`` on the parsed arguments; return 0."""
    folder = Path(args.output or ".").parent
    if not folder.is_dir():
        raise InputError(f"--output '{args.output}': directory '{folder}' does not "
                         "exist; create it or choose another FILE")
    if args.data is None and args.drop and Path(args.drop[-1]).suffix.lower() in READERS:
        args.data = args.drop.pop()  # "--drop COL DATA": DATA was taken as a column
    if args.data is None:
        if args.drop:
            raise InputError("--drop needs DATA; the digits demo has no columns to drop")
        digits = load_digits()
        X, y, source = digits.data, digits.target, "scikit-learn's digits (load_digits)"
    else:
        X, y, source = read_table(args.data, args.drop), None, repr(args.data)
    k = args.n_clusters or (10 if args.data is None else 8)
    n_rows, n_cols = X.shape
    if n_rows < max(k, 2):
        raise InputError(f"DATA {source} has {n_rows} row(s), too few for --n-clusters "
                         f"{k}; give it at least {max(k, 2)} rows or use a smaller K")
    _status(args.verbose, f"read {n_rows} rows x {n_cols} columns from {source}")
    clusterer = make_clusterer(k, args.seed, args.verbose)
    _status(args.verbose, f"fitting {type(clusterer).__name__}(n_clusters={k}) ...")
    labels, seconds = _fit_predict(clusterer, X, args.verbose)
    _status(args.verbose, f"fitted in {seconds:.1f} s")
    if y is not None:
        _status(args.verbose, f"fitting KMeans(n_clusters={k}) ...")
        kmeans = _fit_predict(KMeans(n_clusters=k, random_state=args.seed), X, args.verbose)
        print(f"digits: {n_rows} rows x {n_cols} columns, min-max scaled; "
              f"n_clusters={k}, seed={args.seed}")
        print(f"{'method':<24}{'ACC':>5}{'NMI':>8}{'fit s':>9}")
        for name, (found, secs) in [(type(clusterer).__name__, (labels, seconds)),
                                    ("KMeans", kmeans)]:
            acc, nmi = clustering_accuracy(y, found), normalized_mutual_info_score(y, found)
            print(f"{name:<24}{acc:>5.3f}{nmi:>8.3f}{secs:>9.1f}")
    if y is None or args.output:
        pd.DataFrame({"cluster": labels}).to_csv(args.output or sys.stdout, index=False)
        _status(args.verbose, f"wrote {n_rows} labels to {args.output or 'stdout'}")
    return 0


def main(argv=None):
    """Entry point of the ``sk-deepunsup`` command.

    Parameters
    ----------
    argv : list of str or None, default=None
        The arguments; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success, 2 on a usage or input error, 1 when fitting or writing
        fails, 130 when interrupted.
    """
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    try:
        return _cluster(args)
    except (KeyboardInterrupt, TrainingInterrupted):
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (InputError, ValueError, OSError, RuntimeError, MemoryError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, InputError) else 1
