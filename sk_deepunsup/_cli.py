"""The ``sk-deepunsup`` command: cluster a table, or recommend items, from the shell."""

import argparse
import csv
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__

# pandas, scikit-learn and the estimators (torch) are imported by the commands
# that use them, so that ``--help``, ``--version`` and usage errors answer at once.

PROG = "sk-deepunsup"
#: File extensions DATA and RATINGS may have, and the pandas reader of each.
READERS = {".csv": "read_csv", ".parquet": "read_parquet", ".pq": "read_parquet"}


class InputError(Exception):
    """A usage or input problem: reported on one line, exit status 2."""


def make_clusterer(n_clusters, seed, verbose, **options):
    """Build the clusterer that ``cluster`` fits (after min-max scaling).

    Parameters
    ----------
    n_clusters : int
        Number of clusters.
    seed : int
        ``random_state`` of the clusterer.
    verbose : bool
        Show progress bars on stderr.
    **options
        ``max_iter`` (epochs of the neighbour embedding and of clustering),
        ``hidden_layer_sizes`` and ``n_components`` of the neighbour
        embedding the clusters live in; None keeps a default.

    Returns
    -------
    clusterer : DeepEmbeddingClusterer
    """
    from . import DeepEmbeddingClusterer, NeighborEmbedding

    settings = {
        k: options.get(k)
        for k in ("max_iter", "hidden_layer_sizes", "n_components")
        if options.get(k) is not None
    }
    extra = {}
    if settings:
        # the clusterer's documented embedding="neighbors", with the user's settings
        embedding = NeighborEmbedding(
            n_components=10, loss="umap", min_dist=0.0, activation="tanh"
        )
        extra["embedding"] = embedding.set_params(**settings)
    if options.get("max_iter") is not None:
        extra["max_iter"] = options["max_iter"]
    return DeepEmbeddingClusterer(
        n_clusters=n_clusters, random_state=seed, verbose=verbose, **extra
    )


def make_recommender(seed, verbose, **options):
    """Build the recommender that ``recommend`` fits.

    Parameters
    ----------
    seed : int
        ``random_state``.
    verbose : bool
        Show a progress bar on stderr.
    **options
        ``model``, ``max_iter``, ``hidden_layer_sizes``, ``n_components``
        and ``threshold``; None keeps the default.

    Returns
    -------
    recommender : AutoencoderRecommender
    """
    from . import AutoencoderRecommender

    params = {k: v for k, v in options.items() if v is not None}
    return AutoencoderRecommender(random_state=seed, verbose=verbose, **params)


def _names(columns, limit=10):
    shown = ", ".join(repr(str(c)) for c in list(columns)[:limit])
    return shown + (f" and {len(columns) - limit} more" if len(columns) > limit else "")


def _count(text, minimum):
    if not text.strip().isdigit() or int(text) < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return int(text)


def _sizes(text):
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas (e.g. 500,500), got {text!r}"
        )
    return tuple(int(p) for p in parts)


def _network_options(command):
    command.add_argument("--max-iter", type=lambda s: _count(s, 1), metavar="N",
                         help="maximum training epochs (default: the estimator's)")
    command.add_argument("--hidden-layer-sizes", type=_sizes, metavar="H1,H2,...",
                         help="widths of the encoder's hidden layers, e.g. 500,500")
    command.add_argument("--n-components", type=lambda s: _count(s, 1), metavar="D",
                         help="size of the embedding (latent) layer")
    progress = command.add_mutually_exclusive_group()
    progress.add_argument("-v", "--verbose", action="store_true", default=None,
                          help="show progress bars, status lines and warnings on stderr "
                          "(the default when stderr is a terminal)")
    progress.add_argument("-q", "--quiet", dest="verbose", action="store_false",
                          help="show no progress (the default when stderr is not a terminal)")


def _build_parser():
    """The parser of ``sk-deepunsup`` and its ``cluster`` and ``recommend`` commands."""
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
        (["--drop"], dict(action="extend", nargs="+", default=[], metavar="COL",
         help="leave out column COL of DATA (repeatable; takes several names)")),
        (["--explain"], dict(action="store_true", help="print each cluster's size, "
         "most distinctive columns and most typical row ids; with -o FILE, also "
         "write them as CSV to FILE's name with '.clusters' before its suffix")),
    ]
    for flags, kwargs in options:
        cluster.add_argument(*flags, **kwargs)
    _network_options(cluster)
    cluster.epilog = (
        "An id column (a pandas index written by to_csv, or a first column named "
        "like id/*_id, or of unique text) is not clustered and is written beside "
        "the labels; otherwise rows are numbered from 0 in a 'row' column."
    )
    recommend = commands.add_parser(
        "recommend",
        help="recommend items to the users of a (user, item[, rating]) table",
        description="Fit AutoencoderRecommender (EASE beside a Mult-VAE) on the interactions in "
        "RATINGS (one row per user-item interaction) and write, for every user, "
        "the N best items they have not interacted with, as CSV rows "
        "(user, rank, item); rank 1 is best. Users without any positive "
        "interaction (e.g. all ratings below --threshold) get the N most popular "
        "items.",
    )
    recommend.add_argument("ratings", metavar="RATINGS", help="CSV (.csv) or Parquet "
                           "(.parquet, .pq) file with one interaction per row")
    recommend.add_argument("--user-col", required=True, metavar="U",
                           help="column of user ids")
    recommend.add_argument("--item-col", required=True, metavar="I",
                           help="column of item ids")
    recommend.add_argument("--rating-col", metavar="R", help="column of ratings or "
                           "counts (default: every row is one interaction)")
    recommend.add_argument("--threshold", type=float, metavar="T", help="ratings >= T "
                           "count as positives (default: every rating > 0)")
    recommend.add_argument("-n", "--n", dest="n", type=lambda s: _count(s, 1), default=10,
                           metavar="N", help="items per user (default: 10)")
    recommend.add_argument("-o", "--output", metavar="FILE", help="write the CSV to "
                           "FILE instead of standard output")
    recommend.add_argument("--seed", type=lambda s: _count(s, 0), default=0, metavar="S",
                           help="random seed (default: 0)")
    recommend.add_argument("--model", choices=("hybrid", "ease", "vae", "dae"),
                           help="hybrid (EASE beside a Mult-VAE, the default), ease "
                           "(seconds, memory grows with items squared), vae or dae")
    _network_options(recommend)
    return parser


#: Names of a first column taken as row ids (case-insensitive), beside "*_id".
ID_NAMES = {"id", "index", "key", "name", "user", "item", "row"}


def sniff_delimiter(path):
    """The field delimiter of a CSV file: ",", ";", tab or "|" (default ",")."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        sample = fh.read(1 << 16)
    lines = sample.splitlines()
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        sample = "\n".join(lines[:-1])  # a cut last line can mislead the sniffer
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_frame(path, what="DATA"):
    """Read a CSV (delimiter sniffed) or Parquet file into a frame, refusing bad files.

    A semicolon-separated CSV whose numbers use decimal commas ("1,5") is
    read with ``decimal=","``.

    Raises
    ------
    InputError
        On an unsupported extension, a missing, unreadable or empty file.
    """
    import pandas as pd

    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"cannot read {what} '{path}': unsupported extension "
                         f"{path.suffix!r}; use a file ending in {', '.join(READERS)}")
    if not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        raise InputError(f"{what} '{path}' {state}; pass an existing CSV or Parquet file")
    kwargs = {}
    if reader == "read_csv":
        kwargs["sep"] = sniff_delimiter(path)
    reader = getattr(pd, reader)
    try:
        frame = reader(path, **kwargs)
        if kwargs.get("sep") == ";" and any(
            frame[c].astype(str).str.fullmatch(r"-?\d+,\d+").any()
            for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])
        ):
            frame = reader(path, sep=";", decimal=",")
    except pd.errors.EmptyDataError:
        raise InputError(f"{what} '{path}' is empty; it needs a header row and data rows")
    except (ValueError, OSError, ImportError) as exc:
        raise InputError(f"cannot read {what} '{path}': {exc}") from exc
    if frame.empty:
        raise InputError(f"{what} '{path}' has no data rows; it needs one row per sample")
    if frame.shape[1] == 1 and ";" in str(frame.columns[0]):
        raise InputError(f"{what} '{path}' looks semicolon-separated but could not be "
                         "split into columns; save it with commas or check its quoting")
    return frame


def _is_id_column(frame, column):
    """Whether ``column`` (the first one) holds row ids rather than a feature."""
    name = str(column).strip()
    if name == "" or re.fullmatch(r"Unnamed: 0", name):  # pandas' to_csv index
        return True
    lowered = name.lower()
    if lowered in ID_NAMES or lowered.endswith(("_id", " id", "-id")):
        return True
    from pandas.api.types import is_numeric_dtype

    values = frame[column]
    return not is_numeric_dtype(values) and values.is_unique


def read_table(path, drop=()):
    """Read DATA into numeric columns and row ids, refusing what cannot be clustered.

    Parameters
    ----------
    path : str or Path
        A ``.csv`` (any of the delimiters ``, ; tab |``), ``.parquet`` or
        ``.pq`` file.
    drop : sequence of str, default=()
        Columns to leave out.

    Returns
    -------
    frame : pandas.DataFrame
        The remaining columns, all numeric, with no missing or infinite value.
    ids : pandas.Series
        The id of each row: the first column when it is an id (a pandas
        index written by ``to_csv``, a column named like ``id``/``*_id``, or
        unique text; it is then not clustered), otherwise the row number,
        named ``row``.

    Raises
    ------
    InputError
        On an unsupported extension, an unreadable, empty or non-numeric file,
        or an unknown column in ``drop``.
    """
    import pandas as pd

    frame = read_frame(path)
    names = {str(c): c for c in frame.columns}
    unknown = [c for c in drop if c not in names]
    if unknown:
        raise InputError(f"--drop names column(s) {_names(unknown)}, not in DATA "
                         f"'{path}'; its columns are {_names(names)}")
    frame = frame.drop(columns=[names[c] for c in dict.fromkeys(drop)])
    first = frame.columns[0] if frame.shape[1] else None
    if first is not None and _is_id_column(frame, first):
        name = str(first).strip()
        name = "index" if name == "" or name.startswith("Unnamed: ") else name
        ids = frame[first].rename(name)
        frame = frame.drop(columns=[first])
    else:
        ids = pd.Series(np.arange(len(frame)), name="row")
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
    return frame, ids.reset_index(drop=True)


def _status(verbose, message):
    if verbose:
        print(message, file=sys.stderr)


def _fit_predict(estimator, X, verbose):
    """Fit ``MinMaxScaler() + estimator`` on X; return the labels, the seconds and the model."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        model = make_pipeline(MinMaxScaler(), estimator)
        labels = model.fit_predict(X)
        seconds = time.perf_counter() - start
    if getattr(estimator, "interrupted_", False):  # Ctrl-C ended the fit: write nothing
        raise KeyboardInterrupt
    for warning in caught:
        _status(verbose, f"{PROG}: warning: {' '.join(str(warning.message).split())}")
    return np.asarray(labels, dtype=np.int64), seconds, model


def _explain(model, X, labels, ids, args, image_shape):
    """``--explain``: each cluster's size, top columns and typical rows, as text (and CSV)."""
    from .inspection import explain_clusters

    explanation = explain_clusters(model, X, labels=labels, n_features=5, n_prototypes=3,
                                   image_shape=image_shape)
    table = explanation.features[["cluster", "rank", "feature", "direction", "score",
                                  "mean_in", "mean_out"]].copy()
    typical = {c: [ids.iloc[i] for i in rows] for c, rows in explanation.prototypes.items()}
    lines = []
    for cluster, size in explanation.sizes.items():
        rows = table[table["cluster"] == cluster]
        terms = ", ".join(f"{'+' if d == 'higher' else '-'}{f}"
                          for f, d in zip(rows["feature"], rows["direction"]))
        lines.append(f"cluster {cluster}: {size} rows; {terms}; typical "
                     f"{ids.name} {', '.join(map(str, typical[cluster]))}")
    # the summary shares standard output only when the labels do not use it
    print("\n".join(lines), file=sys.stderr if args.output is None and args.data else sys.stdout)
    if args.output:
        path = Path(args.output)
        target = path.with_name(f"{path.stem}.clusters{path.suffix or '.csv'}")
        table["typical_" + str(ids.name)] = table["cluster"].map(
            lambda c: " ".join(map(str, typical[c])))
        table.to_csv(target, index=False)
        _status(args.verbose, f"wrote the explanation of {len(lines)} clusters to {target}")


def _check_output(args):
    folder = Path(args.output or ".").parent
    if not folder.is_dir():
        raise InputError(f"--output '{args.output}': directory '{folder}' does not "
                         "exist; create it or choose another FILE")


def _network_kwargs(args):
    return dict(max_iter=args.max_iter, hidden_layer_sizes=args.hidden_layer_sizes,
                n_components=args.n_components)


def _cluster(args):
    """Run ``sk-deepunsup cluster`` on the parsed arguments; return 0."""
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits
    from sklearn.metrics import normalized_mutual_info_score

    from .metrics import clustering_accuracy

    _check_output(args)
    if args.data is None and args.drop and Path(args.drop[-1]).suffix.lower() in READERS:
        args.data = args.drop.pop()  # "--drop COL DATA": DATA was taken as a column
    if args.data is None:
        if args.drop:
            raise InputError("--drop needs DATA; the digits demo has no columns to drop")
        digits = load_digits()
        X, y, source = digits.data, digits.target, "scikit-learn's digits (load_digits)"
        ids = pd.Series(np.arange(len(X)), name="row")
    else:
        (X, ids), y, source = read_table(args.data, args.drop), None, repr(args.data)
    k = args.n_clusters or (10 if args.data is None else 8)
    n_rows, n_cols = X.shape
    if n_rows < max(k, 2):
        raise InputError(f"DATA {source} has {n_rows} row(s), too few for --n-clusters "
                         f"{k}; give it at least {max(k, 2)} rows or use a smaller K")
    _status(args.verbose, f"read {n_rows} rows x {n_cols} columns from {source}"
            + (f" (ids from column {ids.name!r})" if ids.name != "row" else ""))
    clusterer = make_clusterer(k, args.seed, args.verbose, n_samples=n_rows,
                               **_network_kwargs(args))
    _status(args.verbose, f"fitting {type(clusterer).__name__}(n_clusters={k}) ...")
    labels, seconds, model = _fit_predict(clusterer, X, args.verbose)
    _status(args.verbose, f"fitted in {seconds:.1f} s")
    if y is not None:
        _status(args.verbose, f"fitting KMeans(n_clusters={k}) ...")
        kmeans = _fit_predict(KMeans(n_clusters=k, random_state=args.seed), X, args.verbose)[:2]
        print(f"digits: {n_rows} rows x {n_cols} columns, min-max scaled; "
              f"n_clusters={k}, seed={args.seed}")
        print(f"{'method':<24}{'ACC':>5}{'NMI':>8}{'fit s':>9}")
        for name, (found, secs) in [(type(clusterer).__name__, (labels, seconds)),
                                    ("KMeans", kmeans)]:
            acc, nmi = clustering_accuracy(y, found), normalized_mutual_info_score(y, found)
            print(f"{name:<24}{acc:>5.3f}{nmi:>8.3f}{secs:>9.1f}")
    if y is None or args.output:
        out = pd.DataFrame({ids.name: ids.to_numpy(), "cluster": labels})
        out.to_csv(args.output or sys.stdout, index=False)
        _status(args.verbose, f"wrote {n_rows} labels to {args.output or 'stdout'}")
    if args.explain:
        _explain(model, X, labels, ids, args, (8, 8) if args.data is None else None)
    return 0


def _recommend(args):
    """Run ``sk-deepunsup recommend`` on the parsed arguments; return 0."""
    import pandas as pd

    from . import interaction_matrix, recommendations_frame

    _check_output(args)
    frame = read_frame(args.ratings, "RATINGS")
    names = {str(c): c for c in frame.columns}
    for flag, col in (("--user-col", args.user_col), ("--item-col", args.item_col),
                      ("--rating-col", args.rating_col)):
        if col is not None and col not in names:
            raise InputError(f"{flag} {col!r} is not a column of RATINGS "
                             f"'{args.ratings}'; its columns are {_names(names)}")
    user, item = names[args.user_col], names[args.item_col]
    rating = names[args.rating_col] if args.rating_col is not None else None
    missing = [str(c) for c in (user, item) if frame[c].isna().any()]
    if missing:
        raise InputError(f"RATINGS '{args.ratings}' has missing values in column(s) "
                         f"{_names(missing)}; drop those rows")
    if rating is not None and not pd.api.types.is_numeric_dtype(frame[rating]):
        raise InputError(f"--rating-col {args.rating_col!r} is not numeric; give a "
                         "column of ratings or counts, or leave --rating-col out")
    X, users, items = interaction_matrix(frame, user, item, rating)
    _status(args.verbose, f"read {len(frame)} interactions of {len(users)} users with "
            f"{len(items)} items from {args.ratings!r}")
    if args.n > len(items):
        raise InputError(f"--n {args.n} is more than the {len(items)} items in RATINGS; "
                         "ask for fewer")
    chosen = {"model": args.model} if args.model is not None else {}
    recommender = make_recommender(args.seed, args.verbose, threshold=args.threshold,
                                   **chosen, **_network_kwargs(args))
    _status(args.verbose, f"fitting {type(recommender).__name__} ...")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        recommender.fit(X)
        if recommender.interrupted_:  # Ctrl-C aborts the run: nothing is written
            raise KeyboardInterrupt
        history = X.copy()
        history.data = (history.data >= args.threshold if args.threshold is not None
                        else history.data > 0).astype(np.float64)
        history.eliminate_zeros()
        n = min(args.n, int(len(items) - np.diff(history.indptr).max()))
        if n < 1:
            raise InputError("some user has interacted with every item; there is "
                             "nothing left to recommend")
        top = recommender.recommend(X, n_items=n)
        seconds = time.perf_counter() - start
    for warning in caught:
        _status(args.verbose, f"{PROG}: warning: {' '.join(str(warning.message).split())}")
    if n < args.n:
        _status(args.verbose, f"{PROG}: some user has seen all but {n} items; "
                f"recommending {n} per user")
    _status(args.verbose, f"fitted and recommended in {seconds:.1f} s")
    out = recommendations_frame(top, items, users)
    out.to_csv(args.output or sys.stdout, index=False)
    _status(args.verbose, f"wrote {len(out)} recommendations to {args.output or 'stdout'}")
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
    if args.verbose is None:  # progress by default when a person watches stderr
        args.verbose = sys.stderr.isatty()
    try:
        return _cluster(args) if args.command == "cluster" else _recommend(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (InputError, ValueError, OSError, RuntimeError, MemoryError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, InputError) else 1
